//! Shared by every clerk-sync binary: settings, the database and its migrations, the
//! Clerk event model, and the mirror's versioned upserts.

pub mod backoff;
pub mod config;
pub mod db;
pub mod event;
pub mod events;
pub mod exit;
pub mod jobs;
pub mod metrics;
pub mod mirror;
pub mod nodelay;
pub mod ops;
pub mod readiness;
pub mod samples;
pub mod shutdown;
pub mod telemetry;
pub mod webhook;
