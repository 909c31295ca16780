//! Connection pool and migrations.

use std::time::Duration;

use anyhow::Context as _;
use sqlx::{
    Connection as _, PgConnection, PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgDatabaseError, PgPoolOptions},
};

/// How long a request may wait for a connection before it is refused (ingest answers 503).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a connection given back to the pool may take to answer a ping before it is
/// closed as dead (see [`connect`]).
pub const RELEASE_PING_TIMEOUT: Duration = Duration::from_secs(2);

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
/// acquiring a connection gives up after [`ACQUIRE_TIMEOUT`]. The session settings are
/// `SET` on each new connection rather than sent as startup parameters, which a pooler may
/// refuse or drop (PgBouncer refuses `options` unless told to ignore it, silently then).
pub async fn connect(
    url: &str,
    app_name: &str,
    max_connections: u32,
    session: Session,
) -> anyhow::Result<PgPool> {
    let options = connect_options(url)?.application_name(app_name);
    // Over TCP, each new connection gets TCP_NODELAY, which sqlx 0.9.0 leaves off.
    let tcp_port = options.get_socket().is_none().then(|| options.get_port());
    let mut sets = String::new();
    if let Some(t) = session.statement_timeout {
        sets += &format!("SET statement_timeout = '{}ms';", t.as_millis().max(1));
    }
    if let Some(t) = session.lock_timeout {
        sets += &format!("SET lock_timeout = '{}ms';", t.as_millis().max(1));
    }
    if session.asynchronous_commit {
        sets += "SET synchronous_commit = off;";
    }
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        // sqlx pings every connection it takes back, with no time limit: on a half-open
        // connection (a black-holed link, a server that vanished without a reset) that ping
        // would hold the connection's slot until TCP gives up, 15 minutes later, and the
        // pool would run dry. Checking first under a short limit closes such a connection.
        // The check also closes a connection left inside a transaction it does not know
        // about (see [`leaked_transaction`]): reused, its statements would never commit.
        .after_release(|conn, _| {
            Box::pin(async move {
                match tokio::time::timeout(RELEASE_PING_TIMEOUT, leaked_transaction(conn)).await {
                    Ok(Ok(false)) => Ok(true),
                    Ok(Ok(true)) => {
                        tracing::warn!(
                            "closing a pooled connection left inside a transaction \
                             (a cancelled BEGIN); it is rolled back"
                        );
                        Ok(false)
                    }
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(sqlx::Error::Io(std::io::ErrorKind::TimedOut.into())),
                }
            })
        })
        .after_connect(move |conn, _| {
            let sets = sets.clone();
            Box::pin(async move {
                if let Some(port) = tcp_port
                    && let Err(e) = crate::nodelay::set_on_connections_to(port)
                {
                    // Once: where the kernel refuses (before Linux 5.6, a seccomp filter),
                    // every connection would say the same.
                    static SAID: std::sync::Once = std::sync::Once::new();
                    SAID.call_once(|| {
                        tracing::warn!(
                            error = %e,
                            "cannot set TCP_NODELAY on database connections; statements \
                             over one TCP segment may wait up to 40 ms for the server's ACK"
                        );
                    });
                }
                if !sets.is_empty() {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(sets))
                        .execute(conn)
                        .await?;
                }
                Ok(())
            })
        })
        .connect_lazy_with(options))
}

/// Whether `conn`, given back to its pool, is still inside a transaction that no
/// `Transaction` owns. sqlx 0.9 leaves one when a `begin()` is cancelled while its `BEGIN`
/// is in flight (a timeout, a task stopped): the server is in the transaction, the
/// connection's own count says it is not, and every later statement on it would run
/// inside that transaction, acknowledged but never committed. `transaction_timestamp()`
/// is the start of the current statement only when the statement is its transaction's
/// first, as every statement outside an explicit transaction is; this one round trip
/// replaces sqlx's ping (a queued `ROLLBACK` of a dropped `Transaction` runs before it).
pub async fn leaked_transaction(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Row as _;
    sqlx::raw_sql("SELECT transaction_timestamp() <> statement_timestamp()")
        .fetch_one(conn)
        .await?
        .try_get(0)
}

pub fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    crate::config::check_database_url(url).map_err(|e| anyhow::anyhow!("DATABASE_URL: {e}"))?;
    url.parse::<PgConnectOptions>()
        .map(|o| {
            // A startup parameter PgBouncer refuses by default; we read no floats that need it.
            o.extra_float_digits(None)
        })
        .map_err(|e| anyhow::anyhow!("DATABASE_URL: {}", describe(&e)))
}

/// How long [`connect_once`] waits for the server before saying it does not answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One connection, made now: the real reason when it fails (refused, unknown host, no such
/// database, authentication), where a pool would only say that it timed out.
pub async fn connect_once(url: &str) -> anyhow::Result<PgConnection> {
    let options = connect_options(url)?;
    let place = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    let why =
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
            Ok(Ok(conn)) => return Ok(conn),
            Ok(Err(e)) => describe(&e),
            Err(_) => format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        };
    anyhow::bail!("cannot connect to PostgreSQL at {place} ({why}); check DATABASE_URL")
}

/// What a binary says when the schema it needs is missing or older than it.
pub const NOT_MIGRATED: &str = "the database is not migrated; run `clerk-sync migrate`";

/// The start-up check of ingest, worker and the CLI's readers: the database answers and
/// holds every migration this build knows (apalis's and ours). A newer schema is fine (a
/// rolling upgrade migrates first). Needs no privilege beyond connecting: a role that may
/// not read the migration history (`deploy/sql/roles.sql` grants it) is checked only by
/// the tables being there.
pub async fn check(url: &str) -> anyhow::Result<()> {
    let mut conn = connect_once(url).await?;
    // The session first: through a transaction pooler the schema check's prepared
    // statements would fail with a message that says nothing useful.
    let result = match check_session(&mut conn, url).await {
        Ok(()) => check_migrated(&mut conn).await,
        Err(e) => Err(e),
    };
    let _ = conn.close().await;
    result
}

/// What a binary says when its connections would not keep their session.
pub const TRANSACTION_POOLER: &str = "DATABASE_URL points at a pooler that hands each \
     transaction to another server session (PgBouncer's pool_mode=transaction, Supabase's \
     transaction pooler on port 6543); clerk-sync needs its session (LISTEN, advisory locks, \
     prepared statements): use a direct connection or a session pooler (Supabase: the \
     session pooler's connection string, port 5432)";

/// Refuses a transaction-mode pooler, where a connection's statements land on whichever
/// server session is free: between transactions, the session (its backend pid) changes. A
/// direct connection or a session pooler keeps one. Two connections hold two sessions at
/// once, then release them in both orders, so a pooler that reuses the last released
/// session (PgBouncer's default) or the first (round robin) is caught either way.
async fn check_session(first: &mut PgConnection, url: &str) -> anyhow::Result<()> {
    // The simple protocol throughout: no prepared statement to lose between sessions.
    async fn pid(conn: &mut PgConnection) -> Result<i32, sqlx::Error> {
        use sqlx::Row as _;
        sqlx::raw_sql("SELECT pg_backend_pid()")
            .fetch_one(conn)
            .await?
            .try_get(0)
    }
    let probe = async {
        let mut second = connect_once(url).await?;
        let result: Result<bool, sqlx::Error> = async {
            let mine = pid(first).await?;
            for first_releases_first in [true, false] {
                sqlx::raw_sql("BEGIN").execute(&mut *first).await?;
                let held = pid(first).await?;
                sqlx::raw_sql("BEGIN").execute(&mut second).await?;
                pid(&mut second).await?;
                let (a, b) = if first_releases_first {
                    (&mut *first, &mut second)
                } else {
                    (&mut second, &mut *first)
                };
                sqlx::raw_sql("COMMIT").execute(&mut *a).await?;
                sqlx::raw_sql("COMMIT").execute(&mut *b).await?;
                if held != mine || pid(first).await? != mine {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        .await;
        let _ = second.close().await;
        result.map_err(|e| anyhow::anyhow!("checking the session: {}", describe(&e)))
    };
    // A pooler with a single server connection makes the second session wait: that is not
    // a session either.
    match tokio::time::timeout(CONNECT_TIMEOUT, probe).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) | Err(_) => anyhow::bail!(TRANSACTION_POOLER),
        Ok(Err(e)) => Err(e),
    }
}

async fn check_migrated(conn: &mut PgConnection) -> anyhow::Result<()> {
    let (tables, ours, theirs): (bool, bool, bool) = sqlx::query_as(
        "SELECT to_regclass('apalis.jobs') IS NOT NULL
                AND to_regclass('clerk_sync.webhook_events') IS NOT NULL
                AND to_regclass('clerk_sync._sqlx_migrations') IS NOT NULL
                AND to_regclass('apalis._sqlx_migrations') IS NOT NULL,
            coalesce(has_column_privilege(to_regclass('clerk_sync._sqlx_migrations'), 'version', 'SELECT')
                 AND has_column_privilege(to_regclass('clerk_sync._sqlx_migrations'), 'success', 'SELECT'), false),
            coalesce(has_column_privilege(to_regclass('apalis._sqlx_migrations'), 'version', 'SELECT')
                 AND has_column_privilege(to_regclass('apalis._sqlx_migrations'), 'success', 'SELECT'), false)",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(schema_error)?;
    if !tables {
        anyhow::bail!(NOT_MIGRATED);
    }
    let history = [
        (
            ours,
            "clerk_sync._sqlx_migrations",
            our_migration_versions(),
        ),
        (
            theirs,
            "apalis._sqlx_migrations",
            crate::jobs::apalis_migration_versions(),
        ),
    ];
    for (readable, table, known) in history {
        if !readable {
            continue;
        }
        let applied: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT version FROM {table} WHERE success"
        )))
        .fetch_all(&mut *conn)
        .await
        .map_err(schema_error)?;
        if known.iter().any(|v| !applied.contains(v)) {
            anyhow::bail!(NOT_MIGRATED);
        }
    }
    Ok(())
}

fn schema_error(e: sqlx::Error) -> anyhow::Error {
    match describe(&e) {
        line if line.starts_with("the database is not migrated") => anyhow::anyhow!(line),
        line => anyhow::anyhow!("checking the schema: {line}"),
    }
}

fn our_migration_versions() -> Vec<i64> {
    MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| m.version)
        .collect()
}

/// One clean sentence for a database error, for logs, job errors and the CLI: PostgreSQL's
/// message and detail without sqlx's prefixes or the server's source line; a connection
/// failure by its cause (`connection refused`, `unknown host`); a missing table or schema
/// of ours as "not migrated" (with PostgreSQL's message).
pub fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.try_downcast_ref::<PgDatabaseError>() {
            Some(pg) if is_missing_schema(pg) => format!(
                "the database is not migrated ({}); run `clerk-sync migrate`",
                pg.message()
            ),
            Some(pg) => match pg.detail() {
                Some(detail) => format!("{}: {detail}", pg.message()),
                None => pg.message().to_owned(),
            },
            None => db.message().to_owned(),
        },
        sqlx::Error::Io(io) => describe_io(io),
        sqlx::Error::Tls(e) => format!("TLS: {}", innermost(e.as_ref())),
        sqlx::Error::PoolTimedOut => format!(
            "no database connection within {} s (the server does not answer, or every \
             connection is busy)",
            ACQUIRE_TIMEOUT.as_secs()
        ),
        sqlx::Error::Configuration(e) => format!("bad connection settings: {e}"),
        sqlx::Error::Migrate(m) => match m.as_ref() {
            sqlx::migrate::MigrateError::Execute(e)
            | sqlx::migrate::MigrateError::ExecuteMigration(e, _) => describe(e),
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}

/// A relation or schema of ours (or apalis's) that does not exist: the schema is missing.
fn is_missing_schema(pg: &PgDatabaseError) -> bool {
    matches!(pg.code(), "42P01" | "3F000")
        && ["\"apalis", "\"clerk_sync", "\"clerk."]
            .iter()
            .any(|name| pg.message().contains(name))
}

fn describe_io(io: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match io.kind() {
        ErrorKind::ConnectionRefused => "connection refused".into(),
        ErrorKind::ConnectionReset => "connection reset by the server".into(),
        ErrorKind::TimedOut => "timed out".into(),
        ErrorKind::NotFound => "no such socket".into(),
        _ => {
            // e.g. "failed to lookup address information: Name or service not known"
            let text = innermost(io);
            match text.strip_prefix("failed to lookup address information: ") {
                Some("Name or service not known" | "No address associated with hostname") => {
                    "unknown host".into()
                }
                Some(why) => format!("cannot resolve the host: {}", why.to_lowercase()),
                None => text,
            }
        }
    }
}

/// The deepest cause's text, without the OS error number.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let text = cur.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// Applies apalis's migrations, then ours. Safe to run twice and concurrently: the whole run
/// holds one advisory lock, so a second `migrate` waits and then finds nothing to do.
pub async fn migrate(url: &str) -> anyhow::Result<()> {
    let mut conn = connect_once(url).await?;
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
