//! The event store, `clerk_sync.webhook_events`: every verified delivery as received.
//! Ingest writes it (with the job, see [`crate::jobs`]); the worker and the operator tools
//! read it.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// A stored delivery: its raw body and what ingest parsed from it for querying.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StoredEvent {
    pub id: i64,
    pub svix_id: String,
    pub body: Vec<u8>,
    pub event_type: Option<String>,
    pub object_id: Option<String>,
    /// The envelope's `timestamp`: when Clerk says the event happened.
    pub event_timestamp: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
}

/// The stored events with these ids (any order; missing ids are left out).
pub async fn load(conn: &mut PgConnection, ids: &[i64]) -> Result<Vec<StoredEvent>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_as(
        "SELECT id, svix_id, body, event_type, object_id, event_timestamp, received_at \
         FROM clerk_sync.webhook_events WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(conn)
    .await
}
