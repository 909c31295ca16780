//! End-to-end tests: real PostgreSQL, real HTTP, real signatures, real binaries.

mod ingest;
mod processes;
mod property;
mod worker;
