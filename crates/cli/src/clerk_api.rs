//! Clerk's Backend API, the few list endpoints backfill needs: paging by limit/offset,
//! within Clerk's rate limit, honouring `429 Retry-After`, backing off on 5xx and network
//! errors, with a timeout on every request.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clerk_sync_core::backoff::Backoff;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;

use crate::http;

pub struct ClerkApi {
    base: String,
    secret: SecretString,
    client: http::Client,
    pub max_retries: u32,
    /// The wait between retried failures (429s wait their `Retry-After` instead).
    pub backoff: Backoff,
    /// Requests answered, and how many were 429s or retried failures (for the summary).
    pub requests: u64,
    pub throttled: u64,
    pub retried: u64,
    /// Requests allowed per [`RATE_WINDOW`], and when the last ones were sent.
    rate_limit: usize,
    rate_window: Duration,
    sent: VecDeque<Instant>,
}

/// Clerk counts requests per key over 10 seconds.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

/// Clerk's Backend API rate limit for a secret key, per [`RATE_WINDOW`]: 1,000 for a
/// production instance (`sk_live_…`), 100 for a development one (`sk_test_…`, or any key
/// we cannot tell).
pub fn rate_limit(secret: &str) -> usize {
    if secret.starts_with("sk_live_") {
        1_000
    } else {
        100
    }
}

/// One page of a listing.
pub struct Page {
    pub items: Vec<Value>,
    pub total_count: Option<i64>,
}

/// What `GET /v1/<kind>/<id>` found.
pub enum Lookup {
    Found(Value),
    NotFound,
}

impl ClerkApi {
    /// Every request gives up after `timeout` (and counts as a failure to retry).
    pub fn new(base: &str, secret: SecretString, timeout: Duration) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            rate_limit: rate_limit(secret.expose_secret()),
            rate_window: RATE_WINDOW,
            sent: VecDeque::new(),
            secret,
            client: http::client_with_timeout(timeout),
            max_retries: 8,
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(30)),
            requests: 0,
            throttled: 0,
            retried: 0,
        }
    }

    /// `GET {path}?limit=&offset=&order_by=+created_at`: a bare array (users) or
    /// `{"data": [...], "total_count": N}` (organizations, memberships).
    pub async fn page(&mut self, path: &str, limit: usize, offset: i64) -> anyhow::Result<Page> {
        let url = format!(
            "{}{path}?limit={limit}&offset={offset}&order_by=%2Bcreated_at",
            self.base
        );
        let (status, body) = self.get(&url).await?;
        if status != 200 {
            bail!(
                "GET {path} (offset {offset}) answered {status}: {}",
                one_line(&body)
            );
        }
        let doc: Value =
            serde_json::from_str(&body).with_context(|| format!("GET {path}: not JSON"))?;
        match doc {
            Value::Array(items) => Ok(Page {
                items,
                total_count: None,
            }),
            Value::Object(mut o) => {
                let total_count = o.get("total_count").and_then(Value::as_i64);
                match o.remove("data") {
                    Some(Value::Array(items)) => Ok(Page { items, total_count }),
                    _ => bail!("GET {path}: no `data` array in the answer"),
                }
            }
            _ => bail!("GET {path}: unexpected answer"),
        }
    }

    /// `GET /v1/users/count` → `{"total_count": N}`; None if the API does not say.
    pub async fn count(&mut self, path: &str) -> Option<i64> {
        let url = format!("{}{path}", self.base);
        match self.get(&url).await {
            Ok((200, body)) => serde_json::from_str::<Value>(&body)
                .ok()?
                .get("total_count")
                .and_then(Value::as_i64),
            _ => None,
        }
    }

    pub async fn lookup(&mut self, path: &str) -> anyhow::Result<Lookup> {
        let url = format!("{}{path}", self.base);
        match self.get(&url).await? {
            (200, body) => Ok(Lookup::Found(serde_json::from_str(&body)?)),
            (404, _) => Ok(Lookup::NotFound),
            (status, body) => bail!("GET {path} answered {status}: {}", one_line(&body)),
        }
    }

    /// One GET with the retry policy: 429 waits `Retry-After` (default 1 s, at most 60 s)
    /// and does not use up a retry; 5xx and network errors back off exponentially.
    async fn get(&mut self, url: &str) -> anyhow::Result<(u16, String)> {
        let headers = vec![
            (
                "authorization".to_owned(),
                format!("Bearer {}", self.secret.expose_secret()),
            ),
            ("accept".to_owned(), "application/json".to_owned()),
            ("user-agent".to_owned(), "clerk-sync-backfill".to_owned()),
        ];
        let mut failures = 0;
        let mut throttles = 0;
        loop {
            self.pace().await;
            let result = http::request_full(&self.client, "GET", url, &headers, Vec::new()).await;
            self.requests += 1;
            let wait = match result {
                Ok(a) if a.status == 429 && throttles < 100 => {
                    throttles += 1;
                    self.throttled += 1;
                    let secs = a
                        .header("retry-after")
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .unwrap_or(1)
                        .min(60);
                    tracing::info!(retry_after_s = secs, "Clerk API rate limit: waiting");
                    Duration::from_secs(secs)
                }
                Ok(a) if a.status >= 500 || a.status == 429 => {
                    failures += 1;
                    if failures > self.max_retries {
                        return Ok((a.status, a.body));
                    }
                    self.backoff(failures, &format!("answered {}", a.status))
                }
                Ok(a) => return Ok((a.status, a.body)),
                Err(e) => {
                    failures += 1;
                    if failures > self.max_retries {
                        bail!("CLERK_API_URL: GET {url}: {}", e.reason);
                    }
                    self.backoff(failures, &e.reason)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Waits until one more request stays within the rate limit: never more than
    /// `rate_limit` requests in any window of [`RATE_WINDOW`], so a long run does not meet
    /// 429s.
    async fn pace(&mut self) {
        let now = Instant::now();
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.rate_window)
        {
            self.sent.pop_front();
        }
        if self.sent.len() >= self.rate_limit
            && let Some(oldest) = self.sent.pop_front()
        {
            let wait = self.rate_window.saturating_sub(now.duration_since(oldest));
            tracing::debug!(
                wait_ms = wait.as_millis() as u64,
                "pacing to Clerk's rate limit"
            );
            tokio::time::sleep(wait).await;
        }
        self.sent.push_back(Instant::now());
    }

    fn backoff(&mut self, failures: u32, why: &str) -> Duration {
        self.retried += 1;
        let wait = self.backoff.delay(failures);
        tracing::warn!(
            attempt = failures,
            retry_in_ms = wait.as_millis() as u64,
            "Clerk API {why}; retrying"
        );
        wait
    }
}

fn one_line(s: &str) -> String {
    crate::table::one_line(s, 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_follows_the_key() {
        assert_eq!(rate_limit("sk_live_abc"), 1_000);
        assert_eq!(rate_limit("sk_test_abc"), 100);
        assert_eq!(rate_limit("something_else"), 100);
    }

    /// With a limit of 3 per window, the fourth request waits until the first leaves the
    /// window.
    #[tokio::test]
    async fn pacing_keeps_requests_within_the_window() {
        let mut api = ClerkApi::new(
            "http://127.0.0.1:9",
            SecretString::from("sk_test_x"),
            Duration::from_secs(1),
        );
        api.rate_limit = 3;
        api.rate_window = Duration::from_millis(300);
        let start = Instant::now();
        for _ in 0..3 {
            api.pace().await;
        }
        assert_eq!(api.sent.len(), 3);
        api.pace().await;
        assert!(
            start.elapsed() >= Duration::from_millis(300),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(api.sent.len(), 3, "the oldest left the window");
    }
}
