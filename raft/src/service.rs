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

    async fn forward(self, _: tarpc::context::Context, cmd: Command) -> Result<CommandResult, ClusterError> {
        self.inner.write_local(cmd).await
    }

    async fn read_index(self, _: tarpc::context::Context) -> Result<u64, ClusterError> {
        self.inner.local_read_index().await
    }

    async fn add_node(self, _: tarpc::context::Context, node: Node) -> Result<CommandResult, ClusterError> {
        self.inner.add_node(node).await
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
    PeerClient::new(tarpc::client::Config::default(), transport::new(framed, Bincode::default())).spawn()
}
