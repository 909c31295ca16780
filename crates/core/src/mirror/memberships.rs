use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::Outcome;

// A membership's data follows its newest payload (`updated_at`; a delete repeats the last
// one), its deletion follows its newest event (`version`; a delete's envelope timestamp).
macro_rules! newer_data {
    () => {
        "(t.updated_at IS NULL OR t.updated_at <= excluded.updated_at)"
    };
}
macro_rules! newer_event {
    () => {
        "(t.version < excluded.version OR (t.version = excluded.version
          AND (t.deleted_at IS NULL OR excluded.deleted_at IS NOT NULL)))"
    };
}
/// `col = CASE WHEN <cond> THEN excluded.col ELSE t.col END,`
macro_rules! follow {
    ($cond:expr, $col:literal) => {
        concat!(
            " ",
            $col,
            " = CASE WHEN ",
            $cond,
            " THEN excluded.",
            $col,
            " ELSE t.",
            $col,
            " END,"
        )
    };
}
use crate::event::{Membership, Tombstone};

/// Writes a membership's own event. `deleted` is the delete's version for
/// `organizationMembership.deleted`; otherwise the row is live unless its organization or
/// user has a tombstone not older than this event (the cascade it would have received had
/// the events arrived in order). Its parents' shared locks are already held.
pub(super) async fn upsert(
    conn: &mut PgConnection,
    m: &Membership,
    deleted: Option<DateTime<Utc>>,
) -> Result<Outcome, sqlx::Error> {
    let version = deleted.unwrap_or(m.updated_at);
    let result = sqlx::query(concat!(
        r#"
        INSERT INTO clerk.organization_memberships AS t (
            id, organization_id, user_id, role, role_name, permissions, public_metadata,
            private_metadata, created_at, updated_at, deleted_at, version, raw, synced_at
        ) VALUES (
            $1, $2, $3, $4, $5, $6, $7->'public_metadata', $7->'private_metadata', $8, $9,
            COALESCE($10, (
                SELECT min(p.version) FROM (
                    SELECT version FROM clerk.organizations
                    WHERE id = $2 AND deleted_at IS NOT NULL
                    UNION ALL
                    SELECT version FROM clerk.users
                    WHERE id = $3 AND deleted_at IS NOT NULL
                ) p
                WHERE p.version >= $11
            )),
            $11, $7, now()
        )
        ON CONFLICT (id) DO UPDATE SET
        "#,
        follow!(newer_data!(), "organization_id"),
        follow!(newer_data!(), "user_id"),
        follow!(newer_data!(), "role"),
        follow!(newer_data!(), "role_name"),
        follow!(newer_data!(), "permissions"),
        follow!(newer_data!(), "public_metadata"),
        follow!(newer_data!(), "private_metadata"),
        follow!(newer_data!(), "created_at"),
        follow!(newer_data!(), "updated_at"),
        follow!(newer_data!(), "raw"),
        follow!(newer_event!(), "deleted_at"),
        follow!(newer_event!(), "version"),
        " synced_at = now() WHERE ",
        newer_data!(),
        " OR ",
        newer_event!(),
    ))
    .bind(&m.id)
    .bind(&m.organization_id)
    .bind(&m.user_id)
    .bind(&m.role)
    .bind(&m.role_name)
    .bind(&m.permissions)
    .bind(&m.raw)
    .bind(m.created_at)
    .bind(m.updated_at)
    .bind(deleted)
    .bind(version)
    .execute(&mut *conn)
    .await?;
    Ok(Outcome::from_rows(result.rows_affected()))
}

/// A membership delete carries the whole membership; without it we still record the
/// tombstone by id.
pub(super) async fn delete(
    conn: &mut PgConnection,
    t: &Tombstone<Membership>,
) -> Result<Outcome, sqlx::Error> {
    if let Some(last) = &t.last {
        return upsert(conn, last, Some(t.version)).await;
    }
    let result = sqlx::query(
        r#"
        INSERT INTO clerk.organization_memberships AS t (id, deleted_at, version, raw, synced_at)
        VALUES ($1, $2, $2, $3, now())
        ON CONFLICT (id) DO UPDATE SET
            deleted_at = excluded.deleted_at, version = excluded.version, synced_at = now()
        WHERE t.version <= excluded.version
        "#,
    )
    .bind(&t.id)
    .bind(t.version)
    .bind(&t.raw)
    .execute(&mut *conn)
    .await?;
    Ok(Outcome::from_rows(result.rows_affected()))
}
