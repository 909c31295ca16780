//! The job queue as operators see it: states, dead letters, replay. Shared by the CLI and
//! the worker's metrics. Our vocabulary over apalis's states:
//!
//! | ours    | apalis.jobs.status                                   |
//! |---------|------------------------------------------------------|
//! | pending | `Pending`, or `Failed` with attempts left (retrying) |
//! | running | `Queued` (claimed by a worker), `Running`            |
//! | done    | `Done`                                               |
//! | dead    | `Killed`, or `Failed` with no attempts left          |

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::QUEUE;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    pub pending: i64,
    pub running: i64,
    pub done: i64,
    pub dead: i64,
    pub oldest_pending_age_seconds: i64,
    pub events_received: i64,
}

impl QueueStats {
    pub async fn read(pool: &PgPool) -> Result<Self, sqlx::Error> {
        let row: (i64, i64, i64, i64, i64, i64) = sqlx::query_as(
            r#"
            SELECT
                count(*) FILTER (WHERE status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts)),
                count(*) FILTER (WHERE status IN ('Queued', 'Running')),
                count(*) FILTER (WHERE status = 'Done'),
                count(*) FILTER (WHERE status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts)),
                COALESCE(extract(epoch FROM now() - min(run_at) FILTER (
                    WHERE (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts))
                      AND run_at <= now()))::bigint, 0),
                (SELECT count(*) FROM clerk_sync.webhook_events)
            FROM apalis.jobs
            WHERE job_type = $1
            "#,
        )
        .bind(QUEUE)
        .fetch_one(pool)
        .await?;
        Ok(Self {
            pending: row.0,
            running: row.1,
            done: row.2,
            dead: row.3,
            oldest_pending_age_seconds: row.4.max(0),
            events_received: row.5,
        })
    }
}

/// One row of `clerk_sync.dead_letters`.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct DeadLetter {
    pub job_id: String,
    pub svix_id: Option<String>,
    pub event_type: Option<String>,
    pub object_id: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub first_failed_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
}

pub async fn dead_letters(
    pool: &PgPool,
    event_type: Option<&str>,
    limit: i64,
) -> Result<Vec<DeadLetter>, sqlx::Error> {
    sqlx::query_as(
        r#"
        SELECT job_id, svix_id, event_type, object_id, attempts, last_error, first_failed_at, failed_at
        FROM clerk_sync.dead_letters
        WHERE $1::text IS NULL OR event_type = $1
        ORDER BY failed_at DESC NULLS LAST, job_id
        LIMIT $2
        "#,
    )
    .bind(event_type)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Which dead jobs to put back.
#[derive(Debug, Clone)]
pub enum ReplaySelection<'a> {
    Ids(&'a [String]),
    All { event_type: Option<&'a str> },
}

/// Puts dead jobs back in the queue with fresh attempts and wakes the workers at once
/// (the same NOTIFY a new job sends). Replaying is idempotent: a job that is no longer dead
/// is not touched, and the versioned upserts make a re-applied event harmless.
pub async fn replay(
    pool: &PgPool,
    selection: ReplaySelection<'_>,
) -> Result<Vec<String>, sqlx::Error> {
    let (ids, all, event_type): (Option<&[String]>, bool, Option<&str>) = match selection {
        ReplaySelection::Ids(ids) => (Some(ids), false, None),
        ReplaySelection::All { event_type } => (None, true, event_type),
    };
    sqlx::query_scalar(
        r#"
        WITH replayed AS (
            UPDATE apalis.jobs j
            SET status = 'Pending', attempts = 0, run_at = now(), lock_by = NULL,
                lock_at = NULL, done_at = NULL, last_result = NULL
            WHERE j.job_type = $1
              AND (j.status = 'Killed' OR (j.status = 'Failed' AND j.attempts >= j.max_attempts))
              AND (($3 AND ($4::text IS NULL OR EXISTS (
                        SELECT 1 FROM clerk_sync.webhook_events e
                        WHERE e.job_id = j.id AND e.event_type = $4)))
                   OR j.id = ANY($2))
            RETURNING j.id, j.job_type, j.run_at
        ), woken AS (
            SELECT pg_notify('apalis::job::insert',
                json_build_object('job_type', job_type, 'id', id, 'run_at', run_at)::text)
            FROM replayed
        )
        SELECT r.id FROM replayed r, (SELECT count(*) FROM woken) w ORDER BY r.id
        "#,
    )
    .bind(QUEUE)
    .bind(ids.unwrap_or(&[]))
    .bind(all)
    .bind(event_type)
    .fetch_all(pool)
    .await
}
