//! Group commit. Each apalis handler hands its claimed job to one of a few appliers; an
//! applier takes every job waiting (up to a batch) and applies them in one transaction: one
//! statement loads their events, one upsert per event, one statement acks them all, one
//! commit. Under load that replaces a transaction per job (four round trips and a commit
//! each) with one per batch; when jobs arrive one at a time, a batch is one job and nothing
//! waits for company.
//!
//! A job whose event cannot be applied for a reason of its own (missing, undecodable, a
//! panic) is answered alone and left out of its batch. A database error fails the whole
//! transaction; its jobs are then applied one by one, so only the failing one fails. Jobs
//! whose handler has given up waiting (its time limit passed and it wrote the failure) are
//! left out.

use std::{collections::HashMap, panic::AssertUnwindSafe, sync::Arc};

use chrono::{DateTime, Utc};
use clerk_sync_core::{
    event::ClerkEvent,
    mirror::{self, Outcome},
};
use futures::FutureExt as _;
use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::{
    handler::{BeforeApply, panic_message},
    metrics,
};

/// A claimed job, as the handler knows it.
pub struct Job {
    pub id: String,
    pub event_id: i64,
    pub attempt: i32,
    /// The apalis worker holding the claim. With `attempt`, it names the claim: the ack
    /// only lands while the job is still under this very claim (see `transaction`).
    pub worker: String,
}

/// What the stored event says about itself, for the job's log lines.
#[derive(Debug, Default)]
pub struct Meta {
    pub svix_id: String,
    pub event_type: Option<String>,
    pub object_id: Option<String>,
    pub event_time: Option<DateTime<Utc>>,
}

/// How a job that did not fail ended.
#[derive(Debug)]
pub enum Done {
    /// Applied (or found stale, or skipped) and acked in one transaction.
    Acked(Outcome),
    /// The job is no longer under this claim (it was rescued from this worker and
    /// re-enqueued, or claimed again after this attempt timed out), so it was not acked:
    /// whoever holds it now applies it (a no-op if this apply committed).
    NotOurs,
}

/// Why an attempt failed, and so what happens next.
#[derive(Debug)]
pub enum Failure {
    /// Retrying the same bytes cannot help: dead at once, with the reason.
    Permanent(String),
    /// The database, a timeout, a panic: try again later.
    Transient { kind: &'static str, error: String },
}

impl Failure {
    fn from_ref(e: &sqlx::Error) -> Self {
        Self::Transient {
            kind: "transient",
            error: format!("database: {e}"),
        }
    }
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Self::from_ref(&e)
    }
}

pub type Reply = (Option<Meta>, Result<Done, Failure>);

struct Request {
    job: Job,
    reply: oneshot::Sender<Reply>,
}

#[derive(Clone)]
pub struct Appliers {
    queue: mpsc::Sender<Request>,
}

impl Appliers {
    /// Starts `appliers` tasks (each one transaction at a time) taking up to `max_batch`
    /// jobs each. They stop when the last `Appliers` handle is dropped.
    pub fn start(
        pool: PgPool,
        before_apply: Option<BeforeApply>,
        appliers: usize,
        max_batch: usize,
    ) -> Self {
        let (queue, rx) = mpsc::channel(appliers.max(1) * max_batch.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..appliers.max(1) {
            tokio::spawn(applier(
                rx.clone(),
                pool.clone(),
                before_apply.clone(),
                max_batch.max(1),
            ));
        }
        Self { queue }
    }

    pub async fn apply(&self, job: Job) -> Reply {
        let stopped = || {
            (
                None,
                Err(Failure::Transient {
                    kind: "transient",
                    error: "the appliers have stopped".into(),
                }),
            )
        };
        let (reply, answer) = oneshot::channel();
        if self.queue.send(Request { job, reply }).await.is_err() {
            return stopped();
        }
        answer.await.unwrap_or_else(|_| stopped())
    }
}

async fn applier(
    rx: Arc<Mutex<mpsc::Receiver<Request>>>,
    pool: PgPool,
    before_apply: Option<BeforeApply>,
    max_batch: usize,
) {
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            batch
        };
        // A handler that timed out has written its failure and stopped listening.
        let batch: Vec<Request> = batch.into_iter().filter(|r| !r.reply.is_closed()).collect();
        if batch.is_empty() {
            continue;
        }
        let (jobs, replies): (Vec<Job>, Vec<_>) =
            batch.into_iter().map(|r| (r.job, r.reply)).unzip();
        let answers = AssertUnwindSafe(apply_batch(&pool, before_apply.as_ref(), &jobs))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                let error = format!("panicked: {}", panic_message(&panic));
                jobs.iter()
                    .map(|_| {
                        let kind = "panic";
                        let error = error.clone();
                        (None, Err(Failure::Transient { kind, error }))
                    })
                    .collect()
            });
        for (reply, answer) in replies.into_iter().zip(answers) {
            // A handler that timed out is no longer listening; its failure is written.
            let _ = reply.send(answer);
        }
    }
}

async fn apply_batch(pool: &PgPool, hook: Option<&BeforeApply>, jobs: &[Job]) -> Vec<Reply> {
    match counted(pool, hook, jobs).await {
        Ok(answers) => answers,
        // Only an error of the database about what the batch wrote (a constraint, a lock
        // timeout, a deadlock) can be one job's fault; when the connection or the pool
        // fails, trying each job alone would only wait as many times.
        Err(e @ sqlx::Error::Database(_)) if jobs.len() > 1 => {
            tracing::debug!(error = %e, jobs = jobs.len(), "batch failed; applying its jobs one by one");
            let mut answers = Vec::with_capacity(jobs.len());
            for job in jobs {
                answers.push(match counted(pool, hook, std::slice::from_ref(job)).await {
                    Ok(mut one) => one.pop().expect("one answer per job"),
                    Err(e) => (None, Err(e.into())),
                });
            }
            answers
        }
        Err(e) => jobs
            .iter()
            .map(|_| (None, Err(Failure::from_ref(&e))))
            .collect(),
    }
}

async fn counted(
    pool: &PgPool,
    hook: Option<&BeforeApply>,
    jobs: &[Job],
) -> Result<Vec<Reply>, sqlx::Error> {
    let result = transaction(pool, hook, jobs).await;
    if result.is_err() {
        metrics::TRANSACTIONS.inc(&["rolled_back"]);
    }
    result
}

/// id, body, svix_id, event_type, object_id, event_timestamp
type StoredEvent = (
    i64,
    Vec<u8>,
    String,
    Option<String>,
    Option<String>,
    Option<DateTime<Utc>>,
);

/// Applies and acks `jobs` in one transaction. `Err` only for a database error, which
/// rolls back everything; every other failure is one job's answer.
async fn transaction(
    pool: &PgPool,
    hook: Option<&BeforeApply>,
    jobs: &[Job],
) -> Result<Vec<Reply>, sqlx::Error> {
    let mut answers: Vec<Option<Reply>> = jobs.iter().map(|_| None).collect();
    // The same job twice (a claim whose handler timed out, and the claim after it): only
    // the newest can be acked, and one ack statement can only check one claim per job.
    let mut newest: HashMap<&str, i32> = HashMap::new();
    for job in jobs {
        let n = newest.entry(job.id.as_str()).or_insert(job.attempt);
        *n = (*n).max(job.attempt);
    }
    for (i, job) in jobs.iter().enumerate() {
        if newest[job.id.as_str()] != job.attempt {
            answers[i] = Some((None, Ok(Done::NotOurs)));
        }
    }

    let mut tx = pool.begin().await?;
    // Ingest parsed type, object id and time when it stored the event: read, don't re-parse.
    let event_ids: Vec<i64> = jobs.iter().map(|j| j.event_id).collect();
    let rows: Vec<StoredEvent> = sqlx::query_as(
        "SELECT id, body, svix_id, event_type, object_id, event_timestamp \
         FROM clerk_sync.webhook_events WHERE id = ANY($1)",
    )
    .bind(&event_ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut stored: HashMap<i64, StoredEvent> = rows.into_iter().map(|r| (r.0, r)).collect();

    let mut todo = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        if answers[i].is_some() {
            continue;
        }
        let Some((_, body, svix_id, event_type, object_id, event_time)) =
            stored.remove(&job.event_id)
        else {
            let error = format!("event {} is not stored", job.event_id);
            answers[i] = Some((None, Err(Failure::Permanent(error))));
            continue;
        };
        let meta = Meta {
            svix_id,
            event_type,
            object_id,
            event_time,
        };
        let event = match ClerkEvent::decode(&body) {
            Ok(event) => event,
            Err(e) => {
                answers[i] = Some((Some(meta), Err(Failure::Permanent(e.to_string()))));
                continue;
            }
        };
        if let Some(hook) = hook
            && let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| hook(&event)))
        {
            let error = format!("panicked: {}", panic_message(&panic));
            let failure = Failure::Transient {
                kind: "panic",
                error,
            };
            answers[i] = Some((Some(meta), Err(failure)));
            continue;
        }
        todo.push((i, meta, event));
    }

    // Concurrent batches take their parent locks all at once, in key order (apply_all), and
    // then touch their rows in object id order: they queue behind each other on what they
    // share rather than deadlock. Any deadlock left (PostgreSQL breaks it after
    // deadlock_timeout) fails the batch, which is then applied one job at a time. Order
    // within a batch does not matter: the ordering rule lives in each statement.
    todo.sort_by(|a, b| a.1.object_id.cmp(&b.1.object_id));
    let events: Vec<&ClerkEvent> = todo.iter().map(|(_, _, e)| e).collect();
    let outcomes = mirror::apply_all(&mut tx, &events).await?;
    let applied: Vec<_> = todo
        .into_iter()
        .zip(outcomes)
        .map(|((i, meta, _), outcome)| (i, meta, outcome))
        .collect();

    if !applied.is_empty() {
        // The acks commit with the mirror writes or not at all, and come last so the jobs'
        // rows are locked only for the commit. Each lands only under the claim it was made
        // for: the same worker name and the attempts count at that claim (claiming leaves
        // it, a recorded failure or a rescue raises it), so a stale request whose handler
        // timed out never acks a later claim of the same job. `IS NOT DISTINCT FROM` is `=`
        // here (a worker name is never NULL) but not indexable: a generic plan would
        // otherwise walk the lock_by index over every job this worker ever finished.
        let ids: Vec<&str> = applied.iter().map(|(i, ..)| jobs[*i].id.as_str()).collect();
        let attempts: Vec<i32> = applied.iter().map(|(i, ..)| jobs[*i].attempt).collect();
        let workers: Vec<&str> = applied
            .iter()
            .map(|(i, ..)| jobs[*i].worker.as_str())
            .collect();
        let acked: Vec<String> = sqlx::query_scalar(
            r#"
            UPDATE apalis.jobs
            SET status = 'Done',
                attempts = ($2::int4[])[array_position($1::text[], id)],
                last_result = '{"Ok": null}',
                done_at = now()
            WHERE id = ANY($1::text[])
              AND lock_by IS NOT DISTINCT FROM ($3::text[])[array_position($1::text[], id)]
              AND attempts = ($2::int4[])[array_position($1::text[], id)] - 1
              AND status IN ('Queued', 'Running')
            RETURNING id
            "#,
        )
        .bind(&ids)
        .bind(&attempts)
        .bind(&workers)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        metrics::TRANSACTIONS.inc(&["committed"]);
        for (i, meta, outcome) in applied {
            let done = if acked.contains(&jobs[i].id) {
                Done::Acked(outcome)
            } else {
                Done::NotOurs
            };
            answers[i] = Some((Some(meta), Ok(done)));
        }
    }
    Ok(answers
        .into_iter()
        .map(|a| a.expect("every job answered"))
        .collect())
}
