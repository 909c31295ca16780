//! Ingest's settings: [`Config`] as read from flags and the environment (each value's
//! range checked by its parser), and [`Settings`], what the HTTP handlers run with.

use std::{net::SocketAddr, time::Duration};

use clap::Parser;
use clerk_sync_core::{
    config::{DatabaseArgs, LogArgs},
    exit::Validate,
    webhook::Secrets,
};
use secrecy::{ExposeSecret as _, SecretString};

/// Verifies Svix-signed Clerk webhooks and durably stores them as jobs.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "clerk-sync-ingest",
    version,
    about,
    long_about = None,
    after_help = "Exit status: 0 stopped (SIGTERM), 1 failed (database unusable at start, port in use), 2 bad setting."
)]
pub struct Config {
    #[command(flatten)]
    pub db: DatabaseArgs,

    /// Clerk's webhook signing secret(s), `whsec_…`; several, separated by spaces or commas,
    /// while rotating (a request signed by any of them is accepted).
    #[arg(
        long,
        env = "CLERK_WEBHOOK_SECRET",
        hide_env_values = true,
        value_parser = clerk_sync_core::config::webhook_secrets
    )]
    pub clerk_webhook_secret: SecretString,

    /// Address to listen on: `POST /webhooks/clerk`, and `/healthz`, `/readyz`.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,

    /// Address of the operators' listener: `/metrics`, `/healthz`, `/readyz` (kept off the
    /// public webhook port, so a public ingest does not publish its counts).
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:9092")]
    pub metrics_addr: SocketAddr,

    /// Largest accepted request body; larger ones get 413 without being read whole
    /// [1024..=67108864].
    #[arg(
        long,
        env = "MAX_BODY_BYTES",
        default_value_t = 1_048_576,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..=64 << 20)
    )]
    pub max_body_bytes: usize,

    /// Time allowed to receive a request's body, and again to store it (Svix gives up after
    /// 15 s): a slow client gets 408, a slow database 503 (and its statement is cancelled)
    /// [100..=60000].
    #[arg(
        long,
        env = "REQUEST_TIMEOUT_MS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(100..=60_000)
    )]
    pub request_timeout_ms: u64,

    /// Database connections in the pool [1..=1000].
    #[arg(
        long,
        env = "DB_MAX_CONNECTIONS",
        default_value_t = 16,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    pub db_max_connections: u32,

    #[command(flatten)]
    pub log: LogArgs,
}

impl Config {
    pub fn secrets(&self) -> anyhow::Result<Secrets> {
        Secrets::parse(self.clerk_webhook_secret.expose_secret())
            .map_err(|e| anyhow::anyhow!("CLERK_WEBHOOK_SECRET: {e}"))
    }
}

/// Each setting has its range; none depends on another.
impl Validate for Config {}

/// What the HTTP handlers share.
pub struct Settings {
    pub secrets: Secrets,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
}
