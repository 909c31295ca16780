use std::{
    sync::Arc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Request, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use clerk_sync_core::event::Summary;
use http_body_util::BodyExt as _;
use sqlx::PgPool;

use crate::{
    error::IngestError,
    metrics,
    settings::Settings,
    store::{self, Stored},
    verify::{self, SvixHeaders},
};

/// What the handlers share.
pub(crate) struct AppState {
    pool: PgPool,
    settings: Settings,
}

/// The public listener's routes.
pub(crate) fn router(pool: PgPool, settings: Settings) -> Router {
    Router::new()
        .route("/webhooks/clerk", post(receive))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(AppState { pool, settings }))
}

/// `POST /webhooks/clerk`.
pub async fn receive(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let started = Instant::now();
    let svix_id = request
        .headers()
        .get("svix-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(255).collect::<String>());
    let result = handle(&state, request).await;
    let duration_ms = started.elapsed().as_millis() as u64;
    let response = match result {
        Ok(Accepted { stored, event_type }) => {
            let outcome = stored.as_str();
            metrics::STORED.inc(&[outcome, &event_type]);
            tracing::info!(
                svix.id = svix_id.as_deref(),
                event.type = %event_type,
                outcome,
                duration_ms,
                "delivery accepted"
            );
            let status = match stored {
                Stored::New { .. } => StatusCode::ACCEPTED,
                Stored::Duplicate => StatusCode::OK,
            };
            (
                status,
                Json(serde_json::json!({ "status": outcome, "svix_id": svix_id })),
            )
                .into_response()
        }
        Err(e) => {
            metrics::REFUSED.inc(&[e.reason()]);
            let status = e.status().as_u16();
            if e.status().is_server_error() {
                tracing::warn!(
                    svix.id = svix_id.as_deref(),
                    reason = e.reason(),
                    status,
                    duration_ms,
                    "delivery refused: {e}"
                );
            } else {
                tracing::info!(
                    svix.id = svix_id.as_deref(),
                    reason = e.reason(),
                    status,
                    duration_ms,
                    "delivery refused: {e}"
                );
            }
            e.into_response()
        }
    };
    metrics::REQUESTS.inc(&[response.status().as_str()]);
    metrics::LATENCY.observe(&[], started.elapsed());
    response
}

struct Accepted {
    stored: Stored,
    event_type: String,
}

/// Svix sends a handful of short headers; anything much larger is not a webhook.
const MAX_HEADER_BYTES: usize = 16 * 1024;

async fn handle(state: &AppState, request: Request) -> Result<Accepted, IngestError> {
    let (parts, body) = request.into_parts();
    let header_bytes: usize = parts
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Err(IngestError::HeadersTooLarge {
            limit: MAX_HEADER_BYTES,
        });
    }
    let svix = SvixHeaders::parse(&parts.headers)?;
    let limit = state.settings.request_timeout;
    let body = tokio::time::timeout(
        limit,
        read_body(body, &parts.headers, state.settings.max_body_bytes),
    )
    .await
    .map_err(|_| IngestError::Timeout)??;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut event = verify::verify(&state.settings.secrets, svix, &parts.headers, body, now)?;
    // An email's or SMS's text (one-time codes, sign-in links) is kept nowhere, stored
    // event included.
    if let Some(kept) = clerk_sync_core::event::without_message(&event.body) {
        event.body = kept.into();
    }
    let summary = Summary::of(&event.body);
    let stored = store::store(&state.pool, &event, &summary)
        .await
        .map_err(|e| {
            // Logged here, once; the sender only learns that it should retry.
            tracing::error!(
                svix.id = %event.headers.id,
                error = %clerk_sync_core::db::describe(&e),
                "storing the event failed"
            );
            IngestError::Unavailable
        })?;
    Ok(Accepted {
        stored,
        event_type: summary.event_type.unwrap_or_else(|| "(unparsed)".into()),
    })
}

/// Reads at most `limit` bytes: a declared length over the limit is refused before reading,
/// a chunked body as soon as it passes the limit.
async fn read_body(
    body: Body,
    headers: &axum::http::HeaderMap,
    limit: usize,
) -> Result<Bytes, IngestError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(IngestError::BodyTooLarge { limit });
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(IngestError::BodyTooLarge { limit })
        }
        Err(_) => Err(IngestError::BodyUnreadable),
    }
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: the database answers.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let ping = sqlx::query("SELECT 1").execute(&state.pool);
    match tokio::time::timeout(clerk_sync_core::db::ACQUIRE_TIMEOUT, ping).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n").into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response(),
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, clerk_sync_core::metrics::CONTENT_TYPE)],
        metrics::render(),
    )
        .into_response()
}
