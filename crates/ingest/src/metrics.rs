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

pub fn render() -> String {
    Exposition::new()
        .counter(&REQUESTS)
        .counter(&REFUSED)
        .counter(&STORED)
        .histogram(&LATENCY)
        .render()
}
