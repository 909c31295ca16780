//! The mirror's versioned upserts, one file per Clerk object kind.
//!
//! The ordering rule lives in SQL (`ON CONFLICT … DO UPDATE … WHERE …`), so any number of
//! workers and re-deliveries can run at once without application locks. Each row keeps two
//! versions: `updated_at`, the version of its data (the newest created/updated payload
//! wins), and `version`, the newest event of any kind (a delete's envelope timestamp), which
//! decides whether the row is deleted. So the mirror ends exactly as if the events had
//! arrived in order: a delete is never undone by an older event, and an older update that
//! arrives after the delete still leaves the data the object had when it was deleted.
//! Deleting a user or an organization also tombstones its memberships; a membership event
//! older than a parent's tombstone is stored tombstoned, whenever it arrives.

mod memberships;
mod organizations;
mod users;

pub use users::UPSERT as USERS_UPSERT;

use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use crate::event::ClerkEvent;

/// What applying one event did to the mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The row now reflects this event.
    Applied,
    /// The stored row is newer; nothing changed.
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

    fn from_rows(rows: u64) -> Self {
        if rows > 0 { Self::Applied } else { Self::Stale }
    }
}

/// Applies one decoded event under the ordering rule, in its own transaction.
pub async fn apply(pool: &PgPool, event: &ClerkEvent) -> Result<Outcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let outcome = apply_all(&mut tx, &[event]).await?[0];
    tx.commit().await?;
    Ok(outcome)
}

/// Applies decoded events, in the order given, under the ordering rule inside the caller's
/// transaction, so the caller can commit them with its own writes (the worker's acks).
/// First it takes every parent lock they need (see [`lock_parents`]), held until that
/// transaction ends. Returns each event's outcome.
pub async fn apply_all(
    tx: &mut Transaction<'_, Postgres>,
    events: &[&ClerkEvent],
) -> Result<Vec<Outcome>, sqlx::Error> {
    use crate::event::Change;
    lock_parents(tx, events).await?;
    let conn: &mut PgConnection = tx;
    let mut outcomes = Vec::with_capacity(events.len());
    for event in events {
        outcomes.push(match event {
            ClerkEvent::User(Change::Upsert(u)) => users::upsert(conn, u).await?,
            ClerkEvent::User(Change::Delete(t)) => users::delete(conn, t).await?,
            ClerkEvent::Organization(Change::Upsert(o)) => organizations::upsert(conn, o).await?,
            ClerkEvent::Organization(Change::Delete(t)) => organizations::delete(conn, t).await?,
            ClerkEvent::Membership(Change::Upsert(m)) => memberships::upsert(conn, m, None).await?,
            ClerkEvent::Membership(Change::Delete(t)) => memberships::delete(conn, t).await?,
            ClerkEvent::Other(_) => Outcome::Skipped,
        });
    }
    Ok(outcomes)
}

/// Serialises a parent's delete (exclusive) against upserts of its memberships (shared), so
/// that a membership never misses a tombstone committed while it was being written: the
/// lock of a deleted user or organization, and the shared locks of the organization and user
/// of each membership written (with or without a delete). Taken in one statement, in key
/// order, before any of the events is written: under READ COMMITTED the statements that
/// follow then see what a lock holder committed, and two transactions applying several
/// events queue on their first common parent instead of each holding what the other waits
/// for.
async fn lock_parents(
    tx: &mut Transaction<'_, Postgres>,
    events: &[&ClerkEvent],
) -> Result<(), sqlx::Error> {
    use crate::event::{Change, Tombstone};
    // Exclusive wins where one event deletes a parent that another's membership names.
    let mut keys: std::collections::BTreeMap<&str, bool> = Default::default();
    for event in events {
        match event {
            ClerkEvent::User(Change::Delete(t)) => {
                keys.insert(t.id.as_str(), true);
            }
            ClerkEvent::Organization(Change::Delete(t)) => {
                keys.insert(t.id.as_str(), true);
            }
            ClerkEvent::Membership(
                Change::Upsert(m) | Change::Delete(Tombstone { last: Some(m), .. }),
            ) => {
                for id in [Some(m.organization_id.as_str()), m.user_id.as_deref()]
                    .into_iter()
                    .flatten()
                {
                    keys.entry(id).or_insert(false);
                }
            }
            _ => {}
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

/// Runs a user's or an organization's tombstone-and-cascade statement (`$1` id, `$2` the
/// delete's version, `$3` its raw data; it returns how many parent rows changed). The
/// parent's exclusive lock is already held (`lock_parents`).
async fn tombstone_parent<T>(
    conn: &mut PgConnection,
    t: &crate::event::Tombstone<T>,
    sql: &'static str,
) -> Result<Outcome, sqlx::Error> {
    let applied: i64 = sqlx::query_scalar(sql)
        .bind(&t.id)
        .bind(t.version)
        .bind(&t.raw)
        .fetch_one(&mut *conn)
        .await?;
    Ok(Outcome::from_rows(applied as u64))
}
