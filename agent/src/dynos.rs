//! The dyno manager: runs the dynos the replicated state assigns to this node (design §7).
//!
//! A loop compares the dynos placed here with the ones running, through the pure
//! [`reconcile`], and executes its actions: start a supervisor, ask one to restart or stop,
//! forget a dyno that stopped. Each dyno has a supervisor task that runs its process
//! through the runtime ([`crate::runtime`]) and follows Heroku's lifecycle: `starting`,
//! `up` once a web dyno accepts connections on `$PORT` (R10 after the boot timeout),
//! `crashed` on exit with restarts at once and then with growing back-off, SIGTERM to every
//! process and SIGKILL after the stop timeout (R12), R14 when memory passes the quota and
//! R15 when the kernel kills it. Supervisors only update a local status; the loop writes
//! what differs from the replicated state in one `ReportDynos` per tick, so a report lost
//! to an election is sent again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use haven_raft::command::{Command, DynoReport};
use haven_raft::model::{DynoState, NodeId, State};
use haven_raft::HavenRaft;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::config::DynoTuning;
use crate::logs::Logs;
use crate::router::registry::Registrar;
use crate::router::table::RouteEntry;
use crate::runtime::{DynoProcess, DynoSpec, Runtime};
use crate::slugcache::{Lease, SlugCache};

/// What the replicated state says about one dyno placed on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub id: Uuid,
    pub run: bool,
    pub restart_seq: u32,
    /// Whether this node's manager starts it (attached one-offs are started by their
    /// caller, and a finished one-off is not started again).
    pub managed: bool,
}

/// A dyno this node has a supervisor for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actual {
    pub id: Uuid,
    pub restart_seq: u32,
    /// The supervisor has ended.
    pub finished: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Start(Uuid),
    Restart(Uuid, u32),
    Stop(Uuid),
    /// The supervisor ended: drop it.
    Reap(Uuid),
    /// Stopped for good and not running: report it gone so the state forgets it.
    Forget(Uuid),
}

/// Desired against actual → actions. Pure.
pub fn reconcile(desired: &[Desired], actual: &[Actual]) -> Vec<Action> {
    let mut out = Vec::new();
    let actual_by: HashMap<Uuid, &Actual> = actual.iter().map(|a| (a.id, a)).collect();
    let desired_by: HashMap<Uuid, &Desired> = desired.iter().map(|d| (d.id, d)).collect();
    for a in actual {
        if a.finished {
            out.push(Action::Reap(a.id));
            continue;
        }
        match desired_by.get(&a.id) {
            Some(d) if d.run => {
                if d.restart_seq != a.restart_seq {
                    out.push(Action::Restart(a.id, d.restart_seq));
                }
            }
            _ => out.push(Action::Stop(a.id)),
        }
    }
    for d in desired {
        let running = actual_by.get(&d.id).is_some_and(|a| !a.finished);
        if d.run && d.managed && !actual_by.contains_key(&d.id) {
            out.push(Action::Start(d.id));
        }
        if !d.run && !running {
            out.push(Action::Forget(d.id));
        }
    }
    out
}

/// What a supervisor is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Run,
    Restart(u32),
    Stop,
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
    registrar: Option<Registrar>,
    /// This node's address as other nodes reach it (routers dial dynos there).
    advertise_host: String,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct DynoManager {
    inner: Arc<Inner>,
}

/// Everything needed to start one dyno, read from the replicated state.
#[derive(Debug, Clone)]
struct Launch {
    app: Uuid,
    release: u64,
    name: String,
    process_type: String,
    command: String,
    size: String,
    one_off: bool,
    env: BTreeMap<String, String>,
    slug_sha: String,
    holders: Vec<(NodeId, String)>,
}

fn launch_of(s: &State, id: Uuid) -> Result<Option<Launch>, String> {
    let Some(d) = s.dynos.get(&id) else {
        return Ok(None);
    };
    let app = s.apps.get(&d.app).ok_or("the app is gone")?;
    let release = app
        .releases
        .iter()
        .find(|r| r.version == d.release)
        .ok_or_else(|| format!("release v{} is gone", d.release))?;
    let slug = s
        .release_slug(release)
        .ok_or_else(|| format!("release v{} has no slug: deploy the app first", d.release))?;
    let mut env = release.config.clone();
    env.extend(d.env.clone());
    let holders = slug
        .holders
        .iter()
        .filter_map(|h| s.nodes.get(h).map(|n| (n.id, n.peer_addr.clone())))
        .collect();
    let command = if d.command.is_empty() {
        slug.process_types
            .get(&d.process_type)
            .cloned()
            .unwrap_or_default()
    } else {
        d.command.clone()
    };
    Ok(Some(Launch {
        app: d.app,
        release: d.release,
        name: d.name(),
        process_type: d.process_type.clone(),
        command,
        size: d.size.clone(),
        one_off: d.one_off,
        env,
        slug_sha: slug.sha256.clone(),
        holders,
    }))
}

/// Memory quota of a size, MiB.
fn quota_mb(size: &str) -> u64 {
    haven_scheduler::size_memory_mb(size).unwrap_or(512)
}

/// Heroku's process limits by size.
fn pids_limit(size: &str) -> u64 {
    match size {
        "performance-m" | "performance-l" => 16384,
        "standard-2x" => 512,
        _ => 256,
    }
}

/// The crash restart delay after `crashes` consecutive crashes: the first restart is
/// immediate, then 1 s, 2 s, 4 s, … up to `max`.
pub fn backoff(crashes: u32, max: Duration) -> Duration {
    if crashes <= 1 {
        return Duration::ZERO;
    }
    let secs = 1u64.checked_shl(crashes - 2).unwrap_or(u64::MAX);
    Duration::from_secs(secs).min(max)
}

impl DynoManager {
    pub fn new(
        me: NodeId,
        raft: HavenRaft,
        runtime: Arc<Runtime>,
        cache: SlugCache,
        logs: Logs,
        tuning: DynoTuning,
        registrar: Option<Registrar>,
        advertise_host: String,
    ) -> DynoManager {
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
            }),
        }
    }

    /// The reconcile loop; on shutdown it stops every dyno of this node.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(Duration::from_millis(200));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => break,
            }
            self.tick().await;
        }
        self.stop_all().await;
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
                }
                Action::Forget(id) => gone.push(id),
            }
        }
        self.report(gone).await;
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

    fn free_port(&self, port: Option<u16>) {
        if let (Some(p), Ok(mut used)) = (port, self.inner.ports.lock()) {
            used.remove(&p);
        }
    }

    /// The environment of a dyno: config vars, then Heroku's own.
    fn env_of(&self, l: &Launch, port: Option<u16>) -> Vec<(String, String)> {
        let mut env: BTreeMap<String, String> = l.env.clone();
        env.insert("DYNO".into(), l.name.clone());
        env.insert("HOME".into(), "/app".into());
        env.insert(
            "PATH".into(),
            "/app/.heroku/python/bin:/app/bin:/usr/local/bin:/usr/bin:/bin".into(),
        );
        env.insert("STACK".into(), crate::builder::STACK.into());
        env.insert("DYNO_SIZE".into(), l.size.clone());
        if let Some(p) = port {
            env.insert("PORT".into(), p.to_string());
        }
        env.into_iter().collect()
    }

    fn spec_of(
        &self,
        id: Uuid,
        l: &Launch,
        lease: &Lease,
        port: Option<u16>,
        stdin: bool,
    ) -> DynoSpec {
        let quota = quota_mb(&l.size) * 1024 * 1024;
        DynoSpec {
            id: id.to_string(),
            hostname: l.name.clone(),
            slug_dir: Some(lease.dir.clone()),
            binds: Vec::new(),
            command: l.command.clone(),
            env: self.env_of(l, port),
            // Heroku kills at twice the quota (R15); between 1x and 2x it logs R14.
            memory_limit_bytes: quota * 2,
            pids_limit: pids_limit(&l.size),
            stdin,
        }
    }

    /// Copies a dyno's output into its app's log as `app[web.1]` lines.
    fn pipe_output(
        &self,
        app: Uuid,
        name: &str,
        reader: Option<impl AsyncRead + Unpin + Send + 'static>,
    ) {
        let Some(reader) = reader else {
            return;
        };
        let logs = self.inner.logs.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            let mut lines = BufReader::new(reader).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                logs.emit(app, "app", &name, &line);
            }
        });
    }

    /// One dyno's life on this node.
    async fn supervise(&self, id: Uuid, mut signal: watch::Receiver<Signal>) {
        let tuning = self.inner.tuning.clone();
        let max_backoff = Duration::from_secs(tuning.max_restart_backoff_secs);
        let mut crashes: u32 = 0;
        let mut restarts: u32 = self
            .inner
            .raft
            .with_state(|s| s.dynos.get(&id).map(|d| d.restarts))
            .unwrap_or(0);
        loop {
            if *signal.borrow() == Signal::Stop {
                break;
            }
            let launch = match self.inner.raft.with_state(|s| launch_of(s, id)) {
                Ok(Some(l)) => l,
                Ok(None) => break,
                Err(e) => {
                    warn!(dyno = %id, error = %e, "cannot start a dyno");
                    self.set_status(id, |st| st.state = DynoState::Crashed);
                    if wait_or_stop(&mut signal, Duration::from_secs(5)).await {
                        break;
                    }
                    continue;
                }
            };
            let logs = &self.inner.logs;
            let lease = match self
                .inner
                .cache
                .acquire(&launch.slug_sha, &launch.holders)
                .await
            {
                Ok(l) => l,
                Err(e) => {
                    logs.platform(
                        launch.app,
                        &launch.name,
                        &format!("Error R99 (Platform error) -> {e}"),
                    );
                    self.set_status(id, |st| st.state = DynoState::Crashed);
                    if wait_or_stop(&mut signal, Duration::from_secs(2)).await {
                        break;
                    }
                    continue;
                }
            };
            let web = launch.process_type == "web";
            let port = if web { self.allocate_port() } else { None };
            self.set_status(id, |st| {
                st.state = DynoState::Starting;
                st.port = port;
                st.restarts = restarts;
            });
            logs.platform(
                launch.app,
                &launch.name,
                &format!("Starting process with command `{}`", launch.command),
            );
            let spec = self.spec_of(id, &launch, &lease, port, false);
            let mut proc = match self.inner.runtime.spawn(&spec) {
                Ok(p) => p,
                Err(e) => {
                    logs.platform(
                        launch.app,
                        &launch.name,
                        &format!("Error R99 (Platform error) -> cannot start the process: {e}"),
                    );
                    self.free_port(port);
                    self.set_status(id, |st| st.state = DynoState::Crashed);
                    if wait_or_stop(&mut signal, Duration::from_secs(2)).await {
                        break;
                    }
                    continue;
                }
            };
            self.pipe_output(launch.app, &launch.name, proc.take_stdout());
            self.pipe_output(launch.app, &launch.name, proc.take_stderr());
            let outcome = self.live(id, &launch, &mut proc, port, &mut signal).await;
            proc.cleanup();
            self.free_port(port);
            drop(lease);
            match outcome {
                Outcome::Stopped => {
                    logs.platform(launch.app, &launch.name, "State changed from up to down");
                    self.set_status(id, |st| st.state = DynoState::Down);
                    break;
                }
                Outcome::Restarted => {
                    crashes = 0;
                    continue;
                }
                Outcome::Exited(code) => {
                    logs.platform(
                        launch.app,
                        &launch.name,
                        &format!("Process exited with status {code}"),
                    );
                    if launch.one_off {
                        logs.platform(
                            launch.app,
                            &launch.name,
                            "State changed from up to complete",
                        );
                        self.set_status(id, |st| {
                            st.state = DynoState::Down;
                            st.exit_code = Some(code);
                        });
                        // Wait until the leader or a user clears it.
                        while *signal.borrow() != Signal::Stop {
                            if signal.changed().await.is_err() {
                                break;
                            }
                        }
                        break;
                    }
                    logs.platform(launch.app, &launch.name, "State changed from up to crashed");
                    crashes += 1;
                    restarts += 1;
                    self.set_status(id, |st| {
                        st.state = DynoState::Crashed;
                        st.restarts = restarts;
                    });
                    let delay = backoff(crashes, max_backoff);
                    if !delay.is_zero() {
                        logs.platform(
                            launch.app,
                            &launch.name,
                            &format!("Restarting in {} seconds (crash cool-off)", delay.as_secs()),
                        );
                    }
                    if wait_or_stop(&mut signal, delay).await {
                        break;
                    }
                    // A restart asked during the cool-off resets it.
                    if matches!(*signal.borrow(), Signal::Restart(_)) {
                        crashes = 0;
                    }
                }
            }
        }
        self.set_status(id, |st| st.state = DynoState::Down);
        info!(dyno = %id, "dyno supervisor ended");
    }

    /// From spawn to exit: boot check, memory watch, stop and restart requests.
    async fn live(
        &self,
        id: Uuid,
        l: &Launch,
        proc: &mut DynoProcess,
        port: Option<u16>,
        signal: &mut watch::Receiver<Signal>,
    ) -> Outcome {
        let logs = self.inner.logs.clone();
        let tuning = &self.inner.tuning;
        let started = Instant::now();
        let boot_timeout = Duration::from_secs(tuning.boot_timeout_secs);
        let mut booted = port.is_none();
        if booted {
            self.set_status(id, |st| st.state = DynoState::Up);
            logs.platform(l.app, &l.name, "State changed from starting to up");
        }
        let quota = quota_mb(&l.size) * 1024 * 1024;
        let mut last_r14: Option<Instant> = None;
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                info = proc.wait() => {
                    self.unroute(id).await;
                    if info.oom_killed {
                        logs.platform(l.app, &l.name, "Error R15 (Memory quota vastly exceeded)");
                        logs.platform(l.app, &l.name, "Stopping process with SIGKILL");
                    }
                    let code = info.code.unwrap_or_else(|| 128 + info.signal.unwrap_or(9));
                    return Outcome::Exited(code);
                }
                changed = signal.changed() => {
                    let sig = if changed.is_ok() { *signal.borrow() } else { Signal::Stop };
                    match sig {
                        Signal::Stop => {
                            self.stop_process(id, l, proc).await;
                            return Outcome::Stopped;
                        }
                        Signal::Restart(_) => {
                            logs.platform(l.app, &l.name, "Restarting");
                            self.stop_process(id, l, proc).await;
                            self.set_status(id, |st| st.state = DynoState::Starting);
                            return Outcome::Restarted;
                        }
                        Signal::Run => {}
                    }
                }
                _ = ticker.tick() => {
                    if !booted {
                        if let Some(p) = port {
                            if tokio::net::TcpStream::connect(("127.0.0.1", p)).await.is_ok() {
                                booted = true;
                                self.route(id, l, p);
                                self.set_status(id, |st| st.state = DynoState::Up);
                                logs.platform(l.app, &l.name, "State changed from starting to up");
                            } else if started.elapsed() > boot_timeout {
                                logs.platform(l.app, &l.name, &format!(
                                    "Error R10 (Boot timeout) -> Web process failed to bind to $PORT within {} seconds of launch",
                                    boot_timeout.as_secs()
                                ));
                                logs.platform(l.app, &l.name, "Stopping process with SIGKILL");
                                proc.kill();
                                let _ = proc.wait().await;
                                return Outcome::Exited(137);
                            }
                        }
                    }
                    if let Some(used) = proc.memory_usage_bytes() {
                        if used > quota && last_r14.is_none_or(|t| t.elapsed() > Duration::from_secs(20)) {
                            last_r14 = Some(Instant::now());
                            logs.platform(l.app, &l.name, &format!(
                                "Error R14 (Memory quota exceeded): {} MB of {} MB",
                                used / (1024 * 1024),
                                quota / (1024 * 1024)
                            ));
                        }
                    }
                }
            }
        }
    }

    /// Makes an `up` web dyno reachable through every router.
    fn route(&self, id: Uuid, l: &Launch, port: u16) {
        if let Some(r) = &self.inner.registrar {
            let host = &self.inner.advertise_host;
            let addr = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            r.register(RouteEntry {
                app: l.app,
                dyno: id,
                name: l.name.clone(),
                release: l.release,
                addr,
            });
        }
    }

    /// Takes a dyno out of every router, waiting for their confirmation (bounded).
    async fn unroute(&self, id: Uuid) {
        if let Some(r) = &self.inner.registrar {
            r.withdraw(id).await;
        }
    }

    /// SIGTERM to every process, SIGKILL after the stop timeout (R12). Routers stop
    /// sending it requests first.
    async fn stop_process(&self, id: Uuid, l: &Launch, proc: &mut DynoProcess) {
        self.unroute(id).await;
        let logs = &self.inner.logs;
        logs.platform(l.app, &l.name, "Stopping all processes with SIGTERM");
        proc.terminate();
        let limit = Duration::from_secs(self.inner.tuning.stop_timeout_secs);
        if tokio::time::timeout(limit, proc.wait()).await.is_err() {
            logs.platform(
                l.app,
                &l.name,
                &format!("Error R12 (Exit timeout) -> At least one process failed to exit within {} seconds of SIGTERM", limit.as_secs()),
            );
            logs.platform(l.app, &l.name, "Stopping remaining processes with SIGKILL");
            proc.kill();
            let _ = proc.wait().await;
        }
    }
}

/// Frames of the attach protocol (WebSocket binary messages, first byte the kind).
pub mod attach_frame {
    /// Client → dyno stdin.
    pub const STDIN: u8 = 0;
    pub const STDOUT: u8 = 1;
    pub const STDERR: u8 = 2;
    /// Dyno → client: the exit code, i32 big-endian. Last frame.
    pub const EXIT: u8 = 3;
    /// Client → dyno: stdin is closed.
    pub const STDIN_EOF: u8 = 4;
}

impl DynoManager {
    /// Runs attached one-off `id` with its stdin and output on `socket`, until it exits
    /// (the exit code is the last frame) or the caller goes away (the dyno is stopped).
    pub async fn attach(&self, id: Uuid, mut socket: axum::extract::ws::WebSocket) {
        use axum::extract::ws::Message;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let fail = |msg: String| {
            let mut v = vec![attach_frame::STDERR];
            v.extend_from_slice(format!("{msg}\n").as_bytes());
            v
        };
        let first = self.inner.attached.lock().is_ok_and(|mut a| a.insert(id));
        if !first {
            let _ = socket
                .send(Message::Binary(
                    fail("this dyno is already attached".into()).into(),
                ))
                .await;
            return;
        }
        let launch = match self.inner.raft.with_state(|s| launch_of(s, id)) {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                let _ = socket.send(Message::Binary(fail(e).into())).await;
                return;
            }
        };
        let lease = match self
            .inner
            .cache
            .acquire(&launch.slug_sha, &launch.holders)
            .await
        {
            Ok(l) => l,
            Err(e) => {
                let _ = socket.send(Message::Binary(fail(e).into())).await;
                return;
            }
        };
        let spec = self.spec_of(id, &launch, &lease, None, true);
        let logs = self.inner.logs.clone();
        logs.platform(
            launch.app,
            &launch.name,
            &format!("Starting process with command `{}`", launch.command),
        );
        let mut proc = match self.inner.runtime.spawn(&spec) {
            Ok(p) => p,
            Err(e) => {
                let _ = socket
                    .send(Message::Binary(
                        fail(format!("cannot start the dyno: {e}")).into(),
                    ))
                    .await;
                return;
            }
        };
        self.set_status(id, |st| st.state = DynoState::Up);
        logs.platform(
            launch.app,
            &launch.name,
            "State changed from starting to up",
        );
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
        for (kind, reader) in [
            (
                attach_frame::STDOUT,
                proc.take_stdout()
                    .map(|r| Box::new(r) as Box<dyn AsyncRead + Unpin + Send>),
            ),
            (
                attach_frame::STDERR,
                proc.take_stderr()
                    .map(|r| Box::new(r) as Box<dyn AsyncRead + Unpin + Send>),
            ),
        ] {
            let Some(mut reader) = reader else { continue };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match reader.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut frame = Vec::with_capacity(n + 1);
                            frame.push(kind);
                            frame.extend_from_slice(&buf[..n]);
                            if tx.send(frame).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
        drop(tx);
        let mut stdin = proc.take_stdin();
        let mut output_open = true;
        let mut stop_check = tokio::time::interval(Duration::from_millis(500));
        let code = loop {
            tokio::select! {
                frame = rx.recv(), if output_open => match frame {
                    Some(f) => {
                        if socket.send(Message::Binary(f.into())).await.is_err() {
                            proc.kill();
                        }
                    }
                    None => output_open = false,
                },
                msg = socket.recv() => match msg {
                    Some(Ok(Message::Binary(b))) => match b.first() {
                        Some(&attach_frame::STDIN) => {
                            if let Some(w) = stdin.as_mut() {
                                if w.write_all(&b[1..]).await.is_err() {
                                    stdin = None;
                                }
                            }
                        }
                        Some(&attach_frame::STDIN_EOF) => stdin = None,
                        _ => {}
                    },
                    Some(Ok(_)) => {}
                    // The caller went away: the dyno ends with it, as on Heroku.
                    Some(Err(_)) | None => {
                        proc.terminate();
                        let info = match tokio::time::timeout(Duration::from_secs(10), proc.wait()).await {
                            Ok(i) => i,
                            Err(_) => { proc.kill(); proc.wait().await }
                        };
                        break info.code.unwrap_or(137);
                    }
                },
                info = proc.wait(), if !output_open => {
                    break info.code.unwrap_or_else(|| 128 + info.signal.unwrap_or(9));
                }
                _ = stop_check.tick() => {
                    let stop = self.inner.raft.with_state(|s| s.dynos.get(&id).is_none_or(|d| !d.run));
                    if stop {
                        proc.terminate();
                    }
                }
            }
        };
        let mut exit = vec![attach_frame::EXIT];
        exit.extend_from_slice(&code.to_be_bytes());
        let _ = socket.send(Message::Binary(exit.into())).await;
        let _ = socket.send(Message::Close(None)).await;
        proc.cleanup();
        drop(lease);
        logs.platform(
            launch.app,
            &launch.name,
            &format!("Process exited with status {code}"),
        );
        logs.platform(
            launch.app,
            &launch.name,
            "State changed from up to complete",
        );
        self.set_status(id, |st| {
            st.state = DynoState::Down;
            st.exit_code = Some(code);
        });
        let _ = self
            .inner
            .raft
            .write(Command::StopDynos {
                app: launch.app,
                target: haven_raft::command::DynoTarget::Dyno(id.to_string()),
            })
            .await;
    }
}

enum Outcome {
    Stopped,
    Restarted,
    Exited(i32),
}

/// Waits `delay` unless a stop or restart arrives; true when told to stop.
async fn wait_or_stop(signal: &mut watch::Receiver<Signal>, delay: Duration) -> bool {
    if *signal.borrow() == Signal::Stop {
        return true;
    }
    if delay.is_zero() {
        return false;
    }
    let deadline = tokio::time::Instant::now() + delay;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return false,
            changed = signal.changed() => {
                if changed.is_err() {
                    return true;
                }
                match *signal.borrow() {
                    Signal::Stop => return true,
                    Signal::Restart(_) => return false,
                    Signal::Run => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn desired(n: u128, run: bool, seq: u32, managed: bool) -> Desired {
        Desired {
            id: id(n),
            run,
            restart_seq: seq,
            managed,
        }
    }

    fn actual(n: u128, seq: u32, finished: bool) -> Actual {
        Actual {
            id: id(n),
            restart_seq: seq,
            finished,
        }
    }

    #[test]
    fn reconcile_starts_stops_restarts_and_forgets() {
        let cases: Vec<(Vec<Desired>, Vec<Actual>, Vec<Action>)> = vec![
            (vec![], vec![], vec![]),
            (
                vec![desired(1, true, 0, true)],
                vec![],
                vec![Action::Start(id(1))],
            ),
            // Running as wanted: nothing.
            (
                vec![desired(1, true, 0, true)],
                vec![actual(1, 0, false)],
                vec![],
            ),
            // A restart asked.
            (
                vec![desired(1, true, 2, true)],
                vec![actual(1, 1, false)],
                vec![Action::Restart(id(1), 2)],
            ),
            // Asked to stop while running: stop, not yet forgotten.
            (
                vec![desired(1, false, 0, true)],
                vec![actual(1, 0, false)],
                vec![Action::Stop(id(1))],
            ),
            // Stopped and its supervisor ended: reap and forget.
            (
                vec![desired(1, false, 0, true)],
                vec![actual(1, 0, true)],
                vec![Action::Reap(id(1)), Action::Forget(id(1))],
            ),
            // Stopped and never ran here (e.g. moved while this node was down): forget.
            (
                vec![desired(1, false, 0, true)],
                vec![],
                vec![Action::Forget(id(1))],
            ),
            // Running but no longer in the state (app deleted): stop.
            (vec![], vec![actual(9, 0, false)], vec![Action::Stop(id(9))]),
            // Attached one-offs are started by their caller, not here.
            (vec![desired(1, true, 0, false)], vec![], vec![]),
            // A supervisor that ended while still wanted is reaped, then started again on
            // the next round.
            (
                vec![desired(1, true, 0, true)],
                vec![actual(1, 0, true)],
                vec![Action::Reap(id(1))],
            ),
        ];
        for (d, a, want) in cases {
            assert_eq!(reconcile(&d, &a), want, "desired {d:?} actual {a:?}");
        }
    }

    #[test]
    fn crash_restarts_back_off() {
        let max = Duration::from_secs(20 * 60);
        let got: Vec<u64> = (1..=8).map(|n| backoff(n, max).as_secs()).collect();
        assert_eq!(got, [0, 1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(backoff(40, max), max);
        assert_eq!(backoff(200, max), max);
    }

    #[test]
    fn sizes_map_to_limits() {
        assert_eq!(quota_mb("standard-2x"), 1024);
        assert_eq!(pids_limit("standard-1x"), 256);
        assert_eq!(pids_limit("performance-l"), 16384);
    }
}
