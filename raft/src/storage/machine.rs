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
//! A snapshot is a file: the head (last applied, membership, the in-memory model) in
//! bincode, then every history record `Some((family, key, value))`, then `None`.
//! Building one copies the small in-memory model when openraft asks for the builder (on
//! the state machine's task: the head is exact), and the builder, in openraft's
//! background task, writes the head and then the history as the database holds it
//! then — at least as new as the head — into `<raft dir>.snapshots/<id>.snap`, fsyncs
//! it, and records it (its meta, the head alone for restarts, and the file's name) in
//! `sm`: the apply loop never waits for the history to be read. openraft sends the file
//! in chunks and a follower receives it into a file of its own, whose records it writes
//! into its history in one synced batch, keeping the file as its own latest snapshot.
//! The follower applies the log after the snapshot next, which rewrites the same
//! history (see above); reads wait for that behind the read barrier. A stored snapshot
//! of an older format (a head without a file, or everything in the head) still loads,
//! and is sent as a file made on demand.

// openraft's `StorageError` is large, and it is the error type its traits require.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder,
    SnapshotMeta, StoredMembership,
};
use rocksdb::{IteratorMode, WriteBatch, DB};
use serde::{Deserialize, Serialize};
use tracing::info;
use uuid::Uuid;

use super::history::{evictions, History, HISTORY_CFS};
use super::{io_err, synced, Entry, SErr};
use crate::command::{Command, CommandResult};
use crate::model::{NodeId, StackImage, State};
use crate::TypeConfig;

pub(crate) const CF_SM: &str = "sm";

/// The snapshot as stored before the history moved to disk: meta and data in one value.
const KEY_SNAPSHOT: &[u8] = b"snapshot";
const KEY_SNAPSHOT_META: &[u8] = b"snapshot_meta";
const KEY_SNAPSHOT_DATA: &[u8] = b"snapshot_data";
/// The name of the latest snapshot's file in the snapshot dir.
const KEY_SNAPSHOT_FILE: &[u8] = b"snapshot_file";
const KEY_APPLIED: &[u8] = b"applied";

/// The file a snapshot is sent from and received into.
pub type SnapshotFile = tokio::fs::File;

/// Where a store keeps its snapshot files: beside the database, `<db dir>.snapshots`.
pub(crate) fn snapshot_dir(db: &DB) -> PathBuf {
    let mut p = db.path().as_os_str().to_owned();
    p.push(".snapshots");
    PathBuf::from(p)
}

/// The head of a snapshot (all of one, before the history moved to disk): since format
/// 2, [`HEAD_MAGIC`] and then this; the state's stack images travel beside the state,
/// whose serialized form leaves them out (see [`State::stack_images`]).
#[derive(Serialize, Deserialize)]
struct SnapshotHead {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    state: State,
    stack_images: BTreeMap<String, StackImage>,
}

/// The head as format 1 wrote it (no magic, no stack images). Its first byte is an
/// `Option` tag (0 or 1), so it never starts like [`HEAD_MAGIC`].
#[derive(Deserialize)]
struct SnapshotHeadV1 {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    state: State,
}

/// What a format-2 head starts with.
const HEAD_MAGIC: [u8; 4] = *b"\xffHV2";

/// A head as written since format 2.
fn encode_head(head: &SnapshotHead) -> bincode::Result<Vec<u8>> {
    let mut out = HEAD_MAGIC.to_vec();
    bincode::serialize_into(&mut out, head)?;
    Ok(out)
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

/// Reads a snapshot's head from `r`, and its length in bytes.
fn read_head(r: &mut (impl Read + Seek)) -> Result<(SnapshotHead, u64), SErr> {
    let start = r
        .stream_position()
        .map_err(|e| snap_err(ErrorVerb::Read, e))?;
    let mut magic = [0u8; 4];
    let v2 = r.read_exact(&mut magic).is_ok() && magic == HEAD_MAGIC;
    let head = if v2 {
        let mut head: SnapshotHead =
            bincode::deserialize_from(&mut *r).map_err(|e| snap_err(ErrorVerb::Read, e))?;
        head.state.stack_images = std::mem::take(&mut head.stack_images);
        head
    } else {
        r.seek(std::io::SeekFrom::Start(start))
            .map_err(|e| snap_err(ErrorVerb::Read, e))?;
        let old: SnapshotHeadV1 =
            bincode::deserialize_from(&mut *r).map_err(|e| snap_err(ErrorVerb::Read, e))?;
        SnapshotHead {
            last_applied: old.last_applied,
            membership: old.membership,
            state: old.state,
            stack_images: BTreeMap::new(),
        }
    };
    let len = r
        .stream_position()
        .map_err(|e| snap_err(ErrorVerb::Read, e))?;
    Ok((head, len))
}

/// Calls `each` with every history record after the head in `r` (whose whole length is
/// `len`; a snapshot of the old format ends with its head).
fn read_records(
    r: &mut (impl Read + Seek),
    len: u64,
    mut each: impl FnMut(Record) -> Result<(), SErr>,
) -> Result<(), SErr> {
    loop {
        let at = r
            .stream_position()
            .map_err(|e| snap_err(ErrorVerb::Read, e))?;
        if at >= len {
            return Ok(());
        }
        let rec: Option<Record> =
            bincode::deserialize_from(&mut *r).map_err(|e| snap_err(ErrorVerb::Read, e))?;
        match rec {
            Some(rec) => each(rec)?,
            None => return Ok(()),
        }
    }
}

/// Writes a whole snapshot file at `path`: `head`, then the history as `db` holds it
/// now, then the end; synced, and renamed into place only when complete.
fn write_snapshot_file(db: &DB, path: &Path, head: &[u8]) -> anyhow::Result<()> {
    let part = path.with_extension("part");
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&part)?);
    out.write_all(head)?;
    append_history(db, &mut out)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(&part, path)?;
    Ok(())
}

/// Appends the history as the database holds it now, and the end.
fn append_history(db: &DB, out: &mut impl Write) -> anyhow::Result<()> {
    for (tag, name) in HISTORY_CFS.iter().enumerate() {
        let cf = db
            .cf_handle(name)
            .ok_or_else(|| anyhow::anyhow!("no column family {name}"))?;
        for item in db.iterator_cf(cf, IteratorMode::Start) {
            let (k, v) = item?;
            bincode::serialize_into(&mut *out, &Some((tag as u8, &*k, &*v)))?;
        }
    }
    bincode::serialize_into(&mut *out, &None::<(u8, &[u8], &[u8])>)?;
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
    /// The file a snapshot is being received into.
    receiving: Mutex<Option<PathBuf>>,
}

/// Stores a snapshot unless a newer one is stored already (a snapshot built in the
/// background may finish after a newer one was installed).
/// Stores a snapshot (its head, and the name of its file in the snapshot dir) unless a
/// newer one is stored already (a snapshot built in the background may finish after a
/// newer one was installed); then removes the other snapshot files. Returns whether it
/// was stored.
fn write_snapshot(
    db: &DB,
    slot: &SnapshotSlot,
    meta: &SnapshotMeta<NodeId, BasicNode>,
    head: &[u8],
    file: &str,
) -> Result<bool, SErr> {
    let _guard = slot.write.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(current) = read_snapshot_meta(db)? {
        if current.last_log_id > meta.last_log_id {
            return Ok(false);
        }
    }
    let mut batch = WriteBatch::default();
    let cf = sm_cf(db);
    batch.put_cf(
        cf,
        KEY_SNAPSHOT_META,
        bincode::serialize(meta).map_err(|e| snap_err(ErrorVerb::Write, e))?,
    );
    batch.put_cf(cf, KEY_SNAPSHOT_DATA, head);
    batch.put_cf(cf, KEY_SNAPSHOT_FILE, file.as_bytes());
    batch.delete_cf(cf, KEY_SNAPSHOT);
    db.write_opt(batch, &synced())
        .map_err(|e| snap_err(ErrorVerb::Write, e))?;
    // Older files go (one being sent stays readable until it is closed).
    if let Ok(dir) = std::fs::read_dir(snapshot_dir(db)) {
        for e in dir.flatten() {
            let name = e.file_name();
            if name.to_string_lossy().ends_with(".snap") && name != file {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(true)
}

/// The stored snapshot's file, if it has one and it is there.
fn read_snapshot_file(db: &DB) -> Result<Option<PathBuf>, SErr> {
    let name = db
        .get_cf(sm_cf(db), KEY_SNAPSHOT_FILE)
        .map_err(|e| snap_err(ErrorVerb::Read, e))?;
    Ok(name
        .map(|n| snapshot_dir(db).join(String::from_utf8_lossy(&n).into_owned()))
        .filter(|p| p.is_file()))
}

/// A file name for snapshot `id` (ids are `term-index-seq`, or made of them).
fn file_name(id: &str) -> String {
    let safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.snap")
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
            let (head, _) = read_head(&mut std::io::Cursor::new(&data))?;
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

    /// Replaces the whole history with the records that follow the head in `r` and
    /// records the snapshot as applied, in one synced batch.
    fn replace_history(
        &self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        r: &mut (impl Read + Seek),
        len: u64,
    ) -> Result<(), SErr> {
        let mut batch = WriteBatch::default();
        self.history
            .clear(&mut batch)
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        read_records(r, len, |(tag, k, v)| {
            self.history
                .put_raw(&mut batch, tag, &k, &v)
                .map_err(|e| snap_err(ErrorVerb::Write, e))
        })?;
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
    /// Writes the snapshot's file (the head, then the history as it is now) on a
    /// blocking thread, records it, and returns it open for sending.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SErr> {
        let head = encode_head(&self.head).map_err(|e| snap_err(ErrorVerb::Write, e))?;
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
        let (db, slots) = (self.db.clone(), self.snapshots.clone());
        let name = file_name(&meta.snapshot_id);
        let m = meta.clone();
        let started = std::time::Instant::now();
        let file = tokio::task::spawn_blocking(move || -> Result<std::fs::File, SErr> {
            let dir = snapshot_dir(&db);
            std::fs::create_dir_all(&dir).map_err(|e| snap_err(ErrorVerb::Write, e))?;
            let path = dir.join(&name);
            write_snapshot_file(&db, &path, &head).map_err(|e| snap_err(ErrorVerb::Write, e))?;
            let file = std::fs::File::open(&path).map_err(|e| snap_err(ErrorVerb::Read, e))?;
            if !write_snapshot(&db, &slots, &m, &head, &name)? {
                // A newer snapshot was installed meanwhile: this one is only sent.
                let _ = std::fs::remove_file(&path);
            }
            Ok(file)
        })
        .await
        .map_err(|e| snap_err(ErrorVerb::Write, e))??;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        info!(
            snapshot = %meta.snapshot_id,
            bytes,
            ms = started.elapsed().as_millis() as u64,
            "snapshot built"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
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
        let mut head = SnapshotHead {
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            state: self.state.read().unwrap_or_else(|p| p.into_inner()).clone(),
            stack_images: BTreeMap::new(),
        };
        head.stack_images = head.state.stack_images.clone();
        SnapshotBuilder {
            db: self.db.clone(),
            snapshots: self.snapshots.clone(),
            head,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, SErr> {
        let dir = snapshot_dir(&self.db);
        std::fs::create_dir_all(&dir).map_err(|e| snap_err(ErrorVerb::Write, e))?;
        // A transfer cut short left its file behind.
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("receiving-") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let seq = self.snapshots.built.fetch_add(1, AtomicOrdering::SeqCst) + 1;
        let path = dir.join(format!("receiving-{seq}-{}.part", Uuid::new_v4().simple()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        // Unlinked once installed or dropped: only the name is kept here, in the file.
        *self
            .snapshots
            .receiving
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(path);
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), SErr> {
        let started = std::time::Instant::now();
        let mut file = snapshot.into_std().await;
        file.flush().map_err(|e| snap_err(ErrorVerb::Write, e))?;
        let len = file
            .seek(std::io::SeekFrom::End(0))
            .map_err(|e| snap_err(ErrorVerb::Read, e))?;
        file.rewind().map_err(|e| snap_err(ErrorVerb::Read, e))?;
        let mut r = BufReader::with_capacity(1 << 20, file);
        let (head, head_len) = read_head(&mut r)?;
        let head_bytes = {
            let mut b = vec![0u8; head_len as usize];
            r.rewind().map_err(|e| snap_err(ErrorVerb::Read, e))?;
            r.read_exact(&mut b)
                .map_err(|e| snap_err(ErrorVerb::Read, e))?;
            b
        };
        {
            let state_lock = self.state.clone();
            let mut state = state_lock.write().unwrap_or_else(|p| p.into_inner());
            self.replace_history(meta, &mut r, len)?;
            *state = head.state;
            // The snapshot's meta is authoritative for what it covers.
            self.last_applied = meta.last_log_id;
            self.membership = meta.last_membership.clone();
            self.persist(&mut state, &[], &[], true)?;
        }
        // The received file is this node's snapshot now (the same head and history).
        let name = file_name(&meta.snapshot_id);
        let received = self
            .snapshots
            .receiving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let kept = match received {
            Some(path) => std::fs::rename(&path, snapshot_dir(&self.db).join(&name)).is_ok(),
            None => false,
        };
        write_snapshot(
            &self.db,
            &self.snapshots,
            meta,
            &head_bytes,
            if kept { &name } else { "" },
        )?;
        info!(
            snapshot = %meta.snapshot_id,
            bytes = len,
            ms = started.elapsed().as_millis() as u64,
            "snapshot installed"
        );
        Ok(())
    }

    /// The stored snapshot's file; for a snapshot stored in an older format, a file made
    /// now from its head and the history as it is now (see the module's comment).
    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SErr> {
        let Some(meta) = read_snapshot_meta(&self.db)? else {
            return Ok(None);
        };
        if let Some(path) = read_snapshot_file(&self.db)? {
            let file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| snap_err(ErrorVerb::Read, e))?;
            return Ok(Some(Snapshot {
                meta,
                snapshot: Box::new(file),
            }));
        }
        let Some((meta, head)) = read_snapshot(&self.db)? else {
            return Ok(None);
        };
        let dir = snapshot_dir(&self.db);
        std::fs::create_dir_all(&dir).map_err(|e| snap_err(ErrorVerb::Write, e))?;
        let name = file_name(&meta.snapshot_id);
        let path = dir.join(&name);
        write_snapshot_file(&self.db, &path, &head).map_err(|e| snap_err(ErrorVerb::Write, e))?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| snap_err(ErrorVerb::Read, e))?;
        write_snapshot(&self.db, &self.snapshots, &meta, &head, &name)?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(file),
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
