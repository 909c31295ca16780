use sqlx::PgConnection;

use super::{Outcome, tombstone_parent};
use crate::event::{Tombstone, User};

/// The users upsert: `$1`–`$12` id to primary_web3_wallet_id, `$13` the raw data (its
/// nested lists and metadata are taken from it), `$14`–`$26` banned to updated_at.
/// Public for the benchmark, which runs this very statement under pgbench.
pub const UPSERT: &str = r#"
        INSERT INTO clerk.users AS t (
            id, external_id, first_name, last_name, username, image_url, has_image,
            primary_email_address_id, primary_email_address, primary_phone_number_id,
            primary_phone_number, primary_web3_wallet_id, email_addresses, phone_numbers,
            external_accounts, public_metadata, private_metadata, unsafe_metadata,
            banned, locked, password_enabled, two_factor_enabled, totp_enabled,
            backup_code_enabled, create_organization_enabled, delete_self_enabled,
            last_sign_in_at, last_active_at, legal_accepted_at, created_at, updated_at,
            deleted_at, version, raw, synced_at
        ) VALUES (
            $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
            $13->'email_addresses', $13->'phone_numbers', $13->'external_accounts',
            $13->'public_metadata', $13->'private_metadata', $13->'unsafe_metadata',
            $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26,
            NULL, $26, $13, now()
        )
        ON CONFLICT (id) DO UPDATE SET
            external_id = excluded.external_id,
            first_name = excluded.first_name,
            last_name = excluded.last_name,
            username = excluded.username,
            image_url = excluded.image_url,
            has_image = excluded.has_image,
            primary_email_address_id = excluded.primary_email_address_id,
            primary_email_address = excluded.primary_email_address,
            primary_phone_number_id = excluded.primary_phone_number_id,
            primary_phone_number = excluded.primary_phone_number,
            primary_web3_wallet_id = excluded.primary_web3_wallet_id,
            email_addresses = excluded.email_addresses,
            phone_numbers = excluded.phone_numbers,
            external_accounts = excluded.external_accounts,
            public_metadata = excluded.public_metadata,
            private_metadata = excluded.private_metadata,
            unsafe_metadata = excluded.unsafe_metadata,
            banned = excluded.banned,
            locked = excluded.locked,
            password_enabled = excluded.password_enabled,
            two_factor_enabled = excluded.two_factor_enabled,
            totp_enabled = excluded.totp_enabled,
            backup_code_enabled = excluded.backup_code_enabled,
            create_organization_enabled = excluded.create_organization_enabled,
            delete_self_enabled = excluded.delete_self_enabled,
            last_sign_in_at = excluded.last_sign_in_at,
            last_active_at = excluded.last_active_at,
            legal_accepted_at = excluded.legal_accepted_at,
            created_at = excluded.created_at,
            updated_at = excluded.updated_at,
            -- A newer event revives the row; an older one fills in data under a tombstone.
            deleted_at = CASE WHEN t.version < excluded.version THEN NULL ELSE t.deleted_at END,
            version = GREATEST(t.version, excluded.version),
            raw = excluded.raw,
            synced_at = now()
        WHERE t.updated_at IS NULL OR t.updated_at <= excluded.updated_at
        "#;

pub(super) async fn upsert(conn: &mut PgConnection, u: &User) -> Result<Outcome, sqlx::Error> {
    let result = sqlx::query(UPSERT)
        .bind(&u.id)
        .bind(&u.external_id)
        .bind(&u.first_name)
        .bind(&u.last_name)
        .bind(&u.username)
        .bind(&u.image_url)
        .bind(u.has_image)
        .bind(&u.primary_email_address_id)
        .bind(&u.primary_email_address)
        .bind(&u.primary_phone_number_id)
        .bind(&u.primary_phone_number)
        .bind(&u.primary_web3_wallet_id)
        .bind(&u.raw)
        .bind(u.banned)
        .bind(u.locked)
        .bind(u.password_enabled)
        .bind(u.two_factor_enabled)
        .bind(u.totp_enabled)
        .bind(u.backup_code_enabled)
        .bind(u.create_organization_enabled)
        .bind(u.delete_self_enabled)
        .bind(u.last_sign_in_at)
        .bind(u.last_active_at)
        .bind(u.legal_accepted_at)
        .bind(u.created_at)
        .bind(u.updated_at)
        .execute(&mut *conn)
        .await?;
    Ok(Outcome::from_rows(result.rows_affected()))
}

/// Tombstones the user (inserting the tombstone if the user was never seen) and its
/// memberships that are not newer than the delete.
pub(super) async fn delete(
    conn: &mut PgConnection,
    t: &Tombstone<User>,
) -> Result<Outcome, sqlx::Error> {
    tombstone_parent(
        conn,
        t,
        r#"
        WITH tombstone AS (
            INSERT INTO clerk.users AS t (id, deleted_at, version, raw, synced_at)
            VALUES ($1, $2, $2, $3, now())
            ON CONFLICT (id) DO UPDATE SET
                deleted_at = excluded.deleted_at, version = excluded.version, synced_at = now()
            WHERE t.version <= excluded.version
            RETURNING 1
        ), cascade AS (
            UPDATE clerk.organization_memberships m
            SET deleted_at = $2, synced_at = now()
            WHERE m.user_id = $1 AND m.version <= $2 AND (m.deleted_at IS NULL OR m.deleted_at > $2)
            RETURNING 1
        )
        -- A data-modifying CTE runs to completion whether or not it is read.
        SELECT count(*) FROM tombstone
        "#,
    )
    .await
}
