//! A fake of Clerk's Backend API list endpoints, served over local HTTP, with injectable
//! rate limits and failures. (Clerk's own remote API is the one thing we fake.)

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::{Value, json};

pub const SECRET_KEY: &str = "sk_test_fake_backend_key";

/// An answer to serve instead of the real one, `times` times, for requests to `path` at `offset`.
#[derive(Debug, Clone)]
pub struct Fault {
    pub path: &'static str,
    pub offset: i64,
    pub status: u16,
    pub retry_after: Option<u64>,
    pub times: u32,
}

#[derive(Default)]
pub struct Data {
    pub users: Vec<Value>,
    pub organizations: Vec<Value>,
    pub memberships: Vec<Value>,
    /// Every other listing, by its path (`/v1/organization_roles`, ...): the registry's
    /// kinds with a [`clerk_sync_core::mirror::Listing`].
    pub lists: HashMap<&'static str, Vec<Value>>,
    pub faults: Vec<Fault>,
    /// (path, offset) of every list request, in order.
    pub requests: Vec<(String, i64)>,
}

#[derive(Clone)]
pub struct FakeClerk {
    pub addr: SocketAddr,
    pub data: Arc<Mutex<Data>>,
}

impl FakeClerk {
    /// Serves `data`; every registered kind's listing that `data.lists` leaves out is empty.
    pub async fn start(mut data: Data) -> Self {
        for kind in clerk_sync_core::mirror::KINDS {
            if let Some(listing) = kind.listing
                && items(&data, listing.path).is_empty()
            {
                data.lists.entry(listing.path).or_default();
            }
        }
        let data = Arc::new(Mutex::new(data));
        let app = Router::new()
            .route("/v1/users", get(users))
            .route("/v1/users/count", get(users_count))
            .route("/v1/users/{id}", get(user))
            .route("/v1/organizations", get(organizations))
            .route("/v1/organizations/{id}", get(organization))
            .route("/v1/organization_memberships", get(memberships))
            .route("/v1/{name}", get(other_list))
            .with_state(data.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, data }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

type Shared = Arc<Mutex<Data>>;

fn check(headers: &HeaderMap) -> Option<Response> {
    let ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {SECRET_KEY}"));
    (!ok).then(|| {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"errors": [{"code": "authentication_invalid"}]})),
        )
            .into_response()
    })
}

/// The objects a listing path serves.
fn items<'a>(d: &'a Data, path: &str) -> &'a [Value] {
    match path {
        "/v1/users" => &d.users,
        "/v1/organizations" => &d.organizations,
        "/v1/organization_memberships" => &d.memberships,
        other => d.lists.get(other).map_or(&[], Vec::as_slice),
    }
}

/// Pages a listing, after recording the request and serving any fault that matches.
/// Users come as a bare array, every other listing wrapped with `total_count`, as Clerk
/// answers.
fn list(data: &Shared, path: &str, q: &HashMap<String, String>, headers: &HeaderMap) -> Response {
    let wrap = path != "/v1/users";
    if let Some(denied) = check(headers) {
        return denied;
    }
    let limit: usize = q
        .get("limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
        .min(500);
    let offset: i64 = q.get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut d = data.lock().unwrap();
    d.requests.push((path.to_owned(), offset));
    if let Some(f) = d
        .faults
        .iter_mut()
        .find(|f| f.path == path && f.offset == offset && f.times > 0)
    {
        f.times -= 1;
        let mut r = (
            StatusCode::from_u16(f.status).unwrap(),
            Json(json!({"errors": [{"code": "fault"}]})),
        )
            .into_response();
        if let Some(s) = f.retry_after {
            r.headers_mut()
                .insert("retry-after", s.to_string().parse().unwrap());
        }
        return r;
    }
    let items = items(&d, path);
    let page: Vec<Value> = items
        .iter()
        .skip(offset as usize)
        .take(limit)
        .cloned()
        .collect();
    if wrap {
        Json(json!({"data": page, "total_count": items.len()})).into_response()
    } else {
        Json(Value::Array(page)).into_response()
    }
}

async fn users(
    State(d): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    list(&d, "/v1/users", &q, &h)
}

async fn users_count(State(d): State<Shared>, h: HeaderMap) -> Response {
    if let Some(denied) = check(&h) {
        return denied;
    }
    let n = d.lock().unwrap().users.len();
    Json(json!({"object": "total_count", "total_count": n})).into_response()
}

fn find(items: &[Value], id: &str) -> Response {
    match items.iter().find(|u| u["id"] == id) {
        Some(v) => Json(v.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"errors": [{"code": "resource_not_found"}]})),
        )
            .into_response(),
    }
}

async fn user(State(d): State<Shared>, Path(id): Path<String>, h: HeaderMap) -> Response {
    check(&h).unwrap_or_else(|| find(&d.lock().unwrap().users, &id))
}

async fn organizations(
    State(d): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    list(&d, "/v1/organizations", &q, &h)
}

async fn organization(State(d): State<Shared>, Path(id): Path<String>, h: HeaderMap) -> Response {
    check(&h).unwrap_or_else(|| find(&d.lock().unwrap().organizations, &id))
}

async fn memberships(
    State(d): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    list(&d, "/v1/organization_memberships", &q, &h)
}

async fn other_list(
    State(d): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    let path = format!("/v1/{name}");
    if !d.lock().unwrap().lists.contains_key(path.as_str()) {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"errors": [{"code": "resource_not_found"}]})),
        )
            .into_response();
    }
    list(&d, &path, &q, &h)
}
