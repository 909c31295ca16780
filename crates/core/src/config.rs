//! Settings shared by all binaries. Each is a flag and the same-named environment variable.

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL connection string, e.g. postgres://user@127.0.0.1:5432/clerk_sync
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
}

#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format: `pretty` for a terminal, `json` for log collectors.
    /// Default: pretty when stderr is a terminal, json otherwise.
    #[arg(long, env = "LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}
