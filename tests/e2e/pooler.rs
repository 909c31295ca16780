//! Supabase's connections as they are, behind a real PgBouncer: a session pooler works end
//! to end; a transaction pooler (port 6543 on Supabase) is refused at start with one line
//! naming the connection string to use, by ingest and worker alike, and nothing hangs.

use std::time::Duration;

use clerk_sync_tests::{
    Signer, TestApp,
    events::user_event,
    http::{client, request},
    pgbouncer::{PgBouncer, PoolMode},
    procs::{bin, free_port, spawn_ingest, wait_for_port},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_transaction_pooler_ingest_and_worker_refuse_to_start_with_one_line() {
    let app = TestApp::builder().without_worker().start().await;
    let pooler = PgBouncer::start(PoolMode::Transaction);
    let url = pooler.url(&app.db.name);
    for (binary, env) in [
        (
            "clerk-sync-ingest",
            vec![
                ("CLERK_WEBHOOK_SECRET", clerk_sync_tests::signing::SECRET),
                ("LISTEN_ADDR", "127.0.0.1:0"),
            ],
        ),
        ("clerk-sync-worker", vec![("METRICS_ADDR", "127.0.0.1:0")]),
        ("clerk-sync", vec![]),
    ] {
        let mut command = tokio::process::Command::new(bin(binary));
        if binary == "clerk-sync" {
            command.arg("status");
        }
        let run = command
            .env("DATABASE_URL", &url)
            .env("RUST_BACKTRACE", "1")
            .envs(env)
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .unwrap_or_else(|_| panic!("{binary} hung behind a transaction pooler"))
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{binary}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("error: {}\n", clerk_sync_core::db::TRANSACTION_POOLER),
            "{binary}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_session_pooler_an_event_becomes_a_row() {
    let app = TestApp::builder().without_worker().start().await;
    let pooler = PgBouncer::start(PoolMode::Session);
    let url = pooler.url(&app.db.name);
    let port = free_port();
    let _ingest = spawn_ingest(&url, port, &format!("{}-pooled-ingest", app.db.name), &[]);
    let _worker =
        clerk_sync_tests::procs::spawn_worker(&url, &format!("{}-pooled-worker", app.db.name));
    wait_for_port(port).await;
    let d = Signer::default().sign(&user_event(
        "created",
        "user_pooled",
        1_760_000_000_000,
        "Pooled",
    ));
    let answer = request(
        &client(),
        "POST",
        &format!("http://127.0.0.1:{port}/webhooks/clerk"),
        &d.headers(),
        d.body.clone(),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 202, "{answer:?}");
    let stats = app.settle().await;
    assert_eq!((stats.done, stats.dead), (1, 0));
    assert_eq!(
        app.count("SELECT count(*) FROM clerk.users WHERE first_name = 'Pooled'")
            .await,
        1
    );
}
