//! `TestApp`: the whole system for one test. A fresh database made from the migrated
//! template, ingest on port 0 and a worker, both in-process with test-sized timings; signed
//! deliveries; a wait for the queue to settle; and, when the test ends, a check that no job
//! is dead that the test did not declare ([`TestApp::expect_dead`]).

use std::{
    sync::atomic::{AtomicI64, Ordering},
    time::Duration,
};

use clerk_sync_core::jobs::Stats;
use clerk_sync_worker::Settings;
use sqlx::PgPool;

use crate::{
    Answer, TestDb, TestIngest, TestWorker,
    http::IngestOptions,
    procs,
    signing::Delivery,
    worker::{eventually, fast_settings},
};

// Fields drop in order: the services stop before their database is dropped.
pub struct TestApp {
    workers: Vec<TestWorker>,
    pub ingest: TestIngest,
    /// The pools ingest and the worker connect with (the database's own, unless
    /// [`Builder::login_as`] gave them roles of their own).
    pub ingest_pool: PgPool,
    pub worker_pool: PgPool,
    /// Login roles made for this test, dropped at its end.
    logins: Vec<String>,
    /// The fault-injecting proxy ingest and the workers reach the database through
    /// ([`Builder::through_fault_proxy`]).
    pub proxy: Option<crate::proxy::FaultProxy>,
    expected_dead: AtomicI64,
    pub db: TestDb,
}

/// How to start a [`TestApp`].
pub struct Builder {
    settings: Settings,
    ingest: IngestOptions,
    workers: usize,
    setup: Vec<String>,
    fault: Option<clerk_sync_worker::pipeline::FaultHook>,
    login_as: Option<(String, String)>,
    through_proxy: bool,
}

impl Builder {
    /// The worker's settings (default: [`fast_settings`]).
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    pub fn ingest(mut self, options: IngestOptions) -> Self {
        self.ingest = options;
        self
    }

    /// No worker: jobs stay queued until the test starts one.
    pub fn without_worker(self) -> Self {
        self.workers(0)
    }

    /// `n` in-process workers sharing the queue (default 1).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// SQL run on the fresh database before anything starts (a trigger that injects a
    /// fault, a constraint the mirror will break, ...).
    pub fn setup(mut self, sql: &str) -> Self {
        self.setup.push(sql.to_owned());
        self
    }

    /// Ingest and worker connect as login roles of their own, made for this test in these
    /// group roles (deploy/sql/roles.sql makes `clerk_sync_ingest` and `clerk_sync_worker`).
    pub fn login_as(mut self, ingest_group: &str, worker_group: &str) -> Self {
        self.login_as = Some((ingest_group.to_owned(), worker_group.to_owned()));
        self
    }

    /// Ingest and the workers reach the database through a [`crate::proxy::FaultProxy`]
    /// (`TestApp::proxy`), with the pool settings the binaries use; the test's own pool
    /// (`TestApp::pool`) goes direct.
    pub fn through_fault_proxy(mut self) -> Self {
        self.through_proxy = true;
        self
    }

    /// A hook the worker runs before each event is applied (to inject panics).
    pub fn fault(mut self, hook: clerk_sync_worker::pipeline::FaultHook) -> Self {
        self.fault = Some(hook);
        self
    }

    pub async fn start(self) -> TestApp {
        let db = TestDb::new().await;
        for sql in &self.setup {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&db.pool)
                .await
                .unwrap_or_else(|e| panic!("setup SQL failed: {e}\n{sql}"));
        }
        let mut logins = Vec::new();
        let mut proxy = None;
        let (ingest_pool, worker_pool) = match &self.login_as {
            None if self.through_proxy => {
                let (p, url) = crate::proxy::FaultProxy::for_url(&db.url).await;
                proxy = Some(p);
                let ingest = clerk_sync_core::db::connect(
                    &url,
                    "clerk-sync-ingest",
                    16,
                    clerk_sync_core::db::Session {
                        statement_timeout: Some(self.ingest.request_timeout),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
                let worker = clerk_sync_core::db::connect(
                    &url,
                    "clerk-sync-worker",
                    8,
                    clerk_sync_core::db::Session {
                        statement_timeout: Some(self.settings.job_timeout),
                        lock_timeout: Some(self.settings.job_timeout / 4),
                        asynchronous_commit: true,
                    },
                )
                .await
                .unwrap();
                (ingest, worker)
            }
            None => (db.pool.clone(), db.pool.clone()),
            Some((ingest, worker)) => {
                let ingest = login(&db, ingest, &mut logins).await;
                let worker = login(&db, worker, &mut logins).await;
                (ingest, worker)
            }
        };
        let ingest = TestIngest::start_with(ingest_pool.clone(), self.ingest).await;
        let mut workers = Vec::new();
        for _ in 0..self.workers {
            let settings = self.settings.clone();
            workers.push(match &self.fault {
                None => TestWorker::start_with(worker_pool.clone(), settings).await,
                Some(hook) => {
                    TestWorker::start_with_fault(worker_pool.clone(), settings, hook.clone()).await
                }
            });
        }
        TestApp {
            db,
            ingest,
            workers,
            ingest_pool,
            worker_pool,
            logins,
            proxy,
            expected_dead: AtomicI64::new(0),
        }
    }
}

/// A login role in `group` for one test, and a pool that connects as it.
async fn login(db: &TestDb, group: &str, logins: &mut Vec<String>) -> PgPool {
    let name = format!("{group}_t{}_{:x}", std::process::id(), fastrand::u32(..));
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {name} LOGIN IN ROLE {group}"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    logins.push(name.clone());
    let url = db
        .url
        .replacen("postgres://postgres@", &format!("postgres://{name}@"), 1);
    assert_ne!(url, db.url, "the test URL names user postgres");
    clerk_sync_core::db::connect(&url, "test-login", 8, Default::default())
        .await
        .unwrap()
}

impl TestApp {
    pub fn builder() -> Builder {
        Builder {
            settings: fast_settings(),
            ingest: IngestOptions::default(),
            workers: 1,
            setup: Vec::new(),
            fault: None,
            login_as: None,
            through_proxy: false,
        }
    }

    /// Database, ingest and worker with the defaults.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    /// The database's URL, for real processes and the CLI.
    pub fn url(&self) -> &str {
        &self.db.url
    }

    /// Signs `body` with a fresh svix-id and posts it to ingest.
    pub async fn post(&self, body: &[u8]) -> Answer {
        self.ingest.post(body).await
    }

    /// Posts a signed delivery as it is (a retry reuses its svix-id).
    pub async fn deliver(&self, d: &Delivery) -> Answer {
        self.ingest.deliver(d).await
    }

    /// Signs and posts each body in turn; each must be stored (202).
    pub async fn post_all(&self, bodies: &[Vec<u8>]) {
        for body in bodies {
            let answer = self.post(body).await;
            assert_eq!(answer.status, 202, "{answer:?}");
        }
    }

    pub async fn stats(&self) -> Stats {
        Stats::read(&self.db.pool).await.unwrap()
    }

    /// Waits until nothing is pending, running or retrying; panics after 20 s.
    pub async fn settle(&self) -> Stats {
        self.settle_within(Duration::from_secs(20)).await
    }

    pub async fn settle_within(&self, limit: Duration) -> Stats {
        settled(&self.db.pool, limit).await
    }

    /// Declares that `n` more jobs end dead in this test; any other dead job fails it.
    pub fn expect_dead(&self, n: i64) {
        self.expected_dead.fetch_add(n, Ordering::SeqCst);
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.db.count(sql).await
    }

    /// Runs SQL (a fault to inject or remove, a constraint to drop, ...).
    pub async fn sql(&self, sql: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&self.db.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The first in-process worker's metrics address.
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        self.workers.first().expect("a worker runs").metrics_addr
    }

    /// Starts an in-process worker (after [`Builder::without_worker`] or [`Self::stop_worker`]).
    pub async fn start_worker(&mut self, settings: Settings) {
        let worker = TestWorker::start_with(self.worker_pool.clone(), settings).await;
        self.workers.push(worker);
    }

    /// Starts the in-process worker with a hook it runs before each event is applied.
    pub async fn start_worker_with_fault(
        &mut self,
        settings: Settings,
        fault: clerk_sync_worker::pipeline::FaultHook,
    ) {
        let worker = TestWorker::start_with_fault(self.worker_pool.clone(), settings, fault).await;
        self.workers.push(worker);
    }

    /// Stops the in-process workers gracefully.
    pub async fn stop_worker(&mut self) {
        for w in self.workers.drain(..) {
            w.stop().await;
        }
    }

    /// `clerk-sync-worker` as a real process on this database.
    pub fn spawn_worker(&self, label: &str, env: &[(&str, &str)]) -> tokio::process::Child {
        procs::spawn_worker_with(&self.db.url, &format!("{}-{label}", self.db.name), env)
    }

    /// Runs the `clerk-sync` CLI on this database.
    pub async fn cli(&self, args: &[&str]) -> procs::Output {
        procs::cli(&self.db.url, args).await
    }
}

/// Waits until no job is pending, running or retrying; panics after `limit`.
pub async fn settled(pool: &PgPool, limit: Duration) -> Stats {
    let what = format!("the queue to settle within {limit:?}");
    eventually(limit, &what, || async {
        let stats = Stats::read(pool).await.unwrap();
        stats.settled().then_some(stats)
    })
    .await
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let logins = std::mem::take(&mut self.logins);
        if !logins.is_empty() {
            let pools = [self.ingest_pool.clone(), self.worker_pool.clone()];
            let url = self.db.url.clone();
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async move {
                        for pool in pools {
                            pool.close().await;
                        }
                        let pool = clerk_sync_core::db::connect(&url, "test-teardown", 1, Default::default())
                            .await
                            .unwrap();
                        for role in logins {
                            let _ = sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
                                .bind(&role)
                                .execute(&pool)
                                .await;
                            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
                                .execute(&pool)
                                .await;
                        }
                        pool.close().await;
                    })
            })
            .join()
            .unwrap();
        }
        if std::thread::panicking() {
            return;
        }
        let url = self.db.url.clone();
        let expected = self.expected_dead.load(Ordering::SeqCst);
        let dead = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let pool =
                        clerk_sync_core::db::connect(&url, "test-teardown", 1, Default::default())
                            .await
                            .unwrap();
                    let stats = Stats::read(&pool).await.unwrap();
                    let dead = clerk_sync_core::jobs::dead_letters(&pool, None, 10)
                        .await
                        .unwrap();
                    pool.close().await;
                    (stats.dead, dead)
                })
        })
        .join()
        .unwrap();
        let (count, dead) = dead;
        if count > expected {
            let lines: Vec<String> = dead
                .iter()
                .map(|d| {
                    format!(
                        "  {} {} {}: {}",
                        d.job_id,
                        d.event_type.as_deref().unwrap_or("-"),
                        d.object_id.as_deref().unwrap_or("-"),
                        d.last_error.as_deref().unwrap_or("-")
                    )
                })
                .collect();
            panic!(
                "{count} dead job(s) at the end of the test, {expected} expected \
                 (TestApp::expect_dead); the newest:\n{}",
                lines.join("\n")
            );
        }
    }
}
