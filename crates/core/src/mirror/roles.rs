//! Clerk's organization roles: `role.created`, `.updated`, `.deleted` (`{deleted, id,
//! object}` only). `permissions` keeps the keys of the role's permissions (Clerk sends the
//! permission objects; `raw` has them); `clerk.has_permission` reads it.

use super::{Kind, Listing, Sample, SqlCache};

pub static KIND: Kind = Kind {
    name: "roles",
    object: "role",
    table: "clerk.roles",
    id_prefix: "role_",
    columns: &[
        ("key", "d->>'key'"),
        ("name", "d->>'name'"),
        ("description", "d->>'description'"),
        (
            "permissions",
            "CASE jsonb_typeof(d->'permissions') WHEN 'array' THEN ARRAY(\
             SELECT CASE jsonb_typeof(p) WHEN 'string' THEN p #>> '{}' ELSE p->>'key' END \
             FROM jsonb_array_elements(d->'permissions') p) END",
        ),
        (
            "is_creator_eligible",
            "(d->>'is_creator_eligible')::boolean",
        ),
        ("created_at", super::ms!("created_at")),
    ],
    required: &[],
    parents: &[],
    deletes: &["deleted"],
    personal_data: false,
    optional: false,
    listing: Some(Listing {
        path: "/v1/organization_roles",
        lookup: false,
        count: None,
    }),
    samples: &[
        super::sample!("role.created"),
        super::sample!("role.updated"),
        super::sample!("role.deleted"),
    ],
    sql: SqlCache::new(),
};
