//! Dyno cgroups: where they go (v2 unified, or v1/hybrid with the memory and pids
//! controllers), creating them with limits, usage and OOM counters, killing and removing.
//!
//! v1 and hybrid hosts: `<memory mount>/<our memory cgroup>/haven/<id>` and the same under
//! the pids hierarchy. v2 hosts: `<our cgroup>/haven/<id>`, after enabling `+memory +pids`
//! in our cgroup's `subtree_control`; when our cgroup holds processes (the
//! no-internal-processes rule refuses that), they move to a leaf `<our cgroup>/agent`
//! first, as Docker-in-Docker entrypoints do.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::plan::parse_mountinfo;

/// One line of `/proc/self/cgroup`: hierarchy id, controllers, path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLine {
    pub hierarchy: String,
    pub controllers: Vec<String>,
    pub path: String,
}

pub fn parse_proc_cgroup(text: &str) -> Vec<CgroupLine> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let hierarchy = it.next()?.to_string();
            let controllers = it
                .next()?
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            let path = it.next()?.to_string();
            Some(CgroupLine {
                hierarchy,
                controllers,
                path,
            })
        })
        .collect()
}

/// Our own cgroups: what the `haven` subtree is created under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Own {
    V2 {
        dir: PathBuf,
    },
    V1 {
        memory: PathBuf,
        pids: Option<PathBuf>,
    },
}

/// `mount_point` + (`path` relative to the mount's `root`).
fn under(mount_point: &Path, mount_root: &str, path: &str) -> PathBuf {
    let rel = if mount_root == "/" {
        path
    } else {
        path.strip_prefix(mount_root).unwrap_or(path)
    };
    mount_point.join(rel.trim_start_matches('/'))
}

/// Finds our cgroups from `/proc/self/mountinfo` and `/proc/self/cgroup`. A v1 memory
/// controller wins (hybrid hosts keep their controllers there); else the cgroup2 mount.
pub fn locate(mountinfo: &str, proc_cgroup: &str) -> Result<Own, String> {
    let mounts = parse_mountinfo(mountinfo);
    let lines = parse_proc_cgroup(proc_cgroup);
    let v1 = |ctrl: &str| -> Option<PathBuf> {
        let m = mounts
            .iter()
            .find(|m| m.fstype == "cgroup" && m.super_options.iter().any(|o| o == ctrl))?;
        let l = lines
            .iter()
            .find(|l| l.controllers.iter().any(|c| c == ctrl))?;
        Some(under(&m.mount_point, &m.root, &l.path))
    };
    if let Some(memory) = v1("memory") {
        return Ok(Own::V1 {
            memory,
            pids: v1("pids"),
        });
    }
    let v2_mounts: Vec<_> = mounts.iter().filter(|m| m.fstype == "cgroup2").collect();
    let m = v2_mounts
        .iter()
        .find(|m| m.mount_point == Path::new("/sys/fs/cgroup"))
        .or_else(|| v2_mounts.first())
        .ok_or("no cgroup memory controller is mounted (neither v1 nor v2)")?;
    let l = lines
        .iter()
        .find(|l| l.hierarchy == "0" && l.controllers.is_empty())
        .ok_or("/proc/self/cgroup has no cgroup2 entry")?;
    Ok(Own::V2 {
        dir: under(&m.mount_point, &m.root, &l.path),
    })
}

/// Where dyno cgroups are made: the `haven` dirs, ready for children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    V2 {
        parent: PathBuf,
        pids: bool,
    },
    V1 {
        memory: PathBuf,
        pids: Option<PathBuf>,
    },
}

fn read(p: &Path) -> io::Result<String> {
    std::fs::read_to_string(p)
}

fn write(p: &Path, v: &str) -> Result<(), String> {
    std::fs::write(p, v).map_err(|e| format!("write {v:?} to {}: {e}", p.display()))
}

fn mkdir(p: &Path) -> Result<(), String> {
    match std::fs::create_dir(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("create cgroup {}: {e}", p.display())),
    }
}

/// Enables `controllers` for the children of the v2 cgroup `dir`.
fn enable(dir: &Path, controllers: &[&str]) -> Result<(), String> {
    let current = read(&dir.join("cgroup.subtree_control")).unwrap_or_default();
    for c in controllers {
        if !current.split_whitespace().any(|x| x == *c) {
            write(&dir.join("cgroup.subtree_control"), &format!("+{c}"))?;
        }
    }
    Ok(())
}

/// Creates the `haven` subtree under our cgroups (see the module docs).
pub fn setup(own: &Own) -> Result<Layout, String> {
    match own {
        Own::V1 { memory, pids } => {
            let memory = memory.join("haven");
            mkdir(&memory)?;
            let pids = match pids {
                Some(p) => {
                    let p = p.join("haven");
                    mkdir(&p)?;
                    Some(p)
                }
                None => None,
            };
            Ok(Layout::V1 { memory, pids })
        }
        Own::V2 { dir } => {
            let available = read(&dir.join("cgroup.controllers"))
                .map_err(|e| format!("read {}/cgroup.controllers: {e}", dir.display()))?;
            let has = |c: &str| available.split_whitespace().any(|x| x == c);
            if !has("memory") {
                return Err(format!(
                    "the memory controller is not available in {}",
                    dir.display()
                ));
            }
            let wanted: Vec<&str> = if has("pids") {
                vec!["memory", "pids"]
            } else {
                vec!["memory"]
            };
            if enable(dir, &wanted).is_err() {
                // No internal processes: move ours (the agent and whoever shares its
                // cgroup) to a leaf, then enable the controllers.
                let leaf = dir.join("agent");
                mkdir(&leaf)?;
                let procs = read(&dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.split_whitespace() {
                    let _ = std::fs::write(leaf.join("cgroup.procs"), pid);
                }
                enable(dir, &wanted)?;
            }
            let parent = dir.join("haven");
            mkdir(&parent)?;
            enable(&parent, &wanted)?;
            Ok(Layout::V2 {
                parent,
                pids: wanted.contains(&"pids"),
            })
        }
    }
}

impl Layout {
    /// The `haven` dirs that hold dyno cgroups.
    fn parents(&self) -> Vec<&Path> {
        match self {
            Layout::V2 { parent, .. } => vec![parent.as_path()],
            Layout::V1 { memory, pids } => {
                let mut v = vec![memory.as_path()];
                if let Some(p) = pids {
                    v.push(p);
                }
                v
            }
        }
    }

    /// Removes dyno cgroups left empty by agents that died (an agent's death kills its
    /// dynos, but leaves their cgroups). `rmdir` refuses cgroups that hold processes, and
    /// ones younger than `min_age` are spared: another agent sharing the parent may have
    /// just made one for a dyno that has not joined it yet. Returns how many went.
    pub fn remove_stale(&self, min_age: Duration) -> usize {
        let mut removed = 0;
        for parent in self.parents() {
            let Ok(entries) = std::fs::read_dir(parent) else {
                continue;
            };
            for e in entries.flatten() {
                let old_enough = e
                    .metadata()
                    .ok()
                    .filter(|m| m.is_dir())
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age >= min_age);
                if old_enough && std::fs::remove_dir(e.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }
}

/// The cgroup(s) of one dyno.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynoCgroup {
    pub v2: bool,
    /// The memory cgroup (on v2, the only one).
    pub memory: PathBuf,
    /// The v1 pids cgroup.
    pub pids: Option<PathBuf>,
    /// Whether `pids.max` exists to be set.
    pub pids_limit: bool,
}

impl Layout {
    pub fn dyno(&self, id: &str) -> DynoCgroup {
        match self {
            Layout::V2 { parent, pids } => DynoCgroup {
                v2: true,
                memory: parent.join(id),
                pids: None,
                pids_limit: *pids,
            },
            Layout::V1 { memory, pids } => DynoCgroup {
                v2: false,
                memory: memory.join(id),
                pids: pids.as_ref().map(|p| p.join(id)),
                pids_limit: pids.is_some(),
            },
        }
    }
}

/// The limit files to write, in order: (dir, file, value). Swap is capped too, so the
/// memory limit is real.
pub fn limit_writes(
    cg: &DynoCgroup,
    memory_hard: Option<u64>,
    pids: Option<u64>,
) -> Vec<(PathBuf, &'static str, String)> {
    let mut out = Vec::new();
    if let Some(m) = memory_hard {
        if cg.v2 {
            out.push((cg.memory.clone(), "memory.max", m.to_string()));
            out.push((cg.memory.clone(), "memory.swap.max", "0".to_string()));
        } else {
            out.push((cg.memory.clone(), "memory.limit_in_bytes", m.to_string()));
            out.push((
                cg.memory.clone(),
                "memory.memsw.limit_in_bytes",
                m.to_string(),
            ));
        }
    }
    if let (Some(p), true) = (pids, cg.pids_limit) {
        let dir = cg.pids.clone().unwrap_or_else(|| cg.memory.clone());
        out.push((dir, "pids.max", p.to_string()));
    }
    out
}

/// The `oom_kill N` counter of `memory.events` (v2) or `memory.oom_control` (v1).
pub fn parse_oom_kills(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == "oom_kill").then(|| v.trim().parse().ok())?
    })
}

impl DynoCgroup {
    pub fn dirs(&self) -> Vec<&Path> {
        let mut v = vec![self.memory.as_path()];
        if let Some(p) = &self.pids {
            v.push(p);
        }
        v
    }

    /// Makes the cgroup(s) and sets the limits (`0` = no limit). Optional files missing
    /// on this kernel (swap accounting) are skipped.
    pub fn create(&self, memory_hard: u64, pids: u64) -> io::Result<()> {
        for d in self.dirs() {
            match std::fs::create_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    self.remove();
                    return Err(io::Error::new(
                        e.kind(),
                        format!("create cgroup {}: {e}", d.display()),
                    ));
                }
            }
        }
        let writes = limit_writes(
            self,
            (memory_hard > 0).then_some(memory_hard),
            (pids > 0).then_some(pids),
        );
        for (dir, file, value) in writes {
            let optional = matches!(file, "memory.swap.max" | "memory.memsw.limit_in_bytes");
            if let Err(e) = std::fs::write(dir.join(file), &value) {
                if optional {
                    continue;
                }
                self.remove();
                return Err(io::Error::new(
                    e.kind(),
                    format!("set {file}={value} in {}: {e}", dir.display()),
                ));
            }
        }
        Ok(())
    }

    /// The `cgroup.procs` files a process writes its pid into to join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs()
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    pub fn memory_usage(&self) -> Option<u64> {
        let file = if self.v2 {
            "memory.current"
        } else {
            "memory.usage_in_bytes"
        };
        read(&self.memory.join(file)).ok()?.trim().parse().ok()
    }

    pub fn oom_kills(&self) -> Option<u64> {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        parse_oom_kills(&read(&self.memory.join(file)).ok()?)
    }

    /// v1 fallback when the kernel has no `oom_kill` counter: did the limit get hit?
    pub fn failcnt(&self) -> Option<u64> {
        read(&self.memory.join("memory.failcnt"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn pids(&self) -> Vec<i32> {
        read(&self.memory.join("cgroup.procs"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// SIGKILL to every process: `cgroup.kill` on v2 (5.14+), else every listed pid. A
    /// container dyno's PID 1 is among them, and the kernel kills the rest of its PID
    /// namespace with it, so forks racing this pass die too.
    pub fn kill_all(&self) {
        if self.v2 && std::fs::write(self.memory.join("cgroup.kill"), "1").is_ok() {
            return;
        }
        for pid in self.pids() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }

    /// Removes the cgroup(s), retrying briefly while exiting processes still count.
    pub fn remove(&self) {
        for d in self.dirs() {
            for attempt in 0..200 {
                match std::fs::remove_dir(d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(_) if attempt < 199 => std::thread::sleep(Duration::from_millis(10)),
                    Err(e) => {
                        tracing::warn!(cgroup = %d.display(), error = %e, "cannot remove a dyno cgroup")
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
1 0 253:0 / / rw,relatime - ext4 /dev/vda rw
30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw
34 30 0:30 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,memory
35 30 0:31 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,pids
36 30 0:32 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
";
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/ca24
1:cpu,cpuacct:/
0::/
";

    #[test]
    fn runtime_cgroup_locate_hybrid_uses_the_v1_controllers() {
        assert_eq!(
            locate(HYBRID_MOUNTINFO, HYBRID_CGROUP).unwrap(),
            Own::V1 {
                memory: "/sys/fs/cgroup/memory/process_api/ca24".into(),
                pids: Some("/sys/fs/cgroup/pids".into()),
            }
        );
    }

    #[test]
    fn runtime_cgroup_locate_v2_and_container_roots() {
        let mi =
            "28 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            locate(mi, "0::/system.slice/havend.service\n").unwrap(),
            Own::V2 {
                dir: "/sys/fs/cgroup/system.slice/havend.service".into()
            }
        );
        // A container without a cgroup namespace: the mount's root is our own cgroup.
        let mi = "40 25 0:35 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(
            locate(mi, "4:memory:/docker/abc\n").unwrap(),
            Own::V1 {
                memory: "/sys/fs/cgroup/memory".into(),
                pids: None
            }
        );
        assert!(locate("1 0 253:0 / / rw - ext4 /dev/vda rw\n", "0::/\n").is_err());
    }

    #[test]
    fn runtime_cgroup_paths_and_limits_per_version() {
        let v2 = Layout::V2 {
            parent: "/sys/fs/cgroup/haven".into(),
            pids: true,
        }
        .dyno("d1");
        assert_eq!(v2.memory, PathBuf::from("/sys/fs/cgroup/haven/d1"));
        assert_eq!(
            v2.procs_files(),
            vec![PathBuf::from("/sys/fs/cgroup/haven/d1/cgroup.procs")]
        );
        let w = limit_writes(&v2, Some(1 << 30), Some(256));
        let files: Vec<_> = w.iter().map(|(d, f, v)| (d.join(f), v.as_str())).collect();
        assert_eq!(
            files,
            vec![
                (
                    PathBuf::from("/sys/fs/cgroup/haven/d1/memory.max"),
                    "1073741824"
                ),
                (
                    PathBuf::from("/sys/fs/cgroup/haven/d1/memory.swap.max"),
                    "0"
                ),
                (PathBuf::from("/sys/fs/cgroup/haven/d1/pids.max"), "256"),
            ]
        );
        let v1 = Layout::V1 {
            memory: "/m/own/haven".into(),
            pids: Some("/p/haven".into()),
        }
        .dyno("d1");
        assert_eq!(
            v1.procs_files(),
            vec![
                PathBuf::from("/m/own/haven/d1/cgroup.procs"),
                PathBuf::from("/p/haven/d1/cgroup.procs")
            ]
        );
        let w = limit_writes(&v1, Some(100), None);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].1, "memory.limit_in_bytes");
        assert_eq!(w[1].1, "memory.memsw.limit_in_bytes");
        let no_pids = Layout::V1 {
            memory: "/m/haven".into(),
            pids: None,
        }
        .dyno("d1");
        assert!(limit_writes(&no_pids, None, Some(10)).is_empty());
    }

    #[test]
    fn runtime_cgroup_oom_counter_parses_both_formats() {
        assert_eq!(
            parse_oom_kills("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n"),
            Some(1)
        );
        assert_eq!(
            parse_oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"),
            Some(0)
        );
        assert_eq!(parse_oom_kills("oom_kill_disable 0\nunder_oom 0\n"), None);
    }

    #[test]
    fn runtime_cgroup_proc_lines_parse() {
        let l = parse_proc_cgroup(HYBRID_CGROUP);
        assert_eq!(l.len(), 5);
        assert_eq!(l[3].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(l[4].hierarchy, "0");
        assert!(l[4].controllers.is_empty());
        assert_eq!(l[0].controllers, vec!["name=systemd"]);
    }
}
