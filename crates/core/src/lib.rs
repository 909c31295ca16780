//! Shared by every clerk-sync binary: settings, the database and its migrations, the
//! Clerk event model, and the mirror's versioned upserts.

pub mod config;
pub mod db;
pub mod event;
pub mod exit;
pub mod metrics;
pub mod mirror;
pub mod queue;
pub mod samples;
pub mod shutdown;
pub mod telemetry;
pub mod webhook;

/// The apalis queue (`apalis.jobs.job_type`) that carries one job per stored event.
pub const QUEUE: &str = "clerk-sync:event";

/// A job's arguments: a reference to the stored raw event, never a second copy of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventJob {
    pub event_id: i64,
}
