//! The ingest service in-process on port 0, and a small HTTP client.

use std::{net::SocketAddr, time::Duration};

use clerk_sync_core::webhook::Secrets;
use clerk_sync_ingest::{App, Settings};
use sqlx::PgPool;
use tokio::{sync::oneshot, task::JoinHandle};

use crate::signing::{Delivery, SECRET, Signer};

pub use clerk_sync_cli::http::{Answer, Client as HttpClient, client};

pub async fn request(
    client: &HttpClient,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Result<Answer, String> {
    clerk_sync_cli::http::request(client, method, url, headers, body)
        .await
        .map_err(|e| e.to_string())
}

/// `clerk-sync-ingest` running in this test's runtime.
pub struct TestIngest {
    pub addr: SocketAddr,
    /// Ingest's `METRICS_ADDR`: `/metrics`, `/healthz`, `/readyz`.
    pub metrics_addr: SocketAddr,
    pub signer: Signer,
    client: HttpClient,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

pub struct IngestOptions {
    pub secrets: String,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            secrets: SECRET.into(),
            max_body_bytes: 1_048_576,
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl TestIngest {
    pub async fn start(pool: PgPool) -> Self {
        Self::start_with(pool, IngestOptions::default()).await
    }

    pub async fn start_with(pool: PgPool, options: IngestOptions) -> Self {
        let settings = Settings {
            secrets: Secrets::parse(&options.secrets).unwrap(),
            max_body_bytes: options.max_body_bytes,
            request_timeout: options.request_timeout,
        };
        let any = "127.0.0.1:0".parse().unwrap();
        let app = App::with_pool(any, any, pool, settings).await.unwrap();
        let addr = app.local_addr();
        let metrics_addr = app.metrics_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            metrics_addr,
            signer: Signer::default(),
            client: client(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> Answer {
        request(&self.client, "GET", &self.url(path), &[], Vec::new())
            .await
            .unwrap()
    }

    /// `GET` on ingest's `METRICS_ADDR`.
    pub async fn get_metrics(&self, path: &str) -> Answer {
        let url = format!("http://{}{path}", self.metrics_addr);
        request(&self.client, "GET", &url, &[], Vec::new())
            .await
            .unwrap()
    }

    /// Posts a delivery with its own headers.
    pub async fn deliver(&self, d: &Delivery) -> Answer {
        self.post_raw(&d.headers(), d.body.clone()).await
    }

    /// Signs `body` with a fresh svix-id and posts it.
    pub async fn post(&self, body: &[u8]) -> Answer {
        self.deliver(&self.signer.sign(body)).await
    }

    pub async fn post_raw(&self, headers: &[(String, String)], body: Vec<u8>) -> Answer {
        request(
            &self.client,
            "POST",
            &self.url("/webhooks/clerk"),
            headers,
            body,
        )
        .await
        .unwrap()
    }

    /// Graceful stop: in-flight requests finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestIngest {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
