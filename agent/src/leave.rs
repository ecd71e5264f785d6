//! `havend leave --data-dir DIR` (issue 18, item 3): a node takes itself out of the
//! cluster for good, run on the node's own host.
//!
//! The running agent listens on `DIR/control.sock` (a Unix socket, mode 0600: whoever
//! may read the node's data dir — its keys — may make it leave). `havend leave` writes
//! `leave` and prints the lines the agent answers until the last (`ok: …` or
//! `error: …`). The agent then does what `nodes:remove` does, from the node itself:
//! refuses while add-on members live here or when it is the only voter; drains (its
//! dynos start elsewhere before they stop here) and waits for its formation dynos to
//! be gone; commits `RemoveNode`, which revokes its identity — the leader's autopilot
//! takes members the model removed out of the membership at once —, and when it leads,
//! leaves the membership itself (which makes it step down). Last, it marks its
//! data dir (`left`), so that `havend run` refuses it from then on, and stops.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use haven_raft::command::Command;
use haven_raft::model::NodeId;
use haven_raft::HavenRaft;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use crate::events::Events;

/// How long the leave waits for the node's dynos to move.
const DRAIN_DEADLINE: Duration = Duration::from_secs(180);

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

pub fn left_marker(data_dir: &Path) -> PathBuf {
    data_dir.join("left")
}

/// Refuses to run a node that left its cluster.
pub fn check_not_left(data_dir: &Path) -> Result<()> {
    let marker = left_marker(data_dir);
    if marker.exists() {
        let when = std::fs::read_to_string(&marker).unwrap_or_default();
        bail!(
            "this node left its cluster ({}) and its identity is refused there; wipe {} and `havend join` again to use this host as a new node",
            when.trim(),
            data_dir.display()
        );
    }
    Ok(())
}

/// What the agent's side of a leave needs.
#[derive(Clone)]
pub struct Leaver {
    pub raft: HavenRaft,
    pub me: NodeId,
    pub name: String,
    pub data_dir: PathBuf,
    pub events: Events,
    /// Notified once the node has left: the agent stops.
    pub left: Arc<Notify>,
}

/// Serves `control.sock` until shutdown.
pub async fn serve(leaver: Leaver, mut shutdown: watch::Receiver<bool>) {
    let path = socket_path(&leaver.data_dir);
    let _ = std::fs::remove_file(&path);
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, path = %path.display(), "cannot listen on the control socket: havend leave will not work");
            return;
        }
    };
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
            warn!(error = %e, "cannot restrict the control socket; closing it");
            return;
        }
    }
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            conn = listener.accept() => match conn {
                Ok((stream, _)) => {
                    let leaver = leaver.clone();
                    tokio::spawn(async move { leaver.answer(stream).await });
                }
                Err(e) => warn!(error = %e, "control socket accept failed"),
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}

impl Leaver {
    async fn answer(self, stream: UnixStream) {
        let (read, mut write) = stream.into_split();
        let mut line = String::new();
        let mut read = tokio::io::BufReader::new(read);
        if read.read_line(&mut line).await.is_err() {
            return;
        }
        if line.trim() != "leave" {
            let _ = write
                .write_all(format!("error: unknown request {:?}\n", line.trim()).as_bytes())
                .await;
            return;
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let this = self.clone();
        let work = tokio::spawn(async move { this.leave(&tx).await });
        while let Some(msg) = rx.recv().await {
            // The caller may go away: the leave goes on.
            let _ = write.write_all(format!("{msg}\n").as_bytes()).await;
        }
        let last = match work.await {
            Ok(Ok(())) => format!(
                "ok: {} left the cluster; its identity is refused from now on. Wipe {} before joining this host again",
                self.name,
                self.data_dir.display()
            ),
            Ok(Err(e)) => format!("error: {e:#}"),
            Err(e) => format!("error: {e}"),
        };
        let _ = write.write_all(format!("{last}\n").as_bytes()).await;
        let _ = write.shutdown().await;
        if last.starts_with("ok:") {
            self.left.notify_one();
        }
    }

    async fn leave(&self, say: &tokio::sync::mpsc::UnboundedSender<String>) -> Result<()> {
        let me = self.me;
        self.raft.read_barrier().await?;
        let addons: Vec<String> = self.raft.with_state(|s| {
            s.addons
                .values()
                .filter(|a| a.members.iter().any(|m| m.node == me))
                .map(|a| a.name.clone())
                .collect()
        });
        if !addons.is_empty() {
            bail!(
                "{} holds members of add-ons ({}); destroy them or let a standby take over first",
                self.name,
                addons.join(", ")
            );
        }
        let status = self.raft.status();
        let voters: BTreeSet<NodeId> = status.voters.iter().copied().collect();
        let rest: BTreeSet<NodeId> = voters.iter().copied().filter(|v| *v != me).collect();
        if rest.is_empty() {
            bail!("{} is the cluster's only voter: it cannot leave", self.name);
        }
        let _ = say.send(format!(
            "Draining {}: its dynos start on other nodes...",
            self.name
        ));
        write(
            &self.raft,
            Command::SetNodeDraining {
                node_id: me,
                draining: true,
            },
        )
        .await?;
        let deadline = tokio::time::Instant::now() + DRAIN_DEADLINE;
        let mut changes = self.raft.changes();
        loop {
            let left = self.raft.with_state(|s| {
                s.dynos
                    .values()
                    .filter(|d| d.node == me && !d.one_off)
                    .count()
            });
            if left == 0 {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "{} still runs {left} dynos after {} s of draining (see hctl ps); it stays drained — run havend leave again",
                    self.name,
                    DRAIN_DEADLINE.as_secs()
                );
            }
            let _ = tokio::time::timeout_at(deadline, changes.next()).await;
        }
        let _ = say.send("Its dynos run elsewhere. Leaving the Raft membership...".to_string());
        // The removal commits first: a leader is a member until it is removed from the
        // membership, and a node outside it cannot find the next leader to forward to.
        write(&self.raft, Command::RemoveNode { node_id: me }).await?;
        if self.raft.status().leader == Some(me) {
            // Leaving the membership makes it step down (the others elect a leader);
            // if this fails, the next leader's autopilot takes it out all the same.
            let _ = say.send("It led the cluster: stepping down...".to_string());
            let leaving = self.raft.change_voters(rest, BTreeSet::from([me]));
            match tokio::time::timeout(Duration::from_secs(10), leaving).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    warn!(error = %e, "leaving the membership failed; the next leader removes this node")
                }
                Err(_) => {
                    warn!("leaving the membership took too long; the next leader removes this node")
                }
            }
        }
        std::fs::write(left_marker(&self.data_dir), chrono::Utc::now().to_rfc3339())
            .context("mark the data dir as left")?;
        self.events.record(
            "node",
            format!(
                "{} left the cluster (havend leave): its identity is refused from now on",
                self.name
            ),
        );
        info!("left the cluster");
        Ok(())
    }
}

async fn write(raft: &HavenRaft, cmd: Command) -> Result<()> {
    match raft.write(cmd).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => bail!("{e}"),
        Err(e) => bail!("{e}"),
    }
}

/// `havend leave`: asks the running agent of `data_dir` to leave, printing its progress.
pub fn client(data_dir: &Path) -> Result<()> {
    check_not_left(data_dir)?;
    let path = socket_path(data_dir);
    let mut stream = std::os::unix::net::UnixStream::connect(&path).with_context(|| {
        format!(
            "connect to {} (is `havend run --data-dir {}` running?)",
            path.display(),
            data_dir.display()
        )
    })?;
    stream.write_all(b"leave\n")?;
    let mut ok = false;
    let mut last = String::new();
    for line in BufReader::new(stream).lines() {
        let line = line?;
        if let Some(msg) = line.strip_prefix("error: ") {
            bail!("{msg}");
        }
        if let Some(msg) = line.strip_prefix("ok: ") {
            println!("{msg}");
            ok = true;
        } else {
            eprintln!("{line}");
        }
        last = line;
    }
    if !ok {
        bail!(
            "the agent stopped answering before the leave finished (last: {last:?}); see its log"
        );
    }
    Ok(())
}
