//! The worker's background passes (retention, the activity rollup): one now, then one every
//! interval after the last ended, until the worker stops. A pass in progress is not waited
//! for at stop: the worker aborts it.

use std::{future::Future, time::Duration};

use clerk_sync_core::shutdown::stopped;
use tokio::sync::watch;

pub async fn every<F, Fut>(interval: Duration, stop: watch::Receiver<bool>, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        pass().await;
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = stopped(stop.clone()) => return,
        }
    }
}
