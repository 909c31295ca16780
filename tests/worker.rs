//! The worker in-process, with test-sized timings, and helpers to wait for the queue.

use std::time::Duration;

use clerk_sync_core::queue::QueueStats;
use clerk_sync_worker::{Backoff, Settings, Worker};
use sqlx::PgPool;
use tokio::{sync::oneshot, task::JoinHandle};

/// Fast timings: retries are tenths of seconds, a dead worker is noticed in 6 s.
pub fn fast_settings() -> Settings {
    Settings {
        concurrency: 4,
        max_attempts: 5,
        backoff: Backoff {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(5),
        },
        poll_interval: Duration::from_millis(50),
        heartbeat_interval: Duration::from_secs(2),
        job_timeout: Duration::from_secs(10),
        retention: Duration::from_secs(7 * 24 * 3600),
        retention_interval: Duration::from_secs(3600),
        drain_timeout: Duration::from_secs(10),
        before_apply: None,
        appliers: 2,
        apply_batch: 8,
    }
}

pub struct TestWorker {
    pub metrics_addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestWorker {
    pub async fn start(pool: PgPool) -> Self {
        Self::start_with(pool, fast_settings()).await
    }

    pub async fn start_with(pool: PgPool, settings: Settings) -> Self {
        let worker = Worker::with_pool(pool, settings, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let metrics_addr = worker.metrics_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(worker.run_until(async move {
            let _ = stopped.await;
        }));
        Self {
            metrics_addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Waits until no job is pending or running; panics after `limit`.
pub async fn drained(pool: &PgPool, limit: Duration) -> QueueStats {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let stats = QueueStats::read(pool).await.unwrap();
        if stats.pending == 0 && stats.running == 0 {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "queue not drained within {limit:?}: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls `check` until it returns Some, or panics after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
