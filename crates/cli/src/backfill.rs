//! `clerk-sync backfill`: pages through Clerk's Backend API and applies every object with
//! the worker's versioned upserts, so a listing never overwrites a newer webhook and a
//! webhook never loses to an older listing. Resumable (a checkpoint per kind in the
//! database), rate-limit aware, and with `--prune`, tombstones what Clerk no longer has.

use std::{collections::HashSet, io::IsTerminal as _, io::Write as _, time::Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::Args;
use clerk_sync_core::mirror::{self, Change, Kind, Outcome};
use futures::StreamExt as _;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{AssertSqlSafe, PgPool};

use crate::{
    clerk_api::{ClerkApi, Lookup},
    table::Table,
};

#[derive(Debug, Clone, Args)]
pub struct BackfillArgs {
    /// The kinds to fill, repeated or comma-separated (users, organizations, memberships,
    /// invitations, roles, permissions, waitlist_entries). Default: every kind Clerk's
    /// Backend API lists.
    #[arg(long = "kind", value_name = "KIND", value_delimiter = ',', value_parser = listed_kind)]
    pub kinds: Vec<&'static str>,
    /// Same as --kind users.
    #[arg(long, hide = true)]
    pub users: bool,
    /// Same as --kind organizations.
    #[arg(long, hide = true)]
    pub organizations: bool,
    /// Same as --kind memberships.
    #[arg(long, hide = true)]
    pub memberships: bool,
    /// Tombstone mirror rows that a complete listing no longer contains (users and
    /// organizations are confirmed one by one with a GET first).
    #[arg(long)]
    pub prune: bool,
    /// Print what would change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Start over instead of resuming an interrupted run.
    #[arg(long)]
    pub restart: bool,
    /// Set by `clerk-sync reconcile` (a fresh listing of every kind, pruning, recorded as a
    /// reconcile).
    #[arg(skip)]
    pub reconcile: bool,
    /// Clerk secret key (sk_live_… / sk_test_…).
    #[arg(
        long,
        env = "CLERK_SECRET_KEY",
        hide_env_values = true,
        value_parser = clerk_sync_core::config::secret
    )]
    pub clerk_secret_key: SecretString,
    /// Clerk's Backend API (http:// or https://).
    #[arg(long, env = "CLERK_API_URL", default_value = "https://api.clerk.com", value_parser = api_url)]
    pub clerk_api_url: String,
    /// Longest wait for one answer of Clerk's API before it counts as a failed request
    /// (retried like a 5xx) [100..=300000].
    #[arg(long, env = "CLERK_API_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(100..=300_000))]
    pub clerk_api_timeout_ms: u64,
    /// Objects per request (Clerk allows at most 500).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..=500))]
    pub page_size: u16,
    /// Objects written to the database at once [1..=64].
    #[arg(long, default_value_t = 8,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub concurrency: usize,
    /// Retries of one request after 5xx, network errors or timeouts (429s wait and do not
    /// count) [0..=100].
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub max_retries: u32,
    /// Backoff base for those retries [1..=60000].
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub retry_base_delay_ms: u64,
}

/// clap's parser for `--kind`: a registered kind that Clerk's Backend API lists.
fn listed_kind(value: &str) -> Result<&'static str, String> {
    let listed: Vec<&str> = mirror::KINDS
        .iter()
        .filter(|k| k.listing.is_some())
        .map(|k| k.name)
        .collect();
    match Kind::by_name(value) {
        Some(k) if k.listing.is_some() => Ok(k.name),
        Some(k) => Err(format!(
            "Clerk's Backend API does not list {} (kinds it lists: {})",
            k.name,
            listed.join(", ")
        )),
        None => Err(format!("no such kind (kinds: {})", listed.join(", "))),
    }
}

/// clap's parser for `CLERK_API_URL`.
fn api_url(value: &str) -> Result<String, String> {
    match value.split_once("://") {
        Some(("http" | "https", rest)) if !rest.is_empty() => Ok(value.to_owned()),
        _ => Err("not an http:// or https:// URL".to_owned()),
    }
}

fn listing(kind: &Kind) -> mirror::Listing {
    kind.listing
        .expect("backfill only takes kinds with a listing")
}

/// A stored run: when its listing started, where it got to, when it ended, its counts.
type Checkpoint = (DateTime<Utc>, i32, Option<DateTime<Utc>>, Value);

/// What a run did, per kind; kept in the checkpoint so a resumed run reports the whole.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub struct Counts {
    pub listed: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub older: u64,
    pub invalid: u64,
    pub pruned: u64,
}

impl Counts {
    /// Objects the mirror did not have right: inserted, updated or tombstoned (what
    /// webhooks missed, when the worker is keeping up).
    pub fn repaired(&self) -> u64 {
        self.inserted + self.updated + self.pruned
    }
}

/// A stored row's data version (None: a tombstone without data), if the row exists.
async fn stored_version(
    pool: &PgPool,
    kind: &Kind,
    id: &str,
) -> Result<Option<Option<DateTime<Utc>>>, sqlx::Error> {
    let sql = format!("SELECT updated_at FROM {} WHERE id = $1", kind.table);
    sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Why a listed object was not applied.
enum Listed {
    /// Not a valid Clerk object: counted and skipped.
    Invalid(clerk_sync_core::event::MalformedEvent),
    /// The database failed: the run stops (and resumes from its checkpoint).
    Database(sqlx::Error),
}

#[derive(Debug, Clone, Copy)]
enum Effect {
    Inserted,
    Updated,
    Unchanged,
    Older,
}

/// Applies (or, dry, predicts) one listed object under the ordering rule.
async fn apply_one(pool: &PgPool, change: &Change, dry_run: bool) -> Result<Effect, sqlx::Error> {
    let version = change.version;
    let before = stored_version(pool, change.kind, &change.id).await?;
    let predicted = match before {
        None => Effect::Inserted,
        Some(Some(v)) if v == version => Effect::Unchanged,
        Some(Some(v)) if v > version => Effect::Older,
        Some(_) => Effect::Updated,
    };
    if dry_run || matches!(predicted, Effect::Unchanged | Effect::Older) {
        return Ok(predicted);
    }
    Ok(
        match mirror::apply(pool, change, &mirror::Options::default()).await? {
            Outcome::Applied => predicted,
            // A webhook got there first while we were looking.
            Outcome::Stale | Outcome::Skipped => Effect::Older,
        },
    )
}

struct Progress {
    kind: &'static str,
    total: Option<i64>,
    started: Instant,
    tty: bool,
}

impl Progress {
    fn show(&self, done: u64, resumed_from: u64) {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = (done - resumed_from) as f64 / secs;
        let of = self.total.map_or_else(String::new, |t| format!("/{t}"));
        let eta = match self.total {
            Some(t) if rate > 0.0 && (t as u64) > done => {
                format!(", ETA {:.0}s", (t as u64 - done) as f64 / rate)
            }
            _ => String::new(),
        };
        if self.tty {
            eprint!("\r{}: {done}{of} ({rate:.0}/s{eta})   ", self.kind);
            let _ = std::io::stderr().flush();
        } else {
            tracing::info!(
                kind = self.kind,
                done,
                total = self.total,
                rate = rate as u64,
                "backfill progress"
            );
        }
    }

    fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

pub async fn run(
    pool: &PgPool,
    args: &BackfillArgs,
) -> anyhow::Result<Vec<(&'static Kind, Counts)>> {
    let mut chosen: Vec<&str> = args.kinds.clone();
    for (on, k) in [
        (args.users, "users"),
        (args.organizations, "organizations"),
        (args.memberships, "memberships"),
    ] {
        if on && !chosen.contains(&k) {
            chosen.push(k);
        }
    }
    // Registry order: parents before children.
    let kinds: Vec<&'static Kind> = mirror::KINDS
        .iter()
        .copied()
        .filter(|k| k.listing.is_some() && (chosen.is_empty() || chosen.contains(&k.name)))
        .collect();
    let mut api = ClerkApi::new(
        &args.clerk_api_url,
        args.clerk_secret_key.clone(),
        std::time::Duration::from_millis(args.clerk_api_timeout_ms),
    );
    api.max_retries = args.max_retries;
    api.backoff.base = std::time::Duration::from_millis(args.retry_base_delay_ms);
    let mut results = Vec::new();
    for kind in kinds {
        let counts = backfill_kind(pool, &mut api, kind, args)
            .await
            .with_context(|| format!("backfilling {} (run again to resume)", kind.name))?;
        results.push((kind, counts));
    }
    eprintln!(
        "Clerk API: {} requests, {} rate-limited, {} retried",
        api.requests, api.throttled, api.retried
    );
    Ok(results)
}

async fn backfill_kind(
    pool: &PgPool,
    api: &mut ClerkApi,
    kind: &'static Kind,
    args: &BackfillArgs,
) -> anyhow::Result<Counts> {
    let name = kind.name;
    // Where to start: a fresh listing, or the checkpoint of an interrupted one.
    let (started_at, mut offset, mut counts) = if args.dry_run {
        (Utc::now(), 0i64, Counts::default())
    } else {
        let existing: Option<Checkpoint> = sqlx::query_as(
            "SELECT started_at, next_offset, completed_at, counts FROM clerk_sync.backfill_runs WHERE kind = $1",
        )
        .bind(name)
        .fetch_optional(pool)
        .await?;
        match existing {
            Some((started, next, None, counts)) if !args.restart => {
                eprintln!("{name}: resuming at offset {next} (listing started {started})");
                (
                    started,
                    i64::from(next),
                    serde_json::from_value(counts).unwrap_or_default(),
                )
            }
            _ => {
                let started: DateTime<Utc> = sqlx::query_scalar(
                    r#"
                    INSERT INTO clerk_sync.backfill_runs (kind, started_at) VALUES ($1, now())
                    ON CONFLICT (kind) DO UPDATE SET started_at = now(), next_offset = 0,
                        completed_at = NULL, counts = '{}'
                    RETURNING started_at
                    "#,
                )
                .bind(name)
                .fetch_one(pool)
                .await?;
                sqlx::query("DELETE FROM clerk_sync.backfill_seen WHERE kind = $1")
                    .bind(name)
                    .execute(pool)
                    .await?;
                (started, 0, Counts::default())
            }
        }
    };
    let total = match listing(kind).count {
        Some(path) => api.count(path).await,
        None => None,
    };
    let mut progress = Progress {
        kind: name,
        total,
        started: Instant::now(),
        tty: std::io::stderr().is_terminal(),
    };
    let resumed_from = counts.listed;
    let mut seen_in_memory: HashSet<String> = HashSet::new();
    let mut last_total = None;
    loop {
        let page = api
            .page(listing(kind).path, usize::from(args.page_size), offset)
            .await?;
        last_total = page.total_count.or(last_total);
        if progress.total.is_none() {
            progress.total = page.total_count;
        }
        let effects: Vec<Result<(String, Effect), Listed>> =
            futures::stream::iter(page.items.iter())
                .map(|item| async move {
                    let change = Change::listed(kind, item.clone()).map_err(Listed::Invalid)?;
                    let effect = apply_one(pool, &change, args.dry_run)
                        .await
                        .map_err(Listed::Database)?;
                    Ok((change.id, effect))
                })
                .buffer_unordered(args.concurrency)
                .collect()
                .await;
        let mut ids = Vec::with_capacity(effects.len());
        for effect in effects {
            counts.listed += 1;
            match effect {
                Ok((id, effect)) => {
                    match effect {
                        Effect::Inserted => counts.inserted += 1,
                        Effect::Updated => counts.updated += 1,
                        Effect::Unchanged => counts.unchanged += 1,
                        Effect::Older => counts.older += 1,
                    }
                    ids.push(id);
                }
                Err(Listed::Database(e)) => {
                    anyhow::bail!("database: {}", clerk_sync_core::db::describe(&e))
                }
                Err(Listed::Invalid(e)) => {
                    counts.invalid += 1;
                    tracing::warn!(kind = name, "skipping an invalid object: {e}");
                }
            }
        }
        offset += page.items.len() as i64;
        if args.dry_run {
            seen_in_memory.extend(ids);
        } else {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO clerk_sync.backfill_seen (kind, id) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING",
            )
            .bind(name)
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE clerk_sync.backfill_runs SET next_offset = $2, counts = $3 WHERE kind = $1",
            )
            .bind(name)
            .bind(offset as i32)
            .bind(serde_json::to_value(counts)?)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        progress.show(counts.listed, resumed_from);
        if page.items.len() < usize::from(args.page_size) {
            break;
        }
    }
    progress.finish();
    if args.prune {
        counts.pruned = prune(
            pool,
            api,
            kind,
            started_at,
            &seen_in_memory,
            counts.listed,
            last_total,
            args.dry_run,
        )
        .await?;
    }
    if !args.dry_run {
        sqlx::query(
            "UPDATE clerk_sync.backfill_runs SET completed_at = now(), counts = $2, repaired = $3, \
             reconcile = $4 WHERE kind = $1",
        )
        .bind(name)
        .bind(serde_json::to_value(counts)?)
        .bind(counts.repaired() as i64)
        .bind(args.reconcile)
        .execute(pool)
        .await?;
    }
    Ok(counts)
}

/// Live rows not seen by this complete listing and not changed since it started are gone
/// from Clerk: tombstone them, versioned by the listing's start.
#[allow(clippy::too_many_arguments)]
async fn prune(
    pool: &PgPool,
    api: &mut ClerkApi,
    kind: &'static Kind,
    started_at: DateTime<Utc>,
    seen_in_memory: &HashSet<String>,
    listed: u64,
    total: Option<i64>,
    dry_run: bool,
) -> anyhow::Result<u64> {
    let sql = format!(
        "SELECT id FROM {} t WHERE deleted_at IS NULL AND version <= $2 AND NOT EXISTS \
         (SELECT 1 FROM clerk_sync.backfill_seen s WHERE s.kind = $1 AND s.id = t.id) ORDER BY id",
        kind.table
    );
    let candidates: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(kind.name)
        .bind(started_at)
        .fetch_all(pool)
        .await?;
    let candidates: Vec<String> = candidates
        .into_iter()
        .filter(|id| !seen_in_memory.contains(id))
        .collect();
    let listing = listing(kind);
    if !listing.lookup && total.is_some_and(|t| t as u64 != listed) {
        // Offset paging shifts when objects change during the listing; without a lookup
        // by id we cannot confirm absence, so we do not guess.
        eprintln!(
            "{}: listing saw {listed} of {total:?}; not pruning (run again)",
            kind.name
        );
        return Ok(0);
    }
    let mut pruned = 0;
    for id in candidates {
        // Offset paging can skip an object when others are deleted mid-listing: confirm
        // where the API has a lookup by id.
        let path = listing.lookup.then(|| format!("{}/{id}", listing.path));
        if let Some(path) = path
            && let Lookup::Found(data) = api.lookup(&path).await?
        {
            // Still in Clerk: the listing skipped it; apply it instead.
            if let (false, Ok(change)) = (dry_run, Change::listed(kind, data)) {
                mirror::apply(pool, &change, &mirror::Options::default()).await?;
            }
            continue;
        }
        if dry_run {
            println!("would prune {} {id}", kind.name);
        } else {
            let tombstone = Change::pruned(kind, &id, started_at);
            mirror::apply(pool, &tombstone, &mirror::Options::default()).await?;
            tracing::info!(kind = kind.name, object.id = %id, "pruned: absent from Clerk");
        }
        pruned += 1;
    }
    Ok(pruned)
}

pub fn summary(results: &[(&Kind, Counts)], dry_run: bool) -> String {
    let mut t = Table::new(&[
        "KIND",
        "LISTED",
        "INSERTED",
        "UPDATED",
        "UNCHANGED",
        "SKIPPED (OLDER)",
        "INVALID",
        "PRUNED",
        "REPAIRED",
    ]);
    for (kind, c) in results {
        t.row(vec![
            kind.name.into(),
            c.listed.to_string(),
            c.inserted.to_string(),
            c.updated.to_string(),
            c.unchanged.to_string(),
            c.older.to_string(),
            c.invalid.to_string(),
            c.pruned.to_string(),
            c.repaired().to_string(),
        ]);
    }
    let mut out = t.render();
    if dry_run {
        out.push_str("dry run: nothing was written\n");
    }
    out
}
