//! The one transaction: the raw event, then its job. A duplicate `svix-id` stores nothing.

use clerk_sync_core::{event::Summary, jobs};
use sqlx::PgPool;

use crate::verify::Verified;

/// What storing a verified delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The event and its job are committed.
    New { event_id: i64 },
    /// The svix-id was stored before: nothing written.
    Duplicate,
}

impl Stored {
    /// The answer's `status` and the metrics' `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New { .. } => "stored",
            Self::Duplicate => "duplicate",
        }
    }
}

pub async fn store(
    pool: &PgPool,
    event: &Verified,
    summary: &Summary,
) -> Result<Stored, sqlx::Error> {
    let headers = serde_json::json!({
        "svix-id": event.headers.id,
        "svix-timestamp": event.headers.timestamp.to_string(),
        "svix-signature": event.headers.signature,
    });
    let job_id = jobs::new_job_id();
    let mut tx = pool.begin().await?;
    // ON CONFLICT waits for a concurrent insert of the same svix-id to commit or roll back,
    // so of many simultaneous deliveries exactly one stores the event and its job.
    let event_id: Option<i64> = sqlx::query_scalar(
        r#"
        INSERT INTO clerk_sync.webhook_events
            (svix_id, headers, body, event_type, object_id, event_timestamp, job_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (svix_id) DO NOTHING
        RETURNING id
        "#,
    )
    .bind(&event.headers.id)
    .bind(&headers)
    .bind(event.body.as_ref())
    .bind(&summary.event_type)
    .bind(&summary.object_id)
    .bind(summary.timestamp)
    .bind(job_id.to_string())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(event_id) = event_id else {
        tx.rollback().await?;
        return Ok(Stored::Duplicate);
    };
    jobs::enqueue(&mut tx, &[(job_id, event_id)]).await?;
    tx.commit().await?;
    Ok(Stored::New { event_id })
}
