//! What a dyno runs with: read from the replicated state (release, slug, config), turned
//! into its environment and the runtime's spec (limits by size).

use std::collections::BTreeMap;

use haven_raft::model::{NodeId, State};
use uuid::Uuid;

use crate::runtime::{DynoNet, DynoSpec};
use crate::slugcache::Lease;

/// Everything needed to start one dyno, read from the replicated state.
#[derive(Debug, Clone)]
pub(super) struct Launch {
    pub(super) app: Uuid,
    pub(super) release: u64,
    pub(super) name: String,
    pub(super) process_type: String,
    pub(super) command: String,
    pub(super) size: String,
    pub(super) one_off: bool,
    pub(super) env: BTreeMap<String, String>,
    pub(super) slug_sha: String,
    /// The stack the slug was built on (`STACK` in the dyno).
    pub(super) stack: String,
    pub(super) holders: Vec<(NodeId, String)>,
}

/// What dyno `id` runs with; `None` when the state no longer has it, an error when it
/// cannot run (its app, release or slug is gone).
pub(super) fn launch_of(s: &State, id: Uuid) -> Result<Option<Launch>, String> {
    let Some(d) = s.dynos.get(&id) else {
        return Ok(None);
    };
    let app = s.apps.get(&d.app).ok_or("the app is gone")?;
    let release = app
        .releases
        .iter()
        .find(|r| r.version == d.release)
        .ok_or_else(|| format!("release v{} is gone", d.release))?;
    let slug = s
        .release_slug(release)
        .ok_or_else(|| format!("release v{} has no slug: deploy the app first", d.release))?;
    let mut env = release.config.to_map();
    env.extend(d.env.clone());
    let holders = slug
        .holders
        .iter()
        .filter_map(|h| s.nodes.get(h).map(|n| (n.id, n.peer_addr.clone())))
        .collect();
    let command = if d.command.is_empty() {
        slug.process_types
            .get(&d.process_type)
            .cloned()
            .unwrap_or_default()
    } else {
        d.command.clone()
    };
    Ok(Some(Launch {
        app: d.app,
        release: d.release,
        name: d.name(),
        process_type: d.process_type.clone(),
        command,
        size: d.size.clone(),
        one_off: d.one_off,
        env,
        slug_sha: slug.sha256.clone(),
        stack: slug.stack.clone(),
        holders,
    }))
}

/// Memory quota of a size, MiB (the catalog's; 512 for a size it does not know).
pub(super) fn quota_mb(size: &str) -> u64 {
    haven_raft::catalog::dyno_size(size).map_or(512, |s| s.memory_mb)
}

/// The catalog's entry for a size, standard-1x's for one it does not know.
fn size_of(size: &str) -> &'static haven_raft::catalog::DynoSize {
    use haven_raft::catalog::{dyno_size, DEFAULT_DYNO_SIZE, DYNO_SIZES};
    dyno_size(size)
        .or_else(|| dyno_size(DEFAULT_DYNO_SIZE))
        .unwrap_or(&DYNO_SIZES[0])
}

/// Heroku's process limits by size.
fn pids_limit(size: &str) -> u64 {
    size_of(size).pids_limit
}

/// The size's CPU share (`cpu.shares` units).
fn cpu_shares(size: &str) -> u64 {
    size_of(size).cpu_shares
}

/// The size's disk quota for `/app`'s changes and `/tmp`, bytes.
pub(super) fn disk_quota_bytes(size: &str) -> u64 {
    size_of(size).disk_mb * 1024 * 1024
}

/// The environment of a dyno: config vars, then Heroku's own.
pub(super) fn env_of(l: &Launch, port: Option<u16>) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = l.env.clone();
    env.insert("DYNO".into(), l.name.clone());
    env.insert("HOME".into(), "/app".into());
    env.insert(
        "PATH".into(),
        "/app/.heroku/python/bin:/app/bin:/usr/local/bin:/usr/bin:/bin".into(),
    );
    env.insert("STACK".into(), l.stack.clone());
    env.insert("DYNO_SIZE".into(), l.size.clone());
    if let Some(p) = port {
        env.insert("PORT".into(), p.to_string());
    }
    env.into_iter().collect()
}

/// The runtime spec of dyno `id`.
pub(super) fn spec_of(
    id: Uuid,
    l: &Launch,
    lease: &Lease,
    port: Option<u16>,
    stdin: bool,
    note: String,
    net: Option<DynoNet>,
) -> DynoSpec {
    let quota = quota_mb(&l.size) * 1024 * 1024;
    DynoSpec {
        id: id.to_string(),
        hostname: l.name.clone(),
        slug_dir: Some(lease.dir.clone()),
        root: lease.root.clone(),
        binds: Vec::new(),
        command: l.command.clone(),
        env: env_of(l, port),
        // Heroku kills at twice the quota (R15); between 1x and 2x it logs R14.
        memory_limit_bytes: quota * 2,
        pids_limit: pids_limit(&l.size),
        cpu_shares: cpu_shares(&l.size),
        stdin,
        // Managed dynos keep running through an agent restart; an attached one-off's
        // caller is gone with the agent anyway.
        outlives_agent: !stdin,
        note,
        net,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_map_to_limits() {
        assert_eq!(quota_mb("standard-2x"), 1024);
        assert_eq!(pids_limit("standard-1x"), 256);
        assert_eq!(pids_limit("performance-l"), 16384);
        assert_eq!(cpu_shares("standard-1x"), 1024);
        assert_eq!(cpu_shares("performance-l"), 51200);
        assert_eq!(cpu_shares("unknown"), 1024);
        assert_eq!(disk_quota_bytes("standard-1x"), 1 << 30);
        assert_eq!(disk_quota_bytes("eco"), 512 << 20);
    }
}
