//! The frame every page shares, the embedded stylesheet, and small formatting helpers.

use axum::{
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use crate::AppState;

const STYLESHEET: &str = include_str!("../assets/console.css");

/// What the frame and the forms of a page need to know.
pub(crate) struct Ctx {
    pub read_only: bool,
    pub csrf: String,
    pub signs_in: bool,
}

impl Ctx {
    pub fn of(state: &AppState) -> Self {
        Self {
            read_only: state.read_only,
            csrf: state.auth.csrf().to_owned(),
            signs_in: state.auth.signs_in(),
        }
    }

    /// The hidden field every form posts.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }
}

fn head(title: &str) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        title { (title) " · clerk-sync console" }
        link rel="stylesheet" href="/static/console.css";
    }
}

/// A page with the navigation: overview, jobs, search, and sign-out when signed in.
pub(crate) fn page(title: &str, ctx: &Ctx, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title)) }
            body {
                header.top {
                    a.brand href="/" { "clerk-sync" }
                    nav {
                        a href="/" { "Overview" }
                        a href="/jobs" { "Jobs" }
                        a href="/jobs?state=dead" { "Dead letters" }
                    }
                    form.search method="get" action="/jobs" role="search" {
                        input type="search" name="q" placeholder="svix-id, Clerk id or email" aria-label="Search jobs";
                        button type="submit" { "Search" }
                    }
                    @if ctx.read_only { span.badge title="started with --read-only" { "read-only" } }
                    @if ctx.signs_in {
                        form.logout method="post" action="/logout" {
                            (ctx.csrf_field())
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page without navigation (errors).
pub(crate) fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title)) }
            body { main { (body) } }
        }
    }
}

pub(crate) async fn stylesheet() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=3600"),
            ),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// Percent-encodes a query value.
pub(crate) fn encode_query(value: &str) -> String {
    serde_urlencoded::to_string([("", value)])
        .map(|s| s.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

/// Percent-encodes one path segment (ids are ASCII, but a link must never break out).
pub(crate) fn encode_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn time(t: DateTime<Utc>) -> Markup {
    html! { time datetime=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M:%S")) } }
}

pub(crate) fn opt_time(t: Option<DateTime<Utc>>) -> Markup {
    match t {
        Some(t) => time(t),
        None => html! { "–" },
    }
}

/// At most `max` characters, with `…` when cut (the full text is one click away).
pub(crate) fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// `42 s`, `3 min`, `5 h 2 min`, `2 d 3 h`.
pub(crate) fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86400, (s % 86400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_cannot_break_out() {
        assert_eq!(
            encode_segment("user_2x/../?a=<b>"),
            "user_2x%2F..%2F%3Fa%3D%3Cb%3E"
        );
        assert_eq!(
            encode_query("/jobs?state=dead&q=a b"),
            "%2Fjobs%3Fstate%3Ddead%26q%3Da+b"
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(5), "5 s");
        assert_eq!(duration(125), "2 min 5 s");
        assert_eq!(duration(3 * 3600 + 120), "3 h 2 min");
        assert_eq!(duration(-3), "0 s");
    }
}
