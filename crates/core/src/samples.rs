//! Real-shaped Clerk webhook bodies, one per event type (from Clerk's Backend SDK types),
//! for `clerk-sync send-test-event`, the tests and the benchmarks. Each kind declares its
//! own ([`crate::mirror::Kind::samples`]); the types nothing mirrors are here.

use crate::mirror::{self, Sample, sample};

/// Samples of event types that are stored and acknowledged but not mirrored.
pub static OTHER: &[Sample] = &[sample!("session.created")];

/// The sample body for an event type.
pub fn get(event_type: &str) -> Option<&'static str> {
    mirror::samples()
        .find(|s| s.event_type == event_type)
        .map(|s| s.body)
}

/// Every event type that has a sample.
pub fn types() -> Vec<&'static str> {
    mirror::samples().map(|s| s.event_type).collect()
}
