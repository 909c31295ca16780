//! Clerk's permissions: `permission.created`, `.updated`, `.deleted` (`{deleted, id,
//! object}` only). `type` is `system` (Clerk's `org:sys_…`) or the application's own.

use super::{Kind, Listing, Sample, SqlCache};

pub static KIND: Kind = Kind {
    name: "permissions",
    object: "permission",
    table: "clerk.permissions",
    id_prefix: "perm_",
    columns: &[
        ("key", "d->>'key'"),
        ("name", "d->>'name'"),
        ("description", "d->>'description'"),
        ("type", "d->>'type'"),
        ("created_at", super::ms!("created_at")),
    ],
    required: &[],
    parents: &[],
    deletes: &["deleted"],
    personal_data: false,
    optional: false,
    listing: Some(Listing {
        path: "/v1/organization_permissions",
        lookup: false,
        count: None,
    }),
    samples: &[
        super::sample!("permission.created"),
        super::sample!("permission.updated"),
        super::sample!("permission.deleted"),
    ],
    sql: SqlCache::new(),
};
