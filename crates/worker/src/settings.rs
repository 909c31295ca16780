//! The worker's settings: [`Config`] as read from flags and the environment (each value's
//! range checked by its parser, the rules between them by [`Validate`]), and [`Settings`],
//! what the worker runs with.

use std::{net::SocketAddr, time::Duration};

use clap::Parser;
use clerk_sync_core::{
    backoff::Backoff,
    config::{DatabaseArgs, LogArgs},
    exit::Validate,
    mirror,
};

use crate::pipeline;

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
              .range(1..=clerk_sync_core::jobs::JOB_MAX_ATTEMPTS as u64))]
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

    /// How long after a minute ends its activity figures are rolled up for the console:
    /// longer than any transaction that marks a job done, so longer than JOB_TIMEOUT_MS.
    /// Default: 120, or JOB_TIMEOUT_MS + 60 s if that is longer [1..=3600].
    #[arg(long, env = "ROLLUP_GRACE_SECS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub rollup_grace_secs: Option<u64>,

    /// Keep a deleted user's data (names, emails, phones, metadata, image, raw) in its
    /// tombstone. By default it is erased, and older events never bring it back.
    #[arg(long, env = "KEEP_DELETED_USER_DATA")]
    pub keep_deleted_user_data: bool,

    /// Mirror Clerk's sessions into clerk.sessions. Off by default (one session per sign-in
    /// is many rows): off, session events are stored, acknowledged and counted as skipped.
    #[arg(long, env = "MIRROR_SESSIONS")]
    pub mirror_sessions: bool,

    /// Serves `/metrics`, `/healthz` and `/readyz`.
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
impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        if self.retry_max_delay_ms < self.retry_base_delay_ms {
            return Err(format!(
                "RETRY_MAX_DELAY_MS (--retry-max-delay-ms): {} is less than RETRY_BASE_DELAY_MS ({})",
                self.retry_max_delay_ms, self.retry_base_delay_ms
            ));
        }
        // A job's `done_at` is the start of the transaction that applies it, which commits
        // within the attempt's time limit: the rollup must wait longer than that.
        if let Some(grace) = self.rollup_grace_secs
            && grace * 1000 <= self.job_timeout_ms
        {
            return Err(format!(
                "ROLLUP_GRACE_SECS (--rollup-grace-secs): {grace} s is not longer than JOB_TIMEOUT_MS ({} ms)",
                self.job_timeout_ms
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
#[derive(Debug, Clone)]
pub struct Settings {
    pub concurrency: usize,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub poll_interval: Duration,
    pub heartbeat_interval: Duration,
    pub job_timeout: Duration,
    pub retention: Duration,
    pub retention_interval: Duration,
    /// How long after a minute ends its activity is rolled up, and how often.
    pub rollup_grace: Duration,
    pub rollup_interval: Duration,
    /// How long SIGTERM waits for in-flight jobs before giving up on them (they are then
    /// rescued as orphans by another worker).
    pub drain_timeout: Duration,
    /// Transactions applying jobs at once, and the most jobs one of them takes.
    pub appliers: usize,
    pub apply_batch: usize,
    pub mirror: mirror::Options,
}

impl Settings {
    /// The settings as given: their ranges and the rules between them were checked when
    /// the configuration was read (see [`Config`]), so nothing is clamped here.
    pub fn from_config(c: &Config) -> Self {
        Self {
            concurrency: c.worker_concurrency,
            // At most JOB_MAX_ATTEMPTS (1000): the value parser's range.
            max_attempts: c.max_attempts as u32,
            backoff: Backoff::new(
                Duration::from_millis(c.retry_base_delay_ms),
                Duration::from_millis(c.retry_max_delay_ms),
            ),
            poll_interval: Duration::from_millis(c.poll_interval_ms),
            heartbeat_interval: Duration::from_secs(c.heartbeat_interval_secs),
            job_timeout: Duration::from_millis(c.job_timeout_ms),
            retention: Duration::from_secs(c.retention_hours * 3600),
            retention_interval: Duration::from_secs(60),
            rollup_grace: Duration::from_secs(
                c.rollup_grace_secs
                    .unwrap_or((c.job_timeout_ms / 1000 + 60).max(120)),
            ),
            rollup_interval: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            appliers: c.apply_transactions,
            apply_batch: c.apply_batch,
            mirror: mirror::Options {
                erase_personal_data: !c.keep_deleted_user_data,
                optional_kinds: if c.mirror_sessions {
                    vec!["sessions"]
                } else {
                    Vec::new()
                },
            },
        }
    }

    pub(crate) fn pipeline(&self) -> pipeline::Options {
        pipeline::Options {
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            job_timeout: self.job_timeout,
            appliers: self.appliers,
            batch: self.apply_batch,
            mirror: self.mirror.clone(),
        }
    }
}
