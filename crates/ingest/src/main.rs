use clap::Parser;
use clerk_sync_ingest::{App, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    clerk_sync_core::telemetry::init(config.log.log_format);
    let app = App::build(&config).await?;
    tracing::info!(
        listen_addr = %app.local_addr(),
        secrets = config.secrets()?.len(),
        "clerk-sync-ingest listening; webhook endpoint is POST /webhooks/clerk"
    );
    app.run_until(clerk_sync_core::shutdown::signal()).await
}
