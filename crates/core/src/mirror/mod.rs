//! The mirror: one table per Clerk object kind, in schema `clerk`, kept by versioned upserts.
//!
//! **A kind is one file.** `users.rs`, `organizations.rs`, `memberships.rs`, ... each declare a
//! [`Kind`]: its event names, table, typed columns (SQL expressions over the Clerk object),
//! parents, Backend API listing and sample events. [`KINDS`] registers them. Decoding
//! ([`decode`]), applying ([`apply_all`]), backfill, test events and the property test all go
//! through the registry; none of them matches on a kind. Adding a kind is its file, a line
//! in [`KINDS`], a migration creating its table, and its sample payloads.
//!
//! **The ordering rule lives in SQL** (`ON CONFLICT … DO UPDATE … WHERE …`), so any number of
//! workers and re-deliveries can run at once without application locks. Each row keeps two
//! versions: `updated_at`, the version of its data (the newest payload wins), and `version`,
//! the newest event of any kind (a delete's envelope timestamp), which decides whether the
//! row is deleted. So the mirror ends exactly as if the events had arrived in order: a
//! delete is never undone by an older event, and an older update that arrives after the
//! delete still leaves the data the object had when it was deleted (unless the kind holds
//! personal data and erasure is on: then the tombstone stays erased). Deleting a parent (a
//! user, an organization) tombstones its children that are not newer than the delete; a
//! child event older than a parent's tombstone is stored tombstoned, whenever it arrives.
//!
//! Many events are applied with one statement per kind: rows arrive as arrays, and the
//! events of one object within a batch are first merged into the one change that applying
//! them in order would make (a statement may not touch a row twice).

/// A column holding a time Clerk sends in milliseconds since the epoch (exact, no float).
macro_rules! ms {
    ($field:literal) => {
        concat!(
            "timestamptz 'epoch' + (d->>'",
            $field,
            "')::int8 * interval '1 millisecond'"
        )
    };
}
/// A status kept as text in snake_case, whichever way Clerk spelled it (`pastDue` and
/// `past_due` are both `past_due`).
macro_rules! snake {
    ($field:literal) => {
        concat!(
            "lower(regexp_replace(d->>'",
            $field,
            "', '([a-z0-9])([A-Z])', '\\1_\\2', 'g'))"
        )
    };
}
/// A sample event, from `crates/core/samples/<type>.json`.
macro_rules! sample {
    ($event_type:literal) => {
        Sample {
            event_type: $event_type,
            body: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/samples/",
                $event_type,
                ".json"
            )),
        }
    };
}
pub(crate) use {ms, sample, snake};

/// Who pays for a billing object (subscriptions, their items, payment attempts): a user or
/// an organization, as the columns every billing kind has.
const PAYER: [(&str, &str); 3] = [
    ("payer_id", "coalesce(d->>'payer_id', d->'payer'->>'id')"),
    ("user_id", "nullif(d->'payer'->>'user_id', '')"),
    (
        "organization_id",
        "nullif(d->'payer'->>'organization_id', '')",
    ),
];

mod domains;
mod invitations;
mod memberships;
mod organizations;
mod payment_attempts;
mod permissions;
mod roles;
mod sessions;
mod subscription_items;
mod subscriptions;
mod users;
mod waitlist;

#[cfg(test)]
mod tests;

use std::{borrow::Cow, collections::BTreeMap, sync::OnceLock};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};

use crate::event::{Envelope, MalformedEvent, malformed};

/// Every kind the mirror keeps, parents before children.
pub static KINDS: &[&Kind] = &[
    &users::KIND,
    &organizations::KIND,
    &memberships::KIND,
    &invitations::KIND,
    &domains::KIND,
    &roles::KIND,
    &permissions::KIND,
    &waitlist::KIND,
    &subscriptions::KIND,
    &subscription_items::KIND,
    &payment_attempts::KIND,
    &sessions::KIND,
];

/// Everything about one Clerk object kind.
pub struct Kind {
    /// Plural, as operators name it: `backfill --kind users`, `clerk_sync.backfill_runs.kind`.
    pub name: &'static str,
    /// The object part of its event types (`user` in `user.updated`).
    pub object: &'static str,
    /// The mirror table, schema-qualified (a fixed name: safe to put in SQL text).
    pub table: &'static str,
    /// The prefix of Clerk's ids for it (`user_`).
    pub id_prefix: &'static str,
    /// Typed columns besides `id`, `updated_at`, `deleted_at`, `version`, `raw`,
    /// `synced_at`: each a name and the SQL expression computing it from the Clerk object
    /// `d` (jsonb). A value of the wrong JSON type fails the statement (SQLSTATE 22xxx) and
    /// the job is dead-lettered as permanent with PostgreSQL's message.
    pub columns: &'static [(&'static str, &'static str)],
    /// Fields that must be non-empty strings (JSON pointers into the object), besides `/id`.
    pub required: &'static [&'static str],
    /// The kinds whose delete tombstones this kind's rows.
    pub parents: &'static [Parent],
    /// Actions (`<object>.<action>`) that delete; every other action upserts the object.
    pub deletes: &'static [&'static str],
    /// A delete erases the object's data from its tombstone (names, emails, metadata, raw)
    /// when [`Options::erase_personal_data`] is on, and older events never bring it back.
    pub personal_data: bool,
    /// Mirrored only when [`Options::optional_kinds`] names it (high-volume kinds).
    pub optional: bool,
    /// How `clerk-sync backfill` lists it from Clerk's Backend API, if it can.
    pub listing: Option<Listing>,
    /// A realistic body for each of its event types.
    pub samples: &'static [Sample],
    /// Generated SQL, built on first use.
    pub sql: SqlCache,
}

/// A parent kind: deleting a parent tombstones its children.
pub struct Parent {
    /// The parent kind's [`Kind::name`].
    pub kind: &'static str,
    /// The child's column holding the parent's id (indexed).
    pub column: &'static str,
    /// Where the child object names its parent (a JSON pointer).
    pub pointer: &'static str,
}

/// A kind's listing in Clerk's Backend API.
#[derive(Debug, Clone, Copy)]
pub struct Listing {
    /// `GET` path of the list endpoint (`/v1/users`).
    pub path: &'static str,
    /// Whether `GET {path}/{id}` finds one object (confirms absence before pruning).
    pub lookup: bool,
    /// A path answering `{"total_count": N}`, for progress.
    pub count: Option<&'static str>,
}

/// A sample event: its type and a realistic Svix-delivered body.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub event_type: &'static str,
    pub body: &'static str,
}

/// Generated statements of a kind, built once.
pub struct SqlCache {
    upsert: OnceLock<String>,
    cascades: OnceLock<Vec<(&'static str, String)>>,
}

impl SqlCache {
    pub const fn new() -> Self {
        Self {
            upsert: OnceLock::new(),
            cascades: OnceLock::new(),
        }
    }
}

impl Default for SqlCache {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for Kind {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Kind {
    pub fn by_name(name: &str) -> Option<&'static Kind> {
        KINDS.iter().copied().find(|k| k.name == name)
    }

    pub fn by_object(object: &str) -> Option<&'static Kind> {
        KINDS.iter().copied().find(|k| k.object == object)
    }

    /// The kind an id belongs to, by Clerk's id prefix (the longest that matches:
    /// `csub_item_…` is a subscription item, `csub_…` a subscription).
    pub fn by_id(id: &str) -> Option<&'static Kind> {
        KINDS
            .iter()
            .copied()
            .filter(|k| id.starts_with(k.id_prefix))
            .max_by_key(|k| k.id_prefix.len())
    }

    /// Whether some kind names this one as its parent (its deletes cascade).
    pub fn is_parent(&self) -> bool {
        KINDS
            .iter()
            .any(|k| k.parents.iter().any(|p| p.kind == self.name))
    }

    /// The batched upsert: `$1` ids, `$2` objects, `$3` data versions (`updated_at`, NULL
    /// for a tombstone without data), `$4` event versions, `$5` deleted flags, and for a
    /// kind with personal data `$6` whether deletes erase it. Returns the ids it changed.
    pub fn upsert_sql(&'static self) -> &'static str {
        self.sql.upsert.get_or_init(|| self.build_upsert())
    }

    fn build_upsert(&self) -> String {
        let parent_tombstone = if self.parents.is_empty() {
            "NULL::timestamptz".to_owned()
        } else {
            let parents: Vec<String> = self
                .parents
                .iter()
                .map(|p| {
                    let parent = Kind::by_name(p.kind).expect("parents are registered kinds");
                    format!(
                        "SELECT version FROM {} WHERE id = ({}) AND deleted_at IS NOT NULL",
                        parent.table,
                        self.column_expr(p.column)
                    )
                })
                .collect();
            format!(
                "(SELECT min(p.version) FROM ({}) p WHERE p.version >= x.version)",
                parents.join(" UNION ALL ")
            )
        };
        let erase = if self.personal_data {
            "($6 AND excluded.deleted_at IS NOT NULL AND"
        } else {
            "(false AND"
        };
        let newer_event = "(t.version < excluded.version OR (t.version = excluded.version \
             AND (t.deleted_at IS NULL OR excluded.deleted_at IS NOT NULL)))";
        let kept_erased = if self.personal_data {
            " AND NOT ($6 AND t.deleted_at IS NOT NULL AND t.version >= excluded.version)"
        } else {
            ""
        };
        let newer_data = format!(
            "(excluded.updated_at IS NOT NULL \
             AND (t.updated_at IS NULL OR t.updated_at <= excluded.updated_at){kept_erased})"
        );
        let erasing = format!("{erase} {newer_event})");
        let names: Vec<&str> = self.columns.iter().map(|(name, _)| *name).collect();
        let exprs: Vec<String> = self
            .columns
            .iter()
            .map(|(name, expr)| format!("({expr}) AS {name}"))
            .collect();
        let data_sets: Vec<String> = names
            .iter()
            .copied()
            .chain(["updated_at", "raw"])
            .map(|c| {
                format!(
                    "{c} = CASE WHEN {erasing} OR {newer_data} THEN excluded.{c} ELSE t.{c} END"
                )
            })
            .collect();
        format!(
            "INSERT INTO {table} AS t (id, {names}, updated_at, deleted_at, version, raw, synced_at) \
             SELECT x.id, {exprs}, x.updated_at, \
                    CASE WHEN x.deleted THEN x.version ELSE {parent_tombstone} END, \
                    x.version, x.d, now() \
             FROM unnest($1::text[], $2::jsonb[], $3::timestamptz[], $4::timestamptz[], $5::bool[]) \
                  AS x(id, d, updated_at, version, deleted) \
             ON CONFLICT (id) DO UPDATE SET {data_sets}, \
                 deleted_at = CASE WHEN {newer_event} THEN excluded.deleted_at ELSE t.deleted_at END, \
                 version = CASE WHEN {newer_event} THEN excluded.version ELSE t.version END, \
                 synced_at = now() \
             WHERE {newer_data} OR {newer_event} \
             RETURNING t.id",
            table = self.table,
            names = names.join(", "),
            exprs = exprs.join(", "),
            data_sets = data_sets.join(", "),
        )
    }

    /// The SQL expression of one of this kind's columns.
    fn column_expr(&self, column: &str) -> &'static str {
        self.columns
            .iter()
            .find(|(name, _)| *name == column)
            .map(|(_, expr)| *expr)
            .unwrap_or_else(|| panic!("{}: no column {column}", self.name))
    }

    /// For a parent kind, one statement per child kind that tombstones the children of
    /// deleted parents (`$1` parent ids, `$2` the deletes' versions): each child not newer
    /// than the delete, at the earliest delete that reaches it. The version is checked
    /// again on the row being updated: a child changed by a concurrent transaction (its own
    /// later delete, say) is re-read after the wait, where the join's snapshot is not.
    fn cascade_sql(&'static self) -> &'static [(&'static str, String)] {
        self.sql.cascades.get_or_init(|| {
            KINDS
                .iter()
                .flat_map(|child| {
                    child
                        .parents
                        .iter()
                        .filter(|p| p.kind == self.name)
                        .map(move |p| (child, p))
                })
                .map(|(child, p)| {
                    let sql = format!(
                        "UPDATE {table} c SET deleted_at = d.v, synced_at = now() \
                         FROM (SELECT m.id, min(p.version) AS v \
                               FROM unnest($1::text[], $2::timestamptz[]) AS p(id, version) \
                               JOIN {table} m ON m.{column} = p.id AND m.version <= p.version \
                               GROUP BY m.id) d \
                         WHERE c.id = d.id AND c.version <= d.v \
                           AND (c.deleted_at IS NULL OR c.deleted_at > d.v)",
                        table = child.table,
                        column = p.column,
                    );
                    (child.name, sql)
                })
                .collect()
        })
    }
}

/// Mirror settings (the worker's; backfill uses the defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// A delete of a kind with personal data erases it from the tombstone.
    pub erase_personal_data: bool,
    /// Optional kinds to mirror ([`Kind::optional`]), by name.
    pub optional_kinds: Vec<&'static str>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            erase_personal_data: true,
            optional_kinds: Vec::new(),
        }
    }
}

/// One event's change to one mirror row.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub kind: &'static Kind,
    pub id: String,
    /// The Clerk object (for a delete that carries none, the delete's own `data`).
    pub data: Value,
    /// The data's version: `updated_at` (None: a tombstone that carries no data).
    pub updated_at: Option<DateTime<Utc>>,
    /// The event's version: `updated_at`, or a delete's envelope timestamp.
    pub version: DateTime<Utc>,
    pub deleted: bool,
}

/// What a verified body means to the mirror.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Change(Change),
    /// Stored and acknowledged, not mirrored.
    Skip(Skip),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// An event type no kind claims.
    Unknown(String),
    /// An optional kind that is not turned on.
    Disabled(&'static str),
}

/// Decodes a verified body. Strict where the mirror depends on a field (the type, the id,
/// the version, required parent ids), lenient elsewhere: the rest is kept in `raw`.
pub fn decode(body: &[u8], options: &Options) -> Result<Decoded, MalformedEvent> {
    let envelope = Envelope::parse(body)?;
    let Some((object, action)) = envelope.event_type.split_once('.') else {
        return Ok(Decoded::Skip(Skip::Unknown(envelope.event_type)));
    };
    let Some(kind) = Kind::by_object(object) else {
        return Ok(Decoded::Skip(Skip::Unknown(envelope.event_type)));
    };
    if kind.optional && !options.optional_kinds.contains(&kind.name) {
        return Ok(Decoded::Skip(Skip::Disabled(kind.name)));
    }
    let change = if kind.deletes.contains(&action) {
        let version = envelope.timestamp.ok_or_else(|| {
            malformed(format!("{object}: delete without an envelope `timestamp`"))
        })?;
        Change::new(kind, envelope.data, Some(version), true)?
    } else {
        Change::new(kind, envelope.data, None, false)?
    };
    Ok(Decoded::Change(change))
}

impl Change {
    /// A change from a Clerk object: an upsert versioned by its `updated_at`, or a delete
    /// versioned by `deleted_at` (its `updated_at` versions the data it carries, if any).
    fn new(
        kind: &'static Kind,
        data: Value,
        deleted_at: Option<DateTime<Utc>>,
        deleted: bool,
    ) -> Result<Self, MalformedEvent> {
        let what = kind.object;
        let id = match data.get("id") {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            _ => {
                return Err(malformed(format!(
                    "{what}: `data.id` is not a non-empty string"
                )));
            }
        };
        let updated_at = match data.get("updated_at") {
            None | Some(Value::Null) if deleted => None,
            None | Some(Value::Null) => {
                return Err(malformed(format!("{what}: no `data.updated_at`")));
            }
            Some(t) => Some(
                t.as_i64()
                    .and_then(DateTime::from_timestamp_millis)
                    .ok_or_else(|| {
                        malformed(format!(
                            "{what}: `data.updated_at` is not a time in milliseconds"
                        ))
                    })?,
            ),
        };
        // A bare delete (`{deleted, id, object}`) carries nothing else; anything that
        // carries the object must carry what the mirror depends on.
        if updated_at.is_some() {
            for pointer in kind.required {
                if !matches!(data.pointer(pointer), Some(Value::String(s)) if !s.is_empty()) {
                    return Err(malformed(format!(
                        "{what}: `data{}` is not a non-empty string",
                        pointer.replace('/', ".")
                    )));
                }
            }
        }
        let version = match (deleted_at, updated_at) {
            (Some(v), _) | (None, Some(v)) => v,
            (None, None) => unreachable!("an upsert has updated_at"),
        };
        Ok(Self {
            kind,
            id,
            data,
            updated_at,
            version,
            deleted,
        })
    }

    /// An object as Clerk's Backend API lists it (backfill), versioned by its `updated_at`.
    pub fn listed(kind: &'static Kind, data: Value) -> Result<Self, MalformedEvent> {
        Self::new(kind, data, None, false)
    }

    /// A tombstone for an object Clerk no longer has (backfill's prune), at `version`.
    pub fn pruned(kind: &'static Kind, id: &str, version: DateTime<Utc>) -> Self {
        Self {
            kind,
            id: id.to_owned(),
            data: serde_json::json!({
                "deleted": true, "id": id, "object": kind.object,
                "pruned_by": "clerk-sync backfill",
            }),
            updated_at: None,
            version,
            deleted: true,
        }
    }

    /// The ids of this change's parents that it names.
    pub fn parent_ids(&self) -> impl Iterator<Item = &str> {
        self.kind
            .parents
            .iter()
            .filter_map(|p| match self.data.pointer(p.pointer) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.as_str()),
                _ => None,
            })
    }
}

/// What applying one event did to the mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The row now reflects this event.
    Applied,
    /// The stored row (or another event of the same batch) is newer; this one changed nothing.
    Stale,
    /// An event type we do not mirror.
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Stale => "stale",
            Self::Skipped => "skipped",
        }
    }
}

/// Applies one change under the ordering rule, in its own transaction.
pub async fn apply(
    pool: &PgPool,
    change: &Change,
    options: &Options,
) -> Result<Outcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let outcome = apply_all(&mut tx, &[change], options).await?[0];
    tx.commit().await?;
    Ok(outcome)
}

/// Applies changes under the ordering rule inside the caller's transaction, so the caller
/// can commit them with its own writes (the worker's acks): the parent locks they need
/// first, then one statement per kind, then the cascades of parent deletes. Returns each
/// change's outcome, in order.
pub async fn apply_all(
    tx: &mut Transaction<'_, Postgres>,
    changes: &[&Change],
    options: &Options,
) -> Result<Vec<Outcome>, sqlx::Error> {
    lock_parents(tx, changes).await?;
    let mut outcomes = vec![Outcome::Stale; changes.len()];
    for kind in KINDS {
        let mine: Vec<usize> = (0..changes.len())
            .filter(|&i| changes[i].kind == *kind)
            .collect();
        if mine.is_empty() {
            continue;
        }
        // The events of one object, merged into the change applying them in order makes.
        let mut by_id: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for &i in &mine {
            by_id.entry(changes[i].id.as_str()).or_default().push(i);
        }
        let merged: Vec<(Merged, Vec<usize>)> = by_id
            .into_values()
            .map(|group| (Merged::of(kind, changes, &group, options), group))
            .collect();
        let changed = upsert(tx, kind, &merged, options).await?;
        for (m, _) in &merged {
            if changed.contains(m.id) {
                for &i in &m.sources {
                    outcomes[i] = Outcome::Applied;
                }
            }
        }
        let deletes: Vec<&Merged> = merged
            .iter()
            .map(|(m, _)| m)
            .filter(|m| m.deleted)
            .collect();
        if !deletes.is_empty() {
            let ids: Vec<&str> = deletes.iter().map(|m| m.id).collect();
            let versions: Vec<DateTime<Utc>> = deletes.iter().map(|m| m.version).collect();
            for (_, sql) in kind.cascade_sql() {
                sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(&ids)
                    .bind(&versions)
                    .execute(&mut **tx)
                    .await?;
            }
        }
    }
    Ok(outcomes)
}

/// The events of one object in one batch, as one change.
struct Merged<'a> {
    id: &'a str,
    data: Cow<'a, Value>,
    updated_at: Option<DateTime<Utc>>,
    version: DateTime<Utc>,
    deleted: bool,
    /// The changes whose data or event version the merged change carries.
    sources: Vec<usize>,
}

impl<'a> Merged<'a> {
    fn of(kind: &Kind, changes: &[&'a Change], group: &[usize], options: &Options) -> Self {
        // The newest event decides deletion (a delete wins a tie); the newest data (later
        // wins a tie) fills the row, unless the delete erases it.
        let event_source = group
            .iter()
            .copied()
            .max_by_key(|&i| (changes[i].version, changes[i].deleted))
            .expect("a group has a change");
        let event = changes[event_source];
        let erase = kind.personal_data && options.erase_personal_data && event.deleted;
        let data_source = group
            .iter()
            .copied()
            .filter(|&i| !erase && changes[i].updated_at.is_some())
            .max_by_key(|&i| changes[i].updated_at);
        let (data, updated_at) = match data_source {
            Some(d) => (Cow::Borrowed(&changes[d].data), changes[d].updated_at),
            None if event.updated_at.is_none() => (Cow::Borrowed(&event.data), None),
            // An erasing delete that carries the object: keep none of it.
            None => (
                Cow::Owned(serde_json::json!({
                    "deleted": true, "id": event.id, "object": kind.object,
                })),
                None,
            ),
        };
        let mut sources: Vec<usize> = data_source.into_iter().collect();
        if !sources.contains(&event_source) {
            sources.push(event_source);
        }
        Self {
            id: event.id.as_str(),
            data,
            updated_at,
            version: event.version,
            deleted: event.deleted,
            sources,
        }
    }
}

async fn upsert(
    tx: &mut Transaction<'_, Postgres>,
    kind: &'static Kind,
    merged: &[(Merged<'_>, Vec<usize>)],
    options: &Options,
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    let ids: Vec<&str> = merged.iter().map(|(m, _)| m.id).collect();
    let data: Vec<&Value> = merged.iter().map(|(m, _)| m.data.as_ref()).collect();
    let updated: Vec<Option<DateTime<Utc>>> = merged.iter().map(|(m, _)| m.updated_at).collect();
    let versions: Vec<DateTime<Utc>> = merged.iter().map(|(m, _)| m.version).collect();
    let deleted: Vec<bool> = merged.iter().map(|(m, _)| m.deleted).collect();
    let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(kind.upsert_sql()))
        .bind(&ids)
        .bind(&data)
        .bind(&updated)
        .bind(&versions)
        .bind(&deleted);
    if kind.personal_data {
        query = query.bind(options.erase_personal_data);
    }
    let changed: Vec<String> = query.fetch_all(&mut **tx).await?;
    Ok(changed.into_iter().collect())
}

/// Serialises a parent's delete (exclusive) against writes of its children (shared), so
/// that a child never misses a tombstone committed while it was being written. Taken in one
/// statement, in key order, before any change is written: under READ COMMITTED the
/// statements that follow then see what a lock holder committed, and two transactions
/// applying several changes queue on their first common parent instead of each holding
/// what the other waits for.
async fn lock_parents(
    tx: &mut Transaction<'_, Postgres>,
    changes: &[&Change],
) -> Result<(), sqlx::Error> {
    // Exclusive wins where one change deletes a parent that another's child names.
    let mut keys: BTreeMap<&str, bool> = BTreeMap::new();
    for change in changes {
        if change.deleted && change.kind.is_parent() {
            keys.insert(change.id.as_str(), true);
        }
        for parent in change.parent_ids() {
            keys.entry(parent).or_insert(false);
        }
    }
    if keys.is_empty() {
        return Ok(());
    }
    let (ids, exclusive): (Vec<&str>, Vec<bool>) = keys.into_iter().unzip();
    sqlx::query(
        "SELECT CASE WHEN x THEN pg_advisory_xact_lock(hashtextextended(id, 7262)) \
                     ELSE pg_advisory_xact_lock_shared(hashtextextended(id, 7262)) END \
         FROM unnest($1::text[], $2::bool[]) AS t(id, x) ORDER BY id",
    )
    .bind(&ids)
    .bind(&exclusive)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
