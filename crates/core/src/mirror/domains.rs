//! Clerk's organization domains: `organizationDomain.created`, `.updated`, `.deleted`
//! (`{deleted, id, object}` only). A child of its organization: deleting the organization
//! tombstones its domains.

use super::{Kind, Listing, Parent, Sample, SqlCache};

pub static KIND: Kind = Kind {
    name: "domains",
    object: "organizationDomain",
    table: "clerk.organization_domains",
    id_prefix: "orgdmn_",
    columns: &[
        ("organization_id", "d->>'organization_id'"),
        ("name", "d->>'name'"),
        ("enrollment_mode", "d->>'enrollment_mode'"),
        ("verification_status", "d->'verification'->>'status'"),
        ("verification_strategy", "d->'verification'->>'strategy'"),
        (
            "affiliation_email_address",
            "d->>'affiliation_email_address'",
        ),
        (
            "total_pending_invitations",
            "(d->>'total_pending_invitations')::int4",
        ),
        (
            "total_pending_suggestions",
            "(d->>'total_pending_suggestions')::int4",
        ),
        ("created_at", super::ms!("created_at")),
    ],
    required: &["/organization_id"],
    parents: &[Parent {
        kind: "organizations",
        column: "organization_id",
        pointer: "/organization_id",
    }],
    deletes: &["deleted"],
    personal_data: false,
    optional: false,
    listing: Some(Listing {
        path: "/v1/organization_domains",
        lookup: false,
        count: None,
    }),
    samples: &[
        super::sample!("organizationDomain.created"),
        super::sample!("organizationDomain.updated"),
        super::sample!("organizationDomain.deleted"),
    ],
    sql: SqlCache::new(),
};
