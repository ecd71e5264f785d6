//! The state machine: the model in memory (every resource, but only the newest releases
//! of each app), the release history on disk (`history.rs`), and snapshots of both.
//!
//! Each `apply` ends with one RocksDB batch: the releases that leave memory, the history
//! of deleted apps removed, the releases compacted away (`CompactReleases`), and the
//! `applied` key (the last applied log id and the
//! membership). The batch is not synced by itself: the log it follows is, and a later
//! synced write (the next append) carries it to disk with the WAL; a lost tail is
//! re-applied from the log.
//!
//! On start the model comes from the latest snapshot and openraft re-applies the
//! committed entries after it. The history on disk is then at least as new as the
//! snapshot (`applied` ≥ the snapshot's last log id: the snapshot's synced write came
//! after it; a store where it is older is refused) and the re-applied entries write the
//! same releases again (they are decided and immutable, keyed by app and version) or
//! delete a deleted app's, so replay converges to where the node was.
//!
//! A snapshot on the wire is the head (last applied, membership, the in-memory model) in
//! bincode, then every history record `Some((family, key, value))`, then `None`. Only
//! the head is built and stored (`snapshot_data`): building a snapshot copies the small
//! in-memory model, never the history. The history is appended when a snapshot is read
//! to be sent (`get_current_snapshot`, on the state machine's task, so between two
//! applies): it is then at least as new as the head, and the follower that installs it
//! applies the log after the snapshot next, which rewrites the same history (see
//! above); reads wait for that behind the read barrier. A snapshot of the old format
//! (everything in the head, no history) still loads.

// openraft's `StorageError` is large, and it is the error type its traits require.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder,
    SnapshotMeta, StoredMembership,
};
use rocksdb::{IteratorMode, WriteBatch, DB};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::history::{evictions, History, HISTORY_CFS};
use super::{io_err, synced, Entry, SErr};
use crate::command::{Command, CommandResult};
use crate::model::{NodeId, State};
use crate::TypeConfig;

pub(crate) const CF_SM: &str = "sm";

/// The snapshot as stored before the history moved to disk: meta and data in one value.
const KEY_SNAPSHOT: &[u8] = b"snapshot";
const KEY_SNAPSHOT_META: &[u8] = b"snapshot_meta";
const KEY_SNAPSHOT_DATA: &[u8] = b"snapshot_data";
const KEY_APPLIED: &[u8] = b"applied";

/// The head of a snapshot (all of one, before the history moved to disk).
#[derive(Serialize, Deserialize)]
struct SnapshotHead {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    state: State,
}

/// What the state machine has applied, written with every apply's batch.
#[derive(Serialize, Deserialize)]
struct Applied {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
}

/// The snapshot format before the history moved to disk.
#[derive(Serialize, Deserialize)]
struct OldStoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

type Record = (u8, Vec<u8>, Vec<u8>);

fn snap_err(verb: ErrorVerb, e: impl std::fmt::Display) -> SErr {
    io_err(
        ErrorSubject::Snapshot(None),
        verb,
        std::io::Error::other(e.to_string()),
    )
}

fn sm_err(verb: ErrorVerb, e: impl std::fmt::Display) -> SErr {
    io_err(
        ErrorSubject::StateMachine,
        verb,
        std::io::Error::other(e.to_string()),
    )
}

fn sm_cf(db: &DB) -> &rocksdb::ColumnFamily {
    // The families are created at open; their absence is a programming error.
    db.cf_handle(CF_SM).expect("column family created at open")
}

/// Splits snapshot data into its head, the head's length in bytes and its history
/// records.
fn decode(data: &[u8]) -> Result<(SnapshotHead, usize, Vec<Record>), SErr> {
    let mut cur = Cursor::new(data);
    let head: SnapshotHead =
        bincode::deserialize_from(&mut cur).map_err(|e| snap_err(ErrorVerb::Read, e))?;
    let head_len = cur.position() as usize;
    let mut records = Vec::new();
    // A snapshot of the old format ends with its head.
    while (cur.position() as usize) < data.len() {
        let rec: Option<Record> =
            bincode::deserialize_from(&mut cur).map_err(|e| snap_err(ErrorVerb::Read, e))?;
        match rec {
            Some(r) => records.push(r),
            None => break,
        }
    }
    Ok((head, head_len, records))
}

/// Appends the history as the database holds it now to a snapshot's head, and the end.
fn append_history(db: &DB, data: &mut Vec<u8>) -> anyhow::Result<()> {
    for (tag, name) in HISTORY_CFS.iter().enumerate() {
        let cf = db
            .cf_handle(name)
            .ok_or_else(|| anyhow::anyhow!("no column family {name}"))?;
        for item in db.iterator_cf(cf, IteratorMode::Start) {
            let (k, v) = item?;
            bincode::serialize_into(&mut *data, &Some((tag as u8, &*k, &*v)))?;
        }
    }
    bincode::serialize_into(&mut *data, &None::<(u8, &[u8], &[u8])>)?;
    Ok(())
}

fn read_snapshot(db: &DB) -> Result<Option<(SnapshotMeta<NodeId, BasicNode>, Vec<u8>)>, SErr> {
    let read = |key| {
        db.get_cf(sm_cf(db), key)
            .map_err(|e| snap_err(ErrorVerb::Read, e))
    };
    if let (Some(meta), Some(data)) = (read(KEY_SNAPSHOT_META)?, read(KEY_SNAPSHOT_DATA)?) {
        let meta = bincode::deserialize(&meta).map_err(|e| snap_err(ErrorVerb::Read, e))?;
        return Ok(Some((meta, data)));
    }
    match read(KEY_SNAPSHOT)? {
        None => Ok(None),
        Some(b) => {
            let old: OldStoredSnapshot =
                bincode::deserialize(&b).map_err(|e| snap_err(ErrorVerb::Read, e))?;
            Ok(Some((old.meta, old.data)))
        }
    }
}

fn read_snapshot_meta(db: &DB) -> Result<Option<SnapshotMeta<NodeId, BasicNode>>, SErr> {
    match db
        .get_pinned_cf(sm_cf(db), KEY_SNAPSHOT_META)
        .map_err(|e| snap_err(ErrorVerb::Read, e))?
    {
        Some(b) => bincode::deserialize(&b)
            .map(Some)
            .map_err(|e| snap_err(ErrorVerb::Read, e)),
        None => Ok(read_snapshot(db)?.map(|(m, _)| m)),
    }
}

/// Serializes writes of the stored snapshot and numbers the snapshots built.
#[derive(Default)]
struct SnapshotSlot {
    write: Mutex<()>,
    built: AtomicU64,
}

/// Stores a snapshot unless a newer one is stored already (a snapshot built in the
/// background may finish after a newer one was installed).
fn write_snapshot(
    db: &DB,
    slot: &SnapshotSlot,
    meta: &SnapshotMeta<NodeId, BasicNode>,
    data: &[u8],
) -> Result<(), SErr> {
    let _guard = slot.write.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(current) = read_snapshot_meta(db)? {
        if current.last_log_id > meta.last_log_id {
            return Ok(());
        }
    }
    let mut batch = WriteBatch::default();
    let cf = sm_cf(db);
    batch.put_cf(
        cf,
        KEY_SNAPSHOT_META,
        bincode::serialize(meta).map_err(|e| snap_err(ErrorVerb::Write, e))?,
    );
    batch.put_cf(cf, KEY_SNAPSHOT_DATA, data);
    batch.delete_cf(cf, KEY_SNAPSHOT);
    db.write_opt(batch, &synced())
        .map_err(|e| snap_err(ErrorVerb::Write, e))
}

/// The state machine: the model in memory, shared with readers, and the history on disk.
#[derive(Clone)]
pub struct StateMachineStore {
    db: Arc<DB>,
    pub state: Arc<RwLock<State>>,
    pub(crate) history: History,
    /// Releases of each app kept in memory (`[raft] releases_in_memory`).
    keep: usize,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    snapshots: Arc<SnapshotSlot>,
}

impl StateMachineStore {
    /// Opens the state machine, restoring the persisted snapshot if there is one; keeps
    /// the newest `keep` releases of each app in memory.
    pub fn new(db: Arc<DB>, keep: usize) -> Result<StateMachineStore, SErr> {
        let mut sm = StateMachineStore {
            history: History::new(&db),
            db,
            state: Arc::new(RwLock::new(State::default())),
            keep: keep.max(1),
            last_applied: None,
            membership: StoredMembership::default(),
            snapshots: Arc::default(),
        };
        if let Some((meta, data)) = read_snapshot(&sm.db)? {
            let (head, _, _) = decode(&data)?;
            if let Some(applied) = sm.read_applied()? {
                if applied.last_applied < meta.last_log_id {
                    // Releases moved to disk before the snapshot would be missing.
                    return Err(sm_err(
                        ErrorVerb::Read,
                        format!(
                            "the release history is older ({:?}) than the snapshot ({:?})",
                            applied.last_applied, meta.last_log_id
                        ),
                    ));
                }
            }
            sm.last_applied = head.last_applied;
            sm.membership = head.membership;
            *sm.state.write().unwrap_or_else(|p| p.into_inner()) = head.state;
            // Honour this node's `keep` at once (the snapshot may come from another).
            let mut state = sm.state.write().unwrap_or_else(|p| p.into_inner());
            sm.persist(&mut state, &[], &[], false)?;
        }
        Ok(sm)
    }

    fn read_applied(&self) -> Result<Option<Applied>, SErr> {
        let raw = self
            .db
            .get_pinned_cf(sm_cf(&self.db), KEY_APPLIED)
            .map_err(|e| sm_err(ErrorVerb::Read, e))?;
        raw.map(|b| bincode::deserialize(&b).map_err(|e| sm_err(ErrorVerb::Read, e)))
            .transpose()
    }

    /// Replaces the whole history with a snapshot's records and records the snapshot as
    /// applied, in one synced batch.
    fn replace_history(
        &self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        records: Vec<Record>,
    ) -> Result<(), SErr> {
        let mut batch = WriteBatch::default();
        self.history
            .clear(&mut batch)
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        for (tag, k, v) in &records {
            self.history
                .put_raw(&mut batch, *tag, k, v)
                .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        }
        put_applied(
            &self.db,
            &mut batch,
            &Applied {
                last_applied: meta.last_log_id,
                membership: meta.last_membership.clone(),
            },
        )
        .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        self.db
            .write_opt(batch, &synced())
            .map_err(|e| snap_err(ErrorVerb::Write, e))
    }

    /// Writes one batch: the history of `deleted` apps removed, the releases beyond
    /// `keep` moved to disk, and (with `record`) the applied log id; then drops the moved
    /// releases from memory. Called with the state's write lock held.
    fn persist(
        &self,
        state: &mut State,
        deleted: &[Uuid],
        compacted: &[(Uuid, u64)],
        record: bool,
    ) -> Result<(), SErr> {
        let w = |e: anyhow::Error| sm_err(ErrorVerb::Write, e);
        let mut batch = WriteBatch::default();
        for app in deleted {
            self.history.delete_app(&mut batch, *app).map_err(w)?;
        }
        for (app, below) in compacted {
            self.history
                .delete_before(&mut batch, *app, *below)
                .map_err(w)?;
        }
        let moved = evictions(state, self.keep);
        for (app, idx) in &moved {
            if let Some(a) = state.apps.get(app) {
                for &i in idx {
                    self.history
                        .put(&mut batch, *app, &a.releases[i])
                        .map_err(w)?;
                }
            }
        }
        if record {
            put_applied(
                &self.db,
                &mut batch,
                &Applied {
                    last_applied: self.last_applied,
                    membership: self.membership.clone(),
                },
            )
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.db
            .write(batch)
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        for (app, idx) in moved {
            let Some(a) = state.apps.get_mut(&app) else {
                continue;
            };
            let mut gone = idx.into_iter().peekable();
            let mut i = 0;
            a.releases.retain(|_| {
                let drop = gone.next_if_eq(&i).is_some();
                i += 1;
                !drop
            });
            if a.releases.capacity() > 2 * a.releases.len() + 8 {
                a.releases.shrink_to_fit();
            }
        }
        Ok(())
    }
}

/// Builds a snapshot's head from a copy of the model taken when openraft asked for the
/// builder: openraft builds in a background task while entries keep being applied, so
/// the shared model must not be read then (it would run ahead of `last_applied`). The
/// copy is small: old releases are on disk, and not part of what is built.
pub struct SnapshotBuilder {
    db: Arc<DB>,
    snapshots: Arc<SnapshotSlot>,
    head: SnapshotHead,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    /// Stores the head. The snapshot returned holds the head alone (no history): openraft
    /// 0.9 keeps only the meta of a built snapshot (`core/sm/worker.rs`) and sends what
    /// `get_current_snapshot` reads, which appends the history.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SErr> {
        let mut data = bincode::serialize(&self.head).map_err(|e| snap_err(ErrorVerb::Write, e))?;
        let seq = self.snapshots.built.fetch_add(1, AtomicOrdering::SeqCst) + 1;
        let snapshot_id = match self.head.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, seq),
            None => format!("--{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: self.head.last_applied,
            last_membership: self.head.membership.clone(),
            snapshot_id,
        };
        write_snapshot(&self.db, &self.snapshots, &meta, &data)?;
        bincode::serialize_into(&mut data, &None::<(u8, &[u8], &[u8])>)
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), SErr> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, SErr>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        let mut deleted = Vec::new();
        let mut compacted = Vec::new();
        let state_lock = self.state.clone();
        let mut state = state_lock.write().unwrap_or_else(|p| p.into_inner());
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => out.push(Ok(Default::default())),
                EntryPayload::Normal(cmd) => {
                    let result = cmd.apply(&mut state);
                    match (&result, &cmd) {
                        (Ok(_), Command::DeleteApp { app }) => deleted.push(*app),
                        (Ok(_), Command::CompactReleases { app, below, .. }) => {
                            compacted.push((*app, *below))
                        }
                        _ => {}
                    }
                    out.push(result);
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    out.push(Ok(Default::default()));
                }
            }
        }
        self.persist(&mut state, &deleted, &compacted, true)?;
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let head = SnapshotHead {
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            state: self.state.read().unwrap_or_else(|p| p.into_inner()).clone(),
        };
        SnapshotBuilder {
            db: self.db.clone(),
            snapshots: self.snapshots.clone(),
            head,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, SErr> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), SErr> {
        let data = snapshot.into_inner();
        let (head, head_len, records) = decode(&data)?;
        {
            let state_lock = self.state.clone();
            let mut state = state_lock.write().unwrap_or_else(|p| p.into_inner());
            self.replace_history(meta, records)?;
            *state = head.state;
            // The snapshot's meta is authoritative for what it covers.
            self.last_applied = meta.last_log_id;
            self.membership = meta.last_membership.clone();
            self.persist(&mut state, &[], &[], true)?;
        }
        // Stored without the history, which is in its families now.
        write_snapshot(&self.db, &self.snapshots, meta, &data[..head_len])
    }

    /// The stored head with the history as it is now (see the module's comment).
    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SErr> {
        let Some((meta, data)) = read_snapshot(&self.db)? else {
            return Ok(None);
        };
        // What is stored is a head alone (of either format).
        let mut data = data;
        append_history(&self.db, &mut data).map_err(|e| snap_err(ErrorVerb::Read, e))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// Puts the applied log id and membership into `batch`.
fn put_applied(db: &DB, batch: &mut WriteBatch, applied: &Applied) -> bincode::Result<()> {
    batch.put_cf(sm_cf(db), KEY_APPLIED, bincode::serialize(applied)?);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use openraft::{CommittedLeaderId, Entry};

    use super::*;
    use crate::command::fixtures::{actor, set, user, ADMIN};
    use crate::storage::{digest, open_db};

    fn entry(index: u64, cmd: Command) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(cmd),
        }
    }

    fn open(dir: &std::path::Path, keep: usize) -> StateMachineStore {
        StateMachineStore::new(open_db(dir).unwrap(), keep).unwrap()
    }

    fn whole(sm: &StateMachineStore) -> u64 {
        digest(&sm.state.read().unwrap(), &sm.history).unwrap()
    }

    /// Applies an admin, an app and `n` config releases (in batches of 7); returns the app.
    async fn fill(sm: &mut StateMachineStore, n: usize) -> Uuid {
        let app = Uuid::new_v4();
        let mut cmds = vec![
            Command::CreateUser {
                user: user(ADMIN.as_u128(), "admin@haven.local", true),
                token: None,
            },
            Command::CreateApp {
                id: app,
                name: "my-app".into(),
                stack: "heroku-24".into(),
                release_id: Uuid::new_v4(),
                actor: actor(0),
                owner: ADMIN,
            },
        ];
        for i in 0..n {
            let v = i.to_string();
            cmds.push(set(app, &[("N", Some(v.as_str()))]));
        }
        let mut index = 1;
        for chunk in cmds.chunks(7) {
            let entries: Vec<_> = chunk
                .iter()
                .map(|c| {
                    index += 1;
                    entry(index - 1, c.clone())
                })
                .collect();
            for r in sm.apply(entries).await.unwrap() {
                assert!(r.is_ok(), "{r:?}");
            }
        }
        app
    }

    #[tokio::test]
    async fn old_releases_leave_memory_in_the_applying_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = open(dir.path(), 4);
        let app = fill(&mut sm, 50).await;
        {
            let s = sm.state.read().unwrap();
            let a = &s.apps[&app];
            assert_eq!(a.releases.len(), 4);
            assert_eq!(a.last_version(), 51);
            // The current config is the newest release's, shared.
            assert!(a.config.shares(&a.releases[3].config));
            assert_eq!(sm.history.all(a).unwrap().len(), 51);
        }
        assert_eq!(sm.history.stored_count(), 47);
        let applied = sm.read_applied().unwrap().unwrap();
        assert_eq!(applied.last_applied.map(|l| l.index), Some(52));
    }

    #[tokio::test]
    async fn a_snapshot_carries_the_history_to_another_store() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = open(&dir.path().join("a"), 4);
        let app = fill(&mut sm, 60).await;
        let built = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        // Releases after the snapshot: the history sent is newer than its head.
        let later: Vec<_> = (0..20)
            .map(|i| {
                let v = format!("later-{i}");
                entry(63 + i, set(app, &[("N", Some(v.as_str()))]))
            })
            .collect();
        sm.apply(later.clone()).await.unwrap();
        let before = whole(&sm);
        let snap = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(snap.meta, built.meta);
        let mut other = open(&dir.path().join("b"), 3);
        other
            .install_snapshot(&snap.meta, snap.snapshot)
            .await
            .unwrap();
        assert_eq!(
            other.applied_state().await.unwrap().0,
            built.meta.last_log_id
        );
        // Its own `keep` rules its memory.
        assert!(other
            .state
            .read()
            .unwrap()
            .apps
            .values()
            .all(|a| a.releases.len() <= 3));
        // A follower applies the log after the snapshot next, and is where the leader is.
        other.apply(later.clone()).await.unwrap();
        assert_eq!(whole(&other), before);
        // Reopened, it comes back from its snapshot and re-applies the log after it.
        drop(other);
        let mut reopened = open(&dir.path().join("b"), 3);
        assert_eq!(
            reopened.applied_state().await.unwrap().0,
            built.meta.last_log_id
        );
        reopened.apply(later).await.unwrap();
        assert_eq!(whole(&reopened), before);
        let current = reopened.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snap.meta);
    }

    #[tokio::test]
    async fn retention_removes_the_same_old_releases_from_memory_and_disk_everywhere() {
        let dir = tempfile::tempdir().unwrap();
        // Two nodes that keep different numbers of releases in memory.
        let mut a = open(&dir.path().join("a"), 4);
        let mut b = open(&dir.path().join("b"), 30);
        let app = fill(&mut a, 50).await;
        // b gets a's state as a follower would: a snapshot.
        a.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let snap = a.get_current_snapshot().await.unwrap().unwrap();
        b.install_snapshot(&snap.meta, snap.snapshot).await.unwrap();
        assert_eq!(whole(&a), whole(&b));
        let plan = {
            let s = a.state.read().unwrap();
            crate::retention::plan(&s, &a.history, 10).unwrap()
        };
        assert_eq!(plan.len(), 1, "{plan:?}");
        let next = 1000;
        for sm in [&mut a, &mut b] {
            let out = sm.apply([entry(next, plan[0].clone())]).await.unwrap();
            assert!(out[0].is_ok(), "{out:?}");
        }
        for sm in [&a, &b] {
            let s = sm.state.read().unwrap();
            let versions: Vec<u64> = sm
                .history
                .all(&s.apps[&app])
                .unwrap()
                .iter()
                .map(|r| r.version)
                .collect();
            assert_eq!(versions, (42..=51).collect::<Vec<_>>());
        }
        assert_eq!(whole(&a), whole(&b));
        // Nothing more to do until more releases come.
        let s = a.state.read().unwrap();
        assert!(crate::retention::plan(&s, &a.history, 10)
            .unwrap()
            .is_empty());
        assert!(crate::retention::plan(&s, &a.history, 0)
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn deleting_an_app_removes_its_history() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = open(dir.path(), 2);
        let app = fill(&mut sm, 20).await;
        assert!(sm.history.stored_count() > 0);
        let out = sm
            .apply([entry(100, Command::DeleteApp { app })])
            .await
            .unwrap();
        assert!(out[0].is_ok());
        assert_eq!(sm.history.stored_count(), 0);
    }
}
