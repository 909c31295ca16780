//! A small HTTP/1 client on hyper and rustls (both already in the tree through svix):
//! `http://` and `https://` (system root certificates), enough for `send-test-event`,
//! backfill and the tests.

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client as Hyper, connect::HttpConnector},
    rt::TokioExecutor,
};

pub type Client = Hyper<HttpsConnector<HttpConnector>, Full<Bytes>>;

pub fn client() -> Client {
    // Two rustls crypto providers are compiled in (through sqlx and svix): name one.
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let builder = HttpsConnectorBuilder::new();
    let connector = match builder.with_provider_and_native_roots(provider) {
        Ok(b) => b,
        // No system certificates (a bare container without ca-certificates): http:// still
        // works, https:// fails with a certificate error that says why.
        Err(_) => HttpsConnectorBuilder::new().with_tls_config(
            rustls::ClientConfig::builder_with_provider(
                rustls::crypto::aws_lc_rs::default_provider().into(),
            )
            .with_safe_default_protocol_versions()
            .expect("default protocol versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        ),
    }
    .https_or_http()
    .enable_http1()
    .build();
    Hyper::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build(connector)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn https_urls_are_spoken_to_in_tls() {
        // A server that records what the client sends first.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let first = tokio::spawn(async move {
            use tokio::io::AsyncReadExt as _;
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1];
            s.read_exact(&mut buf).await.unwrap();
            buf[0]
        });
        let url = format!("https://127.0.0.1:{port}/v1/users");
        let err = request(&client(), "GET", &url, &[], Vec::new()).await;
        assert!(err.is_err(), "no TLS server there");
        assert_eq!(
            first.await.unwrap(),
            0x16,
            "a TLS handshake record, not plain HTTP"
        );
    }
}
