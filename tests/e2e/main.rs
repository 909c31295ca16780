//! End-to-end tests: real PostgreSQL, real HTTP, real signatures, real binaries.

mod backfill;
mod console;
mod errors;
mod faults;
mod ingest;
mod kinds;
mod network;
mod observability;
mod operator;
mod pooler;
mod processes;
mod property;
mod rls;
mod security;
mod slow_clients;
mod soak;
mod upgrade;
mod worker;
