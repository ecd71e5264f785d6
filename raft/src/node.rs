//! The Raft node behind [`HavenRaft`](crate::HavenRaft): openraft wired to the store and
//! to the peer network, write forwarding, read barriers and membership changes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

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
use crate::storage::{open_db, LogStore, StateMachineStore};
use crate::{ClusterError, PeerConnector, RaftSettings, RaftStatus, TypeConfig, MAX_VOTERS};

pub(crate) type Raft = openraft::Raft<TypeConfig>;

pub(crate) struct Inner {
    pub(crate) raft: Raft,
    pub(crate) node_id: NodeId,
    state: Arc<RwLock<State>>,
    connector: Arc<dyn PeerConnector>,
    settings: RaftSettings,
}

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
        let log = LogStore::new(db.clone());
        let sm = StateMachineStore::new(db).map_err(|e| anyhow::anyhow!("open state machine: {e}"))?;
        let state = sm.state.clone();
        let config = Config {
            cluster_name: "haven".into(),
            heartbeat_interval: settings.heartbeat.as_millis() as u64,
            election_timeout_min: settings.election_timeout_min.as_millis() as u64,
            election_timeout_max: settings.election_timeout_max.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_after),
            max_in_snapshot_log_to_keep: settings.keep_logs,
            purge_batch_size: 64,
            install_snapshot_timeout: 10_000,
            ..Default::default()
        };
        let config = Arc::new(config.validate()?);
        let network = Network {
            connector: connector.clone(),
        };
        let raft = Raft::new(node_id, config, network, log, sm).await?;
        Ok(Inner {
            raft,
            node_id,
            state,
            connector,
            settings,
        })
    }

    pub(crate) async fn initialize_single(&self, peer_addr: &str) -> anyhow::Result<bool> {
        if self.raft.is_initialized().await? {
            return Ok(false);
        }
        let members = BTreeMap::from([(self.node_id, BasicNode::new(peer_addr))]);
        self.raft.initialize(members).await?;
        Ok(true)
    }

    pub(crate) fn is_initialized(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        let initialized = m.membership_config.membership().nodes().next().is_some();
        initialized
    }

    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        let guard = self.state.read().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }

    /// The leader's id and peer address, if one is known.
    fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&id)?.addr.clone();
        Some((id, addr))
    }

    async fn leader_client(&self) -> Result<(NodeId, PeerClient), ClusterError> {
        let (id, addr) = self.leader().ok_or(ClusterError::NoLeader)?;
        let client = self.connector.connect(id, addr).await.map_err(unavailable)?;
        Ok((id, client))
    }

    /// Applies `cmd` through this node's Raft, which must be the leader.
    pub(crate) async fn write_local(&self, cmd: Command) -> Result<CommandResult, ClusterError> {
        match self.raft.client_write(cmd).await {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(ClusterError::NoLeader),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Retries `op` while the cluster has no (reachable) leader, up to the request timeout.
    async fn retrying<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, ClusterError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ClusterError>>,
    {
        let deadline = tokio::time::Instant::now() + self.settings.request_timeout;
        let mut delay = Duration::from_millis(20);
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    if tokio::time::Instant::now() + delay >= deadline {
                        debug!(what, error = %e, "giving up");
                        return Err(e);
                    }
                    debug!(what, error = %e, "retrying");
                    // Wait for a leader change rather than spinning.
                    let _ = self
                        .raft
                        .wait(Some(delay))
                        .metrics(|m| m.current_leader.is_some(), "leader")
                        .await;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
            }
        }
    }

    async fn write_once(&self, cmd: Command) -> Result<CommandResult, ClusterError> {
        let (leader, _) = self.leader().ok_or(ClusterError::NoLeader)?;
        if leader == self.node_id {
            return self.write_local(cmd).await;
        }
        let (_, client) = self.leader_client().await?;
        client
            .forward(ctx(self.settings.request_timeout), cmd)
            .await
            .map_err(unavailable)?
    }

    pub(crate) async fn write(&self, cmd: Command) -> Result<CommandResult, ClusterError> {
        // A write is retried only when it surely did not commit: no leader, or the leader
        // refused it as not-leader. A timeout after sending may have committed, so it is
        // reported, not retried.
        let deadline = tokio::time::Instant::now() + self.settings.request_timeout;
        loop {
            match self.write_once(cmd.clone()).await {
                Err(ClusterError::NoLeader) if tokio::time::Instant::now() < deadline => {
                    let _ = self
                        .raft
                        .wait(Some(Duration::from_millis(200)))
                        .metrics(|m| m.current_leader.is_some(), "leader")
                        .await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(ClusterError::Unavailable(e)) if e.starts_with("connect") && tokio::time::Instant::now() < deadline => {
                    // Could not even reach the leader: nothing was sent.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    /// On the leader: the index a linearizable read must wait for.
    pub(crate) async fn local_read_index(&self) -> Result<u64, ClusterError> {
        match self.raft.ensure_linearizable().await {
            Ok(id) => Ok(id.map(|l| l.index).unwrap_or(0)),
            Err(RaftError::APIError(_)) => Err(ClusterError::NoLeader),
            Err(e) => Err(unavailable(e)),
        }
    }

    pub(crate) async fn read_barrier(&self) -> Result<(), ClusterError> {
        let index = self
            .retrying("read index", || async {
                let (leader, _) = self.leader().ok_or(ClusterError::NoLeader)?;
                if leader == self.node_id {
                    return self.local_read_index().await;
                }
                let (_, client) = self.leader_client().await?;
                client
                    .read_index(ctx(self.settings.request_timeout))
                    .await
                    .map_err(unavailable)?
            })
            .await?;
        self.raft
            .wait(Some(self.settings.request_timeout))
            .applied_index_at_least(Some(index), "read barrier")
            .await
            .map_err(unavailable)?;
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
            members: membership.nodes().map(|(id, n)| (*id, n.addr.clone())).collect(),
        }
    }

    async fn add_node_local(&self, node: Node) -> Result<CommandResult, ClusterError> {
        let registered = self.write_local(Command::RegisterNode { node: node.clone() }).await?;
        if registered.is_err() {
            return Ok(registered);
        }
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let is_member = membership.get_node(&node.id).is_some();
        if !is_member {
            info!(node_id = node.id, name = %node.name, "adding learner");
            self.raft
                .add_learner(node.id, BasicNode::new(&node.peer_addr), true)
                .await
                .map_err(unavailable)?;
        }
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if !voters.contains(&node.id) && voters.len() < MAX_VOTERS {
            info!(node_id = node.id, "promoting to voter");
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([node.id])), false)
                .await
                .map_err(unavailable)?;
        }
        Ok(registered)
    }

    pub(crate) async fn add_node(&self, node: Node) -> Result<CommandResult, ClusterError> {
        let (leader, _) = self.leader().ok_or(ClusterError::NoLeader)?;
        if leader == self.node_id {
            return self.add_node_local(node).await;
        }
        let (_, client) = self.leader_client().await?;
        client
            .add_node(ctx(Duration::from_secs(120)), node)
            .await
            .map_err(unavailable)?
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
        let c = self.connector.connect(self.target, self.addr.clone()).await?;
        self.client = Some(c.clone());
        Ok(c)
    }

    /// Sends one serialized openraft request and decodes the reply.
    async fn call<Req, Resp, E>(
        &mut self,
        req: &Req,
        option: &RPCOption,
        send: impl FnOnce(PeerClient, tarpc::context::Context, Vec<u8>) -> futures::future::BoxFuture<'static, Result<Result<Vec<u8>, String>, tarpc::client::RpcError>>,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let client = match self.client().await {
            Ok(c) => c,
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e)))),
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
        self.call(&rpc, &option, |c, cx, b| Box::pin(async move { c.append_entries(cx, b).await }))
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.call(&rpc, &option, |c, cx, b| Box::pin(async move { c.install_snapshot(cx, b).await }))
            .await
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> Result<VoteResponse<NodeId>, RpcErr> {
        self.call(&rpc, &option, |c, cx, b| Box::pin(async move { c.vote(cx, b).await }))
            .await
    }
}
