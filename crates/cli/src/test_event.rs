//! `clerk-sync send-test-event`: a sample event with fresh ids and timestamps, signed and
//! posted like Svix would.

use std::{path::Path, process::ExitCode};

use anyhow::Context as _;
use clerk_sync_core::{
    samples,
    webhook::{Secrets, new_msg_id},
};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};

use crate::http;

fn fresh_id(prefix: &str) -> String {
    let tail: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(27)
        .collect();
    format!("{prefix}_{tail}")
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
            samples::TYPES.join(", ")
        ),
    };
    event["type"] = json!(event_type);
    event["timestamp"] = json!(now_ms);
    if let Some(data) = data {
        event["data"] = data;
        return Ok(event);
    }
    let d = &mut event["data"];
    let prefix = match event_type.split('.').next().unwrap_or_default() {
        "user" => "user",
        "organization" => "org",
        "organizationMembership" => "orgmem",
        "session" => "sess",
        other => other,
    };
    d["id"] = json!(fresh_id(prefix));
    for field in ["created_at", "updated_at"] {
        if d.get(field).is_some() {
            d[field] = json!(now_ms);
        }
    }
    if prefix == "orgmem" {
        d["organization"]["id"] = json!(fresh_id("org"));
        d["public_user_data"]["user_id"] = json!(fresh_id("user"));
    }
    if prefix == "sess" {
        d["user_id"] = json!(fresh_id("user"));
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
        for t in samples::TYPES {
            let a = build(t, None, 1_800_000_000_000).unwrap();
            let b = build(t, None, 1_800_000_000_000).unwrap();
            assert_eq!(a["type"], *t);
            assert_eq!(a["timestamp"], 1_800_000_000_000i64);
            assert_ne!(a["data"]["id"], b["data"]["id"], "{t}");
            if a["data"].get("updated_at").is_some() {
                assert_eq!(a["data"]["updated_at"], 1_800_000_000_000i64, "{t}");
            }
        }
        assert!(build("email.created", None, 0).is_err());
        let custom = build("email.created", Some(json!({"id": "x"})), 5).unwrap();
        assert_eq!(custom["data"], json!({"id": "x"}));
    }
}
