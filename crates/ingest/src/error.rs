use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

/// Every way a delivery is refused, with its status. Messages never carry internals.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("malformed {header} header: {reason}")]
    MalformedHeader {
        header: &'static str,
        reason: &'static str,
    },
    #[error("svix-timestamp is more than 5 minutes in the past")]
    TimestampTooOld,
    #[error("svix-timestamp is more than 5 minutes in the future")]
    TimestampInFuture,
    #[error("no configured secret matches svix-signature")]
    BadSignature,
    #[error("request headers are larger than {limit} bytes")]
    HeadersTooLarge { limit: usize },
    #[error("body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("body is not valid UTF-8, so it cannot carry a Svix signature")]
    BodyNotUtf8,
    #[error("body could not be read")]
    BodyUnreadable,
    #[error("request not received in time")]
    Timeout,
    #[error("database unavailable; nothing was stored, retry later")]
    Unavailable,
}

impl IngestError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingHeader(_)
            | Self::MalformedHeader { .. }
            | Self::BodyNotUtf8
            | Self::BodyUnreadable => StatusCode::BAD_REQUEST,
            Self::TimestampTooOld | Self::TimestampInFuture | Self::BadSignature => {
                StatusCode::UNAUTHORIZED
            }
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A short, stable label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) => "missing_header",
            Self::MalformedHeader { .. } => "malformed_header",
            Self::TimestampTooOld => "timestamp_too_old",
            Self::TimestampInFuture => "timestamp_in_future",
            Self::BadSignature => "bad_signature",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::HeadersTooLarge { .. } => "headers_too_large",
            Self::BodyNotUtf8 => "body_not_utf8",
            Self::BodyUnreadable => "body_unreadable",
            Self::Timeout => "timeout",
            Self::Unavailable => "database_unavailable",
        }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status(),
            Json(serde_json::json!({ "error": self.to_string(), "reason": self.reason() })),
        )
            .into_response();
        if matches!(self, Self::Unavailable) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        // A client too slow to send its request is not kept: the rest of its body would
        // only hold the connection.
        if matches!(self, Self::Timeout) {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
