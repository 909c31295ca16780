//! Clerk Billing subscriptions: `subscription.created`, `.updated`, `.active`, `.pastDue`.
//! Clerk sends no delete: a subscription ends by its status.
//!
//! `status` is kept as text, whatever Clerk sends, in snake_case: Clerk has spelled some
//! statuses two ways (`pastDue` in event types, `past_due` in payloads), and both land as
//! `past_due`. `raw` keeps Clerk's spelling. The payer is a user or an organization.

use super::{Kind, Sample, SqlCache};

pub static KIND: Kind = Kind {
    name: "subscriptions",
    object: "subscription",
    table: "clerk.subscriptions",
    id_prefix: "csub_",
    columns: &[
        ("status", super::snake!("status")),
        super::PAYER[0],
        super::PAYER[1],
        super::PAYER[2],
        ("latest_payment_id", "d->>'latest_payment_id'"),
        ("payment_source_id", "d->>'payment_source_id'"),
        ("active_at", super::ms!("active_at")),
        ("past_due_at", super::ms!("past_due_at")),
        ("canceled_at", super::ms!("canceled_at")),
        ("ended_at", super::ms!("ended_at")),
        ("created_at", super::ms!("created_at")),
    ],
    required: &[],
    parents: &[],
    deletes: &[],
    personal_data: false,
    optional: false,
    listing: None,
    samples: &[
        super::sample!("subscription.created"),
        super::sample!("subscription.updated"),
        super::sample!("subscription.active"),
        super::sample!("subscription.pastDue"),
    ],
    sql: SqlCache::new(),
};
