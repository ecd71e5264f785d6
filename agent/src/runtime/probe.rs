//! Whether this host can run containers, probed once when the agent starts: root, the
//! cgroup hierarchies (mounted in the state dir when the agent's `/sys` hides them), and a
//! trial `haven-init --probe` of the namespaces.

use std::path::Path;
use std::process::Stdio;

use super::cgroup;
use super::files::{create_private_dir, remove_tree};
use super::InitExe;

/// Mounts the v1 memory, pids, cpu and cpuacct hierarchies under `base` on a v1 or hybrid
/// host, or else (a v2 host) the cgroup2 hierarchy.
fn mount_cgroups(base: &Path) -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    let try_mount = |fstype: &str, options: Option<&str>, dir: &Path| -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        mount(
            Some("cgroup"),
            dir,
            Some(fstype),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            options,
        )
        .map_err(|e| format!("mount {fstype} at {}: {e}", dir.display()))
    };
    // The host's own choice, from /proc/self/cgroup (which no /sys hides): a v1 memory
    // line means a hybrid or v1 host. On a v2 host the memory controller could still be
    // mounted as v1 while no v2 cgroup uses it — and would then be taken from v2 for
    // every process of the host — so there only cgroup2 is mounted.
    let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let v1_host = cgroup::parse_proc_cgroup(&proc_cgroup)
        .iter()
        .any(|l| l.controllers.iter().any(|c| c == "memory"));
    if v1_host && try_mount("cgroup", Some("memory"), &base.join("memory")).is_ok() {
        let _ = try_mount("cgroup", Some("pids"), &base.join("pids"));
        // CPU shares and usage: `cpu` and `cpuacct` as the host mounts them, apart or
        // together (a v1 hierarchy mounts again only with its own set of controllers).
        if try_mount("cgroup", Some("cpu"), &base.join("cpu")).is_ok() {
            let _ = try_mount("cgroup", Some("cpuacct"), &base.join("cpuacct"));
        } else {
            let _ = std::fs::remove_dir(base.join("cpu"));
            let _ = try_mount("cgroup", Some("cpu,cpuacct"), &base.join("cpu,cpuacct"));
        }
        return Ok(());
    }
    try_mount("cgroup2", None, &base.join("unified"))
}

/// Where [`favor_cgroup_moves`] mounts its hierarchy.
const FAVOR_MOUNT: &str = "/run/haven/cgroup-favor";

/// Moving a process into a cgroup (each dyno's init joins its own) waits for an RCU grace
/// period — about 10 ms, most of a dyno's start — unless some hierarchy is mounted with
/// `favordynmods` (Linux 6.0+), which switches the kernel's one cgroup-migration lock to
/// favour moves over forks, host-wide, while that hierarchy exists. An empty named
/// hierarchy does it without touching the host's own mounts. Best effort: on an older
/// kernel dynos only start slower. One mount per host (per mount namespace), shared by
/// every agent on it, outside any data dir so that removing one never meets it.
fn favor_cgroup_moves(at: &Path) {
    use nix::mount::{mount, MsFlags};
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let target = at.to_string_lossy();
    if mounts
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(&*target))
    {
        return;
    }
    let made = std::fs::create_dir_all(at)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            mount(
                Some("cgroup"),
                at,
                Some("cgroup"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("none,name=haven-favordynmods,favordynmods"),
            )
            .map_err(|e| e.to_string())
        });
    match made {
        Ok(()) => tracing::debug!(at = %at.display(), "cgroup moves favoured"),
        Err(e) => {
            tracing::info!(error = %e, "cannot favour cgroup moves: dynos start about 10 ms slower")
        }
    }
}

pub(super) fn probe_container(state_dir: &Path, init: &InitExe) -> Result<cgroup::Layout, String> {
    let euid = nix::unistd::geteuid();
    if !euid.is_root() {
        return Err(format!("havend is not running as root (euid {euid})"));
    }
    create_private_dir(state_dir, true)
        .map_err(|e| format!("create the state dir {}: {e}", state_dir.display()))?;
    let locate = || -> Result<cgroup::Own, String> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("read /proc/self/mountinfo: {e}"))?;
        let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("read /proc/self/cgroup: {e}"))?;
        cgroup::locate(&mountinfo, &proc_cgroup)
    };
    let own = match locate() {
        Ok(own) => own,
        Err(why) => {
            // E.g. under `ip netns exec`, whose fresh /sys hides the cgroup mounts:
            // mount the hierarchies ourselves, in the state dir.
            let at = state_dir.join(".cgroup");
            mount_cgroups(&at).map_err(|e| format!("{why}; mounting them failed: {e}"))?;
            tracing::info!(at = %at.display(), "mounted the cgroup hierarchies");
            locate()?
        }
    };
    let layout = cgroup::setup(&own).map_err(|e| format!("cgroups: {e}"))?;
    favor_cgroup_moves(Path::new(FAVOR_MOUNT));
    let stale = layout.remove_stale(std::time::Duration::from_secs(60));
    if stale > 0 {
        tracing::info!(count = stale, "removed the empty cgroups of dead dynos");
    }
    let dir = state_dir.join(format!(".probe-{}", std::process::id()));
    remove_tree(&dir);
    let out = init
        .command(&["--probe"])
        .arg(&dir)
        .env_clear()
        .stdin(Stdio::null())
        .output();
    remove_tree(&dir);
    let out = out.map_err(|e| format!("run {} --probe: {e}", init.display()))?;
    if !out.status.success() {
        return Err(format!(
            "namespace probe failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(layout)
}
