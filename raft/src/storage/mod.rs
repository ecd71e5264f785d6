//! openraft's log store and state machine over one RocksDB database.
//!
//! Column families:
//! - `log`: entries, keyed by big-endian index (so iteration order is log order);
//! - `meta`: the vote, the committed log id, the last purged log id and `format`, the
//!   store's on-disk format version (`crate::version`; none recorded reads as 1);
//! - `sm`: the latest snapshot (its meta and data) and `applied`, the last log id the
//!   state machine applied (`machine.rs`);
//! - `releases`, `release_ids`: the release history beyond what each app keeps in memory
//!   (`history.rs`).
//!
//! Durability: every write of `log` and `meta` is synced (WAL fsync) before openraft hears
//! of it: `append` calls the flush callback only after the synced batch, and `save_vote`
//! returns only after a synced write. The state machine keeps the model in memory and the
//! old releases on disk; the model is made durable by snapshots, and on start the
//! committed entries after the snapshot are re-applied by openraft (we persist
//! `committed` for that), which rewrites the same history (see `machine.rs`).
//!
//! Memory: the memtables and the block cache are bounded (`open_db`), so that the
//! resident set depends on the live state, not on the size of the history.

// openraft's `StorageError` is large, and it is the error type its traits require.
#![allow(clippy::result_large_err)]
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError,
    StorageIOError, Vote,
};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch,
    WriteOptions, DB,
};
use serde::{Deserialize, Serialize};

use crate::model::NodeId;
use crate::{version, TypeConfig};

mod history;
mod machine;

pub(crate) use history::digest;
pub use history::History;
pub use machine::StateMachineStore;

type Entry = openraft::Entry<TypeConfig>;
type SErr = StorageError<NodeId>;

const CF_LOG: &str = "log";
const CF_META: &str = "meta";

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"purged";
/// The on-disk format version, a big-endian u32 ([`crate::version::FORMAT`]).
const KEY_FORMAT: &[u8] = b"format";

/// Per column family memtable size, and the total of all memtables.
const MEMTABLE_BYTES: usize = 4 << 20;
const ALL_MEMTABLES_BYTES: usize = 16 << 20;
/// The block cache shared by every column family (index and filter blocks included).
const BLOCK_CACHE_BYTES: usize = 8 << 20;

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
    let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&cache);
    table.set_cache_index_and_filter_blocks(true);
    let bounded = || {
        let mut o = Options::default();
        o.set_write_buffer_size(MEMTABLE_BYTES);
        o.set_max_write_buffer_number(2);
        o.set_block_based_table_factory(&table);
        o
    };
    let mut opts = bounded();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_db_write_buffer_size(ALL_MEMTABLES_BYTES);
    // A family written rarely must not keep the WAL (and memtables) alive for long.
    opts.set_max_total_wal_size(64 << 20);
    opts.set_max_open_files(256);
    opts.set_keep_log_file_num(2);
    let cfs = [
        CF_LOG,
        CF_META,
        machine::CF_SM,
        history::CF_RELEASES,
        history::CF_RELEASE_IDS,
    ]
    .into_iter()
    .map(|n| ColumnFamilyDescriptor::new(n, bounded()));
    let db = DB::open_cf_descriptors(&opts, dir, cfs)
        .map_err(|e| anyhow::anyhow!("open RocksDB at {}: {e}", dir.display()))?;
    check_format(&db, version::MIN_FORMAT, version::FORMAT)
        .map_err(|e| anyhow::anyhow!("cannot open the store at {}: {e}", dir.display()))?;
    Ok(Arc::new(db))
}

/// The on-disk format `db` records, if any.
fn recorded_format(db: &DB) -> anyhow::Result<Option<u32>> {
    let cf = db
        .cf_handle(CF_META)
        .ok_or_else(|| anyhow::anyhow!("no {CF_META} column family"))?;
    match db.get_cf(cf, KEY_FORMAT)? {
        None => Ok(None),
        Some(b) => {
            let bytes: [u8; 4] = b.as_slice().try_into().map_err(|_| {
                anyhow::anyhow!(
                    "its recorded on-disk format is malformed ({} bytes)",
                    b.len()
                )
            })?;
            Ok(Some(u32::from_be_bytes(bytes)))
        }
    }
}

/// Refuses a store whose format this binary does not read (see
/// [`version::check_format`]); records `max` in one that has an older format or none.
/// Nothing else is written before this check passes.
fn check_format(db: &DB, min: u32, max: u32) -> anyhow::Result<()> {
    let recorded = recorded_format(db)?;
    match version::check_format(recorded, min, max).map_err(anyhow::Error::msg)? {
        version::FormatCheck::Current => Ok(()),
        version::FormatCheck::Upgrade { from } => {
            if recorded.is_some() {
                tracing::info!(from, to = max, "upgrading the store's on-disk format");
            }
            write_format(db, max)
        }
    }
}

/// Records `format` as the store's on-disk format (synced).
fn write_format(db: &DB, format: u32) -> anyhow::Result<()> {
    let cf = db
        .cf_handle(CF_META)
        .ok_or_else(|| anyhow::anyhow!("no {CF_META} column family"))?;
    db.put_cf_opt(cf, KEY_FORMAT, format.to_be_bytes(), &synced())?;
    Ok(())
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

/// Opens a log store and state machine on a fresh database (for the openraft suite).
pub fn open_store(dir: &Path) -> anyhow::Result<(LogStore, StateMachineStore)> {
    let db = open_db(dir)?;
    let keep = crate::RaftSettings::default().releases_in_memory;
    let sm = StateMachineStore::new(db.clone(), keep).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((LogStore::new(db), sm))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn reopen(dir: &Path) -> anyhow::Result<Arc<DB>> {
        open_db(dir)
    }

    #[test]
    fn a_new_store_records_this_binarys_format() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        assert_eq!(recorded_format(&db).unwrap(), Some(version::FORMAT));
    }

    #[test]
    fn a_store_from_before_format_versions_opens_as_format_1() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open_db(dir.path()).unwrap();
            // What a store written before format versions looks like: no `format` key.
            let cf = db.cf_handle(CF_META).unwrap();
            db.delete_cf(cf, KEY_FORMAT).unwrap();
            db.put_cf(cf, KEY_VOTE, b"kept").unwrap();
        }
        let db = reopen(dir.path()).unwrap();
        assert_eq!(recorded_format(&db).unwrap(), Some(version::FORMAT));
        let cf = db.cf_handle(CF_META).unwrap();
        assert_eq!(db.get_cf(cf, KEY_VOTE).unwrap().unwrap(), b"kept");
    }

    #[test]
    fn a_store_in_a_newer_format_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open_db(dir.path()).unwrap();
            write_format(&db, version::FORMAT + 1).unwrap();
        }
        let err = reopen(dir.path()).err().unwrap().to_string();
        let want = format!(
 "cannot open the store at {}: its on-disk format is {}, newer than this havend reads (format {}): a newer havend ran on it",
            dir.path().display(),
            version::FORMAT + 1,
            if version::MIN_FORMAT == version::FORMAT {
                version::FORMAT.to_string()
            } else {
                format!("{} to {}", version::MIN_FORMAT, version::FORMAT)
            }
        );
        assert!(err.starts_with(&want), "{err}");
        // Still the newer format: the refusal wrote nothing.
        let all = DB::list_cf(&Options::default(), dir.path()).unwrap();
        let db = DB::open_cf(&Options::default(), dir.path(), all).unwrap();
        assert_eq!(recorded_format(&db).unwrap(), Some(version::FORMAT + 1));
    }

    #[test]
    fn a_store_older_than_this_binary_reads_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        write_format(&db, 1).unwrap();
        let err = check_format(&db, 2, 3).unwrap_err().to_string();
        assert!(
            err.starts_with("its on-disk format is 1, older than this havend still reads"),
            "{err}"
        );
        // An older format this binary reads is upgraded.
        check_format(&db, 1, 3).unwrap();
        assert_eq!(recorded_format(&db).unwrap(), Some(3));
    }
}
