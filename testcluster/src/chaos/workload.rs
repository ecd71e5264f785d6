//! The clients of a chaos run, each a thread until the run stops them: config-var writes
//! and reads on random nodes (every operation recorded with its times and outcome, for
//! the linearizability check), HTTP requests through the routers of nodes that are up at
//! that moment, and `hctl ps` snapshots.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::apps::Hctl;
use super::linearizable::{Op, RegOp};

/// The app whose config vars the register clients write (it has no dynos).
pub const KV_APP: &str = "chaos-kv";
/// The registers: one config var each.
pub const KEYS: &[&str] = &["K0", "K1", "K2", "K3", "K4"];
const WRITERS: usize = 3;
const READERS: usize = 2;
const ROUTER_CLIENTS: usize = 4;
const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// How a node is, as the fault injector made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeHealth {
    Up,
    /// Killed, or restarted and not ready yet: nothing answers.
    Down,
    /// SIGSTOPped.
    Stopped,
    /// Partitioned or behind a one-way cut.
    Cut,
    /// Only `havend` is dead; its dynos still run.
    AgentDown,
}

/// What the injector and the clients share.
pub struct Shared {
    start: Instant,
    health: Mutex<(Vec<NodeHealth>, Vec<u64>)>,
    stop: AtomicBool,
}

impl Shared {
    pub fn new(nodes: usize) -> Shared {
        Shared {
            start: Instant::now(),
            health: Mutex::new((vec![NodeHealth::Up; nodes], vec![0; nodes])),
            stop: AtomicBool::new(false),
        }
    }
    /// Time since the run began.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }
    pub fn set(&self, node: usize, h: NodeHealth) {
        let mut g = lock(&self.health);
        if g.0[node] != h {
            g.0[node] = h;
            g.1[node] += 1;
        }
    }
    pub fn health(&self) -> Vec<NodeHealth> {
        lock(&self.health).0.clone()
    }
    /// The health of `node` and how many times it changed.
    fn of(&self, node: usize) -> (NodeHealth, u64) {
        let g = lock(&self.health);
        (g.0[node], g.1[node])
    }
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One register operation on `key`.
#[derive(Debug, Clone)]
pub struct KeyOp {
    pub key: String,
    pub op: Op,
}

/// What the write clients saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteCounts {
    pub acked: u64,
    /// Never reached a node (connection refused): surely not applied.
    pub failed: u64,
    /// Timed out or answered an error: may or may not have been applied.
    pub unknown: u64,
}

/// One request through a router.
#[derive(Debug, Clone)]
pub struct RouterSample {
    pub sent: Duration,
    pub node: usize,
    /// `None`: a 2xx answer.
    pub error: Option<String>,
    /// The router's own node changed health while the request was out: its answer says
    /// nothing about a healthy router.
    pub router_faulted: bool,
}

/// The running clients.
pub struct Workload {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    pub ops: Arc<Mutex<Vec<KeyOp>>>,
    pub writes: Arc<Mutex<WriteCounts>>,
    pub routed: Arc<Mutex<Vec<RouterSample>>>,
    /// `hctl ps` snapshots: (taken, failed).
    pub snapshots: Arc<Mutex<(u64, u64)>>,
}

/// Node URLs the clients use.
#[derive(Clone)]
pub struct Targets {
    pub apis: Vec<String>,
    pub routers: Vec<String>,
    pub token: String,
    pub apps: Vec<String>,
}

impl Workload {
    pub fn start(shared: Arc<Shared>, t: Targets, hctl: Hctl, seed: u64) -> Workload {
        let mut w = Workload {
            shared,
            threads: Vec::new(),
            ops: Arc::default(),
            writes: Arc::default(),
            routed: Arc::default(),
            snapshots: Arc::default(),
        };
        for c in 0..WRITERS {
            let (s, t, ops, counts) =
                (w.shared.clone(), t.clone(), w.ops.clone(), w.writes.clone());
            w.threads.push(std::thread::spawn(move || {
                writer(&s, &t, c, seed, &ops, &counts)
            }));
        }
        for c in 0..READERS {
            let (s, t, ops) = (w.shared.clone(), t.clone(), w.ops.clone());
            w.threads
                .push(std::thread::spawn(move || reader(&s, &t, c, seed, &ops)));
        }
        for c in 0..ROUTER_CLIENTS {
            let (s, t, r) = (w.shared.clone(), t.clone(), w.routed.clone());
            w.threads.push(std::thread::spawn(move || {
                router_client(&s, &t, c, seed, &r)
            }));
        }
        let (s, snaps) = (w.shared.clone(), w.snapshots.clone());
        w.threads.push(std::thread::spawn(move || {
            ps_snapshots(&s, &t, &hctl, seed, &snaps)
        }));
        w
    }

    /// Router requests answered so far.
    pub fn routed_ok(&self) -> usize {
        lock(&self.routed)
            .iter()
            .filter(|r| r.error.is_none())
            .count()
    }

    /// Stops every client and waits for them.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.stop();
    }
}

fn client(timeout: Duration) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_else(|_| reqwest::blocking::Client::new())
}

/// A random node whose process runs (stopped and cut-off ones included: their answers
/// are part of the history).
fn pick(rng: &mut ChaCha8Rng, s: &Shared, ok: impl Fn(NodeHealth) -> bool) -> Option<usize> {
    let live: Vec<usize> = s
        .health()
        .iter()
        .enumerate()
        .filter(|(_, h)| ok(**h))
        .map(|(i, _)| i)
        .collect();
    (!live.is_empty()).then(|| live[rng.gen_range(0..live.len())])
}

fn has_process(h: NodeHealth) -> bool {
    matches!(h, NodeHealth::Up | NodeHealth::Stopped | NodeHealth::Cut)
}

/// Pauses between operations (pacing, not synchronization).
fn pace(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn writer(
    s: &Shared,
    t: &Targets,
    c: usize,
    seed: u64,
    ops: &Mutex<Vec<KeyOp>>,
    counts: &Mutex<WriteCounts>,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (0x1000 + c as u64));
    let http = client(OP_TIMEOUT);
    let mut n = 0u64;
    while !s.stopped() {
        let Some(node) = pick(&mut rng, s, has_process) else {
            pace(100);
            continue;
        };
        let key = KEYS[rng.gen_range(0..KEYS.len())];
        n += 1;
        let value = format!("w{c}-{n}");
        let invoke = s.now();
        let r = http
            .patch(format!("{}/apps/{KV_APP}/config-vars", t.apis[node]))
            .bearer_auth(&t.token)
            .header("Accept", "application/vnd.heroku+json; version=3")
            .json(&json!({ key: value }))
            .send();
        let complete = match r {
            Ok(resp) if resp.status().is_success() => {
                let _ = resp.bytes();
                lock(counts).acked += 1;
                Some(s.now())
            }
            Err(e) if e.is_connect() => {
                lock(counts).failed += 1;
                pace(50);
                continue;
            }
            _ => {
                lock(counts).unknown += 1;
                None
            }
        };
        lock(ops).push(KeyOp {
            key: key.to_string(),
            op: Op {
                invoke,
                complete,
                op: RegOp::Write(value),
            },
        });
        pace(20);
    }
}

/// Reads every register with one `GET /apps/{app}/config-vars` on `api`; `None` when the
/// read got no answer.
pub fn read_all(
    http: &reqwest::blocking::Client,
    api: &str,
    token: &str,
) -> Option<Vec<(String, Option<String>)>> {
    let resp = http
        .get(format!("{api}/apps/{KV_APP}/config-vars"))
        .bearer_auth(token)
        .header("Accept", "application/vnd.heroku+json; version=3")
        .send()
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let v: Value = resp.json().ok()?;
    Some(
        KEYS.iter()
            .map(|k| (k.to_string(), v[*k].as_str().map(str::to_string)))
            .collect(),
    )
}

fn reader(s: &Shared, t: &Targets, c: usize, seed: u64, ops: &Mutex<Vec<KeyOp>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (0x2000 + c as u64));
    let http = client(OP_TIMEOUT);
    while !s.stopped() {
        let Some(node) = pick(&mut rng, s, has_process) else {
            pace(100);
            continue;
        };
        let invoke = s.now();
        if let Some(values) = read_all(&http, &t.apis[node], &t.token) {
            let complete = Some(s.now());
            let mut g = lock(ops);
            for (key, v) in values {
                g.push(KeyOp {
                    key,
                    op: Op {
                        invoke,
                        complete,
                        op: RegOp::Read(v),
                    },
                });
            }
        }
        pace(40);
    }
}

fn router_client(s: &Shared, t: &Targets, c: usize, seed: u64, out: &Mutex<Vec<RouterSample>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (0x3000 + c as u64));
    let http = client(Duration::from_secs(10));
    while !s.stopped() {
        let Some(node) = pick(&mut rng, s, |h| h == NodeHealth::Up) else {
            pace(100);
            continue;
        };
        if t.apps.is_empty() {
            return;
        }
        let app = &t.apps[rng.gen_range(0..t.apps.len())];
        let (_, epoch) = s.of(node);
        let sent = s.now();
        let r = http
            .get(format!("{}/", t.routers[node]))
            .header("Host", format!("{app}.localhost"))
            .send();
        let error = match r {
            Ok(resp) if resp.status().is_success() => {
                let _ = resp.bytes();
                None
            }
            Ok(resp) => {
                let status = resp.status();
                let body = resp.text().unwrap_or_default();
                Some(format!(
                    "{status} {}",
                    body.lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("")
                        .trim()
                ))
            }
            Err(e) => Some(e.to_string()),
        };
        let (health, epoch_after) = s.of(node);
        lock(out).push(RouterSample {
            sent,
            node,
            error,
            router_faulted: epoch_after != epoch || health != NodeHealth::Up,
        });
        pace(10);
    }
}

fn ps_snapshots(s: &Shared, t: &Targets, hctl: &Hctl, seed: u64, out: &Mutex<(u64, u64)>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x4000);
    while !s.stopped() {
        if let (Some(node), false) = (
            pick(&mut rng, s, |h| h == NodeHealth::Up),
            t.apps.is_empty(),
        ) {
            let app = &t.apps[rng.gen_range(0..t.apps.len())];
            let ok = hctl
                .run(node, &["ps", "-a", app, "--json"], Duration::from_secs(10))
                .is_ok();
            let mut g = lock(out);
            g.0 += 1;
            if !ok {
                g.1 += 1;
            }
        }
        pace(2000);
    }
}
