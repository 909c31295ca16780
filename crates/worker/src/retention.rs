//! Retention: a pass every `retention_interval` (one worker at a time; see
//! [`clerk_sync_core::jobs::prune`]).

use std::time::Duration;

use clerk_sync_core::jobs::{self, Pruned};
use sqlx::PgPool;
use tokio::sync::watch;

pub async fn run(pool: PgPool, keep: Duration, every: Duration, stop: watch::Receiver<bool>) {
    crate::periodic::every(every, stop, || async {
        match jobs::prune(&pool, keep).await {
            Ok(p) if p != Pruned::default() => tracing::info!(
                jobs = p.jobs,
                events = p.events,
                errors = p.errors,
                workers = p.workers,
                "pruned past retention"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(
                error = %clerk_sync_core::db::describe(&e),
                "pruning failed; will try again"
            ),
        }
    })
    .await
}
