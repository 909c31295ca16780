//! `/objects/{Clerk id}`: why does this row look like this? The mirror row and every stored
//! event for the object in order, marking the one the row reflects and those ignored as
//! older.

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    response::Html,
};
use clerk_sync_core::ops::{self, Verdict};
use maud::html;

use super::{job_link, state_badge};
use crate::{AppState, ConsoleError, layout};

fn verdict_text(v: Verdict) -> &'static str {
    match v {
        Verdict::Reflected => "reflected by the row",
        Verdict::Superseded => "applied, then superseded",
        Verdict::IgnoredOlder => "ignored: older than the row",
        Verdict::Duplicate => "same version as one applied",
        Verdict::NotApplied => "not applied",
        Verdict::NotMirrored => "not mirrored",
        Verdict::Malformed => "malformed",
    }
}

fn verdict_class(v: Verdict) -> Option<&'static str> {
    match v {
        Verdict::Reflected => Some("reflected"),
        Verdict::IgnoredOlder | Verdict::Duplicate => Some("ignored"),
        _ => None,
    }
}

pub(crate) async fn page(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Html<String>, ConsoleError> {
    let x = ops::explain(&state.pool, &id).await?;
    if x.mirror.is_none() && x.events.is_empty() {
        return Err(ConsoleError::NotFound(format!(
            "no mirror row and no stored event for {id:?}"
        )));
    }
    let ctx = layout::Ctx::of(&state);
    let body = html! {
        h1 { (x.kind.unwrap_or("Object")) " " span.mono { (x.clerk_id) } }
        p { a href={"/jobs?q=" (layout::encode_query(&x.clerk_id))} { "Its jobs" } }
        h2 { "Stored events, by version" }
        table id="events" {
            thead { tr {
                th { "Version" } th { "Received" } th { "Type" } th { "Job" } th { "State" } th { "What it did" } th { "Body" }
            } }
            tbody {
                @for e in &x.events {
                    tr class=[verdict_class(e.verdict)] data-verdict=(e.verdict.as_str()) {
                        td { (layout::opt_time(e.version)) }
                        td { (layout::time(e.event.received_at)) }
                        td { (e.event.event_type.as_deref().unwrap_or("–")) @if e.deleted { " " span.muted { "(delete)" } } }
                        td { @match &e.job_id { Some(j) => (job_link(j)), None => span.muted { "–" } } }
                        td { @if let Some(s) = e.job_state { (state_badge(s)) } @if let Some(o) = &e.outcome { " " span.muted { (o) } } }
                        td { (verdict_text(e.verdict)) }
                        td { details { summary { (e.event.svix_id) } pre { (e.event.body) } } }
                    }
                }
            }
        }
        h2 { "Mirror row now" }
        @match &x.mirror {
            Some(m) => {
                p.muted { (m.table) }
                pre id="mirror-row" { (serde_json::to_string_pretty(&m.row).unwrap_or_default()) }
            }
            None => p.muted id="mirror-row" { "No mirror row." },
        }
    };
    Ok(Html(layout::page(&x.clerk_id, &ctx, body).into_string()))
}
