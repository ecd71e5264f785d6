//! The dyno manager: runs the dynos the replicated state assigns to this node (design §7).
//!
//! A loop compares the dynos placed here with the ones running, through the pure
//! [`reconcile`](reconcile::reconcile), and executes its actions: start a supervisor, ask
//! one to restart or stop, forget a dyno that stopped. Each dyno has a [`supervisor`] task
//! that runs its process through the runtime ([`crate::runtime`]) and follows Heroku's
//! lifecycle: `starting`, `up` once a web dyno accepts connections on `$PORT` (R10 after
//! the boot timeout), `crashed` on exit with restarts at once and then with growing
//! back-off, SIGTERM to every process and SIGKILL after the stop timeout (R12), R14 when
//! memory passes the quota and R15 when the kernel kills it. Supervisors only update a
//! local status; the loop writes what differs from the replicated state in one
//! `ReportDynos` per tick, so a report lost to an election is sent again. What a dyno
//! runs with is read from the state by [`launch`]; attached one-offs ([`attach`]) talk
//! to their caller over channels, so this module knows nothing about HTTP.
//!
//! Dynos outlive the agent. At start the manager lists the dynos a previous agent left
//! (the runtime's process records): a supervisor started for a dyno the state places
//! here adopts its process; one the state stops, or (once a read barrier shows this
//! node's state is current) no longer knows, is stopped as any dyno is (SIGTERM, then
//! SIGKILL after the stop timeout). At shutdown every dyno is stopped, unless the agent
//! stops for an upgrade ([`DynoManager::keep_dynos_at_shutdown`]): then the supervisors
//! end and the dynos run on for the next agent.

mod attach;
mod launch;
mod reconcile;
mod supervisor;

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use haven_raft::command::{Command, DynoReport};
use haven_raft::model::{DynoState, NodeId};
use haven_raft::HavenRaft;
use tokio::sync::watch;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::config::DynoTuning;
use crate::logs::Logs;
use crate::network::Network;
use crate::router::registry::Registrar;
use crate::runtime::Runtime;
use crate::slugcache::SlugCache;

pub use attach::{AttachInput, AttachOutput};
use reconcile::{reconcile, Action, Actual, Desired};

/// Least time between two reconciles when applied writes wake the loop.
const REACT_GAP: Duration = Duration::from_millis(20);

/// What a supervisor is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Run,
    Restart(u32),
    Stop,
    /// The agent stops for an upgrade: end without stopping the dyno.
    Detach,
}

/// The status a supervisor keeps for the loop to report.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LocalStatus {
    state: DynoState,
    restarts: u32,
    port: Option<u16>,
    exit_code: Option<i32>,
}

struct Supervisor {
    restart_seq: u32,
    signal: watch::Sender<Signal>,
    task: tokio::task::JoinHandle<()>,
}

struct Inner {
    me: NodeId,
    raft: HavenRaft,
    runtime: Arc<Runtime>,
    cache: SlugCache,
    logs: Logs,
    tuning: DynoTuning,
    supervisors: Mutex<HashMap<Uuid, Supervisor>>,
    status: Mutex<HashMap<Uuid, LocalStatus>>,
    ports: Mutex<HashSet<u16>>,
    /// Attached one-offs running now (each may be attached once).
    attached: Mutex<HashSet<Uuid>>,
    /// Registers `up` web dynos with every router.
    registrar: Registrar,
    /// This node's address as other nodes reach it (routers dial dynos there).
    advertise_host: String,
    /// Dynos' own network namespaces and what they may reach.
    network: Network,
    /// Dynos a previous agent left (process records), not yet adopted or stopped.
    leftovers: Mutex<HashSet<Uuid>>,
    /// A read barrier succeeded since the start: the state knows every dyno of this node.
    synced: AtomicBool,
    /// At shutdown, leave dynos running (an upgrade) instead of stopping them.
    keep_dynos: AtomicBool,
    /// Each running dyno's memory use as its supervisor last read it (bytes, when).
    memory: Mutex<HashMap<Uuid, (u64, std::time::Instant)>>,
    /// This node's platform events (crashes).
    events: crate::events::Events,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct DynoManager {
    inner: Arc<Inner>,
}

impl DynoManager {
    pub fn new(
        me: NodeId,
        raft: HavenRaft,
        runtime: Arc<Runtime>,
        cache: SlugCache,
        logs: Logs,
        tuning: DynoTuning,
        registrar: Registrar,
        advertise_host: String,
        network: Network,
        events: crate::events::Events,
    ) -> DynoManager {
        let leftovers = runtime
            .recorded_dynos()
            .iter()
            .filter_map(|id| id.parse().ok())
            .collect();
        DynoManager {
            inner: Arc::new(Inner {
                me,
                raft,
                runtime,
                cache,
                logs,
                tuning,
                supervisors: Mutex::new(HashMap::new()),
                status: Mutex::new(HashMap::new()),
                ports: Mutex::new(HashSet::new()),
                attached: Mutex::new(HashSet::new()),
                registrar,
                advertise_host,
                network,
                leftovers: Mutex::new(leftovers),
                synced: AtomicBool::new(false),
                keep_dynos: AtomicBool::new(false),
                memory: Mutex::new(HashMap::new()),
                events,
            }),
        }
    }

    /// Makes the coming shutdown leave every dyno running, for the next agent to adopt.
    pub fn keep_dynos_at_shutdown(&self) {
        self.inner.keep_dynos.store(true, Ordering::SeqCst);
    }

    /// The reconcile loop; on shutdown it stops every dyno of this node (or leaves them
    /// running, see [`DynoManager::keep_dynos_at_shutdown`]).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = self.clone();
        let sync = tokio::spawn(async move { this.wait_synced().await });
        let mut ticker = tokio::time::interval(Duration::from_millis(200));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A placement is acted on as soon as it is applied here, not at the next tick;
        // under a stream of writes, at most one reconcile per REACT_GAP.
        let mut changes = self.inner.raft.changes();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = changes.next() => {}
                _ = shutdown.changed() => break,
            }
            let began = tokio::time::Instant::now();
            self.tick().await;
            tokio::time::sleep_until(began + REACT_GAP).await;
        }
        sync.abort();
        if self.inner.keep_dynos.load(Ordering::SeqCst) {
            self.detach_all().await;
        } else {
            self.stop_all().await;
        }
    }

    /// Sets `synced` once a read barrier succeeds, if there are leftovers to judge.
    async fn wait_synced(&self) {
        if self.lock_leftovers().is_empty() {
            return;
        }
        loop {
            let barrier = self.inner.raft.read_barrier();
            if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(5), barrier).await {
                self.inner.synced.store(true, Ordering::SeqCst);
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn lock_leftovers(&self) -> std::sync::MutexGuard<'_, HashSet<Uuid>> {
        self.inner
            .leftovers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Leftover dynos that no supervisor will adopt: those the state stops, and, once
    /// the state is known current, those it does not place here at all.
    fn sweep_leftovers(&self, desired: &[Desired]) {
        let mut left = self.lock_leftovers();
        if left.is_empty() {
            return;
        }
        let synced = self.inner.synced.load(Ordering::SeqCst);
        let sups = self.lock_sups();
        let mut stop = Vec::new();
        left.retain(|id| {
            if sups.contains_key(id) {
                return false; // its supervisor adopts it
            }
            match desired.iter().find(|d| d.id == *id) {
                Some(d) if d.run && d.managed => true, // started this tick
                Some(_) => {
                    stop.push(*id);
                    false
                }
                None if synced => {
                    stop.push(*id);
                    false
                }
                None => true,
            }
        });
        drop(sups);
        drop(left);
        for id in stop {
            let runtime = self.inner.runtime.clone();
            let network = self.inner.network.clone();
            let limit = Duration::from_secs(self.inner.tuning.stop_timeout_secs);
            tokio::spawn(async move {
                let Some((mut proc, _)) = runtime.adopt(&id.to_string()) else {
                    runtime.discard(&id.to_string());
                    network.release(&id.to_string());
                    return;
                };
                info!(dyno = %id, pid = proc.pid(), "stopping a dyno this node no longer runs");
                proc.terminate();
                if tokio::time::timeout(limit, proc.wait()).await.is_err() {
                    proc.kill();
                    let _ = proc.wait().await;
                }
                proc.cleanup();
                network.release(&id.to_string());
            });
        }
    }

    async fn tick(&self) {
        let me = self.inner.me;
        let desired: Vec<Desired> = self.inner.raft.with_state(|s| {
            s.dynos
                .values()
                .filter(|d| d.node == me)
                .map(|d| Desired {
                    id: d.id,
                    run: d.run,
                    restart_seq: d.restart_seq,
                    managed: !d.attach && !(d.one_off && d.exit_code.is_some()),
                })
                .collect()
        });
        let actual: Vec<Actual> = {
            let sups = self.lock_sups();
            sups.iter()
                .map(|(id, s)| Actual {
                    id: *id,
                    restart_seq: s.restart_seq,
                    finished: s.task.is_finished(),
                })
                .collect()
        };
        let mut gone = Vec::new();
        for action in reconcile(&desired, &actual) {
            match action {
                Action::Start(id) => self.start(id),
                Action::Restart(id, seq) => {
                    if let Some(s) = self.lock_sups().get_mut(&id) {
                        s.restart_seq = seq;
                        let _ = s.signal.send(Signal::Restart(seq));
                    }
                }
                Action::Stop(id) => {
                    if let Some(s) = self.lock_sups().get(&id) {
                        let _ = s.signal.send(Signal::Stop);
                    }
                }
                Action::Reap(id) => {
                    self.lock_sups().remove(&id);
                    if let Ok(mut m) = self.inner.memory.lock() {
                        m.remove(&id);
                    }
                }
                Action::Forget(id) => gone.push(id),
            }
        }
        self.sweep_leftovers(&desired);
        self.report(gone).await;
    }

    /// The memory in use by this node's running dynos (bytes), as their supervisors read
    /// it within the last 5 s (a dyno that stopped has no figure).
    pub fn memory_usage(&self) -> HashMap<Uuid, u64> {
        let fresh = std::time::Duration::from_secs(5);
        self.inner
            .memory
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|(_, (_, at))| at.elapsed() < fresh)
                    .map(|(id, (b, _))| (*id, *b))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn record_memory(&self, id: Uuid, bytes: u64) {
        if let Ok(mut m) = self.inner.memory.lock() {
            m.insert(id, (bytes, std::time::Instant::now()));
        }
    }

    /// Whether the local status of `id` is `state`.
    fn lock_status_is(&self, id: Uuid, state: DynoState) -> bool {
        self.inner
            .status
            .lock()
            .is_ok_and(|m| m.get(&id).is_some_and(|s| s.state == state))
    }

    fn lock_sups(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Supervisor>> {
        self.inner
            .supervisors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn set_status(&self, id: Uuid, f: impl FnOnce(&mut LocalStatus)) {
        if let Ok(mut m) = self.inner.status.lock() {
            let st = m.entry(id).or_insert(LocalStatus {
                state: DynoState::Starting,
                restarts: 0,
                port: None,
                exit_code: None,
            });
            f(st);
        }
    }

    /// Writes local statuses that differ from the replicated ones, and dynos gone.
    async fn report(&self, gone: Vec<Uuid>) {
        let local: Vec<(Uuid, LocalStatus)> = self
            .inner
            .status
            .lock()
            .map(|m| m.iter().map(|(k, v)| (*k, v.clone())).collect())
            .unwrap_or_default();
        let reports: Vec<DynoReport> = self.inner.raft.with_state(|s| {
            local
                .iter()
                .filter_map(|(id, l)| {
                    let d = s.dynos.get(id)?;
                    let same = d.state == l.state
                        && d.restarts == l.restarts
                        && d.port == l.port
                        && d.exit_code == l.exit_code;
                    (!same).then(|| DynoReport {
                        id: *id,
                        state: l.state,
                        restarts: l.restarts,
                        port: l.port,
                        exit_code: l.exit_code,
                    })
                })
                .collect()
        });
        if reports.is_empty() && gone.is_empty() {
            return;
        }
        let cmd = Command::ReportDynos {
            node: self.inner.me,
            reports,
            gone: gone.clone(),
            at: Utc::now(),
        };
        match self.inner.raft.write(cmd).await {
            Ok(Ok(_)) => {
                if let Ok(mut m) = self.inner.status.lock() {
                    for id in &gone {
                        m.remove(id);
                    }
                }
            }
            Ok(Err(e)) => warn!(error = %e, "dyno report refused"),
            Err(e) => debug!(error = %e, "dyno report not recorded yet"),
        }
    }

    fn start(&self, id: Uuid) {
        let (tx, rx) = watch::channel(Signal::Run);
        let seq = self
            .inner
            .raft
            .with_state(|s| s.dynos.get(&id).map(|d| d.restart_seq))
            .unwrap_or(0);
        let this = self.clone();
        let task = tokio::spawn(async move { this.supervise(id, rx).await });
        self.lock_sups().insert(
            id,
            Supervisor {
                restart_seq: seq,
                signal: tx,
                task,
            },
        );
    }

    /// Ends every supervisor, leaving its dyno running.
    async fn detach_all(&self) {
        let sups: Vec<Supervisor> = self.lock_sups().drain().map(|(_, s)| s).collect();
        for s in &sups {
            let _ = s.signal.send(Signal::Detach);
        }
        for s in sups {
            let _ = s.task.await;
        }
    }

    async fn stop_all(&self) {
        let sups: Vec<Supervisor> = self.lock_sups().drain().map(|(_, s)| s).collect();
        for s in &sups {
            let _ = s.signal.send(Signal::Stop);
        }
        for s in sups {
            let _ = s.task.await;
        }
    }

    fn allocate_port(&self) -> Option<u16> {
        let t = &self.inner.tuning;
        let mut used = self.inner.ports.lock().ok()?;
        let span = u32::from(t.port_range_end.saturating_sub(t.port_range_start)) + 1;
        let offset = rand::random::<u32>() % span;
        for i in 0..span {
            let port = t.port_range_start + ((offset + i) % span) as u16;
            if used.contains(&port) {
                continue;
            }
            if TcpListener::bind(("0.0.0.0", port)).is_ok() {
                used.insert(port);
                return Some(port);
            }
        }
        None
    }

    /// Marks the port of an adopted dyno as used.
    fn claim_port(&self, port: Option<u16>) {
        if let (Some(p), Ok(mut used)) = (port, self.inner.ports.lock()) {
            used.insert(p);
        }
    }

    fn free_port(&self, port: Option<u16>) {
        if let (Some(p), Ok(mut used)) = (port, self.inner.ports.lock()) {
            used.remove(&p);
        }
    }
}
