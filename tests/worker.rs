//! The worker in-process, with test-sized timings, and a helper to wait for a condition.

use std::time::Duration;

use clerk_sync_core::{backoff::Backoff, mirror};
use clerk_sync_worker::{Settings, Worker, pipeline::FaultHook};
use sqlx::PgPool;
use tokio::{sync::oneshot, task::JoinHandle};

/// Fast timings: retries are tenths of seconds, a dead worker is noticed in 6 s.
pub fn fast_settings() -> Settings {
    Settings {
        concurrency: 4,
        max_attempts: 5,
        backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(5)),
        poll_interval: Duration::from_millis(50),
        heartbeat_interval: Duration::from_secs(2),
        job_timeout: Duration::from_secs(10),
        retention: Duration::from_secs(7 * 24 * 3600),
        retention_interval: Duration::from_secs(3600),
        rollup_grace: Duration::from_secs(120),
        rollup_interval: Duration::from_secs(3600),
        drain_timeout: Duration::from_secs(10),
        appliers: 2,
        apply_batch: 8,
        mirror: mirror::Options::default(),
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
        Self::run(worker)
    }

    /// A worker that runs `fault` before each event is applied.
    pub async fn start_with_fault(pool: PgPool, settings: Settings, fault: FaultHook) -> Self {
        let worker = Worker::with_fault(pool, settings, "127.0.0.1:0".parse().unwrap(), fault)
            .await
            .unwrap();
        Self::run(worker)
    }

    fn run(worker: Worker) -> Self {
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
