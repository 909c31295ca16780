//! `/jobs/{job id or svix-id}`: the verified raw event as pretty JSON, every attempt with
//! its time and error (and every replay or discard), the mirror row as it is now, and the
//! actions on a dead letter.

use std::sync::Arc;

use axum::{
    extract::{Path, Query, State},
    response::Html,
};
use clerk_sync_core::{jobs::JobState, ops};
use maud::html;
use serde::Deserialize;

use super::{object_link, state_badge};
use crate::{AppState, ConsoleError, layout};

#[derive(Debug, Deserialize)]
pub(crate) struct JobQuery {
    /// After an action on this job.
    done: Option<String>,
}

pub(crate) async fn page(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<JobQuery>,
) -> Result<Html<String>, ConsoleError> {
    let Some(d) = ops::show(&state.pool, &id).await? else {
        return Err(ConsoleError::NotFound(format!(
            "no job has the job id or svix-id {id:?} (done jobs are pruned after the retention period)"
        )));
    };
    let ctx = layout::Ctx::of(&state);
    let j = &d.job;
    let path = layout::encode_segment(&j.job_id);
    let body = html! {
        h1 { "Job " span.mono { (j.job_id) } }
        @match query.done.as_deref() {
            Some("replay") => p.notice role="status" id="notice" { "Replayed: the job is back in the queue with fresh attempts." },
            Some("discard") => p.notice role="status" id="notice" { "Discarded: the dead letter is resolved without replaying." },
            _ => {}
        }
        dl.facts id="job" {
            dt { "State" } dd id="job-state" { (state_badge(j.state)) @if let Some(o) = &j.outcome { " " span.muted { (o) } } }
            dt { "Event type" } dd { (j.event_type.as_deref().unwrap_or("–")) }
            dt { "svix-id" } dd.mono id="job-svix-id" { (j.svix_id.as_deref().unwrap_or("–")) }
            dt { "Clerk object" } dd { (object_link(j.object_id.as_deref())) }
            dt { "Attempts" } dd { (j.attempts) " of " (j.max_attempts) }
            @if let Some(t) = j.next_retry_at { dt { "Next attempt" } dd { (layout::time(t)) } }
            dt { "Received" } dd { (layout::opt_time(j.received_at)) }
            dt { "Last change" } dd { (layout::time(j.updated_at)) }
        }
        @if j.state == JobState::Dead && !ctx.read_only {
            div.actions {
                form.inline method="post" action={"/jobs/" (path) "/replay"} {
                    (ctx.csrf_field())
                    button id="replay" type="submit" { "Replay" }
                }
                form.inline method="post" action={"/jobs/" (path) "/discard"} {
                    (ctx.csrf_field())
                    button.danger id="discard" type="submit" { "Discard (resolve without replaying)" }
                }
            }
        }
        h2 { "Attempts" }
        @if d.history.is_empty() {
            p.muted { "No failed attempt." }
        } @else {
            table id="history" {
                thead { tr { th.num { "Attempt" } th { "At" } th { "Kind" } th { "Error" } } }
                tbody {
                    @for a in &d.history {
                        tr class=[a.is_marker().then_some("marker")] {
                            td.num { (a.attempt) }
                            td { (layout::time(a.at)) }
                            td { (a.kind) }
                            td class=[(!a.is_marker()).then_some("error")] { (ops::tidy_error(&a.error)) }
                        }
                    }
                }
            }
        }
        h2 { "Mirror row now" }
        @match &d.mirror {
            Some(m) => {
                p.muted { (m.table) }
                pre id="mirror-row" { (serde_json::to_string_pretty(&m.row).unwrap_or_default()) }
            }
            None => p.muted id="mirror-row" { "No mirror row (not applied yet, not a mirrored kind, or erased)." },
        }
        h2 { "Event (verified raw body)" }
        @match &d.event {
            Some(e) => {
                p.muted { "Received " (layout::time(e.received_at)) @if let Some(t) = e.event_timestamp { ", Clerk's timestamp " (layout::time(t)) } }
                pre id="event-body" { (e.body) }
            }
            None => p.muted { "The stored event is gone (pruned by retention)." },
        }
    };
    Ok(Html(
        layout::page(&format!("Job {}", j.job_id), &ctx, body).into_string(),
    ))
}
