//! What operators ask and do, shared by the CLI (`clerk-sync jobs|show|explain|replay|discard`)
//! and the console: one set of queries and actions with two faces. The job-table SQL lives
//! in [`crate::jobs`]; this module adds the event, the mirror row and the audit trail.
//!
//! Every action is one transaction that changes the jobs and writes a row of
//! `clerk_sync.operator_actions` (who, what, which selection, which jobs, how many).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;

use crate::{
    jobs::{self, Attempt, JobState, JobSummary, Selection, Stats},
    mirror::{self, Kind},
};

pub use crate::jobs::{JobFilter, Page, Total, count, count_capped, list};

/// Who did an action, as the audit table records it: `cli:alice`, `console:oncall`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor(pub String);

impl Actor {
    /// The CLI's actor: `cli:$USER`.
    pub fn cli() -> Self {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into());
        Self(format!("cli:{user}"))
    }
}

/// An action and the jobs it changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Done {
    /// The row of `clerk_sync.operator_actions`.
    pub action_id: i64,
    pub action: Action,
    pub job_ids: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Replay,
    Discard,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replay => "replay",
            Self::Discard => "discard",
        }
    }
}

/// Puts the selected dead jobs back in the queue (see [`jobs::replay`]) and audits it.
pub async fn replay(pool: &PgPool, selection: &Selection, actor: &Actor) -> anyhow::Result<Done> {
    act(pool, Action::Replay, selection, actor).await
}

/// Resolves the selected dead jobs without replaying them (see [`jobs::discard`]) and
/// audits it.
pub async fn discard(pool: &PgPool, selection: &Selection, actor: &Actor) -> anyhow::Result<Done> {
    act(pool, Action::Discard, selection, actor).await
}

async fn act(
    pool: &PgPool,
    action: Action,
    selection: &Selection,
    actor: &Actor,
) -> anyhow::Result<Done> {
    let mut tx = pool.begin().await?;
    let note = format!("{}ed by {}", action.as_str().trim_end_matches('e'), actor.0);
    let job_ids = match action {
        Action::Replay => jobs::replay(&mut tx, selection, &note).await?,
        Action::Discard => jobs::discard(&mut tx, selection, &note).await?,
    };
    let action_id: i64 = sqlx::query_scalar(
        "INSERT INTO clerk_sync.operator_actions (actor, action, filter, job_ids, count) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(&actor.0)
    .bind(action.as_str())
    .bind(serde_json::to_value(selection)?)
    .bind(&job_ids)
    .bind(job_ids.len() as i32)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Done {
        action_id,
        action,
        job_ids,
    })
}

/// Waits up to `limit` (polling) for the jobs to finish or die, and returns them as they
/// are then: what became of a replay.
pub async fn settle(
    pool: &PgPool,
    job_ids: &[String],
    limit: Duration,
) -> Result<Vec<jobs::Job>, sqlx::Error> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let found = jobs::find(pool, Some(job_ids)).await?;
        let open = found
            .iter()
            .any(|j| !matches!(j.state, JobState::Done | JobState::Dead));
        if !open || tokio::time::Instant::now() >= deadline {
            return Ok(found);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One row of `clerk_sync.operator_actions`.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub filter: Value,
    pub job_ids: Vec<String>,
    pub count: i32,
}

/// The latest operator actions, newest first.
pub async fn audit(pool: &PgPool, limit: i64) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, at, actor, action, filter, job_ids, count FROM clerk_sync.operator_actions \
         ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// A stored event as an operator reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventView {
    pub event_id: i64,
    pub svix_id: String,
    pub event_type: Option<String>,
    pub object_id: Option<String>,
    pub received_at: DateTime<Utc>,
    /// When Clerk says it happened (the envelope's `timestamp`).
    pub event_timestamp: Option<DateTime<Utc>>,
    /// The verified body: pretty JSON, or the bytes as text if it is not JSON.
    pub body: String,
}

impl EventView {
    fn from_row(r: EventRow) -> Self {
        let body = serde_json::from_slice::<Value>(&r.body)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| String::from_utf8_lossy(&r.body).into_owned());
        Self {
            event_id: r.id,
            svix_id: r.svix_id,
            event_type: r.event_type,
            object_id: r.object_id,
            received_at: r.received_at,
            event_timestamp: r.event_timestamp,
            body,
        }
    }
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: i64,
    svix_id: String,
    body: Vec<u8>,
    event_type: Option<String>,
    object_id: Option<String>,
    event_timestamp: Option<DateTime<Utc>>,
    received_at: DateTime<Utc>,
    job_id: Option<String>,
}

const EVENT_COLUMNS: &str = "e.id, e.svix_id, e.body, e.event_type, e.object_id, e.event_timestamp, e.received_at, e.job_id";

/// A mirror row as it is now (without `raw`: the events show the payloads).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MirrorRow {
    /// The kind's name (`users`).
    pub kind: &'static str,
    pub table: &'static str,
    pub row: Value,
}

/// The mirror row of a Clerk object, if its kind is mirrored and the row exists.
pub async fn mirror_row(pool: &PgPool, clerk_id: &str) -> Result<Option<MirrorRow>, sqlx::Error> {
    let Some(kind) = Kind::by_id(clerk_id) else {
        return Ok(None);
    };
    let row: Option<Value> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT to_jsonb(t) - 'raw' FROM {} t WHERE t.id = $1",
        kind.table
    )))
    .bind(clerk_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| MirrorRow {
        kind: kind.name,
        table: kind.table,
        row,
    }))
}

/// Everything about one job: `clerk-sync show`, the console's `/jobs/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobDetail {
    pub job: JobSummary,
    pub event: Option<EventView>,
    /// Every failed attempt and every replay or discard, oldest first.
    pub history: Vec<Attempt>,
    /// The mirror row of the event's object now.
    pub mirror: Option<MirrorRow>,
}

/// One job by its job id or svix-id (None: no such job).
pub async fn show(pool: &PgPool, id: &str) -> Result<Option<JobDetail>, sqlx::Error> {
    let Some(job) = jobs::get(pool, id).await? else {
        return Ok(None);
    };
    let event = match job.event_id {
        Some(event_id) => sqlx::query_as::<_, EventRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM clerk_sync.webhook_events e WHERE e.id = $1"
        )))
        .bind(event_id)
        .fetch_optional(pool)
        .await?
        .map(EventView::from_row),
        None => None,
    };
    let history = jobs::history(pool, &job.job_id).await?;
    let mirror = match &job.object_id {
        Some(object) => mirror_row(pool, object).await?,
        None => None,
    };
    Ok(Some(JobDetail {
        job,
        event,
        history,
        mirror,
    }))
}

/// What one stored event did to the mirror row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The row's data (or its deletion) comes from this event.
    Reflected,
    /// Applied, then replaced by a newer event.
    Superseded,
    /// Arrived after a newer event had been applied: the ordering rule ignored it.
    IgnoredOlder,
    /// The same version as an event already applied: changed nothing.
    Duplicate,
    /// Not applied (yet): its job is pending, running, retrying, dead or discarded.
    NotApplied,
    /// An event type the mirror does not keep.
    NotMirrored,
    /// Its body cannot be applied.
    Malformed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reflected => "reflected",
            Self::Superseded => "superseded",
            Self::IgnoredOlder => "ignored_older",
            Self::Duplicate => "duplicate",
            Self::NotApplied => "not_applied",
            Self::NotMirrored => "not_mirrored",
            Self::Malformed => "malformed",
        }
    }
}

/// One stored event about an object, and what it did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExplainedEvent {
    pub event: EventView,
    pub job_id: Option<String>,
    /// None when the job was pruned by retention (it was done).
    pub job_state: Option<JobState>,
    pub outcome: Option<String>,
    /// The event's version (the ordering key): `updated_at`, or a delete's timestamp.
    pub version: Option<DateTime<Utc>>,
    /// The version of the data it carries (None for a delete without data).
    pub data_version: Option<DateTime<Utc>>,
    pub deleted: bool,
    pub verdict: Verdict,
}

/// Why a Clerk object's row looks as it does: `clerk-sync explain`, `/objects/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    pub clerk_id: String,
    /// The kind by the id's prefix (None: no mirrored kind has this prefix).
    pub kind: Option<&'static str>,
    pub mirror: Option<MirrorRow>,
    /// Every stored event about the object, by version (then by receipt).
    pub events: Vec<ExplainedEvent>,
}

/// Explains a Clerk object's mirror row by its stored events.
pub async fn explain(pool: &PgPool, clerk_id: &str) -> Result<Explanation, sqlx::Error> {
    let mirror = mirror_row(pool, clerk_id).await?;
    let rows: Vec<(EventRow, Option<String>, Option<String>)> = {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            event: EventRow,
            state: Option<String>,
            outcome: Option<String>,
        }
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS}, CASE WHEN j.id IS NOT NULL THEN {state} END AS state, \
                    j.last_result->>'Ok' AS outcome \
             FROM clerk_sync.webhook_events e LEFT JOIN apalis.jobs j ON j.id = e.job_id \
             WHERE e.object_id = $1 ORDER BY e.id",
            state = jobs::state_sql()
        )))
        .bind(clerk_id)
        .fetch_all(pool)
        .await?;
        rows.into_iter()
            .map(|r| (r.event, r.state, r.outcome))
            .collect()
    };
    let row_version = |field: &str| -> Option<DateTime<Utc>> {
        mirror
            .as_ref()
            .and_then(|m| m.row.get(field))
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let (row_updated, row_version_at, row_deleted) = (
        row_version("updated_at"),
        row_version("version"),
        row_version("deleted_at").is_some(),
    );
    let mut events: Vec<ExplainedEvent> = rows
        .into_iter()
        .map(|(row, state, outcome)| {
            let decoded = mirror::decode(
                &row.body,
                &mirror::Options {
                    optional_kinds: mirror::KINDS.iter().map(|k| k.name).collect(),
                    ..Default::default()
                },
            );
            let (version, data_version, deleted, verdict) = match decoded {
                Ok(mirror::Decoded::Change(c)) => (Some(c.version), c.updated_at, c.deleted, None),
                Ok(mirror::Decoded::Skip(_)) => (None, None, false, Some(Verdict::NotMirrored)),
                Err(_) => (None, None, false, Some(Verdict::Malformed)),
            };
            let job_state = state.as_deref().and_then(JobState::parse);
            let job_id = row.job_id.clone();
            let verdict = verdict.unwrap_or(match (job_state, outcome.as_deref()) {
                (_, Some("skipped")) => Verdict::NotMirrored,
                (Some(JobState::Done), Some("applied" | "stale")) | (None, _) => {
                    Verdict::Superseded // refined below
                }
                _ => Verdict::NotApplied,
            });
            ExplainedEvent {
                event: EventView::from_row(row),
                job_id,
                job_state,
                outcome,
                version,
                data_version,
                deleted,
                verdict,
            }
        })
        .collect();
    // Which applied events the row reflects, and which changed nothing: in order of receipt,
    // an applied event at or below the newest version seen so far changed nothing.
    let mut newest: Option<DateTime<Utc>> = None;
    let mut reflected_data = false;
    let mut reflected_delete = false;
    for e in events.iter_mut() {
        if e.verdict != Verdict::Superseded {
            continue;
        }
        let v = e.version;
        match (newest, v) {
            (Some(n), Some(v)) if v == n => e.verdict = Verdict::Duplicate,
            (Some(n), Some(v)) if v < n && e.outcome.as_deref() == Some("stale") => {
                e.verdict = Verdict::IgnoredOlder
            }
            _ => {}
        }
        if v > newest {
            newest = v;
        }
    }
    // The newest applied event carrying the row's data, and the delete that tombstoned it.
    for e in events.iter_mut().rev() {
        if e.verdict != Verdict::Superseded {
            continue;
        }
        let data = !reflected_data && e.data_version.is_some() && e.data_version == row_updated;
        let delete = !reflected_delete && row_deleted && e.deleted && e.version == row_version_at;
        if data || delete {
            e.verdict = Verdict::Reflected;
            reflected_data |= data;
            reflected_delete |= delete;
        }
    }
    events.sort_by(|a, b| {
        (a.version, a.event.received_at, a.event.event_id).cmp(&(
            b.version,
            b.event.received_at,
            b.event.event_id,
        ))
    });
    Ok(Explanation {
        clerk_id: clerk_id.to_owned(),
        kind: Kind::by_id(clerk_id).map(|k| k.name),
        mirror,
        events,
    })
}

/// One row of `clerk_sync.backfill_runs`: the last backfill or reconcile run of a kind.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct BackfillRun {
    pub kind: String,
    pub started_at: DateTime<Utc>,
    pub next_offset: i32,
    pub completed_at: Option<DateTime<Utc>>,
    pub counts: Value,
    /// Objects the completed run had to repair (what webhooks missed).
    pub repaired: Option<i64>,
    /// Whether it was `clerk-sync reconcile`.
    pub reconcile: bool,
}

/// The console's overview: is the sync healthy? Reads in milliseconds however large the
/// queue: jobs by state with done jobs and events counted up to [`jobs::COUNT_CAP`] (then
/// estimated), and the charts from the per-minute rollups ([`jobs::roll_up`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overview {
    pub stats: Stats,
    /// Per minute over the last hour.
    pub last_hour: Vec<jobs::Bucket>,
    /// Per 15 minutes over the last day.
    pub last_day: Vec<jobs::Bucket>,
    pub dead_by_type: Vec<(Option<String>, i64)>,
    pub dead_by_error: Vec<(Option<String>, i64)>,
    pub backfill_runs: Vec<BackfillRun>,
}

pub async fn overview(pool: &PgPool) -> Result<Overview, sqlx::Error> {
    // Independent reads, on connections of their own: the page waits for the slowest.
    let (stats, last_hour, last_day, (dead_by_type, dead_by_error), backfill_runs) = tokio::try_join!(
        Stats::read_capped(pool, jobs::COUNT_CAP),
        jobs::activity(pool, Duration::from_secs(3600), Duration::from_secs(60)),
        jobs::activity(pool, Duration::from_secs(86_400), Duration::from_secs(900)),
        jobs::dead_groups(pool, 20),
        sqlx::query_as(
            "SELECT kind, started_at, next_offset, completed_at, counts, repaired, reconcile \
             FROM clerk_sync.backfill_runs ORDER BY started_at DESC, kind",
        )
        .fetch_all(pool),
    )?;
    Ok(Overview {
        stats,
        last_hour,
        last_day,
        dead_by_type,
        dead_by_error,
        backfill_runs,
    })
}

/// An error as stored, without the prefixes that say nothing (`database: error returned
/// from database: `), whitespace folded.
pub fn tidy_error(error: &str) -> String {
    let mut s = error.trim();
    loop {
        let before = s;
        for noise in ["database: ", "error returned from database: "] {
            s = s.strip_prefix(noise).unwrap_or(s);
        }
        if s == before {
            break;
        }
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy_error_drops_the_prefix_noise_and_keeps_the_rest_whole() {
        assert_eq!(
            tidy_error(
                "database: error returned from database: new row for relation \"users\"\n  violates check constraint \"no_mallory\""
            ),
            "new row for relation \"users\" violates check constraint \"no_mallory\""
        );
        assert_eq!(
            tidy_error("malformed event: no `type`"),
            "malformed event: no `type`"
        );
    }

    #[test]
    fn a_selection_is_audited_as_given() {
        let s = Selection::Filter(JobFilter {
            state: Some(JobState::Dead),
            event_type: Some("user.updated".into()),
            ..Default::default()
        });
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({"filter": {"state": "dead", "type": "user.updated"}})
        );
        let s = Selection::Ids(vec!["msg_1".into()]);
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({"ids": ["msg_1"]})
        );
    }
}
