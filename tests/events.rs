//! Clerk event bodies for tests, built from the real-shaped samples with chosen ids,
//! versions and fields.

use clerk_sync_core::samples;
use serde_json::{Value, json};

fn sample(t: &str) -> Value {
    serde_json::from_str(samples::get(t).expect("sample exists")).unwrap()
}

/// The envelope Svix delivers, as bytes.
pub fn envelope(event_type: &str, data: Value, timestamp_ms: i64) -> Vec<u8> {
    let mut e = sample("user.created");
    e["type"] = json!(event_type);
    e["data"] = data;
    e["timestamp"] = json!(timestamp_ms);
    serde_json::to_vec(&e).unwrap()
}

pub fn user_data(id: &str, version_ms: i64, first_name: &str) -> Value {
    let mut d = sample("user.created")["data"].clone();
    let email_id = format!("idn_{id}");
    d["id"] = json!(id);
    d["first_name"] = json!(first_name);
    d["created_at"] = json!(1_700_000_000_000i64);
    d["updated_at"] = json!(version_ms);
    d["primary_email_address_id"] = json!(email_id);
    d["email_addresses"][0]["id"] = json!(email_id);
    d["email_addresses"][0]["email_address"] = json!(format!("{first_name}@{id}.example"));
    d
}

pub fn user_event(kind: &str, id: &str, version_ms: i64, first_name: &str) -> Vec<u8> {
    envelope(
        &format!("user.{kind}"),
        user_data(id, version_ms, first_name),
        version_ms,
    )
}

pub fn user_deleted(id: &str, timestamp_ms: i64) -> Vec<u8> {
    envelope(
        "user.deleted",
        json!({"deleted": true, "id": id, "object": "user"}),
        timestamp_ms,
    )
}

pub fn org_data(id: &str, version_ms: i64, name: &str) -> Value {
    let mut d = sample("organization.created")["data"].clone();
    d["id"] = json!(id);
    d["name"] = json!(name);
    d["slug"] = json!(name.to_lowercase().replace(' ', "-"));
    d["created_at"] = json!(1_700_000_000_000i64);
    d["updated_at"] = json!(version_ms);
    d
}

pub fn org_event(kind: &str, id: &str, version_ms: i64, name: &str) -> Vec<u8> {
    envelope(
        &format!("organization.{kind}"),
        org_data(id, version_ms, name),
        version_ms,
    )
}

pub fn org_deleted(id: &str, timestamp_ms: i64) -> Vec<u8> {
    envelope(
        "organization.deleted",
        json!({"deleted": true, "id": id, "object": "organization"}),
        timestamp_ms,
    )
}

pub fn membership_data(id: &str, org: &str, user: &str, version_ms: i64, role: &str) -> Value {
    let mut d = sample("organizationMembership.created")["data"].clone();
    d["id"] = json!(id);
    d["organization"]["id"] = json!(org);
    d["public_user_data"]["user_id"] = json!(user);
    d["role"] = json!(role);
    d["created_at"] = json!(1_700_000_000_000i64);
    d["updated_at"] = json!(version_ms);
    d
}

pub fn membership_event(
    kind: &str,
    id: &str,
    org: &str,
    user: &str,
    version_ms: i64,
    role: &str,
) -> Vec<u8> {
    envelope(
        &format!("organizationMembership.{kind}"),
        membership_data(id, org, user, version_ms, role),
        version_ms,
    )
}

/// A membership delete repeats the membership as last updated; it is versioned by the
/// envelope's timestamp.
pub fn membership_deleted(
    id: &str,
    org: &str,
    user: &str,
    last_version_ms: i64,
    role: &str,
    timestamp_ms: i64,
) -> Vec<u8> {
    envelope(
        "organizationMembership.deleted",
        membership_data(id, org, user, last_version_ms, role),
        timestamp_ms,
    )
}
