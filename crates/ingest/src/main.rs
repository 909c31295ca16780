use std::process::ExitCode;

use clerk_sync_core::{db, exit};
use clerk_sync_ingest::{App, Config};

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
    // not a stream of 503s; a database that goes away later is answered with 503s.
    db::check(config.db.url()).await?;
    let app = App::build(&config).await?;
    tracing::info!(
        listen_addr = %app.local_addr(),
        metrics_addr = %app.metrics_addr(),
        secrets = config.secrets()?.len(),
        "clerk-sync-ingest listening; webhook endpoint is POST /webhooks/clerk"
    );
    app.run_until(clerk_sync_core::shutdown::signal()).await
}
