//! Each test gets its own database, created from a template that was migrated once
//! (keyed by the migrations' contents) and dropped when the test ends.

use std::sync::atomic::{AtomicU32, Ordering};

// Database names below are ours (template hash, pid, counter), never user input.
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, PgPool, postgres::PgConnectOptions};

/// The server the tests use: `DATABASE_URL` (deploy/test.sh sets it from deploy/db.sh).
pub fn server_url() -> String {
    std::env::var("DATABASE_URL").expect(
        "DATABASE_URL is not set: run the tests with deploy/test.sh, or point DATABASE_URL at a \
         PostgreSQL server whose user may create databases",
    )
}

fn url_for(database: &str) -> String {
    let opts: PgConnectOptions = server_url().parse().expect("DATABASE_URL parses");
    let base = server_url();
    // Replace the database part of the URL, keeping user, host, port and parameters.
    let (head, tail) = match base.split_once('?') {
        Some((h, t)) => (h.to_owned(), format!("?{t}")),
        None => (base.clone(), String::new()),
    };
    let head = match opts.get_database() {
        Some(db) if head.ends_with(&format!("/{db}")) => head[..head.len() - db.len()].to_owned(),
        _ if head.ends_with('/') => head,
        _ => format!("{head}/"),
    };
    format!("{head}{database}{tail}")
}

async fn admin() -> PgConnection {
    PgConnection::connect(&url_for("postgres"))
        .await
        .expect("connecting to the test server's postgres database")
}

fn template_name() -> String {
    // FNV-1a over the migrations and the apalis version: a change makes a new template.
    let mut hash: u64 = 0xcbf29ce484222325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x100000001b3);
        }
    };
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("migrations dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for f in files {
        feed(f.file_name().unwrap().as_encoded_bytes());
        feed(&std::fs::read(&f).unwrap());
    }
    for m in apalis_migrations() {
        feed(&m.to_le_bytes());
    }
    format!("clerk_sync_tmpl_{hash:016x}")
}

fn apalis_migrations() -> Vec<i64> {
    clerk_sync_core::jobs::apalis_migration_versions()
}

async fn ensure_template() -> String {
    let name = template_name();
    let mut conn = admin().await;
    sqlx::query("SELECT pg_advisory_lock(726273656102)")
        .execute(&mut conn)
        .await
        .unwrap();
    let ready: Option<bool> =
        sqlx::query_scalar("SELECT datistemplate FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_optional(&mut conn)
            .await
            .unwrap();
    if ready != Some(true) {
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .unwrap();
        clerk_sync_core::db::migrate(&url_for(&name))
            .await
            .expect("migrating the template database");
        sqlx::query(AssertSqlSafe(format!(
            "ALTER DATABASE \"{name}\" IS_TEMPLATE true"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
        // When it was made: other checkouts' runs leave a template alone for a day.
        sqlx::query(AssertSqlSafe(format!(
            "COMMENT ON DATABASE \"{name}\" IS 'clerk-sync test template, made {}'",
            chrono::Utc::now().timestamp()
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    drop_leftovers(&mut conn, &name).await;
    sqlx::query("SELECT pg_advisory_unlock(726273656102)")
        .execute(&mut conn)
        .await
        .unwrap();
    name
}

/// Drops what earlier runs left on the server (called under the template lock): test
/// databases whose process is gone (a crashed or killed run), and templates of other
/// migration sets. Processes are this machine's, so only for a server on this machine.
/// Nothing is forced: a database someone is connected to stays. Templates stay while
/// another run is alive (it has test databases), as that run may be using one, and for a
/// day after they were made: a checkout with other migrations (a branch being worked on)
/// comes back to its template between two of its tests.
async fn drop_leftovers(conn: &mut PgConnection, current: &str) {
    let opts: PgConnectOptions = server_url().parse().expect("DATABASE_URL parses");
    let host = opts.get_host();
    let local = ["localhost", "127.0.0.1", "::1"].contains(&host) || host.starts_with('/');
    if !local || !std::path::Path::new("/proc/self").exists() {
        return;
    }
    // With whether someone is connected: DROP would wait 5 s for them, then fail.
    let rows: Vec<(String, bool)> = sqlx::query_as(
        r"SELECT datname, EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)
                 OR coalesce(substring(shobj_description(d.oid, 'pg_database')
                                       FROM 'made ([0-9]+)')::int8, 0)
                    > extract(epoch FROM now() - interval '1 day')
          FROM pg_database d
          WHERE datname LIKE 'clerk\_sync\_tmpl\_%' OR datname LIKE 'clerk\_sync\_test\_%'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default();
    // /proc/PID/stat is "PID (COMM) STATE PPID ..."; COMM may hold spaces and parentheses.
    let parent = |pid: u32| -> Option<String> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Some(stat.rsplit_once(") ")?.1.split(' ').nth(1)?.to_owned())
    };
    // Tests of this run are this process or its siblings (nextest runs one test a process).
    let ours = parent(std::process::id());
    let mut other_run_alive = false;
    let mut doomed = Vec::new();
    for (name, in_use) in &rows {
        let Some(rest) = name.strip_prefix("clerk_sync_test_") else {
            continue;
        };
        let Some(pid) = rest.split('_').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        match parent(pid) {
            None if !in_use => doomed.push(name.clone()),
            None => {}
            Some(p) => other_run_alive |= pid != std::process::id() && Some(p) != ours,
        }
    }
    for (name, in_use) in &rows {
        if name.starts_with("clerk_sync_tmpl_") && name != current && !in_use && !other_run_alive {
            doomed.push(name.clone());
        }
    }
    let sql = |s: String| sqlx::query(AssertSqlSafe(s));
    for name in doomed {
        let template = name.starts_with("clerk_sync_tmpl_");
        // A template cannot be dropped as such: unmark it, and mark it again if it is in use.
        if template {
            let _ = sql(format!("ALTER DATABASE \"{name}\" IS_TEMPLATE false"))
                .execute(&mut *conn)
                .await;
        }
        if sql(format!("DROP DATABASE IF EXISTS \"{name}\""))
            .execute(&mut *conn)
            .await
            .is_err()
            && template
        {
            let _ = sql(format!("ALTER DATABASE \"{name}\" IS_TEMPLATE true"))
                .execute(&mut *conn)
                .await;
        }
    }
}

/// A migrated database of its own, dropped on drop.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestDb {
    pub async fn new() -> Self {
        let template = ensure_template().await;
        Self::create(&template).await
    }

    /// An empty database, not migrated.
    pub async fn empty() -> Self {
        Self::create("template0").await
    }

    async fn create(template: &str) -> Self {
        let name = format!(
            "clerk_sync_test_{}_{}_{:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            fastrand::u32(..)
        );
        let mut conn = admin().await;
        let create = format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"");
        if let Err(e) = sqlx::query(AssertSqlSafe(create.clone()))
            .execute(&mut conn)
            .await
        {
            // The template went away under us (an older run's leftover cleanup): make it
            // again, once.
            let missing = e
                .as_database_error()
                .is_some_and(|d| d.code().as_deref() == Some("3D000"));
            assert!(missing, "creating the test database: {e}");
            assert_eq!(ensure_template().await, template);
            sqlx::query(AssertSqlSafe(create))
                .execute(&mut conn)
                .await
                .expect("creating the test database");
        }
        let url = url_for(&name);
        let pool = clerk_sync_core::db::connect(&url, "clerk-sync-tests", 20, Default::default())
            .await
            .unwrap();
        Self { name, url, pool }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Connections still open (the test's runtime is blocked here) are ended by FORCE.
        // Drop runs outside any runtime we can block on: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut conn = admin().await;
                let _ = sqlx::query(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await;
            });
        })
        .join();
    }
}
