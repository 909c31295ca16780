//! Prometheus metrics on `prometheus-client`, the Prometheus project's own Rust client,
//! behind the small API our call sites use (`JOBS.inc(&[..])`, `DURATION.observe(&[], d)`).
//!
//! Why `prometheus-client` and not `metrics` + `metrics-exporter-prometheus`: it adds four
//! small crates (dtoa, itoa, parking_lot, its derive macro) to a tree that already holds
//! parking_lot, where the exporter brings `metrics-util`, `quanta`, a sketch crate and, by
//! default, its own hyper server and push-gateway TLS client; we already serve `/metrics`
//! with axum, and our metrics are a few static families that need no global recorder.
//! It also renders the classic text format (0.0.4), so names, types and labels stay as
//! the alerts and dashboards know them.

use std::{sync::OnceLock, time::Duration};

use prometheus_client::{
    encoding::prometheus_text,
    metrics::{
        counter::Counter,
        family::{Family, MetricConstructor},
        gauge::Gauge,
        histogram::Histogram,
    },
    registry::Registry,
};

/// The `Content-Type` of what [`Exposition::render`] returns (Prometheus text, 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

type Labels = Vec<(&'static str, String)>;

/// A counter with labels, e.g. `requests_total{status="202"}`. Its name ends in `_total`
/// as exposed; `const` so that it can be a `static` next to its siblings.
pub struct CounterVec {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    family: OnceLock<Family<Labels, Counter>>,
}

impl CounterVec {
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            help,
            labels,
            family: OnceLock::new(),
        }
    }

    pub fn inc(&self, label_values: &[&str]) {
        self.add(label_values, 1);
    }

    pub fn add(&self, label_values: &[&str], n: u64) {
        self.family()
            .get_or_create(&label_set(self.labels, label_values))
            .inc_by(n);
    }

    fn family(&self) -> &Family<Labels, Counter> {
        self.family.get_or_init(Family::default)
    }
}

/// A histogram of durations in seconds, with labels.
pub struct HistogramVec {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    buckets: &'static [f64],
    family: OnceLock<Family<Labels, Histogram, Buckets>>,
}

/// Seconds, from 1 ms to 1 min: request latencies and sync lag alike.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Debug, Clone)]
struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

impl HistogramVec {
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        buckets: &'static [f64],
    ) -> Self {
        Self {
            name,
            help,
            labels,
            buckets,
            family: OnceLock::new(),
        }
    }

    pub fn observe(&self, label_values: &[&str], value: Duration) {
        self.observe_value(label_values, value.as_secs_f64());
    }

    /// A value that is not a time (a count per batch, say).
    pub fn observe_value(&self, label_values: &[&str], value: f64) {
        self.family()
            .get_or_create(&label_set(self.labels, label_values))
            .observe(value);
    }

    fn family(&self) -> &Family<Labels, Histogram, Buckets> {
        self.family
            .get_or_init(|| Family::new_with_constructor(Buckets(self.buckets)))
    }
}

fn label_set(names: &'static [&'static str], values: &[&str]) -> Labels {
    debug_assert_eq!(names.len(), values.len());
    names
        .iter()
        .zip(values)
        .map(|(k, v)| (*k, (*v).to_owned()))
        .collect()
}

/// One scrape's worth of metrics: the process's counters and histograms, plus gauges whose
/// values are read at scrape time (a gauge left out is absent, not stale).
#[derive(Default)]
pub struct Exposition {
    registry: Registry,
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn counter(&mut self, c: &CounterVec) -> &mut Self {
        // prometheus-client appends `_total` to counters and a full stop to help texts.
        let name = c.name.strip_suffix("_total").unwrap_or(c.name);
        self.registry
            .register(name, help(c.help), c.family().clone());
        self
    }

    pub fn histogram(&mut self, h: &HistogramVec) -> &mut Self {
        self.registry
            .register(h.name, help(h.help), h.family().clone());
        self
    }

    /// A gauge family, one series per label set, e.g. `&[(&[("state", "dead")], 3)]`.
    pub fn gauge(&mut self, name: &str, help_text: &str, series: &[(&[(&str, &str)], i64)]) {
        let family = Family::<Vec<(String, String)>, Gauge>::default();
        for (pairs, v) in series {
            let labels = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            family.get_or_create(&labels).set(*v);
        }
        self.registry.register(name, help(help_text), family);
    }

    /// The Prometheus text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

fn help(text: &str) -> String {
    text.strip_suffix('.').unwrap_or(text).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        static C: CounterVec = CounterVec::new("x_total", "Things.", &["status"]);
        static H: HistogramVec = HistogramVec::new("lat_seconds", "Latency.", &[], &[0.1, 1.0]);
        C.inc(&["202"]);
        C.add(&["401"], 2);
        H.observe(&[], Duration::from_millis(50));
        H.observe(&[], Duration::from_secs(5));
        let mut e = Exposition::new();
        e.counter(&C).histogram(&H);
        e.gauge("q_jobs", "Jobs.", &[(&[("state", "dead")], 3)]);
        let out = e.render();
        for line in [
            "# HELP x_total Things.\n",
            "# TYPE x_total counter\n",
            "x_total{status=\"401\"} 2\n",
            "# TYPE lat_seconds histogram\n",
            "lat_seconds_bucket{le=\"0.1\"} 1\n",
            "lat_seconds_bucket{le=\"+Inf\"} 2\n",
            "lat_seconds_count 2\n",
            "# TYPE q_jobs gauge\n",
            "q_jobs{state=\"dead\"} 3\n",
        ] {
            assert!(out.contains(line), "{line} in {out}");
        }
    }
}
