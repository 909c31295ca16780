//! `clerk-sync`: the operator CLI. Migrations, queue status, dead letters and replay,
//! signed test events.

mod backfill;
mod clerk_api;
pub mod http;
mod table;
mod test_event;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use clerk_sync_core::{
    config::DatabaseArgs,
    db,
    exit::Validate,
    jobs::{self, Selection, Stats},
};
use secrecy::SecretString;
use sqlx::PgPool;

use crate::table::{Table, one_line};

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
        /// jobs, those whose event type is not mirrored).
        #[arg(long)]
        json: bool,
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
    /// Put dead-lettered jobs back in the queue with fresh attempts and wake the workers.
    /// Harmless for events whose object has moved on since: the newer state is kept.
    Replay {
        #[command(flatten)]
        db: DatabaseArgs,
        /// Job ids (the job_id column of `clerk-sync failed`).
        #[arg(
            value_name = "JOB_ID",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        ids: Vec<String>,
        /// Every dead-lettered job (optionally only of --type).
        #[arg(long)]
        all: bool,
        #[arg(long = "type", value_name = "TYPE", requires = "all")]
        event_type: Option<String>,
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

/// Each setting has its range; none depends on another.
impl Validate for Cli {}

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
                    let doc = serde_json::json!({
                        "jobs": jobs,
                        "oldest_pending_age_seconds": s.oldest_pending_age_seconds,
                        "events_received": s.events_received,
                    });
                    println!("{doc}");
                } else {
                    let mut t = Table::new(&["STATE", "JOBS"]);
                    for (state, n) in s.by_state() {
                        let n = if state == jobs::JobState::Done && s.skipped > 0 {
                            format!("{n} ({} skipped: not mirrored)", s.skipped)
                        } else {
                            n.to_string()
                        };
                        t.row(vec![state.as_str().into(), n]);
                    }
                    print!("{}", t.render());
                    println!("oldest pending: {}s", s.oldest_pending_age_seconds);
                    println!("events received: {}", s.events_received);
                }
            }
            Command::Failed {
                db,
                json,
                event_type,
                limit,
            } => {
                let rows =
                    jobs::dead_letters(&pool(&db).await?, event_type.as_deref(), limit).await?;
                if json {
                    println!("{}", serde_json::to_string(&rows)?);
                } else if rows.is_empty() {
                    println!("no dead-lettered jobs");
                } else {
                    let mut t = Table::new(&[
                        "JOB ID",
                        "SVIX ID",
                        "TYPE",
                        "OBJECT",
                        "ATTEMPTS",
                        "FIRST FAILED",
                        "LAST FAILED",
                        "LAST ERROR",
                    ]);
                    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
                        t.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    };
                    for r in &rows {
                        t.row(vec![
                            r.job_id.clone(),
                            r.svix_id.clone().unwrap_or_else(|| "-".into()),
                            r.event_type.clone().unwrap_or_else(|| "-".into()),
                            r.object_id.clone().unwrap_or_else(|| "-".into()),
                            r.attempts.to_string(),
                            time(r.first_failed_at),
                            time(r.failed_at),
                            one_line(r.last_error.as_deref().unwrap_or("-"), 80),
                        ]);
                    }
                    print!("{}", t.render());
                }
            }
            Command::Replay {
                db,
                ids,
                all,
                event_type,
            } => {
                let selection = if all {
                    Selection::All {
                        event_type: event_type.as_deref(),
                    }
                } else {
                    Selection::Ids(&ids)
                };
                let replayed = jobs::replay(&pool(&db).await?, selection).await?;
                println!("replayed {} job(s)", replayed.len());
                if !all && replayed.len() < ids.len() {
                    let missing: Vec<&String> =
                        ids.iter().filter(|id| !replayed.contains(id)).collect();
                    eprintln!(
                        "not dead-lettered (unknown, or already replayed): {}",
                        missing
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(" ")
                    );
                    return Ok(ExitCode::from(1));
                }
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
            Command::SendTestEvent {
                event_type,
                url,
                data,
                clerk_webhook_secret,
            } => {
                return test_event::send(&event_type, &url, data.as_deref(), &clerk_webhook_secret)
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
