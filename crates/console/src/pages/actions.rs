//! Replay and discard: one dead letter from its page, or every dead letter matching a
//! filter after a confirmation page that shows how many. Each is a POST (CSRF-checked by
//! [`crate::auth::require`], refused when read-only by [`crate::auth::actions_allowed`])
//! and is written to `clerk_sync.operator_actions` by `ops`.

use std::sync::Arc;

use axum::{
    Extension, Form,
    extract::{Path, Query, State},
    response::{Html, IntoResponse, Redirect, Response},
};
use clerk_sync_core::{
    jobs::{JobFilter, JobState, Selection},
    ops::{self, Action, Actor},
};
use maud::html;
use serde::Deserialize;

use super::{FilterParams, describe, filter_pairs, query_string};
use crate::{AppState, ConsoleError, auth::Who, layout};

fn action(name: &str) -> Result<Action, ConsoleError> {
    match name {
        "replay" => Ok(Action::Replay),
        "discard" => Ok(Action::Discard),
        other => Err(ConsoleError::NotFound(format!(
            "no action {other:?} (replay, discard)"
        ))),
    }
}

/// The filter an action applies to: only dead letters.
fn dead_only(params: &FilterParams) -> Result<JobFilter, ConsoleError> {
    let mut filter = params.filter()?;
    match filter.state {
        None | Some(JobState::Dead) => filter.state = Some(JobState::Dead),
        Some(other) => {
            return Err(ConsoleError::BadRequest(format!(
                "state: replay and discard act on dead letters only, not on {} jobs",
                other.as_str()
            )));
        }
    }
    Ok(filter)
}

async fn act(
    state: &AppState,
    action: Action,
    selection: &Selection,
    who: &Who,
) -> Result<ops::Done, ConsoleError> {
    let actor = Actor(format!("console:{}", who.0));
    let done = match action {
        Action::Replay => ops::replay(&state.pool, selection, &actor).await,
        Action::Discard => ops::discard(&state.pool, selection, &actor).await,
    }
    .map_err(ConsoleError::Internal)?;
    tracing::info!(
        action = action.as_str(),
        actor = %actor.0,
        jobs = done.job_ids.len(),
        action_id = done.action_id,
        "console action"
    );
    Ok(done)
}

/// `GET /actions/{replay|discard}?filter`: how many dead letters match, and the button.
pub(crate) async fn confirm(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(params): Query<FilterParams>,
) -> Result<Html<String>, ConsoleError> {
    if state.read_only {
        return Err(ConsoleError::ReadOnly);
    }
    let action = action(&name)?;
    let filter = dead_only(&params)?;
    let n = ops::count(&state.pool, &filter).await?;
    let ctx = layout::Ctx::of(&state);
    let pairs = filter_pairs(&filter);
    let verb = match action {
        Action::Replay => "Replay",
        Action::Discard => "Discard",
    };
    let body = html! {
        h1 { (verb) " dead letters" }
        p id="confirm-count" data-count=(n) {
            strong { (n) } " dead letter(s) match: " (describe(&filter)) "."
        }
        @match action {
            Action::Replay => p { "Each goes back in the queue with fresh attempts. Harmless for events whose object has moved on since: the newer state is kept." },
            Action::Discard => p { "Each is marked resolved without being applied; its event stays until retention prunes it." },
        }
        @if n > 0 {
            form method="post" action={"/actions/" (action.as_str())} {
                (ctx.csrf_field())
                @for (k, v) in &pairs { input type="hidden" name=(k) value=(v); }
                input type="hidden" name="expected" value=(n);
                div.actions {
                    button id="confirm" type="submit" class=[(action == Action::Discard).then_some("danger")] { (verb) " " (n) " job(s)" }
                    a href={"/jobs?" (query_string(&pairs))} { "Cancel" }
                }
            }
        } @else {
            p { a href={"/jobs?" (query_string(&pairs))} { "Back to the jobs" } }
        }
    };
    Ok(Html(layout::page(verb, &ctx, body).into_string()))
}

#[derive(Debug, Deserialize)]
pub(crate) struct ActionForm {
    #[serde(flatten)]
    filter: FilterParams,
    /// The count the operator confirmed.
    expected: String,
}

/// `POST /actions/{replay|discard}`: acts on the confirmed selection, unless it changed.
pub(crate) async fn apply(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Extension(who): Extension<Who>,
    Form(form): Form<ActionForm>,
) -> Result<Response, ConsoleError> {
    let action = action(&name)?;
    let filter = dead_only(&form.filter)?;
    let expected: i64 = form
        .expected
        .parse()
        .map_err(|_| ConsoleError::BadRequest("expected: not a count".into()))?;
    let now = ops::count(&state.pool, &filter).await?;
    if now != expected {
        return Err(ConsoleError::Conflict(format!(
            "{now} dead letter(s) match now, not the {expected} you confirmed: review them and confirm again"
        )));
    }
    let done = act(&state, action, &Selection::Filter(filter.clone()), &who).await?;
    let mut pairs = filter_pairs(&filter);
    pairs.push(("done", action.as_str().to_owned()));
    pairs.push(("n", done.job_ids.len().to_string()));
    Ok(Redirect::to(&format!("/jobs?{}", query_string(&pairs))).into_response())
}

async fn one(
    state: &AppState,
    action: Action,
    id: String,
    who: &Who,
) -> Result<Response, ConsoleError> {
    let done = act(state, action, &Selection::Ids(vec![id.clone()]), who).await?;
    let Some(job_id) = done.job_ids.first() else {
        return Err(ConsoleError::Conflict(format!(
            "job {id:?} is not dead-lettered (already replayed or discarded, or unknown)"
        )));
    };
    let to = format!(
        "/jobs/{}?done={}",
        layout::encode_segment(job_id),
        action.as_str()
    );
    Ok(Redirect::to(&to).into_response())
}

pub(crate) async fn replay_one(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(who): Extension<Who>,
) -> Result<Response, ConsoleError> {
    one(&state, Action::Replay, id, &who).await
}

pub(crate) async fn discard_one(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(who): Extension<Who>,
) -> Result<Response, ConsoleError> {
    one(&state, Action::Discard, id, &who).await
}
