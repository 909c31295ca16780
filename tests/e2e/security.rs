//! Least privilege: ingest and worker work under their own roles, and ingest cannot touch
//! the mirror.

use std::time::Duration;

use clerk_sync_tests::{TestApp, events::user_event};
use sqlx::PgPool;

const ROLES_SQL: &str = include_str!("../../deploy/sql/roles.sql");

async fn denied(pool: &PgPool, sql: &'static str) {
    let err = sqlx::query(sql).execute(pool).await.expect_err(sql);
    assert!(
        err.to_string().contains("permission denied"),
        "{sql}: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_worker_run_under_least_privilege_roles() {
    let mut app = TestApp::builder()
        .without_worker()
        .setup(ROLES_SQL)
        // Idempotent: running it again changes nothing and fails nothing.
        .setup(ROLES_SQL)
        .login_as("clerk_sync_ingest", "clerk_sync_worker")
        .start()
        .await;
    assert_eq!(app.ingest.get("/readyz").await.status, 200);
    let d = app.ingest.signer.sign(&user_event(
        "created",
        "user_priv",
        1_760_000_000_000,
        "Least",
    ));
    assert_eq!(app.deliver(&d).await.status, 202);
    assert_eq!(app.deliver(&d).await.status, 200, "duplicates too");

    // Ingest may not read bodies back, nor touch the mirror or the jobs.
    let ingest = &app.ingest_pool;
    denied(ingest, "SELECT body FROM clerk_sync.webhook_events").await;
    denied(ingest, "SELECT * FROM clerk.users").await;
    denied(
        ingest,
        "INSERT INTO clerk.users (id, version, raw) VALUES ('x', now(), '{}')",
    )
    .await;
    denied(ingest, "UPDATE apalis.jobs SET attempts = 0").await;
    denied(ingest, "DELETE FROM clerk_sync.webhook_events").await;

    app.start_worker(clerk_sync_tests::worker::fast_settings())
        .await;
    let stats = app.settle().await;
    assert_eq!((stats.done, stats.dead), (1, 0));
    assert_eq!(
        app.count("SELECT count(*) FROM clerk.users WHERE first_name = 'Least'")
            .await,
        1
    );
    let pruned = clerk_sync_core::jobs::prune(&app.worker_pool, Duration::from_secs(3600)).await;
    assert!(pruned.is_ok(), "the worker role may prune: {pruned:?}");
    // The worker rolls up the console's activity under its role (a day back on its first
    // pass, an hour per transaction, each also pruning).
    clerk_sync_tests::worker::eventually(
        Duration::from_secs(20),
        "the worker's rollup",
        || async {
            (app.count("SELECT count(*) FROM clerk_sync.activity_minutes")
                .await
                >= 24 * 60)
                .then_some(())
        },
    )
    .await;
    // The worker may not forge events.
    denied(
        &app.worker_pool,
        "INSERT INTO clerk_sync.webhook_events (svix_id, headers, body) VALUES ('x', '{}', '')",
    )
    .await;
    app.stop_worker().await;
}
