//! Clerk's organization invitations: `organizationInvitation.created`, `.accepted`,
//! `.revoked`. None deletes: an invitation's end is its `status` (`pending`, `accepted`,
//! `revoked`, `expired`). A child of its organization: deleting the organization tombstones
//! its invitations. `user_id` is set once the invitation is accepted.
//!
//! The invitation's `url` carries a sign-up ticket: it stays in `raw` only, not in a column.

use super::{Kind, Listing, Parent, Sample, SqlCache};

pub static KIND: Kind = Kind {
    name: "invitations",
    object: "organizationInvitation",
    table: "clerk.organization_invitations",
    id_prefix: "orginv_",
    columns: &[
        ("organization_id", "d->>'organization_id'"),
        ("email_address", "d->>'email_address'"),
        ("role", "d->>'role'"),
        ("role_name", "d->>'role_name'"),
        ("status", "d->>'status'"),
        ("user_id", "nullif(d->>'user_id', '')"),
        ("inviter_id", "nullif(d->>'inviter_id', '')"),
        ("expires_at", super::ms!("expires_at")),
        ("public_metadata", "d->'public_metadata'"),
        ("private_metadata", "d->'private_metadata'"),
        ("created_at", super::ms!("created_at")),
    ],
    required: &["/organization_id"],
    parents: &[Parent {
        kind: "organizations",
        column: "organization_id",
        pointer: "/organization_id",
    }],
    deletes: &[],
    personal_data: false,
    optional: false,
    listing: Some(Listing {
        path: "/v1/organization_invitations",
        lookup: false,
        count: None,
    }),
    samples: &[
        super::sample!("organizationInvitation.created"),
        super::sample!("organizationInvitation.accepted"),
        super::sample!("organizationInvitation.revoked"),
    ],
    sql: SqlCache::new(),
};
