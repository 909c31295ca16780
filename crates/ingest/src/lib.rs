//! `clerk-sync-ingest`: verifies Svix-signed Clerk webhooks on their raw bytes, then stores
//! the raw event and its job in one transaction, and only then answers 2xx.

mod error;
mod metrics;
mod routes;
mod settings;
mod store;
mod verify;

use std::{future::Future, net::SocketAddr, time::Duration};

use anyhow::Context as _;
use axum::Router;
use sqlx::PgPool;
use tokio::net::TcpListener;

pub use crate::{
    error::IngestError,
    settings::{Config, Settings},
};

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
        let router = routes::router(pool, settings);
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
