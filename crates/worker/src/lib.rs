//! `clerk-sync-worker`: consumes the event jobs with apalis on PostgreSQL and applies them
//! to the mirror, with real backoff between attempts, dead letters and retention.
//!
//! apalis gives us claiming (`FOR UPDATE SKIP LOCKED`), heartbeats and orphan rescue. Around
//! it we add what it lacks: acks in the transaction that applies the event, many jobs per
//! transaction under load (`apply`), every failure written back by us with a delay before
//! the job's next attempt (its `run_at`), our own attempt cap, panics as failed attempts,
//! every error kept, a wake-up on each NOTIFY (`wakeup`), a supervisor that rebuilds the
//! apalis worker under a fresh name when the database drops it, and pruning that never
//! touches dead letters.

mod apply;
mod backoff;
pub mod handler;
pub mod metrics;
pub mod retention;
mod wakeup;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use apalis::prelude::{WorkerBuilder, WorkerBuilderExt as _};
use apalis_core::backend::ext::poll_strategy::PollWith;
use apalis_postgres::{PostgresStorage, Pubsub};
use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use clap::Parser;
use clerk_sync_core::{
    QUEUE,
    config::{DatabaseArgs, LogArgs},
};
use sqlx::PgPool;
use tokio::{net::TcpListener, sync::watch};

pub use backoff::Backoff;
pub use handler::BeforeApply;

/// Applies stored Clerk events to the mirror tables, with retries and dead letters.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "clerk-sync-worker",
    version,
    about,
    long_about = None,
    after_help = "Exit status: 0 stopped (SIGTERM), 1 failed (database unusable at start, port in use), 2 bad setting."
)]
pub struct Config {
    #[command(flatten)]
    pub db: DatabaseArgs,

    /// Jobs claimed and in flight at once in this process (also how many one fetch claims)
    /// [1..=10000].
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = 256,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub worker_concurrency: usize,

    /// Transactions applying jobs at once in this process (each holds a connection; fewer
    /// than DB_MAX_CONNECTIONS) [1..=256].
    #[arg(long, env = "APPLY_TRANSACTIONS", default_value_t = 4,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=256))]
    pub apply_transactions: usize,

    /// The most jobs one transaction applies and acks; 1 applies each job on its own
    /// [1..=10000].
    #[arg(long, env = "APPLY_BATCH", default_value_t = 64,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub apply_batch: usize,

    /// Attempts before a job is dead-lettered (permanent errors die at the first)
    /// [1..=1000].
    #[arg(long, env = "MAX_ATTEMPTS", default_value_t = 10,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new()
              .range(1..=clerk_sync_core::db::JOB_MAX_ATTEMPTS as u64))]
    pub max_attempts: usize,

    /// Backoff base: attempt n waits about base × 2^(n-1), with jitter, up to the cap
    /// [1..=3600000].
    #[arg(long, env = "RETRY_BASE_DELAY_MS", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub retry_base_delay_ms: u64,

    /// Longest wait between two attempts; at least RETRY_BASE_DELAY_MS [1..=86400000].
    #[arg(long, env = "RETRY_MAX_DELAY_MS", default_value_t = 3_600_000,
          value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub retry_max_delay_ms: u64,

    /// Polling fallback for what NOTIFY does not announce (retries, replays, rescues)
    /// [10..=60000].
    #[arg(long, env = "POLL_INTERVAL_MS", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub poll_interval_ms: u64,

    /// Heartbeat period; a worker silent for 3 heartbeats has its jobs re-enqueued
    /// [1..=300].
    #[arg(long, env = "HEARTBEAT_INTERVAL_SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub heartbeat_interval_secs: u64,

    /// Longest a single attempt may take before it counts as failed [100..=600000].
    #[arg(long, env = "JOB_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub job_timeout_ms: u64,

    /// Done jobs and their raw events older than this are pruned (dead ones never are)
    /// [1..=87600].
    #[arg(long, env = "RETENTION_HOURS", default_value_t = 168,
          value_parser = clap::value_parser!(u64).range(1..=87_600))]
    pub retention_hours: u64,

    /// Serves `/metrics` and `/healthz`.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:9091")]
    pub metrics_addr: SocketAddr,

    /// Database connections in the pool; more than APPLY_TRANSACTIONS [2..=1000].
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 24,
          value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub db_max_connections: u32,

    #[command(flatten)]
    pub log: LogArgs,
}

/// The rules between settings; each one's range is its value parser's.
impl clerk_sync_core::exit::Validate for Config {
    fn validate(&self) -> Result<(), String> {
        if self.retry_max_delay_ms < self.retry_base_delay_ms {
            return Err(format!(
                "RETRY_MAX_DELAY_MS (--retry-max-delay-ms): {} is less than RETRY_BASE_DELAY_MS ({})",
                self.retry_max_delay_ms, self.retry_base_delay_ms
            ));
        }
        // Each applying transaction holds a connection; claiming, heartbeats and
        // retention need at least one more.
        if self.db_max_connections as usize <= self.apply_transactions {
            return Err(format!(
                "DB_MAX_CONNECTIONS (--db-max-connections): {} leaves no connection beside APPLY_TRANSACTIONS ({}); give it at least {}",
                self.db_max_connections,
                self.apply_transactions,
                self.apply_transactions + 1
            ));
        }
        Ok(())
    }
}

/// Everything the worker runs with, apart from the pool.
#[derive(Clone)]
pub struct Settings {
    pub concurrency: usize,
    pub max_attempts: usize,
    pub backoff: Backoff,
    pub poll_interval: Duration,
    pub heartbeat_interval: Duration,
    pub job_timeout: Duration,
    pub retention: Duration,
    pub retention_interval: Duration,
    /// How long SIGTERM waits for in-flight jobs before giving up on them (they are then
    /// rescued as orphans by another worker).
    pub drain_timeout: Duration,
    /// Runs before each event is applied: a seam for fault-injection tests (panics).
    pub before_apply: Option<BeforeApply>,
    /// Transactions applying jobs at once, and the most jobs one of them takes.
    pub appliers: usize,
    pub apply_batch: usize,
}

impl Settings {
    /// The settings as given: their ranges and the rules between them were checked when
    /// the configuration was read (see [`Config`]), so nothing is clamped here.
    pub fn from_config(c: &Config) -> Self {
        Self {
            concurrency: c.worker_concurrency,
            max_attempts: c.max_attempts,
            backoff: Backoff {
                base: Duration::from_millis(c.retry_base_delay_ms),
                cap: Duration::from_millis(c.retry_max_delay_ms),
            },
            poll_interval: Duration::from_millis(c.poll_interval_ms),
            heartbeat_interval: Duration::from_secs(c.heartbeat_interval_secs),
            job_timeout: Duration::from_millis(c.job_timeout_ms),
            retention: Duration::from_secs(c.retention_hours * 3600),
            retention_interval: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
            before_apply: None,
            appliers: c.apply_transactions,
            apply_batch: c.apply_batch,
        }
    }
}

pub struct Worker {
    pool: PgPool,
    settings: Settings,
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
        let metrics = TcpListener::bind(metrics_addr)
            .await
            .with_context(|| format!("METRICS_ADDR: cannot listen on {metrics_addr}"))?;
        Ok(Self {
            pool,
            settings,
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
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let metrics = tokio::spawn(serve_metrics(
            self.metrics,
            self.pool.clone(),
            stop_rx.clone(),
        ));
        let retention = tokio::spawn(retention_loop(
            self.pool.clone(),
            self.settings.clone(),
            stop_rx.clone(),
        ));
        supervise(self.pool, self.settings, stop_rx).await;
        retention.abort();
        let _ = metrics.await;
        tracing::info!("clerk-sync-worker stopped");
        Ok(())
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Runs the apalis worker; when the database drops it (apalis ends a worker on any backend
/// error), builds a new one under a fresh name after a short backoff. Jobs the old one had
/// claimed are rescued by the heartbeat timeout.
async fn supervise(pool: PgPool, settings: Settings, stop: watch::Receiver<bool>) {
    let appliers = apply::Appliers::start(
        pool.clone(),
        settings.before_apply.clone(),
        settings.appliers,
        settings.apply_batch,
    );
    let shared = Arc::new(handler::Shared {
        pool: pool.clone(),
        appliers,
        max_attempts: settings.max_attempts,
        backoff: settings.backoff,
        job_timeout: settings.job_timeout,
    });
    let mut restarts: u32 = 0;
    while !*stop.borrow() {
        let name = format!(
            "clerk-sync-worker-{}-{}",
            std::process::id(),
            ulid::Ulid::generate()
        );
        let config = apalis_postgres::Config::default()
            .queue(QUEUE)
            .batch_size(settings.concurrency)
            .heartbeat_interval(settings.heartbeat_interval)
            .missed_heartbeats(3)
            // get_jobs already claims the rows (Queued, lock_by = this worker); apalis's
            // extra per-task "Running" write would cost a commit per job before it starts.
            .lock_tasks(false)
            // apalis would ack each job in its own transaction, one at a time, between two
            // fetches; the handler acks in the transaction that applies the event instead
            // (and writes failures back itself), so the backend only claims.
            .persist_results(false);
        let backend = PostgresStorage::<serde_json::Value>::new(&pool).with_config(config);
        let backend = PollWith::new(
            backend,
            wakeup::Wakeups::new(
                {
                    let pool = pool.clone();
                    move || Pubsub::new(pool.clone(), QUEUE.to_owned())
                },
                settings.poll_interval,
            ),
        );
        let worker = WorkerBuilder::new(name.as_str())
            .backend(backend)
            .data(shared.clone())
            .concurrency(settings.concurrency)
            .build(handler::handle);
        tracing::info!(worker.name = %name, "claiming jobs");
        let started = tokio::time::Instant::now();
        let signal = {
            let stop = stop.clone();
            async move {
                stopped(stop).await;
                Ok::<(), std::io::Error>(())
            }
        };
        let drain_limit = {
            let stop = stop.clone();
            let drain = settings.drain_timeout;
            async move {
                stopped(stop).await;
                tokio::time::sleep(drain).await;
            }
        };
        let result = tokio::select! {
            result = worker.run_until(signal) => result,
            () = drain_limit => {
                tracing::warn!("in-flight jobs did not finish within the drain timeout; they will be rescued");
                return;
            }
        };
        if *stop.borrow() {
            if let Err(e) = result {
                tracing::warn!(error = %e, "worker ended with an error while stopping");
            }
            return;
        }
        if started.elapsed() > Duration::from_secs(60) {
            restarts = 0;
        }
        restarts += 1;
        let wait =
            Duration::from_millis(500 * 2u64.pow(restarts.min(6))).min(Duration::from_secs(30));
        match result {
            Ok(()) => tracing::warn!(
                retry_in_ms = wait.as_millis() as u64,
                "worker ended; restarting"
            ),
            Err(e) => {
                tracing::error!(error = %e, retry_in_ms = wait.as_millis() as u64, "worker failed; restarting")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stopped(stop.clone()) => return,
        }
    }
}

async fn retention_loop(pool: PgPool, settings: Settings, stop: watch::Receiver<bool>) {
    loop {
        match retention::prune(&pool, settings.retention).await {
            Ok(p) if p != retention::Pruned::default() => tracing::info!(
                jobs = p.jobs,
                events = p.events,
                errors = p.errors,
                workers = p.workers,
                "pruned past retention"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning failed; will try again"),
        }
        tokio::select! {
            () = tokio::time::sleep(settings.retention_interval) => {}
            () = stopped(stop.clone()) => return,
        }
    }
}

async fn serve_metrics(listener: TcpListener, pool: PgPool, stop: watch::Receiver<bool>) {
    async fn render(State(pool): State<PgPool>) -> impl IntoResponse {
        (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            metrics::render(&pool).await,
        )
    }
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(pool);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stopped(stop))
        .await
    {
        tracing::warn!(error = %e, "metrics server stopped");
    }
}
