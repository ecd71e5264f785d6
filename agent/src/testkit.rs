//! Real parts for unit tests: a single-node `HavenRaft` (RocksDB in a temp dir) and a
//! QUIC connector on loopback with certificates from a fresh cluster CA.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use haven_raft::model::NodeId;
use haven_raft::rpc::PeerClient;
use haven_raft::{HavenRaft, PeerConnector, RaftSettings};

use crate::peer::{bind_endpoint, QuicConnector};
use crate::tls::{generate_ca, issue_node_cert};

/// A single node has nobody to talk to.
struct NoPeers;

impl PeerConnector for NoPeers {
    fn connect(
        &self,
        target: NodeId,
        _addr: String,
    ) -> BoxFuture<'static, Result<PeerClient, String>> {
        Box::pin(async move {
            Err(format!(
                "node {target} is unreachable: this test has no peers"
            ))
        })
    }
}

/// A single-node cluster in `dir`, leader already.
pub async fn single_node_raft(dir: &Path, node: NodeId) -> HavenRaft {
    let raft = HavenRaft::open(
        node,
        &dir.join("raft"),
        Arc::new(NoPeers),
        RaftSettings::default(),
    )
    .await
    .unwrap();
    raft.initialize_single("127.0.0.1:7000").await.unwrap();
    raft.wait_for_leader(Duration::from_secs(10)).await.unwrap();
    raft
}

/// A connector on its own loopback endpoint; it reaches no other node.
pub fn connector(node: NodeId) -> QuicConnector {
    let ca = generate_ca().unwrap();
    let cert = issue_node_cert(&ca, node).unwrap();
    let endpoint = bind_endpoint("127.0.0.1:0".parse().unwrap(), &cert, &ca.cert_pem).unwrap();
    QuicConnector::new(endpoint)
}
