//! Event histories for the convergence tests (tests/e2e/property.rs, tests/e2e/upgrade.rs):
//! objects of every kind of the registry (parent deletes included) created, updated and maybe
//! deleted on one timeline; the in-order result they must converge to; and the comparison.

use clerk_sync_core::mirror::{self, Decoded, KINDS, Kind, Options};
use serde_json::{Value, json};
use sqlx::PgPool;

/// One event of a history: its time (its version, ms) and its envelope.
pub struct Event {
    pub time: i64,
    pub body: Vec<u8>,
}

/// One object of the history: its kind, id, parents' ids (by the kind's parent pointers),
/// how many updates follow its creation, and whether it is deleted at the end (kinds that
/// Clerk deletes).
struct Object {
    kind: &'static Kind,
    id: String,
    parents: Vec<(&'static str, String)>,
    updates: usize,
    deleted: bool,
}

/// The mirror options of the property: every optional kind on, so every kind is covered.
pub fn options() -> Options {
    Options {
        optional_kinds: KINDS
            .iter()
            .filter(|k| k.optional)
            .map(|k| k.name)
            .collect(),
        ..Options::default()
    }
}

/// A kind's sample envelopes: the upserting ones, and its delete (if Clerk sends one).
fn templates(kind: &Kind) -> (Vec<(String, Value)>, Option<Value>) {
    let mut upserts = Vec::new();
    let mut delete = None;
    for s in kind.samples {
        let action = s.event_type.split_once('.').unwrap().1;
        let body: Value = serde_json::from_str(s.body).unwrap();
        if kind.deletes.contains(&action) {
            delete = Some(body);
        } else {
            upserts.push((action.to_owned(), body));
        }
    }
    (upserts, delete)
}

/// Sets the string at a JSON pointer, making the objects on the way.
fn set(v: &mut Value, pointer: &str, value: &str) {
    let mut at = v;
    for part in pointer.trim_start_matches('/').split('/') {
        if !at.is_object() {
            *at = json!({});
        }
        at = at
            .as_object_mut()
            .unwrap()
            .entry(part)
            .or_insert(Value::Null);
    }
    *at = json!(value);
}

/// One seed's history: objects of every kind (children naming parents of the same seed),
/// each created, updated and maybe deleted, interleaved at random on one timeline with
/// distinct times.
pub fn history(seed: u64) -> Vec<Event> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut objects: Vec<Object> = Vec::new();
    for kind in KINDS {
        // The first three kinds carry the parent deletes: more of them.
        let n = match kind.name {
            "users" => rng.usize(1..=4),
            "organizations" => rng.usize(1..=3),
            "memberships" => rng.usize(0..=5),
            _ => rng.usize(0..=1),
        };
        for i in 0..n {
            let parents = kind
                .parents
                .iter()
                .map(|p| {
                    let of: Vec<&Object> =
                        objects.iter().filter(|o| o.kind.name == p.kind).collect();
                    (p.pointer, of[rng.usize(0..of.len())].id.clone())
                })
                .collect();
            objects.push(Object {
                kind,
                id: format!("{}s{seed}_{i}", kind.id_prefix),
                parents,
                updates: rng.usize(0..=3),
                deleted: !kind.deletes.is_empty() && rng.u8(0..10) < 3,
            });
        }
    }
    // Steps taken so far per object; an object's steps are created, updates, delete.
    let mut step = vec![0usize; objects.len()];
    // A delete that repeats the object (a membership's) repeats it as last updated.
    let mut last: Vec<Option<Value>> = vec![None; objects.len()];
    let total = |o: &Object| 1 + o.updates + usize::from(o.deleted);
    let mut time = 1_760_000_000_000 + (seed as i64) * 10_000_000;
    let mut events = Vec::new();
    loop {
        let open: Vec<usize> = (0..objects.len())
            .filter(|&i| step[i] < total(&objects[i]))
            .collect();
        if open.is_empty() {
            return events;
        }
        let i = open[rng.usize(0..open.len())];
        time += rng.i64(1..5_000);
        let o = &objects[i];
        let (upserts, delete) = templates(o.kind);
        let mut envelope = if step[i] <= o.updates {
            // Created first (the kind's first sample), then any of its other events.
            let (action, template) = if step[i] == 0 {
                &upserts[0]
            } else {
                &upserts[rng.usize(0..upserts.len())]
            };
            let mut e = template.clone();
            e["type"] = json!(format!("{}.{action}", o.kind.object));
            e["data"]["id"] = json!(o.id);
            e["data"]["updated_at"] = json!(time);
            for (pointer, id) in &o.parents {
                set(&mut e["data"], pointer, id);
            }
            // A field that differs with every version, as real updates do.
            e["data"]["public_metadata"] = json!({"v": format!("v{}-{}", step[i], rng.u32(..))});
            last[i] = Some(e["data"].clone());
            e
        } else {
            let mut e = delete.expect("only kinds with a delete are deleted");
            if e["data"].get("updated_at").is_some() {
                e["data"] = last[i].clone().expect("created before deleted");
            } else {
                e["data"]["id"] = json!(o.id);
            }
            e
        };
        envelope["timestamp"] = json!(time);
        step[i] += 1;
        events.push(Event {
            time,
            body: serde_json::to_vec(&envelope).unwrap(),
        });
    }
}

/// Every mirror table's rows (without `synced_at`, the time of the write), ordered by id.
pub async fn snapshot(pool: &PgPool) -> Vec<(String, Value)> {
    let mut rows = Vec::new();
    for kind in KINDS {
        let sql = format!(
            "SELECT id, to_jsonb(t) - 'synced_at' FROM {} t ORDER BY id",
            kind.table
        );
        let mut part: Vec<(String, Value)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(pool)
            .await
            .unwrap();
        rows.append(&mut part);
    }
    rows
}

/// Applies `events` once each, in time order, through the mirror's own apply: the result any
/// order and any duplicates must converge to.
pub async fn apply_in_order(pool: &PgPool, events: &mut [Event], options: &Options) {
    events.sort_by_key(|e| e.time);
    for e in events.iter() {
        let Decoded::Change(change) = mirror::decode(&e.body, options).unwrap() else {
            panic!("every event of the history is mirrored");
        };
        mirror::apply(pool, &change, options).await.unwrap();
    }
}

/// The rows of two snapshots that differ, field by field (empty when they are equal); panics
/// when they hold different objects.
pub fn differences(want: &[(String, Value)], got: &[(String, Value)]) -> Vec<String> {
    let want_ids: Vec<&String> = want.iter().map(|r| &r.0).collect();
    let got_ids: Vec<&String> = got.iter().map(|r| &r.0).collect();
    assert_eq!(want_ids, got_ids, "the same objects exist");
    want.iter()
        .zip(got)
        .filter(|(w, g)| w != g)
        .map(|(w, g)| {
            let keys: Vec<String> =
                w.1.as_object()
                    .unwrap()
                    .iter()
                    .filter(|(k, v)| g.1.get(k.as_str()) != Some(v))
                    .map(|(k, v)| format!("{k}: in order {v}, actual {}", g.1[k.as_str()]))
                    .collect();
            format!("{}: {}", w.0, keys.join("; "))
        })
        .collect()
}
