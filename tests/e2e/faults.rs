//! Faults, with the real binaries where it matters: every test ends with the mirror as
//! expected and no acknowledged event lost.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use clerk_sync_core::{
    jobs::{JobFilter, JobState, Selection},
    ops,
};
use clerk_sync_tests::{
    Signer, TestApp, TestIngest,
    app::settled,
    events::user_event,
    http::{IngestOptions, client, request},
    pg_cluster::PgCluster,
    procs::{exits_zero, free_port, signal, spawn_ingest, spawn_worker_with, wait_for_port},
    signing::Delivery,
    worker::{eventually, fast_settings},
};
use futures::StreamExt as _;
use sqlx::{Connection as _, PgConnection};

const T0: i64 = 1_760_000_000_000;

/// `users` users with `versions` events each (created, then updates), shuffled; the
/// expected first name of each user is its last version's.
fn history(users: usize, versions: usize, seed: u64) -> (Vec<Vec<u8>>, Vec<(String, String)>) {
    let mut bodies = Vec::new();
    let mut expected = Vec::new();
    for u in 0..users {
        let id = format!("user_f{u:05}");
        for v in 0..versions {
            let kind = if v == 0 { "created" } else { "updated" };
            bodies.push(user_event(
                kind,
                &id,
                T0 + v as i64 * 1000,
                &format!("v{v}"),
            ));
        }
        expected.push((id, format!("v{}", versions - 1)));
    }
    fastrand::Rng::with_seed(seed).shuffle(&mut bodies);
    (bodies, expected)
}

async fn assert_mirror(pool: &sqlx::PgPool, expected: &[(String, String)]) {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT id, first_name FROM clerk.users ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), expected.len());
    let wrong: Vec<_> = rows
        .iter()
        .zip(expected)
        .filter(|(a, b)| a != b)
        .take(5)
        .collect();
    assert!(
        wrong.is_empty(),
        "rows differ from the in-order result: {wrong:?}"
    );
}

async fn deliver_all(app: &TestApp, bodies: &[Vec<u8>]) {
    let answers: Vec<u16> = futures::stream::iter(bodies)
        .map(|b| async move { app.post(b).await.status })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(answers.iter().all(|s| *s == 202), "not all stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_three_times_while_draining_loses_nothing() {
    let app = TestApp::builder().without_worker().start().await;
    let (bodies, expected) = history(500, 4, 7);
    deliver_all(&app, &bodies).await;
    assert_eq!(app.stats().await.pending, 2000);

    for round in 0..3 {
        let mut worker = app.spawn_worker(&format!("kill{round}"), &[]);
        let before = app.stats().await.done;
        // Kill it mid-drain, with jobs in flight.
        eventually(
            Duration::from_secs(60),
            "the worker to make progress",
            || async { (app.stats().await.done >= before + 150).then_some(()) },
        )
        .await;
        signal(&worker, "KILL");
        worker.wait().await.unwrap();
    }
    let stats = app.stats().await;
    assert!(stats.done < 2000, "the kills happened mid-drain: {stats:?}");
    let _last = app.spawn_worker("kill-last", &[]);
    let stats = app.settle_within(Duration::from_secs(120)).await;
    assert_eq!(
        (stats.done, stats.dead, stats.events_received),
        (2000, 0, 2000)
    );
    assert_mirror(app.pool(), &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_ingest_under_load_loses_nothing_acknowledged() {
    let app = TestApp::builder().without_worker().start().await;
    let port = free_port();
    let mut ingest = spawn_ingest(app.url(), port, &format!("{}-ingest", app.db.name), &[]);
    wait_for_port(port).await;
    let url = format!("http://127.0.0.1:{port}/webhooks/clerk");
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let senders: Vec<_> = (0..16)
        .map(|s| {
            let (url, acked) = (url.clone(), acked.clone());
            tokio::spawn(async move {
                let (client, signer) = (client(), Signer::default());
                for i in 0..10_000 {
                    let d = signer.sign(&user_event(
                        "created",
                        &format!("user_s{s}_{i}"),
                        T0,
                        "Load",
                    ));
                    match request(&client, "POST", &url, &d.headers(), d.body.clone()).await {
                        Ok(a) if a.status == 202 => acked.lock().unwrap().push(d.id),
                        Ok(a) => panic!("unexpected answer {a:?}"),
                        Err(_) => return, // the server is gone: nothing was acknowledged
                    }
                }
            })
        })
        .collect();
    // Under load: SIGTERM once a good number of deliveries were acknowledged.
    eventually(
        Duration::from_secs(30),
        "100 acknowledged deliveries",
        || async { (acked.lock().unwrap().len() >= 100).then_some(()) },
    )
    .await;
    signal(&ingest, "TERM");
    exits_zero(&mut ingest, Duration::from_secs(15), "ingest").await;
    for s in senders {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 100,
        "load was applied: {} acknowledged",
        acked.len()
    );
    let stored: HashSet<String> = sqlx::query_scalar(
        "SELECT e.svix_id FROM clerk_sync.webhook_events e JOIN apalis.jobs j ON j.id = e.job_id",
    )
    .fetch_all(app.pool())
    .await
    .unwrap()
    .into_iter()
    .collect();
    let missing: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged but not stored",
        missing.len()
    );
    println!(
        "{} acknowledged before SIGTERM, all stored with their jobs",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_database_and_full_pool_give_503_quickly_then_recover() {
    let app = TestApp::builder().without_worker().start().await;
    let db = &app.db;
    let pool = clerk_sync_core::db::connect(
        &db.url,
        "slow-test",
        2,
        clerk_sync_core::db::Session {
            statement_timeout: Some(Duration::from_millis(800)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let ingest = Arc::new(
        TestIngest::start_with(
            pool,
            IngestOptions {
                request_timeout: Duration::from_secs(1),
                ..IngestOptions::default()
            },
        )
        .await,
    );
    // Something holds the event table: every insert waits.
    let mut blocker = PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query("LOCK TABLE clerk_sync.webhook_events IN EXCLUSIVE MODE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let deliveries: Vec<Delivery> = (0..6)
        .map(|i| {
            ingest
                .signer
                .sign(&user_event("created", &format!("user_slow{i}"), T0, "Slow"))
        })
        .collect();
    let started = Instant::now();
    let answers = futures::future::join_all(deliveries.iter().map(|d| {
        let ingest = ingest.clone();
        async move {
            let t = Instant::now();
            (ingest.deliver(d).await, t.elapsed())
        }
    }))
    .await;
    for (a, took) in &answers {
        assert_eq!(a.status, 503, "{a:?}");
        assert!(*took < Duration::from_secs(5), "answered after {took:?}");
    }
    println!(
        "6 requests on a pool of 2 against a locked table: all 503 in {:?}",
        started.elapsed()
    );
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    // The sender retries; now all are stored, once. (A delivery whose statement was already
    // waiting on the lock when its request timed out commits once the lock is gone: its
    // retry is answered as a duplicate, 200.)
    for d in &deliveries {
        let status = ingest.deliver(d).await.status;
        assert!(status == 202 || status == 200, "{status}");
    }
    assert_eq!(
        db.count("SELECT count(*) FROM clerk_sync.webhook_events")
            .await,
        6
    );
    assert_eq!(db.count("SELECT count(*) FROM apalis.jobs").await, 6);

    // A worker meeting a locked row gives the attempt up at its time limit and retries.
    let mut settings = fast_settings();
    settings.job_timeout = Duration::from_millis(500);
    sqlx::query(
        "INSERT INTO clerk.users (id, version, raw) VALUES ('user_slow0', '2000-01-01', '{}')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query("SELECT 1 FROM clerk.users WHERE id = 'user_slow0' FOR UPDATE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let mut app = app;
    app.start_worker(settings).await;
    let db = &app.db;
    eventually(Duration::from_secs(20), "a timed-out attempt", || async {
        let n = db
            .count("SELECT count(*) FROM clerk_sync.job_errors WHERE kind = 'timeout'")
            .await;
        (n >= 1).then_some(())
    })
    .await;
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    let stats = app.settle().await;
    assert_eq!((stats.done, stats.dead), (6, 0));
    assert_eq!(
        app.count("SELECT count(*) FROM clerk.users WHERE first_name = 'Slow'")
            .await,
        6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_duplicates_and_replays_converges_once() {
    let mut settings = fast_settings();
    settings.max_attempts = 2;
    let mut app = TestApp::builder()
        .setup("ALTER TABLE clerk.users ADD CONSTRAINT no_storm CHECK (first_name <> 'v2')")
        .settings(settings.clone())
        .start()
        .await;
    let (bodies, expected) = history(40, 3, 11);
    let deliveries: Vec<Delivery> = bodies.iter().map(|b| app.ingest.signer.sign(b)).collect();
    for d in &deliveries {
        assert_eq!(app.deliver(d).await.status, 202);
    }
    let stats = app.settle_within(Duration::from_secs(30)).await;
    assert_eq!(stats.dead, 40, "{stats:?}");
    app.sql("ALTER TABLE clerk.users DROP CONSTRAINT no_storm")
        .await;
    // A second worker beside the first, while everything happens at once.
    let _second = app.spawn_worker("storm", &[("MAX_ATTEMPTS", "2")]);

    // At once: every delivery again, five times over, and twenty replays of everything.
    let app_ref = &app;
    let duplicates = futures::stream::iter((0..5).flat_map(|_| deliveries.iter()))
        .map(|d| async move { app_ref.deliver(d).await.status })
        .buffer_unordered(16)
        .collect::<Vec<u16>>();
    let every_dead = Selection::Filter(JobFilter {
        state: Some(JobState::Dead),
        ..Default::default()
    });
    let actor = ops::Actor("test:storm".into());
    let replays = futures::future::join_all(
        (0..20).map(|_| ops::replay(app_ref.pool(), &every_dead, &actor)),
    );
    let (statuses, replayed) = tokio::join!(duplicates, replays);
    assert!(statuses.iter().all(|s| *s == 200), "duplicates are no-ops");
    let replayed: usize = replayed.into_iter().map(|r| r.unwrap().job_ids.len()).sum();
    assert_eq!(
        replayed, 40,
        "each dead job is replayed once, however many replays race"
    );

    let stats = app.settle_within(Duration::from_secs(30)).await;
    assert_eq!(
        (stats.done, stats.dead, stats.events_received),
        (120, 0, 120)
    );
    assert_mirror(app.pool(), &expected).await;
    app.stop_worker().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_ingest_answers_503_then_recovers_and_the_worker_reconnects() {
    let cluster = PgCluster::start_new();
    let mut admin = PgConnection::connect(&cluster.url("postgres"))
        .await
        .unwrap();
    sqlx::query("CREATE DATABASE clerk_sync")
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let url = cluster.url("clerk_sync");
    clerk_sync_core::db::migrate(&url).await.unwrap();

    let port = free_port();
    let label = format!("restart-{}", cluster.port);
    let mut ingest = spawn_ingest(&url, port, &format!("{label}-ingest"), &[]);
    let _worker = spawn_worker_with(&url, &format!("{label}-worker"), &[]);
    wait_for_port(port).await;
    let endpoint = format!("http://127.0.0.1:{port}/webhooks/clerk");

    // A sender that behaves like Svix: a refused delivery is retried, same svix-id.
    let (bodies, expected) = history(150, 1, 3);
    let refusals = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let sender = {
        let (endpoint, refusals) = (endpoint.clone(), refusals.clone());
        tokio::spawn(async move {
            let (client, signer) = (client(), Signer::default());
            for body in bodies {
                let d = signer.sign(&body);
                loop {
                    let t = Instant::now();
                    match request(&client, "POST", &endpoint, &d.headers(), d.body.clone()).await {
                        Ok(a) if a.status == 202 || a.status == 200 => break,
                        Ok(a) if a.status == 503 => refusals.lock().unwrap().push(t.elapsed()),
                        other => panic!("unexpected {other:?}"),
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.start();
    tokio::time::timeout(Duration::from_secs(60), sender)
        .await
        .expect("all delivered")
        .unwrap();

    let refusals = refusals.lock().unwrap().clone();
    assert!(!refusals.is_empty(), "the outage was seen as 503s");
    let slowest = refusals.iter().max().unwrap();
    assert!(*slowest < Duration::from_secs(5), "a 503 took {slowest:?}");
    assert!(
        ingest.try_wait().unwrap().is_none(),
        "ingest recovered without a restart"
    );

    let pool = clerk_sync_core::db::connect(&url, "restart-test", 2, Default::default())
        .await
        .unwrap();
    let stats = settled(&pool, Duration::from_secs(60)).await;
    assert_eq!(
        (stats.done, stats.dead, stats.events_received),
        (150, 0, 150)
    );
    assert_mirror(&pool, &expected).await;
    println!(
        "{} deliveries refused with 503 during the outage (slowest {slowest:?}); all applied after",
        refusals.len()
    );
    pool.close().await;
    signal(&ingest, "TERM");
    let _ = ingest.wait().await;
}
