//! A steady HTTP load through some routers, for tests that inject faults under load: GETs
//! of `/` with a `Host` header in a loop from a few threads, every request recorded as a
//! [`Sample`] (sent, answered, status and Heroku error code, or the connection error).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::eventually;

/// One request: when it was sent and answered, through which router, and how it ended.
#[derive(Debug, Clone)]
pub struct Sample {
    pub sent: Instant,
    pub done: Instant,
    /// The router's URL.
    pub router: String,
    /// The status and, for an error page, the Heroku error code it names (`H14`); or the
    /// connection error.
    pub outcome: Result<(u16, String), String>,
}

impl Sample {
    /// A 2xx answer.
    pub fn ok(&self) -> bool {
        matches!(&self.outcome, Ok((s, _)) if (200..300).contains(s))
    }

    /// Any HTTP answer, error pages included.
    pub fn answered(&self) -> bool {
        self.outcome.is_ok()
    }

    /// `200`, `503 H14`, `404`, `connection error`.
    pub fn kind(&self) -> String {
        match &self.outcome {
            Ok((s, code)) if code.is_empty() => s.to_string(),
            Ok((s, code)) => format!("{s} {code}"),
            Err(_) => "connection error".into(),
        }
    }
}

impl std::fmt::Display for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            Ok(_) => write!(f, "{}: {}", self.router, self.kind()),
            Err(e) => write!(f, "{}: {e}", self.router),
        }
    }
}

/// The Heroku error code an error page names (`H14`), if any.
pub fn error_code(body: &str) -> String {
    body.split(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| w.len() == 3 && w.starts_with('H') && w[1..].chars().all(|c| c.is_ascii_digit()))
        .unwrap_or_default()
        .to_string()
}

/// `200: 812, 503 H14: 3` for the samples.
pub fn counts<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> String {
    let mut by: std::collections::BTreeMap<String, usize> = Default::default();
    for s in samples {
        *by.entry(s.kind()).or_default() += 1;
    }
    by.iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How the load runs.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Threads per router.
    pub threads_per_router: usize,
    /// A new connection per request, so that each request is also a connect.
    pub fresh_connections: bool,
    /// Pause after each answered request (keeps an app's log from overflowing).
    pub pace: Option<Duration>,
    pub timeout: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            threads_per_router: 2,
            fresh_connections: false,
            pace: None,
            timeout: Duration::from_secs(20),
        }
    }
}

/// A running load; [`Load::finish`] stops it and returns every sample.
pub struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// Starts the load through `routers` (URLs such as `http://10.77.1.10:7480`) for the
    /// app at `host`.
    pub fn start(routers: &[String], host: &str, opts: LoadOptions) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for router in routers {
            for _ in 0..opts.threads_per_router.max(1) {
                let (stop, samples) = (stop.clone(), samples.clone());
                let (router, host, opts) = (router.clone(), host.to_string(), opts.clone());
                threads.push(std::thread::spawn(move || {
                    run(&router, &host, &opts, &stop, &samples)
                }));
            }
        }
        Load {
            stop,
            samples,
            threads,
        }
    }

    /// Successful requests sent at or after `t`.
    pub fn ok_since(&self, t: Instant) -> usize {
        lock(&self.samples)
            .iter()
            .filter(|s| s.sent >= t && s.ok())
            .count()
    }

    /// Successful requests so far.
    pub fn ok_count(&self) -> usize {
        lock(&self.samples).iter().filter(|s| s.ok()).count()
    }

    /// Waits (up to a minute) until `n` more requests have succeeded.
    pub fn wait_more(&self, n: usize, what: &str) {
        let target = self.ok_count() + n;
        eventually(what, Duration::from_secs(60), || {
            (self.ok_count() >= target).then_some(())
        });
    }

    /// Stops the load and returns every sample, in the order they were recorded.
    pub fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let v = lock(&self.samples).clone();
        v
    }
}

fn lock(samples: &Mutex<Vec<Sample>>) -> std::sync::MutexGuard<'_, Vec<Sample>> {
    samples.lock().unwrap_or_else(|p| p.into_inner())
}

fn run(
    router: &str,
    host: &str,
    opts: &LoadOptions,
    stop: &AtomicBool,
    samples: &Mutex<Vec<Sample>>,
) {
    let mut builder = reqwest::blocking::Client::builder().timeout(opts.timeout);
    if opts.fresh_connections {
        builder = builder.pool_max_idle_per_host(0);
    }
    let Ok(client) = builder.build() else {
        return;
    };
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        let outcome = client
            .get(format!("{router}/"))
            .header("Host", host)
            .send()
            .and_then(|r| {
                let s = r.status().as_u16();
                r.text().map(|b| (s, b))
            })
            .map(|(s, b)| {
                (
                    s,
                    if s >= 400 {
                        error_code(&b)
                    } else {
                        String::new()
                    },
                )
            })
            .map_err(|e| e.to_string());
        let failed = outcome.is_err();
        let answered_ok = matches!(&outcome, Ok((s, _)) if (200..300).contains(s));
        lock(samples).push(Sample {
            sent,
            done: Instant::now(),
            router: router.to_string(),
            outcome,
        });
        if failed {
            // A refused connect returns at once: do not spin.
            std::thread::sleep(Duration::from_millis(20));
        } else if let (true, Some(p)) = (answered_ok, opts.pace) {
            std::thread::sleep(p);
        }
    }
}
