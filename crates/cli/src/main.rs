use std::process::ExitCode;

use clerk_sync_cli::Cli;
use clerk_sync_core::exit;

#[tokio::main]
async fn main() -> ExitCode {
    // Usage errors exit 2, failures 1, each with one line on stderr (see `core::exit`).
    let cli: Cli = exit::parse();
    clerk_sync_core::telemetry::init(None);
    match cli.run().await {
        Ok(code) => code,
        Err(e) => exit::report(&e),
    }
}
