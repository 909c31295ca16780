//! Decoding real-shaped events into changes, and fuzzing the decoder of untrusted bytes.

mod decode {
    use crate::mirror::{Change, Decoded, Kind, Options, Skip, decode};

    fn sample(name: &str) -> Vec<u8> {
        crate::samples::get(name).unwrap().as_bytes().to_vec()
    }

    fn change(name: &str) -> Change {
        match decode(&sample(name), &Options::default()).unwrap() {
            Decoded::Change(c) => c,
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn user_created_is_versioned_by_its_updated_at() {
        let c = change("user.created");
        assert_eq!(c.kind, Kind::by_name("users").unwrap());
        assert_eq!(c.id, "user_29w83sxmDNGwOuEthce5gg56FcC");
        assert_eq!(c.version.timestamp_millis(), 1654012591835);
        assert_eq!(c.updated_at, Some(c.version));
        assert!(!c.deleted);
        assert_eq!(c.data["first_name"], "Example");
    }

    #[test]
    fn user_deleted_is_versioned_by_the_envelope_timestamp() {
        let c = change("user.deleted");
        assert_eq!(c.id, "user_29w83sxmDNGwOuEthce5gg56FcC");
        assert_eq!(c.version.timestamp_millis(), 1661861640000);
        assert!(c.deleted);
        assert_eq!(c.updated_at, None, "a bare delete carries no data");
    }

    #[test]
    fn membership_deleted_keeps_its_last_state_and_names_its_parents() {
        let c = change("organizationMembership.deleted");
        assert!(c.deleted);
        assert!(c.updated_at.is_some_and(|u| u < c.version));
        let parents: Vec<&str> = c.parent_ids().collect();
        assert_eq!(parents.len(), 2, "{parents:?}");
        assert_eq!(parents[0], c.data["public_user_data"]["user_id"]);
        assert_eq!(parents[1], c.data["organization"]["id"]);
    }

    #[test]
    fn message_events_keep_what_they_were_not_what_they_said() {
        for t in crate::event::MESSAGE_TYPES {
            let body = sample(t);
            let code = if *t == "email.created" {
                "482913"
            } else {
                "730164"
            };
            assert!(
                String::from_utf8_lossy(&body).contains(code),
                "{t}: sample has a code"
            );
            let kept = crate::event::without_message(&body).unwrap();
            let text = String::from_utf8(kept.clone()).unwrap();
            assert!(!text.contains(code), "{t}: {text}");
            let summary = crate::event::Summary::of(&kept);
            assert_eq!(summary, crate::event::Summary::of(&body), "{t}");
        }
        assert_eq!(crate::event::without_message(&sample("user.created")), None);
        assert_eq!(crate::event::without_message(b"not json"), None);
    }

    #[test]
    fn unknown_types_and_optional_kinds_turned_off_are_skipped() {
        assert_eq!(
            decode(&sample("email.created"), &Options::default()).unwrap(),
            Decoded::Skip(Skip::Unknown("email.created".into()))
        );
        assert_eq!(
            decode(&sample("session.created"), &Options::default()).unwrap(),
            Decoded::Skip(Skip::Disabled("sessions"))
        );
        let on = Options {
            optional_kinds: vec!["sessions"],
            ..Options::default()
        };
        assert!(matches!(
            decode(&sample("session.created"), &on).unwrap(),
            Decoded::Change(_)
        ));
        assert_eq!(
            decode(br#"{"type":"nodot","data":{}}"#, &Options::default()).unwrap(),
            Decoded::Skip(Skip::Unknown("nodot".into()))
        );
    }

    #[test]
    fn wrong_types_and_missing_ids_are_malformed() {
        for body in [
            &br#"[1,2]"#[..],
            br#"{"data":{}}"#,
            br#"{"type":"user.created","data":[]}"#,
            br#"{"type":"user.created","data":{"updated_at":1}}"#,
            br#"{"type":"user.created","data":{"id":"user_1"}}"#,
            br#"{"type":"user.updated","data":{"id":"user_1","updated_at":"yesterday"}}"#,
            br#"{"type":"user.deleted","data":{"deleted":true},"timestamp":1}"#,
            br#"{"type":"organization.deleted","data":{"id":"org_1"}}"#,
            br#"{"type":"organizationMembership.created","data":{"id":"m","updated_at":1}}"#,
            b"not json",
        ] {
            assert!(
                decode(body, &Options::default()).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}

/// Fuzzing the decoder of untrusted bytes (a verified body is still untrusted input).
/// `PROPTEST_CASES=1000000 cargo test -p clerk-sync-core fuzz` for a long run.
mod fuzz {
    use proptest::prelude::*;
    use serde_json::Value;

    use crate::{
        event::{MalformedEvent, Summary},
        mirror::{Decoded, Options},
    };

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
        crate::samples::all()
            .map(|s| serde_json::from_str(s.body).unwrap())
            .collect()
    }

    fn decode(bytes: &[u8]) -> Result<Decoded, MalformedEvent> {
        crate::mirror::decode(bytes, &Options::default())
    }

    proptest! {
        #[test]
        fn fuzz_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode(&bytes);
            let _ = Summary::of(&bytes);
        }

        #[test]
        fn fuzz_any_field_of_a_real_event_may_hold_anything(
            which in 0usize..1000,
            field in 0usize..64,
            value in json(),
            in_envelope in any::<bool>(),
        ) {
            let all = samples();
            let mut event = all[which % all.len()].clone();
            let target = if in_envelope { &mut event } else { &mut event["data"] };
            if let Value::Object(map) = target {
                let keys: Vec<String> = map.keys().cloned().collect();
                let key = keys[field % keys.len()].clone();
                map.insert(key, value);
            }
            let bytes = serde_json::to_vec(&event).unwrap();
            // Either a decoded event or a clear MalformedEvent: never a panic.
            if let Err(e) = decode(&bytes) {
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
        assert!(decode(deep.as_bytes()).is_err());
        assert_eq!(Summary::of(deep.as_bytes()).object_id, None);
    }
}
