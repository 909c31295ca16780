//! `clerk-sync`: the operator CLI. Migrations, queue status, dead letters and replay,
//! signed test events.

mod backfill;
mod clerk_api;
pub mod http;
mod table;
mod test_event;
mod view;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use clerk_sync_core::{
    config::DatabaseArgs,
    db,
    exit::Validate,
    jobs::{self, Stats},
    ops,
};
use secrecy::SecretString;
use sqlx::PgPool;

use crate::table::Table;

/// Operate clerk-sync: keep a PostgreSQL mirror of Clerk's objects (users, organizations,
/// memberships, invitations, roles, billing, ...) in sync from Clerk's webhooks.
///
/// Every setting is a flag and the same-named environment variable (--database-url /
/// DATABASE_URL). Exit status: 0 done, 1 failed, 2 bad usage.
#[derive(Debug, Parser)]
#[command(name = "clerk-sync", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply all database migrations (apalis's queue tables, then clerk-sync's).
    /// Safe to run twice and concurrently.
    Migrate {
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Jobs by state, the oldest pending job's age, events received.
    Status {
        #[command(flatten)]
        db: DatabaseArgs,
        /// One JSON document: {"jobs": {"pending", "running", "retrying", "done", "dead",
        /// "skipped"}, "oldest_pending_age_seconds", "events_received"} (skipped: of the done
        /// jobs, those whose event type is not mirrored; discarded: of the done jobs, dead
        /// letters discarded by an operator).
        #[arg(long)]
        json: bool,
    },
    /// Roll up the console's per-minute activity (events received, jobs done, apply lag)
    /// for every minute that closed --grace-secs ago and is not rolled up yet, as the
    /// workers do every 30 s (one session at a time). Prints how many minutes it wrote.
    Rollup {
        #[command(flatten)]
        db: DatabaseArgs,
        /// How long after a minute ends it is rolled up: longer than any transaction that
        /// marks a job done (the workers' ROLLUP_GRACE_SECS) [1..=3600].
        #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
        grace_secs: u64,
    },
    /// List dead-lettered jobs (the rows of the clerk_sync.dead_letters view), newest first.
    Failed {
        #[command(flatten)]
        db: DatabaseArgs,
        #[arg(long)]
        json: bool,
        /// Only this event type, e.g. user.updated.
        #[arg(long = "type", value_name = "TYPE")]
        event_type: Option<String>,
        /// At most this many rows [1..=10000].
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        limit: i64,
    },
    /// List jobs, newest first, with attempts, next retry and last error ("N of M" when
    /// there are more). Filters combine.
    Jobs {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        filter: view::FilterArgs,
        /// At most this many rows [1..=10000].
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        limit: i64,
        /// Start after this job id (the `next` of a previous page).
        #[arg(long, value_name = "JOB_ID")]
        after: Option<String>,
        /// One JSON document: {"rows": [...], "total": {"count", "exact"}, "next"}.
        #[arg(long)]
        json: bool,
    },
    /// One job by job id or svix-id: the event, every attempt with its error (replays
    /// marked), the mirror row now.
    Show {
        #[command(flatten)]
        db: DatabaseArgs,
        #[arg(value_name = "ID")]
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// One Clerk object: its mirror row and every stored event about it, by version, with
    /// the one the row reflects and those ignored as older or duplicates.
    Explain {
        #[command(flatten)]
        db: DatabaseArgs,
        #[arg(value_name = "CLERK_ID")]
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Put dead-lettered jobs back in the queue with fresh attempts and wake the workers,
    /// then say what became of them within a moment (done, dead again, still queued).
    /// Harmless for events whose object has moved on since: the newer state is kept.
    Replay {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        selection: view::SelectionArgs,
    },
    /// Mark dead-lettered jobs resolved without replaying them (done, outcome `discarded`;
    /// retention prunes them like any done job). Audited like replay.
    Discard {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        selection: view::SelectionArgs,
    },
    /// Fill and repair the mirror from Clerk's Backend API (every kind it lists, or those
    /// given with --kind), under the same ordering rule as the worker: safe while webhooks flow.
    /// Resumes an interrupted run. Prints a summary per kind.
    Backfill {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        args: backfill::BackfillArgs,
        /// The summary as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// The backfill as a scheduled sweep (a Kubernetes CronJob, a systemd timer): a fresh
    /// listing of every kind Clerk's API lists (or those given with --kind), tombstoning
    /// what Clerk no longer has. Records per kind how many objects it had to repair (what
    /// webhooks missed) in clerk_sync.backfill_runs, which the worker exports as
    /// clerk_sync_reconcile_repaired_objects.
    Reconcile {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        args: backfill::BackfillArgs,
        /// The summary as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Sign a realistic sample event (fresh ids and timestamps) with CLERK_WEBHOOK_SECRET
    /// and post it to the ingest service, like `stripe trigger`. Prints the svix-id and
    /// the answer.
    /// The operator console: overview, jobs, one job, one Clerk object, replay and discard,
    /// in a browser (see docs/console.md). Listens on CONSOLE_ADDR until SIGTERM or Ctrl-C.
    Console {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        args: clerk_sync_console::Args,
    },
    SendTestEvent {
        /// Event type: one of the samples (user.created, organizationMembership.deleted,
        /// session.created, ...); any other type needs --data.
        #[arg(value_name = "TYPE")]
        event_type: String,
        /// The ingest endpoint.
        #[arg(
            long,
            env = "WEBHOOK_URL",
            default_value = "http://127.0.0.1:8080/webhooks/clerk"
        )]
        url: String,
        /// A JSON file to send as the event's `data` instead of the sample's.
        #[arg(long, value_name = "FILE")]
        data: Option<PathBuf>,
        #[command(flatten)]
        ids: test_event::Ids,
        /// The secret(s) to sign with (the first is used).
        #[arg(
            long,
            env = "CLERK_WEBHOOK_SECRET",
            hide_env_values = true,
            value_parser = clerk_sync_core::config::webhook_secrets
        )]
        clerk_webhook_secret: SecretString,
    },
}

/// A pool on a database that answers and is migrated (else the one-line reason).
async fn pool(db: &DatabaseArgs) -> anyhow::Result<PgPool> {
    db::check(db.url()).await?;
    db::connect(db.url(), "clerk-sync-cli", 2, Default::default()).await
}

/// Each setting has its range; the console's address and token depend on each other.
impl Validate for Cli {
    fn validate(&self) -> Result<(), String> {
        match &self.command {
            Command::Console { args, .. } => args.validate(),
            _ => Ok(()),
        }
    }
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let reconcile = matches!(self.command, Command::Reconcile { .. });
        match self.command {
            Command::Migrate { db } => {
                db::migrate(db.url()).await?;
                println!("migrations applied");
            }
            Command::Status { db, json } => {
                let s = Stats::read(&pool(&db).await?).await?;
                if json {
                    let mut jobs: serde_json::Map<String, serde_json::Value> = s
                        .by_state()
                        .iter()
                        .map(|(state, n)| (state.as_str().to_owned(), (*n).into()))
                        .collect();
                    jobs.insert("skipped".into(), s.skipped.into());
                    jobs.insert("discarded".into(), s.discarded.into());
                    let doc = serde_json::json!({
                        "jobs": jobs,
                        "oldest_pending_age_seconds": s.oldest_pending_age_seconds,
                        "events_received": s.events_received,
                    });
                    println!("{doc}");
                } else {
                    let mut t = Table::new(&["STATE", "JOBS"]);
                    for (state, n) in s.by_state() {
                        let mut notes = Vec::new();
                        if state == jobs::JobState::Done && s.skipped > 0 {
                            notes.push(format!("{} skipped: not mirrored", s.skipped));
                        }
                        if state == jobs::JobState::Done && s.discarded > 0 {
                            notes.push(format!("{} discarded", s.discarded));
                        }
                        if state == jobs::JobState::Retrying && n > 0 {
                            notes.push("failed, waiting for their next attempt".into());
                        }
                        let n = if notes.is_empty() {
                            n.to_string()
                        } else {
                            format!("{n} ({})", notes.join(", "))
                        };
                        t.row(vec![state.as_str().into(), n]);
                    }
                    print!("{}", t.render());
                    println!("oldest pending: {}s", s.oldest_pending_age_seconds);
                    println!("events received: {}", s.events_received);
                }
            }
            Command::Rollup { db, grace_secs } => {
                let pool = pool(&db).await?;
                match jobs::roll_up(&pool, Duration::from_secs(grace_secs)).await? {
                    jobs::Rollup::Busy => {
                        println!("another session is rolling up; nothing done")
                    }
                    jobs::Rollup::Rolled { minutes, through } => println!(
                        "rolled up {minutes} minute(s); rolled up until {}",
                        through.format("%Y-%m-%dT%H:%M:%SZ")
                    ),
                }
            }
            Command::Failed {
                db,
                json,
                event_type,
                limit,
            } => {
                let pool = pool(&db).await?;
                let rows = jobs::dead_letters(&pool, event_type.as_deref(), limit).await?;
                if json {
                    println!("{}", serde_json::to_string(&rows)?);
                } else {
                    let total = if (rows.len() as i64) < limit {
                        rows.len() as i64
                    } else {
                        let filter = jobs::JobFilter {
                            state: Some(jobs::JobState::Dead),
                            event_type,
                            ..Default::default()
                        };
                        ops::count(&pool, &filter).await?
                    };
                    print!("{}", view::failed(&rows, total));
                }
            }
            Command::Jobs {
                db,
                filter,
                limit,
                after,
                json,
            } => {
                let page = ops::list(
                    &pool(&db).await?,
                    &filter.filter()?,
                    after.as_deref(),
                    limit,
                )
                .await?;
                if json {
                    println!("{}", serde_json::to_string(&page)?);
                } else {
                    print!("{}", view::jobs(&page));
                }
            }
            Command::Show { db, id, json } => {
                let Some(detail) = ops::show(&pool(&db).await?, &id).await? else {
                    anyhow::bail!("no job with job id or svix-id {id}");
                };
                if json {
                    println!("{}", serde_json::to_string(&detail)?);
                } else {
                    print!("{}", view::show(&detail));
                }
            }
            Command::Explain { db, id, json } => {
                let explanation = ops::explain(&pool(&db).await?, &id).await?;
                if json {
                    println!("{}", serde_json::to_string(&explanation)?);
                } else {
                    print!("{}", view::explain(&explanation));
                }
            }
            Command::Replay { db, selection } => {
                return view::act(&pool(&db).await?, ops::Action::Replay, &selection).await;
            }
            Command::Discard { db, selection } => {
                return view::act(&pool(&db).await?, ops::Action::Discard, &selection).await;
            }
            Command::Backfill { db, args, json } | Command::Reconcile { db, args, json } => {
                let args = if reconcile {
                    backfill::BackfillArgs {
                        restart: true,
                        prune: true,
                        reconcile: true,
                        ..args
                    }
                } else {
                    args
                };
                let pool = pool(&db).await?;
                let results = backfill::run(&pool, &args).await?;
                if json {
                    let doc: serde_json::Map<String, serde_json::Value> = results
                        .iter()
                        .map(|(k, c)| (k.name.to_owned(), serde_json::json!(c)))
                        .collect();
                    println!("{}", serde_json::Value::Object(doc));
                } else {
                    print!("{}", backfill::summary(&results, args.dry_run));
                }
            }
            Command::Console { db, args } => {
                db::check(db.url()).await?;
                let pool = db::connect(
                    db.url(),
                    "clerk-sync-console",
                    4,
                    db::Session {
                        statement_timeout: Some(Duration::from_secs(10)),
                        ..Default::default()
                    },
                )
                .await?;
                let console =
                    clerk_sync_console::Console::build(args.console_addr, pool, args.settings())
                        .await?;
                tracing::info!(
                    console_addr = %console.local_addr(),
                    read_only = args.read_only,
                    token = args.console_token.is_some(),
                    "clerk-sync console listening"
                );
                console
                    .run_until(clerk_sync_core::shutdown::signal())
                    .await?;
            }
            Command::SendTestEvent {
                event_type,
                url,
                data,
                ids,
                clerk_webhook_secret,
            } => {
                return test_event::send(
                    &event_type,
                    &url,
                    data.as_deref(),
                    &ids,
                    &clerk_webhook_secret,
                )
                .await;
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
