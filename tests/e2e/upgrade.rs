//! Rolling upgrade from the previous release (the binaries deploy/old-release.sh builds from
//! the last commit before HEAD's migrations): a fresh database migrated by the old
//! `clerk-sync migrate`, loaded through the old ingest and worker; with the old worker's jobs
//! in flight, the new `clerk-sync migrate`; new ingest and worker beside the old ones; then
//! only the new ones. Deliveries flow the whole time: every kind, updates out of order,
//! deletes, and Svix retries of one svix-id on both sides of the upgrade.
//!
//! Nothing acknowledged is lost or stored twice, every job is done, the mirror equals applying
//! every event once in order (so a job claimed twice changed nothing), and the previous
//! release neither fails a request or a job nor logs a warning against the new schema.
//!
//! deploy/test.sh runs it after the suite, with `OLD_RELEASE_BIN` set to the previous
//! release's binaries. Settings: UPGRADE_SEEDS (histories of tests/history.rs, 30),
//! UPGRADE_RATE (deliveries per second, 50).

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use clerk_sync_core::jobs::{self, JobState, Stats};
use clerk_sync_tests::{
    TestDb,
    app::settled,
    history::{apply_in_order, differences, history, options, snapshot},
    http::{client, request},
    procs::{Bins, env_number, exits_zero, free_port, log_path, signal, wait_for_port},
    signing::{Signer, now_secs},
    worker::eventually,
};

/// Where the rollout is when a delivery is acknowledged.
const BEFORE: u8 = 0;
const SIDE_BY_SIDE: u8 = 1;
const NEW_ONLY: u8 = 2;

/// One acknowledged delivery: its svix-id, which ingest answered (`old`, `new`), and when.
struct Ack {
    svix_id: String,
    ingest: &'static str,
    phase: u8,
}

/// The load balancer's view: the ingests it sends to, in turn.
type Endpoints = Arc<Mutex<Vec<(&'static str, String)>>>;

/// Lines a process logged at WARN or ERROR (its log is JSON, one event a line), but sqlx's
/// "slow statement": the test holds the mirror's writes on purpose while it migrates.
fn complaints(label: &str) -> Vec<String> {
    let text = std::fs::read_to_string(log_path(label)).unwrap_or_default();
    text.lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .map(|v| {
                    let slow = v["target"] == "sqlx::query"
                        && v["message"]
                            .as_str()
                            .is_some_and(|m| m.starts_with("slow statement"));
                    matches!(v["level"].as_str(), Some("WARN" | "ERROR")) && !slow
                })
                .unwrap_or(true)
        })
        .map(str::to_owned)
        .collect()
}

async fn stop(child: &mut tokio::process::Child, what: &str) {
    signal(child, "TERM");
    exits_zero(
        child,
        Duration::from_secs(30),
        &format!("{what}, on SIGTERM,"),
    )
    .await;
}

// Needs the previous release built (deploy/old-release.sh), so it runs from deploy/test.sh.
#[ignore = "needs OLD_RELEASE_BIN: deploy/test.sh builds the previous release and runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_upgrade_from_the_previous_release_loses_nothing_and_changes_nothing() {
    let old = Bins::at(std::env::var("OLD_RELEASE_BIN").expect(
        "OLD_RELEASE_BIN is not set: it names the previous release's binaries \
         (OLD_RELEASE_BIN=$(bash deploy/old-release.sh)); deploy/test.sh sets it",
    ));
    let new = Bins::current();
    let seeds = env_number("UPGRADE_SEEDS", 30);
    let rate = env_number("UPGRADE_RATE", 50).max(1);
    let options = options();

    // The histories, and their in-order result on a database of the new schema.
    let mut events = Vec::new();
    for seed in 1..=seeds {
        events.extend(history(10_000 + seed));
    }
    let expected = TestDb::new().await;
    apply_in_order(&expected.pool, &mut events, &options).await;
    // Shuffled; about one delivery in four is retried later under the same svix-id.
    let mut rng = fastrand::Rng::with_seed(seeds);
    let mut plan: Vec<(String, Vec<u8>)> = events
        .iter()
        .map(|e| (clerk_sync_core::webhook::new_msg_id(), e.body.clone()))
        .collect();
    rng.shuffle(&mut plan);
    let mut i = 0;
    while i < plan.len() {
        if rng.u8(0..4) == 0 {
            let at = rng.usize(i + 1..=plan.len());
            plan.insert(at, plan[i].clone());
        }
        i += 1;
    }
    let total = plan.len();

    // The previous release migrates a fresh database and runs.
    let db = TestDb::empty().await;
    let out = old.cli(&db.url, &["migrate"], &[]).await;
    assert_eq!(out.code, 0, "the previous release's migrate: {out:?}");
    let applied = "SELECT count(*) FROM clerk_sync._sqlx_migrations WHERE success";
    let old_migrations = db.count(applied).await;
    let label = format!("upgrade-{}", std::process::id());
    // The default poll interval: what an old ingest's jobs wait once nothing announces them.
    let worker_env = [("MIRROR_SESSIONS", "true"), ("POLL_INTERVAL_MS", "1000")];
    let old_port = free_port();
    let mut old_ingest = old.ingest(&db.url, old_port, &format!("{label}-old-ingest"), &[]);
    let mut old_worker = old.worker(&db.url, &format!("{label}-old-worker"), &worker_env);
    let old_worker_pid = old_worker.id().unwrap();
    wait_for_port(old_port).await;

    // Deliveries at `rate`, each retried (same svix-id, signed again, like Svix) until an
    // ingest acknowledges it; ingests taken in turn, like a load balancer.
    let endpoints: Endpoints = Arc::new(Mutex::new(vec![(
        "old",
        format!("http://127.0.0.1:{old_port}/webhooks/clerk"),
    )]));
    let phase = Arc::new(AtomicU8::new(BEFORE));
    let dispatched = Arc::new(AtomicUsize::new(0));
    let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
    let refusals = Arc::new(Mutex::new(Vec::<String>::new()));
    let sender = {
        let (endpoints, phase, dispatched, acks, refusals) = (
            endpoints.clone(),
            phase.clone(),
            dispatched.clone(),
            acks.clone(),
            refusals.clone(),
        );
        tokio::spawn(async move {
            let http = client();
            let turn = Arc::new(AtomicUsize::new(0));
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            let mut tasks = Vec::new();
            for (svix_id, body) in plan {
                tick.tick().await;
                let (http, endpoints, phase, acks, refusals, turn) = (
                    http.clone(),
                    endpoints.clone(),
                    phase.clone(),
                    acks.clone(),
                    refusals.clone(),
                    turn.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    let signer = Signer::default();
                    loop {
                        let (ingest, url) = {
                            let list = endpoints.lock().unwrap();
                            list[turn.fetch_add(1, Ordering::Relaxed) % list.len()].clone()
                        };
                        let d = signer.sign_at(&svix_id, now_secs(), &body);
                        match request(&http, "POST", &url, &d.headers(), d.body).await {
                            Ok(a) if a.status / 100 == 2 => {
                                let phase = phase.load(Ordering::SeqCst);
                                acks.lock().unwrap().push(Ack {
                                    svix_id,
                                    ingest,
                                    phase,
                                });
                                return;
                            }
                            Ok(a) => refusals.lock().unwrap().push(format!("{ingest}: {a:?}")),
                            Err(e) => refusals.lock().unwrap().push(format!("{ingest}: {e}")),
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }));
                dispatched.fetch_add(1, Ordering::SeqCst);
            }
            for t in tasks {
                tokio::time::timeout(Duration::from_secs(60), t)
                    .await
                    .expect("every delivery acknowledged in the end")
                    .unwrap();
            }
        })
    };
    let reached = |share: usize| {
        let dispatched = dispatched.clone();
        async move {
            let what = format!("{share}/3 of the deliveries sent");
            eventually(Duration::from_secs(300), &what, || async {
                (dispatched.load(Ordering::SeqCst) >= total * share / 3).then_some(())
            })
            .await
        }
    };

    // A third of the traffic on the previous release alone.
    reached(1).await;

    // Jobs in flight: writes to clerk.users wait on a lock this test holds, so the old
    // worker's claimed batches stop mid-apply while more jobs queue up; the new migrations
    // start under them, then the lock goes.
    let mut hold = db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE clerk.users IN SHARE MODE")
        .execute(&mut *hold)
        .await
        .unwrap();
    let in_flight = eventually(
        Duration::from_secs(20),
        "the old worker's jobs running and 20 more pending",
        || async {
            let s = Stats::read(&db.pool).await.unwrap();
            (s.running > 0 && s.pending >= 20).then_some(s)
        },
    )
    .await;
    phase.store(SIDE_BY_SIDE, Ordering::SeqCst);
    let migrating = Instant::now();
    let migrate = {
        let (new, url) = (new.clone(), db.url.clone());
        tokio::spawn(async move { new.cli(&url, &["migrate"], &[]).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    hold.rollback().await.unwrap();
    let out = migrate.await.unwrap();
    let migrate_ms = migrating.elapsed().as_millis();
    assert_eq!(out.code, 0, "the new migrate: {out:?}");
    let new_migrations = db.count(applied).await - old_migrations;
    assert!(
        new_migrations > 0,
        "the new migrate applied nothing: OLD_RELEASE_BIN holds this release"
    );
    let migrated_at: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(
        old_worker.try_wait().unwrap().is_none(),
        "the old worker exited on the new schema"
    );
    assert!(
        old_ingest.try_wait().unwrap().is_none(),
        "the old ingest exited on the new schema"
    );
    // The previous release's CLI still reads the new schema.
    let status = old.cli(&db.url, &["status", "--json"], &[]).await;
    assert_eq!(status.code, 0, "the old `status --json`: {status:?}");

    // New ingest and worker beside the old ones, for the next third.
    let new_port = free_port();
    let mut new_ingest = new.ingest(&db.url, new_port, &format!("{label}-new-ingest"), &[]);
    let mut new_worker = new.worker(&db.url, &format!("{label}-new-worker"), &worker_env);
    let new_worker_pid = new_worker.id().unwrap();
    wait_for_port(new_port).await;
    endpoints
        .lock()
        .unwrap()
        .push(("new", format!("http://127.0.0.1:{new_port}/webhooks/clerk")));
    reached(2).await;

    // Only the new ones: the old ingest leaves the balancer, finishes what it holds and
    // stops; the old worker drains and stops.
    phase.store(NEW_ONLY, Ordering::SeqCst);
    endpoints.lock().unwrap().retain(|(name, _)| *name == "new");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop(&mut old_ingest, "the old ingest").await;
    stop(&mut old_worker, "the old worker").await;
    sender.await.unwrap();
    let stats = settled(&db.pool, Duration::from_secs(120)).await;

    // What was acknowledged is what is stored, once.
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    let refusals = std::mem::take(&mut *refusals.lock().unwrap());
    let acked: HashSet<&str> = acks.iter().map(|a| a.svix_id.as_str()).collect();
    let stored: Vec<String> = sqlx::query_scalar("SELECT svix_id FROM clerk_sync.webhook_events")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let stored_set: HashSet<&str> = stored.iter().map(String::as_str).collect();
    assert_eq!(acks.len(), total, "every delivery acknowledged");
    assert_eq!(acked.len(), events.len(), "every event acknowledged");
    assert_eq!(stored.len(), stored_set.len(), "an event stored twice");
    assert_eq!(
        stored_set, acked,
        "stored events differ from acknowledged ones"
    );
    assert!(
        refusals.is_empty(),
        "{} deliveries refused during the upgrade, first: {:?}",
        refusals.len(),
        refusals.first()
    );

    // Every job done once, none dead, no failed attempt.
    assert_eq!(stats.dead, 0, "{stats:?}");
    assert_eq!(stats.events_received as usize, events.len());
    let all = jobs::find(&db.pool, None).await.unwrap();
    assert_eq!(all.len(), events.len(), "one job per event");
    assert!(all.iter().all(|j| j.state == JobState::Done));
    let failed_attempts = db.count("SELECT count(*) FROM clerk_sync.job_errors").await;
    assert_eq!(failed_attempts, 0, "attempts failed during the upgrade");

    // The mirror is what the events say, applied once each in order.
    let diffs = differences(&snapshot(&expected.pool).await, &snapshot(&db.pool).await);
    assert!(
        diffs.is_empty(),
        "{} rows differ from the in-order result:\n{}",
        diffs.len(),
        diffs.iter().take(8).cloned().collect::<Vec<_>>().join("\n")
    );

    // Both releases did work after the migration, side by side.
    let by = |pid: u32| {
        let prefix = format!("clerk-sync-worker-{pid}-");
        move |j: &&jobs::Job| j.lock_by.as_deref().is_some_and(|w| w.starts_with(&prefix))
    };
    let after = |j: &&jobs::Job| j.done_at.is_some_and(|t| t > migrated_at);
    let old_before = all
        .iter()
        .filter(by(old_worker_pid))
        .filter(|j| !after(j))
        .count();
    let old_after = all.iter().filter(by(old_worker_pid)).filter(after).count();
    let new_done = all.iter().filter(by(new_worker_pid)).count();
    assert_eq!(
        old_before + old_after + new_done,
        all.len(),
        "jobs done by neither worker"
    );
    assert!(old_after > 0, "the old worker did no job on the new schema");
    assert!(new_done > 0, "the new worker did no job");
    let reclaimed = all.iter().filter(|j| j.attempts > 1).count();

    let count = |ingest: &str, phase: u8| {
        acks.iter()
            .filter(|a| a.ingest == ingest && a.phase == phase)
            .count()
    };
    let mut phases_of: HashMap<&str, HashSet<u8>> = HashMap::new();
    for a in &acks {
        phases_of
            .entry(a.svix_id.as_str())
            .or_default()
            .insert(a.phase.min(SIDE_BY_SIDE));
    }
    let across = phases_of.values().filter(|p| p.len() > 1).count();
    // Lag (received to done) by the ingest that stored the event and when.
    let lags: HashMap<String, f64> = sqlx::query_as(
        "SELECT e.svix_id, extract(epoch FROM j.done_at - e.received_at)::float8 * 1000 \
         FROM clerk_sync.webhook_events e JOIN apalis.jobs j ON j.id = e.job_id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let mut first_ack: HashMap<&str, (&str, u8)> = HashMap::new();
    for a in &acks {
        first_ack
            .entry(a.svix_id.as_str())
            .or_insert((a.ingest, a.phase));
    }
    let median_lag = |ingest: &str, phase: u8| {
        let mut v: Vec<f64> = first_ack
            .iter()
            .filter(|(_, (i, p))| *i == ingest && *p == phase)
            .map(|(id, _)| lags[*id])
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let lag = jobs::lag_quantiles_ms(&db.pool, &[0.5, 0.99])
        .await
        .unwrap();
    println!(
        "upgrade: {total} deliveries of {} events at {rate}/s; acknowledged by the old ingest \
         {} before the migration, {} after; by the new ingest {} beside the old, {} alone; \
         {across} svix-ids acknowledged both before and after the migration started; \
         {} refused; in flight when the new migrate started: {} running, {} pending; \
         the new migrate applied {new_migrations} migrations in {migrate_ms} ms; jobs done \
         by the old worker {old_before} before the migration and {old_after} after, by the \
         new worker {new_done}; {reclaimed} jobs claimed more than once; {failed_attempts} \
         failed attempts; dead {}; mirror rows equal to the in-order result: {}; lag p50 \
         {:.0} ms, p99 {:.0} ms; median lag of events stored by the old ingest {:.0} ms \
         before the migration, {:.0} ms after; by the new ingest {:.0} ms beside the old, \
         {:.0} ms alone",
        events.len(),
        count("old", BEFORE),
        count("old", SIDE_BY_SIDE),
        count("new", SIDE_BY_SIDE),
        count("new", NEW_ONLY),
        refusals.len(),
        in_flight.running,
        in_flight.pending,
        stats.dead,
        snapshot(&db.pool).await.len(),
        lag[0],
        lag[1],
        median_lag("old", BEFORE),
        median_lag("old", SIDE_BY_SIDE),
        median_lag("new", SIDE_BY_SIDE),
        median_lag("new", NEW_ONLY),
    );
    assert!(across > 0, "no svix-id was retried across the upgrade");

    // The previous release ran on the new schema without a complaint. (The new worker may
    // warn, rightly: it rescues the jobs the old one had claimed but not started when it
    // stopped.)
    stop(&mut new_ingest, "the new ingest").await;
    stop(&mut new_worker, "the new worker").await;
    for process in ["old-ingest", "old-worker"] {
        let lines = complaints(&format!("{label}-{process}"));
        assert!(
            lines.is_empty(),
            "the {process} logged {} warnings or errors, first: {}",
            lines.len(),
            lines[0]
        );
    }
    for process in ["new-ingest", "new-worker"] {
        for line in complaints(&format!("{label}-{process}")) {
            println!("upgrade: the {process} warned: {line}");
        }
    }
}
