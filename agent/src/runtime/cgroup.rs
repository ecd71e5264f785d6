//! Dyno cgroups: where they go (v2 unified, or v1/hybrid with the memory, pids, cpu and
//! cpuacct controllers), creating them with limits (memory, pids, CPU share), usage and
//! OOM counters, killing and removing.
//!
//! v1 and hybrid hosts: `<memory mount>/<our memory cgroup>/haven/<id>` and the same under
//! the pids, cpu and cpuacct hierarchies (those three optional: a host without them runs
//! dynos without that limit or counter). v2 hosts: `<our cgroup>/haven/<id>`, after
//! enabling `+memory +pids` (and `+cpu` when offered) in our cgroup's `subtree_control`;
//! when our cgroup holds processes (the no-internal-processes rule refuses that), they
//! move to a leaf `<our cgroup>/agent` first, as Docker-in-Docker entrypoints do.
//!
//! The CPU share of a size (`haven_catalog::DynoSize::cpu_shares`) is written as
//! `cpu.shares` on v1 and as `cpu.weight` (= shares × 100 / 1024, see [`cpu_weight`]) on
//! v2; it only splits contended CPU time between dynos (siblings under `haven`).

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
        /// The `cpu` controller's cgroup (`cpu.shares`).
        cpu: Option<PathBuf>,
        /// The `cpuacct` controller's cgroup when it is a hierarchy apart from `cpu`'s
        /// (co-mounted `cpu,cpuacct` hosts read usage from `cpu`).
        cpuacct: Option<PathBuf>,
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
        let cpu = v1("cpu");
        let cpuacct = v1("cpuacct").filter(|a| Some(a) != cpu.as_ref());
        return Ok(Own::V1 {
            memory,
            pids: v1("pids"),
            cpu,
            cpuacct,
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
        /// The `cpu` controller is enabled for dyno cgroups (`cpu.weight`).
        cpu: bool,
    },
    V1 {
        memory: PathBuf,
        pids: Option<PathBuf>,
        cpu: Option<PathBuf>,
        cpuacct: Option<PathBuf>,
    },
}

/// cgroup v2's `cpu.weight` for a v1 `cpu.shares` value: the same ratio to the default
/// (1024 shares, weight 100), clamped to the kernel's 1..=10000.
pub fn cpu_weight(shares: u64) -> u64 {
    (shares * 100 / 1024).clamp(1, 10_000)
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
        Own::V1 {
            memory,
            pids,
            cpu,
            cpuacct,
        } => {
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
            // Optional: without them dynos run, unweighted or uncounted.
            let optional = |dir: &Option<PathBuf>, what: &str| {
                let d = dir.as_ref()?.join("haven");
                match mkdir(&d) {
                    Ok(()) => Some(d),
                    Err(e) => {
                        tracing::warn!(error = %e, "dynos get no {what}");
                        None
                    }
                }
            };
            Ok(Layout::V1 {
                memory,
                pids,
                cpu: optional(cpu, "CPU share"),
                cpuacct: optional(cpuacct, "CPU usage counter"),
            })
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
            // The CPU weight is optional (the cpu controller may be missing, or refused
            // while a realtime thread runs in our cgroup).
            let cpu = has("cpu")
                && match enable(dir, &["cpu"]).and_then(|()| enable(&parent, &["cpu"])) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, "dynos get no CPU weight");
                        false
                    }
                };
            Ok(Layout::V2 {
                parent,
                pids: wanted.contains(&"pids"),
                cpu,
            })
        }
    }
}

impl Layout {
    /// The `haven` dirs that hold dyno cgroups.
    fn parents(&self) -> Vec<&Path> {
        match self {
            Layout::V2 { parent, .. } => vec![parent.as_path()],
            Layout::V1 {
                memory,
                pids,
                cpu,
                cpuacct,
            } => {
                let mut v = vec![memory.as_path()];
                v.extend(
                    [pids, cpu, cpuacct]
                        .into_iter()
                        .flatten()
                        .map(PathBuf::as_path),
                );
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
    /// The v1 cpu cgroup (`cpu.shares`; `cpuacct.usage` too when co-mounted).
    pub cpu: Option<PathBuf>,
    /// The v1 cpuacct cgroup, when apart from `cpu`.
    pub cpuacct: Option<PathBuf>,
    /// v2: whether `cpu.weight` exists to be set.
    pub cpu_weight: bool,
}

impl Layout {
    pub fn dyno(&self, id: &str) -> DynoCgroup {
        match self {
            Layout::V2 { parent, pids, cpu } => DynoCgroup {
                v2: true,
                memory: parent.join(id),
                pids: None,
                pids_limit: *pids,
                cpu: None,
                cpuacct: None,
                cpu_weight: *cpu,
            },
            Layout::V1 {
                memory,
                pids,
                cpu,
                cpuacct,
            } => DynoCgroup {
                v2: false,
                memory: memory.join(id),
                pids: pids.as_ref().map(|p| p.join(id)),
                pids_limit: pids.is_some(),
                cpu: cpu.as_ref().map(|p| p.join(id)),
                cpuacct: cpuacct.as_ref().map(|p| p.join(id)),
                cpu_weight: false,
            },
        }
    }
}

/// What a dyno's cgroup limits: `None` (or 0 in [`DynoCgroup::create`]) leaves one unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Hard memory limit, bytes.
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    /// CPU share in v1 `cpu.shares` units.
    pub cpu_shares: Option<u64>,
}

/// The limit files to write, in order: (dir, file, value). Swap is capped too, so the
/// memory limit is real.
pub fn limit_writes(cg: &DynoCgroup, limits: Limits) -> Vec<(PathBuf, &'static str, String)> {
    let Limits {
        memory: memory_hard,
        pids,
        cpu_shares,
    } = limits;
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
    if let Some(shares) = cpu_shares {
        if let Some(dir) = &cg.cpu {
            out.push((dir.clone(), "cpu.shares", shares.to_string()));
        } else if cg.v2 && cg.cpu_weight {
            out.push((
                cg.memory.clone(),
                "cpu.weight",
                cpu_weight(shares).to_string(),
            ));
        }
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
        v.extend(
            [&self.pids, &self.cpu, &self.cpuacct]
                .into_iter()
                .flatten()
                .map(PathBuf::as_path),
        );
        v
    }

    /// Makes the cgroup(s) and sets the limits (`0` = no limit). Optional files missing
    /// on this kernel (swap accounting) are skipped.
    pub fn create(&self, memory_hard: u64, pids: u64, cpu_shares: u64) -> io::Result<()> {
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
            Limits {
                memory: (memory_hard > 0).then_some(memory_hard),
                pids: (pids > 0).then_some(pids),
                cpu_shares: (cpu_shares > 0).then_some(cpu_shares),
            },
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
                cpu: Some("/sys/fs/cgroup/cpu,cpuacct".into()),
                cpuacct: None,
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
                pids: None,
                cpu: None,
                cpuacct: None,
            }
        );
        assert!(locate("1 0 253:0 / / rw - ext4 /dev/vda rw\n", "0::/\n").is_err());
        // cpu and cpuacct mounted apart (this project's CI host).
        let mi = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
";
        assert_eq!(
            locate(mi, "4:memory:/p/27ad\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n").unwrap(),
            Own::V1 {
                memory: "/sys/fs/cgroup/memory/p/27ad".into(),
                pids: None,
                cpu: Some("/sys/fs/cgroup/cpu".into()),
                cpuacct: Some("/sys/fs/cgroup/cpuacct".into()),
            }
        );
    }

    #[test]
    fn runtime_cgroup_paths_and_limits_per_version() {
        let v2 = Layout::V2 {
            parent: "/sys/fs/cgroup/haven".into(),
            pids: true,
            cpu: true,
        }
        .dyno("d1");
        assert_eq!(v2.memory, PathBuf::from("/sys/fs/cgroup/haven/d1"));
        assert_eq!(
            v2.procs_files(),
            vec![PathBuf::from("/sys/fs/cgroup/haven/d1/cgroup.procs")]
        );
        let all = |memory, pids, cpu_shares| Limits {
            memory,
            pids,
            cpu_shares,
        };
        let w = limit_writes(&v2, all(Some(1 << 30), Some(256), Some(51200)));
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
                (PathBuf::from("/sys/fs/cgroup/haven/d1/cpu.weight"), "5000"),
            ]
        );
        let v1 = Layout::V1 {
            memory: "/m/own/haven".into(),
            pids: Some("/p/haven".into()),
            cpu: Some("/c/haven".into()),
            cpuacct: Some("/a/haven".into()),
        }
        .dyno("d1");
        assert_eq!(
            v1.procs_files(),
            vec![
                PathBuf::from("/m/own/haven/d1/cgroup.procs"),
                PathBuf::from("/p/haven/d1/cgroup.procs"),
                PathBuf::from("/c/haven/d1/cgroup.procs"),
                PathBuf::from("/a/haven/d1/cgroup.procs"),
            ]
        );
        let w = limit_writes(&v1, all(Some(100), None, Some(2048)));
        assert_eq!(w.len(), 3);
        assert_eq!(w[0].1, "memory.limit_in_bytes");
        assert_eq!(w[1].1, "memory.memsw.limit_in_bytes");
        assert_eq!(
            (w[2].0.join(w[2].1), w[2].2.as_str()),
            (PathBuf::from("/c/haven/d1/cpu.shares"), "2048")
        );
        let no_pids = Layout::V1 {
            memory: "/m/haven".into(),
            pids: None,
            cpu: None,
            cpuacct: None,
        }
        .dyno("d1");
        assert!(limit_writes(&no_pids, all(None, Some(10), Some(1024))).is_empty());
        // A v2 host without the cpu controller: no weight to write.
        let no_cpu = Layout::V2 {
            parent: "/sys/fs/cgroup/haven".into(),
            pids: false,
            cpu: false,
        }
        .dyno("d1");
        assert!(limit_writes(&no_cpu, all(None, None, Some(1024))).is_empty());
    }

    #[test]
    fn runtime_cgroup_cpu_weight_keeps_the_shares_ratio() {
        assert_eq!(cpu_weight(1024), 100);
        assert_eq!(cpu_weight(2048), 200);
        assert_eq!(cpu_weight(51200), 5000);
        assert_eq!(cpu_weight(2), 1);
        assert_eq!(cpu_weight(1 << 20), 10_000);
    }

    /// The v2 path against a directory shaped like cgroupfs (this project's CI host has
    /// its memory controller on v1, so v2 memory limits cannot be set for real there):
    /// controllers enabled down to `haven`, every limit written where the kernel reads it.
    #[test]
    fn runtime_cgroup_v2_setup_and_create_write_every_limit() {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().join("havend.service");
        std::fs::create_dir(&own).unwrap();
        std::fs::write(
            own.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        let layout = setup(&Own::V2 { dir: own.clone() }).unwrap();
        assert_eq!(
            layout,
            Layout::V2 {
                parent: own.join("haven"),
                pids: true,
                cpu: true,
            }
        );
        // A fake file keeps only the last write: cpu came last, in both.
        for d in [&own, &own.join("haven")] {
            let sc = std::fs::read_to_string(d.join("cgroup.subtree_control")).unwrap();
            assert_eq!(sc, "+cpu", "{}", d.display());
        }
        let cg = layout.dyno("d1");
        cg.create(64 << 20, 100, 51200).unwrap();
        let get = |f: &str| std::fs::read_to_string(own.join("haven/d1").join(f)).unwrap();
        assert_eq!(get("memory.max"), (64u64 << 20).to_string());
        assert_eq!(get("memory.swap.max"), "0");
        assert_eq!(get("pids.max"), "100");
        assert_eq!(get("cpu.weight"), "5000");
        assert_eq!(cg.procs_files(), vec![own.join("haven/d1/cgroup.procs")]);
        // Without the cpu controller, dynos run unweighted.
        let bare = dir.path().join("bare");
        std::fs::create_dir(&bare).unwrap();
        std::fs::write(bare.join("cgroup.controllers"), "memory\n").unwrap();
        let layout = setup(&Own::V2 { dir: bare.clone() }).unwrap();
        assert_eq!(
            layout,
            Layout::V2 {
                parent: bare.join("haven"),
                pids: false,
                cpu: false,
            }
        );
        layout.dyno("d2").create(1 << 20, 10, 1024).unwrap();
        assert!(!bare.join("haven/d2/cpu.weight").exists());
        assert!(!bare.join("haven/d2/pids.max").exists());
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
