//! The dyno runtime: runs one dyno (a Procfile command over an extracted slug) as a
//! container, or as a plain process where containers are unavailable.
//!
//! **Container mode** (root, namespaces, overlayfs, cgroups): `spawn` writes the per-dyno
//! dir and a spec file, creates the dyno's cgroup with its limits, and starts
//! `haven-init --spec FILE` (crate `init/`; [`InitExe`] finds it): PID 1 of new PID, mount, UTS and IPC
//! namespaces (plus a network namespace of its own when the spec has a [`DynoNet`], see
//! [`net`]; else the host's network), rooted by
//! `pivot_root` in a tmpfs holding the stack (`DynoSpec::root`: an unpacked stack image,
//! or the host's own `/usr`, `/etc`, ...) bound read-only, `/app` as an overlay
//! (slug below, per-dyno upper dir above), a private `/tmp`, fresh `/proc` and a minimal
//! `/dev`. The command runs as uid/gid [`plan::DYNO_UID`] with `no_new_privs`. Every mount
//! lives only in the dyno's private mount namespace, so the host never sees them.
//!
//! **Process mode**: `bash -c` as a child in its own process group, cwd and `HOME` a
//! per-dyno copy of the slug.
//!
//! **Dynos outlive the agent** ([`DynoSpec::outlives_agent`]): no parent-death signal,
//! output to a file the agent follows ([`output`]) rather than pipes, and a process
//! record ([`record`]) from which the next agent [`Runtime::adopt`]s the running dyno.
//! Builds and attached one-offs die with the agent as before.
//!
//! Only this module calls `nix` (design invariant).

mod adopt;
mod cgroup;
mod files;
mod net;
mod output;
mod plan;
mod probe;
mod record;
mod run;

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

pub use files::chown_tree;
use files::{create_private_dir, remove_tree};
pub use haven_init::{
    probe as dyno_init_probe, probe_net as dyno_init_probe_net, run as dyno_init,
};
pub use net::{setup_bridge, DynoNet};
pub use output::OutputTail;
pub use plan::{DYNO_GID, DYNO_UID};
pub use run::{dyno_run, DynoRunArgs};

/// How dynos run on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Namespaces, pivot_root, cgroups, unprivileged user.
    Container,
    /// Plain child processes (no root or no namespaces).
    Process,
}

/// A host path bound into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub host: PathBuf,
    /// Absolute path inside the container.
    pub target: PathBuf,
    pub writable: bool,
}

/// One dyno to start.
#[derive(Debug, Clone)]
pub struct DynoSpec {
    /// Unique (a uuid): names the per-dyno dir and cgroup. `[A-Za-z0-9._-]`, ≤ 64.
    pub id: String,
    /// E.g. `web.1`.
    pub hostname: String,
    /// The extracted slug: the read-only lower layer of `/app`. `None`: an empty,
    /// writable `/app`.
    pub slug_dir: Option<PathBuf>,
    /// The root filesystem whose `/usr`, `/etc`, ... the container gets read-only (an
    /// unpacked stack image). `None`: the host's.
    pub root: Option<PathBuf>,
    pub binds: Vec<Bind>,
    /// A shell command line, run in `/app` after `.profile.d/*.sh` are sourced (see
    /// [`plan::shell_args`]): a simple command becomes the dyno's main process.
    pub command: String,
    /// The complete environment (the supervisor adds `PORT`, `DYNO`, `HOME=/app`, `PATH`).
    pub env: Vec<(String, String)>,
    /// The cgroup's hard memory limit: the supervisor passes twice the size's quota
    /// (Heroku's R15 point) and logs R14 from [`DynoProcess::memory_usage_bytes`] above
    /// 1×. Swap is capped too. 0: no limit.
    pub memory_limit_bytes: u64,
    /// Process/thread limit (0: no limit).
    pub pids_limit: u64,
    /// CPU share in cgroup v1 `cpu.shares` units (`cpu.weight` = shares × 100 / 1024 on
    /// v2): the dyno's part of contended CPU time (0: the kernel's default, 1024).
    pub cpu_shares: u64,
    /// Pipe stdin (attached one-off dynos); else it is `/dev/null`.
    pub stdin: bool,
    /// The dyno keeps running when the agent dies or restarts, and the next agent adopts
    /// it ([`Runtime::adopt`]): output goes to a file ([`DynoProcess::output`]), not to
    /// pipes. Else (builds, attached one-offs) it dies with the agent.
    pub outlives_agent: bool,
    /// Kept with the running process and given back by [`Runtime::adopt`] (the
    /// supervisor keeps the port and restart sequence there). Not secret-safe: no config.
    pub note: String,
    /// Container mode: the dyno's own network namespace, linked to the node's bridge.
    /// `None` (and always in Process mode): the host's network.
    pub net: Option<DynoNet>,
}

/// How a dyno ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// The kernel's OOM killer killed a process of the dyno (its memory hit 2× quota).
    pub oom_killed: bool,
}

/// Starts dynos on this host.
#[derive(Debug)]
pub struct Runtime {
    mode: Mode,
    state_dir: PathBuf,
    init: InitExe,
    cgroups: Option<cgroup::Layout>,
    reason: Option<String>,
    /// An init started ahead of the next container dyno that outlives the agent
    /// ([`Standby`]).
    standby: Arc<std::sync::Mutex<Option<Standby>>>,
}

impl Runtime {
    /// Probes root, the namespaces and overlayfs (by running the init's `--probe` in the
    /// state dir), and cgroups; on failure logs one warning saying why and runs dynos in
    /// Process mode. `state_dir` holds the per-dyno dirs; `agent_exe` is the `havend`
    /// binary, next to which the init is looked for ([`InitExe::find`]). Blocks for the
    /// probe (a few milliseconds): call it at startup.
    pub fn new(state_dir: PathBuf, agent_exe: PathBuf) -> Runtime {
        let init = InitExe::find(&agent_exe);
        match probe::probe_container(&state_dir, &init) {
            Ok(layout) => Runtime {
                mode: Mode::Container,
                state_dir,
                init,
                cgroups: Some(layout),
                reason: None,
                standby: Arc::default(),
            },
            Err(why) => {
                tracing::warn!(
                    reason = %why,
                    "container dynos are unavailable on this host; dynos run as plain processes"
                );
                let mut rt = Runtime::process_only(state_dir);
                rt.init = init;
                rt.reason = Some(why);
                rt
            }
        }
    }

    /// A runtime that runs every dyno in Process mode, without probing.
    pub fn process_only(state_dir: PathBuf) -> Runtime {
        Runtime {
            mode: Mode::Process,
            state_dir,
            init: InitExe::agent(PathBuf::new()),
            cgroups: None,
            reason: Some("Process mode was asked for".into()),
            standby: Arc::default(),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Can this host give a dyno its own network namespace? (Runs the init's
    /// `--probe-net`.)
    pub fn probe_network(&self) -> Result<(), String> {
        net::probe(&self.init)
    }

    /// Why container mode is unavailable (Process mode only).
    pub fn unavailable_reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// Starts a dyno; returns once its process is started (container setup errors show
    /// on the dyno's stderr and as exit code 125). Creates dirs and cgroups, and in
    /// Process mode copies the slug. Call it on a tokio worker thread (inside a task, not
    /// in `spawn_blocking`): unless it [outlives the agent](DynoSpec::outlives_agent),
    /// the dyno gets SIGKILL when the thread that spawned it exits (`PR_SET_PDEATHSIG`).
    pub fn spawn(&self, spec: &DynoSpec) -> io::Result<DynoProcess> {
        plan::validate(spec, &self.state_dir).map_err(invalid)?;
        if let Some(slug) = &spec.slug_dir {
            if !slug.is_dir() {
                return Err(invalid(format!(
                    "slug dir {} is not a directory",
                    slug.display()
                )));
            }
        }
        let dirs = plan::DynoDirs::new(&self.state_dir, &spec.id);
        create_private_dir(&self.state_dir, true)?;
        if dirs.root.exists() {
            // Left by an agent that died with this dyno running (ids are unique per dyno,
            // and the supervisor cleans a dyno up before it starts it again).
            tracing::info!(dyno = %spec.id, "removing a stale dyno dir");
            adopt::kill_recorded(&dirs.root);
            if let Some(layout) = &self.cgroups {
                let cg = layout.dyno(&spec.id);
                cg.kill_all();
                cg.remove();
            }
            remove_tree(&dirs.root);
        }
        create_private_dir(&dirs.root, false)?;
        let started = match self.mode {
            Mode::Container => self.spawn_container(spec, &dirs),
            Mode::Process => self.spawn_process(spec, &dirs),
        };
        match started {
            Ok(p) if spec.outlives_agent => {
                let container = self.mode == Mode::Container;
                let address = spec.net.as_ref().filter(|_| container).map(|n| n.address);
                if let Err(e) = record::write(&dirs.root, p.pid(), container, &spec.note, address) {
                    // Still a working dyno; only the next agent will not adopt it.
                    tracing::warn!(dyno = %spec.id, error = %e, "cannot write the dyno's process record");
                }
                Ok(p)
            }
            Ok(p) => Ok(p),
            Err(e) => {
                remove_tree(&dirs.root);
                Err(e)
            }
        }
    }

    fn spawn_container(&self, spec: &DynoSpec, dirs: &plan::DynoDirs) -> io::Result<DynoProcess> {
        let layout = self
            .cgroups
            .as_ref()
            .ok_or_else(|| io::Error::other("no cgroup layout"))?;
        let upper = dirs.upper();
        std::fs::create_dir(&upper)?;
        std::fs::set_permissions(&upper, std::fs::Permissions::from_mode(0o755))?;
        std::os::unix::fs::chown(&upper, Some(DYNO_UID), Some(DYNO_GID))?;
        if spec.slug_dir.is_some() {
            std::fs::create_dir(dirs.work())?;
        }
        let tmp = dirs.tmp();
        std::fs::create_dir(&tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))?;
        let mut etc_files = Vec::new();
        let root = spec.root.clone().unwrap_or_else(|| PathBuf::from("/"));
        if let (Ok(p), Ok(g)) = (
            std::fs::read_to_string(root.join("etc/passwd")),
            std::fs::read_to_string(root.join("etc/group")),
        ) {
            std::fs::write(dirs.etc_file("passwd"), plan::with_dyno_entry(&p, false))?;
            std::fs::write(dirs.etc_file("group"), plan::with_dyno_entry(&g, true))?;
            etc_files.extend(["passwd", "group"]);
        }
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        std::fs::write(
            dirs.etc_file("hosts"),
            plan::hosts_with(&hosts, &spec.hostname),
        )?;
        etc_files.push("hosts");
        if spec.root.is_some() && root.join("etc/resolv.conf").is_file() {
            // A stack image's /etc has no resolver of its own: the host's serves.
            let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            std::fs::write(dirs.etc_file("resolv.conf"), resolv)?;
            etc_files.push("resolv.conf");
        }
        let host_stack = stack_entries(&root);
        let steps = plan::mount_plan(&plan::PlanInput {
            dirs,
            root: &root,
            slug_dir: spec.slug_dir.as_deref(),
            binds: &spec.binds,
            host_stack: &host_stack,
            etc_files: &etc_files,
        })
        .map_err(invalid)?;
        let cg = layout.dyno(&spec.id);
        cg.create(spec.memory_limit_bytes, spec.pids_limit, spec.cpu_shares)?;
        let mut init_spec = plan::InitSpec {
            hostname: spec.hostname.clone(),
            rootfs: dirs.rootfs(),
            steps,
            program: "/bin/bash".into(),
            args: std::iter::once("bash".to_string())
                .chain(plan::shell_args("/app", &spec.command))
                .collect(),
            env: spec.env.clone(),
            workdir: "/app".into(),
            uid: DYNO_UID,
            gid: DYNO_GID,
            cgroup_procs: cg.procs_files(),
            parent_pid: std::process::id() as i32,
            exit_status_file: spec
                .outlives_agent
                .then(|| dirs.root.join(EXIT_STATUS_FILE)),
            net: spec.net.clone(),
            output: None,
        };
        let standby = self.take_standby(spec);
        if standby.is_some() {
            init_spec.output = Some(dirs.root.join(output::LOG_FILE));
        }
        let written = serde_json::to_vec(&init_spec)
            .map_err(io::Error::other)
            .and_then(|bytes| {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(dirs.spec_file())?;
                io::Write::write_all(&mut f, &bytes)
            });
        let child = written.and_then(|()| {
            if spec.outlives_agent {
                self.refill_standby(spec);
            }
            if let Some(sb) = standby {
                // Its stdout and stderr become the output file, which it opens itself.
                drop(output::create(&dirs.root)?);
                match sb.start(&dirs.spec_file()) {
                    Ok(child) => return Ok(child),
                    Err(e) => {
                        tracing::info!(error = %e, "the standby dyno init is gone; starting one");
                        let _ = std::fs::remove_file(dirs.root.join(output::LOG_FILE));
                    }
                }
            }
            let mut cmd = Command::from(self.init.command(&["--spec"]));
            cmd.arg(dirs.spec_file()).env_clear().current_dir("/");
            stdio(&mut cmd, spec, &dirs.root)?;
            cmd.spawn()
        });
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                cg.remove();
                return Err(e);
            }
        };
        Ok(DynoProcess::new(
            child,
            dirs.root.clone(),
            Kind::Container { cgroup: cg },
            spec.outlives_agent,
        ))
    }

    /// The standby init for `spec`, if one waits and fits (a dyno that outlives the agent,
    /// with no stdin, on the same bridge or the host's network); one that does not fit is
    /// stopped.
    fn take_standby(&self, spec: &DynoSpec) -> Option<Standby> {
        if !spec.outlives_agent || spec.stdin {
            return None;
        }
        let mut sb = lock(&self.standby).take()?;
        let bridge = spec.net.as_ref().map(|n| n.bridge.as_str());
        (sb.alive() && sb.bridge.as_deref() == bridge).then_some(sb)
    }

    /// Starts the standby init for the next dyno like `spec`, soon, from a task of the
    /// agent's runtime (so not on the critical path of the dyno just started, and from a
    /// thread that lives as long as the runtime: the standby's parent-death signal
    /// follows the thread that spawned it).
    fn refill_standby(&self, spec: &DynoSpec) {
        if !self.init.standby_capable() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let slot = self.standby.clone();
        let init = self.init.clone();
        let bridge = spec.net.as_ref().map(|n| n.bridge.clone());
        rt.spawn(async move {
            tokio::time::sleep(STANDBY_DELAY).await;
            // Under the lock: of several starts in a row, one refill makes a standby.
            let mut slot = lock(&slot);
            if slot.is_some() {
                return;
            }
            match Standby::spawn(&init, bridge) {
                Ok(sb) => *slot = Some(sb),
                Err(e) => tracing::warn!(error = %e, "cannot start a standby dyno init"),
            }
        });
    }

    fn spawn_process(&self, spec: &DynoSpec, dirs: &plan::DynoDirs) -> io::Result<DynoProcess> {
        let app = dirs.app_copy();
        match &spec.slug_dir {
            Some(slug) => {
                let status = std::process::Command::new("cp")
                    .arg("-a")
                    .arg(slug)
                    .arg(&app)
                    .stdin(Stdio::null())
                    .status()?;
                if !status.success() {
                    return Err(io::Error::other(format!(
                        "copying the slug {} failed: {status}",
                        slug.display()
                    )));
                }
            }
            None => std::fs::create_dir(&app)?,
        }
        let mut cmd = Command::new(bash_path());
        cmd.args(plan::shell_args("\"$HOME\"", &spec.command))
            .current_dir(&app)
            .env_clear()
            .envs(plan::process_env(&spec.env, &app));
        stdio(&mut cmd, spec, &dirs.root)?;
        if !spec.outlives_agent {
            // SAFETY: the closure runs between fork and exec in the child and only calls
            // prctl(2), which is async-signal-safe; it allocates nothing and takes no locks.
            unsafe {
                cmd.pre_exec(|| {
                    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)
                });
            }
        }
        let child = cmd.spawn()?;
        Ok(DynoProcess::new(
            child,
            dirs.root.clone(),
            Kind::Process,
            spec.outlives_agent,
        ))
    }
}

/// The program a container dyno's init runs as: `haven-init` beside the agent's binary,
/// a small one whose exec costs a fraction of `havend`'s (no C++ to load, few
/// relocations), else `havend dyno-init` (a `havend` copied alone somewhere, as an
/// upgrade test does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitExe {
    path: PathBuf,
    /// `havend`: the init is its `dyno-init` subcommand.
    agent: bool,
}

impl InitExe {
    /// The binary of the init.
    pub const NAME: &'static str = "haven-init";

    /// `haven-init` in the directory of `agent_exe` if there is one, else `agent_exe`.
    pub fn find(agent_exe: &Path) -> InitExe {
        match agent_exe.parent().map(|d| d.join(Self::NAME)) {
            Some(p) if p.is_file() => InitExe {
                path: p,
                agent: false,
            },
            _ => InitExe::agent(agent_exe.to_path_buf()),
        }
    }

    fn agent(path: PathBuf) -> InitExe {
        InitExe { path, agent: true }
    }

    /// The init with `args` (`--spec`, `--probe DIR`, `--probe-net`).
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(&self.path);
        if self.agent {
            c.arg("dyno-init");
        }
        c.args(args);
        c
    }

    /// Whether it can wait as a standby (`haven-init` can; `havend dyno-init` not).
    fn standby_capable(&self) -> bool {
        !self.agent
    }

    /// How it is run, for error messages.
    pub fn display(&self) -> String {
        match self.agent {
            true => format!("{} dyno-init", self.path.display()),
            false => self.path.display().to_string(),
        }
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

/// How long after a dyno start its standby init's successor is started.
const STANDBY_DELAY: std::time::Duration = std::time::Duration::from_millis(20);

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An init (`haven-init --standby`) started before its dyno is known: it has exec'd and,
/// for a dyno with a network of its own, made its network namespace and veth pair
/// already; the dyno's spec path on its stdin sets it going. Until then it dies with
/// the agent; dropped unused, it is killed.
#[derive(Debug)]
struct Standby {
    /// `None` once handed a spec.
    child: Option<Child>,
    /// The bridge its veth is on; `None`: the host's network.
    bridge: Option<String>,
}

impl Standby {
    fn spawn(init: &InitExe, bridge: Option<String>) -> io::Result<Standby> {
        let mut args = vec!["--standby"];
        if let Some(b) = &bridge {
            args.extend(["--bridge", b.as_str()]);
        }
        let mut cmd = Command::from(init.command(&args));
        cmd.env_clear()
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            // Its errors before a spec comes: into the agent's log.
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(false);
        Ok(Standby {
            child: Some(cmd.spawn()?),
            bridge,
        })
    }

    /// Hands it the spec at `spec_path`: from here on it is the dyno's init.
    fn start(mut self, spec_path: &Path) -> io::Result<Child> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| io::Error::other("the standby init was used"))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("the standby init has no stdin"))?;
        let mut line = spec_path.as_os_str().as_encoded_bytes().to_vec();
        line.push(b'\n');
        // A short line into an empty pipe: written at once, or the standby is gone.
        let n = nix::unistd::write(&stdin, &line).map_err(io::Error::from)?;
        if n != line.len() {
            return Err(io::Error::other("short write to the standby init"));
        }
        drop(stdin);
        Ok(child)
    }

    /// Whether it still waits for a spec.
    fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.start_kill();
        }
    }
}

/// Where the main process's status is left for an agent that adopted the dyno.
const EXIT_STATUS_FILE: &str = "exit-status";

/// Stdin piped or `/dev/null`; stdout and stderr piped, or (a dyno that outlives the
/// agent) both to its output file in `dir`.
fn stdio(cmd: &mut Command, spec: &DynoSpec, dir: &Path) -> io::Result<()> {
    cmd.stdin(if spec.stdin {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    if spec.outlives_agent {
        let out = output::create(dir)?;
        cmd.stdout(out.try_clone()?).stderr(out);
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    // Its own process group: a terminal's ^C to the agent does not reach dynos.
    cmd.process_group(0).kill_on_drop(false);
    Ok(())
}

/// Whether havend runs as root (containers, and unpacking images with their owners).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn bash_path() -> PathBuf {
    ["/bin/bash", "/usr/bin/bash"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| "bash".into())
}

/// The stack entries of `root` (the host's `/` or an unpacked stack image) that exist,
/// as dirs or symlinks.
fn stack_entries(root: &Path) -> Vec<(String, plan::HostEntry)> {
    plan::HOST_STACK
        .iter()
        .filter_map(|name| {
            let p = root.join(name);
            let meta = std::fs::symlink_metadata(&p).ok()?;
            let entry = if meta.file_type().is_symlink() {
                plan::HostEntry::Symlink(std::fs::read_link(&p).ok()?)
            } else if meta.is_dir() {
                plan::HostEntry::Dir
            } else {
                return None;
            };
            Some((name.to_string(), entry))
        })
        .collect()
}

#[derive(Debug)]
enum Kind {
    Container { cgroup: cgroup::DynoCgroup },
    Process,
}

#[derive(Debug)]
struct Shared {
    /// Container: the `dyno-init` outer process; Process: the bash process, which leads
    /// the dyno's process group.
    pid: i32,
    kind: Kind,
    dir: PathBuf,
    /// Set once the process is reaped: its pid may be reused, so no more signals to it.
    exited: AtomicBool,
    /// Its output goes to `dir/output.log` ([`DynoProcess::output`]).
    output: bool,
}

/// How the end of a dyno's process is seen.
#[derive(Debug)]
enum Waiter {
    /// Started by this agent: `wait(2)` gives the status.
    Child(Child),
    /// Adopted from a previous agent: its pidfd turns readable at exit; the status is
    /// in the exit-status file (container mode), else unknown.
    Adopted(AsyncFd<OwnedFd>),
}

/// A running dyno. Owns its pipes; signal it from other tasks through [`DynoHandle`].
#[derive(Debug)]
pub struct DynoProcess {
    waiter: Waiter,
    handle: DynoHandle,
    exit: Option<ExitInfo>,
}

/// Signals, usage and cleanup of a dyno, cloneable and usable while another task awaits
/// [`DynoProcess::wait`].
#[derive(Debug, Clone)]
pub struct DynoHandle {
    shared: Arc<Shared>,
}

impl DynoProcess {
    fn new(child: Child, dir: PathBuf, kind: Kind, output: bool) -> DynoProcess {
        let pid = child.id().map(|p| p as i32).unwrap_or(0);
        DynoProcess {
            waiter: Waiter::Child(child),
            handle: DynoHandle {
                shared: Arc::new(Shared {
                    pid,
                    kind,
                    dir,
                    exited: AtomicBool::new(false),
                    output,
                }),
            },
            exit: None,
        }
    }

    /// Follows the output file of a dyno that outlives the agent (from where the last
    /// follower stopped); `None` for a dyno with pipes.
    pub fn output(&self) -> Option<OutputTail> {
        let s = &self.handle.shared;
        if !s.output {
            return None;
        }
        match OutputTail::open(&s.dir, self.handle.clone()) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(dir = %s.dir.display(), error = %e, "cannot follow a dyno's output");
                None
            }
        }
    }

    /// Host pid of the dyno's init: the `dyno-init` process (container; PID 1 of the
    /// dyno is its only child) or the bash process (Process mode).
    pub fn pid(&self) -> i32 {
        self.handle.shared.pid
    }

    pub fn handle(&self) -> DynoHandle {
        self.handle.clone()
    }

    fn child(&mut self) -> Option<&mut Child> {
        match &mut self.waiter {
            Waiter::Child(c) => Some(c),
            Waiter::Adopted(_) => None,
        }
    }

    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child()?.stdout.take()
    }

    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child()?.stderr.take()
    }

    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child()?.stdin.take()
    }

    /// Waits for the dyno's main process to end (cancel-safe). By then every process of a
    /// container dyno is gone; in Process mode the rest of the process group is killed.
    pub async fn wait(&mut self) -> ExitInfo {
        if let Some(e) = self.exit {
            return e;
        }
        let (code, signal) = match &mut self.waiter {
            Waiter::Child(child) => match child.wait().await {
                Ok(s) => (s.code(), s.signal()),
                Err(e) => {
                    tracing::warn!(error = %e, "waiting for a dyno failed");
                    (None, None)
                }
            },
            Waiter::Adopted(pidfd) => {
                // Readable once the process has exited; an error means the same.
                let _ = pidfd.readable().await;
                let status = std::fs::read_to_string(self.handle.shared.dir.join(EXIT_STATUS_FILE))
                    .ok()
                    .and_then(|s| haven_init::Status::decode(&s));
                match status {
                    Some(haven_init::Status::Exit(c)) => (Some(c), None),
                    Some(haven_init::Status::Signal(s)) => (None, Some(s)),
                    None => (None, None),
                }
            }
        };
        let shared = &self.handle.shared;
        shared.exited.store(true, Ordering::SeqCst);
        let oom_killed = match &shared.kind {
            Kind::Container { cgroup } => match cgroup.oom_kills() {
                Some(n) => n > 0,
                None => signal == Some(9) && cgroup.failcnt().unwrap_or(0) > 0,
            },
            Kind::Process => {
                // The main process is done: so is the dyno.
                let _ = killpg(Pid::from_raw(shared.pid), Signal::SIGKILL);
                false
            }
        };
        let e = ExitInfo {
            code,
            signal,
            oom_killed,
        };
        self.exit = Some(e);
        e
    }

    pub fn terminate(&self) {
        self.handle.terminate()
    }

    pub fn kill(&self) {
        self.handle.kill()
    }

    pub fn memory_usage_bytes(&self) -> Option<u64> {
        self.handle.memory_usage_bytes()
    }

    pub fn cleanup(&self) {
        self.handle.cleanup()
    }
}

impl DynoHandle {
    /// Whether [`DynoProcess::wait`] has seen the process end.
    pub fn has_exited(&self) -> bool {
        self.shared.exited.load(Ordering::SeqCst)
    }

    /// SIGTERM to every process of the dyno. Container: to `dyno-init`, which forwards it
    /// to PID 1, which sends it to every process of the namespace; Process: to the group.
    pub fn terminate(&self) {
        self.signal(Signal::SIGTERM);
    }

    /// SIGKILL to every process of the dyno (the whole cgroup in container mode).
    pub fn kill(&self) {
        if let Kind::Container { cgroup } = &self.shared.kind {
            cgroup.kill_all();
        }
        self.signal(Signal::SIGKILL);
    }

    fn signal(&self, sig: Signal) {
        let s = &self.shared;
        if s.exited.load(Ordering::SeqCst) || s.pid <= 0 {
            return;
        }
        let pid = Pid::from_raw(s.pid);
        let _ = match s.kind {
            Kind::Container { .. } => kill(pid, sig),
            Kind::Process => killpg(pid, sig),
        };
    }

    /// Bytes the dyno has written to its ephemeral filesystem: the blocks allocated under
    /// `/app`'s upper dir and `/tmp` (container mode only; Process mode has no quota).
    /// Walks both trees: call it from a blocking thread.
    pub fn disk_usage_bytes(&self) -> Option<u64> {
        match &self.shared.kind {
            Kind::Container { .. } => {
                let dirs = plan::DynoDirs {
                    root: self.shared.dir.clone(),
                };
                Some(
                    dirs.writable()
                        .iter()
                        .map(|d| files::allocated_bytes(d))
                        .sum(),
                )
            }
            Kind::Process => None,
        }
    }

    /// Current memory use of the dyno's cgroup (container mode only).
    pub fn memory_usage_bytes(&self) -> Option<u64> {
        match &self.shared.kind {
            Kind::Container { cgroup } => cgroup.memory_usage(),
            Kind::Process => None,
        }
    }

    /// After exit: removes the cgroup and the per-dyno dir (overlay upper dir, slug copy).
    /// The mounts die with the dyno's mount namespace. Kills the dyno first if it still
    /// runs. Idempotent; never touches the slug dir (a spec whose slug overlaps the dyno
    /// dir is refused at spawn).
    pub fn cleanup(&self) {
        let s = &self.shared;
        if !s.exited.load(Ordering::SeqCst) {
            self.kill();
        }
        if let Kind::Container { cgroup } = &s.kind {
            cgroup.remove();
        }
        remove_tree(&s.dir);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn runtime_the_init_is_haven_init_beside_the_agent_else_havend_dyno_init() {
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("havend");
        std::fs::write(&agent, "").unwrap();
        let alone = InitExe::find(&agent);
        assert_eq!(alone, InitExe::agent(agent.clone()));
        let c = alone.command(&["--probe-net"]);
        assert_eq!(c.get_program(), agent.as_os_str());
        let args: Vec<_> = c.get_args().collect();
        assert_eq!(args, ["dyno-init", "--probe-net"]);

        std::fs::write(dir.path().join(InitExe::NAME), "").unwrap();
        let small = InitExe::find(&agent);
        let c = small.command(&["--spec"]);
        assert_eq!(c.get_program(), dir.path().join("haven-init").as_os_str());
        let args: Vec<_> = c.get_args().collect();
        assert_eq!(args, ["--spec"]);
        assert!(!small.display().contains("dyno-init"));
    }
}
