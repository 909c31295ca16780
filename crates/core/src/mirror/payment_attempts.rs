//! Clerk Billing payment attempts: `paymentAttempt.created`, `.updated` (status `pending`,
//! `paid`, `failed`, kept as text in snake_case). Amounts are in the currency's smallest
//! unit (cents), as Clerk sends them.

use super::{Kind, Sample, SqlCache};

pub static KIND: Kind = Kind {
    name: "payment_attempts",
    object: "paymentAttempt",
    table: "clerk.payment_attempts",
    id_prefix: "pa_",
    columns: &[
        ("status", super::snake!("status")),
        ("payment_id", "d->>'payment_id'"),
        ("invoice_id", "d->>'invoice_id'"),
        ("statement_id", "d->>'statement_id'"),
        ("charge_type", "d->>'charge_type'"),
        super::PAYER[0],
        super::PAYER[1],
        super::PAYER[2],
        ("amount", "(d->'totals'->'grand_total'->>'amount')::int8"),
        ("currency", "d->'totals'->'grand_total'->>'currency'"),
        ("failed_reason", "d->'failed_reason'"),
        ("billing_date", super::ms!("billing_date")),
        ("paid_at", super::ms!("paid_at")),
        ("failed_at", super::ms!("failed_at")),
        ("created_at", super::ms!("created_at")),
    ],
    required: &[],
    parents: &[],
    deletes: &[],
    personal_data: false,
    optional: false,
    listing: None,
    samples: &[
        super::sample!("paymentAttempt.created"),
        super::sample!("paymentAttempt.updated"),
    ],
    sql: SqlCache::new(),
};
