//! The slug cache: extracted slugs that dynos on this node run from (design §6).
//!
//! A dyno asks for its slug by sha256. If this node lacks the compressed file it fetches it
//! from a holder over QUIC (the store checks the hash), records itself as a holder, and
//! extracts it once into `slug-cache/<sha>/`. Extracted slugs beyond the disk budget are
//! evicted least-recently-used first; a slug a dyno holds a lease on is never evicted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use haven_raft::command::Command;
use haven_raft::model::NodeId;
use haven_raft::HavenRaft;
use tracing::{info, warn};

use crate::peer::QuicConnector;
use crate::slugs::{valid_sha256, SlugStore};

#[derive(Default)]
struct Entry {
    bytes: u64,
    last_used: Option<Instant>,
    leases: usize,
}

struct Inner {
    dir: PathBuf,
    store: SlugStore,
    peers: QuicConnector,
    raft: HavenRaft,
    me: NodeId,
    budget: u64,
    entries: Mutex<HashMap<String, Entry>>,
    /// Serializes fetch+extract of one slug.
    busy: tokio::sync::Mutex<()>,
    /// The stack images dynos run on (none: always the host's root).
    stacks: Option<crate::stacks::roots::StackRoots>,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct SlugCache {
    inner: Arc<Inner>,
}

/// A slug in use by a dyno; while it lives the slug stays extracted.
pub struct Lease {
    cache: SlugCache,
    sha: String,
    pub dir: PathBuf,
    /// The unpacked run image of the slug's stack; `None`: the host's root.
    pub root: Option<PathBuf>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Ok(mut m) = self.cache.inner.entries.lock() {
            if let Some(e) = m.get_mut(&self.sha) {
                e.leases = e.leases.saturating_sub(1);
                e.last_used = Some(Instant::now());
            }
        }
    }
}

/// Bytes of the files under `path`.
pub(crate) fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&p) else {
            continue;
        };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => {}
            }
        }
    }
    total
}

impl SlugCache {
    pub fn open(
        dir: &Path,
        store: SlugStore,
        peers: QuicConnector,
        raft: HavenRaft,
        me: NodeId,
        budget: u64,
        stacks: Option<crate::stacks::roots::StackRoots>,
    ) -> std::io::Result<SlugCache> {
        std::fs::create_dir_all(dir)?;
        let mut entries = HashMap::new();
        for e in std::fs::read_dir(dir)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if valid_sha256(&name) {
                entries.insert(
                    name,
                    Entry {
                        bytes: dir_size(&e.path()),
                        last_used: None,
                        leases: 0,
                    },
                );
            } else {
                // Leftovers of an interrupted extraction.
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        Ok(SlugCache {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                store,
                peers,
                raft,
                me,
                budget,
                entries: Mutex::new(entries),
                busy: tokio::sync::Mutex::new(()),
                stacks,
            }),
        })
    }

    fn lease(&self, sha: &str) -> Lease {
        if let Ok(mut m) = self.inner.entries.lock() {
            let e = m.entry(sha.to_string()).or_default();
            e.leases += 1;
            e.last_used = Some(Instant::now());
        }
        Lease {
            cache: self.clone(),
            sha: sha.to_string(),
            dir: self.inner.dir.join(sha),
            root: None,
        }
    }

    /// The extracted slug `sha` (fetched from `holders`, peer addresses, if needed) with
    /// the run image of `stack` (the slug's) when one is imported.
    pub async fn acquire(
        &self,
        sha: &str,
        holders: &[(NodeId, String)],
        stack: Option<&str>,
    ) -> Result<Lease, String> {
        let root = match (&self.inner.stacks, stack) {
            (Some(stacks), Some(stack)) => stacks
                .root(stack, haven_raft::model::StackImageKind::Run)
                .await
                .map_err(|e| format!("the {stack} run image is not ready here: {e}"))?
                .map(|r| r.dir),
            _ => None,
        };
        let mut lease = self.acquire_slug(sha, holders).await?;
        lease.root = root;
        Ok(lease)
    }

    async fn acquire_slug(&self, sha: &str, holders: &[(NodeId, String)]) -> Result<Lease, String> {
        if !valid_sha256(sha) {
            return Err(format!("bad slug name {sha:?}"));
        }
        let _guard = self.inner.busy.lock().await;
        let dir = self.inner.dir.join(sha);
        if dir.is_dir() {
            return Ok(self.lease(sha));
        }
        if !self.inner.store.has(sha) {
            self.fetch(sha, holders).await?;
        }
        let file = self
            .inner
            .store
            .path(sha)
            .ok_or_else(|| format!("bad slug name {sha:?}"))?;
        let dest = dir.clone();
        tokio::task::spawn_blocking(move || {
            haven_buildpacks::slug::extract(&file, &dest).map_err(|e| e.to_string())?;
            // Dynos run as the dyno user: the slug's files are theirs to change in their
            // own /app overlay (as on Heroku). Without root this fails and files stay ours.
            let _ = crate::runtime::chown_tree(
                &dest,
                crate::runtime::DYNO_UID,
                crate::runtime::DYNO_GID,
            );
            Ok::<_, String>(())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("extract slug {sha}: {e}"))?;
        let bytes = dir_size(&dir);
        if let Ok(mut m) = self.inner.entries.lock() {
            m.entry(sha.to_string()).or_default().bytes = bytes;
        }
        let lease = self.lease(sha);
        self.evict();
        Ok(lease)
    }

    async fn fetch(&self, sha: &str, holders: &[(NodeId, String)]) -> Result<(), String> {
        let others: Vec<(NodeId, String)> = holders
            .iter()
            .filter(|(id, _)| *id != self.inner.me)
            .cloned()
            .collect();
        let from = self
            .inner
            .store
            .fetch_from_any(&self.inner.peers, &others, sha, false)
            .await?;
        info!(%sha, from, "fetched a slug");
        let raft = &self.inner.raft;
        let slug_id =
            raft.with_state(|s| s.slugs.values().find(|sl| sl.sha256 == sha).map(|sl| sl.id));
        if let Some(slug) = slug_id {
            let _ = raft
                .write(Command::AddSlugHolders {
                    slug,
                    nodes: vec![self.inner.me],
                })
                .await;
        }
        Ok(())
    }

    /// Removes least-recently-used extracted slugs without leases while over budget.
    fn evict(&self) {
        let victims: Vec<String> = {
            let Ok(m) = self.inner.entries.lock() else {
                return;
            };
            let mut total: u64 = m.values().map(|e| e.bytes).sum();
            let mut idle: Vec<(&String, &Entry)> =
                m.iter().filter(|(_, e)| e.leases == 0).collect();
            idle.sort_by_key(|(_, e)| e.last_used);
            let mut out = Vec::new();
            for (sha, e) in idle {
                if total <= self.inner.budget {
                    break;
                }
                total = total.saturating_sub(e.bytes);
                out.push(sha.clone());
            }
            out
        };
        for sha in victims {
            let dir = self.inner.dir.join(&sha);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {
                    info!(%sha, "evicted an extracted slug");
                    if let Ok(mut m) = self.inner.entries.lock() {
                        m.remove(&sha);
                    }
                }
                Err(e) => warn!(%sha, error = %e, "could not evict a slug"),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Packs a slug of `bytes` bytes into the store; returns its sha256.
    fn add_slug(store: &SlugStore, dir: &Path, name: &str, bytes: usize) -> String {
        let src = dir.join(format!("src-{name}"));
        std::fs::create_dir_all(&src).unwrap();
        // Random bytes do not compress: the extracted size is what we ask for.
        let data: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
        std::fs::write(src.join("blob"), data).unwrap();
        let out = dir.join(format!("{name}.tar.zst"));
        let info = haven_buildpacks::slug::pack(&src, &out, u64::MAX).unwrap();
        store.add_file(&info.sha256, &out).unwrap();
        info.sha256
    }

    #[tokio::test]
    async fn least_recently_used_idle_slugs_go_first_and_leased_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store = SlugStore::open(&dir.path().join("slugs"), u64::MAX).unwrap();
        let a = add_slug(&store, dir.path(), "a", 40_000);
        let b = add_slug(&store, dir.path(), "b", 40_000);
        let c = add_slug(&store, dir.path(), "c", 40_000);
        // Room for two extracted slugs.
        let raft = crate::testkit::single_node_raft(&dir.path().join("raft"), 1).await;
        let peers = crate::testkit::connector(1);
        let cache = SlugCache::open(
            &dir.path().join("cache"),
            store,
            peers,
            raft,
            1,
            100_000,
            None,
        )
        .unwrap();
        let lease_a = cache.acquire(&a, &[], None).await.unwrap();
        assert!(lease_a.dir.join("blob").is_file());
        drop(cache.acquire(&b, &[], None).await.unwrap());
        // a is in use: adding c evicts b (idle), not a (older but leased).
        let lease_c = cache.acquire(&c, &[], None).await.unwrap();
        assert!(lease_a.dir.is_dir(), "a slug in use was evicted");
        assert!(lease_c.dir.is_dir());
        assert!(
            !dir.path().join("cache").join(&b).exists(),
            "b should be evicted"
        );
        // Released, a is now the least recently used idle one.
        drop(lease_a);
        drop(lease_c);
        let lease_b = cache.acquire(&b, &[], None).await.unwrap();
        assert!(lease_b.dir.join("blob").is_file(), "b is extracted again");
        assert!(
            !dir.path().join("cache").join(&a).exists(),
            "a should be evicted"
        );
        // A slug no node holds cannot be had.
        let err = cache
            .acquire(&"f".repeat(64), &[], None)
            .await
            .err()
            .unwrap();
        assert!(
            err.contains("cannot reach peers") || err.contains("no holder"),
            "{err}"
        );
    }
}
