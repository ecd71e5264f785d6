//! Keeping slugs where they are needed (issue 18, item 2): on the leader, a slug (or a
//! finished Postgres backup's dump) whose live holders fall below min(3, up nodes) — a
//! holder down past `[dynos] voter_replace_after_secs`, or gone — is copied again,
//! through the leader (it fetches the blob from a live holder if it lacks it, then
//! pushes it to up nodes that lack it), and the new holders are recorded
//! (`AddSlugHolders`, `AddBackupHolders`). On every node, blobs of the slug
//! store that the state no longer names (slugs of deleted apps, Postgres backups deleted
//! or expired) are removed once older than `[builds] slug_gc_grace_secs`, which also
//! spares a slug a build has written but not recorded yet.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use haven_raft::command::Command;
use haven_raft::model::{NodeId, NodeStatus};
use haven_raft::HavenRaft;
use tokio::sync::watch;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::events::Events;
use crate::peer::QuicConnector;
use crate::slugs::SlugStore;

/// How many nodes a slug should be on (fewer when fewer nodes are up).
pub const COPIES: usize = 3;

/// What a blob short of holders is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    Slug,
    Backup,
}

/// A slug (or backup dump) that needs copies: where it can be read, and which up nodes
/// lack it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub kind: Held,
    /// The slug's or the backup's id.
    pub slug: Uuid,
    pub sha: String,
    /// Up holders to read it from.
    pub sources: Vec<NodeId>,
    /// Up nodes without it, as many as it lacks.
    pub targets: Vec<NodeId>,
}

/// The slugs that lack copies (pure): live holders are those not `dead` and still in
/// the cluster; a slug with no up holder cannot be helped.
pub fn shortfalls(s: &haven_raft::model::State, dead: &BTreeSet<NodeId>) -> Vec<Shortfall> {
    let up: Vec<NodeId> = s
        .nodes
        .values()
        .filter(|n| n.status == NodeStatus::Up)
        .map(|n| n.id)
        .collect();
    let want = COPIES.min(up.len());
    let mut out = Vec::new();
    let blobs = s
        .slugs
        .values()
        .map(|sl| (Held::Slug, sl.id, sl.sha256.clone(), sl.holders.clone()))
        .chain(s.backups.values().filter_map(|b| {
            let sha = b.sha256.clone()?;
            Some((Held::Backup, b.id, sha, b.holders.iter().copied().collect()))
        }));
    for (kind, id, sha, holders) in blobs {
        let live = holders
            .iter()
            .filter(|h| s.nodes.contains_key(h) && !dead.contains(h))
            .count();
        if live >= want {
            continue;
        }
        let sources: Vec<NodeId> = holders.iter().filter(|h| up.contains(h)).copied().collect();
        if sources.is_empty() {
            continue;
        }
        let targets: Vec<NodeId> = up
            .iter()
            .filter(|n| !holders.contains(n))
            .take(want - live)
            .copied()
            .collect();
        if !targets.is_empty() {
            out.push(Shortfall {
                kind,
                slug: id,
                sha,
                sources,
                targets,
            });
        }
    }
    out
}

/// The leader's re-replication. Cheap to clone.
#[derive(Clone)]
pub struct Keeper {
    me: NodeId,
    raft: HavenRaft,
    store: SlugStore,
    peers: QuicConnector,
    events: Events,
    in_flight: Arc<Mutex<HashSet<Uuid>>>,
    /// When the last scan ran: the leader's loop runs every 50–200 ms, a scan of every
    /// slug at most every [`SCAN_EVERY`].
    last_scan: Arc<Mutex<Option<Instant>>>,
}

/// Least time between two scans for slugs short of holders.
const SCAN_EVERY: Duration = Duration::from_secs(1);

impl Keeper {
    pub fn new(
        me: NodeId,
        raft: HavenRaft,
        store: SlugStore,
        peers: QuicConnector,
        events: Events,
    ) -> Keeper {
        Keeper {
            me,
            raft,
            store,
            peers,
            events,
            in_flight: Arc::default(),
            last_scan: Arc::default(),
        }
    }

    /// One round on the leader: starts a copy of every slug short of holders (each in
    /// its own task, one at a time per slug). `down_since` is the leader's.
    pub fn round(&self, down_since: &HashMap<NodeId, Instant>, after: Duration) {
        let now = Instant::now();
        let due = self.last_scan.lock().is_ok_and(|mut last| {
            let due = last.is_none_or(|t| now.duration_since(t) >= SCAN_EVERY);
            if due {
                *last = Some(now);
            }
            due
        });
        if !due {
            return;
        }
        let dead: BTreeSet<NodeId> = down_since
            .iter()
            .filter(|(_, t)| now.duration_since(**t) >= after)
            .map(|(id, _)| *id)
            .collect();
        for short in self.raft.with_state(|s| shortfalls(s, &dead)) {
            let fresh = self
                .in_flight
                .lock()
                .map(|mut f| f.insert(short.slug))
                .unwrap_or(false);
            if !fresh {
                continue;
            }
            let keeper = self.clone();
            tokio::spawn(async move {
                let slug = short.slug;
                if let Err(e) = keeper.copy(&short).await {
                    warn!(%slug, error = %e, "could not copy a slug short of holders");
                }
                if let Ok(mut f) = keeper.in_flight.lock() {
                    f.remove(&slug);
                }
            });
        }
    }

    async fn copy(&self, short: &Shortfall) -> Result<(), String> {
        let addr = |id: &NodeId| {
            self.raft.with_state(|s| {
                s.nodes
                    .get(id)
                    .map(|n| (n.name.clone(), n.peer_addr.clone()))
            })
        };
        let mut added = Vec::new();
        if !self.store.has(&short.sha) {
            let mut errors = Vec::new();
            for src in &short.sources {
                let Some((_, a)) = addr(src) else { continue };
                match self.store.fetch_from(&self.peers, &a, &short.sha).await {
                    Ok(()) => break,
                    Err(e) => errors.push(e),
                }
            }
            if !self.store.has(&short.sha) {
                return Err(format!("no live holder sent it: {}", errors.join("; ")));
            }
            if short.targets.contains(&self.me) {
                added.push(self.me);
            }
        } else if short.targets.contains(&self.me) {
            added.push(self.me);
        }
        for t in short.targets.iter().filter(|t| **t != self.me) {
            let Some((name, a)) = addr(t) else { continue };
            match self.store.push_to(&self.peers, &a, &short.sha).await {
                Ok(()) => added.push(*t),
                Err(e) => debug!(node = %name, error = %e, "slug copy refused"),
            }
        }
        if added.is_empty() {
            return Err("no node took a copy".into());
        }
        let names: Vec<String> = added
            .iter()
            .filter_map(|id| addr(id).map(|(n, _)| n))
            .collect();
        let (cmd, what) = match short.kind {
            Held::Slug => (
                Command::AddSlugHolders {
                    slug: short.slug,
                    nodes: added,
                },
                "slug",
            ),
            Held::Backup => (
                Command::AddBackupHolders {
                    backup: short.slug,
                    nodes: added,
                },
                "backup",
            ),
        };
        match self.raft.write(cmd).await {
            Ok(Ok(_)) => {
                info!(id = %short.slug, what, "copied a blob short of holders");
                self.events.record(
                    "slugs",
                    format!(
                        "copied {what} {} to {}: its holders were down or gone",
                        &short.sha[..12.min(short.sha.len())],
                        names.join(", ")
                    ),
                );
                Ok(())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The blobs of this node's store the state does not name (pure): neither a slug, a
/// backup nor a stack image, and older than `grace`.
pub fn garbage(
    s: &haven_raft::model::State,
    held: &[(String, SystemTime)],
    now: SystemTime,
    grace: Duration,
) -> Vec<String> {
    let named: HashSet<&str> = s
        .slugs
        .values()
        .map(|sl| sl.sha256.as_str())
        .chain(s.backups.values().filter_map(|b| b.sha256.as_deref()))
        .chain(s.stack_images.values().map(|i| i.sha256.as_str()))
        .collect();
    held.iter()
        .filter(|(sha, at)| {
            !named.contains(sha.as_str()) && now.duration_since(*at).unwrap_or_default() >= grace
        })
        .map(|(sha, _)| sha.clone())
        .collect()
}

/// Every node: removes the store's garbage every `grace` (at most every 10 minutes),
/// after a read barrier so that a lagging replica does not remove what it has not heard
/// of yet.
pub async fn collect(
    raft: HavenRaft,
    store: SlugStore,
    grace: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = grace.clamp(Duration::from_secs(1), Duration::from_secs(600));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        if raft.read_barrier().await.is_err() {
            continue;
        }
        let held = store.list();
        let gone = raft.with_state(|s| garbage(s, &held, SystemTime::now(), grace));
        for sha in gone {
            match store.remove(&sha) {
                Ok(()) => info!(%sha, "removed a blob no release or backup names"),
                Err(e) => debug!(%sha, error = %e, "could not remove a blob"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haven_raft::model::{Node, Slug, State};

    fn node(id: NodeId, up: bool) -> Node {
        Node {
            id,
            name: format!("n{id}"),
            peer_addr: String::new(),
            api_url: String::new(),
            router_url: String::new(),
            memory_mb: 1024,
            cpus: 1,
            labels: Default::default(),
            status: if up { NodeStatus::Up } else { NodeStatus::Down },
            draining: false,
            joined_at: chrono::Utc::now(),
        }
    }

    fn state(nodes: &[(NodeId, bool)], holders: &[NodeId]) -> (State, Uuid) {
        let mut s = State::default();
        for (id, up) in nodes {
            s.nodes.insert(*id, node(*id, *up));
        }
        let id = Uuid::new_v4();
        s.slugs.insert(
            id,
            Slug {
                id,
                app: Uuid::new_v4(),
                sha256: "a".repeat(64),
                size: 1,
                process_types: Default::default(),
                holders: holders.iter().copied().collect(),
                commit: None,
                stack: "heroku-24".into(),
                buildpack_provided_description: None,
                created_at: chrono::Utc::now(),
            },
        );
        (s, id)
    }

    #[test]
    fn a_slug_whose_holders_died_is_copied_to_up_nodes() {
        let (s, id) = state(&[(1, true), (2, false), (3, true), (4, true)], &[1, 2, 3]);
        // Down, but not for long yet: nothing.
        assert!(shortfalls(&s, &BTreeSet::new()).is_empty());
        let dead = BTreeSet::from([2]);
        let short = shortfalls(&s, &dead);
        assert_eq!(short.len(), 1);
        assert_eq!(short[0].slug, id);
        assert_eq!(short[0].sources, vec![1, 3]);
        assert_eq!(short[0].targets, vec![4]);
        // Two nodes up: two copies are enough.
        let (s, _) = state(&[(1, true), (2, false), (3, true)], &[1, 3]);
        assert!(shortfalls(&s, &BTreeSet::from([2])).is_empty());
        // No up holder: nothing can be done.
        let (s, _) = state(&[(1, false), (2, true)], &[1]);
        assert!(shortfalls(&s, &BTreeSet::from([1])).is_empty());
    }

    #[test]
    fn a_backup_dump_whose_holders_died_is_copied_too() {
        let (mut s, _) = state(&[(1, true), (2, false), (3, true), (4, true)], &[1, 3, 4]);
        let id = Uuid::new_v4();
        s.backups.insert(
            id,
            haven_raft::model::Backup {
                id,
                number: 1,
                app: Uuid::new_v4(),
                addon: Uuid::new_v4(),
                addon_name: "postgresql-curved-12345".into(),
                node: 1,
                status: haven_raft::model::BackupStatus::Completed,
                started_at: chrono::Utc::now(),
                finished_at: Some(chrono::Utc::now()),
                size: 1,
                sha256: Some("d".repeat(64)),
                holders: vec![1, 2],
                scheduled: false,
            },
        );
        let short = shortfalls(&s, &BTreeSet::from([2]));
        assert_eq!(short.len(), 1, "{short:?}");
        assert_eq!(short[0].kind, Held::Backup);
        assert_eq!(short[0].slug, id);
        assert_eq!(short[0].sources, vec![1]);
        assert_eq!(short[0].targets, vec![3, 4]);
    }

    #[test]
    fn only_old_blobs_the_state_does_not_name_are_garbage() {
        let (s, _) = state(&[(1, true)], &[1]);
        let now = SystemTime::now();
        let old = now - Duration::from_secs(7200);
        let held = vec![
            ("a".repeat(64), old),
            ("b".repeat(64), old),
            ("c".repeat(64), now),
        ];
        assert_eq!(
            garbage(&s, &held, now, Duration::from_secs(3600)),
            vec!["b".repeat(64)]
        );
    }
}
