//! haven-raft: Haven's replicated state.
//!
//! - [`model`]: the domain model every replica holds ([`model::State`]), and the rules of
//!   what it accepts (`model/rules.rs`).
//! - [`command`]: the commands that change it, applied deterministically; `command/mod.rs`
//!   dispatches each to the module of its resource area (`apps`, `config`, `dynos`, ...).
//! - [`catalog`]: `haven-catalog` re-exported (the dyno sizes and stack names the platform
//!   offers), so that the agent reaches it through this crate.
//! - `storage`: openraft's log store and state machine over one RocksDB (column families for
//!   the log, the Raft metadata, the state machine's snapshot and the release history each
//!   app keeps on disk beyond its newest releases, read through [`History`]). The WAL is
//!   synced before an append is reported persisted and before a vote is saved.
//! - [`rpc`]: the tarpc `Peer` service (Raft RPCs, write forwarding, read index, joining)
//!   and helpers to run it over any byte stream (the agent gives QUIC bi-streams).
//! - [`version`]: the on-disk format and peer protocol versions and their pure checks (the
//!   store records its format in `meta`; the agent exchanges the protocol with peers).
//! - `node`: the Raft node: write forwarding, read barriers, membership, and openraft's
//!   network over [`PeerConnector`].
//!
//! **Architecture invariant:** only this crate names openraft and RocksDB. The agent uses
//! [`HavenRaft`] and the tarpc service, nothing else.

pub mod command;
pub mod model;
pub mod retention;
#[path = "service.rs"]
pub mod rpc;
pub mod version;

mod node;
mod storage;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use command::{Command, CommandResult};
use model::{Node, NodeId, State};

pub use haven_catalog as catalog;
pub use storage::{open_store, History, LogStore, StateMachineStore};

openraft::declare_raft_types!(
    /// openraft's type configuration for Haven.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = tokio::fs::File,
);

/// Opens tarpc clients to other nodes. The agent implements it over QUIC with the
/// cluster's mutual TLS; `peer_addr` is the `host:port` in the Raft membership.
pub trait PeerConnector: Send + Sync + 'static {
    fn connect(
        &self,
        target: NodeId,
        peer_addr: String,
    ) -> BoxFuture<'static, Result<rpc::PeerClient, String>>;
}

/// Timing of the Raft node.
#[derive(Debug, Clone)]
pub struct RaftSettings {
    pub heartbeat: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// Build a snapshot after this many applied entries since the last one.
    pub snapshot_after: u64,
    /// Entries kept in the log behind the last snapshot before purging.
    pub keep_logs: u64,
    /// How long a forwarded write or read barrier may take.
    pub request_timeout: Duration,
    /// Releases of each app kept in memory (the newest; also the current one, pending ones
    /// and those a dyno runs); older ones are read from disk.
    pub releases_in_memory: usize,
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            heartbeat: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(500),
            election_timeout_max: Duration::from_millis(1000),
            snapshot_after: 5000,
            keep_logs: 1000,
            request_timeout: Duration::from_secs(10),
            releases_in_memory: 10,
        }
    }
}

/// Why a write or a consistent read could not be served (the command itself was not
/// judged). The API answers 503 for these.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error, PartialEq, Eq)]
pub enum ClusterError {
    #[error("the cluster has no leader right now; retry in a moment")]
    NoLeader,
    #[error("the cluster is unavailable: {0}")]
    Unavailable(String),
}

/// Raft status of this node, for `GET /cluster/status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RaftStatus {
    pub node_id: NodeId,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub applied_index: Option<u64>,
    /// Index of the last entry in this node's log.
    pub last_log_index: Option<u64>,
    /// Last index covered by this node's latest snapshot.
    pub snapshot_index: Option<u64>,
    /// Last index purged from this node's log.
    pub purged_index: Option<u64>,
    /// Peer address of every member, from the membership config.
    pub members: Vec<(NodeId, String)>,
}

/// See [`HavenRaft::changes`].
pub struct Changes {
    rx: tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, openraft::BasicNode>>,
    seen: (Option<u64>, Option<NodeId>),
}

impl Changes {
    fn mark(
        m: &openraft::RaftMetrics<NodeId, openraft::BasicNode>,
    ) -> (Option<u64>, Option<NodeId>) {
        (m.last_applied.map(|l| l.index), m.current_leader)
    }

    /// Returns once something was applied (or the leader changed) since the last call;
    /// never returns once the node has shut down.
    pub async fn next(&mut self) {
        loop {
            if self.rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            let now = Changes::mark(&self.rx.borrow_and_update());
            if now != self.seen {
                self.seen = now;
                return;
            }
        }
    }
}

/// Most voters a cluster has; further nodes stay learners.
pub const MAX_VOTERS: usize = 5;

/// A running Raft node with its store. Cheap to clone.
#[derive(Clone)]
pub struct HavenRaft {
    inner: Arc<node::Inner>,
}

impl HavenRaft {
    /// Opens (or creates) the store under `data_dir` and starts the Raft node.
    pub async fn open(
        node_id: NodeId,
        data_dir: &Path,
        connector: Arc<dyn PeerConnector>,
        settings: RaftSettings,
    ) -> anyhow::Result<HavenRaft> {
        node::Inner::open(node_id, data_dir, connector, settings)
            .await
            .map(|inner| HavenRaft {
                inner: Arc::new(inner),
            })
    }

    /// Makes this node a one-member cluster, if no cluster was initialized in its store.
    /// Returns whether it did.
    pub async fn initialize_single(&self, peer_addr: &str) -> anyhow::Result<bool> {
        self.inner.initialize_single(peer_addr).await
    }

    /// Whether the store holds a membership (this node was initialized or has joined).
    pub fn is_initialized(&self) -> bool {
        self.inner.is_initialized()
    }

    /// Proposes `cmd` and waits until it is committed and applied on the leader. A follower
    /// forwards it to the leader. The inner result says whether the state machine
    /// accepted the command.
    pub async fn write(&self, cmd: Command) -> Result<CommandResult, ClusterError> {
        self.inner.write(cmd).await
    }

    /// Linearizable read barrier: returns once this node's state machine has applied
    /// everything the leader had committed when the barrier was asked. A read of
    /// [`HavenRaft::state`] after it sees every write acknowledged before it.
    pub async fn read_barrier(&self) -> Result<(), ClusterError> {
        self.inner.read_barrier().await
    }

    /// Runs `f` on this node's replica of the state (no barrier: may lag the leader).
    pub fn with_state<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        self.inner.with_state(f)
    }

    /// This node's release history on disk. Read it inside [`HavenRaft::with_state`]
    /// (whose lock keeps a release from moving between memory and disk meanwhile), with
    /// `History::find`/`History::window`, which look in memory first.
    pub fn history(&self) -> History {
        self.inner.history()
    }

    /// The compactions release retention with `keep` asks for now (`retention::plan`).
    pub fn retention_plan(&self, keep: u64) -> anyhow::Result<Vec<Command>> {
        let history = self.history();
        self.with_state(|s| retention::plan(s, &history, keep))
    }

    /// A consistent copy of this node's replica for a backup (call after a read barrier):
    /// returns the model as of one applied entry, after calling `each` with every
    /// release of its apps that the model does not hold in memory (oldest first per app).
    pub fn export(
        &self,
        each: impl FnMut(uuid::Uuid, model::Release) -> anyhow::Result<()>,
    ) -> anyhow::Result<State> {
        self.history()
            .export(|copy| self.with_state(|s| copy(s)), each)
    }

    /// A digest of this node's replica as a whole (the model with every release, in memory
    /// or on disk): equal on two nodes that applied the same entries.
    pub fn digest(&self) -> anyhow::Result<u64> {
        self.inner.digest()
    }

    /// Raft status of this node.
    pub fn status(&self) -> RaftStatus {
        self.inner.status()
    }

    /// Adds `node` to the cluster: registers it in the model, adds it as a learner (waits
    /// until it has caught up) and promotes it to voter while there are fewer than
    /// [`MAX_VOTERS`] voters. Forwarded to the leader when called on a follower.
    pub async fn add_node(&self, node: Node) -> Result<CommandResult, ClusterError> {
        self.inner.add_node(node).await
    }

    /// On the leader: `voters` become the voter set (voters left out stay learners), then
    /// `remove` leave the membership (the voter autopilot's change).
    pub async fn change_voters(
        &self,
        voters: std::collections::BTreeSet<NodeId>,
        remove: std::collections::BTreeSet<NodeId>,
    ) -> Result<(), ClusterError> {
        self.inner.change_voters(voters, remove).await
    }

    /// Waits until some node is leader, up to `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, ClusterError> {
        self.inner.wait_for_leader(timeout).await
    }

    /// The tarpc server that answers peers; serve it on every incoming peer stream with
    /// [`rpc::serve_peer`].
    pub fn peer_server(&self) -> rpc::PeerServer {
        rpc::PeerServer::new(self.inner.clone())
    }

    /// Wakes whenever this node's state machine applies entries or its leader changes,
    /// for loops that react to the state instead of polling it.
    pub fn changes(&self) -> Changes {
        let rx = self.inner.raft.metrics();
        let seen = Changes::mark(&rx.borrow());
        Changes { rx, seen }
    }

    /// Stops the Raft node and closes the store.
    pub async fn shutdown(&self) {
        self.inner.shutdown().await
    }
}
