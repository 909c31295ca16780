//! Clerk's organizations: `organization.created`, `.updated`, `.deleted` (`{deleted, id,
//! object}` only). Deleting one tombstones its memberships.

use super::{Kind, Listing, Sample, SqlCache};

pub static KIND: Kind = Kind {
    name: "organizations",
    object: "organization",
    table: "clerk.organizations",
    id_prefix: "org_",
    columns: &[
        ("name", "d->>'name'"),
        ("slug", "d->>'slug'"),
        ("image_url", "d->>'image_url'"),
        ("has_image", "(d->>'has_image')::boolean"),
        ("created_by", "d->>'created_by'"),
        ("members_count", "(d->>'members_count')::int4"),
        (
            "max_allowed_memberships",
            "(d->>'max_allowed_memberships')::int4",
        ),
        (
            "admin_delete_enabled",
            "(d->>'admin_delete_enabled')::boolean",
        ),
        ("public_metadata", "d->'public_metadata'"),
        ("private_metadata", "d->'private_metadata'"),
        ("created_at", super::ms!("created_at")),
    ],
    required: &[],
    parents: &[],
    deletes: &["deleted"],
    personal_data: false,
    optional: false,
    listing: Some(Listing {
        path: "/v1/organizations",
        lookup: true,
        count: None,
    }),
    samples: &[
        super::sample!("organization.created"),
        super::sample!("organization.updated"),
        super::sample!("organization.deleted"),
    ],
    sql: SqlCache::new(),
};
