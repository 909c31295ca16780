//! The worker as a real process: killed mid-job, or stopped with SIGTERM mid-job.

use std::time::{Duration, Instant};

use clerk_sync_core::jobs::{self, JobState};
use clerk_sync_tests::{
    TestApp, TestDb,
    events::user_event,
    procs::{exits_zero, signal},
    worker::eventually,
};
use sqlx::{Connection as _, PgConnection};

/// Holds a row lock on a user so that a worker applying an event for it blocks mid-job.
async fn hold_user(db: &TestDb, id: &str) -> PgConnection {
    sqlx::query("INSERT INTO clerk.users (id, version, raw) VALUES ($1, '2000-01-01', '{}')")
        .bind(id)
        .execute(&db.pool)
        .await
        .unwrap();
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::query("SELECT 1 FROM clerk.users WHERE id = $1 FOR UPDATE")
        .bind(id)
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

async fn job(db: &TestDb) -> (JobState, Option<String>, i32) {
    let job = jobs::find(&db.pool, None).await.unwrap().remove(0);
    (job.state, job.lock_by, job.attempts)
}

async fn in_flight(db: &TestDb) -> String {
    eventually(
        Duration::from_secs(20),
        "a worker to claim the job",
        || async {
            match job(db).await {
                (JobState::Running, Some(by), _) => Some(by),
                _ => None,
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_of_a_worker_killed_mid_job_completes_on_another() {
    let app = TestApp::builder().without_worker().start().await;
    let db = &app.db;
    let mut lock = hold_user(db, "user_kill").await;
    let mut a = app.spawn_worker("kill-a", &[]);
    app.post(&user_event(
        "created",
        "user_kill",
        1_760_000_000_000,
        "Survivor",
    ))
    .await;
    let a_name = in_flight(db).await;

    signal(&a, "KILL");
    let killed = Instant::now();
    a.wait().await.unwrap();
    let _b = app.spawn_worker("kill-b", &[]);
    sqlx::query("COMMIT").execute(&mut lock).await.unwrap();

    let (by, attempts) = eventually(
        Duration::from_secs(40),
        "the job to complete on B",
        || async {
            match job(db).await {
                (JobState::Done, by, attempts) => Some((by, attempts)),
                _ => None,
            }
        },
    )
    .await;
    let rescued_in = killed.elapsed();
    println!("job rescued and done {rescued_in:?} after SIGKILL");
    assert_ne!(
        by.as_deref(),
        Some(a_name.as_str()),
        "done by another worker"
    );
    assert!(
        rescued_in < Duration::from_secs(30),
        "rescued in {rescued_in:?}"
    );
    assert_eq!(attempts, 2, "the killed attempt counts");
    let name: Option<String> =
        sqlx::query_scalar("SELECT first_name FROM clerk.users WHERE id = 'user_kill'")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(name.as_deref(), Some("Survivor"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_claiming_finishes_in_flight_work_and_exits_zero() {
    let app = TestApp::builder().without_worker().start().await;
    let db = &app.db;
    let mut lock = hold_user(db, "user_drain").await;
    let mut worker = app.spawn_worker("drain", &[]);
    app.post(&user_event(
        "created",
        "user_drain",
        1_760_000_000_000,
        "Drained",
    ))
    .await;
    let name = in_flight(db).await;

    signal(&worker, "TERM");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        worker.try_wait().unwrap().is_none(),
        "exited with a job in flight"
    );
    // A job that arrives now is not claimed by the stopping worker.
    app.post(&user_event(
        "created",
        "user_later",
        1_760_000_000_000,
        "Later",
    ))
    .await;
    sqlx::query("COMMIT").execute(&mut lock).await.unwrap();

    exits_zero(
        &mut worker,
        Duration::from_secs(15),
        "the worker, after draining,",
    )
    .await;
    let rows = jobs::find(app.pool(), None).await.unwrap();
    assert_eq!(
        (rows[0].state, rows[0].lock_by.as_deref(), rows[0].attempts),
        (JobState::Done, Some(name.as_str()), 1),
        "finished by the draining worker"
    );
    assert_eq!(
        rows[1].state,
        JobState::Pending,
        "the later job waits for the next worker: {rows:?}"
    );
}

/// Waits until the worker process logging to `label` has said it claims jobs (it holds its
/// database session by then).
async fn claiming(app: &TestApp, label: &str) {
    let path = clerk_sync_tests::procs::log_path(&format!("{}-{label}", app.db.name));
    eventually(Duration::from_secs(20), "the worker to claim", || async {
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        log.contains("claiming jobs").then_some(())
    })
    .await;
}

/// A worker killed in the middle of a batch: its database session ends with it, and another
/// worker takes its jobs within two seconds (not three missed heartbeats later). Measured
/// over several kills, from SIGKILL to every job of the batch done elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_of_a_killed_worker_are_done_elsewhere_within_two_seconds() {
    let app = TestApp::builder().without_worker().start().await;
    let db = &app.db;
    // Heartbeats far apart, so that only the session can explain a fast rescue.
    let env = [
        ("HEARTBEAT_INTERVAL_SECS", "30"),
        ("POLL_INTERVAL_MS", "1000"),
    ];
    let mut times = Vec::new();
    for round in 0..5 {
        let user = format!("user_rescue{round}");
        let mut lock = hold_user(db, &user).await;
        let a_label = format!("rescue-a{round}");
        let mut a = app.spawn_worker(&a_label, &env);
        claiming(&app, &a_label).await;
        // One event that blocks on the held row, in a batch with others.
        app.post(&user_event("created", &user, 1_760_000_000_000, "Rescued"))
            .await;
        for i in 0..3 {
            app.post(&user_event(
                "created",
                &format!("user_rescue{round}_{i}"),
                1_760_000_000_000,
                "Batch",
            ))
            .await;
        }
        let a_name = eventually(Duration::from_secs(20), "A to hold the job", || async {
            let rows = jobs::find(app.pool(), None).await.unwrap();
            rows.iter()
                .find(|j| j.state == JobState::Running)
                .and_then(|j| j.lock_by.clone())
        })
        .await;
        let b_label = format!("rescue-b{round}");
        let mut b = app.spawn_worker(&b_label, &env);
        claiming(&app, &b_label).await;

        signal(&a, "KILL");
        let killed = Instant::now();
        a.wait().await.unwrap();
        sqlx::query("COMMIT").execute(&mut lock).await.unwrap();
        let rows = eventually(Duration::from_secs(30), "every job done on B", || async {
            let rows = jobs::find(app.pool(), None).await.unwrap();
            rows.iter()
                .all(|j| j.state == JobState::Done)
                .then_some(rows)
        })
        .await;
        let took = killed.elapsed();
        assert!(
            rows.iter()
                .any(|j| j.attempts == 2 && j.lock_by.as_deref() != Some(&a_name)),
            "a job of A's was rescued and done by another: {rows:?}"
        );
        times.push(took);
        signal(&b, "KILL");
        b.wait().await.unwrap();
    }
    times.sort();
    let (p50, max) = (times[times.len() / 2], times[times.len() - 1]);
    println!(
        "rescue after SIGKILL over {} kills: p50 {p50:?}, max {max:?}",
        times.len()
    );
    assert!(max < Duration::from_secs(2), "rescued in {times:?}");
    let users: i64 = db
        .count("SELECT count(*) FROM clerk.users WHERE first_name = 'Rescued'")
        .await;
    assert_eq!(users, 5);
}

/// During a rolling upgrade, workers of the previous release hold no session lock: the fast
/// rescue must leave their jobs alone (heartbeats cover them), and rescue only the jobs of
/// workers that did hold one and lost it.
#[tokio::test]
async fn the_fast_rescue_leaves_the_jobs_of_workers_without_a_session_lock_alone() {
    let app = TestApp::builder().without_worker().start().await;
    for i in 0..2 {
        app.post(&user_event(
            "created",
            &format!("user_upgrade{i}"),
            1_760_000_000_000,
            "Up",
        ))
        .await;
    }
    let old = "clerk-sync-worker-1-01OLDRELEASE0000000000000";
    let new = format!(
        "clerk-sync-worker-2-01NEWRELEASE0000000000000{}",
        jobs::SESSION_SUFFIX
    );
    for name in [old, new.as_str()] {
        sqlx::query(
            "INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen) \
             VALUES ($1, $2, 'PgStorage', '', now())",
        )
        .bind(name)
        .bind(jobs::QUEUE)
        .execute(app.pool())
        .await
        .unwrap();
        let claimed: i64 = sqlx::query_scalar("SELECT count(*) FROM apalis.get_jobs($1, $2, 1)")
            .bind(name)
            .bind(jobs::QUEUE)
            .fetch_one(app.pool())
            .await
            .unwrap();
        assert_eq!(claimed, 1);
    }
    // Neither holds its session lock: only the new-style worker's job is rescued.
    assert_eq!(jobs::rescue_orphans(app.pool()).await.unwrap(), 1);
    let rows = jobs::find(app.pool(), None).await.unwrap();
    let states: Vec<(JobState, Option<&str>)> = rows
        .iter()
        .map(|j| (j.state, j.lock_by.as_deref()))
        .collect();
    assert!(
        states.contains(&(JobState::Running, Some(old))),
        "{states:?}"
    );
    assert!(states.contains(&(JobState::Pending, None)), "{states:?}");
    // A worker that holds its lock keeps its jobs.
    let held = format!(
        "clerk-sync-worker-3-01HELD00000000000000000000{}",
        jobs::SESSION_SUFFIX
    );
    sqlx::query(
        "INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen) \
         VALUES ($1, $2, 'PgStorage', '', now())",
    )
    .bind(&held)
    .bind(jobs::QUEUE)
    .execute(app.pool())
    .await
    .unwrap();
    let mut session = PgConnection::connect(&app.db.url).await.unwrap();
    assert!(jobs::lock_session(&mut session, &held).await.unwrap());
    let claimed: i64 = sqlx::query_scalar("SELECT count(*) FROM apalis.get_jobs($1, $2, 1)")
        .bind(&held)
        .bind(jobs::QUEUE)
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(claimed, 1);
    assert_eq!(jobs::rescue_orphans(app.pool()).await.unwrap(), 0);
    // Its session ends: the job is rescued at the next pass.
    session.close().await.unwrap();
    eventually(Duration::from_secs(5), "the rescue", || async {
        (jobs::rescue_orphans(app.pool()).await.unwrap() == 1).then_some(())
    })
    .await;
}
