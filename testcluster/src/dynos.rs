//! The dyno processes of a node, found through the process records its agent writes
//! (`DATA_DIR/dynos/ID/process.json`: pid and start time, see the agent's
//! `runtime/record.rs`; add-on servers' in `DATA_DIR/addons/run/ID/`). Dynos outlive their agent, so killing a node (a host's death)
//! kills them through these, while [`crate::TestCluster::kill_agent`] leaves them.

use std::fs;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::{pid_alive, wait_until};

/// The file name of a dyno's process record inside its dyno dir.
const RECORD: &str = "process.json";

/// `(dyno id, pid)` of every dyno of the node at `data_dir` whose process still runs
/// (pid and start time as recorded).
pub fn running(data_dir: &Path) -> Vec<(String, i32)> {
    // Add-on servers run in the same runtime, their records in `addons/run`.
    let dirs = [data_dir.join("dynos"), data_dir.join("addons").join("run")];
    let mut out: Vec<(String, i32)> = dirs
        .iter()
        .filter_map(|d| fs::read_dir(d).ok())
        .flat_map(|rd| rd.flatten())
        .filter_map(|e| {
            let rec: Value = serde_json::from_slice(&fs::read(e.path().join(RECORD)).ok()?).ok()?;
            let pid = i32::try_from(rec["pid"].as_i64()?).ok()?;
            let start = rec["start_time"].as_u64()?;
            (pid > 0 && start_time(pid) == Some(start) && pid_alive(pid))
                .then(|| (e.file_name().to_string_lossy().into_owned(), pid))
        })
        .collect();
    out.sort();
    out
}

/// Field 22 of `/proc/PID/stat`.
fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// SIGKILL to every running dyno of the node (its process group: a container dyno's
/// init, whose death ends the dyno's PID namespace, or a process-mode dyno's shell and
/// children); waits up to 10 s for them to be gone. Returns the pids still alive.
pub fn kill_all(data_dir: &Path) -> Vec<i32> {
    let pids: Vec<i32> = running(data_dir).into_iter().map(|(_, p)| p).collect();
    for &pid in &pids {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    wait_until(Duration::from_secs(10), || {
        pids.iter().all(|p| !pid_alive(*p))
    });
    pids.into_iter().filter(|p| pid_alive(*p)).collect()
}

/// `pid` and every process descended from it (parents read from `/proc/*/stat`).
fn tree(pid: i32) -> Vec<i32> {
    let mut parent_of: Vec<(i32, i32)> = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok());
            if let Some(pp) = ppid {
                parent_of.push((p, pp));
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let cur = out[i];
        out.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == cur)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    out
}

/// Sends `sig` to every process of every running dyno of the node (e.g. SIGSTOP and
/// SIGCONT, so that a frozen host's dynos freeze with its agent).
pub fn signal_all(data_dir: &Path, sig: Signal) {
    for (_, pid) in running(data_dir) {
        for p in tree(pid) {
            let _ = kill(Pid::from_raw(p), sig);
        }
    }
}
