//! A few Prometheus metric types, rendered in the text exposition format. Enough for our
//! counters and latency histograms without pulling in a metrics stack.

use std::{collections::BTreeMap, fmt::Write as _, sync::Mutex, time::Duration};

/// A counter with labels, e.g. `requests_total{status="202"}`.
pub struct CounterVec {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    values: Mutex<BTreeMap<Vec<String>, u64>>,
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
            values: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn inc(&self, label_values: &[&str]) {
        self.add(label_values, 1);
    }

    pub fn add(&self, label_values: &[&str], n: u64) {
        debug_assert_eq!(label_values.len(), self.labels.len());
        let key = label_values.iter().map(|s| (*s).to_owned()).collect();
        *self.values.lock().unwrap().entry(key).or_default() += n;
    }

    pub fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "counter");
        for (values, n) in self.values.lock().unwrap().iter() {
            let _ = writeln!(out, "{}{} {n}", self.name, labels(self.labels, values));
        }
    }
}

/// A histogram of durations in seconds, with labels.
pub struct HistogramVec {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    buckets: &'static [f64],
    values: Mutex<BTreeMap<Vec<String>, Series>>,
}

#[derive(Default)]
struct Series {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// Seconds, from 1 ms to 1 min: request latencies and sync lag alike.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

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
            values: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn observe(&self, label_values: &[&str], value: Duration) {
        let v = value.as_secs_f64();
        let key = label_values.iter().map(|s| (*s).to_owned()).collect();
        let mut map = self.values.lock().unwrap();
        let series = map.entry(key).or_insert_with(|| Series {
            counts: vec![0; self.buckets.len()],
            ..Series::default()
        });
        for (i, bound) in self.buckets.iter().enumerate() {
            if v <= *bound {
                series.counts[i] += 1;
            }
        }
        series.sum += v;
        series.count += 1;
    }

    pub fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "histogram");
        for (values, s) in self.values.lock().unwrap().iter() {
            for (bound, n) in self.buckets.iter().zip(&s.counts) {
                let mut l = values.clone();
                l.push(bound.to_string());
                let names: Vec<&str> = self.labels.iter().copied().chain(["le"]).collect();
                let _ = writeln!(out, "{}_bucket{} {n}", self.name, labels(&names, &l));
            }
            let mut l = values.clone();
            l.push("+Inf".into());
            let names: Vec<&str> = self.labels.iter().copied().chain(["le"]).collect();
            let _ = writeln!(
                out,
                "{}_bucket{} {}",
                self.name,
                labels(&names, &l),
                s.count
            );
            let base = labels(self.labels, values);
            let _ = writeln!(out, "{}_sum{base} {}", self.name, s.sum);
            let _ = writeln!(out, "{}_count{base} {}", self.name, s.count);
        }
    }
}

/// A gauge whose value is read at scrape time.
pub fn gauge(out: &mut String, name: &str, help: &str, series: &[(&[(&str, &str)], f64)]) {
    header(out, name, help, "gauge");
    for (pairs, v) in series {
        let names: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
        let values: Vec<String> = pairs.iter().map(|(_, v)| (*v).to_owned()).collect();
        let _ = writeln!(out, "{name}{} {v}", labels(&names, &values));
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn labels(names: &[&str], values: &[String]) -> String {
    if names.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let c = CounterVec::new("x_total", "Things.", &["status"]);
        c.inc(&["202"]);
        c.add(&["401"], 2);
        let h = HistogramVec::new("lat_seconds", "Latency.", &[], &[0.1, 1.0]);
        h.observe(&[], Duration::from_millis(50));
        h.observe(&[], Duration::from_secs(5));
        let mut out = String::new();
        c.render(&mut out);
        h.render(&mut out);
        assert!(out.contains("x_total{status=\"401\"} 2"), "{out}");
        assert!(out.contains("lat_seconds_bucket{le=\"0.1\"} 1"), "{out}");
        assert!(out.contains("lat_seconds_bucket{le=\"+Inf\"} 2"), "{out}");
        assert!(out.contains("lat_seconds_count 2"), "{out}");
    }
}
