use std::process::ExitCode;

use clap::Parser;
use clerk_sync_cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    // Usage errors exit 2 (clap); failures exit 1 with one line naming the cause.
    let cli = Cli::parse();
    clerk_sync_core::telemetry::init(None);
    match cli.run().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
