//! `havend restore --from FILE --data-dir DIR` (issue 18, item 4): a new one-node
//! cluster from a backup (`crate::backup`); other nodes then join it as usual.
//!
//! The restore itself only prepares the data dir, as `init` does: a new node identity,
//! a new cluster CA (the old CA's key is not in a backup), a new join secret and a new
//! admin token; the blobs go into the slug store and the backed-up state, rebased onto
//! the new node (`haven_raft::model::rebase_restored`), waits in `restore/` with the
//! older releases. The node's first `havend run` ([`commit_pending`]) makes the one-node
//! Raft cluster and commits `RestoreState`, then the releases a chunk per entry
//! (`RestoreReleases`), then removes `restore/`; a run cut short resumes where it was
//! (both commands are idempotent on a restored cluster).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use haven_raft::command::{Command, CommandError};
use haven_raft::model::{rebase_restored, Node, Rebase, State};
use haven_raft::HavenRaft;
use tracing::info;
use uuid::Uuid;

use crate::backup::{self, ReleaseChunks};
use crate::config::{self, DataDir, NodeConfig};
use crate::join::{self, JoinToken};
use crate::slugs::SlugStore;
use crate::tls;

/// Releases per `RestoreReleases` entry.
const CHUNK: usize = 200;

fn restore_dir(data: &DataDir) -> PathBuf {
    data.root.join("restore")
}

/// What `havend restore` prints.
pub struct Restored {
    pub cluster_id: String,
    pub cluster_name: String,
    pub node_id: u64,
    pub admin_token: String,
    pub join_token: String,
    pub ca_fingerprint: String,
    pub cfg: NodeConfig,
    pub apps: usize,
    pub releases: usize,
    pub blobs: usize,
    pub missing_blobs: usize,
    pub backup_created_at: String,
}

/// Prepares `data` from the backup at `from`; `resolve(cluster_id)` makes the node's
/// config from its flags, and its node record. On failure the data dir is removed again.
pub fn prepare(
    from: &Path,
    data: &DataDir,
    node_id: u64,
    resolve: impl FnOnce(&str) -> Result<(NodeConfig, Node)>,
) -> Result<Restored> {
    if !from.is_file() {
        anyhow::bail!(
            "{} is not a file (make one with hctl cluster:backup FILE)",
            from.display()
        );
    }
    data.create()?;
    let out = prepare_in(from, data, node_id, resolve);
    if out.is_err() {
        let _ = std::fs::remove_dir_all(&data.root);
    }
    out
}

fn prepare_in(
    from: &Path,
    data: &DataDir,
    node_id: u64,
    resolve: impl FnOnce(&str) -> Result<(NodeConfig, Node)>,
) -> Result<Restored> {
    let dir = restore_dir(data);
    std::fs::create_dir_all(&dir)?;
    // The blobs go where the node keeps its slugs; the size limit is the run's business.
    let store = SlugStore::open(&data.slugs_dir(), u64::MAX)?;
    let unpacked = backup::unpack(from, &dir, &store)?;
    let cluster = unpacked
        .state
        .cluster
        .clone()
        .context("the backup holds no cluster")?;
    let (cfg, node) = resolve(&cluster.id.to_string())?;
    let ca = tls::generate_ca()?;
    let node_cert = tls::issue_node_cert(&ca, node_id)?;
    let ca_fp = tls::pem_fingerprint(&ca.cert_pem)?;
    let admin_token = format!("hvn_{}", crate::random_hex(24));
    let join_secret = crate::random_hex(24);
    let rebase = Rebase {
        node,
        ca_fingerprint: ca_fp.clone(),
        join_secret_sha256: join::secret_hash(&join_secret),
        admin_token_sha256: join::secret_hash(&admin_token),
        admin_token_id: Uuid::new_v4(),
        now: Utc::now(),
        blobs: unpacked.blobs.clone(),
    };
    let state = rebase_restored(unpacked.state, &rebase).map_err(anyhow::Error::msg)?;
    let missing_blobs = backup::blobs_named(&state)
        .difference(&unpacked.blobs)
        .count();
    config::write_private(&dir.join("state.json"), &serde_json::to_vec(&state)?)?;
    data.save_certs(&ca, &node_cert)?;
    data.save_config(&cfg)?;
    data.server_cert(&cfg, &ca)?;
    let m = &unpacked.manifest;
    Ok(Restored {
        cluster_id: cluster.id.to_string(),
        cluster_name: cluster.name,
        node_id,
        join_token: JoinToken {
            c: cluster.id.to_string(),
            f: ca_fp.clone(),
            s: join_secret,
        }
        .encode(),
        admin_token,
        ca_fingerprint: ca_fp,
        cfg,
        apps: m.apps,
        releases: m.releases,
        blobs: unpacked.blobs.len(),
        missing_blobs,
        backup_created_at: m.created_at.to_rfc3339(),
    })
}

/// On a restored node's first runs: commits the restored state and releases through Raft
/// (making the one-node cluster first), then removes `restore/`. Nothing to do elsewhere.
pub async fn commit_pending(raft: &HavenRaft, data: &DataDir, peer_addr: &str) -> Result<()> {
    let dir = restore_dir(data);
    let state_path = dir.join("state.json");
    if !state_path.exists() {
        return Ok(());
    }
    let state: State = serde_json::from_slice(&std::fs::read(&state_path)?)
        .with_context(|| format!("parse {}", state_path.display()))?;
    if !raft.is_initialized() {
        raft.initialize_single(peer_addr).await?;
        info!("initialized a new one-node cluster for the restore");
    }
    raft.wait_for_leader(Duration::from_secs(30))
        .await
        .context("wait for this node to lead the restored cluster")?;
    let apps: BTreeSet<Uuid> = state.apps.keys().copied().collect();
    match raft
        .write(Command::RestoreState {
            state: Box::new(state),
        })
        .await
    {
        Ok(Ok(_)) => info!(apps = apps.len(), "restored the cluster state"),
        // A run cut short after this step: go on with the releases.
        Ok(Err(CommandError::Conflict(_))) => info!("the cluster state was restored already"),
        Ok(Err(e)) => anyhow::bail!("the restored state was refused: {e}"),
        Err(e) => anyhow::bail!("restore: {e}"),
    }
    let mut total = 0usize;
    for chunk in ReleaseChunks::open(&dir.join("releases.jsonl"), CHUNK)? {
        let (app, releases) = chunk?;
        if !apps.contains(&app) {
            continue;
        }
        total += releases.len();
        match raft.write(Command::RestoreReleases { app, releases }).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => anyhow::bail!("restoring releases of app {app} was refused: {e}"),
            Err(e) => anyhow::bail!("restoring releases: {e}"),
        }
    }
    info!(releases = total, "restored the release history");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
