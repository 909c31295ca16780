//! Real-shaped Clerk webhook bodies, one per event type (from Clerk's Backend SDK types),
//! for `clerk-sync send-test-event`, the tests and the benchmarks. Each kind declares its
//! own ([`crate::mirror::Kind::samples`]); the types nothing mirrors are here.

use crate::mirror::{KINDS, Sample, sample};

/// Samples of event types that are stored and acknowledged but not mirrored.
pub static OTHER: &[Sample] = &[sample!("email.created"), sample!("sms.created")];

/// Every sample event of every kind, plus the samples of types we do not mirror.
pub fn all() -> impl Iterator<Item = &'static Sample> {
    KINDS
        .iter()
        .flat_map(|k| k.samples.iter())
        .chain(OTHER.iter())
}

/// The sample body for an event type.
pub fn get(event_type: &str) -> Option<&'static str> {
    all().find(|s| s.event_type == event_type).map(|s| s.body)
}

/// Every event type that has a sample.
pub fn types() -> Vec<&'static str> {
    all().map(|s| s.event_type).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// Every file in `samples/` (registered or not yet) is a Clerk envelope named after its
    /// type, so a sample added for a new kind cannot be malformed or misnamed; every
    /// registered sample has its file.
    #[test]
    fn every_sample_file_is_an_envelope_named_after_its_type() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let body: Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
                .unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
            let event_type = body["type"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no type"));
            assert_eq!(format!("{event_type}.json"), name);
            assert_eq!(body["object"], "event", "{name}");
            assert!(body["data"].is_object(), "{name}");
            assert!(body["instance_id"].is_string(), "{name}");
            // Milliseconds, as Clerk sends them (seconds would be a 10-digit number).
            let ts = body["timestamp"].as_i64().unwrap();
            assert!(
                (1_000_000_000_000..10_000_000_000_000).contains(&ts),
                "{name}: {ts}"
            );
            if let Some(updated) = body["data"]["updated_at"].as_i64() {
                assert!(updated <= ts, "{name}: updated_at after the event");
            }
            seen += 1;
        }
        let registered = super::types();
        assert!(seen >= registered.len());
        for t in registered {
            assert!(dir.join(format!("{t}.json")).exists(), "{t}");
        }
    }
}
