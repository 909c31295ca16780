//! `clerk-sync send-test-event`: a sample event with fresh ids and timestamps, signed and
//! posted like Svix would.

use std::{path::Path, process::ExitCode};

use anyhow::Context as _;
use clerk_sync_core::{
    mirror::Kind,
    samples,
    webhook::{Secrets, new_msg_id},
};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};

use crate::http;

/// A fresh id with Clerk's prefix (`user_`, `org_`, ...).
fn fresh_id(prefix: &str) -> String {
    let tail: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(27)
        .collect();
    format!("{prefix}{tail}")
}

/// The sample for `event_type` (or `data`), with fresh ids and timestamps of now.
pub fn build(event_type: &str, data: Option<Value>, now_ms: i64) -> anyhow::Result<Value> {
    let sample = samples::get(event_type)
        .map(|s| serde_json::from_str::<Value>(s).expect("samples are JSON"));
    let mut event = match (&sample, &data) {
        (Some(s), _) => s.clone(),
        (None, Some(_)) => serde_json::from_str(samples::get("user.created").expect("sample"))?,
        (None, None) => anyhow::bail!(
            "no sample for {event_type}: use one of {} or pass --data FILE",
            samples::types().join(", ")
        ),
    };
    event["type"] = json!(event_type);
    event["timestamp"] = json!(now_ms);
    if let Some(data) = data {
        event["data"] = data;
        return Ok(event);
    }
    let d = &mut event["data"];
    let object = event_type.split('.').next().unwrap_or_default();
    let kind = Kind::by_object(object);
    // The sample's own id says its prefix where no kind does (types we do not mirror).
    let prefix = kind.map(|k| k.id_prefix.to_owned()).unwrap_or_else(|| {
        let id = d["id"].as_str().unwrap_or_default();
        id.split_once('_')
            .map_or("obj_".into(), |(p, _)| format!("{p}_"))
    });
    d["id"] = json!(fresh_id(&prefix));
    for field in ["created_at", "updated_at"] {
        if d.get(field).is_some() {
            d[field] = json!(now_ms);
        }
    }
    for parent in kind.map_or(&[][..], |k| k.parents) {
        let parent_kind = Kind::by_name(parent.kind).expect("parents are registered kinds");
        if let Some(slot) = d.pointer_mut(parent.pointer) {
            *slot = json!(fresh_id(parent_kind.id_prefix));
        }
    }
    Ok(event)
}

pub async fn send(
    event_type: &str,
    url: &str,
    data: Option<&Path>,
    secret: &SecretString,
) -> anyhow::Result<ExitCode> {
    let secrets = Secrets::parse(secret.expose_secret())
        .map_err(|e| anyhow::anyhow!("CLERK_WEBHOOK_SECRET: {e}"))?;
    let data = data
        .map(|p| -> anyhow::Result<Value> {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("--data {}", p.display()))?;
            serde_json::from_str(&text).with_context(|| format!("--data {}: not JSON", p.display()))
        })
        .transpose()?;
    let now = chrono::Utc::now();
    let body = serde_json::to_vec(&build(event_type, data, now.timestamp_millis())?)?;
    let id = new_msg_id();
    let signature = secrets.sign(&id, now.timestamp(), &body)?;
    let headers = vec![
        ("svix-id".to_owned(), id.clone()),
        ("svix-timestamp".to_owned(), now.timestamp().to_string()),
        ("svix-signature".to_owned(), signature),
        ("content-type".to_owned(), "application/json".to_owned()),
    ];
    let answer = http::request(&http::client(), "POST", url, &headers, body).await?;
    println!("svix-id: {id}");
    println!("answer: {} {}", answer.status, answer.body.trim());
    Ok(if (200..300).contains(&answer.status) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_gets_fresh_ids_and_now() {
        for t in &samples::types() {
            let a = build(t, None, 1_800_000_000_000).unwrap();
            let b = build(t, None, 1_800_000_000_000).unwrap();
            assert_eq!(a["type"], *t);
            assert_eq!(a["timestamp"], 1_800_000_000_000i64);
            assert_ne!(a["data"]["id"], b["data"]["id"], "{t}");
            if a["data"].get("updated_at").is_some() {
                assert_eq!(a["data"]["updated_at"], 1_800_000_000_000i64, "{t}");
            }
        }
        assert!(build("nothing.created", None, 0).is_err());
        let custom = build("nothing.created", Some(json!({"id": "x"})), 5).unwrap();
        assert_eq!(custom["data"], json!({"id": "x"}));
    }
}
