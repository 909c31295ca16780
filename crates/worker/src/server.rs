//! The worker's own HTTP listener (`METRICS_ADDR`): `/metrics`, `/healthz` and `/readyz`.

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use clerk_sync_core::readiness::Readiness;
use sqlx::PgPool;
use tokio::{net::TcpListener, sync::watch};

use clerk_sync_core::shutdown::stopped;

use crate::metrics;

pub async fn serve(listener: TcpListener, pool: PgPool, stop: watch::Receiver<bool>) {
    async fn render(State((pool, _)): State<(PgPool, Readiness)>) -> impl IntoResponse {
        (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            metrics::render(&pool).await,
        )
    }
    /// What the background probe found: answers at once whatever the database does.
    async fn readyz(State((_, readiness)): State<(PgPool, Readiness)>) -> impl IntoResponse {
        let (status, body) = readiness.answer();
        (
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            body,
        )
    }
    let readiness = Readiness::start(&pool).await;
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state((pool, readiness));
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stopped(stop))
        .await
    {
        tracing::warn!(error = %e, "metrics server stopped");
    }
}
