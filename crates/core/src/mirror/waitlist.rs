//! Clerk's waitlist: `waitlistEntry.created`, `.updated` (status `pending`, `invited`,
//! `rejected`, `completed`). Clerk sends no delete.

use super::{Kind, Listing, Sample, SqlCache};

pub static KIND: Kind = Kind {
    name: "waitlist_entries",
    object: "waitlistEntry",
    table: "clerk.waitlist_entries",
    id_prefix: "wle_",
    columns: &[
        ("email_address", "d->>'email_address'"),
        ("status", "d->>'status'"),
        ("is_locked", "(d->>'is_locked')::boolean"),
        ("invitation_id", "d->'invitation'->>'id'"),
        ("created_at", super::ms!("created_at")),
    ],
    required: &[],
    parents: &[],
    deletes: &[],
    personal_data: false,
    optional: false,
    listing: Some(Listing {
        path: "/v1/waitlist_entries",
        lookup: false,
        count: None,
    }),
    samples: &[
        super::sample!("waitlistEntry.created"),
        super::sample!("waitlistEntry.updated"),
    ],
    sql: SqlCache::new(),
};
