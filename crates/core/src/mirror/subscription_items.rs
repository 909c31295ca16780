//! Clerk Billing subscription items (one plan of a subscription): `subscriptionItem.*`
//! (`created`, `updated`, `active`, `canceled`, `upcoming`, `ended`, `abandoned`,
//! `incomplete`, `pastDue`, `freeTrialEnding`). Every one of them upserts; the item's end
//! is its status, kept as text in snake_case (`pastDue` and `past_due` are both
//! `past_due`). Their ids (`csub_item_…`) start like a subscription's (`csub_…`): the
//! longest registered prefix decides.

use super::{Kind, Sample, SqlCache};

pub static KIND: Kind = Kind {
    name: "subscription_items",
    object: "subscriptionItem",
    table: "clerk.subscription_items",
    id_prefix: "csub_item_",
    columns: &[
        ("subscription_id", "d->>'subscription_id'"),
        ("status", super::snake!("status")),
        ("plan_id", "coalesce(d->>'plan_id', d->'plan'->>'id')"),
        ("plan_slug", "d->'plan'->>'slug'"),
        ("plan_period", "d->>'plan_period'"),
        super::PAYER[0],
        super::PAYER[1],
        super::PAYER[2],
        ("is_free_trial", "(d->>'is_free_trial')::boolean"),
        ("amount", "(d->'amount'->>'amount')::int8"),
        ("currency", "d->'amount'->>'currency'"),
        ("period_start", super::ms!("period_start")),
        ("period_end", super::ms!("period_end")),
        ("next_payment_date", super::ms!("next_payment_date")),
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
        super::sample!("subscriptionItem.created"),
        super::sample!("subscriptionItem.updated"),
        super::sample!("subscriptionItem.active"),
        super::sample!("subscriptionItem.canceled"),
        super::sample!("subscriptionItem.upcoming"),
        super::sample!("subscriptionItem.ended"),
        super::sample!("subscriptionItem.abandoned"),
        super::sample!("subscriptionItem.incomplete"),
        super::sample!("subscriptionItem.pastDue"),
        super::sample!("subscriptionItem.freeTrialEnding"),
    ],
    sql: SqlCache::new(),
};
