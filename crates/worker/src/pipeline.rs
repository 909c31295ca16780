//! What happens to a claimed job, top to bottom, and the one place that writes its outcome.
//!
//! 1. apalis claims jobs and calls our handler once per job; the handler hands the job to
//!    [`Pipeline::run`] and waits.
//! 2. One of a few appliers takes every job waiting (up to a batch): group commit. When jobs
//!    arrive one at a time a batch is one job, and nothing waits for company.
//! 3. In one transaction it loads their stored events, decodes them, applies them to the
//!    mirror under the ordering rule and acks them ([`Applier::transaction`]).
//! 4. A database error that may be one job's fault (a constraint, a lock timeout, a
//!    deadlock) or a panic fails the whole transaction; its jobs are then tried one by one,
//!    so only the culprit fails.
//! 5. Each job's outcome is logged and counted, and each failure written back: retried
//!    after a backoff, or dead ([`Applier::finish`]).

use std::{
    collections::HashMap,
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use clerk_sync_core::{
    backoff::Backoff,
    events::{self, StoredEvent},
    jobs::{self, Claim, FailureKind, Next},
    mirror::{self, Change, Decoded, Outcome},
};
use futures::FutureExt as _;
use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::metrics;

/// A job as apalis hands it over.
#[derive(Debug)]
pub struct Job {
    pub claim: Claim,
    /// The stored event the job applies, or why its arguments name none.
    pub event_id: Result<i64, String>,
}

/// How the pipeline runs; see the worker's settings.
#[derive(Debug, Clone)]
pub struct Options {
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// The longest one transaction may take; its jobs then fail with a timeout.
    pub job_timeout: Duration,
    /// Transactions applying jobs at once, each on its own connection.
    pub appliers: usize,
    /// The most jobs one transaction applies.
    pub batch: usize,
    pub mirror: mirror::Options,
}

/// Runs before each event is applied, in tests only: a panic there is a failed attempt.
#[cfg(feature = "fault-injection")]
pub type FaultHook = Arc<dyn Fn(&Change) + Send + Sync>;

#[derive(Clone)]
pub struct Pipeline {
    queue: mpsc::Sender<Request>,
}

struct Request {
    job: Job,
    done: oneshot::Sender<()>,
}

impl Pipeline {
    /// Starts the appliers. They stop when the last handle is dropped.
    pub fn start(pool: PgPool, options: Options) -> Self {
        Self::with_applier(Applier {
            pool,
            options,
            #[cfg(feature = "fault-injection")]
            fault: None,
        })
    }

    /// The pipeline with a hook that runs before each event is applied (tests only).
    #[cfg(feature = "fault-injection")]
    pub fn with_fault(pool: PgPool, options: Options, fault: FaultHook) -> Self {
        Self::with_applier(Applier {
            pool,
            options,
            fault: Some(fault),
        })
    }

    fn with_applier(applier: Applier) -> Self {
        let appliers = applier.options.appliers.max(1);
        let (queue, rx) = mpsc::channel(appliers * applier.options.batch.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let applier = Arc::new(applier);
        for _ in 0..appliers {
            tokio::spawn(applier.clone().run(rx.clone()));
        }
        Self { queue }
    }

    /// Hands a claimed job over and waits until its outcome is written. If the appliers
    /// are gone (the process is stopping), the claim is left as it is: the job is rescued
    /// when this worker's heartbeats stop.
    pub async fn run(&self, job: Job) {
        let (done, finished) = oneshot::channel();
        if self.queue.send(Request { job, done }).await.is_ok() {
            let _ = finished.await;
        }
    }
}

struct Applier {
    pool: PgPool,
    options: Options,
    #[cfg(feature = "fault-injection")]
    fault: Option<FaultHook>,
}

/// How one attempt of one job ended.
struct Attempted {
    event: Option<StoredEvent>,
    result: Result<Done, Failure>,
}

enum Done {
    /// Applied (or found stale, or skipped) and acked in one transaction.
    Acked(Outcome),
    /// The job is no longer under this claim (rescued from this worker and claimed again),
    /// so it was not acked: whoever holds it now applies it (a no-op if this one committed).
    NotOurs,
}

#[derive(Debug, Clone)]
struct Failure {
    kind: FailureKind,
    error: String,
}

impl Failure {
    fn new(kind: FailureKind, error: impl Into<String>) -> Self {
        Self {
            kind,
            error: error.into(),
        }
    }

    /// A database error, sorted into what retrying cannot fix and what it may.
    fn database(e: &sqlx::Error) -> Self {
        let kind = if clerk_sync_core::db::is_permanent(e) {
            FailureKind::Permanent
        } else {
            FailureKind::Transient
        };
        Self::new(kind, clerk_sync_core::db::describe(e))
    }
}

/// Why a whole transaction failed.
enum BatchError {
    Database(sqlx::Error),
    Panic(String),
    Timeout(Duration),
}

impl Applier {
    async fn run(self: Arc<Self>, rx: Arc<Mutex<mpsc::Receiver<Request>>>) {
        while let Some(batch) = self.next_batch(&rx).await {
            let jobs: Vec<&Job> = batch.iter().map(|r| &r.job).collect();
            let started = Instant::now();
            let attempted = self.attempt(&jobs).await;
            for (request, attempted) in batch.into_iter().zip(attempted) {
                self.finish(&request.job, attempted, started).await;
                let _ = request.done.send(());
            }
        }
    }

    /// Waits for one job, then takes every other job already waiting, up to a batch.
    async fn next_batch(&self, rx: &Mutex<mpsc::Receiver<Request>>) -> Option<Vec<Request>> {
        let mut rx = rx.lock().await;
        let mut batch = vec![rx.recv().await?];
        while batch.len() < self.options.batch.max(1) {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        Some(batch)
    }

    /// Every job's attempt, in order: applied and acked together, or why not.
    async fn attempt(&self, jobs: &[&Job]) -> Vec<Attempted> {
        match self.guarded(jobs).await {
            Ok(attempted) => attempted,
            Err(BatchError::Database(sqlx::Error::Database(_)) | BatchError::Panic(_))
                if jobs.len() > 1 =>
            {
                tracing::debug!(
                    jobs = jobs.len(),
                    "batch failed; applying its jobs one by one"
                );
                let mut attempted = Vec::with_capacity(jobs.len());
                for job in jobs {
                    attempted.push(match self.guarded(std::slice::from_ref(job)).await {
                        Ok(mut one) => one.pop().expect("one answer per job"),
                        Err(e) => Attempted {
                            event: None,
                            result: Err(Self::failure(e)),
                        },
                    });
                }
                attempted
            }
            Err(e) => {
                let failure = Self::failure(e);
                jobs.iter()
                    .map(|_| Attempted {
                        event: None,
                        result: Err(failure.clone()),
                    })
                    .collect()
            }
        }
    }

    /// One transaction, within the time limit, with panics caught.
    async fn guarded(&self, jobs: &[&Job]) -> Result<Vec<Attempted>, BatchError> {
        let work = AssertUnwindSafe(self.transaction(jobs)).catch_unwind();
        let result = match tokio::time::timeout(self.options.job_timeout, work).await {
            Err(_elapsed) => Err(BatchError::Timeout(self.options.job_timeout)),
            Ok(Err(panic)) => Err(BatchError::Panic(panic_message(&panic))),
            Ok(Ok(Err(e))) => Err(BatchError::Database(e)),
            Ok(Ok(Ok(attempted))) => Ok(attempted),
        };
        if result.is_err() {
            metrics::TRANSACTIONS.inc(&["rolled_back"]);
        }
        result
    }

    fn failure(e: BatchError) -> Failure {
        match e {
            BatchError::Database(e) => Failure::database(&e),
            BatchError::Panic(message) => {
                Failure::new(FailureKind::Panic, format!("panicked: {message}"))
            }
            BatchError::Timeout(limit) => {
                Failure::new(FailureKind::Timeout, format!("timed out after {limit:?}"))
            }
        }
    }

    /// Loads, decodes, applies and acks `jobs` in one transaction. `Err` only for what
    /// fails the transaction as a whole; every other failure is one job's answer.
    async fn transaction(&self, jobs: &[&Job]) -> Result<Vec<Attempted>, sqlx::Error> {
        let mut answers: Vec<Option<Attempted>> = jobs.iter().map(|_| None).collect();
        // The same job twice (an old claim still queued here and the claim after it): only
        // the newest can be acked.
        let mut newest: HashMap<&str, i32> = HashMap::new();
        for job in jobs {
            let n = newest
                .entry(job.claim.job_id.as_str())
                .or_insert(job.claim.attempt);
            *n = (*n).max(job.claim.attempt);
        }
        let mut wanted = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            let refused = if newest[job.claim.job_id.as_str()] != job.claim.attempt {
                Some(Ok(Done::NotOurs))
            } else if job.claim.attempt as u32 > self.options.max_attempts {
                // Re-enqueued again and again by crashed or stopped workers: bounded too.
                let error = format!(
                    "gave up: attempt {} exceeds MAX_ATTEMPTS ({})",
                    job.claim.attempt, self.options.max_attempts
                );
                Some(Err(Failure::new(FailureKind::Exhausted, error)))
            } else {
                match &job.event_id {
                    Ok(id) => {
                        wanted.push(*id);
                        None
                    }
                    Err(e) => Some(Err(Failure::new(
                        FailureKind::Permanent,
                        format!("job arguments: {e}"),
                    ))),
                }
            };
            if let Some(result) = refused {
                answers[i] = Some(Attempted {
                    event: None,
                    result,
                });
            }
        }

        let mut tx = self.pool.begin().await?;
        let mut stored: HashMap<i64, StoredEvent> = events::load(&mut tx, &wanted)
            .await?
            .into_iter()
            .map(|e| (e.id, e))
            .collect();
        let mut todo: Vec<(usize, StoredEvent, Option<Change>)> = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            if answers[i].is_some() {
                continue;
            }
            let id = *job.event_id.as_ref().expect("checked above");
            let Some(event) = stored.remove(&id) else {
                let failure =
                    Failure::new(FailureKind::Permanent, format!("event {id} is not stored"));
                answers[i] = Some(Attempted {
                    event: None,
                    result: Err(failure),
                });
                continue;
            };
            match mirror::decode(&event.body, &self.options.mirror) {
                Ok(Decoded::Change(change)) => {
                    #[cfg(feature = "fault-injection")]
                    if let Some(fault) = &self.fault {
                        fault(&change);
                    }
                    todo.push((i, event, Some(change)));
                }
                Ok(Decoded::Skip(_)) => todo.push((i, event, None)),
                Err(e) => {
                    let failure = Failure::new(FailureKind::Permanent, e.to_string());
                    answers[i] = Some(Attempted {
                        event: Some(event),
                        result: Err(failure),
                    });
                }
            }
        }

        if !todo.is_empty() {
            let changes: Vec<&Change> = todo.iter().filter_map(|(_, _, c)| c.as_ref()).collect();
            let mut applied = mirror::apply_all(&mut tx, &changes, &self.options.mirror)
                .await?
                .into_iter();
            let outcomes: Vec<Outcome> = todo
                .iter()
                .map(|(_, _, c)| match c {
                    Some(_) => applied.next().expect("one outcome per change"),
                    None => Outcome::Skipped,
                })
                .collect();
            let claims: Vec<&Claim> = todo.iter().map(|(i, ..)| &jobs[*i].claim).collect();
            let labels: Vec<&str> = outcomes.iter().map(|o| o.as_str()).collect();
            let acked =
                jobs::ack(&mut tx, &claims, &labels, self.options.max_attempts as i32).await?;
            tx.commit().await?;
            metrics::TRANSACTIONS.inc(&["committed"]);
            for ((i, event, _), outcome) in todo.into_iter().zip(outcomes) {
                let done = if acked.contains(&jobs[i].claim.job_id) {
                    Done::Acked(outcome)
                } else {
                    Done::NotOurs
                };
                answers[i] = Some(Attempted {
                    event: Some(event),
                    result: Ok(done),
                });
            }
        }
        Ok(answers
            .into_iter()
            .map(|a| a.expect("every job answered"))
            .collect())
    }

    /// Writes a failure back, then logs and counts the outcome: one line per job.
    async fn finish(&self, job: &Job, attempted: Attempted, started: Instant) {
        let claim = &job.claim;
        let event = attempted.event.as_ref();
        let event_type = event.and_then(|e| e.event_type.as_deref());
        let duration_ms = started.elapsed().as_millis() as u64;
        macro_rules! line {
            ($level:ident, $outcome:expr, $($rest:tt)*) => {
                tracing::$level!(
                    job.id = %claim.job_id,
                    job.attempt = claim.attempt,
                    svix.id = event.map(|e| e.svix_id.as_str()),
                    event.type = event_type,
                    object.id = event.and_then(|e| e.object_id.as_deref()),
                    outcome = $outcome,
                    duration_ms,
                    $($rest)*
                )
            };
        }
        let failure = match attempted.result {
            Ok(Done::Acked(outcome)) => {
                metrics::JOBS.inc(&[outcome.as_str(), event_type.unwrap_or("")]);
                metrics::DURATION.observe(&[], started.elapsed());
                if let (Some(t), Outcome::Applied) =
                    (event.and_then(|e| e.event_timestamp), outcome)
                {
                    metrics::LAG.observe(&[], (Utc::now() - t).to_std().unwrap_or_default());
                }
                line!(info, outcome.as_str(), "event done");
                return;
            }
            Ok(Done::NotOurs) => {
                line!(
                    warn,
                    "released",
                    "job left this claim (rescued and claimed again); left to its current claim"
                );
                return;
            }
            Err(failure) => failure,
        };
        let Failure { kind, error } = failure;
        let exhausted = kind.retries() && claim.attempt as u32 >= self.options.max_attempts;
        let (next, error) = if !kind.retries() || exhausted {
            let error = if exhausted {
                format!(
                    "{error} (attempt {} of {}, giving up)",
                    claim.attempt, self.options.max_attempts
                )
            } else {
                error
            };
            (Next::Dead, error)
        } else {
            let after = self.options.backoff.delay(claim.attempt as u32);
            (Next::Retry { after }, error)
        };
        if !self.write_failure(claim, kind, &error, next).await {
            line!(
                info,
                "released",
                "attempt failed after the job left this claim (done or claimed again meanwhile): {error}"
            );
            return;
        }
        metrics::FAILED_ATTEMPTS.inc(&[kind.as_str()]);
        match next {
            Next::Dead => {
                metrics::DEAD.inc(&[kind.as_str()]);
                line!(
                    error,
                    "dead",
                    error_kind = kind.as_str(),
                    "job dead-lettered: {error}"
                );
            }
            Next::Retry { after, .. } => {
                line!(
                    warn,
                    "retry",
                    error_kind = kind.as_str(),
                    retry_in_ms = after.as_millis() as u64,
                    "attempt failed: {error}"
                );
            }
        }
    }

    /// Until the failure is written the job is claimed by a live worker and nobody else would
    /// take it, so writing it is retried, with backoff, for as long as it takes; if the
    /// process stops first, the job is rescued once the heartbeats stop. Returns whether it
    /// landed (false: the job left this claim).
    async fn write_failure(
        &self,
        claim: &Claim,
        kind: FailureKind,
        error: &str,
        next: Next,
    ) -> bool {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        for attempt in 1.. {
            match jobs::fail(
                &self.pool,
                claim,
                kind,
                error,
                next,
                self.options.max_attempts as i32,
            )
            .await
            {
                Ok(landed) => return landed,
                Err(e) => {
                    let wait = backoff.delay(attempt);
                    tracing::warn!(job.id = %claim.job_id, error = %clerk_sync_core::db::describe(&e), retry_in_ms = wait.as_millis() as u64, "could not record the failed attempt; trying again");
                    tokio::time::sleep(wait).await;
                }
            }
        }
        unreachable!("the loop only ends by returning")
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
