//! Property: any permutation of an event history, with any duplicates, delivered through
//! the real ingest endpoint and applied by several concurrent workers, ends with the same
//! mirror as applying each event once, in order.

use std::time::Duration;

use clerk_sync_core::mirror::{self, Decoded, Options};
use clerk_sync_tests::{TestApp, TestDb, events::*};
use futures::StreamExt as _;
use serde_json::Value;

struct Event {
    time: i64,
    body: Vec<u8>,
}

enum Kind {
    User,
    Org,
    Membership { org: String, user: String },
}

/// One seed's history: every object's created, updates and maybe a delete, interleaved
/// at random on one timeline with distinct times.
fn history(seed: u64) -> Vec<Event> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let users: Vec<String> = (0..rng.usize(1..=4))
        .map(|i| format!("user_s{seed}_{i}"))
        .collect();
    let orgs: Vec<String> = (0..rng.usize(1..=3))
        .map(|i| format!("org_s{seed}_{i}"))
        .collect();
    let mut objects: Vec<(String, Kind, usize, bool)> = Vec::new();
    for u in &users {
        objects.push((u.clone(), Kind::User, rng.usize(0..=3), rng.u8(0..10) < 3));
    }
    for o in &orgs {
        objects.push((o.clone(), Kind::Org, rng.usize(0..=3), rng.u8(0..10) < 3));
    }
    for i in 0..rng.usize(0..=5) {
        let org = orgs[rng.usize(0..orgs.len())].clone();
        let user = users[rng.usize(0..users.len())].clone();
        objects.push((
            format!("orgmem_s{seed}_{i}"),
            Kind::Membership { org, user },
            rng.usize(0..=3),
            rng.u8(0..10) < 3,
        ));
    }
    // Steps taken so far per object; an object's steps are created, updates, delete.
    let mut step = vec![0usize; objects.len()];
    let mut last_version = vec![0i64; objects.len()];
    // A membership delete repeats the membership exactly as last updated.
    let mut last_role = vec![String::new(); objects.len()];
    let total = |o: &(String, Kind, usize, bool)| 1 + o.2 + usize::from(o.3);
    let mut time = 1_760_000_000_000 + (seed as i64) * 10_000_000;
    let mut events = Vec::new();
    loop {
        let open: Vec<usize> = (0..objects.len())
            .filter(|&i| step[i] < total(&objects[i]))
            .collect();
        if open.is_empty() {
            return events;
        }
        let i = open[rng.usize(0..open.len())];
        time += rng.i64(1..5_000);
        let (id, kind, updates, _) = &objects[i];
        let n = step[i];
        let action = if n == 0 {
            "created"
        } else if n <= *updates {
            "updated"
        } else {
            "deleted"
        };
        let label = format!("v{n}-{}", rng.u32(..));
        let body = match (kind, action) {
            (Kind::User, "deleted") => user_deleted(id, time),
            (Kind::User, _) => user_event(action, id, time, &label),
            (Kind::Org, "deleted") => org_deleted(id, time),
            (Kind::Org, _) => org_event(action, id, time, &label),
            (Kind::Membership { org, user }, "deleted") => {
                membership_deleted(id, org, user, last_version[i], &last_role[i], time)
            }
            (Kind::Membership { org, user }, _) => {
                last_role[i] = format!("org:{label}");
                membership_event(action, id, org, user, time, &last_role[i])
            }
        };
        if action != "deleted" {
            last_version[i] = time;
        }
        step[i] += 1;
        events.push(Event { time, body });
    }
}

async fn snapshot(db: &TestDb) -> Vec<(String, Value)> {
    let mut rows = Vec::new();
    for table in [
        "clerk.users",
        "clerk.organizations",
        "clerk.organization_memberships",
    ] {
        let sql = format!("SELECT id, to_jsonb(t) - 'synced_at' FROM {table} t ORDER BY id");
        let mut part: Vec<(String, Value)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&db.pool)
            .await
            .unwrap();
        rows.append(&mut part);
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_order_and_any_duplicates_converge_to_the_in_order_result() {
    let seeds: u64 = std::env::var("PROPERTY_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let first: u64 = std::env::var("PROPERTY_FIRST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let expected = TestDb::new().await;
    let mut app = TestApp::builder().workers(3).start().await;
    let (actual, ingest) = (&app.db, &app.ingest);

    let mut deliveries_total = 0;
    for seed in first..first + seeds {
        let mut events = history(seed);
        // In order, once each: the reference.
        events.sort_by_key(|e| e.time);
        for e in &events {
            let Decoded::Change(change) = mirror::decode(&e.body, &Options::default()).unwrap()
            else {
                panic!("every event of the history is mirrored");
            };
            mirror::apply(&expected.pool, &change, &Options::default())
                .await
                .unwrap();
        }
        // Shuffled, with duplicates (Svix retries reuse the svix-id; so do we).
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
        let mut deliveries = Vec::new();
        for e in &events {
            let d = ingest.signer.sign(&e.body);
            for _ in 0..(1 + usize::from(rng.u8(0..10) < 3) * rng.usize(1..=2)) {
                deliveries.push(d.clone());
            }
        }
        rng.shuffle(&mut deliveries);
        deliveries_total += deliveries.len();
        let answers: Vec<u16> = futures::stream::iter(deliveries.iter())
            .map(|d| async { ingest.deliver(d).await.status })
            .buffer_unordered(8)
            .collect()
            .await;
        assert!(
            answers.iter().all(|s| *s == 200 || *s == 202),
            "seed {seed}: {answers:?}"
        );
    }
    let stats = app.settle_within(Duration::from_secs(120)).await;
    assert_eq!(stats.dead, 0, "{stats:?}");

    let (want, got) = (snapshot(&expected).await, snapshot(actual).await);
    let want_ids: Vec<&String> = want.iter().map(|r| &r.0).collect();
    let got_ids: Vec<&String> = got.iter().map(|r| &r.0).collect();
    assert_eq!(want_ids, got_ids, "the same objects exist");
    let diffs: Vec<String> = want
        .iter()
        .zip(&got)
        .filter(|(w, g)| w != g)
        .map(|(w, g)| {
            let keys: Vec<String> =
                w.1.as_object()
                    .unwrap()
                    .iter()
                    .filter(|(k, v)| g.1.get(k.as_str()) != Some(v))
                    .map(|(k, v)| format!("{k}: in order {v}, actual {}", g.1[k.as_str()]))
                    .collect();
            format!("{}: {}", w.0, keys.join("; "))
        })
        .collect();
    assert!(
        diffs.is_empty(),
        "{} rows differ:\n{}",
        diffs.len(),
        diffs.iter().take(8).cloned().collect::<Vec<_>>().join("\n")
    );

    let lock_holders = actual
        .count(&format!(
            "SELECT count(DISTINCT lock_by) FROM apalis.jobs j WHERE {}",
            clerk_sync_core::jobs::JobState::Done.condition()
        ))
        .await;
    println!(
        "{seeds} seeds, {deliveries_total} deliveries, {} events, {} rows, done by {lock_holders} workers",
        stats.events_received,
        want.len()
    );
    assert!(lock_holders >= 2, "several workers shared the work");
    app.stop_worker().await;
}
