//! Bar charts drawn on the server as inline SVG: no script, no image requests, styled by the
//! stylesheet (classes only, no `style` attributes, which the CSP forbids).

use chrono::{DateTime, Utc};
use maud::{Markup, html};

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 150.0;
const LEFT: f64 = 46.0;
const BOTTOM: f64 = 18.0;
const TOP: f64 = 8.0;

/// One bar per bucket of `step_seconds` from `start`; `None` is a bucket without data (no
/// bar, unlike a zero). Each bar has a tooltip (`<title>`) with its time and value.
pub(crate) struct Bars<'a> {
    pub label: &'a str,
    pub start: DateTime<Utc>,
    pub step_seconds: i64,
    pub values: &'a [Option<f64>],
    /// How a value reads: `12.5 /min`, `340 ms`.
    pub format: fn(f64) -> String,
}

/// A round number at or above `max` (1, 2, 5 × 10ⁿ), so the axis reads easily.
fn nice_ceiling(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * magnitude >= max {
            return m * magnitude;
        }
    }
    10.0 * magnitude
}

pub(crate) fn bars(b: &Bars<'_>) -> Markup {
    let n = b.values.len().max(1) as f64;
    let max = b.values.iter().flatten().copied().fold(0.0, f64::max);
    let ceiling = nice_ceiling(max);
    let plot_w = WIDTH - LEFT;
    let plot_h = HEIGHT - BOTTOM - TOP;
    let slot = plot_w / n;
    let bar_w = (slot * 0.8).max(0.5);
    let end = b.start + chrono::Duration::seconds(b.step_seconds * b.values.len() as i64);
    let fmt = b.format;
    // A day's axis names the date too.
    let stamp = if b.step_seconds * b.values.len() as i64 > 6 * 3600 {
        "%m-%d %H:%M"
    } else {
        "%H:%M"
    };
    html! {
        figure.chart {
            figcaption { (b.label) }
            svg viewBox={"0 0 " (WIDTH) " " (HEIGHT)} role="img" aria-label=(b.label) xmlns="http://www.w3.org/2000/svg" {
                line.axis x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(HEIGHT - BOTTOM) {}
                line.axis x1=(LEFT) y1=(HEIGHT - BOTTOM) x2=(WIDTH) y2=(HEIGHT - BOTTOM) {}
                line.grid x1=(LEFT) y1=(TOP) x2=(WIDTH) y2=(TOP) {}
                text.tick x=(LEFT - 4.0) y=(TOP + 8.0) text-anchor="end" { (fmt(ceiling)) }
                text.tick x=(LEFT - 4.0) y=(HEIGHT - BOTTOM) text-anchor="end" { "0" }
                @for (i, v) in b.values.iter().enumerate() {
                    @if let Some(v) = v {
                        @let h = if ceiling > 0.0 { (v / ceiling * plot_h).max(if *v > 0.0 { 1.0 } else { 0.0 }) } else { 0.0 };
                        @let at = b.start + chrono::Duration::seconds(b.step_seconds * i as i64);
                        rect.bar x=(format!("{:.2}", LEFT + i as f64 * slot + (slot - bar_w) / 2.0))
                            y=(format!("{:.2}", HEIGHT - BOTTOM - h))
                            width=(format!("{bar_w:.2}")) height=(format!("{h:.2}")) {
                            title { (at.format("%H:%M")) ": " (fmt(*v)) }
                        }
                    }
                }
                text.tick x=(LEFT) y=(HEIGHT - 4.0) { (b.start.format(stamp)) }
                text.tick x=(WIDTH) y=(HEIGHT - 4.0) text-anchor="end" { (end.format(stamp)) " UTC" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(0.3), 0.5);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(12.0), 20.0);
        assert_eq!(nice_ceiling(4999.0), 5000.0);
    }

    #[test]
    fn one_bar_per_bucket_with_data_and_labels_escaped() {
        let values = [Some(1.0), None, Some(4.0), Some(0.0)];
        let svg = bars(&Bars {
            label: "events <per> minute",
            start: DateTime::from_timestamp(0, 0).unwrap(),
            step_seconds: 60,
            values: &values,
            format: |v| format!("{v}"),
        })
        .into_string();
        assert_eq!(svg.matches("<rect").count(), 3, "{svg}");
        assert!(svg.contains("events &lt;per&gt; minute"), "{svg}");
        assert!(!svg.contains("style="), "{svg}");
    }
}
