//! Pruning: done jobs and their raw events older than the retention age, in small batches
//! so that no statement holds many locks. Dead jobs (and their events and errors) are never
//! pruned automatically: they wait for an operator.

use std::time::Duration;

use sqlx::PgPool;

const BATCH: i64 = 500;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub jobs: u64,
    pub events: u64,
    pub errors: u64,
    pub workers: u64,
}

/// One pass. Only one worker prunes at a time (a try-lock); the others skip the pass.
pub async fn prune(pool: &PgPool, keep: Duration) -> Result<Pruned, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(726273656103)")
        .fetch_one(&mut *conn)
        .await?;
    if !locked {
        return Ok(Pruned::default());
    }
    let result = prune_locked(&mut conn, keep).await;
    let _ = sqlx::query("SELECT pg_advisory_unlock(726273656103)")
        .execute(&mut *conn)
        .await;
    result
}

async fn prune_locked(
    conn: &mut sqlx::PgConnection,
    keep: Duration,
) -> Result<Pruned, sqlx::Error> {
    let keep_secs = keep.as_secs_f64();
    let jobs = batches(
        conn,
        keep_secs,
        r#"
        DELETE FROM apalis.jobs WHERE id IN (
            SELECT id FROM apalis.jobs
            WHERE job_type = 'clerk-sync:event' AND status = 'Done'
              AND done_at < now() - make_interval(secs => $1)
            LIMIT $2 FOR UPDATE SKIP LOCKED)
    "#,
    )
    .await?;
    // Events whose job is gone (done and pruned, or never made) once they are old enough.
    let events = batches(
        conn,
        keep_secs,
        r#"
        DELETE FROM clerk_sync.webhook_events WHERE id IN (
            SELECT e.id FROM clerk_sync.webhook_events e
            WHERE e.received_at < now() - make_interval(secs => $1)
              AND NOT EXISTS (SELECT 1 FROM apalis.jobs j WHERE j.id = e.job_id)
            LIMIT $2)
    "#,
    )
    .await?;
    let errors = batches(
        conn,
        keep_secs,
        r#"
        DELETE FROM clerk_sync.job_errors WHERE id IN (
            SELECT je.id FROM clerk_sync.job_errors je
            WHERE je.failed_at < now() - make_interval(secs => $1)
              AND NOT EXISTS (SELECT 1 FROM apalis.jobs j WHERE j.id = je.job_id)
            LIMIT $2)
    "#,
    )
    .await?;
    // Every worker process registers under a unique name; forget the long-gone ones.
    let workers = batches(
        conn,
        keep_secs,
        r#"
        DELETE FROM apalis.workers WHERE id IN (
            SELECT w.id FROM apalis.workers w
            WHERE w.worker_type = 'clerk-sync:event'
              AND w.last_seen < now() - LEAST(make_interval(secs => $1), interval '1 hour')
              AND NOT EXISTS (SELECT 1 FROM apalis.jobs j WHERE j.lock_by = w.id)
            LIMIT $2)
    "#,
    )
    .await?;
    Ok(Pruned {
        jobs,
        events,
        errors,
        workers,
    })
}

async fn batches(
    conn: &mut sqlx::PgConnection,
    keep_secs: f64,
    sql: &'static str,
) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let n = sqlx::query(sql)
            .bind(keep_secs)
            .bind(BATCH)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        total += n;
        if n < BATCH as u64 {
            return Ok(total);
        }
    }
}
