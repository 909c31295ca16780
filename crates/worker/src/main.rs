use clap::Parser;
use clerk_sync_worker::{Config, Worker};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    clerk_sync_core::telemetry::init(config.log.log_format);
    let worker = Worker::build(&config).await?;
    tracing::info!(
        metrics_addr = %worker.metrics_addr(),
        concurrency = config.worker_concurrency,
        max_attempts = config.max_attempts,
        "clerk-sync-worker started"
    );
    worker.run_until(clerk_sync_core::shutdown::signal()).await
}
