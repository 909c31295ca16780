//! Settings shared by all binaries. Each is a flag and the same-named environment variable,
//! checked when it is read: a bad value is an error at start, never a silent default.
//! Secrets (and `DATABASE_URL`, which carries the password) are `secrecy` strings:
//! `Debug` prints `[REDACTED]`, and no error message repeats them.

use clap::{Args, ValueEnum};
use secrecy::{ExposeSecret as _, SecretString};

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL connection string: postgres://user:password@host:5432/database
    /// (postgresql:// too).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = database_url)]
    pub database_url: SecretString,
}

impl DatabaseArgs {
    /// The URL, password included: for connecting, never for printing.
    pub fn url(&self) -> &str {
        self.database_url.expose_secret()
    }
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

/// Why a `DATABASE_URL` is refused, without repeating it (it may hold a password).
pub fn check_database_url(url: &str) -> Result<(), String> {
    let Some((scheme, _)) = url.split_once("://") else {
        return Err("not a URL (expected postgres://user:password@host:port/database)".to_owned());
    };
    if !matches!(
        scheme.to_ascii_lowercase().as_str(),
        "postgres" | "postgresql"
    ) {
        return Err(format!(
            "{scheme}:// is not PostgreSQL (expected postgres:// or postgresql://)"
        ));
    }
    url.parse::<sqlx::postgres::PgConnectOptions>()
        .map(|_| ())
        .map_err(|e| match e {
            sqlx::Error::Configuration(e) => format!("not a valid PostgreSQL URL ({e})"),
            other => format!("not a valid PostgreSQL URL ({other})"),
        })
}

/// clap's parser for `DATABASE_URL`.
pub fn database_url(value: &str) -> Result<SecretString, String> {
    check_database_url(value)?;
    Ok(SecretString::from(value))
}

/// clap's parser for a secret taken as it is (`CLERK_SECRET_KEY`).
pub fn secret(value: &str) -> Result<SecretString, String> {
    if value.trim().is_empty() {
        return Err("is empty".to_owned());
    }
    Ok(SecretString::from(value))
}

/// clap's parser for `CLERK_WEBHOOK_SECRET`: one or more `whsec_…` values, checked now and
/// parsed again where they are used (the error names the position, never the value).
pub fn webhook_secrets(value: &str) -> Result<SecretString, String> {
    crate::webhook::Secrets::parse(value).map_err(|e| e.to_string())?;
    Ok(SecretString::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_postgresql_urls_and_never_printed() {
        for ok in [
            "postgres://u:pw@127.0.0.1:5432/db",
            "postgresql://u@localhost/db",
            "POSTGRES://u@h/db",
        ] {
            assert!(check_database_url(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            check_database_url("mysql://root:hunter2@db/app").unwrap_err(),
            "mysql:// is not PostgreSQL (expected postgres:// or postgresql://)"
        );
        let err = check_database_url("hunter2").unwrap_err();
        assert!(err.starts_with("not a URL"), "{err}");
        let err = check_database_url("postgres://u:hunter2@h:notaport/db").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        let args = DatabaseArgs {
            database_url: database_url("postgres://u:hunter2@h/db").unwrap(),
        };
        assert!(!format!("{args:?}").contains("hunter2"), "{args:?}");
    }
}
