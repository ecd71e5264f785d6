//! The release history on disk: releases a node no longer keeps in memory.
//!
//! Column families:
//! - `releases`: app id (16 bytes) ++ version (big-endian u64) → bincode [`Release`], so
//!   an app's releases are one key range in version order;
//! - `release_ids`: release id (16 bytes) → app id ++ version.
//!
//! Only the state machine writes here, in the batch that records the applied log id
//! (`machine.rs`). A release moves here only once nothing changes it any more (decided,
//! not current, run by no dyno), so the copy on disk and one still in memory (after a
//! restart re-applies the log over an older snapshot) are the same release; readers
//! prefer memory and never see a release in neither place, because the move writes the
//! disk before it drops the memory copy, under the state's write lock.

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};

use anyhow::Context;
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch, DB};
use uuid::Uuid;

use crate::model::{App, Release, State};

pub(crate) const CF_RELEASES: &str = "releases";
pub(crate) const CF_RELEASE_IDS: &str = "release_ids";

/// The history families, in the order snapshots carry them (the index is the tag).
pub(crate) const HISTORY_CFS: [&str; 2] = [CF_RELEASES, CF_RELEASE_IDS];

fn release_key(app: Uuid, version: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(app.as_bytes());
    k[16..].copy_from_slice(&version.to_be_bytes());
    k
}

fn version_of_key(key: &[u8]) -> Option<u64> {
    let v: [u8; 8] = key.get(16..24)?.try_into().ok()?;
    Some(u64::from_be_bytes(v))
}

/// Read access to the release history on disk (cheap to clone). Reads combine it with
/// the releases kept in memory: call them with the state read lock held (as
/// `HavenRaft::with_state` does), so that a release being moved is seen in one place.
///
/// It does not keep the database open: once the node has shut down, reads fail.
#[derive(Clone)]
pub struct History {
    db: Weak<DB>,
}

fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    // The families are created at open; their absence is a programming error.
    db.cf_handle(name).expect("column family created at open")
}

impl History {
    pub(crate) fn new(db: &Arc<DB>) -> History {
        History {
            db: Arc::downgrade(db),
        }
    }

    fn db(&self) -> anyhow::Result<Arc<DB>> {
        self.db
            .upgrade()
            .context("the raft store is closed (the node has shut down)")
    }

    /// Release `version` of `app` on disk.
    pub fn stored(&self, app: Uuid, version: u64) -> anyhow::Result<Option<Release>> {
        let db = self.db()?;
        let raw = db
            .get_pinned_cf(cf(&db, CF_RELEASES), release_key(app, version))
            .context("read the release history")?;
        raw.map(|b| bincode::deserialize(&b).context("decode a stored release"))
            .transpose()
    }

    /// Where release `id` is on disk: its app and version.
    pub fn stored_id(&self, id: Uuid) -> anyhow::Result<Option<(Uuid, u64)>> {
        let db = self.db()?;
        let raw = db
            .get_pinned_cf(cf(&db, CF_RELEASE_IDS), id.as_bytes())
            .context("read the release ids")?;
        Ok(raw.and_then(|b| {
            let app = Uuid::from_slice(b.get(..16)?).ok()?;
            Some((app, version_of_key(&b)?))
        }))
    }

    /// Releases of `app` on disk with versions in `lo..=hi`, in version order (newest
    /// first when `descending`), at most `limit`.
    pub fn stored_range(
        &self,
        app: Uuid,
        lo: u64,
        hi: u64,
        descending: bool,
        limit: usize,
    ) -> anyhow::Result<Vec<Release>> {
        let mut out = Vec::new();
        if lo > hi || limit == 0 {
            return Ok(out);
        }
        let (from, to) = (release_key(app, lo), release_key(app, hi));
        let mode = if descending {
            IteratorMode::From(&to, Direction::Reverse)
        } else {
            IteratorMode::From(&from, Direction::Forward)
        };
        let opts = bounded(&from, &to);
        let db = self.db()?;
        for item in db.iterator_cf_opt(cf(&db, CF_RELEASES), opts, mode) {
            let (_, v) = item.context("read the release history")?;
            out.push(bincode::deserialize(&v).context("decode a stored release")?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Release `version` of `a`: from memory, else from disk.
    pub fn release(&self, a: &App, version: u64) -> anyhow::Result<Option<Release>> {
        if let Some(r) = a.releases.iter().find(|r| r.version == version) {
            return Ok(Some(r.clone()));
        }
        if version == 0 || version > a.last_version() {
            return Ok(None);
        }
        self.stored(a.id, version)
    }

    /// A release of `a` by version (`5`, `v5`) or id, from memory or disk.
    pub fn find(&self, a: &App, key: &str) -> anyhow::Result<Option<Release>> {
        if let Some(r) = a.find_release(key) {
            return Ok(Some(r.clone()));
        }
        let version = key.strip_prefix('v').unwrap_or(key).parse::<u64>().ok();
        if let Some(v) = version {
            return self.release(a, v);
        }
        let Ok(id) = key.parse::<Uuid>() else {
            return Ok(None);
        };
        match self.stored_id(id)? {
            Some((app, v)) if app == a.id => self.stored(app, v),
            _ => Ok(None),
        }
    }

    /// Releases of `a` with versions in `lo..=hi`, from memory and disk, in version order
    /// (newest first when `descending`), at most `limit`.
    pub fn window(
        &self,
        a: &App,
        lo: u64,
        hi: u64,
        descending: bool,
        limit: usize,
    ) -> anyhow::Result<Vec<Release>> {
        let hi = hi.min(a.last_version());
        let disk = self.stored_range(a.id, lo, hi, descending, limit)?;
        let mut memory: Vec<&Release> = a
            .releases
            .iter()
            .filter(|r| (lo..=hi).contains(&r.version))
            .collect();
        if descending {
            memory.reverse();
        }
        // Merge the two ordered lists; a release in both (re-applied after a restart) is
        // the same release, taken from memory.
        let mut out: Vec<Release> = Vec::with_capacity(limit.min(disk.len() + memory.len()));
        let (mut d, mut m) = (disk.into_iter().peekable(), memory.into_iter().peekable());
        let before = |x: u64, y: u64| if descending { x > y } else { x < y };
        while out.len() < limit {
            let next = match (d.peek(), m.peek()) {
                (None, None) => break,
                (Some(_), None) => d.next(),
                (None, Some(_)) => m.next().cloned(),
                (Some(x), Some(y)) if x.version == y.version => {
                    d.next();
                    m.next().cloned()
                }
                (Some(x), Some(y)) if before(x.version, y.version) => d.next(),
                _ => m.next().cloned(),
            };
            out.extend(next);
        }
        Ok(out)
    }

    /// Every release of `a`, oldest first.
    pub fn all(&self, a: &App) -> anyhow::Result<Vec<Release>> {
        self.window(a, 1, u64::MAX, false, usize::MAX)
    }

    /// Number of releases of all apps on disk (for tests and status).
    pub fn stored_count(&self) -> usize {
        self.db().map_or(0, |db| {
            db.iterator_cf(cf(&db, CF_RELEASES), IteratorMode::Start)
                .count()
        })
    }
}

/// A consistent copy of the replicated state for a backup: the model as of one applied
/// entry (`head`), and every app's releases that are not in the head's memory, read from
/// a RocksDB snapshot taken under the same lock (`lock` runs its closure with the state's
/// read lock held, as `HavenRaft::with_state` does), so the apply loop pauses only for
/// the copy of the small in-memory model.
impl History {
    pub fn export(
        &self,
        lock: impl FnOnce(&mut dyn FnMut(&State)),
        mut each: impl FnMut(Uuid, Release) -> anyhow::Result<()>,
    ) -> anyhow::Result<State> {
        let db = self.db()?;
        let mut taken = None;
        lock(&mut |s: &State| taken = Some((s.clone(), db.snapshot())));
        let (head, snap) = taken.context("the state lock did not run the copy")?;
        for item in snap.iterator_cf(cf(&db, CF_RELEASES), IteratorMode::Start) {
            let (k, v) = item.context("read the release history")?;
            let app = Uuid::from_slice(k.get(..16).context("a short release key")?)?;
            let r: Release = bincode::deserialize(&v).context("decode a stored release")?;
            let in_head = head
                .apps
                .get(&app)
                .is_some_and(|a| a.releases.iter().any(|m| m.version == r.version));
            if head.apps.contains_key(&app) && !in_head {
                each(app, r)?;
            }
        }
        Ok(head)
    }
}

/// Writes into a batch of the state machine.
impl History {
    pub(crate) fn put(&self, batch: &mut WriteBatch, app: Uuid, r: &Release) -> anyhow::Result<()> {
        let db = self.db()?;
        let key = release_key(app, r.version);
        batch.put_cf(
            cf(&db, CF_RELEASES),
            key,
            bincode::serialize(r).context("encode a release")?,
        );
        let mut at = [0u8; 24];
        at.copy_from_slice(&key);
        batch.put_cf(cf(&db, CF_RELEASE_IDS), r.id.as_bytes(), at);
        Ok(())
    }

    /// Removes every stored release of `app` (the app was deleted).
    pub(crate) fn delete_app(&self, batch: &mut WriteBatch, app: Uuid) -> anyhow::Result<()> {
        self.delete_versions(batch, app, 0, u64::MAX)
    }

    /// Removes the stored releases of `app` older than `below` (release retention).
    pub(crate) fn delete_before(
        &self,
        batch: &mut WriteBatch,
        app: Uuid,
        below: u64,
    ) -> anyhow::Result<()> {
        if below <= 1 {
            return Ok(());
        }
        self.delete_versions(batch, app, 0, below - 1)
    }

    /// Removes the stored releases of `app` with versions in `lo..=hi`, and their ids.
    fn delete_versions(
        &self,
        batch: &mut WriteBatch,
        app: Uuid,
        lo: u64,
        hi: u64,
    ) -> anyhow::Result<()> {
        let (from, to) = (release_key(app, lo), release_key(app, hi));
        let opts = bounded(&from, &to);
        let db = self.db()?;
        let it = db.iterator_cf_opt(
            cf(&db, CF_RELEASES),
            opts,
            IteratorMode::From(&from, Direction::Forward),
        );
        for item in it {
            let (k, v) = item.context("read the release history")?;
            let r: Release = bincode::deserialize(&v).context("decode a stored release")?;
            batch.delete_cf(cf(&db, CF_RELEASE_IDS), r.id.as_bytes());
            batch.delete_cf(cf(&db, CF_RELEASES), k);
        }
        Ok(())
    }

    /// Removes the whole history (a snapshot replaces it).
    pub(crate) fn clear(&self, batch: &mut WriteBatch) -> anyhow::Result<()> {
        let db = self.db()?;
        for name in HISTORY_CFS {
            batch.delete_range_cf(cf(&db, name), &[][..], &[0xffu8; 33][..]);
        }
        Ok(())
    }

    /// Puts a raw record of family `tag` (as snapshots carry them).
    pub(crate) fn put_raw(
        &self,
        batch: &mut WriteBatch,
        tag: u8,
        key: &[u8],
        value: &[u8],
    ) -> anyhow::Result<()> {
        let name = HISTORY_CFS
            .get(usize::from(tag))
            .with_context(|| format!("unknown history family {tag} in a snapshot"))?;
        let db = self.db()?;
        batch.put_cf(cf(&db, name), key, value);
        Ok(())
    }
}

/// Which releases of which apps leave memory: all but the newest `keep` of each app, the
/// current one, pending ones and those a dyno runs. Indexes into `App::releases`,
/// ascending.
pub(crate) fn evictions(state: &State, keep: usize) -> Vec<(Uuid, Vec<usize>)> {
    let keep = keep.max(1);
    let crowded: Vec<&App> = state
        .apps
        .values()
        .filter(|a| a.releases.len() > keep)
        .collect();
    if crowded.is_empty() {
        return Vec::new();
    }
    let run: BTreeSet<(Uuid, u64)> = state.dynos.values().map(|d| (d.app, d.release)).collect();
    let mut out = Vec::new();
    for a in crowded {
        let current = a.current_release().map(|r| r.version);
        let newest_from = a.releases.len() - keep;
        let gone: Vec<usize> = a.releases[..newest_from]
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.status != crate::model::ReleaseStatus::Pending
                    && Some(r.version) != current
                    && !run.contains(&(a.id, r.version))
            })
            .map(|(i, _)| i)
            .collect();
        if !gone.is_empty() {
            out.push((a.id, gone));
        }
    }
    out
}

/// A digest of the replicated state as a whole: the model with every app's full release
/// history (memory and disk), so that it does not depend on which releases a node keeps
/// in memory. FNV-1a over the bincode encoding: the same on every node and build.
pub(crate) fn digest(state: &State, history: &History) -> anyhow::Result<u64> {
    let mut whole = state.clone();
    for a in whole.apps.values_mut() {
        a.releases = history.all(a)?;
    }
    let bytes = bincode::serialize(&whole)?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    Ok(h)
}

/// Read options that keep a scan within `from..=to` (one app's keys).
fn bounded(from: &[u8], to: &[u8]) -> ReadOptions {
    let mut opts = ReadOptions::default();
    opts.set_iterate_lower_bound(from.to_vec());
    let mut upper = to.to_vec();
    upper.push(0);
    opts.set_iterate_upper_bound(upper);
    opts
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::command::fixtures::{create, set};
    use crate::model::{ConfigVars, ReleaseStatus};

    /// A history over a fresh database; the caller keeps the database open (the state
    /// machine does in a node).
    fn open() -> (tempfile::TempDir, Arc<DB>, History) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::storage::open_db(&dir.path().join("raft")).unwrap();
        let h = History::new(&db);
        (dir, db, h)
    }

    fn release(version: u64) -> Release {
        Release {
            id: Uuid::from_u128(1000 + u128::from(version)),
            version,
            slug: None,
            config: ConfigVars::new(BTreeMap::from([("V".into(), version.to_string())])),
            description: format!("v{version}"),
            status: ReleaseStatus::Succeeded,
            created_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            user: "a@b".into(),
        }
    }

    fn versions(rs: &[Release]) -> Vec<u64> {
        rs.iter().map(|r| r.version).collect()
    }

    /// An app with releases 1..=10 of which 1..=7 are on disk and 6..=10 in memory (6
    /// and 7 in both, as after a restart that re-applied them).
    fn app_half_on_disk(h: &History) -> App {
        let mut s = State::default();
        let id = create(&mut s, "my-app");
        let mut a = s.apps.remove(&id).unwrap();
        a.releases = (6..=10).map(release).collect();
        let mut batch = WriteBatch::default();
        for v in 1..=7 {
            h.put(&mut batch, id, &release(v)).unwrap();
        }
        // Another app's history, next to it in key order.
        h.put(&mut batch, Uuid::from_u128(id.as_u128() + 1), &release(1))
            .unwrap();
        h.db().unwrap().write(batch).unwrap();
        a
    }

    #[test]
    fn reads_merge_memory_and_disk() {
        let (_dir, _db, h) = open();
        let a = app_half_on_disk(&h);
        assert_eq!(versions(&h.all(&a).unwrap()), (1..=10).collect::<Vec<_>>());
        assert_eq!(versions(&h.window(&a, 1, 99, false, 3).unwrap()), [1, 2, 3]);
        assert_eq!(versions(&h.window(&a, 1, 99, true, 3).unwrap()), [10, 9, 8]);
        assert_eq!(
            versions(&h.window(&a, 4, 8, false, 99).unwrap()),
            [4, 5, 6, 7, 8]
        );
        assert_eq!(
            versions(&h.window(&a, 4, 8, true, 99).unwrap()),
            [8, 7, 6, 5, 4]
        );
        assert!(h.window(&a, 5, 4, false, 9).unwrap().is_empty());
        assert!(h.window(&a, 1, 9, false, 0).unwrap().is_empty());
        assert_eq!(h.find(&a, "v2").unwrap(), Some(release(2)));
        assert_eq!(h.find(&a, "9").unwrap(), Some(release(9)));
        assert_eq!(
            h.find(&a, &release(3).id.to_string()).unwrap(),
            Some(release(3))
        );
        // Release 9's id is in memory only; 11 does not exist; 0 never does.
        assert_eq!(
            h.find(&a, &release(9).id.to_string()).unwrap(),
            Some(release(9))
        );
        assert_eq!(h.find(&a, "v11").unwrap(), None);
        assert_eq!(h.find(&a, "0").unwrap(), None);
        assert_eq!(h.find(&a, "nonsense").unwrap(), None);
        assert_eq!(h.stored_id(release(4).id).unwrap(), Some((a.id, 4)));
        assert_eq!(h.stored_count(), 8);
    }

    #[test]
    fn an_id_of_another_app_is_not_found() {
        let (_dir, _db, h) = open();
        let mut a = app_half_on_disk(&h);
        a.id = Uuid::from_u128(7);
        assert_eq!(h.find(&a, &release(3).id.to_string()).unwrap(), None);
    }

    #[test]
    fn deleting_an_app_removes_its_history_only() {
        let (_dir, _db, h) = open();
        let a = app_half_on_disk(&h);
        let mut batch = WriteBatch::default();
        h.delete_app(&mut batch, a.id).unwrap();
        h.db().unwrap().write(batch).unwrap();
        assert_eq!(h.stored(a.id, 3).unwrap(), None);
        assert_eq!(h.stored_id(release(3).id).unwrap(), None);
        // The neighbour's release 1 is still there (its id was shared in this test, so
        // look it up by key).
        assert_eq!(
            h.stored(Uuid::from_u128(a.id.as_u128() + 1), 1).unwrap(),
            Some(release(1))
        );
        let mut batch = WriteBatch::default();
        h.clear(&mut batch).unwrap();
        h.db().unwrap().write(batch).unwrap();
        assert_eq!(h.stored_count(), 0);
    }

    #[test]
    fn evictions_keep_the_newest_the_current_pending_and_running_ones() {
        let mut s = State::default();
        let id = create(&mut s, "my-app");
        for n in 0..20 {
            let v = n.to_string();
            set(id, &[("N", Some(v.as_str()))]).apply(&mut s).unwrap();
        }
        // v21 is the newest; make v20 and v21 failed so v19 is current, v5 pending and
        // v3 run by a dyno.
        let a = s.apps.get_mut(&id).unwrap();
        a.releases[19].status = ReleaseStatus::Failed;
        a.releases[20].status = ReleaseStatus::Failed;
        a.releases[4].status = ReleaseStatus::Pending;
        let d = crate::model::Dyno::placed(
            Uuid::new_v4(),
            id,
            "web",
            1,
            3,
            "basic",
            1,
            String::new(),
            chrono::Utc::now(),
        );
        s.dynos.insert(d.id, d);
        let moved = evictions(&s, 2);
        assert_eq!(moved.len(), 1);
        let kept: Vec<u64> = s.apps[&id]
            .releases
            .iter()
            .enumerate()
            .filter(|(i, _)| !moved[0].1.contains(i))
            .map(|(_, r)| r.version)
            .collect();
        assert_eq!(kept, [3, 5, 19, 20, 21]);
        assert!(evictions(&s, 30).is_empty());
    }
}
