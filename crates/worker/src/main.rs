use std::process::ExitCode;

use clerk_sync_core::{db, exit};
use clerk_sync_worker::{Config, Worker};

/// Bad settings exit 2, failures 1, each with one line on stderr (see `core::exit`).
#[tokio::main]
async fn main() -> ExitCode {
    let config: Config = exit::parse();
    clerk_sync_core::telemetry::init(config.log.log_format);
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit::report(&e),
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    // Once, at start: a wrong DATABASE_URL or an un-migrated database is a clear exit now,
    // not a restart loop of raw errors.
    db::check(config.db.url()).await?;
    let worker = Worker::build(&config).await?;
    tracing::info!(
        metrics_addr = %worker.metrics_addr(),
        concurrency = config.worker_concurrency,
        max_attempts = config.max_attempts,
        "clerk-sync-worker started"
    );
    worker.run_until(clerk_sync_core::shutdown::signal()).await
}
