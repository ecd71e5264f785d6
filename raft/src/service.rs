//! The tarpc `Peer` service that nodes call on each other, and helpers to run it over any
//! byte stream (the agent gives QUIC bi-streams).
//!
//! Messages are bincode in length-delimited frames. openraft's RPC types travel inside as
//! bincode bytes of their own (see [`Blob`]) so that the service signature stays stable.

use std::sync::Arc;

use futures::prelude::*;
use serde::{Deserialize, Serialize};
use tarpc::serde_transport as transport;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::length_delimited::LengthDelimitedCodec;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::command::{Command, CommandResult};
use crate::model::Node;
use crate::node::Inner;
use crate::ClusterError;

/// Largest frame: a snapshot chunk must fit.
const MAX_FRAME: usize = 256 << 20;

/// A serialized openraft request or response.
pub type Blob = Vec<u8>;

/// Calls between nodes.
#[tarpc::service]
pub trait Peer {
    /// openraft AppendEntries; request and response are bincode.
    async fn append_entries(req: Blob) -> Result<Blob, String>;
    /// openraft Vote.
    async fn vote(req: Blob) -> Result<Blob, String>;
    /// openraft InstallSnapshot.
    async fn install_snapshot(req: Blob) -> Result<Blob, String>;
    /// Applies a command on the leader (a follower forwards client writes here).
    async fn forward(cmd: Command) -> Result<CommandResult, ClusterError>;
    /// On the leader: confirms leadership and returns the log index a reader must have
    /// applied to see every acknowledged write.
    async fn read_index() -> Result<u64, ClusterError>;
    /// On the leader: adds a node to the cluster.
    async fn add_node(node: Node) -> Result<CommandResult, ClusterError>;
}

/// Server side of [`Peer`], backed by this node's Raft.
#[derive(Clone)]
pub struct PeerServer {
    inner: Arc<Inner>,
}

impl PeerServer {
    pub(crate) fn new(inner: Arc<Inner>) -> PeerServer {
        PeerServer { inner }
    }
}

fn decode<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Result<T, String> {
    bincode::deserialize(b).map_err(|e| format!("malformed request: {e}"))
}

fn encode<T: Serialize>(v: &T) -> Result<Blob, String> {
    bincode::serialize(v).map_err(|e| format!("encode response: {e}"))
}

impl Peer for PeerServer {
    async fn append_entries(self, _: tarpc::context::Context, req: Blob) -> Result<Blob, String> {
        let req = decode(&req)?;
        encode(&self.inner.raft.append_entries(req).await)
    }

    async fn vote(self, _: tarpc::context::Context, req: Blob) -> Result<Blob, String> {
        let req = decode(&req)?;
        encode(&self.inner.raft.vote(req).await)
    }

    async fn install_snapshot(self, _: tarpc::context::Context, req: Blob) -> Result<Blob, String> {
        let req = decode(&req)?;
        encode(&self.inner.raft.install_snapshot(req).await)
    }

    async fn forward(
        self,
        _: tarpc::context::Context,
        cmd: Command,
    ) -> Result<CommandResult, ClusterError> {
        self.inner.write_local(cmd).await
    }

    async fn read_index(self, _: tarpc::context::Context) -> Result<u64, ClusterError> {
        self.inner.local_read_index().await
    }

    async fn add_node(
        self,
        _: tarpc::context::Context,
        node: Node,
    ) -> Result<CommandResult, ClusterError> {
        self.inner.add_node_on_leader(node).await
    }
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

/// Serves [`Peer`] on one byte stream until it closes.
pub async fn serve_peer<IO>(io: IO, server: PeerServer)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let framed = tokio_util::codec::Framed::new(io, codec());
    BaseChannel::with_defaults(transport::new(framed, Bincode::default()))
        .execute(server.serve())
        .for_each(|f| async {
            tokio::spawn(f);
        })
        .await;
}

/// A [`Peer`] client over one byte stream.
pub fn peer_client<IO>(io: IO) -> PeerClient
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let framed = tokio_util::codec::Framed::new(io, codec());
    PeerClient::new(
        tarpc::client::Config::default(),
        transport::new(framed, Bincode::default()),
    )
    .spawn()
}

#[cfg(test)]
mod tests {
    //! openraft's messages travel as bincode: bincode 1 cannot carry `skip_serializing_if`,
    //! untagged enums or `deserialize_any`, so every message and error kind is round-tripped.

    use std::collections::{BTreeMap, BTreeSet};
    use std::fmt::Debug;

    use openraft::error::{Fatal, InstallSnapshotError, RaftError, SnapshotMismatch};
    use openraft::raft::{
        AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest,
        InstallSnapshotResponse, VoteRequest, VoteResponse,
    };
    use openraft::{
        BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta,
        SnapshotSegmentId, StoredMembership, Vote,
    };
    use serde::de::DeserializeOwned;

    use super::*;
    use crate::command::{CommandError, CommandOutput};
    use crate::model::{NodeStatus, Token};
    use crate::TypeConfig;

    /// Round-trips through bincode and compares the debug forms (not every openraft type
    /// implements `PartialEq`).
    fn round_trip<T: Serialize + DeserializeOwned + Debug>(v: &T) {
        let bytes = bincode::serialize(v).expect("serialize");
        let back: T = bincode::deserialize(&bytes).expect("deserialize");
        assert_eq!(format!("{v:?}"), format!("{back:?}"));
    }

    fn log_id(term: u64, index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn membership() -> Membership<u64, BasicNode> {
        let nodes = BTreeMap::from([
            (1, BasicNode::new("127.0.0.1:7001")),
            (2, BasicNode::new("127.0.0.1:7002")),
            (3, BasicNode::new("127.0.0.1:7003")),
        ]);
        // A joint config with a learner (3), the richest shape a membership has.
        Membership::new(vec![BTreeSet::from([1]), BTreeSet::from([1, 2])], nodes)
    }

    fn token() -> Token {
        Token {
            id: uuid::Uuid::new_v4(),
            sha256: "ab".repeat(32),
            user_email: "admin@example.com".into(),
            user_id: uuid::Uuid::new_v4(),
            description: "test".into(),
            created_at: chrono::Utc::now(),
            expires_at: None,
        }
    }

    #[test]
    fn append_entries_round_trips_with_every_payload() {
        let req: AppendEntriesRequest<TypeConfig> = AppendEntriesRequest {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(log_id(2, 9)),
            entries: vec![
                Entry {
                    log_id: log_id(3, 10),
                    payload: EntryPayload::Blank,
                },
                Entry {
                    log_id: log_id(3, 11),
                    payload: EntryPayload::Normal(Command::AddToken { token: token() }),
                },
                Entry {
                    log_id: log_id(3, 12),
                    payload: EntryPayload::Normal(Command::SetNodeStatus {
                        node_id: 2,
                        status: NodeStatus::Down,
                    }),
                },
                Entry {
                    log_id: log_id(3, 13),
                    payload: EntryPayload::Membership(membership()),
                },
            ],
            leader_commit: Some(log_id(3, 10)),
        };
        round_trip(&req);
        let first: AppendEntriesRequest<TypeConfig> = AppendEntriesRequest {
            vote: Vote::new(1, 1),
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        };
        round_trip(&first);

        type Reply = Result<AppendEntriesResponse<u64>, RaftError<u64>>;
        round_trip::<Reply>(&Ok(AppendEntriesResponse::Success));
        round_trip::<Reply>(&Ok(AppendEntriesResponse::PartialSuccess(Some(log_id(
            3, 11,
        )))));
        round_trip::<Reply>(&Ok(AppendEntriesResponse::PartialSuccess(None)));
        round_trip::<Reply>(&Ok(AppendEntriesResponse::Conflict));
        round_trip::<Reply>(&Ok(AppendEntriesResponse::HigherVote(Vote::new(4, 2))));
        round_trip::<Reply>(&Err(RaftError::Fatal(Fatal::Stopped)));
        round_trip::<Reply>(&Err(RaftError::Fatal(Fatal::Panicked)));
        let storage: openraft::StorageError<u64> =
            openraft::StorageIOError::write_logs(openraft::AnyError::error("disk full")).into();
        round_trip::<Reply>(&Err(RaftError::Fatal(Fatal::StorageError(storage))));
    }

    #[test]
    fn vote_round_trips() {
        let req = VoteRequest::new(Vote::new(5, 2), Some(log_id(4, 20)));
        round_trip(&req);
        round_trip(&VoteRequest::<u64>::new(Vote::new(1, 1), None));
        type Reply = Result<VoteResponse<u64>, RaftError<u64>>;
        round_trip::<Reply>(&Ok(VoteResponse::new(
            Vote::new(5, 2),
            Some(log_id(4, 20)),
            true,
        )));
        round_trip::<Reply>(&Ok(VoteResponse::new(
            Vote::new_committed(6, 3),
            None,
            false,
        )));
        round_trip::<Reply>(&Err(RaftError::Fatal(Fatal::Stopped)));
    }

    #[test]
    fn install_snapshot_round_trips() {
        let meta = SnapshotMeta {
            last_log_id: Some(log_id(3, 40)),
            last_membership: StoredMembership::new(Some(log_id(2, 5)), membership()),
            snapshot_id: "3-1-40-1".into(),
        };
        let req: InstallSnapshotRequest<TypeConfig> = InstallSnapshotRequest {
            vote: Vote::new_committed(3, 1),
            meta,
            offset: 0,
            data: vec![1, 2, 3, 0, 255],
            done: true,
        };
        round_trip(&req);
        type Reply = Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>;
        round_trip::<Reply>(&Ok(InstallSnapshotResponse {
            vote: Vote::new(3, 1),
        }));
        let mismatch = SnapshotMismatch {
            expect: SnapshotSegmentId {
                id: "a".into(),
                offset: 0,
            },
            got: SnapshotSegmentId {
                id: "b".into(),
                offset: 7,
            },
        };
        round_trip::<Reply>(&Err(RaftError::APIError(
            InstallSnapshotError::SnapshotMismatch(mismatch),
        )));
        round_trip::<Reply>(&Err(RaftError::Fatal(Fatal::Stopped)));
    }

    #[test]
    fn service_values_round_trip() {
        let ok: Result<CommandResult, ClusterError> = Ok(Ok(CommandOutput::Done));
        round_trip(&ok);
        let rejected: Result<CommandResult, ClusterError> =
            Ok(Err(CommandError::Conflict("name taken".into())));
        round_trip(&rejected);
        round_trip::<Result<CommandResult, ClusterError>>(&Err(ClusterError::NoLeader));
        round_trip::<Result<u64, ClusterError>>(&Err(ClusterError::Unavailable("x".into())));
    }
}
