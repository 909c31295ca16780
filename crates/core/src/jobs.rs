//! The job queue. Every statement on apalis's job table (`apalis.jobs`), on our attempt log
//! (`clerk_sync.job_errors`) and on the wake-up channel lives in this file; nothing else
//! names apalis's state strings.
//!
//! apalis (its `PostgresStorage` backend in the worker) claims jobs with `apalis.get_jobs`
//! (redefined by migration `20261129090000_claim_by_primary_key.sql`), heartbeats, and
//! re-enqueues the jobs of a worker that stopped heartbeating. Everything else a job goes
//! through is here: enqueue, ack, failure with backoff, dead-lettering, replay, stats and
//! pruning.
//!
//! Our lifecycle over apalis's states:
//!
//! | [`JobState`] | `apalis.jobs.status`                                          |
//! |--------------|---------------------------------------------------------------|
//! | pending      | `Pending` (new, replayed, or re-enqueued from a dead worker)  |
//! | running      | `Queued` (claimed by a worker), `Running`                     |
//! | retrying     | `Failed` with attempts left: waits for `run_at`               |
//! | done         | `Done`                                                        |
//! | dead         | `Killed`, or `Failed` with no attempts left                   |

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, Transaction};

/// The apalis queue (`apalis.jobs.job_type`) that carries one job per stored event.
pub const QUEUE: &str = "clerk-sync:event";

/// apalis's own attempt cap on every job we enqueue: a backstop far above the worker's
/// `MAX_ATTEMPTS`, which is what really dead-letters a job. A failed attempt writes the
/// worker's cap into the row, so a job that has failed shows the cap that applies to it.
pub const JOB_MAX_ATTEMPTS: i32 = 1000;

/// A job's arguments: a reference to the stored raw event, never a second copy of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventJob {
    pub event_id: i64,
}

/// Where a job is in its life. See the module docs for apalis's states behind each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Pending,
    Running,
    Retrying,
    Done,
    Dead,
}

impl JobState {
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::Running,
        Self::Retrying,
        Self::Done,
        Self::Dead,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Done => "done",
            Self::Dead => "dead",
        }
    }

    /// The SQL condition, over `apalis.jobs` aliased `j`, that holds for jobs in this state.
    pub fn condition(self) -> &'static str {
        match self {
            Self::Pending => "j.status = 'Pending'",
            Self::Running => "j.status IN ('Queued', 'Running')",
            Self::Retrying => "(j.status = 'Failed' AND j.attempts < j.max_attempts)",
            Self::Done => "j.status = 'Done'",
            Self::Dead => {
                "(j.status = 'Killed' OR (j.status = 'Failed' AND j.attempts >= j.max_attempts))"
            }
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an attempt failed (`clerk_sync.job_errors.kind`), and so what happens next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureKind {
    /// Worth trying again later: the database was unreachable, a lock timed out, ...
    Transient,
    /// Retrying the same event cannot help (malformed, refused by a constraint): dead at once.
    Permanent,
    /// The attempt cap was reached: dead.
    Exhausted,
    /// The attempt panicked: a bug, tried again like a transient failure.
    Panic,
    /// The attempt outlived its time limit: tried again like a transient failure.
    Timeout,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Permanent => "permanent",
            Self::Exhausted => "exhausted",
            Self::Panic => "panic",
            Self::Timeout => "timeout",
        }
    }

    /// Whether a failure of this kind is tried again (until the attempt cap).
    pub fn retries(self) -> bool {
        matches!(self, Self::Transient | Self::Panic | Self::Timeout)
    }
}

/// A worker's claim on a job: it names the claim, not only the job, so that a write made
/// for one claim never lands on a later one (after a rescue, or a retry of an attempt that
/// outlived its time limit). Claiming leaves `attempts` at the count before this attempt;
/// a recorded failure or a rescue raises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub job_id: String,
    /// This attempt's number, 1-based.
    pub attempt: i32,
    /// The apalis worker holding the claim.
    pub worker: String,
}

/// A fresh job id (`apalis.jobs.id` is a ULID), chosen before the event row is written so
/// that the event can name its job.
pub fn new_job_id() -> ulid::Ulid {
    ulid::Ulid::generate()
}

/// Enqueues the jobs of stored events (job id, event id) inside the caller's transaction,
/// in one statement that also wakes the workers (once, when the transaction commits).
pub async fn enqueue(
    conn: &mut PgConnection,
    jobs: &[(ulid::Ulid, i64)],
) -> Result<(), sqlx::Error> {
    let ids: Vec<String> = jobs.iter().map(|(id, _)| id.to_string()).collect();
    let events: Vec<i64> = jobs.iter().map(|(_, event)| *event).collect();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"
        WITH queued AS (
            {INSERT_JOBS}
            SELECT j.id, j.event_id
            FROM unnest($1::text[], $2::int8[]) AS j(id, event_id)) s
            RETURNING id
        ), woken AS ({WAKE} FROM (SELECT 1 FROM queued LIMIT 1) q)
        SELECT count(*) FROM woken
        "#
    )))
    .bind(&ids)
    .bind(&events)
    .bind(QUEUE)
    .bind(JOB_MAX_ATTEMPTS)
    .bind(WAKEUP)
    .bind(wakeup_payload())
    .execute(conn)
    .await?;
    Ok(())
}

/// The insert of new jobs, over a `SELECT` of (job id, event id) that follows it; binds
/// `$3` = [`QUEUE`] and `$4` = [`JOB_MAX_ATTEMPTS`].
const INSERT_JOBS: &str = "\
    INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority)
    SELECT id, $3, convert_to(json_build_object('event_id', event_id)::text, 'UTF8'),
           'Pending', 0, $4, now(), 0
    FROM (";

/// One wake-up, over a `FROM` that follows it: binds `$5` = [`WAKEUP`] and `$6` =
/// [`wakeup_payload`]. Migration `20261201130000_lean_writes.sql` replaced apalis's
/// per-row insert trigger with this: the payload is the same for every job, so the
/// notifications of one transaction fold into one.
const WAKE: &str = "SELECT pg_notify($5, $6)";

/// The wake-up's payload: apalis's listener wants a queue and a job id, and only wakes a
/// worker of that queue, which then claims whatever is due; the id is a fixed one.
fn wakeup_payload() -> String {
    serde_json::json!({ "job_type": QUEUE, "id": ulid::Ulid::nil().to_string() }).to_string()
}

/// A verified delivery to store: the raw event and what ingest parsed from it.
#[derive(Debug, Clone, Copy)]
pub struct NewEvent<'a> {
    pub svix_id: &'a str,
    /// The svix-id, svix-timestamp and svix-signature headers as delivered.
    pub headers: &'a serde_json::Value,
    pub body: &'a [u8],
    pub event_type: Option<&'a str>,
    pub object_id: Option<&'a str>,
    pub event_timestamp: Option<DateTime<Utc>>,
}

/// Stores deliveries and their jobs in one statement (so in one commit when the caller
/// runs it outside a transaction), waking the workers once. A svix-id stored before, or
/// earlier in `events`, stores nothing: the result has one (svix-id, event id) per event
/// stored, and none for a duplicate. ON CONFLICT waits for a concurrent insert of the same
/// svix-id to commit or roll back, so of simultaneous deliveries exactly one is stored.
pub async fn store_events(
    conn: &mut PgConnection,
    events: &[NewEvent<'_>],
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let svix_ids: Vec<&str> = events.iter().map(|e| e.svix_id).collect();
    let headers: Vec<&serde_json::Value> = events.iter().map(|e| e.headers).collect();
    let bodies: Vec<&[u8]> = events.iter().map(|e| e.body).collect();
    let types: Vec<Option<&str>> = events.iter().map(|e| e.event_type).collect();
    let objects: Vec<Option<&str>> = events.iter().map(|e| e.object_id).collect();
    let times: Vec<Option<DateTime<Utc>>> = events.iter().map(|e| e.event_timestamp).collect();
    let job_ids: Vec<String> = events.iter().map(|_| new_job_id().to_string()).collect();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        r#"
        WITH stored AS (
            INSERT INTO clerk_sync.webhook_events
                (svix_id, headers, body, event_type, object_id, event_timestamp, job_id)
            SELECT * FROM unnest($1::text[], $2::jsonb[], $7::bytea[], $8::text[], $9::text[],
                                 $10::timestamptz[], $11::text[])
            ON CONFLICT (svix_id) DO NOTHING
            RETURNING id, svix_id, job_id
        ), queued AS (
            {INSERT_JOBS} SELECT job_id AS id, id AS event_id FROM stored) s
            RETURNING 1
        ), woken AS ({WAKE} FROM (SELECT 1 FROM queued LIMIT 1) q)
        SELECT s.svix_id, s.id FROM stored s, (SELECT count(*) FROM woken) w
        "#
    )))
    .bind(&svix_ids)
    .bind(&headers)
    .bind(QUEUE)
    .bind(JOB_MAX_ATTEMPTS)
    .bind(WAKEUP)
    .bind(wakeup_payload())
    .bind(&bodies)
    .bind(&types)
    .bind(&objects)
    .bind(&times)
    .bind(&job_ids)
    .fetch_all(conn)
    .await
}

/// Marks claimed jobs done inside the transaction that applied their events, so the acks
/// commit with the mirror writes or not at all. `outcomes[i]` (`applied`, `stale`,
/// `skipped`) is kept as the job's result, and `max_attempts` (the worker's cap) as the cap
/// that applied. Each ack lands only under the claim it was made for; returns the ids that
/// were acked.
pub async fn ack(
    tx: &mut Transaction<'_, Postgres>,
    claims: &[&Claim],
    outcomes: &[&str],
    max_attempts: i32,
) -> Result<Vec<String>, sqlx::Error> {
    let ids: Vec<&str> = claims.iter().map(|c| c.job_id.as_str()).collect();
    let attempts: Vec<i32> = claims.iter().map(|c| c.attempt).collect();
    let workers: Vec<&str> = claims.iter().map(|c| c.worker.as_str()).collect();
    // `IS NOT DISTINCT FROM` is `=` here (a worker name is never NULL) but not indexable:
    // a generic plan would otherwise walk the lock_by index over every job this worker ever
    // finished (BENCHMARKS.md, "how it got there").
    sqlx::query_scalar(
        r#"
        UPDATE apalis.jobs j
        SET status = 'Done', attempts = a.attempt, done_at = now(), max_attempts = $5,
            last_result = jsonb_build_object('Ok', a.outcome)
        FROM unnest($1::text[], $2::int4[], $3::text[], $4::text[])
             AS a(id, attempt, worker, outcome)
        WHERE j.id = a.id
          AND j.lock_by IS NOT DISTINCT FROM a.worker
          AND j.attempts = a.attempt - 1
          AND j.status IN ('Queued', 'Running')
        RETURNING j.id
        "#,
    )
    .bind(&ids)
    .bind(&attempts)
    .bind(&workers)
    .bind(outcomes)
    .bind(max_attempts)
    .fetch_all(&mut **tx)
    .await
}

/// What happens to a job after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Tried again after `after`.
    Retry { after: Duration },
    /// Dead-lettered: kept with its errors until an operator replays or discards it.
    Dead,
}

/// Writes a failed attempt back: its error kept in `clerk_sync.job_errors`, and the job
/// retrying with its next attempt moved out (apalis would otherwise fetch it again at once),
/// or dead; `max_attempts` (the worker's cap) is written as the cap that applies. Only while the job is still under this claim and unfinished: if a commit whose
/// answer was lost did land, the job stays done, and nothing is written. Returns whether it
/// landed.
pub async fn fail(
    pool: &PgPool,
    claim: &Claim,
    kind: FailureKind,
    error: &str,
    next: Next,
    max_attempts: i32,
) -> Result<bool, sqlx::Error> {
    let retry_in = match next {
        Next::Retry { after } => Some(after.as_secs_f64()),
        Next::Dead => None,
    };
    let written = sqlx::query(
        r#"
        WITH job AS (
            UPDATE apalis.jobs j
            SET status = CASE WHEN $5::float8 IS NULL THEN 'Killed' ELSE 'Failed' END,
                attempts = $2,
                max_attempts = $7,
                last_result = jsonb_build_object('Err', $4::text),
                done_at = now(),
                run_at = COALESCE(now() + make_interval(secs => $5::float8), j.run_at)
            WHERE j.id = $1 AND j.lock_by IS NOT DISTINCT FROM $6 AND j.attempts = $2 - 1
              AND j.status IN ('Queued', 'Running')
            RETURNING j.id
        )
        INSERT INTO clerk_sync.job_errors (job_id, attempt, kind, error)
        SELECT id, $2, $3, $4 FROM job
        "#,
    )
    .bind(&claim.job_id)
    .bind(claim.attempt)
    .bind(kind.as_str())
    .bind(error)
    .bind(retry_in)
    .bind(&claim.worker)
    .bind(max_attempts)
    .execute(pool)
    .await?;
    Ok(written.rows_affected() == 1)
}

/// The advisory-lock class of worker sessions: a claiming worker holds
/// `pg_advisory_lock(SESSION_LOCK, hashtext(<its apalis name>))` on a connection of its own
/// for as long as it claims. PostgreSQL releases it the moment that session ends (the process
/// died, its host or link went away and keepalives noticed), which is how other workers learn
/// within a second that its jobs are orphans, instead of after three missed heartbeats.
pub const SESSION_LOCK: i32 = 0x636c_6b73;

/// How the names of workers that hold a session lock end. A worker of an older release
/// (without a session lock, during a rolling upgrade) is never taken for dead by the lock:
/// its jobs are rescued by the heartbeat rule only.
pub const SESSION_SUFFIX: &str = "-s";

/// A fresh apalis worker name for this process, one that holds its session lock.
pub fn session_worker_name() -> String {
    format!(
        "clerk-sync-worker-{}-{}{SESSION_SUFFIX}",
        std::process::id(),
        ulid::Ulid::generate()
    )
}

/// Takes `worker`'s session lock on `conn` (a connection of its own, not a pool's, kept
/// open while the worker claims). Returns false if another session holds it.
pub async fn lock_session(conn: &mut PgConnection, worker: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
        .bind(SESSION_LOCK)
        .bind(worker)
        .fetch_one(conn)
        .await
}

/// Puts back the jobs held by session-locked workers whose session lock is gone (their
/// database session ended), and wakes the workers. Workers seen in the last hour are
/// checked; older ones are the heartbeat rule's. Returns how many jobs were put back.
pub async fn rescue_orphans(pool: &PgPool) -> Result<u64, sqlx::Error> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        r#"
        WITH gone AS (
            SELECT w.id FROM apalis.workers w
            WHERE w.worker_type = $1
              AND w.last_seen > now() - interval '1 hour'
              AND right(w.id, length($2)) = $2
              AND NOT EXISTS (
                  SELECT 1 FROM pg_locks l
                  WHERE l.locktype = 'advisory' AND l.granted
                    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                    AND l.classid = $3::int4::oid
                    AND l.objid = hashtext(w.id)::oid
                    AND l.objsubid = 2)
        ), stale AS (
            SELECT j.id FROM apalis.jobs j JOIN gone ON j.lock_by = gone.id
            WHERE {running} AND j.job_type = $1
            FOR UPDATE OF j SKIP LOCKED
        ), rescued AS (
            UPDATE apalis.jobs j
            SET status = 'Pending', done_at = NULL, lock_by = NULL, lock_at = NULL,
                attempts = j.attempts + 1,
                last_result = '{{"Err": "Re-enqueued: the database session of its worker ended."}}'
            FROM stale WHERE j.id = stale.id
            RETURNING j.id
        ), woken AS (
            SELECT pg_notify('{WAKEUP}',
                json_build_object('job_type', $1::text, 'id', min(id), 'run_at', now())::text)
            FROM rescued HAVING count(*) > 0
        )
        SELECT (SELECT count(*) FROM rescued) + 0 * (SELECT count(*) FROM woken)
        "#,
        running = JobState::Running.condition(),
    )))
    .bind(QUEUE)
    .bind(SESSION_SUFFIX)
    .bind(SESSION_LOCK)
    .fetch_one(pool)
    .await
    .map(|n: i64| n as u64)
}

/// Time from an event's arrival (`received_at`) to its job being done, in milliseconds, at
/// each quantile of `quantiles` (0..=1), over every done job; empty without done jobs.
pub async fn lag_quantiles_ms(pool: &PgPool, quantiles: &[f64]) -> Result<Vec<f64>, sqlx::Error> {
    let row: Option<Vec<f64>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        r#"
        SELECT percentile_cont($2::float8[]) WITHIN GROUP (
                   ORDER BY extract(epoch FROM j.done_at - e.received_at) * 1000)
        FROM apalis.jobs j JOIN clerk_sync.webhook_events e ON e.job_id = j.id
        WHERE j.job_type = $1 AND {done}
        "#,
        done = JobState::Done.condition(),
    )))
    .bind(QUEUE)
    .bind(quantiles)
    .fetch_one(pool)
    .await?;
    Ok(row.unwrap_or_default())
}

/// The queue as operators see it: jobs by state, the oldest pending job's age, events stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub pending: i64,
    pub running: i64,
    pub retrying: i64,
    pub done: i64,
    /// Of the done jobs, those whose event type is not mirrored (stored and acknowledged).
    pub skipped: i64,
    /// Of the done jobs, dead letters an operator discarded (resolved without replaying).
    pub discarded: i64,
    pub dead: i64,
    /// Age of the oldest job that is due and waiting to run (pending or retrying).
    pub oldest_pending_age_seconds: i64,
    pub events_received: i64,
    /// Which counts are estimates (only ever with [`Stats::read_capped`]).
    pub estimated: Estimated,
}

/// Which of [`Stats`]'s large counts are the planner's estimates rather than counts: those
/// that were past the cap of [`Stats::read_capped`]. Pending, running, retrying and dead
/// jobs are always counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Estimated {
    /// `done`, `skipped` and `discarded`.
    pub done: bool,
    pub events_received: bool,
}

impl Estimated {
    pub fn any(self) -> bool {
        self.done || self.events_received
    }
}

/// The planner's estimates of the rows each `FROM … WHERE …` (no parameters) matches: its
/// statistics scaled to the tables' current sizes, in one round trip (each is an InitPlan
/// of one `EXPLAIN`, whose estimate is that of the scan itself).
async fn estimates(
    conn: &mut PgConnection,
    from_wheres: &[String],
) -> Result<Vec<i64>, sqlx::Error> {
    let arrays: Vec<String> = from_wheres
        .iter()
        .map(|f| format!("ARRAY(SELECT 1 {f})"))
        .collect();
    let plan: serde_json::Value = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "EXPLAIN (FORMAT JSON) SELECT {}",
        arrays.join(", ")
    )))
    .fetch_one(conn)
    .await?;
    let subplans = plan[0]["Plan"]["Plans"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // The planner never estimates fewer than one row, even where its statistics say none.
    Ok((0..from_wheres.len())
        .map(|i| {
            let rows = subplans.get(i).and_then(|p| p["Plan Rows"].as_f64());
            rows.filter(|r| *r > 1.0).unwrap_or(0.0) as i64
        })
        .collect())
}

impl Stats {
    /// Every count exact (`clerk-sync status`): counts every done job and every stored
    /// event, so it takes a while on a large queue.
    pub async fn read(pool: &PgPool) -> Result<Self, sqlx::Error> {
        Self::counted(&mut *pool.acquire().await?, None).await
    }

    /// Like [`Stats::read`], but done jobs and stored events are counted up to `cap` only;
    /// beyond it they are estimated from the planner's statistics and marked so in
    /// [`Stats::estimated`] (the console's overview, which must answer at once).
    pub async fn read_capped(pool: &PgPool, cap: i64) -> Result<Self, sqlx::Error> {
        let cap = cap.max(0);
        let mut tx = small_reads(pool).await?;
        let mut stats = Self::counted(&mut tx, Some(cap)).await?;
        // Past the cap, the planner's estimates; what was counted is a lower bound of each.
        stats.estimated = Estimated {
            done: stats.done > cap,
            events_received: stats.events_received > cap,
        };
        if stats.estimated.any() {
            let jobs = format!("FROM apalis.jobs j WHERE j.job_type = '{QUEUE}'");
            let e = estimates(
                &mut tx,
                &[
                    format!("{jobs} AND {}", JobState::Done.condition()),
                    format!("{jobs} AND (j.last_result->>'Ok') = 'skipped'"),
                    format!("{jobs} AND (j.last_result->>'Ok') = 'discarded'"),
                    "FROM clerk_sync.webhook_events".to_owned(),
                ],
            )
            .await?;
            if stats.estimated.done {
                stats.done = stats.done.max(e[0]);
                stats.skipped = stats.skipped.max(e[1].min(stats.done));
                stats.discarded = stats.discarded.max(e[2].min(stats.done));
            }
            if stats.estimated.events_received {
                stats.events_received = stats.events_received.max(e[3]);
            }
        }
        tx.commit().await?;
        Ok(stats)
    }

    /// The counts, done jobs and stored events only up to `cap + 1` when there is a cap.
    async fn counted(conn: &mut PgConnection, cap: Option<i64>) -> Result<Self, sqlx::Error> {
        // One statement, so one snapshot: a job is counted in one state only. The jobs that
        // are not done are few and come from the `unfinished` index; done jobs and events
        // are counted up to `$2` (`LIMIT NULL` is no limit).
        let row: (i64, i64, i64, i64, i64, i64, i64, i64, i64) =
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                r#"
            SELECT o.*, d.*,
                   (SELECT count(*) FROM (SELECT 1 FROM clerk_sync.webhook_events LIMIT $2) e)
            FROM (
                SELECT
                    count(*) FILTER (WHERE {pending}),
                    count(*) FILTER (WHERE {running}),
                    count(*) FILTER (WHERE {retrying}),
                    count(*) FILTER (WHERE {dead}),
                    COALESCE(extract(epoch FROM now() - min(j.run_at) FILTER (
                        WHERE ({pending} OR {retrying}) AND j.run_at <= now()))::int8, 0)
                FROM apalis.jobs j
                WHERE j.job_type = $1 AND j.status <> 'Done'
            ) o, (
                SELECT count(*),
                       count(*) FILTER (WHERE s.outcome = 'skipped'),
                       count(*) FILTER (WHERE s.outcome = 'discarded')
                FROM (SELECT j.last_result->>'Ok' AS outcome FROM apalis.jobs j
                      WHERE j.job_type = $1 AND {done} LIMIT $2) s
            ) d
            "#,
                pending = JobState::Pending.condition(),
                running = JobState::Running.condition(),
                retrying = JobState::Retrying.condition(),
                dead = JobState::Dead.condition(),
                done = JobState::Done.condition(),
            )))
            .bind(QUEUE)
            .bind(cap.map(|c| c + 1))
            .fetch_one(conn)
            .await?;
        Ok(Self {
            pending: row.0,
            running: row.1,
            retrying: row.2,
            dead: row.3,
            oldest_pending_age_seconds: row.4.max(0),
            done: row.5,
            skipped: row.6,
            discarded: row.7,
            events_received: row.8,
            estimated: Estimated::default(),
        })
    }

    pub fn by_state(&self) -> [(JobState, i64); 5] {
        [
            (JobState::Pending, self.pending),
            (JobState::Running, self.running),
            (JobState::Retrying, self.retrying),
            (JobState::Done, self.done),
            (JobState::Dead, self.dead),
        ]
    }

    /// Nothing left to run now or later: no job pending, running or retrying.
    pub fn settled(&self) -> bool {
        self.pending == 0 && self.running == 0 && self.retrying == 0
    }
}

/// One job as the queue holds it, in our vocabulary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    pub id: String,
    pub state: JobState,
    pub attempts: i32,
    pub max_attempts: i32,
    /// When it runs next (pending, retrying) or last ran.
    pub run_at: DateTime<Utc>,
    /// The worker holding or last holding it.
    pub lock_by: Option<String>,
    pub done_at: Option<DateTime<Utc>>,
    /// apalis's last result: `{"Ok": "applied"}`, `{"Err": "..."}`.
    pub last_result: Option<serde_json::Value>,
}

impl Job {
    /// The SQL expression of our state name, over `apalis.jobs` aliased `j`.
    fn state_sql() -> String {
        let mut case = String::from("CASE");
        for state in JobState::ALL {
            case.push_str(&format!(
                " WHEN {} THEN '{}'",
                state.condition(),
                state.as_str()
            ));
        }
        case + " END"
    }

    fn from_row(row: JobRow) -> Self {
        let state = JobState::ALL
            .into_iter()
            .find(|s| s.as_str() == row.state)
            .expect("the CHECK on status admits only states we map");
        Self {
            id: row.id,
            state,
            attempts: row.attempts,
            max_attempts: row.max_attempts,
            run_at: row.run_at,
            lock_by: row.lock_by,
            done_at: row.done_at,
            last_result: row.last_result,
        }
    }
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: String,
    state: String,
    attempts: i32,
    max_attempts: i32,
    run_at: DateTime<Utc>,
    lock_by: Option<String>,
    done_at: Option<DateTime<Utc>>,
    last_result: Option<serde_json::Value>,
}

/// The SQL expression of a job's state name (`pending`, …), over `apalis.jobs` aliased `j`.
pub fn state_sql() -> String {
    Job::state_sql()
}

/// The jobs with these ids (all of the queue's when `ids` is None), ordered by id.
pub async fn find(pool: &PgPool, ids: Option<&[String]>) -> Result<Vec<Job>, sqlx::Error> {
    let rows: Vec<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT j.id, {} AS state, j.attempts, j.max_attempts, j.run_at, j.lock_by, j.done_at, \
                j.last_result \
         FROM apalis.jobs j WHERE j.job_type = $1 AND ($2::text[] IS NULL OR j.id = ANY($2)) \
         ORDER BY j.id",
        Job::state_sql()
    )))
    .bind(QUEUE)
    .bind(ids)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Job::from_row).collect())
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

/// Which jobs an operator means (`clerk-sync jobs`, the console's `/jobs`): every field
/// narrows, none set is every job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<JobState>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Received at or after (by the job id, a ULID minted on receipt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Received before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// A job id, a svix-id, a Clerk object id (the event's object, or a membership's user or
    /// organization through the mirror) or a user's primary email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
}

/// The smallest ULID minted at `t`: job ids compare with it as times do.
fn ulid_floor(t: DateTime<Utc>) -> String {
    ulid::Ulid::from_parts(t.timestamp_millis().max(0) as u64, 0).to_string()
}

/// `FROM` of every job listing: the job (`j`) and its stored event (`e`).
const JOBS_FROM: &str = " FROM apalis.jobs j LEFT JOIN clerk_sync.webhook_events e ON e.job_id = j.id \
     WHERE j.job_type = ";

impl JobFilter {
    /// Appends `AND …` for each set field.
    fn push_where(&self, qb: &mut QueryBuilder<Postgres>) {
        if let Some(state) = self.state {
            qb.push(format_args!(" AND {}", state.condition()));
        }
        if let Some(t) = &self.event_type {
            qb.push(" AND e.event_type = ").push_bind(t.clone());
        }
        if let Some(t) = self.since {
            qb.push(" AND j.id >= ").push_bind(ulid_floor(t));
        }
        if let Some(t) = self.until {
            qb.push(" AND j.id < ").push_bind(ulid_floor(t));
        }
        if let Some(q) = self.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            qb.push(" AND (e.svix_id = ")
                .push_bind(q.to_owned())
                .push(" OR e.job_id = ")
                .push_bind(q.to_owned())
                .push(" OR e.object_id = ")
                .push_bind(q.to_owned());
            // Children of the object (a user's or organization's memberships), by the mirror.
            for kind in crate::mirror::KINDS {
                for parent in kind.parents {
                    let Some(p) = crate::mirror::Kind::by_name(parent.kind) else {
                        continue;
                    };
                    if q.starts_with(p.id_prefix) {
                        qb.push(format_args!(
                            " OR e.object_id = ANY(ARRAY(SELECT c.id FROM {} c WHERE c.{} = ",
                            kind.table, parent.column
                        ))
                        .push_bind(q.to_owned())
                        .push("))");
                    }
                }
            }
            if q.contains('@') {
                qb.push(
                    " OR e.object_id = ANY(ARRAY(SELECT u.id FROM clerk.users u \
                     WHERE lower(u.primary_email_address) = lower(",
                )
                .push_bind(q.to_owned())
                .push(")))");
            }
            qb.push(")");
        }
    }

    fn query(&self, select: &str) -> QueryBuilder<Postgres> {
        let mut qb = QueryBuilder::new(select);
        qb.push(JOBS_FROM).push_bind(QUEUE);
        self.push_where(&mut qb);
        qb
    }
}

/// One job in a listing, with its event and its last error.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobSummary {
    pub job_id: String,
    pub event_id: Option<i64>,
    pub svix_id: Option<String>,
    pub event_type: Option<String>,
    /// The Clerk object the event is about (`data.id`).
    pub object_id: Option<String>,
    pub state: JobState,
    /// A done job's result: `applied`, `stale` (older than the row), `skipped` (not
    /// mirrored) or `discarded` (an operator resolved the dead letter without replaying).
    pub outcome: Option<String>,
    pub attempts: i32,
    /// The attempt cap that applies to it (the worker's `MAX_ATTEMPTS` once a worker has
    /// handled it; apalis's backstop before).
    pub max_attempts: i32,
    /// When a retrying job runs next.
    pub next_retry_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub received_at: Option<DateTime<Utc>>,
    /// The last change: received, claimed, failed or finished.
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct SummaryRow {
    job_id: String,
    event_id: Option<i64>,
    svix_id: Option<String>,
    event_type: Option<String>,
    object_id: Option<String>,
    state: String,
    outcome: Option<String>,
    attempts: i32,
    max_attempts: i32,
    run_at: DateTime<Utc>,
    last_error: Option<String>,
    received_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

impl From<SummaryRow> for JobSummary {
    fn from(r: SummaryRow) -> Self {
        let state =
            JobState::parse(&r.state).expect("the CHECK on status admits only states we map");
        Self {
            next_retry_at: (state == JobState::Retrying).then_some(r.run_at),
            job_id: r.job_id,
            event_id: r.event_id,
            svix_id: r.svix_id,
            event_type: r.event_type,
            object_id: r.object_id,
            state,
            outcome: r.outcome,
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            last_error: r.last_error,
            received_at: r.received_at,
            updated_at: r.updated_at,
        }
    }
}

fn summary_select() -> String {
    format!(
        "SELECT j.id AS job_id, e.id AS event_id, e.svix_id, e.event_type, e.object_id, \
                {state} AS state, j.last_result->>'Ok' AS outcome, j.attempts, j.max_attempts, \
                j.run_at, COALESCE(le.error, j.last_result->>'Err') AS last_error, \
                e.received_at, \
                GREATEST(e.received_at, j.lock_at, j.done_at, le.failed_at, \
                         CASE WHEN e.id IS NULL THEN j.run_at END) AS updated_at",
        state = Job::state_sql()
    )
}

/// The last failed attempt's error of job `j` (markers of replays and discards aside).
const LAST_ERROR_JOIN: &str = " LEFT JOIN LATERAL (SELECT je.error, je.failed_at \
     FROM clerk_sync.job_errors je WHERE je.job_id = j.id \
       AND je.kind NOT IN ('replayed', 'discarded') ORDER BY je.id DESC LIMIT 1) le ON true";

/// A page of a listing, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page {
    pub rows: Vec<JobSummary>,
    /// How many jobs match in all (counted up to [`COUNT_CAP`]).
    pub total: Total,
    /// Where the next page starts (pass as `after`), if there is one.
    pub next: Option<String>,
}

/// A count that stops at a cap, so that counting stays cheap on a large queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Total {
    pub count: i64,
    /// Whether `count` is exact (false: at least `count`).
    pub exact: bool,
}

impl std::fmt::Display for Total {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.exact {
            write!(f, "{}", self.count)
        } else {
            write!(f, "more than {}", self.count)
        }
    }
}

/// Listings count their matches up to this many.
pub const COUNT_CAP: i64 = 10_000;

/// Jobs matching `filter`, newest first, at most `limit` of them, starting after the job id
/// `after` (a page's `next`). Keyset-paginated by job id, so every page costs the same.
pub async fn list(
    pool: &PgPool,
    filter: &JobFilter,
    after: Option<&str>,
    limit: i64,
) -> Result<Page, sqlx::Error> {
    let limit = limit.clamp(1, 10_000);
    let mut qb = QueryBuilder::new(summary_select());
    qb.push(JOBS_FROM.replace(" WHERE j.job_type = ", LAST_ERROR_JOIN) + " WHERE j.job_type = ")
        .push_bind(QUEUE);
    filter.push_where(&mut qb);
    if let Some(after) = after {
        qb.push(" AND j.id < ").push_bind(after.to_owned());
    }
    qb.push(" ORDER BY j.id DESC LIMIT ").push_bind(limit + 1);
    let mut rows: Vec<JobSummary> = qb
        .build_query_as::<SummaryRow>()
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(JobSummary::from)
        .collect();
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.job_id.clone())
    } else {
        None
    };
    let total = count_capped(pool, filter, COUNT_CAP).await?;
    Ok(Page { rows, total, next })
}

/// How many jobs match `filter`, counted up to `cap`.
pub async fn count_capped(
    pool: &PgPool,
    filter: &JobFilter,
    cap: i64,
) -> Result<Total, sqlx::Error> {
    let mut qb = filter.query("SELECT count(*) FROM (SELECT 1");
    qb.push(" LIMIT ").push_bind(cap + 1).push(") s");
    let n: i64 = qb.build_query_scalar().fetch_one(pool).await?;
    Ok(Total {
        count: n.min(cap),
        exact: n <= cap,
    })
}

/// How many jobs match `filter`, exactly.
pub async fn count(pool: &PgPool, filter: &JobFilter) -> Result<i64, sqlx::Error> {
    filter
        .query("SELECT count(*)")
        .build_query_scalar()
        .fetch_one(pool)
        .await
}

/// One job by its job id or its event's svix-id.
pub async fn get(pool: &PgPool, id: &str) -> Result<Option<JobSummary>, sqlx::Error> {
    let mut qb = QueryBuilder::new(summary_select());
    qb.push(JOBS_FROM.replace(" WHERE j.job_type = ", LAST_ERROR_JOIN) + " WHERE j.job_type = ")
        .push_bind(QUEUE)
        .push(" AND j.id = (SELECT coalesce((SELECT j2.id FROM apalis.jobs j2 WHERE j2.id = ")
        .push_bind(id.to_owned())
        .push("), (SELECT e2.job_id FROM clerk_sync.webhook_events e2 WHERE e2.svix_id = ")
        .push_bind(id.to_owned())
        .push(")))");
    Ok(qb
        .build_query_as::<SummaryRow>()
        .fetch_optional(pool)
        .await?
        .map(JobSummary::from))
}

/// One line of a job's history: a failed attempt, or an operator's replay or discard.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Attempt {
    /// The attempt's number since the job was enqueued or last replayed; for a replay or a
    /// discard, the attempts made until then.
    pub attempt: i32,
    /// `transient`, `permanent`, `exhausted`, `panic`, `timeout`, or the markers `replayed`
    /// and `discarded`.
    pub kind: String,
    /// The error, or for a marker who did it.
    pub error: String,
    pub at: DateTime<Utc>,
}

impl Attempt {
    /// Whether this line marks an operator's action rather than a failed attempt.
    pub fn is_marker(&self) -> bool {
        matches!(self.kind.as_str(), "replayed" | "discarded")
    }
}

/// A job's history, oldest first.
pub async fn history(pool: &PgPool, job_id: &str) -> Result<Vec<Attempt>, sqlx::Error> {
    sqlx::query_as(
        "SELECT attempt, kind, error, failed_at AS at FROM clerk_sync.job_errors \
         WHERE job_id = $1 ORDER BY id",
    )
    .bind(job_id)
    .fetch_all(pool)
    .await
}

/// Which dead jobs an action is about: given ids (job ids or svix-ids), or every dead job
/// matching a filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Selection {
    Ids(Vec<String>),
    Filter(JobFilter),
}

impl Selection {
    /// The selected jobs that are dead, locked for the rest of the transaction, with their
    /// attempts so far: `(id, attempts)`.
    async fn lock_dead(&self, conn: &mut PgConnection) -> Result<Vec<(String, i32)>, sqlx::Error> {
        let mut qb = QueryBuilder::new("SELECT j.id, j.attempts");
        qb.push(JOBS_FROM).push_bind(QUEUE);
        qb.push(format_args!(" AND {}", JobState::Dead.condition()));
        match self {
            Self::Ids(ids) => {
                qb.push(" AND (j.id = ANY(")
                    .push_bind(ids.clone())
                    .push(") OR e.svix_id = ANY(")
                    .push_bind(ids.clone())
                    .push("))");
            }
            Self::Filter(filter) => filter.push_where(&mut qb),
        }
        qb.push(" ORDER BY j.id FOR UPDATE OF j");
        qb.build_query_as().fetch_all(conn).await
    }
}

/// Puts dead jobs back in the queue with fresh attempts, marks each replay in its history
/// (`note` says by whom), and wakes the workers at once (the notification a new job sends).
/// Replaying is idempotent: a job that is no longer dead is not touched, and the versioned
/// upserts make a re-applied event harmless. Returns the replayed job ids.
pub async fn replay(
    conn: &mut PgConnection,
    selection: &Selection,
    note: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let dead = selection.lock_dead(conn).await?;
    let (ids, attempts): (Vec<String>, Vec<i32>) = dead.into_iter().unzip();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"
        WITH replayed AS (
            UPDATE apalis.jobs j
            SET status = 'Pending', attempts = 0, run_at = now(), lock_by = NULL,
                lock_at = NULL, done_at = NULL, last_result = NULL
            WHERE j.id = ANY($1)
            RETURNING j.id, j.job_type, j.run_at
        ), marked AS (
            INSERT INTO clerk_sync.job_errors (job_id, attempt, kind, error)
            SELECT a.id, a.attempts, 'replayed', $3 FROM unnest($1::text[], $2::int4[]) AS a(id, attempts)
        )
        SELECT pg_notify('{WAKEUP}',
            json_build_object('job_type', job_type, 'id', id, 'run_at', run_at)::text)
        FROM replayed
        "#
    )))
    .bind(&ids)
    .bind(&attempts)
    .bind(note)
    .execute(&mut *conn)
    .await?;
    Ok(ids)
}

/// Resolves dead jobs without replaying them: done, with the outcome `discarded`, the
/// discard marked in their history. Retention prunes them (and their events) like any done
/// job. Returns the discarded job ids.
pub async fn discard(
    conn: &mut PgConnection,
    selection: &Selection,
    note: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let dead = selection.lock_dead(conn).await?;
    let (ids, attempts): (Vec<String>, Vec<i32>) = dead.into_iter().unzip();
    sqlx::query(
        r#"
        WITH discarded AS (
            UPDATE apalis.jobs j
            SET status = 'Done', done_at = now(), lock_by = NULL, lock_at = NULL,
                last_result = jsonb_build_object('Ok', 'discarded')
            WHERE j.id = ANY($1)
        )
        INSERT INTO clerk_sync.job_errors (job_id, attempt, kind, error)
        SELECT a.id, a.attempts, 'discarded', $3 FROM unnest($1::text[], $2::int4[]) AS a(id, attempts)
        "#,
    )
    .bind(&ids)
    .bind(&attempts)
    .bind(note)
    .execute(&mut *conn)
    .await?;
    Ok(ids)
}

/// Jobs received and jobs finished per time bucket over a window: the overview's charts.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    /// Events received in the bucket.
    pub received: i64,
    /// Jobs that finished (done, discarded ones aside) in the bucket.
    pub done: i64,
    /// Of those, the mean and the largest time from receipt to done, in milliseconds.
    pub lag_avg_ms: Option<f64>,
    pub lag_max_ms: Option<f64>,
}

/// A read-only transaction for statements that read few rows by their indexes whatever
/// the planner guesses (the overview's): without JIT compilation and parallel workers, whose
/// start-up costs far more than such a read (on a million jobs, ~300 ms against ~5 ms for
/// the charts' open tail, whose length the planner cannot know).
async fn small_reads(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::raw_sql("SET LOCAL jit = off; SET LOCAL max_parallel_workers_per_gather = 0")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Per-minute figures from the raw rows, for every minute from `from` (inclusive) to `to`
/// (exclusive), both SQL expressions of whole minutes; binds `$1` = [`QUEUE`]. Columns:
/// minute, received, done, lag_sum_ms, lag_max_ms (NULL when nothing was done). Walks the
/// `received_at` index of the events and the `done_at` index of done jobs over the range.
/// Both the rollup and the overview's open tail read through this, so they agree.
fn raw_minutes(from: &str, to: &str) -> String {
    format!(
        r#"
        SELECT m.minute, COALESCE(r.n, 0) AS received, COALESCE(d.n, 0) AS done,
               COALESCE(d.lag_sum, 0) AS lag_sum_ms, d.lag_max AS lag_max_ms
        FROM generate_series({from}, {to} - interval '1 minute', interval '1 minute') AS m(minute)
        LEFT JOIN (
            SELECT date_bin(interval '1 minute', e.received_at, timestamptz 'epoch') AS minute,
                   count(*) AS n
            FROM clerk_sync.webhook_events e
            WHERE e.received_at >= {from} AND e.received_at < {to}
            GROUP BY 1
        ) r USING (minute)
        LEFT JOIN (
            SELECT date_bin(interval '1 minute', j.done_at, timestamptz 'epoch') AS minute,
                   count(*) AS n,
                   sum(extract(epoch FROM j.done_at - e.received_at) * 1000)::float8 AS lag_sum,
                   max(extract(epoch FROM j.done_at - e.received_at) * 1000)::float8 AS lag_max
            FROM apalis.jobs j JOIN clerk_sync.webhook_events e ON e.job_id = j.id
            WHERE j.status = 'Done' AND j.done_at >= {from} AND j.done_at < {to}
              AND j.job_type = $1 AND j.last_result->>'Ok' IS DISTINCT FROM 'discarded'
            GROUP BY 1
        ) d USING (minute)
        "#
    )
}

/// How far back the first rollup starts: the longest chart (a day) and its first bucket.
const ROLLUP_HORIZON: &str = "interval '1 day 1 hour'";

/// How long rolled-up minutes are kept (`clerk_sync.activity_minutes`).
pub const ROLLUP_KEEP: &str = "interval '8 days'";

/// The advisory lock (transaction-scoped) of the rollup: one worker at a time.
const ROLLUP_LOCK: i64 = 726_273_656_104;

/// What one rollup pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollup {
    /// Another session was rolling up: nothing done.
    Busy,
    /// `minutes` minutes rolled up (none: no minute had closed since the last pass); every
    /// minute before `through` is rolled up.
    Rolled {
        minutes: u64,
        through: DateTime<Utc>,
    },
}

/// Rolls up every minute that closed at least `grace` ago and is not rolled up yet into
/// `clerk_sync.activity_minutes` (events received, jobs done, apply lag), starting where
/// the last pass stopped (a first pass starts a day back), an hour per transaction (so that
/// no statement runs long however busy the queue), and forgets minutes older than
/// [`ROLLUP_KEEP`]. `received_at` and `done_at` are `now()` inside the transactions that
/// write them, so a transaction that began in a minute may commit after it: `grace` must
/// be longer than any such transaction. Idempotent: a rolled-up minute is never written
/// again. One session at a time (a transaction-scoped try-lock); another gets
/// [`Rollup::Busy`] (or, if it held the lock for an hour's step first, what it did).
pub async fn roll_up(pool: &PgPool, grace: Duration) -> Result<Rollup, sqlx::Error> {
    // Minutes rolled up so far, and the end of the last one, once a step has run.
    let mut rolled: Option<(u64, DateTime<Utc>)> = None;
    loop {
        let mut tx = pool.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(ROLLUP_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(
                rolled.map_or(Rollup::Busy, |(minutes, through)| Rollup::Rolled {
                    minutes,
                    through,
                }),
            );
        }
        let (from, to, closed): (DateTime<Utc>, DateTime<Utc>, DateTime<Utc>) =
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "WITH b AS ( \
                     SELECT GREATEST(max(minute) + interval '1 minute', \
                                     date_bin(interval '1 minute', now() - {ROLLUP_HORIZON}, \
                                              timestamptz 'epoch')) AS start, \
                            date_bin(interval '1 minute', now() - make_interval(secs => $1), \
                                     timestamptz 'epoch') AS closed \
                     FROM clerk_sync.activity_minutes) \
                 SELECT b.start, LEAST(b.closed, b.start + interval '1 hour'), b.closed FROM b"
            )))
            .bind(grace.as_secs_f64())
            .fetch_one(&mut *tx)
            .await?;
        let mut minutes = 0;
        if to > from {
            minutes = sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO clerk_sync.activity_minutes \
                     (minute, received, done, lag_sum_ms, lag_max_ms) \
                 {} ON CONFLICT (minute) DO NOTHING",
                raw_minutes("$2::timestamptz", "$3::timestamptz")
            )))
            .bind(QUEUE)
            .bind(from)
            .bind(to)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM clerk_sync.activity_minutes WHERE minute < now() - {ROLLUP_KEEP}"
        )))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let minutes = rolled.map_or(0, |(m, _)| m) + minutes;
        let through = to.max(from);
        if to >= closed {
            return Ok(Rollup::Rolled { minutes, through });
        }
        rolled = Some((minutes, through));
    }
}

/// Events received and applied per `bucket` over the last `window`, oldest first, every
/// bucket present (zero when nothing happened): rolled-up minutes (see [`roll_up`]), then
/// the raw rows of the minutes since the last rollup (the open tail, normally a minute or
/// two). `bucket` is a whole number of minutes.
pub async fn activity(
    pool: &PgPool,
    window: Duration,
    bucket: Duration,
) -> Result<Vec<Bucket>, sqlx::Error> {
    // The planner cannot know that the open tail is short (its start is read in the same
    // statement): see `small_reads`.
    let mut tx = small_reads(pool).await?;
    let buckets = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        r#"
        WITH b AS (
            SELECT date_bin(make_interval(secs => $3), now() - make_interval(secs => $2),
                            timestamptz 'epoch') AS first
        ), t AS (
            SELECT GREATEST(b.first, (SELECT max(minute) + interval '1 minute'
                                      FROM clerk_sync.activity_minutes)) AS tail
            FROM b
        ), minutes AS (
            SELECT a.minute, a.received, a.done, a.lag_sum_ms, a.lag_max_ms
            FROM clerk_sync.activity_minutes a, b, t
            WHERE a.minute >= b.first AND a.minute < t.tail
            UNION ALL
            {tail}
        ), buckets AS (
            SELECT generate_series(b.first, now(), make_interval(secs => $3)) AS start FROM b
        )
        SELECT s.start, COALESCE(sum(m.received), 0)::int8 AS received,
               COALESCE(sum(m.done), 0)::int8 AS done,
               (sum(m.lag_sum_ms) / NULLIF(sum(m.done), 0))::float8 AS lag_avg_ms,
               max(m.lag_max_ms) AS lag_max_ms
        FROM buckets s
        LEFT JOIN minutes m
               ON date_bin(make_interval(secs => $3), m.minute, timestamptz 'epoch') = s.start
        GROUP BY s.start
        ORDER BY s.start
        "#,
        tail = raw_minutes(
            "(SELECT tail FROM t)",
            "(date_bin(interval '1 minute', now(), timestamptz 'epoch') + interval '1 minute')"
        ),
    )))
    .bind(QUEUE)
    .bind(window.as_secs_f64())
    .bind((bucket.as_secs_f64() / 60.0).round().max(1.0) * 60.0)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(buckets)
}

/// Dead jobs counted by event type and by last error, most first (at most `limit` each).
pub async fn dead_groups(
    pool: &PgPool,
    limit: i64,
) -> Result<(Vec<(Option<String>, i64)>, Vec<(Option<String>, i64)>), sqlx::Error> {
    let mut tx = small_reads(pool).await?;
    let by_type = sqlx::query_as(
        "SELECT event_type, count(*) FROM clerk_sync.dead_letters \
         GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let by_error = sqlx::query_as(
        "SELECT last_error, count(*) FROM clerk_sync.dead_letters \
         GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((by_type, by_error))
}

/// The channel apalis's workers LISTEN on for new jobs; the payload names the queue and a
/// job (apalis's listener ignores notifications it cannot parse).
pub const WAKEUP: &str = "apalis::job::insert";

/// What one retention pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub jobs: u64,
    pub events: u64,
    pub errors: u64,
    pub workers: u64,
}

/// One retention pass: done jobs and their raw events older than `keep`, in small batches
/// so that no statement holds many locks. Dead jobs (and their events and errors) are never
/// pruned: they wait for an operator. Only one worker prunes at a time (a try-lock); the
/// others skip the pass.
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

async fn prune_locked(conn: &mut PgConnection, keep: Duration) -> Result<Pruned, sqlx::Error> {
    const BATCH: i64 = 500;
    /// Runs `sql` ($1 the age in seconds, $2 the batch size, $3 our queue if it names one)
    /// until a batch comes back short.
    async fn batches(
        conn: &mut PgConnection,
        keep_secs: f64,
        sql: &'static str,
    ) -> Result<u64, sqlx::Error> {
        let mut total = 0;
        loop {
            let mut query = sqlx::query(sql).bind(keep_secs).bind(BATCH);
            if sql.contains("$3") {
                query = query.bind(QUEUE);
            }
            let n = query.execute(&mut *conn).await?.rows_affected();
            total += n;
            if n < BATCH as u64 {
                return Ok(total);
            }
        }
    }
    let keep_secs = keep.as_secs_f64();
    let jobs = batches(
        conn,
        keep_secs,
        r#"
        DELETE FROM apalis.jobs WHERE id IN (
            SELECT id FROM apalis.jobs
            WHERE job_type = $3 AND status = 'Done'
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
            WHERE w.worker_type = $3
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

/// The versions of apalis's migrations this build applies (tests key their template on it).
pub fn apalis_migration_versions() -> Vec<i64> {
    apalis_postgres::PostgresStorage::migrations()
        .iter()
        .map(|m| m.version)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_a_condition_and_a_name() {
        let names: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["pending", "running", "retrying", "done", "dead"]);
        for s in JobState::ALL {
            assert!(s.condition().starts_with("j.") || s.condition().starts_with("(j."));
        }
    }

    #[test]
    fn the_state_expression_names_every_state() {
        let sql = Job::state_sql();
        for s in JobState::ALL {
            assert!(sql.contains(&format!("'{}'", s.as_str())), "{sql}");
        }
    }

    #[test]
    fn only_transient_panics_and_timeouts_retry() {
        use FailureKind::*;
        let retried: Vec<FailureKind> = [Transient, Permanent, Exhausted, Panic, Timeout]
            .into_iter()
            .filter(|k| k.retries())
            .collect();
        assert_eq!(retried, [Transient, Panic, Timeout]);
    }
}
