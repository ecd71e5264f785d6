//! The spec file the runtime writes and the init reads: what to mount, what to run, as
//! whom, in which cgroups and network. The runtime builds it (`agent/src/runtime/plan.rs`,
//! the pure mount plan); the init only executes it. Also the `/proc/self/mountinfo`
//! parser both sides use.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One step of building the container root, run in order by the init inside its mount
/// namespace before `pivot_root`. Every path is a host path (under the rootfs dir).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountStep {
    /// A fresh tmpfs; `dev` allows device nodes (only `/dev` needs it).
    Tmpfs {
        target: PathBuf,
        options: String,
        dev: bool,
    },
    /// A recursive bind mount; the target is made as a dir or an empty file like the
    /// source. Read-only binds are remounted read-only, nosuid and nodev, submounts too.
    Bind {
        source: PathBuf,
        target: PathBuf,
        readonly: bool,
    },
    /// `/app`: the slug as the read-only lower layer, the per-dyno upper dir on top.
    Overlay {
        lower: PathBuf,
        upper: PathBuf,
        work: PathBuf,
        target: PathBuf,
    },
    /// A fresh procfs (mounted from inside the new PID namespace).
    Proc { target: PathBuf },
    /// A private devpts instance; failure is ignored (ptys are optional).
    Devpts { target: PathBuf },
    /// `path` becomes a symlink to `link`.
    Symlink { link: PathBuf, path: PathBuf },
}

/// The spec file the runtime writes (mode 0600; it holds the environment) and
/// `haven-init --spec FILE` (or `havend dyno-init`, see the crate docs) reads and deletes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitSpec {
    pub hostname: String,
    pub rootfs: PathBuf,
    pub steps: Vec<MountStep>,
    /// Executed inside the new root.
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: PathBuf,
    pub uid: u32,
    pub gid: u32,
    /// `cgroup.procs` files the init writes its own pid into before anything else.
    pub cgroup_procs: Vec<PathBuf>,
    /// The agent's pid: the init dies with it (parent-death signal), unless
    /// `exit_status_file` is set.
    pub parent_pid: i32,
    /// Set for a dyno that outlives its agent: no parent-death signal, stdout and stderr
    /// (a file in the dyno dir) are handed to the dyno user like pipes, and the outer
    /// process writes the main process's [`crate::Status`] here before it exits,
    /// for an agent that adopted it (and so cannot `wait` for it).
    #[serde(default)]
    pub exit_status_file: Option<PathBuf>,
    /// The dyno's own network namespace; `None`: the host's network.
    #[serde(default)]
    pub net: Option<DynoNet>,
    /// The dyno's output file, for a standby init (`haven-init --standby`), whose
    /// stdout and stderr were not the dyno's when it started; else unused.
    #[serde(default)]
    pub output: Option<PathBuf>,
}

/// What the runtime needs to give a dyno its network: chosen by the agent's network
/// manager, which also knows what the address may reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynoNet {
    /// The dyno's address (a /32 on its `eth0`).
    pub address: Ipv4Addr,
    /// The bridge's address: the dyno's default route.
    pub gateway: Ipv4Addr,
    /// The node's bridge (`haven0`).
    pub bridge: String,
    /// The host end of the veth pair (unique on the node, ≤ 15 bytes).
    pub veth: String,
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The path inside the filesystem that is mounted (field 4).
    pub root: String,
    pub mount_point: PathBuf,
    /// Per-mount options (`ro`, `nosuid`, ...).
    pub options: Vec<String>,
    pub fstype: String,
    pub super_options: Vec<String>,
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
pub fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/self/mountinfo`; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let g: Vec<&str> = post.split(' ').collect();
            if f.len() < 6 || g.len() < 3 {
                return None;
            }
            Some(MountEntry {
                root: unescape_mount(f[3]),
                mount_point: PathBuf::from(unescape_mount(f[4])),
                options: f[5].split(',').map(str::to_string).collect(),
                fstype: g[0].to_string(),
                super_options: g[2].split(',').map(str::to_string).collect(),
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn runtime_mountinfo_parses_and_unescapes() {
        let text = "36 35 98:0 /mnt1 /mnt/with\\040space rw,nosuid,noatime master:1 - ext3 /dev/root rw,errors=continue\n\
                    40 25 0:35 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory\n\
                    garbage\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(m[0].root, "/mnt1");
        assert_eq!(m[0].fstype, "ext3");
        assert!(m[0].options.contains(&"nosuid".to_string()));
        assert_eq!(m[1].fstype, "cgroup");
        assert_eq!(m[1].super_options, vec!["rw", "memory"]);
        assert_eq!(unescape_mount("a\\134b\\011"), "a\\b\t");
        assert_eq!(unescape_mount("trailing\\04"), "trailing\\04");
    }
}
