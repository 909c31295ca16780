//! The worker's own HTTP listener (`METRICS_ADDR`): `/metrics` and `/healthz`.

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use sqlx::PgPool;
use tokio::{net::TcpListener, sync::watch};

use clerk_sync_core::shutdown::stopped;

use crate::metrics;

pub async fn serve(listener: TcpListener, pool: PgPool, stop: watch::Receiver<bool>) {
    async fn render(State(pool): State<PgPool>) -> impl IntoResponse {
        (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            metrics::render(&pool).await,
        )
    }
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(pool);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stopped(stop))
        .await
    {
        tracing::warn!(error = %e, "metrics server stopped");
    }
}
