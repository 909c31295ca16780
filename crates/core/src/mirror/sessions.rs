//! Clerk's sessions: `session.created`, `.pending`, `.ended`, `.removed`, `.revoked`. High
//! volume (one per sign-in), so **off by default**: a worker mirrors them only with
//! `MIRROR_SESSIONS=true`; otherwise their events are stored, acknowledged and counted as
//! skipped. None deletes: a session's end is its `status`. A child of its user: deleting the
//! user tombstones its sessions.

use super::{Kind, Parent, Sample, SqlCache};

pub static KIND: Kind = Kind {
    name: "sessions",
    object: "session",
    table: "clerk.sessions",
    id_prefix: "sess_",
    columns: &[
        ("user_id", "d->>'user_id'"),
        ("client_id", "d->>'client_id'"),
        ("status", "d->>'status'"),
        ("actor", "d->'actor'"),
        ("last_active_at", super::ms!("last_active_at")),
        ("expire_at", super::ms!("expire_at")),
        ("abandon_at", super::ms!("abandon_at")),
        ("created_at", super::ms!("created_at")),
    ],
    required: &["/user_id"],
    parents: &[Parent {
        kind: "users",
        column: "user_id",
        pointer: "/user_id",
    }],
    deletes: &[],
    personal_data: false,
    optional: true,
    listing: None,
    samples: &[
        super::sample!("session.created"),
        super::sample!("session.pending"),
        super::sample!("session.ended"),
        super::sample!("session.removed"),
        super::sample!("session.revoked"),
    ],
    sql: SqlCache::new(),
};
