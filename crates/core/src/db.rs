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

/// One clean sentence for a database error, for logs, job errors and the CLI: PostgreSQL's
/// own message (with its detail), without sqlx's prefixes.
pub fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => {
            let mut message = db.message().to_owned();
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                && let Some(detail) = pg.detail()
            {
                message.push_str(": ");
                message.push_str(detail);
            }
            message
        }
        other => other.to_string(),
    }
}

/// Whether retrying cannot help: the database refused the data itself (SQLSTATE class 22,
/// data exception, e.g. a value of the wrong type; class 23, integrity constraint
/// violation, e.g. a CHECK or NOT NULL). Everything else (connections, timeouts, locks,
/// deadlocks, a missing table during an upgrade, a trigger's own exception) may pass.
pub fn is_permanent(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    db.code()
        .is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
}
