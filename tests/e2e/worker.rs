use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use clerk_sync_core::{
    event::{Change, ClerkEvent},
    queue::QueueStats,
};
use clerk_sync_tests::{
    TestDb, TestIngest, TestWorker,
    events::*,
    worker::{drained, eventually, fast_settings},
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
    let db = TestDb::new().await;
    let ingest = TestIngest::start(db.pool.clone()).await;
    let worker = TestWorker::start(db.pool.clone()).await;
    let body = clerk_sync_core::samples::get("user.created")
        .unwrap()
        .as_bytes();
    assert_eq!(ingest.post(body).await.status, 202);
    let stats = drained(&db.pool, Duration::from_secs(10)).await;
    assert_eq!((stats.done, stats.dead), (1, 0));
    let (first, email, deleted, _) = user_row(&db, "user_29w83sxmDNGwOuEthce5gg56FcC")
        .await
        .unwrap();
    assert_eq!(first.as_deref(), Some("Example"));
    assert_eq!(email.as_deref(), Some("example@example.org"));
    assert!(deleted.is_none());
    let raw: serde_json::Value = sqlx::query_scalar("SELECT raw FROM clerk.users")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let sent: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(raw, sent["data"], "raw keeps the whole Clerk object");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_after_update_keeps_the_update() {
    let db = TestDb::new().await;
    let ingest = TestIngest::start(db.pool.clone()).await;
    let worker = TestWorker::start(db.pool.clone()).await;
    ingest
        .post(&user_event("updated", "user_a", T0 + 10, "Newer"))
        .await;
    drained(&db.pool, Duration::from_secs(10)).await;
    ingest
        .post(&user_event("created", "user_a", T0, "Older"))
        .await;
    let stats = drained(&db.pool, Duration::from_secs(10)).await;
    assert_eq!((stats.done, stats.dead), (2, 0));
    let (first, _, _, version) = user_row(&db, "user_a").await.unwrap();
    assert_eq!(first.as_deref(), Some("Newer"));
    assert_eq!(version, ms(T0 + 10));
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_before_update_stays_deleted() {
    let db = TestDb::new().await;
    let ingest = TestIngest::start(db.pool.clone()).await;
    let worker = TestWorker::start(db.pool.clone()).await;
    ingest.post(&user_deleted("user_b", T0 + 100)).await;
    drained(&db.pool, Duration::from_secs(10)).await;
    ingest
        .post(&user_event("updated", "user_b", T0 + 50, "Late"))
        .await;
    ingest
        .post(&user_event("created", "user_b", T0, "Early"))
        .await;
    drained(&db.pool, Duration::from_secs(10)).await;
    let (first, _, deleted, version) = user_row(&db, "user_b").await.unwrap();
    assert_eq!(
        deleted,
        Some(ms(T0 + 100)),
        "a delete is never undone by an older event"
    );
    assert_eq!(version, ms(T0 + 100));
    assert_eq!(
        first.as_deref(),
        Some("Late"),
        "older data still fills in what the user looked like when deleted, as in order"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_before_its_user_and_organization() {
    let db = TestDb::new().await;
    let ingest = TestIngest::start(db.pool.clone()).await;
    let worker = TestWorker::start(db.pool.clone()).await;
    ingest
        .post(&membership_event(
            "created",
            "orgmem_1",
            "org_1",
            "user_1",
            T0 + 5,
            "org:admin",
        ))
        .await;
    drained(&db.pool, Duration::from_secs(10)).await;
    let row: (String, String, String, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT organization_id, user_id, role, deleted_at FROM clerk.organization_memberships",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        row,
        ("org_1".into(), "user_1".into(), "org:admin".into(), None)
    );
    ingest
        .post(&org_event("created", "org_1", T0, "Acme"))
        .await;
    ingest
        .post(&user_event("created", "user_1", T0 + 1, "Ada"))
        .await;
    let stats = drained(&db.pool, Duration::from_secs(10)).await;
    assert_eq!((stats.done, stats.dead), (3, 0));
    let joined: i64 = db
        .count(
            "SELECT count(*) FROM clerk.organization_memberships m
             JOIN clerk.users u ON u.id = m.user_id JOIN clerk.organizations o ON o.id = m.organization_id",
        )
        .await;
    assert_eq!(joined, 1);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organization_deleted_with_live_memberships_tombstones_them_in_any_order() {
    let db = TestDb::new().await;
    let ingest = TestIngest::start(db.pool.clone()).await;
    let worker = TestWorker::start(db.pool.clone()).await;
    ingest.post(&org_event("created", "org_x", T0, "X")).await;
    ingest
        .post(&membership_event(
            "created",
            "orgmem_x1",
            "org_x",
            "user_1",
            T0 + 1,
            "org:member",
        ))
        .await;
    drained(&db.pool, Duration::from_secs(10)).await;
    ingest.post(&org_deleted("org_x", T0 + 100)).await;
    drained(&db.pool, Duration::from_secs(10)).await;
    assert_eq!(
        membership_deleted_at(&db, "orgmem_x1").await,
        Some(Some(ms(T0 + 100)))
    );

    // A membership event older than the organization's delete, arriving after it, lands
    // tombstoned: as if it had arrived in order.
    ingest
        .post(&membership_event(
            "created",
            "orgmem_x2",
            "org_x",
            "user_2",
            T0 + 2,
            "org:member",
        ))
        .await;
    // And an older update of the cascaded one does not revive it.
    ingest
        .post(&membership_event(
            "updated",
            "orgmem_x1",
            "org_x",
            "user_1",
            T0 + 50,
            "org:admin",
        ))
        .await;
    let stats = drained(&db.pool, Duration::from_secs(10)).await;
    assert_eq!(stats.dead, 0);
    assert_eq!(
        membership_deleted_at(&db, "orgmem_x2").await,
        Some(Some(ms(T0 + 100)))
    );
    assert_eq!(
        membership_deleted_at(&db, "orgmem_x1").await,
        Some(Some(ms(T0 + 100)))
    );
    let role: String = sqlx::query_scalar(
        "SELECT role FROM clerk.organization_memberships WHERE id = 'orgmem_x1'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        role, "org:admin",
        "its data is the latest before the delete"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_event_types_complete_as_skipped() {
    let db = TestDb::new().await;
    let ingest = TestIngest::start(db.pool.clone()).await;
    let worker = TestWorker::start(db.pool.clone()).await;
    let body = clerk_sync_core::samples::get("session.created")
        .unwrap()
        .as_bytes();
    ingest.post(body).await;
    let stats = drained(&db.pool, Duration::from_secs(10)).await;
    assert_eq!((stats.done, stats.dead, stats.events_received), (1, 0, 1));
    let metrics = clerk_sync_tests::http::request(
        &clerk_sync_tests::http::client(),
        "GET",
        &format!("http://{}/metrics", worker.metrics_addr),
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
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_payload_is_dead_after_one_attempt_with_the_reason() {
    let db = TestDb::new().await;
    let ingest = TestIngest::start(db.pool.clone()).await;
    let worker = TestWorker::start(db.pool.clone()).await;
    ingest
        .post(br#"{"type":"user.updated","data":{"id":42,"updated_at":"soon"}}"#)
        .await;
    ingest.post(b"not json at all").await;
    let stats = drained(&db.pool, Duration::from_secs(10)).await;
    assert_eq!((stats.done, stats.dead), (0, 2));
    let rows: Vec<(i32, String)> = sqlx::query_as(
        "SELECT attempts, last_error FROM clerk_sync.dead_letters ORDER BY last_error",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|(attempts, _)| *attempts == 1), "{rows:?}");
    assert!(rows[0].1.contains("body is not JSON"), "{rows:?}");
    assert!(rows[1].1.contains("malformed event: user"), "{rows:?}");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_back_off_with_growing_gaps_then_die_at_max_attempts() {
    let db = TestDb::new().await;
    // A real database error on every attempt.
    sqlx::raw_sql(
        r#"
        CREATE FUNCTION public.refuse_users() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'users are read-only today'; END $$;
        CREATE TRIGGER refuse_users BEFORE INSERT OR UPDATE ON clerk.users
        FOR EACH ROW EXECUTE FUNCTION public.refuse_users();
        "#,
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let ingest = TestIngest::start(db.pool.clone()).await;
    let settings = fast_settings(); // 5 attempts, base 200 ms
    let worker = TestWorker::start_with(db.pool.clone(), settings.clone()).await;
    ingest
        .post(&user_event("created", "user_r", T0, "Retry"))
        .await;
    eventually(Duration::from_secs(30), "the job to die", || async {
        (QueueStats::read(&db.pool).await.unwrap().dead == 1).then_some(())
    })
    .await;
    let errors: Vec<(i32, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT attempt, error, failed_at FROM clerk_sync.job_errors ORDER BY attempt",
    )
    .fetch_all(&db.pool)
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
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(attempts, 5);
    assert!(last.contains("giving up"), "{last}");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_a_failed_attempt_and_the_worker_goes_on() {
    let db = TestDb::new().await;
    let ingest = TestIngest::start(db.pool.clone()).await;
    let panics = Arc::new(AtomicUsize::new(0));
    let mut settings = fast_settings();
    settings.before_apply = Some({
        let panics = panics.clone();
        Arc::new(move |event: &ClerkEvent| {
            if let ClerkEvent::User(Change::Upsert(u)) = event
                && u.id == "user_panic"
                && panics.fetch_add(1, Ordering::SeqCst) < 2
            {
                panic!("handler bug");
            }
        })
    });
    let worker = TestWorker::start_with(db.pool.clone(), settings).await;
    ingest
        .post(&user_event("created", "user_panic", T0, "P"))
        .await;
    ingest
        .post(&user_event("created", "user_fine", T0, "F"))
        .await;
    let stats = drained(&db.pool, Duration::from_secs(20)).await;
    assert_eq!((stats.done, stats.dead), (2, 0));
    assert_eq!(panics.load(Ordering::SeqCst), 3);
    let kinds: Vec<(String, String)> =
        sqlx::query_as("SELECT kind, error FROM clerk_sync.job_errors ORDER BY attempt")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(kinds.len(), 2);
    assert!(
        kinds
            .iter()
            .all(|(k, e)| k == "panic" && e.contains("handler bug")),
        "{kinds:?}"
    );
    assert!(user_row(&db, "user_panic").await.is_some());
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_old_done_work_but_never_dead_letters() {
    let db = TestDb::new().await;
    let ingest = TestIngest::start(db.pool.clone()).await;
    let worker = TestWorker::start(db.pool.clone()).await;
    for i in 0..5 {
        ingest
            .post(&user_event("created", &format!("user_ret{i}"), T0, "R"))
            .await;
    }
    ingest.post(b"dead on arrival").await;
    let stats = drained(&db.pool, Duration::from_secs(10)).await;
    assert_eq!((stats.done, stats.dead, stats.events_received), (5, 1, 6));
    // Age everything by two weeks, then prune with the default week.
    sqlx::raw_sql(
        "UPDATE apalis.jobs SET done_at = done_at - interval '14 days';
         UPDATE clerk_sync.webhook_events SET received_at = received_at - interval '14 days';
         UPDATE clerk_sync.job_errors SET failed_at = failed_at - interval '14 days';",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let pruned = clerk_sync_worker::retention::prune(&db.pool, Duration::from_secs(7 * 24 * 3600))
        .await
        .unwrap();
    assert_eq!((pruned.jobs, pruned.events, pruned.errors), (5, 5, 0));
    let stats = QueueStats::read(&db.pool).await.unwrap();
    assert_eq!((stats.done, stats.dead, stats.events_received), (0, 1, 1));
    assert_eq!(
        db.count("SELECT count(*) FROM clerk_sync.dead_letters")
            .await,
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM clerk_sync.job_errors").await,
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM clerk.users").await,
        5,
        "the mirror is never pruned"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_apply_in_batches_and_a_bad_one_fails_alone() {
    let db = TestDb::new().await;
    let ingest = TestIngest::start(db.pool.clone()).await;
    // One event the database refuses; everything else is fine.
    sqlx::query("ALTER TABLE clerk.users ADD CONSTRAINT no_bad CHECK (first_name <> 'Bad')")
        .execute(&db.pool)
        .await
        .unwrap();
    for i in 0..20 {
        ingest
            .post(&user_event("created", &format!("user_b{i}"), T0, "Good"))
            .await;
    }
    // One applier taking up to 32 jobs: a backlog goes in few transactions.
    let mut settings = fast_settings();
    settings.concurrency = 32;
    settings.appliers = 1;
    settings.apply_batch = 32;
    let worker = TestWorker::start_with(db.pool.clone(), settings.clone()).await;
    let stats = drained(&db.pool, Duration::from_secs(20)).await;
    assert_eq!((stats.done, stats.dead), (20, 0));
    // Rows written by one transaction share its xmin: the backlog went in batches.
    let transactions = db
        .count("SELECT count(DISTINCT xmin::text) FROM clerk.users")
        .await;
    println!("20 jobs applied in {transactions} transactions");
    assert!(transactions < 20, "{transactions} transactions for 20 jobs");

    worker.stop().await;
    for i in 20..30 {
        let name = if i == 25 { "Bad" } else { "Good" };
        ingest
            .post(&user_event("created", &format!("user_b{i}"), T0, name))
            .await;
    }
    let worker = TestWorker::start_with(db.pool.clone(), settings).await;
    eventually(Duration::from_secs(20), "29 done and 1 failed", || async {
        let s = QueueStats::read(&db.pool).await.unwrap();
        let errors = db.count("SELECT count(*) FROM clerk_sync.job_errors").await;
        (s.done == 29 && errors >= 1).then_some(())
    })
    .await;
    // The good ones were applied at their first attempt, with no error on record.
    let first_try = db
        .count(
            "SELECT count(*) FROM apalis.jobs j WHERE status = 'Done' AND attempts = 1
             AND NOT EXISTS (SELECT FROM clerk_sync.job_errors e WHERE e.job_id = j.id)",
        )
        .await;
    assert_eq!(first_try, 29);
    let (object, error): (String, String) = sqlx::query_as(
        "SELECT e.object_id, je.error FROM clerk_sync.job_errors je
         JOIN clerk_sync.webhook_events e ON e.job_id = je.job_id LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(object, "user_b25");
    assert!(error.contains("no_bad"), "{error}");
    assert!(user_row(&db, "user_b25").await.is_none());
    // ... and it waits for its next attempt like any failed job.
    let (status, attempts, later): (String, i32, bool) = sqlx::query_as(
        "SELECT j.status, j.attempts, j.run_at > now() FROM apalis.jobs j
         JOIN clerk_sync.webhook_events e ON e.job_id = j.id WHERE e.object_id = 'user_b25'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((status.as_str(), attempts, later), ("Failed", 1, true));
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_that_timed_out_never_acks_the_next_claim_of_its_job() {
    let db = TestDb::new().await;
    let ingest = TestIngest::start(db.pool.clone()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let mut settings = fast_settings();
    settings.job_timeout = Duration::from_millis(1000);
    settings.appliers = 2;
    // The first attempt outlives its time limit (1 s): its handler writes the failure and
    // the job is claimed again after its backoff (~0.3 s). The first attempt's apply then
    // ends (1.6 s) while the second claim's is still under way (1.3 s to 2.1 s).
    settings.before_apply = Some({
        let calls = calls.clone();
        Arc::new(move |_: &ClerkEvent| {
            let pause = match calls.fetch_add(1, Ordering::SeqCst) {
                0 => 1600,
                _ => 800,
            };
            std::thread::sleep(Duration::from_millis(pause));
        })
    });
    let worker = TestWorker::start_with(db.pool.clone(), settings).await;
    ingest
        .post(&user_event("created", "user_slow", T0, "S"))
        .await;
    let stats = drained(&db.pool, Duration::from_secs(20)).await;
    assert_eq!((stats.done, stats.dead), (1, 0));
    // Let the stale first attempt finish too, then look: the job is done by its second
    // claim, which the first attempt's late ack did not take over.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, attempts): (String, i32) =
        sqlx::query_as("SELECT status, attempts FROM apalis.jobs")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), attempts), ("Done", 2));
    let errors: Vec<(i32, String)> =
        sqlx::query_as("SELECT attempt, kind FROM clerk_sync.job_errors")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(errors, vec![(1, "timeout".to_owned())]);
    assert!(user_row(&db, "user_slow").await.is_some());
    worker.stop().await;
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
