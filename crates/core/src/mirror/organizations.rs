use sqlx::PgConnection;

use super::{Outcome, tombstone_parent};
use crate::event::{Organization, Tombstone};

pub(super) async fn upsert(
    conn: &mut PgConnection,
    o: &Organization,
) -> Result<Outcome, sqlx::Error> {
    let result = sqlx::query(
        r#"
        INSERT INTO clerk.organizations AS t (
            id, name, slug, image_url, has_image, created_by, members_count,
            max_allowed_memberships, admin_delete_enabled, public_metadata, private_metadata,
            created_at, updated_at, deleted_at, version, raw, synced_at
        ) VALUES (
            $1, $2, $3, $4, $5, $6, $7, $8, $9, $10->'public_metadata', $10->'private_metadata',
            $11, $12, NULL, $12, $10, now()
        )
        ON CONFLICT (id) DO UPDATE SET
            name = excluded.name,
            slug = excluded.slug,
            image_url = excluded.image_url,
            has_image = excluded.has_image,
            created_by = excluded.created_by,
            members_count = excluded.members_count,
            max_allowed_memberships = excluded.max_allowed_memberships,
            admin_delete_enabled = excluded.admin_delete_enabled,
            public_metadata = excluded.public_metadata,
            private_metadata = excluded.private_metadata,
            created_at = excluded.created_at,
            updated_at = excluded.updated_at,
            -- A newer event revives the row; an older one fills in data under a tombstone.
            deleted_at = CASE WHEN t.version < excluded.version THEN NULL ELSE t.deleted_at END,
            version = GREATEST(t.version, excluded.version),
            raw = excluded.raw,
            synced_at = now()
        WHERE t.updated_at IS NULL OR t.updated_at <= excluded.updated_at
        "#,
    )
    .bind(&o.id)
    .bind(&o.name)
    .bind(&o.slug)
    .bind(&o.image_url)
    .bind(o.has_image)
    .bind(&o.created_by)
    .bind(o.members_count)
    .bind(o.max_allowed_memberships)
    .bind(o.admin_delete_enabled)
    .bind(&o.raw)
    .bind(o.created_at)
    .bind(o.updated_at)
    .execute(&mut *conn)
    .await?;
    Ok(Outcome::from_rows(result.rows_affected()))
}

/// Tombstones the organization (inserting the tombstone if it was never seen) and its
/// memberships that are not newer than the delete.
pub(super) async fn delete(
    conn: &mut PgConnection,
    t: &Tombstone<Organization>,
) -> Result<Outcome, sqlx::Error> {
    tombstone_parent(
        conn,
        t,
        r#"
        WITH tombstone AS (
            INSERT INTO clerk.organizations AS t (id, deleted_at, version, raw, synced_at)
            VALUES ($1, $2, $2, $3, now())
            ON CONFLICT (id) DO UPDATE SET
                deleted_at = excluded.deleted_at, version = excluded.version, synced_at = now()
            WHERE t.version <= excluded.version
            RETURNING 1
        ), cascade AS (
            UPDATE clerk.organization_memberships m
            SET deleted_at = $2, synced_at = now()
            WHERE m.organization_id = $1 AND m.version <= $2
              AND (m.deleted_at IS NULL OR m.deleted_at > $2)
            RETURNING 1
        )
        -- A data-modifying CTE runs to completion whether or not it is read.
        SELECT count(*) FROM tombstone
        "#,
    )
    .await
}
