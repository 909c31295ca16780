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
    }
    sqlx::query("SELECT pg_advisory_unlock(726273656102)")
        .execute(&mut conn)
        .await
        .unwrap();
    name
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
        sqlx::query(AssertSqlSafe(format!(
            "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
        )))
        .execute(&mut conn)
        .await
        .expect("creating the test database");
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
