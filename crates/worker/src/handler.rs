//! One job: load the stored event, decode it, apply it to the mirror under the ordering
//! rule. Failures are sorted into permanent (dead at once) and transient (retried later).

use std::{
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, Instant},
};

use apalis::prelude::{AbortError, Attempt, BoxDynError, Data, TaskId};
use chrono::{DateTime, Utc};
use clerk_sync_core::{
    EventJob,
    event::ClerkEvent,
    mirror::{self, Outcome},
};
use futures::FutureExt as _;
use sqlx::PgPool;
use tracing::Instrument as _;

use crate::{backoff::Backoff, metrics};

pub struct Shared {
    pub pool: PgPool,
    pub max_attempts: usize,
    pub backoff: Backoff,
    pub job_timeout: Duration,
    /// Runs before each event is applied: a seam for fault-injection tests (panics, delays).
    pub before_apply: Option<BeforeApply>,
}

pub type BeforeApply = Arc<dyn Fn(&ClerkEvent) + Send + Sync>;

/// Why an attempt failed, and so what happens next.
#[derive(Debug)]
enum Failure {
    /// Retrying the same bytes cannot help: dead at once, with the reason.
    Permanent(String),
    /// The database, a timeout, a panic: try again later.
    Transient { kind: &'static str, error: String },
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Self::Transient {
            kind: "transient",
            error: format!("database: {e}"),
        }
    }
}

struct Applied {
    outcome: Outcome,
    event_type: String,
    object_id: Option<String>,
    svix_id: String,
    event_time: Option<DateTime<Utc>>,
}

/// The apalis handler. Returning `AbortError` ends the job as `Killed` (dead); any other
/// error leaves it `Failed` with its next attempt already moved out by the backoff.
pub async fn handle(
    args: serde_json::Value,
    task_id: TaskId,
    attempt: Attempt,
    shared: Data<Arc<Shared>>,
) -> Result<(), BoxDynError> {
    let job_id = task_id.to_string();
    let attempt = attempt.current().max(1);
    let span = tracing::info_span!(
        "job",
        job.id = %job_id,
        job.attempt = attempt,
        svix.id = tracing::field::Empty,
        event.type = tracing::field::Empty,
        object.id = tracing::field::Empty,
    );
    run(&shared, &args, job_id, attempt).instrument(span).await
}

async fn run(
    shared: &Shared,
    args: &serde_json::Value,
    job_id: String,
    attempt: usize,
) -> Result<(), BoxDynError> {
    let started = Instant::now();

    // A job re-enqueued again and again by crashed or stopped workers is bounded too.
    if attempt > shared.max_attempts {
        let error = format!(
            "gave up: attempt {attempt} exceeds MAX_ATTEMPTS ({})",
            shared.max_attempts
        );
        return Err(dead(shared, &job_id, attempt, "exhausted", error, started).await);
    }

    let work = AssertUnwindSafe(tokio::time::timeout(
        shared.job_timeout,
        process(shared, args),
    ))
    .catch_unwind()
    .await;
    let failure = match work {
        Ok(Ok(Ok(applied))) => {
            let span = tracing::Span::current();
            span.record("svix.id", applied.svix_id.as_str());
            span.record("event.type", applied.event_type.as_str());
            if let Some(id) = &applied.object_id {
                span.record("object.id", id.as_str());
            }
            metrics::JOBS.inc(&[applied.outcome.as_str(), &applied.event_type]);
            metrics::DURATION.observe(&[], started.elapsed());
            if let (Some(t), Outcome::Applied) = (applied.event_time, applied.outcome) {
                let lag = (Utc::now() - t).to_std().unwrap_or_default();
                metrics::LAG.observe(&[], lag);
            }
            tracing::info!(
                outcome = applied.outcome.as_str(),
                duration_ms = started.elapsed().as_millis() as u64,
                "event done"
            );
            return Ok(());
        }
        Ok(Ok(Err(failure))) => failure,
        Ok(Err(_elapsed)) => Failure::Transient {
            kind: "timeout",
            error: format!("timed out after {:?}", shared.job_timeout),
        },
        Err(panic) => Failure::Transient {
            kind: "panic",
            error: format!("panicked: {}", panic_message(&panic)),
        },
    };

    match failure {
        Failure::Permanent(error) => {
            Err(dead(shared, &job_id, attempt, "permanent", error, started).await)
        }
        Failure::Transient { kind, error } if attempt >= shared.max_attempts => {
            let error = format!(
                "{error} (attempt {attempt} of {}, giving up)",
                shared.max_attempts
            );
            Err(dead(shared, &job_id, attempt, kind, error, started).await)
        }
        Failure::Transient { kind, error } => {
            let delay = shared.backoff.delay(attempt);
            metrics::FAILED_ATTEMPTS.inc(&[kind]);
            // Move the job's run_at out before apalis marks it Failed: apalis would otherwise
            // fetch it again at once. If the database is down this fails too; the job is
            // then rescued as an orphan, and retried, once the database is back.
            if let Err(e) =
                record_error(&shared.pool, &job_id, attempt, kind, &error, Some(delay)).await
            {
                tracing::warn!(error = %e, "could not record the failed attempt");
            }
            tracing::warn!(
                outcome = "retry",
                error_kind = kind,
                retry_in_ms = delay.as_millis() as u64,
                duration_ms = started.elapsed().as_millis() as u64,
                "attempt failed: {error}"
            );
            Err(error.into())
        }
    }
}

async fn dead(
    shared: &Shared,
    job_id: &str,
    attempt: usize,
    kind: &'static str,
    error: String,
    started: Instant,
) -> BoxDynError {
    metrics::FAILED_ATTEMPTS.inc(&[kind]);
    metrics::DEAD.inc(&[kind]);
    if let Err(e) = record_error(&shared.pool, job_id, attempt, kind, &error, None).await {
        tracing::warn!(error = %e, "could not record the failure");
    }
    tracing::error!(
        outcome = "dead",
        error_kind = kind,
        duration_ms = started.elapsed().as_millis() as u64,
        "job dead-lettered: {error}"
    );
    Box::new(AbortError::new(error))
}

/// Keeps every attempt's error and, for a retry, delays the next attempt: one statement.
async fn record_error(
    pool: &PgPool,
    job_id: &str,
    attempt: usize,
    kind: &str,
    error: &str,
    retry_in: Option<Duration>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"
        WITH err AS (
            INSERT INTO clerk_sync.job_errors (job_id, attempt, kind, error)
            VALUES ($1, $2, $3, $4)
        )
        UPDATE apalis.jobs
        SET run_at = now() + make_interval(secs => $5)
        WHERE id = $1 AND $5 IS NOT NULL
        "#,
    )
    .bind(job_id)
    .bind(attempt as i32)
    .bind(kind)
    .bind(error)
    .bind(retry_in.map(|d| d.as_secs_f64()))
    .execute(pool)
    .await?;
    Ok(())
}

async fn process(shared: &Shared, args: &serde_json::Value) -> Result<Applied, Failure> {
    let pool = &shared.pool;
    let job: EventJob = serde_json::from_value(args.clone())
        .map_err(|e| Failure::Permanent(format!("job arguments: {e}")))?;
    let row: Option<(Vec<u8>, String)> =
        sqlx::query_as("SELECT body, svix_id FROM clerk_sync.webhook_events WHERE id = $1")
            .bind(job.event_id)
            .fetch_optional(pool)
            .await?;
    let Some((body, svix_id)) = row else {
        return Err(Failure::Permanent(format!(
            "event {} is not stored",
            job.event_id
        )));
    };
    let summary = clerk_sync_core::event::Summary::of(&body);
    let event = ClerkEvent::decode(&body).map_err(|e| Failure::Permanent(e.to_string()))?;
    if let Some(hook) = &shared.before_apply {
        hook(&event);
    }
    let outcome = mirror::apply(pool, &event).await?;
    Ok(Applied {
        outcome,
        event_type: summary.event_type.unwrap_or_default(),
        object_id: summary.object_id,
        svix_id,
        event_time: summary.timestamp,
    })
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
