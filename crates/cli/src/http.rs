//! The HTTP client of the CLI (`send-test-event`, backfill), the benchmark and the tests:
//! `reqwest` with rustls, HTTP/1 only, a connect timeout and a request timeout on every
//! request, so a stalled server ends in an error instead of a hang.
//!
//! TLS: reqwest's `rustls` feature, i.e. the aws-lc-rs crypto provider and the system's
//! trust store (rustls-platform-verifier; on Linux the certificates of `ca-certificates`).
//! svix, which every binary links for webhook signatures, already brings rustls with
//! aws-lc-rs and hyper-rustls with the system roots, so this adds no second TLS stack or
//! crypto provider, and trusts what the machine trusts (a company CA included), as svix
//! does. (sqlx's own rustls uses ring and webpki-roots for PostgreSQL; that is apalis's
//! choice of sqlx features, not ours.)

use std::time::Duration;

/// Longest wait for a TCP (and TLS) connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a whole request, answer body included, unless the caller says.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A client with its timeouts; cheap to clone (one connection pool).
#[derive(Clone, Debug)]
pub struct Client {
    inner: reqwest::Client,
    timeout: Duration,
}

/// A client with [`REQUEST_TIMEOUT`].
pub fn client() -> Client {
    client_with_timeout(REQUEST_TIMEOUT)
}

/// A client whose every request gives up after `timeout` (connecting after at most
/// [`CONNECT_TIMEOUT`]).
pub fn client_with_timeout(timeout: Duration) -> Client {
    let inner = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .timeout(timeout)
        .http1_only()
        .build()
        .expect("the TLS backend initialises");
    Client { inner, timeout }
}

/// An HTTP answer: status and body text.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// An answer with its headers.
#[derive(Debug, Clone)]
pub struct FullAnswer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl FullAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A request that got no answer: `{method} {url}: {reason}`.
#[derive(Debug, thiserror::Error)]
#[error("{method} {url}: {reason}")]
pub struct Error {
    pub method: String,
    pub url: String,
    /// Why, in a few words (`connection refused`, `no answer within 30 s`, ...).
    pub reason: String,
}

pub async fn request(
    client: &Client,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Result<Answer, Error> {
    let full = request_full(client, method, url, headers, body).await?;
    Ok(Answer {
        status: full.status,
        body: full.body,
    })
}

pub async fn request_full(
    client: &Client,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Result<FullAnswer, Error> {
    let fail = |reason: String| Error {
        method: method.to_owned(),
        url: url.to_owned(),
        reason,
    };
    let m = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| fail("not an HTTP method".into()))?;
    let mut req = client.inner.request(m, url).body(body);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let res = req
        .send()
        .await
        .map_err(|e| fail(describe(&e, client.timeout)))?;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res
        .bytes()
        .await
        .map_err(|e| fail(describe(&e, client.timeout)))?;
    Ok(FullAnswer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// One short reason for a failed request, without reqwest's "error sending request for
/// url (…)" wrapper that repeats the URL.
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    let io = source_of::<std::io::Error>(e);
    if e.is_connect() {
        if e.is_timeout() {
            return format!(
                "cannot connect within {}",
                seconds(CONNECT_TIMEOUT.min(timeout))
            );
        }
        return match io.map(std::io::Error::kind) {
            Some(std::io::ErrorKind::ConnectionRefused) => "connection refused".into(),
            _ => format!("cannot connect ({})", innermost(e)),
        };
    }
    if e.is_timeout() {
        return format!("no answer within {}", seconds(timeout));
    }
    if e.is_builder() {
        return format!("not a usable URL ({})", innermost(e));
    }
    innermost(e)
}

fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

fn source_of<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

/// The deepest cause's text: the one that says what happened.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
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
        let err = request(
            &client_with_timeout(Duration::from_secs(2)),
            "GET",
            &url,
            &[],
            Vec::new(),
        )
        .await;
        assert!(err.is_err(), "no TLS server there");
        assert_eq!(
            first.await.unwrap(),
            0x16,
            "a TLS handshake record, not plain HTTP"
        );
    }

    #[tokio::test]
    async fn a_server_that_never_answers_is_a_timeout_not_a_hang() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(s);
        });
        let client = client_with_timeout(Duration::from_millis(300));
        let started = std::time::Instant::now();
        let err = request(&client, "GET", &url, &[], Vec::new())
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(err.reason, "no answer within 300 ms");
        assert_eq!(
            err.to_string(),
            format!("GET {url}: no answer within 300 ms")
        );
        held.abort();
    }

    #[tokio::test]
    async fn a_refused_port_reads_as_refused() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = request(
            &client(),
            "GET",
            &format!("http://127.0.0.1:{port}/"),
            &[],
            Vec::new(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.reason, "connection refused");
    }
}
