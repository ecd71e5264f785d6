//! openraft's storage contract, checked against the RocksDB store.

#![allow(clippy::unwrap_used)]

use haven_raft::{open_store, LogStore, StateMachineStore, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (log, sm) = open_store(&dir.path().join("raft")).expect("open store");
        Ok((dir, log, sm))
    }
}

#[test]
fn rocksdb_store_passes_the_openraft_suite() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    Suite::test_all(Builder).expect("storage suite");
}
