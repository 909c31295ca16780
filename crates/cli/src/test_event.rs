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

/// The ids a test event is about, to script a story about one object.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Ids {
    /// The object's id (`data.id`) instead of a fresh one: send user.created, user.updated
    /// and user.deleted with the same --id to tell one user's story.
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// For a membership: the organization it belongs to (default: the samples' organization,
    /// the one `send-test-event organization.created --id org_29w9IfBrPmcpi0IeBVaKtA7R94W` makes).
    #[arg(long, value_name = "ORG_ID")]
    pub org: Option<String>,
    /// For a membership: its user (default: the samples' user, user_29w83sxmDNGwOuEthce5gg56FcC).
    #[arg(long, value_name = "USER_ID")]
    pub user: Option<String>,
}

/// The sample for `event_type` (or `data`), with fresh ids (or the given ones) and
/// timestamps of now. A membership points at the given user and organization, else at the
/// samples' own.
pub fn build(
    event_type: &str,
    data: Option<Value>,
    now_ms: i64,
    ids: &Ids,
) -> anyhow::Result<Value> {
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
        if let Some(id) = &ids.id {
            event["data"]["id"] = json!(id);
        }
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
    d["id"] = json!(ids.id.clone().unwrap_or_else(|| fresh_id(&prefix)));
    for field in ["created_at", "updated_at"] {
        if d.get(field).is_some() {
            d[field] = json!(now_ms);
        }
    }
    for parent in kind.map_or(&[][..], |k| k.parents) {
        let given = match parent.kind {
            "users" => &ids.user,
            "organizations" => &ids.org,
            _ => &None,
        };
        if let (Some(id), Some(slot)) = (given, d.pointer_mut(parent.pointer)) {
            *slot = json!(id);
        }
    }
    Ok(event)
}

pub async fn send(
    event_type: &str,
    url: &str,
    data: Option<&Path>,
    ids: &Ids,
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
    let event = build(event_type, data, now.timestamp_millis(), ids)?;
    let body = serde_json::to_vec(&event)?;
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
    if let Some(object) = event["data"]["id"].as_str() {
        println!("object: {object}");
    }
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
            let a = build(t, None, 1_800_000_000_000, &Ids::default()).unwrap();
            let b = build(t, None, 1_800_000_000_000, &Ids::default()).unwrap();
            assert_eq!(a["type"], *t);
            assert_eq!(a["timestamp"], 1_800_000_000_000i64);
            assert_ne!(a["data"]["id"], b["data"]["id"], "{t}");
            if a["data"].get("updated_at").is_some() {
                assert_eq!(a["data"]["updated_at"], 1_800_000_000_000i64, "{t}");
            }
        }
        assert!(build("nothing.created", None, 0, &Ids::default()).is_err());
        let custom = build(
            "nothing.created",
            Some(json!({"id": "x"})),
            5,
            &Ids::default(),
        )
        .unwrap();
        assert_eq!(custom["data"], json!({"id": "x"}));
    }

    #[test]
    fn a_story_keeps_its_id_and_memberships_point_at_the_given_or_sample_parents() {
        let ids = Ids {
            id: Some("user_story".into()),
            ..Default::default()
        };
        for t in ["user.created", "user.updated", "user.deleted"] {
            assert_eq!(
                build(t, None, 7, &ids).unwrap()["data"]["id"],
                "user_story",
                "{t}"
            );
        }
        let m = build("organizationMembership.created", None, 7, &Ids::default()).unwrap();
        let user = build("user.created", None, 7, &Ids::default()).unwrap();
        assert_eq!(
            m["data"]["public_user_data"]["user_id"],
            "user_29w83sxmDNGwOuEthce5gg56FcC"
        );
        assert_ne!(
            user["data"]["id"], "user_29w83sxmDNGwOuEthce5gg56FcC",
            "fresh by default"
        );
        let ids = Ids {
            id: Some("orgmem_story".into()),
            org: Some("org_story".into()),
            user: Some("user_story".into()),
        };
        let m = build("organizationMembership.updated", None, 7, &ids).unwrap();
        assert_eq!(m["data"]["id"], "orgmem_story");
        assert_eq!(m["data"]["public_user_data"]["user_id"], "user_story");
        assert_eq!(m["data"]["organization"]["id"], "org_story");
    }
}
