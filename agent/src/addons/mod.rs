//! The add-on manager: runs the add-on members the replicated state places on this node
//! (design §12).
//!
//! A loop compares the members placed here with the servers it supervises. Each member
//! has a supervisor task that starts its server through the dyno runtime (a second
//! [`Runtime`] whose process records live in `addons/run`, apart from the dynos'), with
//! its data dir `addons/data/<member id>` bound at `/data` ([`server`]); probes it by its
//! own protocol ([`probe`]) and keeps whether it answers; and restarts it with back-off
//! when it exits. The loop reports what differs from the state in one
//! `ReportAddonMembers` per tick: the first answer of every member makes the add-on
//! `provisioned`.
//!
//! Servers outlive the agent like dynos: a new agent adopts a server still running from
//! its process record, and starts one that is not (its data dir is kept: `initdb` runs
//! only into an empty one). When an add-on is deprovisioned its servers are stopped, the
//! data dirs removed and reported gone; a data dir of a member the state no longer knows
//! at all (once a read barrier shows the state current) is removed too. At shutdown the
//! servers are stopped, unless the agent stops for an upgrade.
//!
//! [`placement`] is the state as add-on placement sees it, for the API (creating) and
//! the leader (dyno memory); [`backups`] captures and restores Postgres backups for the
//! API.

pub mod backups;
mod leader_rules;
pub mod placement;
mod probe;
pub mod provider;
mod redis_replication;
mod replication;
pub mod schedule;
mod server;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::Utc;
use haven_raft::catalog::{self, Engine};
use haven_raft::command::{Command, MemberReport};
use haven_raft::model::{Addon, AddonMember, AddonState, NodeId, NodeStatus, Role, State};
use haven_raft::HavenRaft;
use tokio::sync::watch;
use tracing::{debug, info, warn};
use uuid::Uuid;

pub use leader_rules::{broken_standbys, failovers, lost_members, replacements};

use crate::logs::Logs;
use crate::runtime::{Mode, Runtime, DYNO_GID, DYNO_UID};

/// What a supervisor is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctl {
    Run,
    Stop,
    /// The agent stops for an upgrade: leave the server running.
    Detach,
}

struct Supervisor {
    ctl: watch::Sender<Ctl>,
    /// The member's add-on as the state has it now, and what its primary should wait for.
    desired: watch::Sender<Desired>,
    task: tokio::task::JoinHandle<()>,
}

/// What a supervisor steers its server by.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Desired {
    addon: Addon,
    /// A primary's `synchronous_standby_names`: its standbys on up nodes that stream or
    /// are in sync (a standby whose node is down has left sync in the state first).
    sync_names: String,
}

fn desired_of(s: &State, a: &Addon) -> Desired {
    let names: Vec<String> = a
        .standbys()
        .filter(|m| {
            (m.synced || m.streaming)
                && s.nodes
                    .get(&m.node)
                    .is_some_and(|n| n.status == NodeStatus::Up)
        })
        .map(|m| Addon::application_name(m.id))
        .collect();
    Desired {
        addon: a.clone(),
        sync_names: names.join(","),
    }
}

struct Inner {
    me: NodeId,
    raft: HavenRaft,
    runtime: Arc<Runtime>,
    data_dir: PathBuf,
    logs: Logs,
    /// The cluster CA: Postgres members' TLS certificates are issued from it.
    ca: crate::tls::CertKey,
    supervisors: Mutex<HashMap<Uuid, Supervisor>>,
    /// Each member's server as last seen (answers, replication).
    up: Mutex<HashMap<Uuid, MemberReport>>,
    /// A read barrier succeeded since the start: unknown data dirs are orphans.
    synced: AtomicBool,
    keep: AtomicBool,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct AddonManager {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The members the state places on node `me`: `(add-on, member)`, the add-on's state
/// telling whether it should run.
fn mine(s: &State, me: NodeId) -> Vec<(Addon, AddonMember)> {
    s.addons
        .values()
        .flat_map(|a| {
            a.members
                .iter()
                .filter(move |m| m.node == me)
                .map(move |m| (a.clone(), m.clone()))
        })
        .collect()
}

impl AddonManager {
    /// `data_dir` holds the members' data (`<data>/addons/data`); `runtime` runs their
    /// servers and keeps its records apart from the dynos'.
    pub fn new(
        me: NodeId,
        raft: HavenRaft,
        runtime: Arc<Runtime>,
        data_dir: PathBuf,
        logs: Logs,
        ca: crate::tls::CertKey,
    ) -> AddonManager {
        AddonManager {
            inner: Arc::new(Inner {
                me,
                raft,
                runtime,
                data_dir,
                logs,
                ca,
                supervisors: Mutex::new(HashMap::new()),
                up: Mutex::new(HashMap::new()),
                synced: AtomicBool::new(false),
                keep: AtomicBool::new(false),
            }),
        }
    }

    /// Makes the coming shutdown leave every server running, for the next agent to adopt.
    pub fn keep_servers_at_shutdown(&self) {
        self.inner.keep.store(true, Ordering::SeqCst);
    }

    /// The reconcile loop; at shutdown it stops every server (or leaves them running).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = self.clone();
        let sync = tokio::spawn(async move {
            loop {
                let barrier = this.inner.raft.read_barrier();
                if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(5), barrier).await {
                    this.inner.synced.store(true, Ordering::SeqCst);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        let mut ticker = tokio::time::interval(Duration::from_millis(300));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => break,
            }
            self.tick().await;
        }
        sync.abort();
        let ctl = if self.inner.keep.load(Ordering::SeqCst) {
            Ctl::Detach
        } else {
            Ctl::Stop
        };
        let sups: Vec<Supervisor> = lock(&self.inner.supervisors)
            .drain()
            .map(|(_, s)| s)
            .collect();
        for s in &sups {
            let _ = s.ctl.send(ctl);
        }
        for s in sups {
            let _ = s.task.await;
        }
    }

    async fn tick(&self) {
        let inner = &self.inner;
        let (placed, wants) = inner.raft.with_state(|s| {
            let placed = mine(s, inner.me);
            let wants: HashMap<Uuid, Desired> = placed
                .iter()
                .map(|(a, m)| (m.id, desired_of(s, a)))
                .collect();
            (placed, wants)
        });
        let run: HashMap<Uuid, (Addon, AddonMember)> = placed
            .iter()
            .filter(|(a, _)| a.state != AddonState::Deprovisioning)
            .map(|(a, m)| (m.id, (a.clone(), m.clone())))
            .collect();
        let removing: HashSet<Uuid> = placed
            .iter()
            .filter(|(a, _)| a.state == AddonState::Deprovisioning)
            .map(|(_, m)| m.id)
            .collect();
        {
            let mut sups = lock(&inner.supervisors);
            for (id, (_, m)) in &run {
                let Some(want) = wants.get(id) else { continue };
                if let Some(sup) = sups.get(id) {
                    sup.desired.send_if_modified(|d| {
                        let changed = d != want;
                        if changed {
                            *d = want.clone();
                        }
                        changed
                    });
                } else {
                    let (ctl, rx) = watch::channel(Ctl::Run);
                    let (desired, drx) = watch::channel(want.clone());
                    let this = self.clone();
                    let m = m.clone();
                    let task = tokio::spawn(async move { this.supervise(m, drx, rx).await });
                    sups.insert(*id, Supervisor { ctl, desired, task });
                }
            }
            sups.retain(|id, s| {
                if run.contains_key(id) {
                    return true;
                }
                let _ = s.ctl.send(Ctl::Stop);
                !s.task.is_finished()
            });
        }
        let supervised: HashSet<Uuid> = lock(&inner.supervisors).keys().copied().collect();
        let mut gone = Vec::new();
        for id in &removing {
            if !supervised.contains(id) {
                self.remove_data(*id);
                gone.push(*id);
            }
        }
        if inner.synced.load(Ordering::SeqCst) {
            for id in self.data_dirs() {
                if !run.contains_key(&id) && !removing.contains(&id) && !supervised.contains(&id) {
                    info!(member = %id, "removing the data of an add-on member this node no longer runs");
                    self.remove_data(id);
                }
            }
        }
        let reports: Vec<MemberReport> = {
            let up = lock(&inner.up);
            run.iter()
                .filter_map(|(id, (a, m))| {
                    let local = up.get(id).cloned().unwrap_or_else(|| MemberReport {
                        member: *id,
                        ..MemberReport::default()
                    });
                    differs(a, m, &local).then_some(local)
                })
                .collect()
        };
        lock(&inner.up).retain(|id, _| run.contains_key(id));
        if reports.is_empty() && gone.is_empty() {
            return;
        }
        let cmd = Command::ReportAddonMembers {
            node: inner.me,
            reports,
            gone,
            at: Utc::now(),
        };
        match inner.raft.write(cmd).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "add-on member report refused"),
            Err(e) => debug!(error = %e, "could not report add-on members; retrying"),
        }
    }

    /// Member ids that have a data dir here.
    fn data_dirs(&self) -> Vec<Uuid> {
        let Ok(rd) = std::fs::read_dir(&self.inner.data_dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect()
    }

    fn member_dir(&self, id: Uuid) -> PathBuf {
        self.inner.data_dir.join(id.to_string())
    }

    /// Removes a member's data dir and what the runtime kept of its server.
    fn remove_data(&self, id: Uuid) {
        self.inner.runtime.discard(&id.to_string());
        let dir = self.member_dir(id);
        if dir.exists() {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => info!(member = %id, "removed an add-on member's data"),
                Err(e) => warn!(member = %id, error = %e, "cannot remove an add-on member's data"),
            }
        }
    }

    fn set_status(&self, r: MemberReport) {
        lock(&self.inner.up).insert(r.member, r);
    }

    /// One member's server on this node, until told to stop or detach. An HA Postgres
    /// member follows its role: a standby told it is the primary promotes its server; a
    /// server started as anything but a standby of the current generation, when the
    /// member is a standby, is stopped and started again as one (its data rebuilt from
    /// the primary: an old primary never serves again).
    async fn supervise(
        &self,
        member: AddonMember,
        mut desired: watch::Receiver<Desired>,
        mut ctl: watch::Receiver<Ctl>,
    ) {
        let inner = &self.inner;
        let id = member.id;
        let container = inner.runtime.mode() == Mode::Container;
        let dir = self.member_dir(id);
        if let Err(e) = data_dir(&dir, container) {
            warn!(member = %id, error = %e, "cannot create an add-on member's data dir");
        }
        let first = desired.borrow().addon.clone();
        let engine = catalog::addon_service(&first.service).map_or(Engine::Postgres, |s| s.engine);
        let ha = first.members.len() > 1;
        let user = first.db_user();
        let process = server::log_process(&first);
        let max_backoff = Duration::from_secs(if ha { 5 } else { 30 });
        let mut backoff = Duration::from_secs(1);
        let mut adopt = true;
        loop {
            if *ctl.borrow() != Ctl::Run {
                return;
            }
            if ha {
                // Start only on a current state: a returning old primary must know it
                // was failed over before its server runs.
                while !inner.synced.load(Ordering::SeqCst) {
                    if wait_or_ctl(&mut ctl, Duration::from_millis(200)).await {
                        return;
                    }
                }
            }
            let mut want = desired.borrow_and_update().clone();
            if let Some(now) = inner
                .raft
                .with_state(|s| s.addons.get(&first.id).map(|a| desired_of(s, a)))
            {
                want = now;
            }
            let addon = want.addon.clone();
            let adopted = if adopt {
                inner.runtime.adopt(&id.to_string())
            } else {
                None
            };
            adopt = false;
            let was_adopted = adopted.is_some();
            let (mut proc, mut started) =
                match adopted {
                    Some((p, note)) => (p, server::started_as(&note)),
                    None => match server::prepare(&addon, &member, &dir, &inner.ca, container)
                        .and_then(|()| {
                            inner
                                .runtime
                                .spawn(&server::spec(&addon, &member, &dir, container))
                                .map_err(anyhow::Error::from)
                        }) {
                        Ok(p) => (p, (addon.role_of(id), addon.generation)),
                        Err(e) => {
                            warn!(addon = %addon.name, error = %e, "cannot start an add-on server");
                            if wait_or_ctl(&mut ctl, backoff).await {
                                return;
                            }
                            backoff = (backoff * 2).min(max_backoff);
                            continue;
                        }
                    },
                };
            info!(addon = %addon.name, member = %id, pid = proc.pid(), adopted = was_adopted, role = started.0.as_str(), generation = started.1, "add-on server running");
            if let Some(mut tail) = proc.output() {
                let logs = inner.logs.clone();
                let (app, process) = (addon.app, process.clone());
                tokio::spawn(async move {
                    while let Some(lines) = tail.next_lines().await {
                        for line in lines {
                            logs.emit(app, "app", &process, &line);
                        }
                    }
                });
            }
            let mut up = false;
            // The password this server (a primary) or its pgpass (a standby) has: set
            // after each start, and again after a rotation.
            let mut applied_password: Option<String> = None;
            // A plan change to an HA plan makes the running primary steer replication
            // from then on (and, after a change back, clear its synchronous standbys).
            let mut steering = ha;
            // Standbys the primary has in sync: the primary's flush position when each
            // was first seen in sync (it has every acknowledged commit once past it).
            let mut sync_since: HashMap<String, u64> = HashMap::new();
            let outcome = loop {
                let every = if !up {
                    Duration::from_millis(300)
                } else if ha {
                    Duration::from_millis(500)
                } else {
                    Duration::from_secs(5)
                };
                tokio::select! {
                    exit = proc.wait() => break Outcome::Exited(exit),
                    changed = ctl.changed() => {
                        if changed.is_err() || *ctl.borrow() != Ctl::Run {
                            break Outcome::Told;
                        }
                    }
                    _ = desired.changed() => {}
                    _ = tokio::time::sleep(every) => {}
                }
                let want = desired.borrow().clone();
                steering |= want.addon.members.len() > 1;
                let role = want.addon.role_of(id);
                if ha && role == Role::Standby && started != (Role::Standby, want.addon.generation)
                {
                    info!(addon = %want.addon.name, member = %id, generation = want.addon.generation, "this member is a standby now: stopping its server to rebuild it from the primary");
                    break Outcome::Rebuild;
                }
                let now = probe::answers(
                    engine,
                    &member.host,
                    member.port,
                    &user,
                    Duration::from_secs(2),
                )
                .await;
                if now != up {
                    info!(addon = %want.addon.name, member = %id, answers = now, "add-on server status changed");
                    up = now;
                    if now {
                        backoff = Duration::from_secs(1);
                    }
                }
                let mut report = MemberReport {
                    member: id,
                    up: now,
                    generation: started.1,
                    ..MemberReport::default()
                };
                if steering && now {
                    self.steer(
                        engine,
                        &want,
                        &member,
                        &mut started,
                        &mut sync_since,
                        &mut report,
                    )
                    .await;
                }
                if engine == Engine::Postgres
                    && now
                    && applied_password.as_deref() != Some(want.addon.password.as_str())
                {
                    let set = match (want.addon.role_of(id), started.0) {
                        (Role::Primary, Role::Primary) => {
                            replication::set_password(&want.addon, &member, &dir).await
                        }
                        (Role::Standby, _) => {
                            let owner = container.then_some((DYNO_UID, DYNO_GID));
                            replication::write_pgpass(&want.addon, &dir, owner)
                                .map_err(|e| e.to_string())
                        }
                        // A standby being promoted: once it is the primary.
                        (Role::Primary, Role::Standby) => Err("not promoted yet".into()),
                    };
                    match set {
                        Ok(()) => {
                            if applied_password.is_some() {
                                info!(addon = %want.addon.name, member = %id, "the add-on's new password is in force");
                            }
                            applied_password = Some(want.addon.password.clone());
                        }
                        Err(e) => {
                            debug!(addon = %want.addon.name, error = %e, "cannot set the add-on's password yet")
                        }
                    }
                }
                self.set_status(report);
            };
            self.set_status(MemberReport {
                member: id,
                ..MemberReport::default()
            });
            match outcome {
                Outcome::Told if *ctl.borrow() == Ctl::Detach => {
                    info!(addon = %addon.name, pid = proc.pid(), "left the add-on server running");
                    return;
                }
                Outcome::Told | Outcome::Rebuild => {
                    proc.terminate();
                    if tokio::time::timeout(Duration::from_secs(15), proc.wait())
                        .await
                        .is_err()
                    {
                        proc.kill();
                        let _ = proc.wait().await;
                    }
                    proc.cleanup();
                    info!(addon = %addon.name, member = %id, "add-on server stopped");
                    if matches!(outcome, Outcome::Told) {
                        return;
                    }
                }
                Outcome::Exited(exit) => {
                    proc.cleanup();
                    warn!(addon = %addon.name, member = %id, code = ?exit.code, signal = ?exit.signal, "add-on server exited; restarting it");
                    if wait_or_ctl(&mut ctl, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(max_backoff);
                }
            }
        }
    }

    /// One look at an HA member's replication, acting on its role: a primary (promoted
    /// first if its server is still a standby) waits for the state's sync set (Postgres:
    /// `synchronous_standby_names`; Redis: a replica that keeps up) and reports the
    /// standbys in sync; a standby reports whether it streams.
    async fn steer(
        &self,
        engine: Engine,
        want: &Desired,
        member: &AddonMember,
        started: &mut (Role, u64),
        sync_since: &mut HashMap<String, u64>,
        report: &mut MemberReport,
    ) {
        let a = &want.addon;
        let st = match replication::status(engine, a, member).await {
            Ok(st) => st,
            Err(e) => {
                debug!(addon = %a.name, error = %e, "no replication status");
                return;
            }
        };
        if a.role_of(member.id) == Role::Standby {
            report.streaming = st.in_recovery && st.receiver == "streaming";
            return;
        }
        if st.in_recovery {
            // Promoted by a failover: wait for no standby until one is back in sync.
            if let Err(e) = replication::set_sync(engine, a, member, &want.sync_names).await {
                warn!(addon = %a.name, error = %e, "cannot set the synchronous standbys");
            }
            match replication::promote(engine, a, member).await {
                Ok(()) => {
                    info!(addon = %a.name, member = %member.id, generation = a.generation, "promoted the standby to primary")
                }
                Err(e) => {
                    warn!(addon = %a.name, error = %e, "cannot promote the standby");
                    return;
                }
            }
        } else if st.sync_names != replication::wanted(engine, &want.sync_names) {
            info!(addon = %a.name, standbys = %want.sync_names, "setting the synchronous standbys");
            if let Err(e) = replication::set_sync(engine, a, member, &want.sync_names).await {
                warn!(addon = %a.name, error = %e, "cannot set the synchronous standbys");
            }
        }
        *started = (Role::Primary, a.generation);
        report.generation = a.generation;
        // A standby the state has out of sync and not streaming (its server stopped
        // answering: the leader took it out) counts again only once it streams, and
        // from a fresh position: a frozen standby's last flush is no proof.
        sync_since.retain(|n, _| {
            st.sync.iter().any(|(s, _)| s == n)
                && a.standbys()
                    .any(|m| &Addon::application_name(m.id) == n && (m.synced || m.streaming))
        });
        for (name, flushed) in &st.sync {
            let Some(m) = a
                .standbys()
                .find(|m| &Addon::application_name(m.id) == name)
            else {
                continue;
            };
            if !(m.synced || m.streaming) {
                continue;
            }
            let since = *sync_since.entry(name.clone()).or_insert(st.flush_lsn);
            if *flushed >= since {
                report.sync_standbys.push(m.id);
            }
        }
    }
}

/// How a server's supervision ended.
enum Outcome {
    Exited(crate::runtime::ExitInfo),
    /// Told to stop or detach.
    Told,
    /// Its role changed: start it again.
    Rebuild,
}

/// Whether the node's view of a member differs from the state's, so that it is reported.
fn differs(a: &Addon, m: &AddonMember, local: &MemberReport) -> bool {
    if local.up != m.up {
        return true;
    }
    if local.generation != a.generation {
        return false;
    }
    match a.role_of(m.id) {
        Role::Standby => (local.up && local.streaming) != m.streaming,
        Role::Primary => local
            .sync_standbys
            .iter()
            .any(|s| a.members.iter().any(|x| x.id == *s && !x.synced)),
    }
}

/// Sleeps `d`; `true` if told meanwhile to stop (or the manager is gone).
async fn wait_or_ctl(ctl: &mut watch::Receiver<Ctl>, d: Duration) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = ctl.wait_for(|c| *c != Ctl::Run) => true,
    };
    stopped || *ctl.borrow() != Ctl::Run
}

/// The member's data dir: private, and the dyno user's when servers run in containers.
fn data_dir(dir: &Path, container: bool) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711))?;
    }
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    if container {
        std::os::unix::fs::chown(dir, Some(DYNO_UID), Some(DYNO_GID))?;
    }
    Ok(())
}
