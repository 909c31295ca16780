//! Property: any permutation of an event history mixing every kind of the registry (parent
//! deletes included), with any duplicates, delivered through
//! the real ingest endpoint and applied by several concurrent workers, ends with the same
//! mirror as applying each event once, in order.

use std::time::Duration;

use clerk_sync_tests::{
    TestApp, TestDb,
    history::{apply_in_order, differences, history, options, snapshot},
    worker::fast_settings,
};
use futures::StreamExt as _;

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
    let options = options();
    let mut settings = fast_settings();
    settings.mirror = options.clone();
    let mut app = TestApp::builder()
        .settings(settings)
        .workers(3)
        .start()
        .await;
    let (actual, ingest) = (&app.db, &app.ingest);

    let mut deliveries_total = 0;
    for seed in first..first + seeds {
        let mut events = history(seed);
        // In order, once each: the reference.
        apply_in_order(&expected.pool, &mut events, &options).await;
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

    let (want, got) = (snapshot(&expected.pool).await, snapshot(&actual.pool).await);
    let diffs = differences(&want, &got);
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
