//! `/`: is the sync healthy? Jobs by state, the oldest pending job's age, events per minute
//! and apply lag over the last hour and day, dead letters by type and by error, the last
//! backfill and reconcile runs.

use std::sync::Arc;

use axum::{extract::State, response::Html};
use clerk_sync_core::{
    jobs::{Bucket, JobState},
    ops,
};
use maud::{Markup, html};

use super::query_string;
use crate::{
    AppState, ConsoleError,
    chart::{self, Bars},
    layout,
};

fn per_minute(v: f64) -> String {
    if v >= 10.0 || v == 0.0 {
        format!("{v:.0}/min")
    } else {
        format!("{v:.1}/min")
    }
}

fn millis(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0} s", v / 1000.0)
    } else if v >= 1000.0 {
        format!("{:.1} s", v / 1000.0)
    } else {
        format!("{v:.0} ms")
    }
}

fn charts(label: &str, buckets: &[Bucket], step_seconds: i64) -> Markup {
    let Some(first) = buckets.first() else {
        return html! {};
    };
    let minutes = step_seconds as f64 / 60.0;
    let received: Vec<Option<f64>> = buckets
        .iter()
        .map(|b| Some(b.received as f64 / minutes))
        .collect();
    let lag: Vec<Option<f64>> = buckets.iter().map(|b| b.lag_avg_ms).collect();
    html! {
        (chart::bars(&Bars {
            label: &format!("Events received per minute, {label}"),
            start: first.start,
            step_seconds,
            values: &received,
            format: per_minute,
        }))
        (chart::bars(&Bars {
            label: &format!("Apply lag (receipt to done, mean), {label}"),
            start: first.start,
            step_seconds,
            values: &lag,
            format: millis,
        }))
    }
}

fn dead_of_type(t: Option<&str>) -> String {
    let mut pairs = vec![("state", "dead".to_owned())];
    if let Some(t) = t {
        pairs.push(("type", t.to_owned()));
    }
    format!("/jobs?{}", query_string(&pairs))
}

/// `10000` as `10,000`.
fn thousands(n: i64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) && c.is_ascii_digit() {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A count as a card shows it: exact, or (an estimate past the cap) `≈1.2M`.
struct Count {
    n: i64,
    estimated: bool,
}

impl Count {
    fn exact(n: i64) -> Self {
        Self {
            n,
            estimated: false,
        }
    }

    fn shown(&self) -> String {
        if !self.estimated {
            return self.n.to_string();
        }
        // Two significant digits: all an estimate is worth.
        let n = self.n as f64;
        let (v, unit) = if n >= 1e9 {
            (n / 1e9, "G")
        } else if n >= 1e6 {
            (n / 1e6, "M")
        } else if n >= 1e3 {
            (n / 1e3, "k")
        } else {
            return format!("≈{}", self.n);
        };
        if v >= 10.0 {
            format!("≈{v:.0}{unit}")
        } else {
            format!("≈{v:.1}{unit}")
        }
    }
}

fn card(
    id: &str,
    class: &str,
    what: &str,
    count: Count,
    shown: Option<String>,
    href: Option<String>,
) -> Markup {
    let shown = shown.unwrap_or_else(|| count.shown());
    html! {
        div class={"card " (class)} id=(id) data-value=(count.n) data-estimated=[count.estimated.then_some("true")] {
            @match href {
                Some(href) => a href=(href) { span.n { (shown) } },
                None => span.n { (shown) },
            }
            span.what {
                (what)
                @if count.estimated {
                    " " abbr.estimate title=(format!("More than {}: estimated from the planner's statistics", thousands(clerk_sync_core::jobs::COUNT_CAP))) { "(estimate)" }
                }
            }
        }
    }
}

pub(crate) async fn page(State(state): State<Arc<AppState>>) -> Result<Html<String>, ConsoleError> {
    let o = ops::overview(&state.pool).await?;
    let ctx = layout::Ctx::of(&state);
    let s = &o.stats;
    let body = html! {
        h1 { "Overview" }
        section.cards aria-label="Jobs by state" {
            @for (st, n) in s.by_state() {
                (card(&format!("stat-{}", st.as_str()), st.as_str(), st.as_str(),
                    Count { n, estimated: st == JobState::Done && s.estimated.done }, None,
                    Some(format!("/jobs?state={}", st.as_str()))))
            }
            (card("stat-skipped", "", "skipped (done, not mirrored)",
                Count { n: s.skipped, estimated: s.estimated.done }, None, None))
            (card("stat-oldest-pending", "", "oldest pending job", Count::exact(s.oldest_pending_age_seconds),
                Some(layout::duration(s.oldest_pending_age_seconds)), None))
            (card("stat-events", "", "events received",
                Count { n: s.events_received, estimated: s.estimated.events_received }, None, None))
        }
        h2 { "Activity" }
        section.charts {
            (charts("last hour", &o.last_hour, 60))
            (charts("last day (15-minute buckets)", &o.last_day, 900))
        }
        h2 { "Dead letters" }
        @if o.dead_by_type.is_empty() {
            p.muted id="no-dead" { "No dead letters." }
        } @else {
            section.charts {
                table id="dead-by-type" {
                    thead { tr { th { "Event type" } th.num { "Dead" } } }
                    tbody {
                        @for (t, n) in &o.dead_by_type {
                            tr {
                                td { a href=(dead_of_type(t.as_deref())) { (t.as_deref().unwrap_or("(unknown)")) } }
                                td.num { (n) }
                            }
                        }
                    }
                }
                table id="dead-by-error" {
                    thead { tr { th { "Last error" } th.num { "Dead" } } }
                    tbody {
                        @for (e, n) in &o.dead_by_error {
                            tr {
                                td.error { (e.as_deref().map(ops::tidy_error).unwrap_or_else(|| "(none recorded)".into())) }
                                td.num { (n) }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Backfill and reconcile runs" }
        @if o.backfill_runs.is_empty() {
            p.muted { "No backfill or reconcile has run." }
        } @else {
            table id="backfill-runs" {
                thead { tr { th { "Kind" } th { "Started" } th { "Completed" } th.num { "Next offset" } th { "Counts" } } }
                tbody {
                    @for r in &o.backfill_runs {
                        tr {
                            td { (r.kind) }
                            td { (layout::time(r.started_at)) }
                            td { @if let Some(t) = r.completed_at { (layout::time(t)) } @else { span.muted { "in progress or interrupted" } } }
                            td.num { (r.next_offset) }
                            td.mono { (r.counts.to_string()) }
                        }
                    }
                }
            }
        }
    };
    Ok(Html(layout::page("Overview", &ctx, body).into_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_counts_read_in_full_and_estimates_in_two_digits() {
        assert_eq!(Count::exact(1_234_567).shown(), "1234567");
        let est = |n| Count { n, estimated: true }.shown();
        assert_eq!(est(998_976), "≈999k");
        assert_eq!(est(1_049_000), "≈1.0M");
        assert_eq!(est(12_345), "≈12k");
        assert_eq!(est(23_400_000), "≈23M");
        assert_eq!(est(0), "≈0");
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
