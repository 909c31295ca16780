//! Connection pool and migrations.

use std::time::Duration;

use anyhow::Context as _;
use sqlx::{
    Connection as _, PgConnection, PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
};

/// How long a request may wait for a connection before it is refused (ingest answers 503).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Our migrations (history in `clerk_sync._sqlx_migrations`, see `sqlx.toml`); apalis's run
/// first (see [`migrate`]) and keep their own history table.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// Server settings for every connection of a pool.
#[derive(Debug, Clone, Default)]
pub struct Session {
    /// The server cancels any statement that runs longer (a slow or locked database).
    pub statement_timeout: Option<Duration>,
    /// A statement waiting longer than this for a lock fails instead of waiting on.
    pub lock_timeout: Option<Duration>,
    /// `synchronous_commit = off`: a commit returns before its WAL is flushed. Safe only
    /// where losing the last few commits in a server crash is harmless (see the worker).
    pub asynchronous_commit: bool,
}

/// Opens a pool that fails fast when the database is unreachable instead of hanging:
/// acquiring a connection gives up after [`ACQUIRE_TIMEOUT`].
pub async fn connect(
    url: &str,
    app_name: &str,
    max_connections: u32,
    session: Session,
) -> anyhow::Result<PgPool> {
    let mut options = connect_options(url)?.application_name(app_name);
    let mut settings = Vec::new();
    if let Some(t) = session.statement_timeout {
        settings.push(("statement_timeout", format!("{}ms", t.as_millis().max(1))));
    }
    if let Some(t) = session.lock_timeout {
        settings.push(("lock_timeout", format!("{}ms", t.as_millis().max(1))));
    }
    if session.asynchronous_commit {
        settings.push(("synchronous_commit", "off".to_owned()));
    }
    if !settings.is_empty() {
        options = options.options(settings);
    }
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .connect_lazy_with(options))
}

pub fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    url.parse::<PgConnectOptions>()
        .context("DATABASE_URL is not a valid PostgreSQL connection string")
}

/// Applies apalis's migrations, then ours. Safe to run twice and concurrently: the whole run
/// holds one advisory lock, so a second `migrate` waits and then finds nothing to do.
pub async fn migrate(url: &str) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect_with(&connect_options(url)?)
        .await
        .context("connecting to the database")?;
    sqlx::query("SELECT pg_advisory_lock(726273656101)")
        .execute(&mut conn)
        .await
        .context("taking the migration lock")?;
    let result = async {
        apalis_postgres::PostgresStorage::migrations()
            .run(&mut conn)
            .await
            .context("applying apalis migrations")?;
        MIGRATOR
            .run(&mut conn)
            .await
            .context("applying clerk-sync migrations")
    }
    .await;
    let _ = sqlx::query("SELECT pg_advisory_unlock(726273656101)")
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    result
}

/// apalis's own attempt cap on every job we enqueue: a backstop far above the worker's
/// `MAX_ATTEMPTS`, which is what really dead-letters a job (the worker kills it).
pub const JOB_MAX_ATTEMPTS: usize = 1000;

/// A fresh job id (`apalis.jobs.id` is a ULID), chosen before the event row is written so
/// that the event can name its job.
pub fn new_job_id() -> ulid::Ulid {
    ulid::Ulid::generate()
}

/// Enqueues the job for a stored event inside the caller's transaction. The insert's
/// trigger NOTIFYs the workers when the transaction commits.
pub async fn enqueue_event(
    tx: &mut sqlx::PgConnection,
    job_id: ulid::Ulid,
    event_id: i64,
) -> Result<(), apalis_postgres::Error> {
    enqueue_events(tx, &[(job_id, event_id)]).await
}

/// Enqueues the jobs of many stored events in one statement.
pub async fn enqueue_events(
    tx: &mut sqlx::PgConnection,
    jobs: &[(ulid::Ulid, i64)],
) -> Result<(), apalis_postgres::Error> {
    // apalis's NOTIFY trigger fires only when run_at <= now() (the transaction's start) and
    // push_tasks floors run_at to whole seconds of our clock: one second back keeps the
    // NOTIFY reliable without delaying the job.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let tasks = jobs
        .iter()
        .map(|(job_id, event_id)| {
            let args = serde_json::to_vec(&crate::EventJob {
                event_id: *event_id,
            })
            .expect("serialises");
            apalis_core::task::builder::TaskBuilder::new(args)
                .task_id(apalis_core::task::task_id::TaskId::from_ulid(*job_id))
                .max_attempts(JOB_MAX_ATTEMPTS)
                .run_at_timestamp(now.saturating_sub(1))
                .build()
        })
        .collect();
    apalis_postgres::queries::push_tasks(tx, crate::QUEUE, tasks).await
}

/// The versions of apalis's migrations this build applies (tests key their template on it).
pub fn apalis_migration_versions() -> Vec<i64> {
    apalis_postgres::PostgresStorage::migrations()
        .iter()
        .map(|m| m.version)
        .collect()
}
