//! The operator's loop with the real binaries: broken → dead → inspected → fixed →
//! replayed → converged.

use std::time::Duration;

use clerk_sync_tests::{TestApp, TestDb, procs::cli, worker::eventually};
use serde_json::Value;

async fn status(app: &TestApp) -> Value {
    let out = app.cli(&["status", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_inspected_fixed_and_replayed_until_the_mirror_converges() {
    // The cause: the database refuses a value, so applying those events fails.
    let app = TestApp::builder()
        .without_worker()
        .setup("ALTER TABLE clerk.users ADD CONSTRAINT no_mallory CHECK (first_name <> 'Mallory')")
        .start()
        .await;
    app.expect_dead(2);
    let db = &app.db;
    let _worker = app.spawn_worker(
        "operator",
        &[("MAX_ATTEMPTS", "3"), ("RETRY_BASE_DELAY_MS", "50")],
    );
    let url = app.ingest.url("/webhooks/clerk");

    let dir = std::env::temp_dir().join(format!("{}-data", db.name));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, name) in ["Mallory", "Mallory", "Alice"].iter().enumerate() {
        let data =
            clerk_sync_tests::events::user_data(&format!("user_op{i}"), 1_760_000_000_000, name);
        let file = dir.join(format!("u{i}.json"));
        std::fs::write(&file, serde_json::to_vec(&data).unwrap()).unwrap();
        let out = cli(
            &db.url,
            &[
                "send-test-event",
                "user.created",
                "--url",
                &url,
                "--data",
                file.to_str().unwrap(),
            ],
        )
        .await;
        assert_eq!(out.code, 0, "{out:?}");
        assert!(
            out.stdout.contains("svix-id: msg_") && out.stdout.contains("answer: 202"),
            "{out:?}"
        );
    }
    // And a realistic sample with fresh ids, as the README shows.
    let out = cli(
        &db.url,
        &["send-test-event", "organization.created", "--url", &url],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");

    eventually(Duration::from_secs(30), "two dead letters", || async {
        let s = status(&app).await;
        (s["jobs"]["dead"] == 2 && s["jobs"]["pending"] == 0 && s["jobs"]["running"] == 0)
            .then_some(())
    })
    .await;
    let s = status(&app).await;
    assert_eq!(s["jobs"]["done"], 2);
    assert_eq!(s["events_received"], 4);
    assert!(s["oldest_pending_age_seconds"].is_i64(), "{s}");

    // Inspect: JSON, the human table, the filter, and the SQL view agree.
    let out = cli(&db.url, &["failed", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let failed: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(failed.len(), 2);
    for f in &failed {
        assert_eq!(f["event_type"], "user.created");
        assert_eq!(f["attempts"], 1, "a violated constraint is permanent: {f}");
        assert!(
            f["last_error"].as_str().unwrap().contains("no_mallory"),
            "{f}"
        );
        assert!(
            f["first_failed_at"].as_str() <= f["failed_at"].as_str(),
            "{f}"
        );
    }
    let table = cli(&db.url, &["failed"]).await.stdout;
    assert!(table.starts_with("JOB ID"), "{table}");
    for f in &failed {
        assert!(table.contains(f["job_id"].as_str().unwrap()), "{table}");
    }
    let none = cli(
        &db.url,
        &["failed", "--json", "--type", "organization.created"],
    )
    .await;
    assert_eq!(none.stdout.trim(), "[]");
    assert_eq!(
        db.count("SELECT count(*) FROM clerk_sync.dead_letters")
            .await,
        2
    );

    // Fix the cause, replay, converge.
    sqlx::query("ALTER TABLE clerk.users DROP CONSTRAINT no_mallory")
        .execute(&db.pool)
        .await
        .unwrap();
    let out = cli(&db.url, &["replay", "--all", "--type", "user.created"]).await;
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, "replayed 2 job(s)"),
        "{out:?}"
    );
    eventually(
        Duration::from_secs(30),
        "the replayed jobs to finish",
        || async {
            let s = status(&app).await;
            (s["jobs"]["done"] == 4 && s["jobs"]["dead"] == 0).then_some(())
        },
    )
    .await;
    assert_eq!(
        db.count("SELECT count(*) FROM clerk.users WHERE first_name = 'Mallory'")
            .await,
        2
    );
    assert_eq!(
        db.count("SELECT count(*) FROM clerk_sync.dead_letters")
            .await,
        0
    );

    // Replay is idempotent; unknown ids fail with the reason.
    let out = cli(&db.url, &["replay", "--all"]).await;
    assert_eq!((out.code, out.stdout.trim()), (0, "replayed 0 job(s)"));
    let out = cli(&db.url, &["replay", failed[0]["job_id"].as_str().unwrap()]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("not dead-lettered"), "{out:?}");
}

#[tokio::test]
async fn usage_errors_exit_2_and_failures_exit_1_with_one_line() {
    let out = cli("postgres://nobody@127.0.0.1:1/none", &["replay"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    let out = cli("postgres://nobody@127.0.0.1:1/none", &["status"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("DATABASE_URL"), "{out:?}");
    let out = cli(
        "postgres://nobody@127.0.0.1:1/none",
        &["send-test-event", "nope.created"],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("no sample for nope.created"), "{out:?}");
}

#[tokio::test]
async fn migrate_is_safe_to_run_twice_and_concurrently() {
    let db = TestDb::empty().await;
    let runs = futures::future::join_all((0..3).map(|_| cli(&db.url, &["migrate"]))).await;
    for out in runs {
        assert_eq!(out.code, 0, "{out:?}");
    }
    let again = cli(&db.url, &["migrate"]).await;
    assert_eq!((again.code, again.stdout.trim()), (0, "migrations applied"));
    let applied = db
        .count("SELECT count(*) FROM clerk_sync._sqlx_migrations")
        .await;
    assert_eq!(
        applied,
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
            .unwrap()
            .count() as i64
    );
}
