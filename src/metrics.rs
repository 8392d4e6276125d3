//! Metrics in Prometheus' text format, for `/metrics`.
//!
//! A deliberately small registry: the metric names are fixed in [`METRICS`]
//! (so a typo is a test failure, not a new series), and label values are
//! low-cardinality words (states, kinds, rules), never ids: they are
//! `&'static str`, so no value read from a request or the database at run
//! time can become a series.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric rigger exports: name, kind, help.
pub const METRICS: &[(&str, Kind, &str)] = &[
    (
        "rigger_deliveries_total",
        Kind::Counter,
        "Webhook deliveries by event (a fixed set; `unverified` when the signature failed) and result.",
    ),
    ("rigger_jobs", Kind::Gauge, "Jobs by state."),
    (
        "rigger_jobs_failed_total",
        Kind::Counter,
        "Jobs rigger gave up on, by kind: config_error, denied, cloud_refused, no_capacity_timeout, internal_error, access_lost.",
    ),
    ("rigger_instances", Kind::Gauge, "Instances by state."),
    (
        "rigger_provisioning_seconds",
        Kind::Histogram,
        "Seconds from rigger first recording a job (normally on its queued delivery) to the commit that records the machine Vast.ai's create call rented for it, retries and backoff included; once per machine rented.",
    ),
    (
        "rigger_time_to_runner_seconds",
        Kind::Histogram,
        "Seconds from rigger first recording a job (normally on its queued delivery) to handling its in_progress delivery, for jobs one of rigger's runners took.",
    ),
    (
        "rigger_spend_dollars_total",
        Kind::Counter,
        "Dollars spent on instances, as recorded in the ledger.",
    ),
    (
        "rigger_cloud_errors_total",
        Kind::Counter,
        "Vast.ai API errors by kind.",
    ),
    (
        "rigger_github_errors_total",
        Kind::Counter,
        "GitHub API errors by kind.",
    ),
    (
        "rigger_github_requests_total",
        Kind::Counter,
        "Requests rigger sent to GitHub's REST API.",
    ),
    (
        "rigger_github_requests_held_total",
        Kind::Counter,
        "GitHub calls not sent because their installation (or the App) was waiting out a rate limit; they failed at once as rate limited and are retried after the wait.",
    ),
    (
        "rigger_github_requests_paced_total",
        Kind::Counter,
        "GitHub calls not sent because they would go over rigger's pace within GitHub's secondary limits (writes a minute and an hour, points per endpoint), by priority: essential (runner registrations and deletions, final check-run updates) or deferrable (in-progress check-run updates, kept and sent later, newest content only).",
    ),
    (
        "rigger_github_rate_limited_total",
        Kind::Counter,
        "GitHub answers that were a rate limit, by limit: primary (the hourly budget is used up) or secondary (too many requests at once or too fast, or a JIT endpoint's \"spammed\" answer).",
    ),
    (
        "rigger_github_ratelimit_remaining",
        Kind::Gauge,
        "The lowest x-ratelimit-remaining GitHub reported among the installations (and the App) whose rate-limit window is open, by x-ratelimit-resource.",
    ),
    (
        "rigger_github_ratelimit_limit",
        Kind::Gauge,
        "The last x-ratelimit-limit GitHub reported, by x-ratelimit-resource.",
    ),
    (
        "rigger_reconciler_actions_total",
        Kind::Counter,
        "Reconciler actions by rule.",
    ),
    (
        "rigger_reconcile_errors_total",
        Kind::Counter,
        "Reconciler actions that failed (a store error or a panic), by rule; the pass went on with the next action. Rule `snapshot`: a pass whose views could not be read, which planned nothing.",
    ),
    (
        "rigger_reconcile_pass_seconds",
        Kind::Histogram,
        "Seconds one reconcile pass took: reading the store, Vast.ai and GitHub, planning, and carrying the actions out.",
    ),
    (
        "rigger_work_panics_total",
        Kind::Counter,
        "Units of work (a delivery, a job's provisioning attempt, a reconcile action, a machine's callback) that panicked, by loop; the unit was recorded and the loop went on.",
    ),
    (
        "rigger_deliveries_redelivered_total",
        Kind::Counter,
        "Webhook deliveries GitHub recorded as failed and that never reached rigger, which rigger asked GitHub to send again, by event.",
    ),
    (
        "rigger_delivery_scan_pages_total",
        Kind::Counter,
        "Pages of the App's webhook-delivery log read to find failed deliveries.",
    ),
    (
        "rigger_runs_cancelled_total",
        Kind::Counter,
        "Workflow runs rigger cancelled after giving up on one of their jobs (github.cancel_runs_on_give_up), by result: cancelled, already_over, not_permitted, error.",
    ),
    (
        "rigger_deliveries_quarantined",
        Kind::Gauge,
        "Deliveries set aside after failing too often or being unreadable; `rigger inbox` lists them and `rigger inbox retry` puts them back.",
    ),
    (
        "rigger_loop_restarts_total",
        Kind::Counter,
        "Times an engine loop ended unexpectedly and was restarted, by loop.",
    ),
];

/// Histogram buckets in seconds: from a fast decision to a slow boot.
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

type Labels = Vec<(&'static str, &'static str)>;

#[derive(Debug, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    values: Mutex<BTreeMap<(&'static str, Labels), f64>>,
    histograms: Mutex<BTreeMap<(&'static str, Labels), Histogram>>,
}

type Pairs<'a> = &'a [(&'static str, &'static str)];

fn known(name: &str, kind: Kind) -> bool {
    METRICS.iter().any(|(n, k, _)| *n == name && *k == kind)
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    pub fn inc(&self, name: &'static str, pairs: Pairs<'_>) {
        self.add(name, pairs, 1.0);
    }

    pub fn add(&self, name: &'static str, pairs: Pairs<'_>, by: f64) {
        debug_assert!(known(name, Kind::Counter), "unknown counter {name}");
        let mut v = self.values.lock().unwrap_or_else(|e| e.into_inner());
        *v.entry((name, pairs.to_vec())).or_insert(0.0) += by;
    }

    pub fn set(&self, name: &'static str, pairs: Pairs<'_>, value: f64) {
        debug_assert!(known(name, Kind::Gauge), "unknown gauge {name}");
        let mut v = self.values.lock().unwrap_or_else(|e| e.into_inner());
        v.insert((name, pairs.to_vec()), value);
    }

    pub fn observe(&self, name: &'static str, pairs: Pairs<'_>, seconds: f64) {
        debug_assert!(known(name, Kind::Histogram), "unknown histogram {name}");
        let mut h = self.histograms.lock().unwrap_or_else(|e| e.into_inner());
        let entry = h
            .entry((name, pairs.to_vec()))
            .or_insert_with(|| Histogram {
                counts: vec![0; BUCKETS.len()],
                ..Default::default()
            });
        for (i, upper) in BUCKETS.iter().enumerate() {
            if seconds <= *upper {
                entry.counts[i] += 1;
            }
        }
        entry.sum += seconds;
        entry.count += 1;
    }

    /// A counter's or gauge's current value (for tests and `rigger` itself).
    pub fn value(&self, name: &'static str, pairs: Pairs<'_>) -> f64 {
        let v = self.values.lock().unwrap_or_else(|e| e.into_inner());
        v.get(&(name, pairs.to_vec())).copied().unwrap_or(0.0)
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        let histograms = self.histograms.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for (name, kind, help) in METRICS {
            let kind_word = match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind_word}");
            for ((n, l), v) in values.iter().filter(|((n, _), _)| n == name) {
                let _ = writeln!(out, "{n}{} {}", render_labels(l, None), number(*v));
            }
            for ((n, l), h) in histograms.iter().filter(|((n, _), _)| n == name) {
                for (i, upper) in BUCKETS.iter().enumerate() {
                    let le = number(*upper);
                    let _ = writeln!(
                        out,
                        "{n}_bucket{} {}",
                        render_labels(l, Some(&le)),
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "{n}_bucket{} {}",
                    render_labels(l, Some("+Inf")),
                    h.count
                );
                let _ = writeln!(out, "{n}_sum{} {}", render_labels(l, None), number(h.sum));
                let _ = writeln!(out, "{n}_count{} {}", render_labels(l, None), h.count);
            }
        }
        out
    }
}

fn render_labels(l: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = l
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}=\"{}\"",
                v.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            )
        })
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.inc(
            "rigger_deliveries_total",
            &[("event", "workflow_job"), ("result", "accepted")],
        );
        m.inc(
            "rigger_deliveries_total",
            &[("event", "workflow_job"), ("result", "accepted")],
        );
        m.set("rigger_jobs", &[("state", "queued")], 3.0);
        m.add("rigger_spend_dollars_total", &[], 0.25);
        m.observe("rigger_provisioning_seconds", &[], 0.02);
        let text = m.render();
        assert!(text.contains("# TYPE rigger_deliveries_total counter\n"));
        assert!(
            text.contains(
                "rigger_deliveries_total{event=\"workflow_job\",result=\"accepted\"} 2\n"
            )
        );
        assert!(text.contains("rigger_jobs{state=\"queued\"} 3\n"));
        assert!(text.contains("rigger_spend_dollars_total 0.25\n"));
        assert!(text.contains("rigger_provisioning_seconds_bucket{le=\"0.01\"} 0\n"));
        assert!(text.contains("rigger_provisioning_seconds_bucket{le=\"0.025\"} 1\n"));
        assert!(text.contains("rigger_provisioning_seconds_bucket{le=\"+Inf\"} 1\n"));
        assert!(text.contains("rigger_provisioning_seconds_count 1\n"));
        assert_eq!(m.value("rigger_jobs", &[("state", "queued")]), 3.0);
        // What the engine measures (rent.rs, events.rs `started`), said so.
        assert!(text.contains(
            "# HELP rigger_provisioning_seconds Seconds from rigger first recording a job"
        ));
        assert!(text.contains("# HELP rigger_time_to_runner_seconds Seconds from rigger first recording a job (normally on its queued delivery) to handling its in_progress delivery, for jobs one of rigger's runners took.\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.inc("rigger_cloud_errors_total", &[("kind", "a\"b")]);
        assert!(m.render().contains("kind=\"a\\\"b\""));
    }
}
