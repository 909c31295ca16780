use clerk_sync_core::metrics::{CounterVec, Exposition, HistogramVec, LATENCY_BUCKETS};

pub static REQUESTS: CounterVec = CounterVec::new(
    "clerk_sync_ingest_requests_total",
    "Webhook deliveries answered, by HTTP status.",
    &["status"],
);
pub static REFUSED: CounterVec = CounterVec::new(
    "clerk_sync_ingest_refused_total",
    "Webhook deliveries refused, by reason (verification failures, limits, database).",
    &["reason"],
);
pub static STORED: CounterVec = CounterVec::new(
    "clerk_sync_ingest_events_total",
    "Verified deliveries by outcome: stored (new) or duplicate (svix-id already stored).",
    &["outcome", "event_type"],
);
pub static LATENCY: HistogramVec = HistogramVec::new(
    "clerk_sync_ingest_request_duration_seconds",
    "Time from request to answer for POST /webhooks/clerk.",
    &[],
    LATENCY_BUCKETS,
);

pub static STORE_BATCH: HistogramVec = HistogramVec::new(
    "clerk_sync_ingest_store_batch_deliveries",
    "Deliveries stored by one statement and commit (group commit's batch size).",
    &[],
    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
);
pub static STORE_DURATION: HistogramVec = HistogramVec::new(
    "clerk_sync_ingest_store_duration_seconds",
    "Time of one storing statement, its commit included.",
    &[],
    LATENCY_BUCKETS,
);

pub fn render() -> String {
    Exposition::new()
        .counter(&REQUESTS)
        .counter(&REFUSED)
        .counter(&STORED)
        .histogram(&LATENCY)
        .histogram(&STORE_BATCH)
        .histogram(&STORE_DURATION)
        .render()
}
