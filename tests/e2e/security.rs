//! Least privilege: ingest and worker work under their own roles, and ingest cannot touch
//! the mirror.

use std::time::Duration;

use clerk_sync_tests::{TestDb, TestIngest, TestWorker, events::user_event, worker::drained};
use sqlx::{AssertSqlSafe, PgPool};

const ROLES_SQL: &str = include_str!("../../deploy/sql/roles.sql");

/// A login in `group` for this test; its pool connects to the test database.
async fn login(db: &TestDb, group: &str) -> (String, PgPool) {
    let name = format!("{group}_t{}_{:x}", std::process::id(), fastrand::u32(..));
    sqlx::query(AssertSqlSafe(format!(
        "CREATE ROLE {name} LOGIN IN ROLE {group}"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    let url = db
        .url
        .replacen("postgres://postgres@", &format!("postgres://{name}@"), 1);
    assert_ne!(url, db.url, "the test URL names user postgres");
    let pool = clerk_sync_core::db::connect(&url, "security-test", 4, Default::default())
        .await
        .unwrap();
    (name, pool)
}

async fn denied(pool: &PgPool, sql: &'static str) {
    let err = sqlx::query(sql).execute(pool).await.expect_err(sql);
    assert!(
        err.to_string().contains("permission denied"),
        "{sql}: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_worker_run_under_least_privilege_roles() {
    let db = TestDb::new().await;
    sqlx::raw_sql(ROLES_SQL).execute(&db.pool).await.unwrap();
    // Idempotent: running it again changes nothing and fails nothing.
    sqlx::raw_sql(ROLES_SQL).execute(&db.pool).await.unwrap();
    let (ingest_role, ingest_pool) = login(&db, "clerk_sync_ingest").await;
    let (worker_role, worker_pool) = login(&db, "clerk_sync_worker").await;

    let ingest = TestIngest::start(ingest_pool.clone()).await;
    assert_eq!(ingest.get("/readyz").await.status, 200);
    let d = ingest.signer.sign(&user_event(
        "created",
        "user_priv",
        1_760_000_000_000,
        "Least",
    ));
    assert_eq!(ingest.deliver(&d).await.status, 202);
    assert_eq!(ingest.deliver(&d).await.status, 200, "duplicates too");

    // Ingest may not read bodies back, nor touch the mirror or the jobs.
    denied(&ingest_pool, "SELECT body FROM clerk_sync.webhook_events").await;
    denied(&ingest_pool, "SELECT * FROM clerk.users").await;
    denied(
        &ingest_pool,
        "INSERT INTO clerk.users (id, version, raw) VALUES ('x', now(), '{}')",
    )
    .await;
    denied(&ingest_pool, "UPDATE apalis.jobs SET status = 'Done'").await;
    denied(&ingest_pool, "DELETE FROM clerk_sync.webhook_events").await;

    let worker = TestWorker::start(worker_pool.clone()).await;
    let stats = drained(&db.pool, Duration::from_secs(20)).await;
    assert_eq!((stats.done, stats.dead), (1, 0));
    assert_eq!(
        db.count("SELECT count(*) FROM clerk.users WHERE first_name = 'Least'")
            .await,
        1
    );
    let pruned = clerk_sync_worker::retention::prune(&worker_pool, Duration::from_secs(3600)).await;
    assert!(pruned.is_ok(), "the worker role may prune: {pruned:?}");
    // The worker may not forge events.
    denied(
        &worker_pool,
        "INSERT INTO clerk_sync.webhook_events (svix_id, headers, body) VALUES ('x', '{}', '')",
    )
    .await;
    worker.stop().await;
    ingest.stop().await;

    ingest_pool.close().await;
    worker_pool.close().await;
    for role in [ingest_role, worker_role] {
        sqlx::query(AssertSqlSafe(format!("DROP ROLE {role}")))
            .execute(&db.pool)
            .await
            .unwrap();
    }
}
