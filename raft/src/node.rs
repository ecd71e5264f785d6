//! The Raft node behind [`HavenRaft`](crate::HavenRaft): openraft wired to the store and
//! to the peer network, write forwarding, read barriers and membership changes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use tokio::time::Instant;

use openraft::error::{
    ClientWriteError, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, ChangeMembers, Config, SnapshotPolicy};
use tracing::{debug, info, warn};

use crate::command::{Command, CommandResult};
use crate::model::{Node, NodeId, State};
use crate::rpc::PeerClient;
use crate::storage::{open_db, History, LogStore, StateMachineStore};
use crate::{ClusterError, PeerConnector, RaftSettings, RaftStatus, TypeConfig, MAX_VOTERS};

pub(crate) type Raft = openraft::Raft<TypeConfig>;

pub(crate) struct Inner {
    pub(crate) raft: Raft,
    pub(crate) node_id: NodeId,
    state: Arc<RwLock<State>>,
    history: History,
    connector: Arc<dyn PeerConnector>,
    settings: RaftSettings,
    /// The store's database, to know when openraft's tasks have let go of it.
    db: Weak<rocksdb::DB>,
    /// Set once the store holds a membership; metrics lag right after open.
    initialized: AtomicBool,
}

/// How long a forwarded `add_node` may take: the learner must catch up first.
const ADD_NODE_TIMEOUT: Duration = Duration::from_secs(120);

fn unavailable(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Unavailable(e.to_string())
}

fn ctx(timeout: Duration) -> tarpc::context::Context {
    let mut c = tarpc::context::current();
    c.deadline = std::time::SystemTime::now() + timeout;
    c
}

impl Inner {
    pub(crate) async fn open(
        node_id: NodeId,
        data_dir: &Path,
        connector: Arc<dyn PeerConnector>,
        settings: RaftSettings,
    ) -> anyhow::Result<Inner> {
        let db = open_db(data_dir)?;
        let weak_db = Arc::downgrade(&db);
        let log = LogStore::new(db.clone());
        let sm = StateMachineStore::new(db, settings.releases_in_memory)
            .map_err(|e| anyhow::anyhow!("open state machine: {e}"))?;
        let state = sm.state.clone();
        let history = sm.history.clone();
        let config = Config {
            cluster_name: "haven".into(),
            heartbeat_interval: settings.heartbeat.as_millis() as u64,
            election_timeout_min: settings.election_timeout_min.as_millis() as u64,
            election_timeout_max: settings.election_timeout_max.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_after),
            max_in_snapshot_log_to_keep: settings.keep_logs,
            // Purge in batches, but small enough that a short log still gets purged.
            purge_batch_size: (settings.snapshot_after / 4).clamp(1, 64),
            install_snapshot_timeout: 10_000,
            ..Default::default()
        };
        let config = Arc::new(config.validate()?);
        let network = Network {
            connector: connector.clone(),
        };
        let raft = Raft::new(node_id, config, network, log, sm).await?;
        let initialized = AtomicBool::new(raft.is_initialized().await?);
        Ok(Inner {
            raft,
            node_id,
            state,
            history,
            connector,
            settings,
            db: weak_db,
            initialized,
        })
    }

    pub(crate) async fn initialize_single(&self, peer_addr: &str) -> anyhow::Result<bool> {
        if self.raft.is_initialized().await? {
            return Ok(false);
        }
        let members = BTreeMap::from([(self.node_id, BasicNode::new(peer_addr))]);
        self.raft.initialize(members).await?;
        self.initialized.store(true, Ordering::SeqCst);
        Ok(true)
    }

    pub(crate) fn is_initialized(&self) -> bool {
        if self.initialized.load(Ordering::SeqCst) {
            return true;
        }
        // A node that joined learns its membership from the leader.
        let joined = self.membership().nodes().next().is_some();
        if joined {
            self.initialized.store(true, Ordering::SeqCst);
        }
        joined
    }

    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        let guard = self.state.read().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }

    pub(crate) fn history(&self) -> History {
        self.history.clone()
    }

    pub(crate) fn digest(&self) -> anyhow::Result<u64> {
        let guard = self.state.read().unwrap_or_else(|p| p.into_inner());
        crate::storage::digest(&guard, &self.history)
    }

    /// The leader's id and peer address, if one is known.
    fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&id)?.addr.clone();
        Some((id, addr))
    }

    async fn leader_client(&self, id: NodeId, addr: String) -> Result<PeerClient, ClusterError> {
        self.connector.connect(id, addr.clone()).await.map_err(|e| {
            ClusterError::Unavailable(format!("cannot reach the leader {id} at {addr}: {e}"))
        })
    }

    /// Applies `cmd` through this node's Raft, which must be the leader.
    pub(crate) async fn write_local(&self, cmd: Command) -> Result<CommandResult, ClusterError> {
        self.write_local_attempt(cmd, self.settings.request_timeout)
            .await
            .into_result()
    }

    async fn write_local_attempt(&self, cmd: Command, timeout: Duration) -> Attempt<CommandResult> {
        match tokio::time::timeout(timeout, self.raft.client_write(cmd)).await {
            Ok(Ok(resp)) => Attempt::Done(Ok(resp.data)),
            // Refused before it was proposed: safe to retry elsewhere.
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                Attempt::NotSent(ClusterError::NoLeader)
            }
            Ok(Err(e)) => Attempt::Done(Err(unavailable(e))),
            Err(_) => Attempt::Done(Err(ClusterError::Unavailable(
                "the write was not confirmed in time; it may still be applied, check before retrying"
                    .into(),
            ))),
        }
    }

    async fn write_once(&self, cmd: Command, deadline: Instant) -> Attempt<CommandResult> {
        let Some((leader, addr)) = self.leader() else {
            return Attempt::NotSent(ClusterError::NoLeader);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if leader == self.node_id {
            return self.write_local_attempt(cmd, left).await;
        }
        let client = match self.leader_client(leader, addr).await {
            Ok(c) => c,
            Err(e) => return Attempt::NotSent(e),
        };
        match client.forward(ctx(left), cmd).await {
            // The leader refused as not-leader: it did not propose the command.
            Ok(Err(ClusterError::NoLeader)) => Attempt::NotSent(ClusterError::NoLeader),
            Ok(result) => Attempt::Done(result),
            Err(tarpc::client::RpcError::Send(e)) => {
                Attempt::NotSent(unavailable(format!("send to the leader {leader}: {e}")))
            }
            Err(e) => Attempt::Done(Err(ClusterError::Unavailable(format!(
                "the leader {leader} did not answer ({e}); the write may still be applied, check before retrying"
            )))),
        }
    }

    pub(crate) async fn write(&self, cmd: Command) -> Result<CommandResult, ClusterError> {
        // A write is retried only when it surely was not proposed: no leader, the leader
        // unreachable, or the leader refused it as not-leader. A failure after sending may
        // have committed, so it is reported, not retried (commands are not idempotent).
        let deadline = Instant::now() + self.settings.request_timeout;
        let mut delay = Duration::from_millis(20);
        loop {
            match self.write_once(cmd.clone(), deadline).await {
                Attempt::Done(r) => return r,
                Attempt::NotSent(e) => {
                    if Instant::now() + delay >= deadline {
                        return Err(e);
                    }
                    debug!(error = %e, "write not sent, retrying");
                    self.pause_for_leader(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
            }
        }
    }

    /// Waits up to `delay` for a leader to be known, and at least a short while, so that
    /// retries neither spin nor hammer a leader that just went away.
    async fn pause_for_leader(&self, delay: Duration) {
        let _ = self
            .raft
            .wait(Some(delay))
            .metrics(|m| m.current_leader.is_some(), "leader")
            .await;
        tokio::time::sleep(delay.min(Duration::from_millis(50))).await;
    }

    /// Retries `op` while it fails, up to the request timeout. Only for idempotent work.
    async fn retrying<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, ClusterError>
    where
        F: FnMut(Duration) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClusterError>>,
    {
        let deadline = Instant::now() + self.settings.request_timeout;
        let mut delay = Duration::from_millis(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match op(left).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    if Instant::now() + delay >= deadline {
                        debug!(what, error = %e, "giving up");
                        return Err(e);
                    }
                    debug!(what, error = %e, "retrying");
                    self.pause_for_leader(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
            }
        }
    }

    /// On the leader: confirms leadership with a quorum and returns the index a
    /// linearizable read must wait for. `NoLeader` when this node is not the leader.
    pub(crate) async fn local_read_index(&self) -> Result<u64, ClusterError> {
        let timeout = self.settings.request_timeout;
        match tokio::time::timeout(timeout, self.raft.ensure_linearizable()).await {
            Ok(Ok(id)) => Ok(id.map(|l| l.index).unwrap_or(0)),
            Ok(Err(RaftError::APIError(_))) => Err(ClusterError::NoLeader),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(ClusterError::Unavailable(
                "the leader could not confirm its leadership in time; retry in a moment".into(),
            )),
        }
    }

    pub(crate) async fn read_barrier(&self) -> Result<(), ClusterError> {
        let deadline = Instant::now() + self.settings.request_timeout;
        // Asking for the read index is idempotent, so every failure is retried.
        let index = self
            .retrying("read index", |left| async move {
                let (leader, addr) = self.leader().ok_or(ClusterError::NoLeader)?;
                if leader == self.node_id {
                    return self.local_read_index().await;
                }
                let client = self.leader_client(leader, addr).await?;
                client
                    .read_index(ctx(left))
                    .await
                    .map_err(|e| unavailable(format!("read index from the leader {leader}: {e}")))?
            })
            .await?;
        let left = deadline.saturating_duration_since(Instant::now());
        self.raft
            .wait(Some(left.max(Duration::from_millis(100))))
            .applied_index_at_least(Some(index), "read barrier")
            .await
            .map_err(|e| {
                ClusterError::Unavailable(format!(
                    "this node has not caught up with the leader ({e}); retry in a moment"
                ))
            })?;
        Ok(())
    }

    pub(crate) fn status(&self) -> RaftStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let learners: Vec<NodeId> = membership.learner_ids().collect();
        RaftStatus {
            node_id: self.node_id,
            leader: m.current_leader,
            term: m.current_term,
            voters: voters.into_iter().collect(),
            learners,
            applied_index: m.last_applied.map(|l| l.index),
            last_log_index: m.last_log_index,
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            members: membership
                .nodes()
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect(),
        }
    }

    /// On the leader: registers `node`, adds it as a learner (waiting until it caught
    /// up) and promotes it to voter while there are fewer than [`MAX_VOTERS`]. Every step
    /// is skipped when already done, so a retry is harmless. `NoLeader` when this node is
    /// not the leader (never forwarded, so forwarding cannot loop).
    pub(crate) async fn add_node_on_leader(
        &self,
        node: Node,
    ) -> Result<CommandResult, ClusterError> {
        if self.leader().map(|(id, _)| id) != Some(self.node_id) {
            return Err(ClusterError::NoLeader);
        }
        let registered = self
            .write_local(Command::RegisterNode { node: node.clone() })
            .await?;
        if registered.is_err() {
            return Ok(registered);
        }
        let is_member = self.membership().get_node(&node.id).is_some();
        if !is_member {
            info!(node_id = node.id, name = %node.name, "adding learner");
            self.raft
                .add_learner(node.id, BasicNode::new(&node.peer_addr), true)
                .await
                .map_err(|e| membership_err(&node, e))?;
        }
        let voters: BTreeSet<NodeId> = self.membership().voter_ids().collect();
        if !voters.contains(&node.id) && voters.len() < MAX_VOTERS {
            info!(node_id = node.id, "promoting to voter");
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([node.id])), false)
                .await
                .map_err(|e| membership_err(&node, e))?;
        }
        Ok(registered)
    }

    /// On the leader: makes `voters` the voter set (each already a member; voters left
    /// out stay as learners), then removes `remove` from the membership altogether.
    /// `NoLeader` when this node is not the leader.
    pub(crate) async fn change_voters(
        &self,
        voters: BTreeSet<NodeId>,
        remove: BTreeSet<NodeId>,
    ) -> Result<(), ClusterError> {
        if self.leader().map(|(id, _)| id) != Some(self.node_id) {
            return Err(ClusterError::NoLeader);
        }
        let failed = |e: &dyn std::fmt::Display| {
            ClusterError::Unavailable(format!("changing the voters failed: {e}; retry"))
        };
        let current: BTreeSet<NodeId> = self.membership().voter_ids().collect();
        if current != voters {
            info!(?voters, "replacing the voters");
            self.raft
                .change_membership(ChangeMembers::ReplaceAllVoters(voters), true)
                .await
                .map_err(|e| failed(&e))?;
        }
        let members: BTreeSet<NodeId> = self.membership().nodes().map(|(id, _)| *id).collect();
        let remove: BTreeSet<NodeId> = remove.intersection(&members).copied().collect();
        if !remove.is_empty() {
            info!(?remove, "removing nodes from the membership");
            self.raft
                .change_membership(ChangeMembers::RemoveNodes(remove), false)
                .await
                .map_err(|e| failed(&e))?;
        }
        Ok(())
    }

    fn membership(&self) -> openraft::Membership<NodeId, BasicNode> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone()
    }

    async fn add_node_once(&self, node: Node) -> Result<CommandResult, ClusterError> {
        let (leader, addr) = self.leader().ok_or(ClusterError::NoLeader)?;
        if leader == self.node_id {
            return self.add_node_on_leader(node).await;
        }
        let client = self.leader_client(leader, addr).await?;
        client
            .add_node(ctx(ADD_NODE_TIMEOUT), node)
            .await
            .map_err(|e| unavailable(format!("add node through the leader {leader}: {e}")))?
    }

    pub(crate) async fn add_node(&self, node: Node) -> Result<CommandResult, ClusterError> {
        // Adding is idempotent, so any failure is retried while the request timeout lasts
        // (the learner catching up may take longer than that; it is not cut short).
        let deadline = Instant::now() + self.settings.request_timeout;
        let mut delay = Duration::from_millis(20);
        loop {
            match self.add_node_once(node.clone()).await {
                Err(e) if Instant::now() + delay < deadline => {
                    debug!(node_id = node.id, error = %e, "add node: retrying");
                    self.pause_for_leader(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    pub(crate) async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, ClusterError> {
        let m = self
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "leader")
            .await
            .map_err(|_| ClusterError::NoLeader)?;
        m.current_leader.ok_or(ClusterError::NoLeader)
    }

    pub(crate) async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            warn!(error = %e, "raft shutdown");
        }
        // openraft's tasks own the store handles and end shortly after the core; wait for
        // the database to close so that the directory can be opened again at once.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.db.strong_count() > 0 {
            if Instant::now() >= deadline {
                warn!("the raft store is still open after shutdown");
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn membership_err(node: &Node, e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Unavailable(format!(
        "adding node {} to the membership failed: {e}; retry",
        node.id
    ))
}

/// Why one attempt at a write ended.
enum Attempt<T> {
    /// Surely not proposed: may be retried.
    NotSent(ClusterError),
    /// Proposed (or maybe proposed): final.
    Done(Result<T, ClusterError>),
}

impl<T> Attempt<T> {
    fn into_result(self) -> Result<T, ClusterError> {
        match self {
            Attempt::NotSent(e) => Err(e),
            Attempt::Done(r) => r,
        }
    }
}

/// openraft's network: one [`PeerConnection`] per target.
struct Network {
    connector: Arc<dyn PeerConnector>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerConnection {
        PeerConnection {
            connector: self.connector.clone(),
            target,
            addr: node.addr.clone(),
            client: None,
        }
    }
}

struct PeerConnection {
    connector: Arc<dyn PeerConnector>,
    target: NodeId,
    addr: String,
    client: Option<PeerClient>,
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

fn net_err<E: std::error::Error>(msg: String) -> RPCError<NodeId, BasicNode, E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(msg)))
}

impl PeerConnection {
    async fn client(&mut self) -> Result<PeerClient, String> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let c = self
            .connector
            .connect(self.target, self.addr.clone())
            .await?;
        self.client = Some(c.clone());
        Ok(c)
    }

    /// Sends one serialized openraft request and decodes the reply.
    async fn call<Req, Resp, E>(
        &mut self,
        req: &Req,
        option: &RPCOption,
        send: impl FnOnce(
            PeerClient,
            tarpc::context::Context,
            Vec<u8>,
        ) -> futures::future::BoxFuture<
            'static,
            Result<Result<Vec<u8>, String>, tarpc::client::RpcError>,
        >,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let client = match self.client().await {
            Ok(c) => c,
            Err(e) => {
                return Err(RPCError::Unreachable(Unreachable::new(
                    &std::io::Error::other(e),
                )))
            }
        };
        let bytes = bincode::serialize(req).map_err(|e| net_err(e.to_string()))?;
        let reply = send(client, ctx(option.hard_ttl()), bytes).await;
        let bytes = match reply {
            Ok(Ok(b)) => b,
            Ok(Err(remote)) => return Err(net_err(remote)),
            Err(e) => {
                self.client = None;
                return Err(net_err(e.to_string()));
            }
        };
        let decoded: Result<Resp, RaftError<NodeId, E>> =
            bincode::deserialize(&bytes).map_err(|e| net_err(e.to_string()))?;
        decoded.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        self.call(&rpc, &option, |c, cx, b| {
            Box::pin(async move { c.append_entries(cx, b).await })
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.call(&rpc, &option, |c, cx, b| {
            Box::pin(async move { c.install_snapshot(cx, b).await })
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        self.call(&rpc, &option, |c, cx, b| {
            Box::pin(async move { c.vote(cx, b).await })
        })
        .await
    }
}
