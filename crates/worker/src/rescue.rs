//! Rescues the jobs of workers whose database session ended (`core::jobs::rescue_orphans`),
//! twice a second: a worker killed mid-batch has its jobs back in the queue, and the other
//! workers woken, well within two seconds.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;

use clerk_sync_core::shutdown::stopped;

pub const RESCUE_EVERY: Duration = Duration::from_millis(500);

pub async fn run(pool: PgPool, stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(RESCUE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stopped(stop.clone()) => return,
        }
        // A bounded wait: the pool's own acquire timeout, then the statement's.
        match tokio::time::timeout(
            RESCUE_EVERY * 4,
            clerk_sync_core::jobs::rescue_orphans(&pool),
        )
        .await
        {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::warn!(
                jobs = n,
                "re-enqueued the jobs of a worker whose database session ended"
            ),
            Ok(Err(e)) => tracing::warn!(
                error = %clerk_sync_core::db::describe(&e),
                "rescuing the jobs of dead workers failed; will try again"
            ),
            Err(_) => tracing::debug!("rescue timed out"),
        }
    }
}
