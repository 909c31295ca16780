//! `clerk-sync-ingest`: verifies Svix-signed Clerk webhooks on their raw bytes, then stores
//! the raw event and its job in one transaction, and only then answers 2xx.

mod error;
mod metrics;
mod routes;
mod store;
mod verify;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::{Router, routing::get, routing::post};
use clap::Parser;
use clerk_sync_core::{
    config::{DatabaseArgs, LogArgs},
    exit::Validate,
    webhook::Secrets,
};
use secrecy::{ExposeSecret as _, SecretString};
use sqlx::PgPool;
use tokio::net::TcpListener;

pub use error::IngestError;

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

    /// Address to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,

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

pub(crate) struct AppState {
    pool: PgPool,
    store: store::Store,
    settings: Settings,
}

/// The ingest service, bound to its listener (port 0 in tests) but not yet serving.
pub struct App {
    listener: TcpListener,
    router: Router,
}

impl App {
    /// Binds `LISTEN_ADDR` and connects lazily: once started, the service answers 503
    /// while the database is down. (`main` checks the database once before, see
    /// [`clerk_sync_core::db::check`].)
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let settings = Settings {
            secrets: config.secrets()?,
            max_body_bytes: config.max_body_bytes,
            request_timeout: Duration::from_millis(config.request_timeout_ms),
        };
        let pool = clerk_sync_core::db::connect(
            config.db.url(),
            "clerk-sync-ingest",
            config.db_max_connections,
            clerk_sync_core::db::Session {
                statement_timeout: Some(settings.request_timeout),
                lock_timeout: None,
                // A 2xx promises the event is stored: every commit waits for its WAL flush.
                asynchronous_commit: false,
            },
        )
        .await?;
        Self::with_pool(config.listen_addr, pool, settings).await
    }

    pub async fn with_pool(
        addr: SocketAddr,
        pool: PgPool,
        settings: Settings,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("LISTEN_ADDR: cannot listen on {addr}"))?;
        let state = Arc::new(AppState {
            store: store::Store::new(pool.clone()),
            pool,
            settings,
        });
        let router = Router::new()
            .route("/webhooks/clerk", post(routes::receive))
            .route("/healthz", get(routes::healthz))
            .route("/readyz", get(routes::readyz))
            .route("/metrics", get(routes::metrics))
            .with_state(state);
        Ok(Self { listener, router })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener")
    }

    /// Serves until `shutdown` resolves, then stops accepting, finishes in-flight requests
    /// and returns.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP")?;
        tracing::info!("clerk-sync-ingest stopped");
        Ok(())
    }
}
