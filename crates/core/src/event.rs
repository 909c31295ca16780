//! The Clerk event model: the Svix-delivered envelope and the objects we mirror.
//!
//! Decoding is strict where the mirror depends on a field (ids, versions, types) and lenient
//! elsewhere: unknown fields are kept in `raw`, unknown event types are [`ClerkEvent::Other`].

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

/// Why a verified body cannot be applied. Permanent: retrying the same bytes cannot help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed event: {0}")]
pub struct MalformedEvent(pub String);

fn malformed(msg: impl Into<String>) -> MalformedEvent {
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

/// A decoded event, ready for the mirror.
#[derive(Debug, Clone, PartialEq)]
pub enum ClerkEvent {
    User(Change<User>),
    Organization(Change<Organization>),
    Membership(Change<Membership>),
    /// A type we store and acknowledge but do not mirror (sessions, emails, roles, ...).
    Other(String),
}

/// A created/updated object (versioned by its `updated_at`) or a delete (versioned by the
/// envelope's `timestamp`).
#[derive(Debug, Clone, PartialEq)]
pub enum Change<T> {
    Upsert(T),
    Delete(Tombstone<T>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tombstone<T> {
    pub id: String,
    pub version: DateTime<Utc>,
    /// The deleted object's last state when the event carries it (memberships do).
    pub last: Option<T>,
    pub raw: Value,
}

impl ClerkEvent {
    /// Decodes a verified body. Unknown event types decode to [`ClerkEvent::Other`].
    pub fn decode(body: &[u8]) -> Result<Self, MalformedEvent> {
        let envelope: Value = serde_json::from_slice(body)
            .map_err(|e| malformed(format!("body is not JSON: {e}")))?;
        let Value::Object(mut envelope) = envelope else {
            return Err(malformed("body is not a JSON object"));
        };
        let event_type = match envelope.get("type") {
            Some(Value::String(t)) => t.clone(),
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
        let Some((object, action)) = event_type.split_once('.') else {
            return Ok(Self::Other(event_type));
        };
        let action = match action {
            "created" | "updated" => Action::Upsert,
            "deleted" => Action::Delete,
            _ => return Ok(Self::Other(event_type)),
        };
        Ok(match object {
            "user" => Self::User(Change::decode(action, data, timestamp)?),
            "organization" => Self::Organization(Change::decode(action, data, timestamp)?),
            "organizationMembership" => Self::Membership(Change::decode(action, data, timestamp)?),
            _ => Self::Other(event_type),
        })
    }
}

enum Action {
    Upsert,
    Delete,
}

/// An object of the mirror, decoded from an event's `data`.
pub trait MirrorObject: Sized {
    fn from_data(data: &Value) -> Result<Self, MalformedEvent>;
}

impl<T: MirrorObject> Change<T> {
    fn decode(
        action: Action,
        data: Value,
        timestamp: Option<DateTime<Utc>>,
    ) -> Result<Self, MalformedEvent> {
        match action {
            Action::Upsert => T::from_data(&data).map(Self::Upsert),
            Action::Delete => {
                let id = match data.get("id") {
                    Some(Value::String(id)) if !id.is_empty() => id.clone(),
                    _ => return Err(malformed("delete without a string `data.id`")),
                };
                let version =
                    timestamp.ok_or_else(|| malformed("delete without an envelope `timestamp`"))?;
                // Users and organizations carry only `{deleted, id, object}`; memberships
                // repeat the whole object, which we keep as its last state.
                let last = if data.get("updated_at").is_some() {
                    Some(T::from_data(&data)?)
                } else {
                    None
                };
                Ok(Self::Delete(Tombstone {
                    id,
                    version,
                    last,
                    raw: data,
                }))
            }
        }
    }
}

/// Milliseconds since the epoch, as Clerk sends `created_at`, `updated_at`, `last_sign_in_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Millis(i64);

impl Millis {
    pub fn to_datetime(self) -> Result<DateTime<Utc>, MalformedEvent> {
        DateTime::from_timestamp_millis(self.0)
            .ok_or_else(|| malformed(format!("{} is not a time in milliseconds", self.0)))
    }
}

fn time(m: Option<Millis>) -> Result<Option<DateTime<Utc>>, MalformedEvent> {
    m.map(Millis::to_datetime).transpose()
}

fn decode_data<T: serde::de::DeserializeOwned>(
    data: &Value,
    what: &str,
) -> Result<T, MalformedEvent> {
    T::deserialize(data).map_err(|e| malformed(format!("{what}: {e}")))
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EmailAddress {
    pub id: String,
    pub email_address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PhoneNumber {
    pub id: String,
    pub phone_number: String,
}

/// Clerk's `User`, as the columns of `clerk.users` need it.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: String,
    pub external_id: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub image_url: Option<String>,
    pub has_image: Option<bool>,
    pub primary_email_address_id: Option<String>,
    pub primary_email_address: Option<String>,
    pub primary_phone_number_id: Option<String>,
    pub primary_phone_number: Option<String>,
    pub primary_web3_wallet_id: Option<String>,
    pub banned: Option<bool>,
    pub locked: Option<bool>,
    pub password_enabled: Option<bool>,
    pub two_factor_enabled: Option<bool>,
    pub totp_enabled: Option<bool>,
    pub backup_code_enabled: Option<bool>,
    pub create_organization_enabled: Option<bool>,
    pub delete_self_enabled: Option<bool>,
    pub last_sign_in_at: Option<DateTime<Utc>>,
    pub last_active_at: Option<DateTime<Utc>>,
    pub legal_accepted_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub raw: Value,
}

impl MirrorObject for User {
    fn from_data(data: &Value) -> Result<Self, MalformedEvent> {
        #[derive(Deserialize)]
        struct Wire {
            id: String,
            external_id: Option<String>,
            first_name: Option<String>,
            last_name: Option<String>,
            username: Option<String>,
            image_url: Option<String>,
            has_image: Option<bool>,
            primary_email_address_id: Option<String>,
            primary_phone_number_id: Option<String>,
            primary_web3_wallet_id: Option<String>,
            #[serde(default)]
            email_addresses: Option<Vec<EmailAddress>>,
            #[serde(default)]
            phone_numbers: Option<Vec<PhoneNumber>>,
            banned: Option<bool>,
            locked: Option<bool>,
            password_enabled: Option<bool>,
            two_factor_enabled: Option<bool>,
            totp_enabled: Option<bool>,
            backup_code_enabled: Option<bool>,
            create_organization_enabled: Option<bool>,
            delete_self_enabled: Option<bool>,
            last_sign_in_at: Option<Millis>,
            last_active_at: Option<Millis>,
            legal_accepted_at: Option<Millis>,
            created_at: Option<Millis>,
            updated_at: Millis,
        }
        let w: Wire = decode_data(data, "user")?;
        let primary_email_address = w.primary_email_address_id.as_ref().and_then(|id| {
            w.email_addresses
                .iter()
                .flatten()
                .find(|e| &e.id == id)
                .map(|e| e.email_address.clone())
        });
        let primary_phone_number = w.primary_phone_number_id.as_ref().and_then(|id| {
            w.phone_numbers
                .iter()
                .flatten()
                .find(|p| &p.id == id)
                .map(|p| p.phone_number.clone())
        });
        Ok(Self {
            id: w.id,
            external_id: w.external_id,
            first_name: w.first_name,
            last_name: w.last_name,
            username: w.username,
            image_url: w.image_url,
            has_image: w.has_image,
            primary_email_address_id: w.primary_email_address_id,
            primary_email_address,
            primary_phone_number_id: w.primary_phone_number_id,
            primary_phone_number,
            primary_web3_wallet_id: w.primary_web3_wallet_id,
            banned: w.banned,
            locked: w.locked,
            password_enabled: w.password_enabled,
            two_factor_enabled: w.two_factor_enabled,
            totp_enabled: w.totp_enabled,
            backup_code_enabled: w.backup_code_enabled,
            create_organization_enabled: w.create_organization_enabled,
            delete_self_enabled: w.delete_self_enabled,
            last_sign_in_at: time(w.last_sign_in_at)?,
            last_active_at: time(w.last_active_at)?,
            legal_accepted_at: time(w.legal_accepted_at)?,
            created_at: time(w.created_at)?,
            updated_at: w.updated_at.to_datetime()?,
            raw: data.clone(),
        })
    }
}

/// Clerk's `Organization`.
#[derive(Debug, Clone, PartialEq)]
pub struct Organization {
    pub id: String,
    pub name: Option<String>,
    pub slug: Option<String>,
    pub image_url: Option<String>,
    pub has_image: Option<bool>,
    pub created_by: Option<String>,
    pub members_count: Option<i32>,
    pub max_allowed_memberships: Option<i32>,
    pub admin_delete_enabled: Option<bool>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub raw: Value,
}

impl MirrorObject for Organization {
    fn from_data(data: &Value) -> Result<Self, MalformedEvent> {
        #[derive(Deserialize)]
        struct Wire {
            id: String,
            name: Option<String>,
            slug: Option<String>,
            image_url: Option<String>,
            has_image: Option<bool>,
            created_by: Option<String>,
            members_count: Option<i32>,
            max_allowed_memberships: Option<i32>,
            admin_delete_enabled: Option<bool>,
            created_at: Option<Millis>,
            updated_at: Millis,
        }
        let w: Wire = decode_data(data, "organization")?;
        Ok(Self {
            id: w.id,
            name: w.name,
            slug: w.slug,
            image_url: w.image_url,
            has_image: w.has_image,
            created_by: w.created_by,
            members_count: w.members_count,
            max_allowed_memberships: w.max_allowed_memberships,
            admin_delete_enabled: w.admin_delete_enabled,
            created_at: time(w.created_at)?,
            updated_at: w.updated_at.to_datetime()?,
            raw: data.clone(),
        })
    }
}

/// Clerk's `OrganizationMembership`.
#[derive(Debug, Clone, PartialEq)]
pub struct Membership {
    pub id: String,
    pub organization_id: String,
    pub user_id: Option<String>,
    pub role: Option<String>,
    pub role_name: Option<String>,
    pub permissions: Option<Vec<String>>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub raw: Value,
}

impl MirrorObject for Membership {
    fn from_data(data: &Value) -> Result<Self, MalformedEvent> {
        #[derive(Deserialize)]
        struct OrgRef {
            id: String,
        }
        #[derive(Deserialize)]
        struct UserRef {
            user_id: Option<String>,
        }
        #[derive(Deserialize)]
        struct Wire {
            id: String,
            organization: OrgRef,
            public_user_data: Option<UserRef>,
            role: Option<String>,
            role_name: Option<String>,
            permissions: Option<Vec<String>>,
            created_at: Option<Millis>,
            updated_at: Millis,
        }
        let w: Wire = decode_data(data, "organization membership")?;
        Ok(Self {
            id: w.id,
            organization_id: w.organization.id,
            user_id: w.public_user_data.and_then(|u| u.user_id),
            role: w.role,
            role_name: w.role_name,
            permissions: w.permissions,
            created_at: time(w.created_at)?,
            updated_at: w.updated_at.to_datetime()?,
            raw: data.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> Vec<u8> {
        crate::samples::get(name).unwrap().as_bytes().to_vec()
    }

    #[test]
    fn user_created_resolves_primary_email_and_version() {
        let ClerkEvent::User(Change::Upsert(u)) =
            ClerkEvent::decode(&sample("user.created")).unwrap()
        else {
            panic!("not a user upsert");
        };
        assert_eq!(u.id, "user_29w83sxmDNGwOuEthce5gg56FcC");
        assert_eq!(
            u.primary_email_address.as_deref(),
            Some("example@example.org")
        );
        assert_eq!(u.updated_at.timestamp_millis(), 1654012591835);
        assert_eq!(u.raw["first_name"], "Example");
    }

    #[test]
    fn user_deleted_is_versioned_by_the_envelope_timestamp() {
        let ClerkEvent::User(Change::Delete(t)) =
            ClerkEvent::decode(&sample("user.deleted")).unwrap()
        else {
            panic!("not a user delete");
        };
        assert_eq!(t.id, "user_29w83sxmDNGwOuEthce5gg56FcC");
        assert_eq!(t.version.timestamp_millis(), 1661861640000);
        assert!(t.last.is_none());
    }

    #[test]
    fn membership_deleted_keeps_its_last_state() {
        let ClerkEvent::Membership(Change::Delete(t)) =
            ClerkEvent::decode(&sample("organizationMembership.deleted")).unwrap()
        else {
            panic!("not a membership delete");
        };
        let last = t.last.expect("membership delete carries the membership");
        assert_eq!(
            last.organization_id,
            t.raw["organization"]["id"].as_str().unwrap()
        );
    }

    #[test]
    fn unknown_types_are_other() {
        assert_eq!(
            ClerkEvent::decode(&sample("session.created")).unwrap(),
            ClerkEvent::Other("session.created".into())
        );
    }

    #[test]
    fn wrong_types_and_missing_ids_are_malformed() {
        for body in [
            &br#"[1,2]"#[..],
            br#"{"data":{}}"#,
            br#"{"type":"user.created","data":[]}"#,
            br#"{"type":"user.created","data":{"updated_at":1}}"#,
            br#"{"type":"user.updated","data":{"id":"user_1","updated_at":"yesterday"}}"#,
            br#"{"type":"user.deleted","data":{"deleted":true},"timestamp":1}"#,
            br#"{"type":"organization.deleted","data":{"id":"org_1"}}"#,
            br#"{"type":"organizationMembership.created","data":{"id":"m","updated_at":1}}"#,
            b"not json",
        ] {
            assert!(
                ClerkEvent::decode(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn summary_never_fails() {
        assert_eq!(Summary::of(b"\xff\xfe"), Summary::default());
        let s = Summary::of(&sample("organization.created"));
        assert_eq!(s.event_type.as_deref(), Some("organization.created"));
        assert_eq!(
            s.object_id.as_deref(),
            Some("org_29w9IfBrPmcpi0IeBVaKtA7R94W")
        );
    }
}

/// Fuzzing the decoder of untrusted bytes (a verified body is still untrusted input).
/// `PROPTEST_CASES=1000000 cargo test -p clerk-sync-core fuzz` for a long run.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            ".{0,40}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::hash_map(".{0,12}", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn samples() -> Vec<Value> {
        crate::samples::TYPES
            .iter()
            .map(|t| serde_json::from_str(crate::samples::get(t).unwrap()).unwrap())
            .collect()
    }

    proptest! {
        #[test]
        fn fuzz_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = ClerkEvent::decode(&bytes);
            let _ = Summary::of(&bytes);
        }

        #[test]
        fn fuzz_any_field_of_a_real_event_may_hold_anything(
            which in 0usize..10,
            field in 0usize..64,
            value in json(),
            in_envelope in any::<bool>(),
        ) {
            let mut event = samples()[which % crate::samples::TYPES.len()].clone();
            let target = if in_envelope { &mut event } else { &mut event["data"] };
            if let Value::Object(map) = target {
                let keys: Vec<String> = map.keys().cloned().collect();
                let key = keys[field % keys.len()].clone();
                map.insert(key, value);
            }
            let bytes = serde_json::to_vec(&event).unwrap();
            // Either a decoded event or a clear MalformedEvent: never a panic.
            if let Err(e) = ClerkEvent::decode(&bytes) {
                prop_assert!(e.to_string().starts_with("malformed event: "));
            }
            let _ = Summary::of(&bytes);
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_exhausting_the_stack() {
        let deep = format!(
            "{{\"type\":\"user.created\",\"data\":{}}}",
            "[".repeat(200_000)
        );
        assert!(ClerkEvent::decode(deep.as_bytes()).is_err());
        assert_eq!(Summary::of(deep.as_bytes()).object_id, None);
    }
}
