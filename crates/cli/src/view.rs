//! The CLI's face of [`clerk_sync_core::ops`]: `jobs`, `show`, `explain`, `replay`,
//! `discard` and `failed`, rendered for a terminal.

use std::{fmt::Write as _, process::ExitCode, time::Duration};

use chrono::{DateTime, Utc};
use clerk_sync_core::{
    jobs::{self, JobFilter, JobState, Page, Selection},
    ops::{self, Action, Actor, tidy_error},
};
use sqlx::PgPool;

use crate::table::Table;

/// The filter flags of `clerk-sync jobs`.
#[derive(Debug, Clone, clap::Args)]
pub struct FilterArgs {
    #[arg(long, value_enum)]
    pub state: Option<JobState>,
    /// Only this event type, e.g. user.updated.
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: Option<String>,
    /// Received since: a time (2026-12-01T14:00:00Z, 2026-12-01) or an age (90s, 15m, 2h, 7d).
    #[arg(long, value_name = "WHEN", value_parser = parse_when)]
    pub since: Option<DateTime<Utc>>,
    /// Received before: a time or an age, like --since.
    #[arg(long, value_name = "WHEN", value_parser = parse_when)]
    pub until: Option<DateTime<Utc>>,
    /// A job id, svix-id, Clerk object id (a user's or organization's memberships too) or
    /// a user's primary email address.
    #[arg(long, short = 'q', value_name = "TEXT")]
    pub search: Option<String>,
}

impl FilterArgs {
    pub fn filter(&self) -> anyhow::Result<JobFilter> {
        Ok(JobFilter {
            state: self.state,
            event_type: self.event_type.clone(),
            since: self.since,
            until: self.until,
            q: self.search.clone(),
        })
    }
}

/// A time, a date, or an age counted back from now.
fn parse_when(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = n.parse().map_err(|_| bad_when(s))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(bad_when(s)),
    };
    Ok(Utc::now() - chrono::Duration::seconds(secs))
}

fn bad_when(s: &str) -> String {
    format!("`{s}` is not a time (2026-12-01T14:00:00Z, 2026-12-01) or an age (90s, 15m, 2h, 7d)")
}

/// What `replay` and `discard` act on.
#[derive(Debug, Clone, clap::Args)]
pub struct SelectionArgs {
    /// Job ids or svix-ids (the job_id or svix_id column of `clerk-sync failed`).
    #[arg(
        value_name = "ID",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub ids: Vec<String>,
    /// Every dead-lettered job (optionally only of --type).
    #[arg(long)]
    pub all: bool,
    #[arg(long = "type", value_name = "TYPE", requires = "all")]
    pub event_type: Option<String>,
}

impl SelectionArgs {
    fn selection(&self) -> Selection {
        if self.all {
            Selection::Filter(JobFilter {
                state: Some(JobState::Dead),
                event_type: self.event_type.clone(),
                ..Default::default()
            })
        } else {
            Selection::Ids(self.ids.clone())
        }
    }
}

/// How long `replay` waits to say what became of the jobs.
const SETTLE: Duration = Duration::from_secs(2);
/// `replay` names each job's fate up to this many jobs, else counts them.
const NAMED: usize = 20;

/// `replay` / `discard`: act, audit, report. Exit 1 when a given id was not a dead letter.
pub async fn act(pool: &PgPool, action: Action, args: &SelectionArgs) -> anyhow::Result<ExitCode> {
    let selection = args.selection();
    let done = match action {
        Action::Replay => ops::replay(pool, &selection, &Actor::cli()).await?,
        Action::Discard => ops::discard(pool, &selection, &Actor::cli()).await?,
    };
    println!(
        "{} {} job(s)",
        match action {
            Action::Replay => "replayed",
            Action::Discard => "discarded",
        },
        done.job_ids.len()
    );
    let mut code = ExitCode::SUCCESS;
    if !args.all {
        let mut missing = Vec::new();
        for id in &args.ids {
            let job = jobs::get(pool, id).await?;
            if !job.is_some_and(|j| done.job_ids.contains(&j.job_id)) {
                missing.push(id.as_str());
            }
        }
        if !missing.is_empty() {
            eprintln!(
                "not dead-lettered (unknown, or already replayed or discarded): {}",
                missing.join(" ")
            );
            code = ExitCode::from(1);
        }
    }
    if action == Action::Replay && !done.job_ids.is_empty() {
        let now = ops::settle(pool, &done.job_ids, SETTLE).await?;
        let (mut applied, mut dead, mut open) = (0, 0, 0);
        let mut lines = String::new();
        for job in &now {
            let fate = match job.state {
                JobState::Done => {
                    applied += 1;
                    let outcome = job
                        .last_result
                        .as_ref()
                        .and_then(|r| r.get("Ok"))
                        .and_then(|o| o.as_str())
                        .unwrap_or("done");
                    format!("done ({outcome})")
                }
                JobState::Dead => {
                    dead += 1;
                    let error = job
                        .last_result
                        .as_ref()
                        .and_then(|r| r.get("Err"))
                        .and_then(|o| o.as_str())
                        .map(tidy_error)
                        .unwrap_or_default();
                    format!("dead again: {error}")
                }
                JobState::Retrying => {
                    open += 1;
                    format!("failed, retrying at {}", time(job.run_at))
                }
                JobState::Pending | JobState::Running => {
                    open += 1;
                    "still queued".to_owned()
                }
            };
            let _ = writeln!(lines, "  {}  {fate}", job.id);
        }
        if now.len() <= NAMED {
            print!("{lines}");
        } else {
            println!(
                "after {}s: {applied} done, {dead} dead again, {open} still queued",
                SETTLE.as_secs()
            );
        }
    }
    Ok(code)
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), time)
}

fn or_dash(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "-".into())
}

/// `text` folded to lines of at most `width` characters, each after `indent`.
pub fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            out.push_str(indent);
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(indent);
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// "N of M" under a limited listing.
fn shown(n: usize, total: &jobs::Total) -> String {
    if total.exact && n as i64 == total.count {
        format!("{n} job(s)\n")
    } else {
        format!("{n} of {total} job(s)\n")
    }
}

/// `clerk-sync jobs`: a table, each job's last error whole beneath it.
pub fn jobs(page: &Page) -> String {
    if page.rows.is_empty() {
        return "no jobs\n".into();
    }
    let mut out = String::new();
    let mut t = Table::new(&[
        "JOB ID",
        "SVIX ID",
        "TYPE",
        "OBJECT",
        "STATE",
        "ATTEMPTS",
        "NEXT RETRY",
        "RECEIVED",
    ]);
    for r in &page.rows {
        let state = match &r.outcome {
            Some(o) if r.state == JobState::Done => format!("done ({o})"),
            _ => r.state.to_string(),
        };
        t.row(vec![
            r.job_id.clone(),
            or_dash(&r.svix_id),
            or_dash(&r.event_type),
            or_dash(&r.object_id),
            state,
            format!("{}/{}", r.attempts, r.max_attempts),
            opt_time(r.next_retry_at),
            opt_time(r.received_at),
        ]);
    }
    // The table, then each failed job's error whole, under its id.
    out.push_str(&t.render());
    let failed: Vec<_> = page
        .rows
        .iter()
        .filter(|r| r.last_error.is_some() && r.state != JobState::Done)
        .collect();
    if !failed.is_empty() {
        out.push_str("\nlast errors:\n");
        for r in failed {
            let _ = writeln!(out, "  {}:", r.job_id);
            out.push_str(&wrap(
                &tidy_error(r.last_error.as_deref().unwrap_or_default()),
                96,
                "    ",
            ));
        }
    }
    out.push_str(&shown(page.rows.len(), &page.total));
    if let Some(next) = &page.next {
        let _ = writeln!(out, "more: --after {next}");
    }
    out
}

/// `clerk-sync failed`: the dead letters, each error whole beneath its row.
pub fn failed(rows: &[jobs::DeadLetter], total: i64) -> String {
    if rows.is_empty() {
        return "no dead-lettered jobs\n".into();
    }
    let mut t = Table::new(&[
        "JOB ID",
        "SVIX ID",
        "TYPE",
        "OBJECT",
        "ATTEMPTS",
        "FIRST FAILED",
        "LAST FAILED",
    ]);
    for r in rows {
        t.row(vec![
            r.job_id.clone(),
            or_dash(&r.svix_id),
            or_dash(&r.event_type),
            or_dash(&r.object_id),
            r.attempts.to_string(),
            opt_time(r.first_failed_at),
            opt_time(r.failed_at),
        ]);
    }
    let mut out = t.render();
    out.push_str("\nerrors:\n");
    for r in rows {
        let _ = writeln!(out, "  {}:", r.job_id);
        out.push_str(&wrap(
            &tidy_error(r.last_error.as_deref().unwrap_or("-")),
            96,
            "    ",
        ));
    }
    if rows.len() as i64 == total {
        let _ = writeln!(out, "{total} dead-lettered job(s)");
    } else {
        let _ = writeln!(out, "{} of {total} dead-lettered job(s)", rows.len());
    }
    out
}

fn json_block(v: &impl serde::Serialize, indent: &str) -> String {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    text.lines().map(|l| format!("{indent}{l}\n")).collect()
}

/// `clerk-sync show`.
pub fn show(d: &ops::JobDetail) -> String {
    let j = &d.job;
    let mut out = String::new();
    let state = match &j.outcome {
        Some(o) if j.state == JobState::Done => format!("done ({o})"),
        _ => j.state.to_string(),
    };
    let _ = writeln!(out, "job:       {}", j.job_id);
    let _ = writeln!(out, "svix-id:   {}", or_dash(&j.svix_id));
    let _ = writeln!(out, "type:      {}", or_dash(&j.event_type));
    let _ = writeln!(out, "object:    {}", or_dash(&j.object_id));
    let _ = writeln!(out, "state:     {state}");
    let _ = writeln!(out, "attempts:  {} of {}", j.attempts, j.max_attempts);
    if let Some(t) = j.next_retry_at {
        let _ = writeln!(out, "next retry: {}", time(t));
    }
    let _ = writeln!(out, "received:  {}", opt_time(j.received_at));
    let _ = writeln!(out, "updated:   {}", time(j.updated_at));
    out.push_str("\nhistory:\n");
    if d.history.is_empty() {
        out.push_str("  no failed attempt\n");
    }
    for a in &d.history {
        if a.is_marker() {
            let _ = writeln!(
                out,
                "  {}  -- {} (after {} attempt(s)) --",
                time(a.at),
                a.error,
                a.attempt
            );
        } else {
            let _ = writeln!(out, "  {}  attempt {}  {}", time(a.at), a.attempt, a.kind);
            out.push_str(&wrap(&tidy_error(&a.error), 96, "      "));
        }
    }
    match &d.event {
        Some(e) => {
            let _ = writeln!(
                out,
                "\nevent {} (received {}):",
                e.svix_id,
                time(e.received_at)
            );
            for line in e.body.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        None => out.push_str("\nevent: not stored\n"),
    }
    match &d.mirror {
        Some(m) => {
            let _ = writeln!(out, "\nmirror row now ({}):", m.table);
            out.push_str(&json_block(&m.row, "  "));
        }
        None => out.push_str("\nmirror row now: none\n"),
    }
    out
}

/// `clerk-sync explain`.
pub fn explain(x: &ops::Explanation) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({})",
        x.clerk_id,
        x.kind.unwrap_or("not a mirrored kind")
    );
    match &x.mirror {
        Some(m) => {
            let _ = writeln!(out, "\nmirror row now ({}):", m.table);
            out.push_str(&json_block(&m.row, "  "));
        }
        None => out.push_str("\nmirror row now: none\n"),
    }
    if x.events.is_empty() {
        out.push_str("\nno stored event about it\n");
        return out;
    }
    out.push_str("\nstored events, by version:\n");
    let mut t = Table::new(&[
        "VERSION", "RECEIVED", "SVIX ID", "TYPE", "JOB", "STATE", "VERDICT",
    ]);
    for e in &x.events {
        let state = match (&e.job_state, &e.outcome) {
            (Some(JobState::Done), Some(o)) => format!("done ({o})"),
            (Some(s), _) => s.to_string(),
            (None, _) => "pruned".into(),
        };
        let verdict = match e.verdict {
            ops::Verdict::Reflected => "<- the row reflects this",
            ops::Verdict::Superseded => "superseded by a newer event",
            ops::Verdict::IgnoredOlder => "ignored: older than the row",
            ops::Verdict::Duplicate => "ignored: duplicate of an applied version",
            ops::Verdict::NotApplied => "not applied",
            ops::Verdict::NotMirrored => "not mirrored",
            ops::Verdict::Malformed => "malformed",
        };
        t.row(vec![
            e.version.map_or_else(
                || "-".into(),
                |v| v.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
            ),
            time(e.event.received_at),
            e.event.svix_id.clone(),
            or_dash(&e.event.event_type),
            or_dash(&e.job_id),
            state,
            verdict.into(),
        ]);
    }
    out.push_str(&t.render());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_wrap_whole_never_cut() {
        let e = "new row for relation \"users\" violates check constraint \"no_mallory\": Failing row contains (user_op0, null, Mallory)";
        let w = wrap(e, 40, "  ");
        assert!(w.lines().all(|l| l.chars().count() <= 42), "{w}");
        assert_eq!(w.lines().map(str::trim).collect::<Vec<_>>().join(" "), e);
    }

    #[test]
    fn ages_and_times_parse() {
        let t = parse_when("15m").unwrap();
        let age = Utc::now() - t;
        assert!((899..=901).contains(&age.num_seconds()), "{age}");
        assert_eq!(
            parse_when("2026-12-01").unwrap().to_rfc3339(),
            "2026-12-01T00:00:00+00:00"
        );
        assert!(parse_when("soon").unwrap_err().contains("not a time"));
        assert!(parse_when("5w").is_err());
    }
}
