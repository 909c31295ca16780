//! The Svix-delivered envelope of a Clerk event. What its `data` means to the mirror is the
//! kind registry's business ([`crate::mirror::decode`]).

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

/// Why a verified body cannot be applied. Permanent: retrying the same bytes cannot help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed event: {0}")]
pub struct MalformedEvent(pub String);

pub(crate) fn malformed(msg: impl Into<String>) -> MalformedEvent {
    MalformedEvent(msg.into())
}

/// What ingest records beside the raw bytes, for querying. Never fails: a body that is not
/// a Clerk envelope is still stored (and its job dead-letters with the reason).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub event_type: Option<String>,
    pub object_id: Option<String>,
    pub timestamp: Option<DateTime<Utc>>,
}

impl Summary {
    pub fn of(body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Loose {
            #[serde(rename = "type")]
            event_type: Option<Value>,
            data: Option<Value>,
            timestamp: Option<Value>,
        }
        let Ok(loose) = serde_json::from_slice::<Loose>(body) else {
            return Self::default();
        };
        let object_id = loose.data.as_ref().and_then(|d| match d.get("id") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        });
        Self {
            event_type: loose.event_type.and_then(|t| t.as_str().map(str::to_owned)),
            object_id,
            timestamp: loose
                .timestamp
                .and_then(|t| t.as_i64())
                .and_then(DateTime::from_timestamp_millis),
        }
    }
}

/// Event types whose `data` is a message Clerk sends on the application's behalf (an email,
/// an SMS): its body, subject and template data carry one-time codes and sign-in links.
pub const MESSAGE_TYPES: &[&str] = &["email.created", "sms.created"];

/// The fields of a message event's `data` that are kept: what it was, not what it said.
const MESSAGE_FIELDS_KEPT: &[&str] = &["id", "object", "slug", "status", "delivered_by_clerk"];

/// A verified body with the message taken out, for the [`MESSAGE_TYPES`]; None for every
/// other body (kept as received). Ingest stores this instead of the body, so the message
/// reaches no table and no log line; the event is still recorded, acknowledged and counted
/// (as skipped). The stored signature no longer matches the stored bytes.
pub fn without_message(body: &[u8]) -> Option<Vec<u8>> {
    let Ok(Value::Object(mut envelope)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    match envelope.get("type") {
        Some(Value::String(t)) if MESSAGE_TYPES.contains(&t.as_str()) => {}
        _ => return None,
    }
    let mut kept = serde_json::Map::new();
    if let Some(Value::Object(data)) = envelope.remove("data") {
        for (key, value) in data {
            if MESSAGE_FIELDS_KEPT.contains(&key.as_str()) {
                kept.insert(key, value);
            }
        }
    }
    kept.insert("clerk_sync_removed".into(), "the message (not kept)".into());
    envelope.insert("data".into(), Value::Object(kept));
    Some(serde_json::to_vec(&envelope).expect("a JSON value serialises"))
}

/// A Clerk event as Svix delivers it: `type`, the object in `data`, and the envelope's
/// `timestamp` (when Clerk says it happened, in ms).
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub event_type: String,
    pub data: Value,
    pub timestamp: Option<DateTime<Utc>>,
}

impl Envelope {
    pub fn parse(body: &[u8]) -> Result<Self, MalformedEvent> {
        let envelope: Value = serde_json::from_slice(body)
            .map_err(|e| malformed(format!("body is not JSON: {e}")))?;
        let Value::Object(mut envelope) = envelope else {
            return Err(malformed("body is not a JSON object"));
        };
        let event_type = match envelope.remove("type") {
            Some(Value::String(t)) => t,
            Some(_) => return Err(malformed("`type` is not a string")),
            None => return Err(malformed("no `type`")),
        };
        let data = match envelope.remove("data") {
            Some(data @ Value::Object(_)) => data,
            Some(_) => return Err(malformed("`data` is not an object")),
            None => return Err(malformed("no `data`")),
        };
        let timestamp = match envelope.get("timestamp") {
            None | Some(Value::Null) => None,
            Some(t) => Some(
                t.as_i64()
                    .and_then(DateTime::from_timestamp_millis)
                    .ok_or_else(|| malformed("`timestamp` is not a time in milliseconds"))?,
            ),
        };
        Ok(Self {
            event_type,
            data,
            timestamp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_never_fails() {
        assert_eq!(Summary::of(b"\xff\xfe"), Summary::default());
        let s = Summary::of(br#"{"type":"organization.created","data":{"id":"org_1","name":"x"}}"#);
        assert_eq!(s.event_type.as_deref(), Some("organization.created"));
        assert_eq!(s.object_id.as_deref(), Some("org_1"));
    }
}
