//! Test support: [`TestApp`] (a fresh database from a migrated template, ingest and worker
//! on port 0, signed deliveries, a dead-job check at the end), and the real binaries.

pub mod app;
pub mod browser;
pub mod console;
pub mod db;
pub mod events;
pub mod fake_clerk;
pub mod history;
pub mod http;
pub mod pg_cluster;
pub mod pgbouncer;
pub mod procs;
pub mod proxy;
pub mod signing;
pub mod worker;

pub use app::TestApp;
pub use db::TestDb;
pub use http::{Answer, TestIngest};
pub use signing::Signer;
pub use worker::TestWorker;
