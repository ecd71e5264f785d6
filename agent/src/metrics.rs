//! Counters and gauges in Prometheus' text format, served at `GET /metrics` on the API
//! port: router requests per app and status class, a latency histogram, active
//! connections, and gauges of Raft, the scheduler, dynos and routes.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the latency histogram, seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// Counters of one app.
#[derive(Default)]
struct AppCounters {
    /// Requests by status class (1xx … 5xx).
    classes: [u64; 6],
    latency: Histogram,
    active: i64,
}

#[derive(Default)]
struct Inner {
    apps: std::collections::HashMap<String, AppCounters>,
}

impl Inner {
    /// The counters of `app`, allocating its key only the first time.
    fn app(&mut self, app: &str) -> &mut AppCounters {
        if !self.apps.contains_key(app) {
            self.apps.insert(app.to_string(), AppCounters::default());
        }
        self.apps.entry(app.to_string()).or_default()
    }
}

/// One app's router counters on one node, or summed over nodes.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AppSnapshot {
    /// Requests by status class: index 1 is 1xx … 5 is 5xx (0: no status).
    pub classes: Vec<u64>,
    /// Requests per latency bucket of [`BUCKETS`] (a request over the last bound is in
    /// `count` only).
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum_secs: f64,
    /// Memory in use by the app's dynos running on the node, by dyno name: bytes and the
    /// dyno size's quota (bytes). Filled by the API, not by the router.
    #[serde(default)]
    pub memory: BTreeMap<String, DynoMemory>,
}

/// One dyno's memory use beside its quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DynoMemory {
    pub bytes: u64,
    pub quota_bytes: u64,
}

impl AppSnapshot {
    /// Adds another node's counters.
    pub fn add(&mut self, other: &AppSnapshot) {
        for (v, n) in [
            (&mut self.classes, &other.classes),
            (&mut self.buckets, &other.buckets),
        ] {
            if v.len() < n.len() {
                v.resize(n.len(), 0);
            }
            for (a, b) in v.iter_mut().zip(n) {
                *a += b;
            }
        }
        self.count += other.count;
        self.sum_secs += other.sum_secs;
        self.memory
            .extend(other.memory.iter().map(|(k, v)| (k.clone(), *v)));
    }

    /// The upper bound (seconds) of the bucket holding the `q` quantile, if any request
    /// was seen; `None` also when it lies beyond the last bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let want = (q * self.count as f64).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= want.max(1) {
                return BUCKETS.get(i).copied();
            }
        }
        None
    }
}

/// Cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Mutex<Inner>>,
}

/// Counts an open proxied connection until dropped.
pub struct ActiveGuard {
    metrics: Metrics,
    app: String,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = self.metrics.inner.lock() {
            if let Some(c) = m.apps.get_mut(&self.app) {
                c.active -= 1;
            }
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Records one routed request (`app` None: no app for the host).
    pub fn request(&self, app: Option<&str>, status: u16, took: Duration) {
        let class = usize::from(status / 100).min(5);
        let secs = took.as_secs_f64();
        if let Ok(mut m) = self.inner.lock() {
            let c = m.app(app.unwrap_or(""));
            c.classes[class] += 1;
            let h = &mut c.latency;
            if h.counts.is_empty() {
                h.counts = vec![0; BUCKETS.len()];
            }
            // Buckets hold their own counts; rendering accumulates them.
            if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
                h.counts[i] += 1;
            }
            h.sum += secs;
            h.count += 1;
        }
    }

    /// This node's router counters of `app`: requests by status class and the latency
    /// histogram (counts per bucket of [`BUCKETS`], not cumulative).
    pub fn app_snapshot(&self, app: &str) -> AppSnapshot {
        let Ok(m) = self.inner.lock() else {
            return AppSnapshot::default();
        };
        match m.apps.get(app) {
            Some(c) => AppSnapshot {
                classes: c.classes.to_vec(),
                buckets: if c.latency.counts.is_empty() {
                    vec![0; BUCKETS.len()]
                } else {
                    c.latency.counts.clone()
                },
                count: c.latency.count,
                sum_secs: c.latency.sum,
                memory: BTreeMap::new(),
            },
            None => AppSnapshot::default(),
        }
    }

    pub fn active(&self, app: &str) -> ActiveGuard {
        if let Ok(mut m) = self.inner.lock() {
            m.app(app).active += 1;
        }
        ActiveGuard {
            metrics: self.clone(),
            app: app.to_string(),
        }
    }

    /// The text exposition, with `gauges` (name, help, labels, value) appended.
    pub fn render(&self, node: &str, gauges: &[(&str, &str, Vec<(&str, String)>, f64)]) -> String {
        let mut out = String::new();
        let node = escape(node);
        let Ok(m) = self.inner.lock() else {
            return out;
        };
        let _ = writeln!(
            out,
            "# HELP haven_router_requests_total Requests routed, by app and status class."
        );
        let _ = writeln!(out, "# TYPE haven_router_requests_total counter");
        let apps: BTreeMap<&String, &AppCounters> = m.apps.iter().collect();
        for (app, c) in &apps {
            for (class, n) in c.classes.iter().enumerate().filter(|(_, n)| **n > 0) {
                let _ = writeln!(
                    out,
                    "haven_router_requests_total{{node=\"{node}\",app=\"{}\",status=\"{class}xx\"}} {n}",
                    escape(app)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP haven_router_request_duration_seconds Time from request to response head."
        );
        let _ = writeln!(
            out,
            "# TYPE haven_router_request_duration_seconds histogram"
        );
        for (app, c) in &apps {
            let h = &c.latency;
            if h.count == 0 {
                continue;
            }
            let app = escape(app);
            let mut cumulative = 0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cumulative += h.counts.get(i).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "haven_router_request_duration_seconds_bucket{{node=\"{node}\",app=\"{app}\",le=\"{b}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "haven_router_request_duration_seconds_bucket{{node=\"{node}\",app=\"{app}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "haven_router_request_duration_seconds_sum{{node=\"{node}\",app=\"{app}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "haven_router_request_duration_seconds_count{{node=\"{node}\",app=\"{app}\"}} {}",
                h.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP haven_router_active_connections Proxied requests in progress."
        );
        let _ = writeln!(out, "# TYPE haven_router_active_connections gauge");
        for (app, c) in &apps {
            let _ = writeln!(
                out,
                "haven_router_active_connections{{node=\"{node}\",app=\"{}\"}} {}",
                escape(app),
                c.active
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for (name, help, labels, value) in gauges {
            if seen.insert(*name) {
                let _ = writeln!(out, "# HELP {name} {help}");
                let _ = writeln!(out, "# TYPE {name} gauge");
            }
            let mut l = format!("node=\"{node}\"");
            for (k, v) in labels {
                let _ = write!(l, ",{k}=\"{}\"", escape(v));
            }
            let _ = writeln!(out, "{name}{{{l}}} {value}");
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn app_snapshots_sum_over_nodes_and_give_quantiles() {
        let (a, b) = (Metrics::default(), Metrics::default());
        for ms in [2, 3, 4, 40] {
            a.request(Some("x"), 200, Duration::from_millis(ms));
        }
        b.request(Some("x"), 503, Duration::from_millis(200));
        b.request(Some("y"), 200, Duration::from_millis(1));
        let mut sum = a.app_snapshot("x");
        sum.add(&b.app_snapshot("x"));
        assert_eq!(sum.classes[2], 4);
        assert_eq!(sum.classes[5], 1);
        assert_eq!(sum.count, 5);
        assert_eq!(sum.quantile(0.5), Some(0.005));
        assert_eq!(sum.quantile(0.95), Some(0.25));
        assert_eq!(Metrics::default().app_snapshot("x").quantile(0.5), None);
    }

    #[test]
    fn counters_and_histograms_render_as_prometheus_text() {
        let m = Metrics::default();
        m.request(Some("app"), 200, Duration::from_millis(3));
        m.request(Some("app"), 503, Duration::from_millis(40));
        m.request(None, 404, Duration::from_millis(1));
        let guard = m.active("app");
        let text = m.render("n1", &[("haven_raft_term", "Current term.", vec![], 3.0)]);
        assert!(
            text.contains("haven_router_requests_total{node=\"n1\",app=\"app\",status=\"2xx\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("haven_router_requests_total{node=\"n1\",app=\"app\",status=\"5xx\"} 1")
        );
        assert!(text.contains("haven_router_requests_total{node=\"n1\",app=\"\",status=\"4xx\"} 1"));
        assert!(text.contains(
            "haven_router_request_duration_seconds_bucket{node=\"n1\",app=\"app\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "haven_router_request_duration_seconds_bucket{node=\"n1\",app=\"app\",le=\"+Inf\"} 2"
        ));
        assert!(text.contains("haven_router_active_connections{node=\"n1\",app=\"app\"} 1"));
        assert!(text.contains("# TYPE haven_raft_term gauge\nhaven_raft_term{node=\"n1\"} 3"));
        drop(guard);
        let text = m.render("n1", &[]);
        assert!(text.contains("haven_router_active_connections{node=\"n1\",app=\"app\"} 0"));
    }
}
