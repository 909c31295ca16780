//! Clerk's organization memberships: `organizationMembership.created`, `.updated`,
//! `.deleted` (which repeats the whole membership as last updated). A membership is a child
//! of its user and of its organization: deleting either tombstones it.

use super::{Kind, Listing, Parent, Sample, SqlCache};

pub static KIND: Kind = Kind {
    name: "memberships",
    object: "organizationMembership",
    table: "clerk.organization_memberships",
    id_prefix: "orgmem_",
    columns: &[
        ("organization_id", "d->'organization'->>'id'"),
        ("user_id", "d->'public_user_data'->>'user_id'"),
        ("role", "d->>'role'"),
        ("role_name", "d->>'role_name'"),
        (
            "permissions",
            "CASE jsonb_typeof(d->'permissions') WHEN 'array' \
             THEN ARRAY(SELECT jsonb_array_elements_text(d->'permissions')) END",
        ),
        ("public_metadata", "d->'public_metadata'"),
        ("private_metadata", "d->'private_metadata'"),
        ("created_at", super::ms!("created_at")),
    ],
    required: &["/organization/id"],
    parents: &[
        Parent {
            kind: "users",
            column: "user_id",
            pointer: "/public_user_data/user_id",
        },
        Parent {
            kind: "organizations",
            column: "organization_id",
            pointer: "/organization/id",
        },
    ],
    deletes: &["deleted"],
    personal_data: false,
    optional: false,
    listing: Some(Listing {
        path: "/v1/organization_memberships",
        lookup: false,
        count: None,
    }),
    samples: &[
        super::sample!("organizationMembership.created"),
        super::sample!("organizationMembership.updated"),
        super::sample!("organizationMembership.deleted"),
    ],
    sql: SqlCache::new(),
};
