use clerk_sync_core::metrics::{CounterVec, Exposition, HistogramVec, LATENCY_BUCKETS};
use sqlx::PgPool;

pub static JOBS: CounterVec = CounterVec::new(
    "clerk_sync_worker_jobs_total",
    "Jobs completed, by outcome (applied, stale, skipped) and event type.",
    &["outcome", "event_type"],
);
pub static FAILED_ATTEMPTS: CounterVec = CounterVec::new(
    "clerk_sync_worker_failed_attempts_total",
    "Failed attempts, by kind (transient, timeout, panic, permanent, exhausted).",
    &["kind"],
);
pub static DEAD: CounterVec = CounterVec::new(
    "clerk_sync_worker_dead_letters_total",
    "Jobs dead-lettered by this process, by the kind of their last failure.",
    &["kind"],
);
pub static TRANSACTIONS: CounterVec = CounterVec::new(
    "clerk_sync_worker_apply_transactions_total",
    "Transactions that applied jobs, by result (committed, rolled_back); jobs per transaction = jobs_total / committed.",
    &["result"],
);
pub static DURATION: HistogramVec = HistogramVec::new(
    "clerk_sync_worker_job_duration_seconds",
    "Time to apply one event.",
    &[],
    LATENCY_BUCKETS,
);
pub static LAG: HistogramVec = HistogramVec::new(
    "clerk_sync_worker_sync_lag_seconds",
    "From the event's time (envelope timestamp) to its row in the mirror.",
    &[],
    LATENCY_BUCKETS,
);

/// Counters of this process, plus the queue as the database sees it (all workers); the
/// queue gauges are left out when the database cannot be read.
pub async fn render(pool: &PgPool) -> String {
    let mut e = Exposition::new();
    e.counter(&JOBS)
        .counter(&FAILED_ATTEMPTS)
        .counter(&DEAD)
        .counter(&TRANSACTIONS)
        .histogram(&DURATION)
        .histogram(&LAG);
    if let Ok(q) = clerk_sync_core::jobs::Stats::read(pool).await {
        let labels: Vec<[(&str, &str); 1]> = q
            .by_state()
            .iter()
            .map(|(state, _)| [("state", state.as_str())])
            .collect();
        let states: Vec<(&[(&str, &str)], i64)> = labels
            .iter()
            .zip(q.by_state())
            .map(|(l, (_, n))| (&l[..], n))
            .collect();
        e.gauge(
            "clerk_sync_queue_jobs",
            "Jobs in the queue by state (pending, running, retrying, done, dead).",
            &states,
        );
        e.gauge(
            "clerk_sync_queue_skipped_jobs",
            "Done jobs whose event type is not mirrored (stored and acknowledged).",
            &[(&[], q.skipped)],
        );
        e.gauge(
            "clerk_sync_queue_oldest_pending_age_seconds",
            "Age of the oldest job waiting to run (retries included).",
            &[(&[], q.oldest_pending_age_seconds)],
        );
        e.gauge(
            "clerk_sync_events_received",
            "Raw events stored (after retention).",
            &[(&[], q.events_received)],
        );
    }
    if let Ok(runs) = reconciled(pool).await {
        let labels: Vec<[(&str, &str); 1]> = runs
            .iter()
            .map(|(k, _, _)| [("kind", k.as_str())])
            .collect();
        let repaired: Vec<(&[(&str, &str)], i64)> = labels
            .iter()
            .zip(&runs)
            .map(|(l, (_, n, _))| (&l[..], *n))
            .collect();
        let at: Vec<(&[(&str, &str)], i64)> = labels
            .iter()
            .zip(&runs)
            .map(|(l, (_, _, t))| (&l[..], *t))
            .collect();
        e.gauge(
            "clerk_sync_reconcile_repaired_objects",
            "Objects the last `clerk-sync reconcile` of each kind had to repair (what webhooks missed).",
            &repaired,
        );
        e.gauge(
            "clerk_sync_reconcile_completed_timestamp_seconds",
            "When the last `clerk-sync reconcile` of each kind completed.",
            &at,
        );
    }
    e.render()
}

/// Per kind, the last completed reconcile: what it repaired, and when (Unix seconds).
async fn reconciled(pool: &PgPool) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT kind, coalesce(repaired, 0), extract(epoch FROM completed_at)::int8 \
         FROM clerk_sync.backfill_runs \
         WHERE reconcile AND completed_at IS NOT NULL ORDER BY kind",
    )
    .fetch_all(pool)
    .await
}
