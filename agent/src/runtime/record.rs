//! The process record of a dyno that outlives its agent: `STATE_DIR/ID/process.json`,
//! written once the dyno's process is started, read by the next agent to adopt it.
//!
//! A pid alone could name a process that started after the dyno died (pid reuse), so the
//! record keeps the process's start time (field 22 of `/proc/PID/stat`, in clock ticks
//! since boot) and a pid only counts as the dyno while both match.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The record's file name inside the per-dyno dir (testcluster reads it too, to kill the
/// dynos of a node it kills).
pub const FILE: &str = "process.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Container: the `dyno-init` outer process; Process: bash, the group leader.
    pub pid: i32,
    /// Of `pid`, from `/proc/PID/stat`.
    pub start_time: u64,
    /// `true`: container mode (a cgroup named by the dyno id).
    pub container: bool,
    /// What the caller asked to keep with the process ([`super::DynoSpec::note`]).
    pub note: String,
    /// The dyno's address in its own network namespace, if it has one.
    #[serde(default)]
    pub address: Option<std::net::Ipv4Addr>,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Writes the record of `pid` (temp file, then rename: a reader never sees half of it).
pub fn write(
    dir: &Path,
    pid: i32,
    container: bool,
    note: &str,
    address: Option<std::net::Ipv4Addr>,
) -> io::Result<()> {
    let start_time =
        start_time(pid).ok_or_else(|| io::Error::other(format!("process {pid} is gone")))?;
    let rec = Record {
        pid,
        start_time,
        container,
        note: note.to_string(),
        address,
    };
    let tmp = dir.join(".process.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&rec).map_err(io::Error::other)?)?;
    std::fs::rename(&tmp, path(dir))
}

/// The record in `dir`, if there is a readable one.
pub fn read(dir: &Path) -> Option<Record> {
    let bytes = std::fs::read(path(dir)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether the record's process still runs (same pid, same start time, not a zombie).
pub fn running(rec: &Record) -> bool {
    rec.pid > 0 && stat_of(rec.pid).is_some_and(|s| s.start_time == rec.start_time && !s.zombie)
}

struct Stat {
    start_time: u64,
    zombie: bool,
}

fn stat_of(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Fields after the command name (which may hold spaces and parentheses, so split at the
/// last `)`): state is field 3, start time field 22.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = *fields.first()?;
    let start_time = fields.get(19)?.parse().ok()?;
    Some(Stat {
        start_time,
        zombie: state == "Z" || state == "X",
    })
}

pub fn start_time(pid: i32) -> Option<u64> {
    stat_of(pid).map(|s| s.start_time)
}

/// A pidfd for `pid` (Linux ≥ 5.3): readable once the process has exited, whoever its
/// parent is, and immune to pid reuse from the moment it is opened.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; no
    // memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // Non-blocking, for tokio's AsyncFd.
    let flags = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))?;
    Ok(fd)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_found_after_the_command_name() {
        let line =
            "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.start_time, 987654);
        assert!(!s.zombie);
        let z = parse_stat("7 (x) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0").unwrap();
        assert!(z.zombie);
        assert_eq!(z.start_time, 55);
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x) S 1").is_none());
    }

    #[test]
    fn this_process_is_running_and_a_wrong_start_time_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id() as i32;
        write(dir.path(), me, false, "n", None).unwrap();
        let rec = read(dir.path()).unwrap();
        assert_eq!(rec.note, "n");
        assert!(running(&rec));
        let reused = Record {
            start_time: rec.start_time + 1,
            ..rec
        };
        assert!(!running(&reused));
    }
}
