//! Clerk's users: `user.created`, `user.updated`, `user.deleted` (`{deleted, id, object}`
//! only). A user's personal data is erased from its tombstone by default.

use super::{Kind, Listing, Sample, SqlCache};

pub static KIND: Kind = Kind {
    name: "users",
    object: "user",
    table: "clerk.users",
    id_prefix: "user_",
    columns: &[
        ("external_id", "d->>'external_id'"),
        ("first_name", "d->>'first_name'"),
        ("last_name", "d->>'last_name'"),
        ("username", "d->>'username'"),
        ("image_url", "d->>'image_url'"),
        ("has_image", "(d->>'has_image')::boolean"),
        ("primary_email_address_id", "d->>'primary_email_address_id'"),
        (
            "primary_email_address",
            "(SELECT e->>'email_address' FROM jsonb_array_elements(CASE jsonb_typeof(d->'email_addresses') \
             WHEN 'array' THEN d->'email_addresses' ELSE '[]' END) e \
             WHERE e->>'id' = d->>'primary_email_address_id' LIMIT 1)",
        ),
        ("primary_phone_number_id", "d->>'primary_phone_number_id'"),
        (
            "primary_phone_number",
            "(SELECT p->>'phone_number' FROM jsonb_array_elements(CASE jsonb_typeof(d->'phone_numbers') \
             WHEN 'array' THEN d->'phone_numbers' ELSE '[]' END) p \
             WHERE p->>'id' = d->>'primary_phone_number_id' LIMIT 1)",
        ),
        ("primary_web3_wallet_id", "d->>'primary_web3_wallet_id'"),
        ("email_addresses", "d->'email_addresses'"),
        ("phone_numbers", "d->'phone_numbers'"),
        ("external_accounts", "d->'external_accounts'"),
        ("public_metadata", "d->'public_metadata'"),
        ("private_metadata", "d->'private_metadata'"),
        ("unsafe_metadata", "d->'unsafe_metadata'"),
        ("banned", "(d->>'banned')::boolean"),
        ("locked", "(d->>'locked')::boolean"),
        ("password_enabled", "(d->>'password_enabled')::boolean"),
        ("two_factor_enabled", "(d->>'two_factor_enabled')::boolean"),
        ("totp_enabled", "(d->>'totp_enabled')::boolean"),
        (
            "backup_code_enabled",
            "(d->>'backup_code_enabled')::boolean",
        ),
        (
            "create_organization_enabled",
            "(d->>'create_organization_enabled')::boolean",
        ),
        (
            "delete_self_enabled",
            "(d->>'delete_self_enabled')::boolean",
        ),
        ("last_sign_in_at", super::ms!("last_sign_in_at")),
        ("last_active_at", super::ms!("last_active_at")),
        ("legal_accepted_at", super::ms!("legal_accepted_at")),
        ("created_at", super::ms!("created_at")),
    ],
    required: &[],
    parents: &[],
    deletes: &["deleted"],
    personal_data: true,
    optional: false,
    listing: Some(Listing {
        path: "/v1/users",
        lookup: true,
        count: Some("/v1/users/count"),
    }),
    samples: &[
        super::sample!("user.created"),
        super::sample!("user.updated"),
        super::sample!("user.deleted"),
    ],
    sql: SqlCache::new(),
};
