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
use serde::Deserialize as _;
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

/// What we know of the job's event, filled in as it is loaded: every outcome line
/// carries it.
#[derive(Debug, Default)]
struct Ctx {
    job_id: String,
    attempt: usize,
    svix_id: Option<String>,
    event_type: Option<String>,
    object_id: Option<String>,
    event_time: Option<DateTime<Utc>>,
    started: Option<Instant>,
}

impl Ctx {
    fn duration_ms(&self) -> u64 {
        self.started.map_or(0, |s| s.elapsed().as_millis() as u64)
    }
}

/// One log line per outcome, with the event's identity.
macro_rules! outcome {
    ($level:ident, $ctx:expr, $outcome:expr, $($rest:tt)*) => {
        tracing::$level!(
            job.id = %$ctx.job_id,
            job.attempt = $ctx.attempt,
            svix.id = $ctx.svix_id.as_deref(),
            event.type = $ctx.event_type.as_deref(),
            object.id = $ctx.object_id.as_deref(),
            outcome = $outcome,
            duration_ms = $ctx.duration_ms(),
            $($rest)*
        )
    };
}

/// The apalis handler. Returning `AbortError` ends the job as `Killed` (dead); any other
/// error leaves it `Failed` with its next attempt already moved out by the backoff.
pub async fn handle(
    args: serde_json::Value,
    task_id: TaskId,
    attempt: Attempt,
    shared: Data<Arc<Shared>>,
) -> Result<(), BoxDynError> {
    let mut ctx = Ctx {
        job_id: task_id.to_string(),
        attempt: attempt.current().max(1),
        started: Some(Instant::now()),
        ..Ctx::default()
    };
    let span = tracing::info_span!("job", job.id = %ctx.job_id);
    run(&shared, &args, &mut ctx).instrument(span).await
}

async fn run(shared: &Shared, args: &serde_json::Value, ctx: &mut Ctx) -> Result<(), BoxDynError> {
    // A job re-enqueued again and again by crashed or stopped workers is bounded too.
    if ctx.attempt > shared.max_attempts {
        let error = format!(
            "gave up: attempt {} exceeds MAX_ATTEMPTS ({})",
            ctx.attempt, shared.max_attempts
        );
        return Err(dead(shared, ctx, "exhausted", error).await);
    }

    let work = AssertUnwindSafe(tokio::time::timeout(
        shared.job_timeout,
        process(shared, args, &mut *ctx),
    ))
    .catch_unwind()
    .await;
    let failure = match work {
        Ok(Ok(Ok(outcome))) => {
            let event_type = ctx.event_type.as_deref().unwrap_or("");
            metrics::JOBS.inc(&[outcome.as_str(), event_type]);
            metrics::DURATION.observe(&[], ctx.started.map(|s| s.elapsed()).unwrap_or_default());
            if let (Some(t), Outcome::Applied) = (ctx.event_time, outcome) {
                let lag = (Utc::now() - t).to_std().unwrap_or_default();
                metrics::LAG.observe(&[], lag);
            }
            outcome!(info, ctx, outcome.as_str(), "event done");
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
        Failure::Permanent(error) => Err(dead(shared, ctx, "permanent", error).await),
        Failure::Transient { kind, error } if ctx.attempt >= shared.max_attempts => {
            let error = format!(
                "{error} (attempt {} of {}, giving up)",
                ctx.attempt, shared.max_attempts
            );
            Err(dead(shared, ctx, kind, error).await)
        }
        Failure::Transient { kind, error } => {
            let delay = shared.backoff.delay(ctx.attempt);
            metrics::FAILED_ATTEMPTS.inc(&[kind]);
            // Move the job's run_at out before apalis marks it Failed: apalis would otherwise
            // fetch it again at once. If the database is down this fails too; the job is
            // then rescued as an orphan, and retried, once the database is back.
            if let Err(e) = record_error(&shared.pool, ctx, kind, &error, Some(delay)).await {
                tracing::warn!(error = %e, "could not record the failed attempt");
            }
            outcome!(
                warn,
                ctx,
                "retry",
                error_kind = kind,
                retry_in_ms = delay.as_millis() as u64,
                "attempt failed: {error}"
            );
            Err(error.into())
        }
    }
}

async fn dead(shared: &Shared, ctx: &Ctx, kind: &'static str, error: String) -> BoxDynError {
    metrics::FAILED_ATTEMPTS.inc(&[kind]);
    metrics::DEAD.inc(&[kind]);
    if let Err(e) = record_error(&shared.pool, ctx, kind, &error, None).await {
        tracing::warn!(error = %e, "could not record the failure");
    }
    outcome!(
        error,
        ctx,
        "dead",
        error_kind = kind,
        "job dead-lettered: {error}"
    );
    Box::new(AbortError::new(error))
}

/// Keeps every attempt's error and, for a retry, delays the next attempt: one statement.
async fn record_error(
    pool: &PgPool,
    ctx: &Ctx,
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
    .bind(&ctx.job_id)
    .bind(ctx.attempt as i32)
    .bind(kind)
    .bind(error)
    .bind(retry_in.map(|d| d.as_secs_f64()))
    .execute(pool)
    .await?;
    Ok(())
}

/// body, svix_id, event_type, object_id, event_timestamp
type StoredEvent = (
    Vec<u8>,
    String,
    Option<String>,
    Option<String>,
    Option<DateTime<Utc>>,
);

async fn process(
    shared: &Shared,
    args: &serde_json::Value,
    ctx: &mut Ctx,
) -> Result<Outcome, Failure> {
    let pool = &shared.pool;
    let job = EventJob::deserialize(args)
        .map_err(|e| Failure::Permanent(format!("job arguments: {e}")))?;
    // Ingest parsed type, object id and time when it stored the event: read, don't re-parse.
    let row: Option<StoredEvent> = sqlx::query_as(
        "SELECT body, svix_id, event_type, object_id, event_timestamp \
         FROM clerk_sync.webhook_events WHERE id = $1",
    )
    .bind(job.event_id)
    .fetch_optional(pool)
    .await?;
    let Some((body, svix_id, event_type, object_id, event_time)) = row else {
        return Err(Failure::Permanent(format!(
            "event {} is not stored",
            job.event_id
        )));
    };
    ctx.svix_id = Some(svix_id);
    ctx.event_type = event_type;
    ctx.object_id = object_id;
    ctx.event_time = event_time;
    let event = ClerkEvent::decode(&body).map_err(|e| Failure::Permanent(e.to_string()))?;
    if let Some(hook) = &shared.before_apply {
        hook(&event);
    }
    Ok(mirror::apply(pool, &event).await?)
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
