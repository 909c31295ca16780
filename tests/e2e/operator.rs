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
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("replayed 2 job(s)\n"), "{out:?}");
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

fn json(out: &clerk_sync_tests::procs::Output) -> Value {
    assert_eq!(out.code, 0, "{out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

fn verdicts(explanation: &Value) -> Vec<(String, String)> {
    explanation["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"]["event_type"].as_str().unwrap().to_owned(),
                e["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_show_and_explain_find_every_job_by_the_ids_an_operator_has() {
    use clerk_sync_tests::events::{envelope, user_data, user_event};
    let app = TestApp::builder()
        .setup("ALTER TABLE clerk.users ADD CONSTRAINT no_mallory CHECK (first_name <> 'Mallory')")
        .start()
        .await;
    app.expect_dead(1);
    // One user's story, out of order and with a duplicate; and another user who is refused.
    // Settled one by one, so that each outcome is the row's answer to that event alone.
    for body in [
        user_event("created", "user_x", 1_000, "Alice"),
        user_event("updated", "user_x", 3_000, "Bob"),
        user_event("updated", "user_x", 2_000, "Carol"),
        user_event("updated", "user_x", 3_000, "Bob"),
        envelope("user.created", user_data("user_m", 1_000, "Mallory"), 1_000),
    ] {
        app.post_all(&[body]).await;
        app.settle().await;
    }

    let all = json(&app.cli(&["jobs", "--json"]).await);
    let rows = all["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5, "{all}");
    assert_eq!(all["total"], serde_json::json!({"count": 5, "exact": true}));
    assert!(all["next"].is_null());
    // Newest first; every row with its event and the worker's cap (fast_settings: 5).
    assert_eq!(rows[0]["object_id"], "user_m");
    assert_eq!(rows[0]["state"], "dead");
    assert!(
        rows[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("no_mallory"),
        "{all}"
    );
    for r in rows {
        assert_eq!(r["max_attempts"], 5, "{r}");
        assert!(r["svix_id"].as_str().unwrap().starts_with("msg_"), "{r}");
    }
    let outcomes: Vec<&str> = rows[1..]
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    // The same version again is applied again (a no-op); an older one is stale.
    assert_eq!(outcomes, ["applied", "stale", "applied", "applied"]);

    // Pages: "N of M", and the next page after the cursor.
    let out = app.cli(&["jobs", "--limit", "2"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("2 of 5 job(s)"), "{}", out.stdout);
    assert!(
        out.stdout.contains("no_mallory"),
        "the dead job's error: {}",
        out.stdout
    );
    let first = json(&app.cli(&["jobs", "--json", "--limit", "2"]).await);
    let next = first["next"].as_str().unwrap();
    assert_eq!(next, rows[1]["job_id"]);
    let second = json(
        &app.cli(&["jobs", "--json", "--limit", "2", "--after", next])
            .await,
    );
    assert_eq!(second["rows"][0]["job_id"], rows[2]["job_id"]);
    assert_eq!(second["rows"][1]["job_id"], rows[3]["job_id"]);

    // Filters: state, type, time, and the ids an operator has.
    let count = |v: &Value| v["rows"].as_array().unwrap().len();
    assert_eq!(
        count(&json(
            &app.cli(&["jobs", "--json", "--state", "dead"]).await
        )),
        1
    );
    assert_eq!(
        count(&json(
            &app.cli(&["jobs", "--json", "--state", "done"]).await
        )),
        4
    );
    assert_eq!(
        count(&json(
            &app.cli(&["jobs", "--json", "--state", "retrying"]).await
        )),
        0
    );
    assert_eq!(
        count(&json(
            &app.cli(&["jobs", "--json", "--type", "user.updated"]).await
        )),
        3
    );
    assert_eq!(
        count(&json(&app.cli(&["jobs", "--json", "--since", "10m"]).await)),
        5
    );
    assert_eq!(
        count(&json(&app.cli(&["jobs", "--json", "--until", "10m"]).await)),
        0
    );
    assert_eq!(
        count(&json(&app.cli(&["jobs", "--json", "-q", "user_x"]).await)),
        4
    );
    assert_eq!(
        count(&json(
            &app.cli(&["jobs", "--json", "-q", "BOB@user_x.example"])
                .await
        )),
        4
    );
    let dead_svix = rows[0]["svix_id"].as_str().unwrap();
    let by_svix = json(&app.cli(&["jobs", "--json", "-q", dead_svix]).await);
    assert_eq!(by_svix["rows"][0]["job_id"], rows[0]["job_id"]);

    // One job, by svix-id or job id: event, history, mirror row.
    let shown = json(&app.cli(&["show", "--json", dead_svix]).await);
    assert_eq!(shown["job"]["job_id"], rows[0]["job_id"]);
    assert_eq!(shown["history"].as_array().unwrap().len(), 1, "{shown}");
    assert_eq!(shown["history"][0]["kind"], "permanent");
    assert!(
        shown["event"]["body"]
            .as_str()
            .unwrap()
            .contains("\"first_name\": \"Mallory\"")
    );
    assert!(
        shown["mirror"].is_null(),
        "the refused user has no row: {shown}"
    );
    let out = app
        .cli(&["show", rows[1]["job_id"].as_str().unwrap()])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("mirror row now (clerk.users)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("\"first_name\": \"Bob\""),
        "{}",
        out.stdout
    );
    let out = app.cli(&["show", "msg_nope"]).await;
    assert_eq!(
        (out.code, out.stderr.trim()),
        (1, "error: no job with job id or svix-id msg_nope"),
        "{out:?}"
    );

    // Why user_x looks as it does.
    let x = json(&app.cli(&["explain", "--json", "user_x"]).await);
    assert_eq!(x["kind"], "users");
    assert_eq!(x["mirror"]["row"]["first_name"], "Bob");
    assert_eq!(
        verdicts(&x),
        [
            ("user.created".into(), "superseded".into()),
            ("user.updated".into(), "ignored_older".into()),
            ("user.updated".into(), "reflected".into()),
            ("user.updated".into(), "duplicate".into()),
        ]
    );
    let out = app.cli(&["explain", "user_x"]).await;
    assert!(
        out.stdout.contains("<- the row reflects this"),
        "{}",
        out.stdout
    );
    let m = json(&app.cli(&["explain", "--json", "user_m"]).await);
    assert_eq!(
        verdicts(&m),
        [("user.created".into(), "not_applied".into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_and_discard_take_svix_ids_keep_the_history_and_are_audited() {
    use clerk_sync_tests::events::{envelope, user_data};
    let app = TestApp::builder()
        .setup("ALTER TABLE clerk.users ADD CONSTRAINT no_mallory CHECK (first_name <> 'Mallory')")
        .start()
        .await;
    app.expect_dead(2);
    app.post_all(&[
        envelope(
            "user.created",
            user_data("user_m1", 1_000, "Mallory"),
            1_000,
        ),
        envelope(
            "user.created",
            user_data("user_m2", 1_000, "Mallory"),
            1_000,
        ),
    ])
    .await;
    app.settle().await;
    let dead = json(&app.cli(&["jobs", "--json", "--state", "dead"]).await);
    let svix = |i: usize| dead["rows"][i]["svix_id"].as_str().unwrap().to_owned();
    let (m2, m1) = (svix(0), svix(1));

    // `failed`: errors whole, the prefix noise gone, "N of M" when limited.
    let out = app.cli(&["failed", "--limit", "1"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("1 of 2 dead-lettered job(s)"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("error returned from database"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains('…'), "not cut: {}", out.stdout);
    assert!(
        out.stdout
            .contains("violates check constraint \"no_mallory\""),
        "{}",
        out.stdout
    );

    // Replayed while the cause is still there: it says so, and the history keeps counting.
    let out = app.cli(&["replay", &m1]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("replayed 1 job(s)\n"), "{out:?}");
    assert!(
        out.stdout.contains("dead again: new row for relation"),
        "{out:?}"
    );
    let shown = json(&app.cli(&["show", "--json", &m1]).await);
    let history: Vec<(&str, i64)> = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["kind"].as_str().unwrap(), a["attempt"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        history,
        [("permanent", 1), ("replayed", 1), ("permanent", 1)]
    );
    assert!(
        shown["history"][1]["error"]
            .as_str()
            .unwrap()
            .starts_with("replayed by cli:")
    );
    let out = app.cli(&["show", &m1]).await;
    assert!(out.stdout.contains("-- replayed by cli:"), "{}", out.stdout);

    // Discarded: resolved, not replayed; counted apart; no longer a dead letter.
    let out = app.cli(&["discard", &m2]).await;
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, "discarded 1 job(s)"),
        "{out:?}"
    );
    let s = status(&app).await;
    assert_eq!(
        (s["jobs"]["dead"].as_i64(), s["jobs"]["discarded"].as_i64()),
        (Some(1), Some(1)),
        "{s}"
    );
    assert_eq!(s["jobs"]["done"], 1, "{s}");
    assert_eq!(
        app.count("SELECT count(*) FROM clerk_sync.dead_letters")
            .await,
        1
    );
    let out = app.cli(&["discard", &m2]).await;
    assert_eq!(out.code, 1, "discarded twice: {out:?}");
    assert!(out.stderr.contains("not dead-lettered"), "{out:?}");

    // The console's overview counts the same.
    let o = clerk_sync_core::ops::overview(app.pool()).await.unwrap();
    assert_eq!(o.stats, app.stats().await);
    assert_eq!(o.dead_by_type, [(Some("user.created".to_owned()), 1)]);
    assert_eq!(o.dead_by_error.len(), 1);
    assert!(
        o.dead_by_error[0]
            .0
            .as_deref()
            .unwrap()
            .contains("no_mallory"),
        "{o:?}"
    );
    assert!(
        (60..=62).contains(&o.last_hour.len()),
        "{}",
        o.last_hour.len()
    );
    assert_eq!(o.last_hour.iter().map(|b| b.received).sum::<i64>(), 2);
    assert_eq!(o.last_day.iter().map(|b| b.received).sum::<i64>(), 2);
    assert_eq!(
        o.last_hour.iter().map(|b| b.done).sum::<i64>(),
        1,
        "the discarded one"
    );
    let shown = json(&app.cli(&["show", "--json", &m2]).await);
    assert_eq!(shown["job"]["outcome"], "discarded");
    assert_eq!(shown["history"][1]["kind"], "discarded");

    // Fixed and replayed: done at once, and said so.
    app.sql("ALTER TABLE clerk.users DROP CONSTRAINT no_mallory")
        .await;
    let out = app
        .cli(&["replay", "--all", "--type", "user.created"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("done (applied)"), "{out:?}");
    assert_eq!(
        app.count("SELECT count(*) FROM clerk.users WHERE id = 'user_m1'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM clerk.users WHERE id = 'user_m2'")
            .await,
        0
    );

    // Every action is in the audit table: who, what, which, how many.
    let audit: Vec<(String, String, Value, i32)> = sqlx::query_as(
        "SELECT actor, action, filter, count FROM clerk_sync.operator_actions ORDER BY id",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    let actions: Vec<(&str, i32)> = audit.iter().map(|a| (a.1.as_str(), a.3)).collect();
    assert_eq!(
        actions,
        [("replay", 1), ("discard", 1), ("discard", 0), ("replay", 1)]
    );
    assert!(audit.iter().all(|a| a.0.starts_with("cli:")), "{audit:?}");
    assert_eq!(audit[0].2, serde_json::json!({"ids": [m1]}));
    assert_eq!(
        audit[3].2,
        serde_json::json!({"filter": {"state": "dead", "type": "user.created"}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_event_tells_a_story_about_one_id() {
    let app = TestApp::start().await;
    let url = app.ingest.url("/webhooks/clerk");
    let send = |args: &'static [&'static str]| {
        let url = url.clone();
        let db = app.url().to_owned();
        async move {
            let mut all = vec!["send-test-event"];
            all.extend_from_slice(args);
            all.extend(["--url", &url]);
            let out = cli(&db, &all).await;
            assert_eq!(out.code, 0, "{out:?}");
            out
        }
    };
    let out = send(&["user.created", "--id", "user_story"]).await;
    assert!(out.stdout.contains("object: user_story"), "{out:?}");
    send(&["organization.created", "--id", "org_story"]).await;
    send(&[
        "organizationMembership.created",
        "--id",
        "orgmem_story",
        "--org",
        "org_story",
        "--user",
        "user_story",
    ])
    .await;
    app.settle().await;
    assert_eq!(
        app.count(
            "SELECT count(*) FROM clerk.organization_memberships \
             WHERE id = 'orgmem_story' AND user_id = 'user_story' AND organization_id = 'org_story'"
        )
        .await,
        1
    );
    send(&["user.updated", "--id", "user_story"]).await;
    send(&["user.deleted", "--id", "user_story"]).await;
    app.settle().await;
    assert_eq!(
        app.count(
            "SELECT count(*) FROM clerk.users WHERE id = 'user_story' AND deleted_at IS NOT NULL"
        )
        .await,
        1
    );
    // The user's deletion tombstoned the membership too.
    assert_eq!(
        app.count("SELECT count(*) FROM clerk.organization_memberships WHERE id = 'orgmem_story' AND deleted_at IS NOT NULL")
            .await,
        1
    );
    let x = json(&app.cli(&["explain", "--json", "user_story"]).await);
    assert_eq!(
        verdicts(&x),
        [
            ("user.created".into(), "superseded".into()),
            // The delete erased the data (ERASE_PERSONAL_DATA): only the delete shows.
            ("user.updated".into(), "superseded".into()),
            ("user.deleted".into(), "reflected".into()),
        ]
    );
    // A search by the user finds its membership's events too.
    let found = json(&app.cli(&["jobs", "--json", "-q", "user_story"]).await);
    assert_eq!(found["rows"].as_array().unwrap().len(), 4, "{found}");
}
