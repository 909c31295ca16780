//! The worker as a real process: killed mid-job, or stopped with SIGTERM mid-job.

use std::time::{Duration, Instant};

use clerk_sync_core::jobs::{self, JobState};
use clerk_sync_tests::{TestApp, TestDb, events::user_event, procs::signal, worker::eventually};
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

    let exit = tokio::time::timeout(Duration::from_secs(15), worker.wait())
        .await
        .expect("exits after draining")
        .unwrap();
    assert_eq!(exit.code(), Some(0));
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
