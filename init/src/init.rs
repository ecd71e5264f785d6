//! The container's init, run by the runtime as a fresh (so single-threaded) process:
//! `haven-init --spec FILE`, or `havend dyno-init --spec FILE` where no `haven-init`
//! sits next to `havend`.
//!
//! The outer process joins the dyno's cgroups, unshares the mount, UTS, IPC and PID
//! namespaces and forks. The child is PID 1 of the new PID namespace: it builds the root
//! from the mount plan, `pivot_root`s into it, sets the hostname, forks the main process
//! (which drops to the dyno uid with `no_new_privs` and execs bash), then reaps zombies and
//! forwards signals until the main process exits; it exits with it, which makes the kernel
//! kill whatever else is left in the namespace. With a [`crate::DynoNet`] in the spec,
//! the outer process also unshares the network namespace, and plumbs it (veth to the
//! node's bridge, address, routes; [`crate::net`]) after the fork while PID 1 builds the
//! root; PID 1 starts the command only once the network is ready. The outer process
//! forwards signals to PID 1, and relays the main process's status as its own (exit
//! code, or the same signal), so the runtime's `wait` sees the command's status.
//!
//! A standby init ([`standby`], `--standby`) is started by the runtime before its dyno
//! is known: it has exec'd, and made its network namespace and veth pair, by the time
//! the spec's path comes on its stdin, so a dyno start skips both.

use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::prctl;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{
    chdir, execve, fork, getpid, getppid, pipe2, pivot_root, setgid, setgroups, sethostname,
    setsid, setuid, ForkResult, Gid, Pid, Uid,
};

use crate::spec::{parse_mountinfo, InitSpec, MountStep};

/// Exit code of the init when the container could not be set up (as `docker run`).
pub const SETUP_FAILED: i32 = 125;
/// Exit code when the command could not be executed.
const EXEC_FAILED: i32 = 127;

const NAMESPACES: CloneFlags = CloneFlags::CLONE_NEWNS
    .union(CloneFlags::CLONE_NEWUTS)
    .union(CloneFlags::CLONE_NEWIPC)
    .union(CloneFlags::CLONE_NEWPID);

/// The signals init and the outer process take synchronously (blocked, then `sigwait`).
fn handled_signals() -> SigSet {
    let mut s = SigSet::empty();
    for sig in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ] {
        s.add(sig);
    }
    s
}

/// `fork` is only sound here because this process has one thread; check it.
fn ensure_single_threaded() -> Result<()> {
    let n = fs::read_dir("/proc/self/task")
        .context("read /proc/self/task")?
        .count();
    if n != 1 {
        bail!("the dyno init must be single-threaded, found {n} threads");
    }
    Ok(())
}

/// `haven-init --spec FILE`. Returns an exit code only on failure or on the relayed
/// status; may also end the process with the relayed signal.
pub fn run(spec_path: &Path) -> i32 {
    match outer(spec_path, None) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("haven-init: {e:#}");
            SETUP_FAILED
        }
    }
}

/// Closes every inherited descriptor but stdin, stdout and stderr: whatever the agent
/// inherited without close-on-exec must not reach the dyno.
fn close_inherited_fds() {
    let fds: Vec<i32> = fs::read_dir("/proc/self/fd")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in fds.into_iter().filter(|fd| *fd > 2) {
        // The directory's own descriptor is already closed: EBADF, ignored.
        let _ = nix::unistd::close(fd);
    }
}

/// `haven-init --standby [--bridge NAME]`: an init started before its dyno is known, so
/// that a dyno start skips this binary's exec and (with a bridge) the creation of its
/// network namespace and veth pair: it does both now, then waits for one line on stdin,
/// the path of the spec, and goes on as `--spec PATH` would. EOF instead: it exits.
/// Until then it dies with the agent (parent-death signal). Its errors before the spec
/// go to the agent's stderr.
pub fn standby(bridge: Option<&str>) -> i32 {
    let r = (|| -> Result<i32> {
        close_inherited_fds();
        prctl::set_pdeathsig(Signal::SIGKILL).context("set the parent-death signal")?;
        let net = match bridge {
            Some(bridge) => {
                let host = crate::net::HostSide::open_bridge(bridge).context("open netlink")?;
                ensure_single_threaded()?;
                unshare(CloneFlags::CLONE_NEWNET).context("unshare the network namespace")?;
                crate::net::disable_ipv6();
                // Named after this process: unique while it (later the dyno) lives.
                let veth = format!("hs{}", std::process::id());
                crate::net::add_veth(&veth, host).context("create the veth pair")?;
                true
            }
            None => false,
        };
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("read the spec path")?;
        let path = line.trim_end_matches('\n');
        if path.is_empty() {
            return Ok(0);
        }
        outer(Path::new(path), Some(Standby { net }))
    })();
    r.unwrap_or_else(|e| {
        eprintln!("haven-init: {e:#}");
        SETUP_FAILED
    })
}

/// What a standby init prepared before its spec came.
#[derive(Debug, Clone, Copy)]
struct Standby {
    /// In a network namespace of its own, with `eth0` the peer of a veth on the bridge.
    net: bool,
}

/// A standby's stdio becomes the dyno's: `/dev/null` in, the spec's output file out.
fn take_output(spec: &InitSpec) -> Result<()> {
    let out = spec
        .output
        .as_ref()
        .ok_or_else(|| anyhow!("a standby init needs the spec's output file"))?;
    let f = fs::OpenOptions::new()
        .append(true)
        .open(out)
        .with_context(|| format!("open {}", out.display()))?;
    let null = fs::File::open("/dev/null").context("open /dev/null")?;
    nix::unistd::dup2(null.as_raw_fd(), 0).context("dup2 stdin")?;
    nix::unistd::dup2(f.as_raw_fd(), 1).context("dup2 stdout")?;
    nix::unistd::dup2(f.as_raw_fd(), 2).context("dup2 stderr")?;
    Ok(())
}

fn outer(spec_path: &Path, standby: Option<Standby>) -> Result<i32> {
    if standby.is_none() {
        close_inherited_fds();
    }
    let bytes = fs::read(spec_path).with_context(|| format!("read {}", spec_path.display()))?;
    // The spec holds the environment (config vars): gone from disk as soon as read.
    let _ = fs::remove_file(spec_path);
    let spec: InitSpec = serde_json::from_slice(&bytes).context("parse the dyno spec")?;
    if standby.is_some() {
        take_output(&spec)?;
    }
    if spec.exit_status_file.is_none() {
        // The dyno dies with the agent (as a plain child would with its process group).
        prctl::set_pdeathsig(Signal::SIGKILL).context("set the parent-death signal")?;
        if getppid().as_raw() != spec.parent_pid {
            bail!("the agent exited before the dyno started");
        }
    } else if standby.is_some() {
        // It outlives the agent from now on.
        prctl::set_pdeathsig(None).context("clear the parent-death signal")?;
    }
    let net_ready = standby.is_some_and(|s| s.net);
    if net_ready != (standby.is_some() && spec.net.is_some()) {
        bail!("a standby init's network does not match the spec's");
    }
    let me = std::process::id().to_string();
    for procs in &spec.cgroup_procs {
        fs::write(procs, &me).with_context(|| format!("join cgroup {}", procs.display()))?;
    }
    // Neither this process nor PID 1 should be the OOM killer's pick; the main process
    // resets its own score.
    let _ = fs::write("/proc/self/oom_score_adj", "-1000");
    // The host end of the dyno's network is reached through a socket opened here, in
    // the host's network namespace, before leaving it (a standby has done all that).
    let host_net = match &spec.net {
        Some(net) if !net_ready => Some(crate::net::HostSide::open(net).context("open netlink")?),
        _ => None,
    };
    ensure_single_threaded()?;
    if host_net.is_some() {
        unshare(NAMESPACES | CloneFlags::CLONE_NEWNET)
            .context("unshare the mount, UTS, IPC, PID and network namespaces")?;
        crate::net::disable_ipv6();
    } else {
        unshare(NAMESPACES).context("unshare the mount, UTS, IPC and PID namespaces")?;
    }
    let (status_r, status_w) =
        pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).context("create the status pipe")?;
    // PID 1 builds the root while this process plumbs the network (both are in the new
    // network namespace): PID 1 waits for one byte on this pipe before it starts the
    // command, and exits if the pipe closes without it.
    let (net_r, net_w) = match &spec.net {
        Some(_) => {
            let (r, w) = pipe2(OFlag::O_CLOEXEC).context("create the network pipe")?;
            (Some(r), Some(w))
        }
        None => (None, None),
    };
    // Opened now: PID 1's `pivot_root` moves this process's root too (it shares the
    // mount namespace), after which the dyno dir is out of reach by path.
    let exit_status = spec
        .exit_status_file
        .as_ref()
        .and_then(|path| fs::File::create(path).ok());
    let signals = handled_signals();
    signals.thread_block().context("block signals")?;
    // SAFETY: this process is single-threaded (checked above), so the child may allocate
    // and run arbitrary code after the fork.
    match unsafe { fork() }.context("fork the container init")? {
        ForkResult::Child => {
            drop(status_r);
            drop(net_w);
            drop(exit_status);
            let code = match container_init(&spec, &status_w, net_r, &signals) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("haven-init: {e:#}");
                    SETUP_FAILED
                }
            };
            std::process::exit(code)
        }
        ForkResult::Parent { child } => {
            drop(status_w);
            drop(net_r);
            if let (Some(net), Some(ready)) = (&spec.net, net_w) {
                let plumbed = match host_net {
                    Some(host) => crate::net::join(net, host),
                    None => crate::net::configure(net),
                };
                if let Err(e) = plumbed {
                    // PID 1 sees the pipe close without its byte and exits; so does
                    // everything in its namespace.
                    drop(ready);
                    let _ = waitpid(child, None);
                    return Err(anyhow!(e).context("set up the dyno's network"));
                }
                // PID 1 may already be gone (its setup failed): `relay` reports that.
                let _ = nix::unistd::write(&ready, b"1");
            }
            let status = relay(child, status_r, &signals)?;
            if let Some(mut f) = exit_status {
                // Read by an agent that adopted this dyno (the dyno dir may be gone).
                let _ = std::io::Write::write_all(&mut f, status.encode().as_bytes());
            }
            Ok(finish(status))
        }
    }
}

/// How the main process ended, as PID 1 reports it to the outer process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Exit(i32),
    Signal(i32),
}

impl Status {
    pub fn encode(self) -> String {
        match self {
            Status::Exit(c) => format!("exit {c}\n"),
            Status::Signal(s) => format!("signal {s}\n"),
        }
    }
    pub fn decode(s: &str) -> Option<Status> {
        let (kind, n) = s.trim().split_once(' ')?;
        let n = n.parse().ok()?;
        match kind {
            "exit" => Some(Status::Exit(n)),
            "signal" => Some(Status::Signal(n)),
            _ => None,
        }
    }
}

/// The outer process: forward signals to PID 1 until it exits; returns how the main
/// process ended (the outer process then ends the same way).
fn relay(init: Pid, status_r: OwnedFd, signals: &SigSet) -> Result<Status> {
    loop {
        let sig = signals.wait().context("wait for signals")?;
        if sig != Signal::SIGCHLD {
            let _ = kill(init, sig);
            continue;
        }
        let fallback = match waitpid(init, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => Status::Exit(code),
            Ok(WaitStatus::Signaled(_, s, _)) => Status::Signal(s as i32),
            _ => continue,
        };
        let mut buf = String::new();
        let _ = fs::File::from(status_r).read_to_string(&mut buf);
        return Ok(Status::decode(&buf).unwrap_or(fallback));
    }
}

/// Ends as `status` says: returns the exit code, or raises the signal on this process.
fn finish(status: Status) -> i32 {
    match status {
        Status::Exit(c) => c,
        Status::Signal(s) => {
            if let Ok(sig) = Signal::try_from(s) {
                let mut set = SigSet::empty();
                set.add(sig);
                let _ = set.thread_unblock();
                let _ = kill(getpid(), sig);
            }
            // Still here: the signal is ignored in this process (SIGPIPE); shell convention.
            128 + s
        }
    }
}

/// PID 1 of the dyno's namespaces. With `net_ready`, the outer process is plumbing the
/// network meanwhile: the command starts only once it has.
fn container_init(
    spec: &InitSpec,
    status_w: &OwnedFd,
    net_ready: Option<OwnedFd>,
    signals: &SigSet,
) -> Result<i32> {
    // If the outer process dies, so does the dyno (and with PID 1, its whole namespace).
    prctl::set_pdeathsig(Signal::SIGKILL).context("set the parent-death signal")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("make all mounts private")?;
    for step in &spec.steps {
        apply(step).with_context(|| format!("mount step {step:?}"))?;
    }
    enter_root(&spec.rootfs)?;
    sethostname(&spec.hostname).context("set the hostname")?;

    let cstr = |s: &[u8]| CString::new(s).map_err(|_| anyhow!("NUL byte in the spec"));
    let program = cstr(spec.program.as_os_str().as_bytes())?;
    let argv = spec
        .args
        .iter()
        .map(|a| cstr(a.as_bytes()))
        .collect::<Result<Vec<_>>>()?;
    let envp = spec
        .env
        .iter()
        .map(|(k, v)| cstr(format!("{k}={v}").as_bytes()))
        .collect::<Result<Vec<_>>>()?;

    if let Some(ready) = net_ready {
        let mut byte = [0u8; 1];
        if !matches!(nix::unistd::read(ready.as_raw_fd(), &mut byte), Ok(1)) {
            // The outer process says why.
            std::process::exit(SETUP_FAILED);
        }
    }
    // SAFETY: this process is single-threaded (a fork of the single-threaded outer process).
    let main = match unsafe { fork() }.context("fork the main process")? {
        ForkResult::Child => {
            let e = exec_main(spec, &program, &argv, &envp);
            eprintln!("haven-init: cannot run the command: {e:#}");
            std::process::exit(EXEC_FAILED)
        }
        ForkResult::Parent { child } => child,
    };
    Ok(supervise(main, status_w, signals))
}

/// The main process: drop privileges and exec. Returns only on failure.
fn exec_main(
    spec: &InitSpec,
    program: &CString,
    argv: &[CString],
    envp: &[CString],
) -> anyhow::Error {
    let r: Result<()> = (|| {
        SigSet::empty()
            .thread_set_mask()
            .context("reset the signal mask")?;
        setsid().context("setsid")?;
        let _ = fs::write("/proc/self/oom_score_adj", "0");
        // The stdio pipes belong to the agent (root): hand them to the dyno user so that
        // programs that reopen /dev/stdout or /dev/stderr by path (nginx, many loggers)
        // may. Only pipes, and the dyno's own output file: /dev/null or a terminal is a
        // host device, and a file `havend dyno-run` was redirected to is the caller's.
        let own_files = spec.exit_status_file.is_some();
        for fd in 0..=2 {
            let ours = nix::sys::stat::fstat(fd).is_ok_and(|st| {
                use nix::sys::stat::SFlag;
                let kind = st.st_mode & SFlag::S_IFMT.bits();
                kind == SFlag::S_IFIFO.bits() || (own_files && kind == SFlag::S_IFREG.bits())
            });
            if ours {
                let _ = nix::unistd::fchown(
                    fd,
                    Some(Uid::from_raw(spec.uid)),
                    Some(Gid::from_raw(spec.gid)),
                );
            }
        }
        setgroups(&[]).context("setgroups")?;
        setgid(Gid::from_raw(spec.gid)).context("setgid")?;
        setuid(Uid::from_raw(spec.uid)).context("setuid")?;
        prctl::set_no_new_privs().context("set no_new_privs")?;
        chdir(&spec.workdir).with_context(|| format!("chdir {}", spec.workdir.display()))?;
        execve(program, argv, envp).with_context(|| format!("exec {program:?}"))?;
        Ok(())
    })();
    match r {
        Err(e) => e,
        Ok(()) => anyhow!("execve returned"),
    }
}

/// PID 1's loop: reap every child; SIGTERM goes to every process of the namespace
/// (`kill(-1)` from PID 1 reaches all of them but itself), other signals to the main
/// process. Returns the exit code once the main process is gone.
fn supervise(main: Pid, status_w: &OwnedFd, signals: &SigSet) -> i32 {
    loop {
        let Ok(sig) = signals.wait() else { continue };
        match sig {
            Signal::SIGCHLD => loop {
                let status = match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(pid, code)) if pid == main => Status::Exit(code),
                    Ok(WaitStatus::Signaled(pid, s, _)) if pid == main => Status::Signal(s as i32),
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => continue,
                };
                let _ = nix::unistd::write(status_w, status.encode().as_bytes());
                return match status {
                    Status::Exit(c) => c,
                    Status::Signal(s) => 128 + s,
                };
            },
            Signal::SIGTERM => {
                let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
            }
            other => {
                let _ = kill(main, other);
            }
        }
    }
}

fn mkdir_all(p: &Path) -> Result<()> {
    fs::create_dir_all(p).with_context(|| format!("create {}", p.display()))
}

fn apply(step: &MountStep) -> Result<()> {
    let none = None::<&str>;
    match step {
        MountStep::Tmpfs {
            target,
            options,
            dev,
        } => {
            mkdir_all(target)?;
            let mut flags = MsFlags::MS_NOSUID;
            if !dev {
                flags |= MsFlags::MS_NODEV;
            }
            mount(
                Some("tmpfs"),
                target,
                Some("tmpfs"),
                flags,
                Some(options.as_str()),
            )?;
        }
        MountStep::Bind {
            source,
            target,
            readonly,
        } => {
            let meta =
                fs::metadata(source).with_context(|| format!("stat {}", source.display()))?;
            if meta.is_dir() {
                mkdir_all(target)?;
            } else {
                if let Some(parent) = target.parent() {
                    mkdir_all(parent)?;
                }
                if !target.exists() {
                    fs::File::create(target)
                        .with_context(|| format!("create {}", target.display()))?;
                }
            }
            mount(
                Some(source.as_path()),
                target,
                none,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                none,
            )?;
            if *readonly {
                remount_readonly(target)?;
            }
        }
        MountStep::Overlay {
            lower,
            upper,
            work,
            target,
        } => {
            mkdir_all(target)?;
            let data = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                upper.display(),
                work.display()
            );
            mount(
                Some("overlay"),
                target,
                Some("overlay"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(data.as_str()),
            )?;
        }
        MountStep::Proc { target } => {
            mkdir_all(target)?;
            mount(
                Some("proc"),
                target,
                Some("proc"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                none,
            )?;
        }
        MountStep::Devpts { target } => {
            mkdir_all(target)?;
            // Optional: without it, only pseudo-terminals are missing.
            let _ = mount(
                Some("devpts"),
                target,
                Some("devpts"),
                MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                Some("newinstance,ptmxmode=0666,mode=0620"),
            );
        }
        MountStep::Symlink { link, path } => {
            if let Some(parent) = path.parent() {
                mkdir_all(parent)?;
            }
            std::os::unix::fs::symlink(link, path)
                .with_context(|| format!("symlink {} -> {}", path.display(), link.display()))?;
        }
    }
    Ok(())
}

/// Makes the bind at `target` and every mount below it read-only, nosuid and nodev
/// (keeping their other flags, noexec included): one `mount_setattr(2)` (Linux 5.12+),
/// else a remount of each mount found in mountinfo.
fn remount_readonly(target: &Path) -> Result<()> {
    if set_readonly_recursive(target).is_ok() {
        return Ok(());
    }
    remount_readonly_each(target)
}

/// `mount_setattr(target, AT_RECURSIVE, +rdonly +nosuid +nodev)`.
fn set_readonly_recursive(target: &Path) -> nix::Result<()> {
    /// `struct mount_attr` of `<linux/mount.h>`.
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    let path = CString::new(target.as_os_str().as_bytes()).map_err(|_| nix::Error::EINVAL)?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a NUL-terminated path and a `mount_attr` of the size passed, both alive for
    // the call; the kernel only reads them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    nix::Error::result(r).map(drop)
}

/// [`remount_readonly`] without `mount_setattr`: each mount at or below `target`,
/// remounted read-only, nosuid, nodev (keeping noexec where it was set).
fn remount_readonly_each(target: &Path) -> Result<()> {
    let info = fs::read_to_string("/proc/self/mountinfo").context("read mountinfo")?;
    for m in parse_mountinfo(&info) {
        if !m.mount_point.starts_with(target) {
            continue;
        }
        let mut flags = MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV;
        if m.options.iter().any(|o| o == "noexec") {
            flags |= MsFlags::MS_NOEXEC;
        }
        mount(
            None::<&str>,
            &m.mount_point,
            None::<&str>,
            flags,
            None::<&str>,
        )
        .with_context(|| format!("remount {} read-only", m.mount_point.display()))?;
    }
    Ok(())
}

/// `pivot_root` into `rootfs` (stacking the old root under the new one, then detaching
/// it), and make the new root itself read-only.
fn enter_root(rootfs: &Path) -> Result<()> {
    chdir(rootfs).with_context(|| format!("chdir {}", rootfs.display()))?;
    pivot_root(".", ".").context("pivot_root")?;
    umount2(".", MntFlags::MNT_DETACH).context("detach the old root")?;
    chdir("/").context("chdir /")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .context("make the root read-only")?;
    Ok(())
}

/// `haven-init --probe DIR`: can this host run container dynos? Tries, in a child,
/// the namespaces, private mounts, an overlay with its upper dir in `DIR` (the state
/// dir's filesystem), a fresh procfs, the hostname and `pivot_root`. Exit 0 if all work.
pub fn probe(dir: &Path) -> i32 {
    let r: Result<i32> = (|| {
        ensure_single_threaded()?;
        unshare(NAMESPACES).context("unshare the mount, UTS, IPC and PID namespaces")?;
        // SAFETY: single-threaded (checked above).
        match unsafe { fork() }.context("fork")? {
            ForkResult::Child => {
                let code = match probe_child(dir) {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("{e:#}");
                        1
                    }
                };
                std::process::exit(code)
            }
            ForkResult::Parent { child } => Ok(match waitpid(child, None)? {
                WaitStatus::Exited(_, c) => c,
                other => {
                    eprintln!("probe child ended with {other:?}");
                    1
                }
            }),
        }
    })();
    r.unwrap_or_else(|e| {
        eprintln!("{e:#}");
        1
    })
}

fn probe_child(dir: &Path) -> Result<()> {
    if std::process::id() != 1 {
        bail!("not PID 1 in the new PID namespace");
    }
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("make all mounts private")?;
    let root = dir.join("root");
    for d in ["lower", "upper", "work"] {
        mkdir_all(&dir.join(d))?;
    }
    fs::write(dir.join("lower/probe"), "ok").context("write the probe file")?;
    apply(&MountStep::Tmpfs {
        target: root.clone(),
        options: "mode=0755,size=64k".into(),
        dev: false,
    })
    .context("mount a tmpfs")?;
    apply(&MountStep::Overlay {
        lower: dir.join("lower"),
        upper: dir.join("upper"),
        work: dir.join("work"),
        target: root.join("app"),
    })
    .context("mount an overlay (is the state dir on a filesystem overlayfs accepts as upper?)")?;
    fs::write(root.join("app/probe"), "written").context("write through the overlay")?;
    apply(&MountStep::Proc {
        target: root.join("proc"),
    })
    .context("mount procfs")?;
    sethostname("probe").context("set the hostname")?;
    enter_root(&root)?;
    if fs::read_to_string("/app/probe").ok().as_deref() != Some("written") {
        bail!("the overlay does not read back");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_status_round_trips() {
        for s in [Status::Exit(0), Status::Exit(42), Status::Signal(9)] {
            assert_eq!(Status::decode(&s.encode()), Some(s));
        }
        assert_eq!(Status::decode(""), None);
        assert_eq!(Status::decode("exit x"), None);
        assert_eq!(Status::decode("crash 1"), None);
    }
}
