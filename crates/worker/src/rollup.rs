//! Activity rollup: a pass every `rollup_interval` that writes the console's per-minute
//! figures for the minutes closed `rollup_grace` ago (one worker at a time; see
//! [`clerk_sync_core::jobs::roll_up`]).

use std::time::Duration;

use clerk_sync_core::jobs;
use sqlx::PgPool;
use tokio::sync::watch;

pub async fn run(pool: PgPool, grace: Duration, every: Duration, stop: watch::Receiver<bool>) {
    crate::periodic::every(every, stop, || async {
        match jobs::roll_up(&pool, grace).await {
            Ok(jobs::Rollup::Rolled { minutes, through }) if minutes > 0 => {
                tracing::debug!(minutes, through = %through, "activity rolled up")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(
                error = %clerk_sync_core::db::describe(&e),
                "activity rollup failed; will try again"
            ),
        }
    })
    .await
}
