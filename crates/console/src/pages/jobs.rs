//! `/jobs?state=&type=&q=&since=&until=&after=`: jobs newest first, filtered, searched by
//! svix-id, job id, Clerk object id or email, keyset-paginated (`after` = the last job id
//! of the page before). A search that names exactly one job by its svix-id or job id opens
//! that job.

use std::sync::Arc;

use axum::{
    extract::{Query, State},
    response::{Html, IntoResponse, Redirect, Response},
};
use clerk_sync_core::{jobs::JobState, ops};
use maud::html;
use serde::Deserialize;

use super::{
    FilterParams, describe, filter_pairs, job_link, object_link, query_string, state_badge,
};
use crate::{AppState, ConsoleError, layout};

pub(crate) const PAGE_SIZE: i64 = 50;

#[derive(Debug, Deserialize)]
pub(crate) struct JobsQuery {
    #[serde(flatten)]
    filter: FilterParams,
    after: Option<String>,
    /// After an action: which one, and how many jobs it changed.
    done: Option<String>,
    n: Option<String>,
}

pub(crate) async fn page(
    State(state): State<Arc<AppState>>,
    Query(query): Query<JobsQuery>,
) -> Result<Response, ConsoleError> {
    let filter = query.filter.filter()?;
    let after = query.after.as_deref().filter(|a| !a.is_empty());
    let page = ops::list(&state.pool, &filter, after, PAGE_SIZE).await?;
    if let (Some(q), None, [only]) = (&filter.q, after, page.rows.as_slice())
        && (only.svix_id.as_deref() == Some(q.as_str()) || only.job_id == *q)
    {
        let to = format!("/jobs/{}", layout::encode_segment(&only.job_id));
        return Ok(Redirect::to(&to).into_response());
    }
    let ctx = layout::Ctx::of(&state);
    let pairs = filter_pairs(&filter);
    let here = query_string(&pairs);
    let f = &filter;
    let dead_selectable = matches!(f.state, None | Some(JobState::Dead));
    // An action only ever touches dead letters.
    let mut dead = pairs.clone();
    if f.state.is_none() {
        dead.insert(0, ("state", JobState::Dead.as_str().to_owned()));
    }
    let older = page.next.as_ref().map(|next| {
        let mut p = pairs.clone();
        p.push(("after", next.clone()));
        format!("/jobs?{}", query_string(&p))
    });
    let body = html! {
        h1 { "Jobs" }
        @if let (Some(action), Some(n)) = (query.done.as_deref(), query.n.as_deref().and_then(|n| n.parse::<u64>().ok())) {
            @if matches!(action, "replay" | "discard") {
                p.notice role="status" id="notice" {
                    (if action == "replay" { "Replayed " } else { "Discarded " }) (n) " job(s)."
                }
            }
        }
        form.filters method="get" action="/jobs" {
            label { "State"
                select name="state" {
                    option value="" selected[f.state.is_none()] { "any" }
                    @for s in JobState::ALL {
                        option value=(s.as_str()) selected[f.state == Some(s)] { (s.as_str()) }
                    }
                }
            }
            label { "Event type" input type="text" name="type" value=[f.event_type.as_deref()] placeholder="user.updated"; }
            label { "Search" input type="search" name="q" value=[f.q.as_deref()] placeholder="svix-id, job id, Clerk id, email"; }
            label { "Received since (UTC)" input type="datetime-local" name="since" step="1" value=[f.since.map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())]; }
            label { "until (UTC)" input type="datetime-local" name="until" step="1" value=[f.until.map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())]; }
            button type="submit" { "Filter" }
            a href="/jobs" { "Clear" }
        }
        p.muted id="total" { (page.total) " job(s) match: " (describe(f)) "." }
        @if !ctx.read_only && dead_selectable {
            div.actions {
                a id="replay-matching" href={"/actions/replay?" (query_string(&dead))} { "Replay the dead letters matching this filter…" }
                a id="discard-matching" href={"/actions/discard?" (query_string(&dead))} { "Discard them…" }
            }
        }
        @if page.rows.is_empty() {
            p id="no-jobs" { "No job matches." }
        } @else {
            table id="jobs" {
                thead { tr {
                    th { "Job" } th { "Received" } th { "Type" } th { "Object" } th { "State" }
                    th.num { "Attempts" } th { "Last error" } th { "svix-id" }
                } }
                tbody {
                    @for r in &page.rows {
                        tr {
                            td { (job_link(&r.job_id)) }
                            td { (layout::opt_time(r.received_at)) }
                            td { (r.event_type.as_deref().unwrap_or("–")) }
                            td { (object_link(r.object_id.as_deref())) }
                            td { (state_badge(r.state)) @if let Some(o) = &r.outcome { " " span.muted { (o) } } }
                            td.num { (r.attempts) }
                            td.error { @if let Some(e) = &r.last_error { (layout::clip(&ops::tidy_error(e), 160)) } }
                            td.mono { (r.svix_id.as_deref().unwrap_or("–")) }
                        }
                    }
                }
            }
        }
        nav.pager {
            @if after.is_some() { a href={"/jobs?" (here)} { "← Newest" } }
            @if let Some(older) = &older { a id="older" href=(older) { "Older →" } }
        }
    };
    Ok(Html(layout::page("Jobs", &ctx, body).into_string()).into_response())
}
