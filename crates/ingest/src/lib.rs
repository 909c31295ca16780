//! `clerk-sync-ingest`: verifies Svix-signed Clerk webhooks on their raw bytes, then stores
//! the raw event and its job in one transaction, and only then answers 2xx.

mod error;
mod metrics;
mod routes;
mod serve;
mod settings;
mod store;
mod verify;

use std::{
    future::{Future, IntoFuture as _},
    net::SocketAddr,
    time::Duration,
};

use anyhow::Context as _;
use axum::Router;
use clerk_sync_core::readiness::Readiness;
use sqlx::PgPool;
use tokio::net::TcpListener;

pub use crate::{
    error::IngestError,
    settings::{Config, Settings},
};

/// The ingest service, bound to its listeners (port 0 in tests) but not yet serving.
pub struct App {
    listener: TcpListener,
    request_timeout: Duration,
    router: Router,
    metrics_listener: TcpListener,
    metrics_router: Router,
}

impl App {
    /// Binds `LISTEN_ADDR` and `METRICS_ADDR` and connects lazily: once started, the
    /// service answers 503 while the database is down. (`main` checks the database once
    /// before, see [`clerk_sync_core::db::check`].)
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
        Self::with_pool(config.listen_addr, config.metrics_addr, pool, settings).await
    }

    /// Binds the webhook listener on `addr` and the metrics listener on `metrics_addr`.
    pub async fn with_pool(
        addr: SocketAddr,
        metrics_addr: SocketAddr,
        pool: PgPool,
        settings: Settings,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("LISTEN_ADDR: cannot listen on {addr}"))?;
        let metrics_listener = TcpListener::bind(metrics_addr)
            .await
            .with_context(|| format!("METRICS_ADDR: cannot listen on {metrics_addr}"))?;
        let request_timeout = settings.request_timeout;
        let readiness = Readiness::start(&pool).await;
        let (router, metrics_router) = routes::routers(pool, settings, readiness);
        Ok(Self {
            listener,
            request_timeout,
            router,
            metrics_listener,
            metrics_router,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener")
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_listener.local_addr().expect("bound listener")
    }

    /// Serves until `shutdown` resolves, then stops accepting, finishes in-flight requests
    /// and returns.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let metrics = tokio::spawn({
            let mut stop = stop.clone();
            axum::serve(self.metrics_listener, self.metrics_router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .into_future()
        });
        serve::serve(self.listener, self.router, self.request_timeout, shutdown).await;
        let _ = stop_tx.send(true);
        drop(stop);
        metrics
            .await
            .context("serving metrics")?
            .context("serving metrics")?;
        tracing::info!("clerk-sync-ingest stopped");
        Ok(())
    }
}
