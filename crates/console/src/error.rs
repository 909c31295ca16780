use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use maud::html;

/// Every way the console refuses or fails a request, with its status. Messages never carry
/// internals: a database error is logged here, once, and answered with a short line.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// The selection changed between confirmation and action, or the job is not dead.
    #[error("{0}")]
    Conflict(String),
    #[error(
        "sign in first: this console needs CONSOLE_TOKEN (login form or `Authorization: Bearer`)"
    )]
    Unauthorized,
    #[error("the console runs read-only (--read-only): actions are refused")]
    ReadOnly,
    #[error("missing or wrong CSRF token: reload the page and try again")]
    Csrf,
    #[error("cross-origin request refused")]
    CrossOrigin,
    #[error(
        "Host {0:?} is not a loopback name; without CONSOLE_TOKEN the console answers only on localhost"
    )]
    NotLoopback(String),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("internal error")]
    Internal(anyhow::Error),
}

impl ConsoleError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::ReadOnly | Self::Csrf | Self::CrossOrigin | Self::NotLoopback(_) => {
                StatusCode::FORBIDDEN
            }
            Self::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed,
            ) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Database(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Database(e) => {
                tracing::error!(error = %clerk_sync_core::db::describe(e), "console query failed")
            }
            Self::Internal(e) => {
                tracing::error!(error = %clerk_sync_core::exit::one_line(e), "console failed")
            }
            _ => {}
        }
        let title = status.canonical_reason().unwrap_or("Error");
        let body = html! {
            h1 { (status.as_u16()) " " (title) }
            p.error role="alert" { (self.to_string()) }
            p { a href="/" { "Overview" } }
        };
        (
            status,
            axum::response::Html(crate::layout::bare(title, body).into_string()),
        )
            .into_response()
    }
}
