//! Test support: a fresh database per test from a migrated template, signed deliveries,
//! the ingest service on port 0, the real binaries.

pub mod db;
pub mod events;
pub mod fake_clerk;
pub mod http;
pub mod pg_cluster;
pub mod procs;
pub mod signing;
pub mod worker;

pub use db::TestDb;
pub use http::{Answer, TestIngest};
pub use signing::Signer;
pub use worker::TestWorker;
