//! Liveness (design §4): every agent sends a small frame to every other node every
//! `heartbeat_ms` on a long-lived QUIC stream ([`StreamKind::Heartbeat`]). Each node keeps
//! the last time it heard from each peer in memory ([`Liveness`]); nothing of it goes
//! through Raft. Because every node listens, a new leader knows who is alive at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use haven_raft::model::NodeId;
use haven_raft::HavenRaft;
use tokio::sync::watch;
use tracing::debug;

use crate::config::DynoTuning;
use crate::peer::{QuicConnector, StreamKind};

/// When each node was last heard from, as this node knows it.
#[derive(Clone, Default)]
pub struct Liveness {
    seen: Arc<Mutex<HashMap<NodeId, Instant>>>,
}

impl Liveness {
    pub fn record(&self, node: NodeId) {
        if let Ok(mut m) = self.seen.lock() {
            m.insert(node, Instant::now());
        }
    }

    pub fn last_seen(&self, node: NodeId) -> Option<Instant> {
        self.seen.lock().ok().and_then(|m| m.get(&node).copied())
    }

    /// Reads heartbeat frames (a node id, 8 bytes big-endian) until the stream ends.
    pub async fn serve(&self, mut recv: quinn::RecvStream) {
        let mut frame = [0u8; 8];
        while recv.read_exact(&mut frame).await.is_ok() {
            self.record(u64::from_be_bytes(frame));
        }
    }
}

/// Sends this node's heartbeats to every other node until shutdown.
pub async fn heartbeats(
    me: NodeId,
    raft: HavenRaft,
    peers: QuicConnector,
    liveness: Liveness,
    tuning: DynoTuning,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = Duration::from_millis(tuning.heartbeat_ms.max(50));
    let mut streams: HashMap<NodeId, (String, quinn::SendStream)> = HashMap::new();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        liveness.record(me);
        let targets: Vec<(NodeId, String)> = raft.with_state(|s| {
            s.nodes
                .values()
                .filter(|n| n.id != me)
                .map(|n| (n.id, n.peer_addr.clone()))
                .collect()
        });
        streams.retain(|id, _| targets.iter().any(|(t, _)| t == id));
        // Each peer gets its frame concurrently; a dead one must not delay the others.
        let sends = targets.into_iter().map(|(id, addr)| {
            let existing = streams.remove(&id).filter(|(a, _)| *a == addr);
            let peers = peers.clone();
            async move {
                let mut stream = match existing {
                    Some((_, s)) => Some(s),
                    None => {
                        tokio::time::timeout(every * 2, peers.open(&addr, StreamKind::Heartbeat))
                            .await
                            .ok()
                            .and_then(Result::ok)
                            .map(|(send, _recv)| send)
                    }
                };
                if let Some(s) = stream.as_mut() {
                    let sent = tokio::time::timeout(every, s.write_all(&me.to_be_bytes())).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        debug!(peer = id, "heartbeat stream lost");
                        stream = None;
                    }
                }
                (id, addr, stream)
            }
        });
        for (id, addr, stream) in futures::future::join_all(sends).await {
            if let Some(s) = stream {
                streams.insert(id, (addr, s));
            }
        }
    }
}
