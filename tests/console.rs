//! `clerk-sync console` in-process on a port of its own, and a plain HTTP client for it
//! that keeps redirects and cookies visible.

use std::net::SocketAddr;

use clerk_sync_console::{Console, Settings};
use secrecy::SecretString;
use sqlx::PgPool;
use tokio::sync::oneshot;

pub struct TestConsole {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl TestConsole {
    /// On 127.0.0.1, port 0, without a token.
    pub async fn start(pool: PgPool) -> Self {
        Self::start_with("127.0.0.1:0", pool, Settings::default()).await
    }

    pub async fn start_with(addr: &str, pool: PgPool, settings: Settings) -> Self {
        let console = Console::build(addr.parse().unwrap(), pool, settings)
            .await
            .expect("console starts");
        let addr = console.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(console.run_until(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
        }
    }

    /// A URL on the console, by loopback address (whatever address it listens on).
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.addr.port())
    }
}

impl Drop for TestConsole {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn settings(token: Option<&str>, read_only: bool) -> Settings {
    Settings {
        token: token.map(SecretString::from),
        read_only,
    }
}

/// An answer as it came: status, headers, body (redirects are not followed).
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The CSRF token the page's forms carry.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no CSRF field in {}", self.body));
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }
}

pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    form: Option<&[(&str, &str)]>,
) -> Page {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut req = client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(form) = form {
        req = req
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap());
    }
    let answer = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    Page {
        status: answer.status().as_u16(),
        headers: answer.headers().clone(),
        body: answer.text().await.unwrap(),
    }
}
