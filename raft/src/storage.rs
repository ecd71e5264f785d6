//! openraft's log store and state machine over one RocksDB database.
//!
//! Column families:
//! - `log`: entries, keyed by big-endian index (so iteration order is log order);
//! - `meta`: the vote, the committed log id and the last purged log id;
//! - `sm`: the latest snapshot (its meta and the serialized state).
//!
//! Durability: every write of `log` and `meta` is synced (WAL fsync) before openraft hears
//! of it: `append` calls the flush callback only after the synced batch, and `save_vote`
//! returns only after a synced write. The state machine is kept in memory; it is made
//! durable by snapshots, and on start the committed entries after the snapshot are
//! re-applied by openraft (we persist `committed` for that).

// openraft's `StorageError` is large, and it is the error type its traits require.
#![allow(clippy::result_large_err)]
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};
use serde::{Deserialize, Serialize};

use crate::command::CommandResult;
use crate::model::{NodeId, State};
use crate::TypeConfig;

type Entry = openraft::Entry<TypeConfig>;
type SErr = StorageError<NodeId>;

const CF_LOG: &str = "log";
const CF_META: &str = "meta";
const CF_SM: &str = "sm";

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"purged";
const KEY_SNAPSHOT: &[u8] = b"snapshot";

fn io_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> SErr {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

fn read_logs_err(e: impl std::error::Error + 'static) -> SErr {
    io_err(ErrorSubject::Logs, ErrorVerb::Read, e)
}

fn write_logs_err(e: impl std::error::Error + 'static) -> SErr {
    io_err(ErrorSubject::Logs, ErrorVerb::Write, e)
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

fn idx_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// Opens (or creates) the database under `dir`.
pub fn open_db(dir: &Path) -> anyhow::Result<Arc<DB>> {
    std::fs::create_dir_all(dir)?;
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    let cfs = [CF_LOG, CF_META, CF_SM]
        .into_iter()
        .map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
    let db = DB::open_cf_descriptors(&opts, dir, cfs)
        .map_err(|e| anyhow::anyhow!("open RocksDB at {}: {e}", dir.display()))?;
    Ok(Arc::new(db))
}

/// The Raft log and metadata.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
}

impl LogStore {
    pub fn new(db: Arc<DB>) -> LogStore {
        LogStore { db }
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        // The families are created at open; their absence is a programming error.
        self.db
            .cf_handle(name)
            .expect("column family created at open")
    }

    fn get_meta<T: for<'de> Deserialize<'de>>(&self, key: &[u8]) -> Result<Option<T>, SErr> {
        let raw = self
            .db
            .get_cf(self.cf(CF_META), key)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, e))?;
        match raw {
            None => Ok(None),
            Some(bytes) => bincode::deserialize(&bytes)
                .map(Some)
                .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, e)),
        }
    }

    fn put_meta<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), SErr> {
        let bytes = bincode::serialize(value)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
        self.db
            .put_cf_opt(self.cf(CF_META), key, bytes, &synced())
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId<NodeId>>, SErr> {
        let mut it = self.db.iterator_cf(self.cf(CF_LOG), IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(Err(e)) => Err(read_logs_err(e)),
            Some(Ok((_, v))) => {
                let e: Entry = bincode::deserialize(&v).map_err(read_logs_err)?;
                Ok(Some(e.log_id))
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, SErr> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        let it = self.db.iterator_cf(
            self.cf(CF_LOG),
            IteratorMode::From(&idx_key(start), Direction::Forward),
        );
        for item in it {
            let (k, v) = item.map_err(read_logs_err)?;
            let mut idx = [0u8; 8];
            idx.copy_from_slice(&k[..8]);
            let index = u64::from_be_bytes(idx);
            if !range.contains(&index) {
                break;
            }
            out.push(bincode::deserialize(&v).map_err(read_logs_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SErr> {
        let last_purged: Option<LogId<NodeId>> = self.get_meta(KEY_PURGED)?;
        let last = self.last_entry_log_id()?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), SErr> {
        self.put_meta(KEY_VOTE, vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, SErr> {
        self.get_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), SErr> {
        // Not synced: losing it only means re-learning the commit index from the leader.
        let bytes = bincode::serialize(&committed)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
        self.db
            .put_cf(self.cf(CF_META), KEY_COMMITTED, bytes)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, SErr> {
        Ok(self
            .get_meta::<Option<LogId<NodeId>>>(KEY_COMMITTED)?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), SErr>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        let cf = self.cf(CF_LOG);
        for entry in entries {
            let bytes = bincode::serialize(&entry).map_err(write_logs_err)?;
            batch.put_cf(cf, idx_key(entry.log_id.index), bytes);
        }
        // Synced before the callback: an entry reported persisted is on disk.
        let result = self.db.write_opt(batch, &synced());
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = std::io::Error::other(e.to_string());
                callback.log_io_completed(Err(err));
                Err(write_logs_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        let cf = self.cf(CF_LOG);
        self.db
            .delete_range_cf(cf, idx_key(log_id.index), idx_key(u64::MAX))
            .map_err(write_logs_err)?;
        // delete_range excludes the end key.
        self.db
            .delete_cf_opt(cf, idx_key(u64::MAX), &synced())
            .map_err(write_logs_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        // Record the purge point first: entries below it may then go at any time.
        self.put_meta(KEY_PURGED, &log_id)?;
        let cf = self.cf(CF_LOG);
        self.db
            .delete_range_cf(cf, idx_key(0), idx_key(log_id.index.saturating_add(1)))
            .map_err(write_logs_err)
    }
}

/// What a snapshot holds.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    state: State,
}

/// A snapshot as stored in the `sm` column family.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

/// The state machine: the model in memory, shared with readers.
#[derive(Clone)]
pub struct StateMachineStore {
    db: Arc<DB>,
    pub state: Arc<RwLock<State>>,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    snapshots: Arc<SnapshotSlot>,
}

/// Serializes writes of the stored snapshot and numbers the snapshots built.
#[derive(Default)]
struct SnapshotSlot {
    write: Mutex<()>,
    built: AtomicU64,
}

impl StateMachineStore {
    /// Opens the state machine, restoring the persisted snapshot if there is one.
    pub fn new(db: Arc<DB>) -> Result<StateMachineStore, SErr> {
        let mut sm = StateMachineStore {
            db,
            state: Arc::new(RwLock::new(State::default())),
            last_applied: None,
            membership: StoredMembership::default(),
            snapshots: Arc::default(),
        };
        if let Some(stored) = read_snapshot(&sm.db)? {
            sm.load(&stored.data)?;
        }
        Ok(sm)
    }

    fn load(&mut self, data: &[u8]) -> Result<(), SErr> {
        let body: SnapshotBody = bincode::deserialize(data)
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
        self.last_applied = body.last_applied;
        self.membership = body.membership;
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = body.state;
        Ok(())
    }
}

fn sm_cf(db: &DB) -> &rocksdb::ColumnFamily {
    // The families are created at open; their absence is a programming error.
    db.cf_handle(CF_SM).expect("column family created at open")
}

fn read_snapshot(db: &DB) -> Result<Option<StoredSnapshot>, SErr> {
    let raw = db
        .get_cf(sm_cf(db), KEY_SNAPSHOT)
        .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
    match raw {
        None => Ok(None),
        Some(b) => bincode::deserialize(&b)
            .map(Some)
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e)),
    }
}

/// Stores `stored` as the current snapshot unless a newer one is stored already (a
/// snapshot built in the background may finish after a newer one was installed).
fn write_snapshot(db: &DB, slot: &SnapshotSlot, stored: &StoredSnapshot) -> Result<(), SErr> {
    let _guard = slot.write.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(current) = read_snapshot(db)? {
        if current.meta.last_log_id > stored.meta.last_log_id {
            return Ok(());
        }
    }
    let bytes = bincode::serialize(stored)
        .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
    db.put_cf_opt(sm_cf(db), KEY_SNAPSHOT, bytes, &synced())
        .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))
}

/// Builds a snapshot from a copy of the state taken when openraft asked for the builder:
/// openraft builds in a background task while entries keep being applied, so the shared
/// state must not be read then (it would run ahead of `last_applied`).
pub struct SnapshotBuilder {
    db: Arc<DB>,
    snapshots: Arc<SnapshotSlot>,
    body: SnapshotBody,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SErr> {
        let data = bincode::serialize(&self.body)
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        let seq = self.snapshots.built.fetch_add(1, AtomicOrdering::SeqCst) + 1;
        let snapshot_id = match self.body.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, seq),
            None => format!("--{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: self.body.last_applied,
            last_membership: self.body.membership.clone(),
            snapshot_id,
        };
        write_snapshot(
            &self.db,
            &self.snapshots,
            &StoredSnapshot {
                meta: meta.clone(),
                data: data.clone(),
            },
        )?;
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
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => out.push(Ok(Default::default())),
                EntryPayload::Normal(cmd) => out.push(cmd.apply(&mut state)),
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    out.push(Ok(Default::default()));
                }
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            snapshots: self.snapshots.clone(),
            body: SnapshotBody {
                last_applied: self.last_applied,
                membership: self.membership.clone(),
                state: self.state.read().unwrap_or_else(|p| p.into_inner()).clone(),
            },
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
        self.load(&data)?;
        // The snapshot's meta is authoritative for what it covers.
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        write_snapshot(
            &self.db,
            &self.snapshots,
            &StoredSnapshot {
                meta: meta.clone(),
                data,
            },
        )
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SErr> {
        Ok(read_snapshot(&self.db)?.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

/// Opens a log store and state machine on a fresh database (for the openraft suite).
pub fn open_store(dir: &Path) -> anyhow::Result<(LogStore, StateMachineStore)> {
    let db = open_db(dir)?;
    let sm = StateMachineStore::new(db.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((LogStore::new(db), sm))
}
