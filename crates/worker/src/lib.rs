//! `clerk-sync-worker`: consumes the event jobs with apalis on PostgreSQL and applies them
//! to the mirror. This file is the wiring; each part has its own file:
//!
//! - [`pipeline`]: what happens to a claimed job, top to bottom (group commit, the ack in
//!   the transaction that applies the event, failures written back with backoff, dead
//!   letters), and the one place that writes a job's outcome;
//! - `handler`: the apalis handler that hands each claimed job to the pipeline;
//! - `supervisor`: the apalis worker that claims (and heartbeats, and rescues the jobs of
//!   workers that stopped heartbeating), rebuilt under a fresh name when the database drops
//!   it;
//! - `session` and `rescue`: each claiming worker holds its database session (an advisory
//!   lock); the jobs of a worker whose session ended are rescued within a second;
//! - `wakeup`: claiming on every NOTIFY of a new job, and on a timer;
//! - `retention`: pruning that never touches dead letters;
//! - `rollup`: the console's per-minute activity figures, from the minutes that closed;
//! - `settings`: [`Config`] (flags and environment, validated at start) and [`Settings`];
//! - `server` and `metrics`: `/metrics`, `/healthz` and `/readyz` on `METRICS_ADDR`.

mod handler;
pub mod metrics;
mod periodic;
pub mod pipeline;
mod rescue;
mod retention;
mod rollup;
mod server;
mod session;
mod settings;
mod supervisor;
mod wakeup;

use std::{future::Future, net::SocketAddr};

use anyhow::Context as _;
use sqlx::PgPool;
use tokio::{net::TcpListener, sync::watch};

use crate::pipeline::Pipeline;
pub use crate::settings::{Config, Settings};

pub struct Worker {
    pool: PgPool,
    settings: Settings,
    pipeline: Pipeline,
    metrics: TcpListener,
}

impl Worker {
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let settings = Settings::from_config(config);
        let pool = clerk_sync_core::db::connect(
            config.db.url(),
            "clerk-sync-worker",
            config.db_max_connections,
            clerk_sync_core::db::Session {
                // No single statement of ours should outlive a job's time limit.
                statement_timeout: Some(settings.job_timeout),
                // A mirror row locked by someone else (an app's long transaction) fails the
                // batch well before the jobs' time limit, so the batch is retried one job at
                // a time and only the job on that row waits for its next attempt.
                lock_timeout: Some(settings.job_timeout / 4),
                // The worker's commits need not wait for their WAL flush: WAL is one ordered
                // log, so a crash that loses an applied upsert also loses its later ack and
                // the job runs again; applying an event twice is harmless. (Ingest, whose
                // 2xx is a promise, keeps synchronous commits.)
                asynchronous_commit: true,
            },
        )
        .await?;
        Self::with_pool(pool, settings, config.metrics_addr).await
    }

    pub async fn with_pool(
        pool: PgPool,
        settings: Settings,
        metrics_addr: SocketAddr,
    ) -> anyhow::Result<Self> {
        let pipeline = Pipeline::start(pool.clone(), settings.pipeline());
        Self::assemble(pool, settings, pipeline, metrics_addr).await
    }

    /// A worker whose pipeline runs `fault` before each event is applied (tests only).
    #[cfg(feature = "fault-injection")]
    pub async fn with_fault(
        pool: PgPool,
        settings: Settings,
        metrics_addr: SocketAddr,
        fault: pipeline::FaultHook,
    ) -> anyhow::Result<Self> {
        let pipeline = Pipeline::with_fault(pool.clone(), settings.pipeline(), fault);
        Self::assemble(pool, settings, pipeline, metrics_addr).await
    }

    async fn assemble(
        pool: PgPool,
        settings: Settings,
        pipeline: Pipeline,
        metrics_addr: SocketAddr,
    ) -> anyhow::Result<Self> {
        let metrics = TcpListener::bind(metrics_addr)
            .await
            .with_context(|| format!("METRICS_ADDR: cannot listen on {metrics_addr}"))?;
        Ok(Self {
            pool,
            settings,
            pipeline,
            metrics,
        })
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics.local_addr().expect("bound listener")
    }

    /// Works until `shutdown` resolves; then stops claiming, finishes in-flight jobs (up to
    /// the drain timeout) and returns.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let server = tokio::spawn(server::serve(self.metrics, self.pool.clone(), stop.clone()));
        let retention = tokio::spawn(retention::run(
            self.pool.clone(),
            self.settings.retention,
            self.settings.retention_interval,
            stop.clone(),
        ));
        let rollup = tokio::spawn(rollup::run(
            self.pool.clone(),
            self.settings.rollup_grace,
            self.settings.rollup_interval,
            stop.clone(),
        ));
        let rescue = tokio::spawn(rescue::run(self.pool.clone(), stop.clone()));
        supervisor::run(self.pool, self.settings, self.pipeline, stop).await;
        retention.abort();
        rollup.abort();
        rescue.abort();
        let _ = server.await;
        tracing::info!("clerk-sync-worker stopped");
        Ok(())
    }
}
