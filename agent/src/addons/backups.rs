//! Postgres backups (`pg:backups`): a capture runs `pg_dump -Fc` against the add-on's
//! primary from the node that took the request, stores the dump in the blob store (the
//! slug store, by sha256) and copies it to min(3, up nodes) before the backup is recorded
//! as completed; a restore fetches the dump from a holder when this node lacks it and runs
//! `pg_restore --clean` into the target database in one transaction.
//!
//! The database password reaches `pg_dump`/`pg_restore` through `PGPASSWORD` in their
//! environment only, never a command line or a log line.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chrono::Utc;
use haven_raft::command::{Command, CommandError, CommandOutput};
use haven_raft::model::{Addon, Backup, BackupResult, BackupStatus, NodeId};
use haven_raft::HavenRaft;
use tracing::{info, warn};
use uuid::Uuid;

use super::server::PG_BIN;
use crate::peer::QuicConnector;
use crate::slugs::SlugStore;

/// Nodes that hold each dump (as for slugs).
const BACKUP_COPIES: usize = 3;
/// Longest a dump or a restore may run.
const PG_TOOL_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// Why a backup call failed, for the API to word.
#[derive(Debug)]
pub enum BackupError {
    /// The state refused the command (no such add-on, not Postgres, ...).
    Rejected(CommandError),
    /// The cluster did not take the write.
    Cluster(String),
    /// The dump, its copies or the restore failed; the message is for the user.
    Failed(String),
}

/// Captures, fetches and restores backups on this node. Cheap to clone.
#[derive(Clone)]
pub struct Backups {
    raft: HavenRaft,
    node_id: NodeId,
    blobs: SlugStore,
    peers: QuicConnector,
    /// Where dumps are written before they enter the blob store.
    tmp: PathBuf,
}

/// The connection of `pg_dump`/`pg_restore` to an add-on's primary.
fn pg_tool(tool: &str, addon: &Addon) -> Result<tokio::process::Command, String> {
    let m = addon
        .primary_member()
        .ok_or_else(|| format!("{} has no server yet", addon.name))?;
    let mut cmd = tokio::process::Command::new(Path::new(PG_BIN).join(tool));
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("PGHOST", &m.host)
        .env("PGPORT", m.port.to_string())
        .env("PGUSER", addon.db_user())
        .env("PGDATABASE", addon.db_name())
        .env("PGPASSWORD", &addon.password)
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Ok(cmd)
}

/// Runs a `pg_*` tool; its stderr (which names no password) becomes the error.
async fn run_tool(mut cmd: tokio::process::Command, what: &str) -> Result<(), String> {
    let child = cmd.spawn().map_err(|e| format!("cannot run {what}: {e}"))?;
    let out = tokio::time::timeout(PG_TOOL_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("{what} did not finish within {PG_TOOL_TIMEOUT:?}"))?
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Backups {
    pub fn new(
        raft: HavenRaft,
        node_id: NodeId,
        blobs: SlugStore,
        peers: QuicConnector,
        tmp: PathBuf,
    ) -> Backups {
        Backups {
            raft,
            node_id,
            blobs,
            peers,
            tmp,
        }
    }

    async fn write(&self, cmd: Command) -> Result<CommandOutput, BackupError> {
        match self.raft.write(cmd).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(BackupError::Rejected(e)),
            Err(e) => Err(BackupError::Cluster(e.to_string())),
        }
    }

    /// Captures a backup of `addon` for `app` and waits for it: the backup as recorded
    /// at its end (completed, or failed with the reason). `scheduled`: the daily
    /// schedule's (refused unless its slot is due and not yet taken).
    pub async fn capture(
        &self,
        app: Uuid,
        addon: &Addon,
        scheduled: bool,
    ) -> Result<Backup, BackupError> {
        let started = Backup {
            id: Uuid::new_v4(),
            number: 0,
            app,
            addon: addon.id,
            addon_name: addon.name.clone(),
            node: self.node_id,
            status: BackupStatus::Running,
            started_at: Utc::now(),
            finished_at: None,
            size: 0,
            sha256: None,
            holders: Vec::new(),
            scheduled,
        };
        let CommandOutput::Backup(b) = self.write(Command::StartBackup { backup: started }).await?
        else {
            return Err(BackupError::Failed("the cluster answered no backup".into()));
        };
        let result = match self.dump(addon, b.id).await {
            Ok((sha256, size, holders)) => BackupResult::Completed {
                sha256,
                size,
                holders,
            },
            Err(e) => {
                warn!(backup = %b.label(), addon = %addon.name, error = %e, "backup failed");
                BackupResult::Failed(e)
            }
        };
        let out = self
            .write(Command::FinishBackup {
                id: b.id,
                result,
                at: Utc::now(),
            })
            .await?;
        match out {
            CommandOutput::Backup(done) => {
                info!(backup = %done.label(), addon = %addon.name, status = done.status.as_str(), size = done.size, "backup finished");
                Ok(*done)
            }
            _ => Err(BackupError::Failed("the cluster answered no backup".into())),
        }
    }

    /// Dumps into the blob store and copies the dump out: (sha256, size, holders).
    async fn dump(&self, addon: &Addon, id: Uuid) -> Result<(String, u64, Vec<NodeId>), String> {
        tokio::fs::create_dir_all(&self.tmp)
            .await
            .map_err(|e| format!("create {}: {e}", self.tmp.display()))?;
        let file = self.tmp.join(format!("{id}.dump"));
        let mut cmd = pg_tool("pg_dump", addon)?;
        cmd.args(["--format=custom", "--no-owner", "--no-acl", "--file"])
            .arg(&file);
        let dumped = run_tool(cmd, "pg_dump").await;
        let stored = match dumped {
            Ok(()) => {
                async {
                    let read = |e: std::io::Error| format!("read the dump: {e}");
                    let sha = crate::slugs::sha256_file(&file).await.map_err(read)?;
                    let size = tokio::fs::metadata(&file).await.map_err(read)?.len();
                    self.blobs
                        .add_file(&sha, &file)
                        .map_err(|e| format!("store the dump: {e}"))?;
                    Ok((sha, size))
                }
                .await
            }
            Err(e) => Err(e),
        };
        let _ = tokio::fs::remove_file(&file).await;
        let (sha, size) = stored?;
        let holders = self
            .blobs
            .replicate(&self.raft, self.node_id, &self.peers, &sha, BACKUP_COPIES)
            .await
            .map_err(|e| format!("the dump {e}"))?;
        Ok((sha, size, holders))
    }

    /// The dump of a completed backup as a file on this node, fetched from a holder when
    /// this node holds none.
    pub async fn dump_file(&self, b: &Backup) -> Result<PathBuf, String> {
        let sha = b
            .sha256
            .as_deref()
            .filter(|_| b.status == BackupStatus::Completed)
            .ok_or_else(|| format!("{} did not complete; it has no dump", b.label()))?;
        if !self.blobs.has(sha) {
            let addrs: Vec<String> = self.raft.with_state(|s| {
                b.holders
                    .iter()
                    .filter_map(|id| s.nodes.get(id))
                    .map(|n| n.peer_addr.clone())
                    .collect()
            });
            let mut last = format!("no node that holds {} is known", b.label());
            for addr in addrs {
                match self.blobs.fetch_from(&self.peers, &addr, sha).await {
                    Ok(()) => break,
                    Err(e) => last = e,
                }
            }
            if !self.blobs.has(sha) {
                return Err(format!("cannot fetch {}: {last}", b.label()));
            }
        }
        self.blobs
            .path(sha)
            .ok_or_else(|| "bad backup checksum".to_string())
    }

    /// Restores backup `b` into `target` (replacing what the dump holds), in one
    /// transaction: on error the database is as before.
    pub async fn restore(&self, b: &Backup, target: &Addon) -> Result<(), String> {
        let dump = self.dump_file(b).await?;
        let mut cmd = pg_tool("pg_restore", target)?;
        cmd.args([
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-acl",
            "--single-transaction",
            "--exit-on-error",
            "--dbname",
            &target.db_name(),
        ])
        .arg(&dump);
        run_tool(cmd, "pg_restore").await?;
        info!(backup = %b.label(), addon = %target.name, "backup restored");
        Ok(())
    }
}
