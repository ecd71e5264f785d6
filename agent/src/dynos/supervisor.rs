//! One supervisor per dyno: runs its process and follows Heroku's lifecycle (boot check
//! and R10, crash restarts with back-off, SIGTERM then SIGKILL and R12, R14/R15), and
//! registers an `up` web dyno with every router.
//!
//! A supervisor's first act is to adopt the dyno's process if a previous agent left it
//! running (same release and restart sequence, kept in the process record's note): the
//! same process, supervised and routed as if this agent had started it, with no restart
//! and no lifecycle log lines.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use haven_raft::model::DynoState;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;
use tracing::{info, warn};
use uuid::Uuid;

use super::launch::{disk_quota_bytes, launch_of, quota_mb, spec_of, Launch};
use super::{DynoManager, Signal};
use crate::router::table::RouteEntry;
use crate::runtime::{DynoProcess, OutputTail};

/// How often (in 100 ms ticks) a dyno's writable space is measured against its disk
/// quota: every 200 ms. Between two checks a dyno writes at most what the disk takes in
/// that time beyond the quota, and the kill frees it all (the dyno dir is removed).
const DISK_CHECK_TICKS: u64 = 2;

/// The bytes `proc` has written to its writable space when they exceed `quota`
/// (measured on a blocking thread: it walks the dyno's upper dir and `/tmp`).
pub(super) async fn disk_over_quota(proc: &DynoProcess, quota: u64) -> Option<u64> {
    let handle = proc.handle();
    tokio::task::spawn_blocking(move || handle.disk_usage_bytes())
        .await
        .ok()
        .flatten()
        .filter(|used| *used > quota)
}

/// The app log's line for a dyno killed over its disk quota (README, "Dynos").
pub(super) fn disk_quota_line(used: u64, quota: u64) -> String {
    format!(
        "Error R15 (Disk quota exceeded): {} MB written to /app and /tmp, quota {} MB",
        used / (1024 * 1024),
        quota / (1024 * 1024)
    )
}

/// What a supervisor keeps with a running dyno (the runtime's process record note), for
/// the next agent to adopt it with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Note {
    release: u64,
    restart_seq: u32,
    port: Option<u16>,
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
    /// Copies a dyno's output into its app's log as `app[web.1]` lines.
    pub(super) fn pipe_output(
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

    /// Copies the output file of a dyno that outlives the agent into its app's log.
    fn tail_output(&self, app: Uuid, name: &str, tail: Option<OutputTail>) {
        let Some(mut tail) = tail else {
            return;
        };
        let logs = self.inner.logs.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            while let Some(lines) = tail.next_lines().await {
                for line in lines {
                    logs.emit(app, "app", &name, &line);
                }
            }
        });
    }

    /// The process a previous agent left running for dyno `id`, if it runs what `l` and
    /// `restart_seq` ask for; one that runs something older is stopped. Returns it with
    /// its port and its address (in its own network namespace).
    async fn adopt(
        &self,
        id: Uuid,
        l: &Launch,
        restart_seq: u32,
    ) -> Option<(DynoProcess, Option<u16>, Option<Ipv4Addr>)> {
        let (mut proc, note) = self.inner.runtime.adopt(&id.to_string())?;
        let note: Option<Note> = serde_json::from_str(&note).ok();
        match note {
            Some(n) if n.release == l.release && n.restart_seq == restart_seq => {
                self.claim_port(n.port);
                let address = self.inner.network.adopt(&id.to_string(), l.app);
                info!(dyno = %id, pid = proc.pid(), "adopted a running dyno");
                Some((proc, n.port, address))
            }
            _ => {
                info!(dyno = %id, "a running dyno is out of date; restarting it");
                self.tail_output(l.app, &l.name, proc.output());
                self.stop_process(id, l, &mut proc).await;
                proc.cleanup();
                self.inner.network.release(&id.to_string());
                None
            }
        }
    }

    /// One dyno's life on this node.
    pub(super) async fn supervise(&self, id: Uuid, mut signal: watch::Receiver<Signal>) {
        let tuning = self.inner.tuning.clone();
        let max_backoff = Duration::from_secs(tuning.max_restart_backoff_secs);
        let mut crashes: u32 = 0;
        let mut restarts: u32 = self
            .inner
            .raft
            .with_state(|s| s.dynos.get(&id).map(|d| d.restarts))
            .unwrap_or(0);
        // Only the first start may find the dyno already running.
        let mut adopt = true;
        loop {
            if matches!(*signal.borrow(), Signal::Stop | Signal::Detach) {
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
                .acquire(&launch.slug_sha, &launch.holders, Some(&launch.stack))
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
            let restart_seq = self
                .inner
                .raft
                .with_state(|s| s.dynos.get(&id).map(|d| d.restart_seq))
                .unwrap_or(0);
            let adopted = if std::mem::take(&mut adopt) {
                self.adopt(id, &launch, restart_seq).await
            } else {
                None
            };
            let was_adopted = adopted.is_some();
            let (mut proc, port, address) = match adopted {
                Some((proc, port, address)) => {
                    let up = self
                        .inner
                        .raft
                        .with_state(|s| s.dynos.get(&id).is_some_and(|d| d.state == DynoState::Up));
                    self.set_status(id, |st| {
                        st.state = if up {
                            DynoState::Up
                        } else {
                            DynoState::Starting
                        };
                        st.port = port;
                        st.restarts = restarts;
                    });
                    (proc, port, address)
                }
                None => {
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
                    let note = Note {
                        release: launch.release,
                        restart_seq,
                        port,
                    };
                    let note = serde_json::to_string(&note).unwrap_or_default();
                    let net = self
                        .inner
                        .network
                        .attach(&id.to_string(), Some(launch.app))
                        .await;
                    let spawned = net.map_err(std::io::Error::other).and_then(|net| {
                        let address = net.as_ref().map(|n| n.address);
                        let spec = spec_of(id, &launch, &lease, port, false, note, net);
                        self.inner.runtime.spawn(&spec).map(|p| (p, address))
                    });
                    match spawned {
                        Ok((p, address)) => (p, port, address),
                        Err(e) => {
                            self.inner.network.release(&id.to_string());
                            logs.platform(
                                launch.app,
                                &launch.name,
                                &format!(
                                    "Error R99 (Platform error) -> cannot start the process: {e}"
                                ),
                            );
                            self.free_port(port);
                            self.set_status(id, |st| st.state = DynoState::Crashed);
                            if wait_or_stop(&mut signal, Duration::from_secs(2)).await {
                                break;
                            }
                            continue;
                        }
                    }
                }
            };
            self.pipe_output(launch.app, &launch.name, proc.take_stdout());
            self.pipe_output(launch.app, &launch.name, proc.take_stderr());
            self.tail_output(launch.app, &launch.name, proc.output());
            let outcome = self
                .live(
                    id,
                    &launch,
                    &mut proc,
                    (port, address),
                    was_adopted,
                    &mut signal,
                )
                .await;
            if let Outcome::Detached = outcome {
                // The agent stops for an upgrade: the dyno runs on for the next one.
                info!(dyno = %id, pid = proc.pid(), "left the dyno running");
                return;
            }
            proc.cleanup();
            self.inner.network.release(&id.to_string());
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
                Outcome::Detached => return,
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
                        while !matches!(*signal.borrow(), Signal::Stop | Signal::Detach) {
                            if signal.changed().await.is_err() {
                                break;
                            }
                        }
                        break;
                    }
                    logs.platform(launch.app, &launch.name, "State changed from up to crashed");
                    let app_name = self
                        .inner
                        .raft
                        .with_state(|s| s.apps.get(&launch.app).map(|a| a.name.clone()))
                        .unwrap_or_default();
                    self.inner.events.record(
                        "dyno",
                        format!("{} of {app_name} crashed (exit status {code})", launch.name),
                    );
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
        (port, address): (Option<u16>, Option<Ipv4Addr>),
        adopted: bool,
        signal: &mut watch::Receiver<Signal>,
    ) -> Outcome {
        let logs = self.inner.logs.clone();
        let tuning = &self.inner.tuning;
        let started = Instant::now();
        let boot_timeout = Duration::from_secs(tuning.boot_timeout_secs);
        let mut booted = port.is_none();
        if booted {
            self.set_status(id, |st| st.state = DynoState::Up);
            if !adopted {
                logs.platform(l.app, &l.name, "State changed from starting to up");
            }
        }
        let quota = quota_mb(&l.size) * 1024 * 1024;
        let disk_quota = disk_quota_bytes(&l.size);
        let mut last_r14: Option<Instant> = None;
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        let mut ticks: u64 = 0;
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
                        Signal::Detach => return Outcome::Detached,
                        Signal::Run => {}
                    }
                }
                _ = ticker.tick() => {
                    ticks += 1;
                    if ticks.is_multiple_of(DISK_CHECK_TICKS) {
                        if let Some(used) = disk_over_quota(proc, disk_quota).await {
                            self.unroute(id).await;
                            logs.platform(l.app, &l.name, &disk_quota_line(used, disk_quota));
                            logs.platform(l.app, &l.name, "Stopping process with SIGKILL");
                            proc.kill();
                            let info = proc.wait().await;
                            let code = info.code.unwrap_or_else(|| 128 + info.signal.unwrap_or(9));
                            return Outcome::Exited(code);
                        }
                    }
                    if !booted {
                        if let Some(p) = port {
                            let at = address.unwrap_or(Ipv4Addr::LOCALHOST);
                            if tokio::net::TcpStream::connect((at, p)).await.is_ok() {
                                booted = true;
                                self.route(id, l, p).await;
                                let was_up = adopted && self.lock_status_is(id, DynoState::Up);
                                self.set_status(id, |st| st.state = DynoState::Up);
                                if !was_up {
                                    logs.platform(l.app, &l.name, "State changed from starting to up");
                                }
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
                        self.record_memory(id, used);
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

    /// Makes an `up` web dyno reachable through every router: other nodes' routers dial
    /// this node's address and its port (forwarded to the dyno's own namespace), this
    /// node's router the dyno's own address.
    async fn route(&self, id: Uuid, l: &Launch, port: u16) {
        let host = &self.inner.advertise_host;
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let local = match self.inner.network.expose(&id.to_string(), port).await {
            Ok(a) => a.map(|a| format!("{a}:{port}")),
            Err(e) => {
                warn!(dyno = %id, error = %e, "cannot expose a web dyno to the other nodes");
                None
            }
        };
        self.inner.registrar.register(
            RouteEntry {
                app: l.app,
                dyno: id,
                name: l.name.clone(),
                release: l.release,
                addr,
            },
            local,
        );
    }

    /// Takes a dyno out of every router, waiting for their confirmation (bounded).
    async fn unroute(&self, id: Uuid) {
        self.inner.registrar.withdraw(id).await;
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

enum Outcome {
    Stopped,
    Restarted,
    Exited(i32),
    /// Left running for the next agent.
    Detached,
}

/// Waits `delay` unless a stop or restart arrives; true when told to stop.
async fn wait_or_stop(signal: &mut watch::Receiver<Signal>, delay: Duration) -> bool {
    if matches!(*signal.borrow(), Signal::Stop | Signal::Detach) {
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
                    Signal::Stop | Signal::Detach => return true,
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

    #[test]
    fn crash_restarts_back_off() {
        let max = Duration::from_secs(20 * 60);
        let got: Vec<u64> = (1..=8).map(|n| backoff(n, max).as_secs()).collect();
        assert_eq!(got, [0, 1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(backoff(40, max), max);
        assert_eq!(backoff(200, max), max);
    }
}
