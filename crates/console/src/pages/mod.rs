//! One module per page. Each reads and acts through `clerk_sync_core::ops` (the CLI's
//! queries and actions) and renders with maud.

pub(crate) mod actions;
pub(crate) mod job;
pub(crate) mod jobs;
pub(crate) mod object;
pub(crate) mod overview;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use clerk_sync_core::jobs::{JobFilter, JobState};
use maud::{Markup, html};
use serde::Deserialize;

use crate::{ConsoleError, layout};

pub(crate) async fn not_found() -> ConsoleError {
    ConsoleError::NotFound("no such page".to_owned())
}

/// A job filter as a query string or form carries it: empty fields are unset.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct FilterParams {
    pub state: Option<String>,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    pub q: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
}

fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// `2026-12-01T14:30` (a browser's datetime-local), with seconds, RFC 3339, or a date; UTC.
fn parse_time(field: &str, v: &str) -> Result<DateTime<Utc>, ConsoleError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, format) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    Err(ConsoleError::BadRequest(format!(
        "{field}: {v:?} is not a time (use 2026-12-01T14:30, UTC, or RFC 3339)"
    )))
}

impl FilterParams {
    pub fn filter(&self) -> Result<JobFilter, ConsoleError> {
        let state = match set(&self.state) {
            None => None,
            Some(s) => Some(JobState::parse(s).ok_or_else(|| {
                ConsoleError::BadRequest(format!(
                    "state: {s:?} is not one of pending, running, retrying, done, dead"
                ))
            })?),
        };
        Ok(JobFilter {
            state,
            event_type: set(&self.event_type).map(str::to_owned),
            q: set(&self.q).map(str::to_owned),
            since: set(&self.since)
                .map(|v| parse_time("since", v))
                .transpose()?,
            until: set(&self.until)
                .map(|v| parse_time("until", v))
                .transpose()?,
        })
    }
}

fn time_param(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// The filter's fields as `(name, value)` pairs, for links and hidden form fields.
pub(crate) fn filter_pairs(f: &JobFilter) -> Vec<(&'static str, String)> {
    let mut pairs = Vec::new();
    if let Some(s) = f.state {
        pairs.push(("state", s.as_str().to_owned()));
    }
    if let Some(t) = &f.event_type {
        pairs.push(("type", t.clone()));
    }
    if let Some(q) = &f.q {
        pairs.push(("q", q.clone()));
    }
    if let Some(t) = f.since {
        pairs.push(("since", time_param(t)));
    }
    if let Some(t) = f.until {
        pairs.push(("until", time_param(t)));
    }
    pairs
}

pub(crate) fn query_string(pairs: &[(&str, String)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

/// The filter in words: `state dead, type user.created`.
pub(crate) fn describe(f: &JobFilter) -> String {
    let pairs = filter_pairs(f);
    if pairs.is_empty() {
        return "all jobs".to_owned();
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn state_badge(state: JobState) -> Markup {
    html! { span class={"state " (state.as_str())} { (state.as_str()) } }
}

pub(crate) fn job_link(id: &str) -> Markup {
    html! { a.mono href={"/jobs/" (layout::encode_segment(id))} { (id) } }
}

pub(crate) fn object_link(id: Option<&str>) -> Markup {
    match id {
        Some(id) => html! { a.mono href={"/objects/" (layout::encode_segment(id))} { (id) } },
        None => html! { span.muted { "–" } },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_round_trip_through_their_query_string() {
        let p = FilterParams {
            state: Some("dead".into()),
            event_type: Some(" user.created ".into()),
            q: Some("".into()),
            since: Some("2026-12-01T14:30".into()),
            until: None,
        };
        let f = p.filter().unwrap();
        assert_eq!(f.state, Some(JobState::Dead));
        assert_eq!(f.event_type.as_deref(), Some("user.created"));
        assert_eq!(f.q, None);
        let qs = query_string(&filter_pairs(&f));
        assert_eq!(
            qs,
            "state=dead&type=user.created&since=2026-12-01T14%3A30%3A00"
        );
        let again: FilterParams = serde_urlencoded::from_str(&qs).unwrap();
        assert_eq!(again.filter().unwrap(), f);
    }

    #[test]
    fn bad_filters_are_named() {
        let p = FilterParams {
            state: Some("zombie".into()),
            ..Default::default()
        };
        assert!(
            p.filter()
                .unwrap_err()
                .to_string()
                .starts_with("state: \"zombie\"")
        );
        let p = FilterParams {
            until: Some("yesterday".into()),
            ..Default::default()
        };
        assert!(
            p.filter()
                .unwrap_err()
                .to_string()
                .starts_with("until: \"yesterday\"")
        );
    }
}
