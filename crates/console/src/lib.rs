//! The operator console served by `clerk-sync console`: server-rendered pages over the same
//! queries and actions as the CLI (`clerk_sync_core::operator`), with its CSS embedded in
//! the binary and no script at all, so every page reads with JavaScript off.
//!
//! Security: a token is required to listen beyond loopback (see [`auth`]); every action is a
//! POST carrying a CSRF token; `--read-only` removes the actions from the pages and refuses
//! them with 403; every page is sent with a Content-Security-Policy that allows no script
//! and no framing, and maud escapes everything interpolated into HTML.

mod auth;
mod chart;
mod error;
mod layout;
mod pages;

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use axum::{
    Router, middleware,
    routing::{get, post},
};
use secrecy::{ExposeSecret as _, SecretString};
use sqlx::PgPool;
use tokio::net::TcpListener;

pub use error::ConsoleError;

/// The console's settings (`clerk-sync console`).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to listen on. Beyond loopback, CONSOLE_TOKEN is required.
    #[arg(long, env = "CONSOLE_ADDR", default_value = "127.0.0.1:8081")]
    pub console_addr: SocketAddr,

    /// The token operators sign in with (a login form sets a session cookie; scripts may
    /// send `Authorization: Bearer TOKEN`). At least 16 characters.
    #[arg(
        long,
        env = "CONSOLE_TOKEN",
        hide_env_values = true,
        value_parser = token
    )]
    pub console_token: Option<SecretString>,

    /// Show no action and refuse every action (403): for viewers.
    #[arg(long)]
    pub read_only: bool,
}

/// The shortest token accepted: long enough that guessing it over HTTP is hopeless.
pub const MIN_TOKEN_CHARS: usize = 16;

fn token(value: &str) -> Result<SecretString, String> {
    let n = value.chars().count();
    if n < MIN_TOKEN_CHARS {
        return Err(format!(
            "is {n} characters long; use at least {MIN_TOKEN_CHARS} (e.g. `openssl rand -hex 24`)"
        ));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters".to_owned());
    }
    Ok(SecretString::from(value))
}

impl Args {
    /// The rule between settings: beyond loopback, a token.
    pub fn validate(&self) -> Result<(), String> {
        if !self.console_addr.ip().is_loopback() && self.console_token.is_none() {
            return Err(format!(
                "CONSOLE_TOKEN (--console-token): required because CONSOLE_ADDR ({}) is not a loopback address",
                self.console_addr
            ));
        }
        Ok(())
    }

    pub fn settings(&self) -> Settings {
        Settings {
            token: self.console_token.clone(),
            read_only: self.read_only,
        }
    }
}

/// What the handlers need besides the pool.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub token: Option<SecretString>,
    pub read_only: bool,
}

pub(crate) struct AppState {
    pool: PgPool,
    read_only: bool,
    auth: auth::Auth,
}

/// The console, bound to its listener (port 0 in tests) but not yet serving.
pub struct Console {
    listener: TcpListener,
    router: Router,
}

impl Console {
    /// Binds `addr`. Refuses a non-loopback address without a token (the same rule as
    /// [`Args::validate`], for callers that build [`Settings`] themselves).
    pub async fn build(addr: SocketAddr, pool: PgPool, settings: Settings) -> anyhow::Result<Self> {
        if !addr.ip().is_loopback() && settings.token.is_none() {
            anyhow::bail!(
                "CONSOLE_TOKEN: required because CONSOLE_ADDR ({addr}) is not a loopback address"
            );
        }
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("CONSOLE_ADDR: cannot listen on {addr}"))?;
        let token = settings
            .token
            .as_ref()
            .map(|t| t.expose_secret().to_owned());
        let state = Arc::new(AppState {
            pool,
            read_only: settings.read_only,
            auth: auth::Auth::new(token)?,
        });
        let actions = Router::new()
            .route("/jobs/{id}/replay", post(pages::actions::replay_one))
            .route("/jobs/{id}/discard", post(pages::actions::discard_one))
            .route("/actions/{action}", post(pages::actions::apply))
            .route_layer(middleware::from_fn_with_state(
                state.clone(),
                auth::actions_allowed,
            ));
        let router = Router::new()
            .route("/", get(pages::overview::page))
            .route("/jobs", get(pages::jobs::page))
            .route("/jobs/{id}", get(pages::job::page))
            .route("/objects/{id}", get(pages::object::page))
            .route("/actions/{action}", get(pages::actions::confirm))
            .merge(actions)
            .route("/login", get(auth::login_page).post(auth::login))
            .route("/logout", post(auth::logout))
            .route("/static/console.css", get(layout::stylesheet))
            .fallback(pages::not_found)
            .layer(middleware::from_fn_with_state(state.clone(), auth::require))
            .layer(middleware::from_fn(auth::security_headers))
            .with_state(state);
        Ok(Self { listener, router })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener")
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests and returns.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP")?;
        tracing::info!("clerk-sync console stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(addr: &str, token: Option<&str>) -> Args {
        Args {
            console_addr: addr.parse().unwrap(),
            console_token: token.map(SecretString::from),
            read_only: false,
        }
    }

    #[test]
    fn a_token_is_required_beyond_loopback() {
        assert!(args("127.0.0.1:8081", None).validate().is_ok());
        assert!(args("[::1]:8081", None).validate().is_ok());
        let err = args("0.0.0.0:8081", None).validate().unwrap_err();
        assert!(
            err.starts_with("CONSOLE_TOKEN (--console-token): required"),
            "{err}"
        );
        assert!(
            args("0.0.0.0:8081", Some("0123456789abcdef"))
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn short_tokens_are_refused_without_being_printed() {
        let err = token("hunter2").unwrap_err();
        assert!(err.contains("at least 16"), "{err}");
        assert!(!err.contains("hunter2"));
        assert!(token("0123456789abcdef").is_ok());
        assert!(token("0123456789 abcdef").is_err());
    }
}
