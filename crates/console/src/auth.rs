//! Who may see and act, and what every response carries.
//!
//! - Without `CONSOLE_TOKEN` the console listens on loopback only and answers only requests
//!   addressed to a loopback name (`Host`), so a web page cannot reach it through DNS
//!   rebinding.
//! - With a token, every page but `/login` and the stylesheet needs either
//!   `Authorization: Bearer TOKEN` or the session cookie the login form sets (`HttpOnly`,
//!   `SameSite=Strict`, random, held in memory: a restart signs everyone out).
//! - Every POST from a browser carries the CSRF token the pages embed in their forms, and an
//!   `Origin`, when sent, must be this console's. Bearer requests need no CSRF token: no
//!   other site can make a browser send that header.
//! - `--read-only` refuses every action with 403 (and the pages show none).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Form,
    body::Body,
    extract::{Query, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{Html, IntoResponse, Redirect, Response},
};
use maud::html;
use serde::Deserialize;

use crate::{AppState, ConsoleError, layout};

const COOKIE: &str = "clerk_sync_console";
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Forms are small; a larger POST body is refused before it is read whole.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The pages allow no script, no plugin, no framing, and load styles only from the console.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub(crate) struct Auth {
    token: Option<String>,
    /// The token every form carries (one per process; it is only ever sent inside pages).
    csrf: String,
    sessions: Mutex<HashMap<String, Instant>>,
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compares in time independent of where the first difference is.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    pub fn new(token: Option<String>) -> anyhow::Result<Self> {
        Ok(Self {
            token,
            csrf: random_hex(32)?,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// A token is configured, so there is a login and a logout.
    pub fn signs_in(&self) -> bool {
        self.token.is_some()
    }

    fn bearer_ok(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return false;
        };
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| same(given.trim(), token))
    }

    fn session_ok(&self, headers: &HeaderMap) -> bool {
        let Some(id) = session_cookie(headers) else {
            return false;
        };
        let sessions = self.sessions.lock().expect("sessions lock");
        sessions
            .iter()
            .any(|(known, at)| same(known, &id) && at.elapsed() < SESSION_LIFETIME)
    }

    fn open_session(&self) -> anyhow::Result<String> {
        let id = random_hex(32)?;
        let mut sessions = self.sessions.lock().expect("sessions lock");
        sessions.retain(|_, at| at.elapsed() < SESSION_LIFETIME);
        sessions.insert(id.clone(), Instant::now());
        Ok(id)
    }

    fn close_session(&self, headers: &HeaderMap) {
        if let Some(id) = session_cookie(headers) {
            self.sessions.lock().expect("sessions lock").remove(&id);
        }
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// `localhost`, `127.0.0.1`, `[::1]`, … with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn host(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|v| v.to_str().ok())
}

/// How a request was let in, for the audit log (`console:session`, …): one token is shared,
/// so the console cannot name a person.
#[derive(Debug, Clone)]
pub(crate) struct Who(pub &'static str);

/// Authentication, then (for POSTs) the CSRF and origin checks.
pub(crate) async fn require(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ConsoleError> {
    let auth = &state.auth;
    let headers = request.headers();
    let path = request.uri().path();
    let public = path == "/login" || path.starts_with("/static/");
    let bearer = auth.bearer_ok(headers);
    let who = if !auth.signs_in() {
        "loopback"
    } else if bearer {
        "bearer"
    } else {
        "session"
    };
    if !auth.signs_in() {
        let host = host(headers).unwrap_or("");
        if !is_loopback_host(host) {
            return Err(ConsoleError::NotLoopback(host.to_owned()));
        }
    } else if !public && !bearer && !auth.session_ok(headers) {
        if request.method() == Method::GET || request.method() == Method::HEAD {
            let target = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            let to = format!("/login?next={}", layout::encode_query(&target));
            return Ok(Redirect::to(&to).into_response());
        }
        return Err(ConsoleError::Unauthorized);
    }
    request.extensions_mut().insert(Who(who));
    let headers = request.headers();
    if request.method() != Method::POST || bearer {
        return Ok(next.run(request).await);
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let expected = host(headers).map(|h| format!("http://{h}"));
        let https = host(headers).map(|h| format!("https://{h}"));
        if Some(origin) != expected.as_deref() && Some(origin) != https.as_deref() {
            return Err(ConsoleError::CrossOrigin);
        }
    }
    // Read the (small) form, check its token, and hand it on unchanged.
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| {
            ConsoleError::BadRequest(format!("form larger than {MAX_FORM_BYTES} bytes"))
        })?;
    let given = form_urlencoded_value(&bytes, "csrf");
    if !given.is_some_and(|g| same(&g, auth.csrf())) {
        return Err(ConsoleError::Csrf);
    }
    Ok(next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await)
}

fn form_urlencoded_value(body: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Actions exist only when the console is not read-only.
pub(crate) async fn actions_allowed(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, ConsoleError> {
    if state.read_only {
        return Err(ConsoleError::ReadOnly);
    }
    Ok(next.run(request).await)
}

/// Headers on every answer: the CSP, no sniffing, no referrer to other sites (`no-referrer`
/// would make browsers send `Origin: null` on our own forms), no caching of pages.
pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let is_static = request.uri().path().starts_with("/static/");
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !is_static {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[derive(Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

/// Only a path on this console (never `//host` or a scheme): no open redirect.
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p,
        _ => "/",
    }
}

pub(crate) async fn login_page(
    State(state): State<Arc<AppState>>,
    Query(q): Query<NextQuery>,
) -> Response {
    login_form(&state, q.next.as_deref(), None, StatusCode::OK)
}

fn login_form(
    state: &AppState,
    next: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let ctx = layout::Ctx::of(state);
    let body = html! {
        h1 { "Sign in" }
        @if !state.auth.signs_in() {
            p { "This console has no CONSOLE_TOKEN: it listens on loopback only and needs no sign-in." }
            p { a href="/" { "Overview" } }
        } @else {
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form.login method="post" action="/login" {
                input type="hidden" name="csrf" value=(ctx.csrf);
                input type="hidden" name="next" value=(local_path(next));
                label { "Console token " input type="password" name="token" autocomplete="current-password" required autofocus; }
                button type="submit" { "Sign in" }
            }
        }
    };
    (
        status,
        Html(layout::page("Sign in", &ctx, body).into_string()),
    )
        .into_response()
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    token: String,
    next: Option<String>,
}

pub(crate) async fn login(
    State(state): State<Arc<AppState>>,
    Form(form): Form<LoginForm>,
) -> Result<Response, ConsoleError> {
    let Some(token) = &state.auth.token else {
        return Ok(Redirect::to("/").into_response());
    };
    if !same(form.token.trim(), token) {
        tracing::warn!("console sign-in refused: wrong token");
        return Ok(login_form(
            &state,
            form.next.as_deref(),
            Some("Wrong token."),
            StatusCode::UNAUTHORIZED,
        ));
    }
    let id = state.auth.open_session().map_err(ConsoleError::Internal)?;
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    );
    let mut response = Redirect::to(local_path(form.next.as_deref())).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("hex cookie"),
    );
    Ok(response)
}

pub(crate) async fn logout(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    state.auth.close_session(&headers);
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        ))
        .expect("static cookie"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        for ok in [
            "localhost",
            "localhost:8081",
            "127.0.0.1:8081",
            "127.1.2.3",
            "[::1]:8081",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for no in [
            "evil.example:8081",
            "localhost.evil.example",
            "10.0.0.1:8081",
            "",
            "[::2]:1",
        ] {
            assert!(!is_loopback_host(no), "{no}");
        }
    }

    #[test]
    fn redirects_stay_on_the_console() {
        assert_eq!(local_path(Some("/jobs?state=dead")), "/jobs?state=dead");
        assert_eq!(local_path(Some("//evil.example/")), "/");
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(Some("/\\evil.example")), "/");
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; clerk_sync_console=abc; b=2"),
        );
        assert_eq!(session_cookie(&h).as_deref(), Some("abc"));
    }
}
