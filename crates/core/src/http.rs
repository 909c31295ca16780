//! A small HTTP/1 client on hyper (already in the tree through svix): enough for
//! `send-test-event`, backfill and the tests.

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::{
    client::legacy::{Client as Hyper, connect::HttpConnector},
    rt::TokioExecutor,
};

pub type Client = Hyper<HttpConnector, Full<Bytes>>;

pub fn client() -> Client {
    Hyper::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build_http()
}

/// An HTTP answer: status and body text.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

pub async fn request(
    client: &Client,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> anyhow::Result<Answer> {
    let full = request_full(client, method, url, headers, body).await?;
    Ok(Answer {
        status: full.status,
        body: full.body,
    })
}

/// An answer with its headers.
#[derive(Debug, Clone)]
pub struct FullAnswer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl FullAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn request_full(
    client: &Client,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> anyhow::Result<FullAnswer> {
    let mut req = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req.body(Full::new(Bytes::from(body)))?;
    let res = client
        .request(req)
        .await
        .map_err(|e| anyhow::anyhow!("{method} {url}: {e}"))?;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await?.to_bytes();
    Ok(FullAnswer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
