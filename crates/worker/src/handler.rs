//! One job: load the stored event, decode it, apply it to the mirror under the ordering
//! rule. Failures are sorted into permanent (dead at once) and transient (retried later).

use std::{
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, Instant},
};

use apalis::prelude::{AbortError, Attempt, BoxDynError, Data, TaskId, WorkerContext};
use chrono::{DateTime, Utc};
use clerk_sync_core::{EventJob, event::ClerkEvent, mirror::Outcome};
use futures::FutureExt as _;
use serde::Deserialize as _;
use sqlx::PgPool;
use tracing::Instrument as _;

use crate::{
    apply::{Appliers, Done, Failure, Job},
    backoff::Backoff,
    metrics,
};

pub struct Shared {
    pub pool: PgPool,
    pub appliers: Appliers,
    pub max_attempts: usize,
    pub backoff: Backoff,
    pub job_timeout: Duration,
}

pub type BeforeApply = Arc<dyn Fn(&ClerkEvent) + Send + Sync>;

/// What we know of the job's event, filled in as it is loaded: every outcome line
/// carries it.
#[derive(Debug, Default)]
struct Ctx {
    job_id: String,
    /// The apalis worker that claimed the job: our writes to the job only land while the
    /// claim is still ours.
    worker: String,
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

/// The apalis handler. apalis persists nothing for us (`persist_results(false)`): a success
/// is acked in the same transaction as its mirror write, and a failure is written back here
/// with its error and its next attempt time. Returning `AbortError` only tells apalis the job
/// is over; the row already says `Killed`.
pub async fn handle(
    args: serde_json::Value,
    task_id: TaskId,
    attempt: Attempt,
    worker: WorkerContext,
    shared: Data<Arc<Shared>>,
) -> Result<(), BoxDynError> {
    let mut ctx = Ctx {
        job_id: task_id.to_string(),
        worker: worker.name().to_owned(),
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
        Ok(Ok(Ok(Done::Acked(outcome)))) => {
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
        Ok(Ok(Ok(Done::NotOurs))) => {
            outcome!(
                warn,
                ctx,
                "released",
                "job left this claim (rescued and re-enqueued, or claimed again after this attempt timed out); left to its current claim"
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
            if !record_failure(&shared.pool, ctx, kind, &error, Some(delay)).await {
                return Err(not_ours(ctx, &error));
            }
            metrics::FAILED_ATTEMPTS.inc(&[kind]);
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
    if !record_failure(&shared.pool, ctx, kind, &error, None).await {
        return not_ours(ctx, &error);
    }
    metrics::FAILED_ATTEMPTS.inc(&[kind]);
    metrics::DEAD.inc(&[kind]);
    outcome!(
        error,
        ctx,
        "dead",
        error_kind = kind,
        "job dead-lettered: {error}"
    );
    Box::new(AbortError::new(error))
}

/// The failure could not be written because the job is no longer under this claim: its
/// apply committed after all (the job is Done), or it was rescued and re-enqueued.
fn not_ours(ctx: &Ctx, error: &str) -> BoxDynError {
    outcome!(
        info,
        ctx,
        "released",
        "attempt failed after the job left this claim (done or re-enqueued meanwhile): {error}"
    );
    Box::new(AbortError::new(error.to_owned()))
}

/// Writes a failed attempt back: its error kept in `clerk_sync.job_errors`, and the job
/// `Failed` with its next attempt moved out by `retry_in` (apalis would otherwise fetch it
/// again at once) or, without one, `Killed` (dead). Only while the job is still under this
/// claim (same worker, same attempts count) and unfinished: if a commit whose answer was
/// lost did land, the job stays Done, and nothing is written. Returns whether it landed.
///
/// Until this lands the job is claimed by a live worker and nobody else would ever take it,
/// so it is retried, with backoff, for as long as it takes; if the process stops first, the
/// job is rescued as an orphan once the heartbeats stop.
async fn record_failure(
    pool: &PgPool,
    ctx: &Ctx,
    kind: &str,
    error: &str,
    retry_in: Option<Duration>,
) -> bool {
    let mut wait = Duration::from_millis(100);
    loop {
        let written = sqlx::query(
            r#"
            WITH job AS (
                UPDATE apalis.jobs
                SET status = CASE WHEN $5::float8 IS NULL THEN 'Killed' ELSE 'Failed' END,
                    attempts = $2,
                    last_result = jsonb_build_object('Err', $4::text),
                    done_at = now(),
                    run_at = COALESCE(now() + make_interval(secs => $5::float8), run_at)
                WHERE id = $1 AND lock_by IS NOT DISTINCT FROM $6 AND attempts = $2 - 1
                  AND status IN ('Queued', 'Running')
                RETURNING id
            )
            INSERT INTO clerk_sync.job_errors (job_id, attempt, kind, error)
            SELECT id, $2, $3, $4 FROM job
            "#,
        )
        .bind(&ctx.job_id)
        .bind(ctx.attempt as i32)
        .bind(kind)
        .bind(error)
        .bind(retry_in.map(|d| d.as_secs_f64()))
        .bind(&ctx.worker)
        .execute(pool)
        .await;
        match written {
            Ok(done) => return done.rows_affected() == 1,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "could not record the failed attempt; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn process(
    shared: &Shared,
    args: &serde_json::Value,
    ctx: &mut Ctx,
) -> Result<Done, Failure> {
    let job = EventJob::deserialize(args)
        .map_err(|e| Failure::Permanent(format!("job arguments: {e}")))?;
    let (meta, result) = shared
        .appliers
        .apply(Job {
            id: ctx.job_id.clone(),
            event_id: job.event_id,
            attempt: ctx.attempt as i32,
            worker: ctx.worker.clone(),
        })
        .await;
    if let Some(meta) = meta {
        ctx.svix_id = Some(meta.svix_id);
        ctx.event_type = meta.event_type;
        ctx.object_id = meta.object_id;
        ctx.event_time = meta.event_time;
    }
    result
}

pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
