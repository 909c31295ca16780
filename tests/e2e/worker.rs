use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use clerk_sync_core::{
    backoff::Backoff,
    jobs::{self, JobState, Stats},
    mirror::Change,
};
use clerk_sync_tests::{
    TestApp, TestDb,
    events::*,
    worker::{eventually, fast_settings},
};

const T0: i64 = 1_760_000_000_000;

async fn user_row(
    db: &TestDb,
    id: &str,
) -> Option<(
    Option<String>,
    Option<String>,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
)> {
    sqlx::query_as(
        "SELECT first_name, primary_email_address, deleted_at, version FROM clerk.users WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&db.pool)
    .await
    .unwrap()
}

async fn membership_deleted_at(db: &TestDb, id: &str) -> Option<Option<DateTime<Utc>>> {
    sqlx::query_scalar("SELECT deleted_at FROM clerk.organization_memberships WHERE id = $1")
        .bind(id)
        .fetch_optional(&db.pool)
        .await
        .unwrap()
}

fn ms(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_event_becomes_a_row() {
    let app = TestApp::start().await;
    let body = clerk_sync_core::samples::get("user.created")
        .unwrap()
        .as_bytes();
    assert_eq!(app.post(body).await.status, 202);
    let stats = app.settle().await;
    assert_eq!((stats.done, stats.dead), (1, 0));
    let (first, email, deleted, _) = user_row(&app.db, "user_29w83sxmDNGwOuEthce5gg56FcC")
        .await
        .unwrap();
    assert_eq!(first.as_deref(), Some("Example"));
    assert_eq!(email.as_deref(), Some("example@example.org"));
    assert!(deleted.is_none());
    let raw: serde_json::Value = sqlx::query_scalar("SELECT raw FROM clerk.users")
        .fetch_one(app.pool())
        .await
        .unwrap();
    let sent: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(raw, sent["data"], "raw keeps the whole Clerk object");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_after_update_keeps_the_update() {
    let app = TestApp::start().await;
    app.post(&user_event("updated", "user_a", T0 + 10, "Newer"))
        .await;
    app.settle().await;
    app.post(&user_event("created", "user_a", T0, "Older"))
        .await;
    let stats = app.settle().await;
    assert_eq!((stats.done, stats.dead), (2, 0));
    let (first, _, _, version) = user_row(&app.db, "user_a").await.unwrap();
    assert_eq!(first.as_deref(), Some("Newer"));
    assert_eq!(version, ms(T0 + 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_before_update_stays_deleted() {
    let app = TestApp::start().await;
    app.post(&user_deleted("user_b", T0 + 100)).await;
    app.settle().await;
    app.post(&user_event("updated", "user_b", T0 + 50, "Late"))
        .await;
    app.post(&user_event("created", "user_b", T0, "Early"))
        .await;
    app.settle().await;
    let (first, _, deleted, version) = user_row(&app.db, "user_b").await.unwrap();
    assert_eq!(
        deleted,
        Some(ms(T0 + 100)),
        "a delete is never undone by an older event"
    );
    assert_eq!(version, ms(T0 + 100));
    assert_eq!(
        first, None,
        "a deleted user's data is erased, and older events never bring it back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_erasure_older_data_fills_in_what_the_deleted_user_looked_like() {
    let mut settings = fast_settings();
    settings.mirror.erase_personal_data = false;
    let app = TestApp::builder().settings(settings).start().await;
    app.post(&user_deleted("user_k", T0 + 100)).await;
    app.settle().await;
    app.post(&user_event("updated", "user_k", T0 + 50, "Late"))
        .await;
    app.post(&user_event("created", "user_k", T0, "Early"))
        .await;
    app.settle().await;
    let (first, email, deleted, _) = user_row(&app.db, "user_k").await.unwrap();
    assert_eq!(deleted, Some(ms(T0 + 100)));
    assert_eq!(
        (first.as_deref(), email.as_deref()),
        (Some("Late"), Some("Late@user_k.example")),
        "as in order: the last data before the delete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_users_email_is_gone_from_the_mirror() {
    let app = TestApp::start().await;
    app.post(&user_event("created", "user_e", T0, "Erin")).await;
    app.settle().await;
    let (_, email, _, _) = user_row(&app.db, "user_e").await.unwrap();
    assert_eq!(email.as_deref(), Some("Erin@user_e.example"));
    app.post(&user_deleted("user_e", T0 + 100)).await;
    // A retried update older than the delete, arriving after it.
    app.post(&user_event("updated", "user_e", T0 + 50, "Erin"))
        .await;
    app.settle().await;
    let row: serde_json::Value =
        sqlx::query_scalar("SELECT to_jsonb(u) FROM clerk.users u WHERE id = 'user_e'")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert!(
        !row.to_string().contains("Erin"),
        "no trace of the person in any column, raw included: {row}"
    );
    assert!(row["deleted_at"].is_string(), "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_before_its_user_and_organization() {
    let app = TestApp::start().await;
    app.post(&membership_event(
        "created",
        "orgmem_1",
        "org_1",
        "user_1",
        T0 + 5,
        "org:admin",
    ))
    .await;
    app.settle().await;
    let row: (String, String, String, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT organization_id, user_id, role, deleted_at FROM clerk.organization_memberships",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(
        row,
        ("org_1".into(), "user_1".into(), "org:admin".into(), None)
    );
    app.post(&org_event("created", "org_1", T0, "Acme")).await;
    app.post(&user_event("created", "user_1", T0 + 1, "Ada"))
        .await;
    let stats = app.settle().await;
    assert_eq!((stats.done, stats.dead), (3, 0));
    let joined: i64 = app
        .count(
            "SELECT count(*) FROM clerk.organization_memberships m
             JOIN clerk.users u ON u.id = m.user_id JOIN clerk.organizations o ON o.id = m.organization_id",
        )
        .await;
    assert_eq!(joined, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organization_deleted_with_live_memberships_tombstones_them_in_any_order() {
    let app = TestApp::start().await;
    app.post(&org_event("created", "org_x", T0, "X")).await;
    app.post(&membership_event(
        "created",
        "orgmem_x1",
        "org_x",
        "user_1",
        T0 + 1,
        "org:member",
    ))
    .await;
    app.settle().await;
    app.post(&org_deleted("org_x", T0 + 100)).await;
    app.settle().await;
    assert_eq!(
        membership_deleted_at(&app.db, "orgmem_x1").await,
        Some(Some(ms(T0 + 100)))
    );

    // A membership event older than the organization's delete, arriving after it, lands
    // tombstoned: as if it had arrived in order.
    app.post(&membership_event(
        "created",
        "orgmem_x2",
        "org_x",
        "user_2",
        T0 + 2,
        "org:member",
    ))
    .await;
    // And an older update of the cascaded one does not revive it.
    app.post(&membership_event(
        "updated",
        "orgmem_x1",
        "org_x",
        "user_1",
        T0 + 50,
        "org:admin",
    ))
    .await;
    let stats = app.settle().await;
    assert_eq!(stats.dead, 0);
    assert_eq!(
        membership_deleted_at(&app.db, "orgmem_x2").await,
        Some(Some(ms(T0 + 100)))
    );
    assert_eq!(
        membership_deleted_at(&app.db, "orgmem_x1").await,
        Some(Some(ms(T0 + 100)))
    );
    let role: String = sqlx::query_scalar(
        "SELECT role FROM clerk.organization_memberships WHERE id = 'orgmem_x1'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(
        role, "org:admin",
        "its data is the latest before the delete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_event_types_complete_as_skipped() {
    let app = TestApp::start().await;
    let body = clerk_sync_core::samples::get("session.created")
        .unwrap()
        .as_bytes();
    app.post(body).await;
    let stats = app.settle().await;
    assert_eq!(
        (stats.done, stats.skipped, stats.dead, stats.events_received),
        (1, 1, 0, 1)
    );
    let metrics = clerk_sync_tests::http::request(
        &clerk_sync_tests::http::client(),
        "GET",
        &format!("http://{}/metrics", app.metrics_addr()),
        &[],
        vec![],
    )
    .await
    .unwrap();
    assert!(
        metrics.body.contains(
            r#"clerk_sync_worker_jobs_total{outcome="skipped",event_type="session.created"}"#
        ),
        "{}",
        metrics.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_payload_is_dead_after_one_attempt_with_the_reason() {
    let app = TestApp::start().await;
    app.expect_dead(2);
    app.post(br#"{"type":"user.updated","data":{"id":42,"updated_at":"soon"}}"#)
        .await;
    app.post(b"not json at all").await;
    let stats = app.settle().await;
    assert_eq!((stats.done, stats.dead), (0, 2));
    let rows: Vec<(i32, String)> = sqlx::query_as(
        "SELECT attempts, last_error FROM clerk_sync.dead_letters ORDER BY last_error",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|(attempts, _)| *attempts == 1), "{rows:?}");
    assert!(rows[0].1.contains("body is not JSON"), "{rows:?}");
    assert!(rows[1].1.contains("malformed event: user"), "{rows:?}");
}

/// A real database error on every write of a user, as a trigger of the app's would raise.
const REFUSE_USERS: &str = r#"
    CREATE FUNCTION public.refuse_users() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'users are read-only today'; END $$;
    CREATE TRIGGER refuse_users BEFORE INSERT OR UPDATE ON clerk.users
    FOR EACH ROW EXECUTE FUNCTION public.refuse_users();
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_back_off_with_growing_gaps_then_die_at_max_attempts() {
    let settings = fast_settings(); // 5 attempts, base 200 ms
    let app = TestApp::builder()
        .setup(REFUSE_USERS)
        .settings(settings.clone())
        .start()
        .await;
    app.expect_dead(1);
    app.post(&user_event("created", "user_r", T0, "Retry"))
        .await;
    let stats = app.settle_within(Duration::from_secs(30)).await;
    assert_eq!(stats.dead, 1);
    let errors: Vec<(i32, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT attempt, error, failed_at FROM clerk_sync.job_errors ORDER BY attempt",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(
        errors.iter().map(|e| e.0).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5],
        "every attempt's error is kept"
    );
    assert!(
        errors.iter().all(|e| e.1.contains("read-only today")),
        "{errors:?}"
    );
    let gaps: Vec<Duration> = errors
        .windows(2)
        .map(|w| (w[1].2 - w[0].2).to_std().unwrap())
        .collect();
    println!("gaps between attempts: {gaps:?}");
    for (i, gap) in gaps.iter().enumerate() {
        // After attempt n the next waits at least half of base × 2^(n-1).
        let floor = settings.backoff.base * 2u32.pow(i as u32) / 2;
        assert!(
            *gap >= floor,
            "gap {i} was {gap:?}, below {floor:?}: {gaps:?}"
        );
    }
    // The floors double with each attempt, so the gaps grow; upper bounds are left out on
    // purpose: pickup latency on a loaded machine adds to them.
    let (attempts, last): (i32, String) =
        sqlx::query_as("SELECT attempts, last_error FROM clerk_sync.dead_letters")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(attempts, 5);
    assert!(last.contains("giving up"), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_waiting_for_its_next_attempt_is_retrying_with_the_cap_that_applies() {
    let mut settings = fast_settings();
    settings.backoff = Backoff::new(Duration::from_secs(60), Duration::from_secs(600));
    let app = TestApp::builder()
        .setup(REFUSE_USERS)
        .settings(settings)
        .start()
        .await;
    app.post(&user_event("created", "user_w", T0, "Wait")).await;
    let stats = eventually(Duration::from_secs(20), "a retrying job", || async {
        let s = app.stats().await;
        (s.retrying == 1).then_some(s)
    })
    .await;
    assert_eq!((stats.pending, stats.running, stats.done), (0, 0, 0));
    let (max_attempts, waits): (i32, bool) = sqlx::query_as(
        "SELECT max_attempts, run_at > now() + interval '20 seconds' FROM apalis.jobs",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(
        (max_attempts, waits),
        (5, true),
        "MAX_ATTEMPTS, not apalis's backstop"
    );
    // Retrying is not pending: the oldest pending age ignores a job that is not due.
    assert_eq!(stats.oldest_pending_age_seconds, 0);
    // Fixed, and replayed by hand, it settles done.
    app.sql("DROP TRIGGER refuse_users ON clerk.users").await;
    app.sql("UPDATE apalis.jobs SET run_at = now()").await;
    assert_eq!(app.settle().await.done, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_a_failed_attempt_and_the_worker_goes_on() {
    let panics = Arc::new(AtomicUsize::new(0));
    // One job per transaction, so that each attempt runs the hook once.
    let mut settings = fast_settings();
    settings.apply_batch = 1;
    let app = TestApp::builder()
        .settings(settings)
        .fault({
            let panics = panics.clone();
            Arc::new(move |change: &Change| {
                if change.id == "user_panic" && panics.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("handler bug");
                }
            })
        })
        .start()
        .await;
    app.post(&user_event("created", "user_panic", T0, "P"))
        .await;
    app.post(&user_event("created", "user_fine", T0, "F")).await;
    let stats = app.settle().await;
    assert_eq!((stats.done, stats.dead), (2, 0));
    assert_eq!(panics.load(Ordering::SeqCst), 3);
    let kinds: Vec<(String, String)> =
        sqlx::query_as("SELECT kind, error FROM clerk_sync.job_errors ORDER BY attempt")
            .fetch_all(app.pool())
            .await
            .unwrap();
    assert_eq!(kinds.len(), 2);
    assert!(
        kinds
            .iter()
            .all(|(k, e)| k == "panic" && e.contains("handler bug")),
        "{kinds:?}"
    );
    assert!(user_row(&app.db, "user_panic").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_batch_fails_only_its_own_job() {
    let mut app = TestApp::builder().without_worker().start().await;
    for i in 0..10 {
        let id = if i == 4 {
            "user_bug".to_owned()
        } else {
            format!("user_ok{i}")
        };
        app.post(&user_event("created", &id, T0, "B")).await;
    }
    let mut settings = fast_settings();
    settings.concurrency = 16;
    settings.appliers = 1;
    settings.apply_batch = 16;
    settings.max_attempts = 2;
    app.start_worker_with_fault(
        settings,
        Arc::new(|change: &Change| assert_ne!(change.id, "user_bug", "handler bug")),
    )
    .await;
    app.expect_dead(1);
    let stats = app.settle().await;
    assert_eq!((stats.done, stats.dead), (9, 1));
    let first_try = app
        .count(&format!(
            "SELECT count(*) FROM apalis.jobs j WHERE {} AND attempts = 1
                 AND NOT EXISTS (SELECT FROM clerk_sync.job_errors e WHERE e.job_id = j.id)",
            JobState::Done.condition()
        ))
        .await;
    assert_eq!(
        first_try, 9,
        "the others were applied at their first attempt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_old_done_work_but_never_dead_letters() {
    let app = TestApp::start().await;
    app.expect_dead(1);
    for i in 0..5 {
        app.post(&user_event("created", &format!("user_ret{i}"), T0, "R"))
            .await;
    }
    app.post(b"dead on arrival").await;
    let stats = app.settle().await;
    assert_eq!((stats.done, stats.dead, stats.events_received), (5, 1, 6));
    // Age everything by two weeks, then prune with the default week.
    app.sql(
        "UPDATE apalis.jobs SET done_at = done_at - interval '14 days';
         UPDATE clerk_sync.webhook_events SET received_at = received_at - interval '14 days';
         UPDATE clerk_sync.job_errors SET failed_at = failed_at - interval '14 days';",
    )
    .await;
    let pruned = clerk_sync_core::jobs::prune(app.pool(), Duration::from_secs(7 * 24 * 3600))
        .await
        .unwrap();
    assert_eq!((pruned.jobs, pruned.events, pruned.errors), (5, 5, 0));
    let stats = app.stats().await;
    assert_eq!((stats.done, stats.dead, stats.events_received), (0, 1, 1));
    assert_eq!(
        app.count("SELECT count(*) FROM clerk_sync.dead_letters")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM clerk_sync.job_errors")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM clerk.users").await,
        5,
        "the mirror is never pruned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_apply_in_batches_and_a_bad_one_fails_alone() {
    // One event the database refuses; everything else is fine.
    let mut app = TestApp::builder()
        .without_worker()
        .setup("ALTER TABLE clerk.users ADD CONSTRAINT no_bad CHECK (first_name <> 'Bad')")
        .start()
        .await;
    for i in 0..20 {
        app.post(&user_event("created", &format!("user_b{i}"), T0, "Good"))
            .await;
    }
    // One applier taking up to 32 jobs: a backlog goes in few transactions.
    let mut settings = fast_settings();
    settings.concurrency = 32;
    settings.appliers = 1;
    settings.apply_batch = 32;
    app.start_worker(settings.clone()).await;
    let stats = app.settle().await;
    assert_eq!((stats.done, stats.dead), (20, 0));
    // Rows written by one transaction share its xmin: the backlog went in batches.
    let transactions = app
        .count("SELECT count(DISTINCT xmin::text) FROM clerk.users")
        .await;
    println!("20 jobs applied in {transactions} transactions");
    assert!(transactions < 20, "{transactions} transactions for 20 jobs");

    app.stop_worker().await;
    for i in 20..30 {
        let name = if i == 25 { "Bad" } else { "Good" };
        let answer = app
            .post(&user_event("created", &format!("user_b{i}"), T0, name))
            .await;
        assert_eq!(answer.status, 202, "{answer:?}");
    }
    app.start_worker(settings).await;
    app.expect_dead(1);
    let stats = app.settle().await;
    assert_eq!((stats.done, stats.dead), (29, 1));
    // The good ones were applied at their first attempt, with no error on record.
    let first_try = app
        .count(&format!(
            "SELECT count(*) FROM apalis.jobs j WHERE {} AND attempts = 1
                 AND NOT EXISTS (SELECT FROM clerk_sync.job_errors e WHERE e.job_id = j.id)",
            JobState::Done.condition()
        ))
        .await;
    assert_eq!(first_try, 29);
    // A violated constraint cannot pass on a retry: dead at its first attempt, as permanent.
    let (object, kind, error, attempts): (String, String, String, i32) = sqlx::query_as(
        "SELECT e.object_id, je.kind, je.error, d.attempts FROM clerk_sync.job_errors je
         JOIN clerk_sync.webhook_events e ON e.job_id = je.job_id
         JOIN clerk_sync.dead_letters d ON d.job_id = je.job_id",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(
        (object.as_str(), kind.as_str(), attempts),
        ("user_b25", "permanent", 1)
    );
    assert!(error.contains("no_bad"), "{error}");
    assert!(user_row(&app.db, "user_b25").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_database_refuses_is_dead_at_once_and_what_may_pass_is_retried() {
    // (what the database was made to refuse, the event, the failure kind, attempts).
    let cases: [(&str, &str, Vec<u8>, &str, i32); 6] = [
        (
            "a CHECK constraint (23514)",
            "ALTER TABLE clerk.users ADD CONSTRAINT no_x CHECK (first_name <> 'X')",
            user_event("created", "user_check", T0, "X"),
            "permanent",
            1,
        ),
        (
            "NOT NULL (23502)",
            "ALTER TABLE clerk.organizations ALTER COLUMN slug SET NOT NULL",
            envelope("organization.created", {
                let mut d = org_data("org_nonull", T0, "N");
                d["slug"] = serde_json::Value::Null;
                d
            }, T0),
            "permanent",
            1,
        ),
        (
            "a unique index (23505)",
            "CREATE UNIQUE INDEX one_name ON clerk.organizations (name);
             INSERT INTO clerk.organizations (id, name, slug, version, raw) VALUES ('org_first', 'Twin', 'twin', now(), '{}')",
            org_event("created", "org_second", T0, "Twin"),
            "permanent",
            1,
        ),
        (
            "a value of the wrong type (22P02)",
            "SELECT 1",
            envelope("organization.created", {
                let mut d = org_data("org_type", T0, "T");
                d["members_count"] = serde_json::json!("lots");
                d
            }, T0),
            "permanent",
            1,
        ),
        (
            "a value too long for its column (22001)",
            "ALTER TABLE clerk.organization_memberships ALTER COLUMN role TYPE varchar(4)",
            membership_event("created", "orgmem_long", "org_l", "user_l", T0, "org:administrator"),
            "permanent",
            1,
        ),
        (
            "a trigger's own exception (P0001): it may pass next time",
            REFUSE_USERS_NAMED_T,
            user_event("created", "user_trigger", T0, "T"),
            "transient",
            2,
        ),
    ];
    let mut settings = fast_settings();
    settings.max_attempts = 2;
    let mut builder = TestApp::builder().settings(settings);
    for (_, setup, ..) in &cases {
        builder = builder.setup(setup);
    }
    let app = builder.start().await;
    app.expect_dead(cases.len() as i64);
    for (_, _, body, ..) in &cases {
        assert_eq!(app.post(body).await.status, 202);
    }
    let stats = app.settle().await;
    assert_eq!(
        (stats.done, stats.dead),
        (0, cases.len() as i64),
        "{stats:?}"
    );
    for (what, _, body, kind, attempts) in &cases {
        let object: serde_json::Value =
            serde_json::from_slice::<serde_json::Value>(body).unwrap()["data"]["id"].clone();
        let (kinds, dead_after): (Vec<String>, i32) = sqlx::query_as(
            "SELECT array_agg(je.kind ORDER BY je.attempt), d.attempts
             FROM clerk_sync.dead_letters d JOIN clerk_sync.job_errors je ON je.job_id = d.job_id
             WHERE d.object_id = $1 GROUP BY d.attempts",
        )
        .bind(object.as_str().unwrap())
        .fetch_one(app.pool())
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(dead_after, *attempts, "{what}: {kinds:?}");
        assert!(kinds.iter().all(|k| k == kind), "{what}: {kinds:?}");
    }
}

/// Users whose first name is T are refused by a trigger's exception.
const REFUSE_USERS_NAMED_T: &str = r#"
    CREATE FUNCTION public.refuse_t() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN IF NEW.first_name = 'T' THEN RAISE EXCEPTION 'no T today'; END IF; RETURN NEW; END $$;
    CREATE TRIGGER refuse_t BEFORE INSERT OR UPDATE ON clerk.users
    FOR EACH ROW EXECUTE FUNCTION public.refuse_t();
"#;

/// The first write of a user sleeps past the jobs' time limit (a slow database, a lock);
/// later ones do not. Counted by a sequence, which a rolled-back attempt does not undo.
const FIRST_USER_WRITE_IS_SLOW: &str = r#"
    CREATE SEQUENCE public.user_writes;
    CREATE FUNCTION public.slow_first_write() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF nextval('public.user_writes') = 1 THEN PERFORM pg_sleep(1.6); END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER slow_first_write BEFORE INSERT OR UPDATE ON clerk.users
    FOR EACH ROW EXECUTE FUNCTION public.slow_first_write();
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_that_outlives_its_time_limit_is_retried_and_never_acked_late() {
    let mut settings = fast_settings();
    settings.job_timeout = Duration::from_millis(1000);
    let app = TestApp::builder()
        .setup(FIRST_USER_WRITE_IS_SLOW)
        .settings(settings)
        .start()
        .await;
    app.post(&user_event("created", "user_slow", T0, "S")).await;
    let stats = app.settle().await;
    assert_eq!((stats.done, stats.dead), (1, 0));
    // Let the first attempt's statement end too, then look: the job was done by its
    // second attempt, and the first one's transaction never committed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let job = jobs::find(app.pool(), None).await.unwrap().remove(0);
    assert_eq!((job.state, job.attempts), (JobState::Done, 2));
    let errors: Vec<(i32, String)> =
        sqlx::query_as("SELECT attempt, kind FROM clerk_sync.job_errors")
            .fetch_all(app.pool())
            .await
            .unwrap();
    assert_eq!(errors, vec![(1, "timeout".to_owned())]);
    assert!(user_row(&app.db, "user_slow").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_claimed_through_the_primary_key() {
    // migrations/20261129090000_claim_by_primary_key.sql replaces apalis.get_jobs; an apalis
    // upgrade that redefines it would silently bring back the plan that scans the table.
    let db = TestDb::new().await;
    let body: String = sqlx::query_scalar(
        "SELECT prosrc FROM pg_proc WHERE proname = 'get_jobs'
         AND pronamespace = 'apalis'::regnamespace",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(body.contains("id = ANY (ARRAY("), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_state_column_takes_only_apalis_states() {
    let app = TestApp::builder().without_worker().start().await;
    app.post(&user_event("created", "user_c", T0, "C")).await;
    let err = sqlx::query("UPDATE apalis.jobs SET status = 'Exploded'")
        .execute(app.pool())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("clerk_sync_jobs_status_check"),
        "{err}"
    );
    let stats: Stats = app.stats().await;
    assert_eq!(stats.pending, 1);
}
