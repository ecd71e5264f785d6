//! Dynos a previous agent left running: listed from their process records, adopted
//! (watched through a pidfd, output followed from the saved offset) or discarded.

use std::io;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;

use super::files::remove_tree;
use super::{plan, record, DynoHandle, DynoProcess, Kind, Runtime, Shared, Waiter};

impl Runtime {
    /// Ids of the dyno dirs holding a process record (dynos a previous agent started that
    /// may still run), for the dyno manager to adopt or stop.
    pub fn recorded_dynos(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(&self.state_dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter(|e| record::path(&e.path()).exists())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|name| !name.starts_with('.'))
            .collect()
    }

    /// The addresses of the recorded dynos that have a network namespace of their own
    /// (whether or not they still run), by dyno id: the network manager keeps them
    /// reserved until those dynos are adopted and stopped, or discarded.
    pub fn recorded_addresses(&self) -> Vec<(String, std::net::Ipv4Addr)> {
        self.recorded_dynos()
            .into_iter()
            .filter_map(|id| {
                let rec = record::read(&plan::DynoDirs::new(&self.state_dir, &id).root)?;
                Some((id, rec.address?))
            })
            .collect()
    }

    /// Removes what is left of dyno `id` (a dyno dir whose process no longer runs):
    /// kills whatever its record or cgroup still holds, removes both.
    pub fn discard(&self, id: &str) {
        if plan::valid_name(id, "dyno id", 64).is_err() {
            return;
        }
        let dirs = plan::DynoDirs::new(&self.state_dir, id);
        kill_recorded(&dirs.root);
        if let Some(layout) = &self.cgroups {
            let cg = layout.dyno(id);
            cg.kill_all();
            cg.remove();
        }
        remove_tree(&dirs.root);
    }

    /// Takes over dyno `id` started by a previous agent, if its process still runs: the
    /// same process, watched through a pidfd (it is not our child), its output followed
    /// from where the last agent stopped. Returns it with its [`DynoSpec::note`]. `None`:
    /// no record or the process is gone (the next [`Runtime::spawn`] cleans the dir up).
    pub fn adopt(&self, id: &str) -> Option<(DynoProcess, String)> {
        if plan::valid_name(id, "dyno id", 64).is_err() {
            return None;
        }
        let dirs = plan::DynoDirs::new(&self.state_dir, id);
        let rec = record::read(&dirs.root)?;
        if !record::running(&rec) {
            return None;
        }
        let kind = if rec.container {
            Kind::Container {
                cgroup: self.cgroups.as_ref()?.dyno(id),
            }
        } else {
            Kind::Process
        };
        let pidfd = match record::pidfd_open(rec.pid).and_then(|fd| {
            // SAFETY: the AsyncFd owns the OwnedFd, whose descriptor stays the same until
            // both are dropped together.
            unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)
        }) {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!(dyno = %id, error = %e, "cannot watch a running dyno");
                return None;
            }
        };
        // The pidfd now pins the process: check the pid was not reused before it opened.
        if !record::running(&rec) {
            return None;
        }
        let proc = DynoProcess {
            waiter: Waiter::Adopted(pidfd),
            handle: DynoHandle {
                shared: Arc::new(Shared {
                    pid: rec.pid,
                    kind,
                    dir: dirs.root.clone(),
                    exited: AtomicBool::new(false),
                    output: true,
                }),
            },
            exit: None,
        };
        Some((proc, rec.note))
    }
}

/// SIGKILL to the still running process a record in `dir` names (and its group), before
/// its dir is reused or removed.
pub(super) fn kill_recorded(dir: &Path) {
    if let Some(rec) = record::read(dir) {
        if record::running(&rec) {
            let _ = killpg(Pid::from_raw(rec.pid), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(rec.pid), Signal::SIGKILL);
        }
    }
}
