//! Route registration over QUIC (design §8).
//!
//! Every agent keeps one stream of kind [`StreamKind::Routes`] open to every other node.
//! On (re)connect it sends its full set of `up` web dynos ([`RouteMsg::Sync`]), then each
//! change ([`RouteMsg::Add`], [`RouteMsg::Remove`]); the router acknowledges every message
//! by its sequence number. Before a dyno stops, its agent withdraws it and waits (bounded)
//! until every connected router acknowledged, so no router sends it new requests while it
//! shuts down. A router drops all routes of a node when that node's stream ends (the QUIC
//! connection is lost), and accepts only dynos that the replicated state places on the
//! registering node (whose id comes from its cluster certificate).
//!
//! Frames: `u32` big-endian length + bincode of [`RouteMsg`]; acks are `u64` big-endian.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use haven_raft::model::{NodeId, State};
use haven_raft::HavenRaft;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::table::{RouteEntry, Table};
use crate::peer::{QuicConnector, StreamKind};

/// Largest frame a router reads (a node's full route set).
const MAX_FRAME: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouteMsg {
    Sync { seq: u64, routes: Vec<RouteEntry> },
    Add { seq: u64, route: RouteEntry },
    Remove { seq: u64, dyno: Uuid },
}

impl RouteMsg {
    fn seq(&self) -> u64 {
        match self {
            RouteMsg::Sync { seq, .. }
            | RouteMsg::Add { seq, .. }
            | RouteMsg::Remove { seq, .. } => *seq,
        }
    }
}

/// Whether the replicated state places `route`'s dyno on `node` for its app.
fn owned(s: &State, node: NodeId, route: &RouteEntry) -> bool {
    s.dynos
        .get(&route.dyno)
        .is_some_and(|d| d.node == node && d.app == route.app && d.process_type == "web")
}

/// The router side: applies one node's registrations to the table.
pub struct Receiver {
    pub table: Arc<Table>,
    pub raft: HavenRaft,
    /// Per node, the id of its newest registration stream: an older stream that ends
    /// must not drop the routes a newer one registered.
    generations: Mutex<HashMap<NodeId, u64>>,
    next_gen: AtomicU64,
}

impl Receiver {
    pub fn new(table: Arc<Table>, raft: HavenRaft) -> Receiver {
        Receiver {
            table,
            raft,
            generations: Mutex::new(HashMap::new()),
            next_gen: AtomicU64::new(1),
        }
    }

    /// Keeps only the routes the state gives to `node`; asks the leader once before
    /// refusing, in case this replica has not seen the dyno yet.
    async fn validate(&self, node: NodeId, routes: Vec<RouteEntry>) -> Vec<RouteEntry> {
        let all_known = self
            .raft
            .with_state(|s| routes.iter().all(|r| owned(s, node, r)));
        if !all_known {
            let _ = self.raft.read_barrier().await;
        }
        self.raft.with_state(|s| {
            routes
                .into_iter()
                .filter(|r| {
                    let ok = owned(s, node, r);
                    if !ok {
                        warn!(node, dyno = %r.dyno, "refused a route for a dyno the cluster does not place on that node");
                    }
                    ok
                })
                .collect()
        })
    }

    /// Serves one registration stream from `node` until it ends; then drops its routes.
    pub async fn serve(
        &self,
        node: NodeId,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        let gen = self.next_gen.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut g) = self.generations.lock() {
            g.insert(node, gen);
        }
        loop {
            let mut len = [0u8; 4];
            if recv.read_exact(&mut len).await.is_err() {
                break;
            }
            let len = u32::from_be_bytes(len) as usize;
            if len > MAX_FRAME {
                warn!(node, len, "route frame too large; closing");
                break;
            }
            let mut buf = vec![0u8; len];
            if recv.read_exact(&mut buf).await.is_err() {
                break;
            }
            let Ok(msg) = bincode::deserialize::<RouteMsg>(&buf) else {
                warn!(node, "undecodable route frame; closing");
                break;
            };
            let seq = msg.seq();
            match msg {
                RouteMsg::Sync { routes, .. } => {
                    let routes = self.validate(node, routes).await;
                    debug!(node, routes = routes.len(), "route resync");
                    self.table.replace_node(node, routes);
                }
                RouteMsg::Add { route, .. } => {
                    if let Some(r) = self.validate(node, vec![route]).await.pop() {
                        self.table.add(node, r);
                    }
                }
                RouteMsg::Remove { dyno, .. } => self.table.remove(node, dyno),
            }
            if send.write_all(&seq.to_be_bytes()).await.is_err() {
                break;
            }
        }
        let current = self
            .generations
            .lock()
            .map(|g| g.get(&node) == Some(&gen))
            .unwrap_or(true);
        if current {
            info!(node, "route stream ended; dropping the node's routes");
            self.table.drop_node(node);
        }
    }
}

/// One peer router as the registrar sees it.
#[derive(Default)]
struct Link {
    connected: AtomicBool,
    acked: AtomicU64,
}

struct RegInner {
    me: NodeId,
    raft: HavenRaft,
    peers: QuicConnector,
    local: Arc<Table>,
    routes: Mutex<BTreeMap<Uuid, RouteEntry>>,
    seq: AtomicU64,
    tx: broadcast::Sender<RouteMsg>,
    links: Mutex<HashMap<NodeId, Arc<Link>>>,
    withdraw_timeout: Duration,
}

/// The agent side: registers this node's `up` web dynos with every router. Cheap to clone.
#[derive(Clone)]
pub struct Registrar {
    inner: Arc<RegInner>,
}

async fn write_msg(send: &mut quinn::SendStream, msg: &RouteMsg) -> Result<(), String> {
    let bytes = bincode::serialize(msg).map_err(|e| e.to_string())?;
    let mut frame = (bytes.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&bytes);
    send.write_all(&frame).await.map_err(|e| e.to_string())
}

impl Registrar {
    pub fn new(
        me: NodeId,
        raft: HavenRaft,
        peers: QuicConnector,
        local: Arc<Table>,
        withdraw_timeout: Duration,
    ) -> Registrar {
        let (tx, _) = broadcast::channel(1024);
        Registrar {
            inner: Arc::new(RegInner {
                me,
                raft,
                peers,
                local,
                routes: Mutex::new(BTreeMap::new()),
                seq: AtomicU64::new(0),
                tx,
                links: Mutex::new(HashMap::new()),
                withdraw_timeout,
            }),
        }
    }

    fn next_seq(&self) -> u64 {
        self.inner.seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Makes `route` reachable through every router; this node's own router dials
    /// `local_addr` instead of the route's address when it is given (a dyno in its own
    /// network namespace, whose address only this node reaches).
    pub fn register(&self, route: RouteEntry, local_addr: Option<String>) {
        if let Ok(mut r) = self.inner.routes.lock() {
            r.insert(route.dyno, route.clone());
        }
        let mut local = route.clone();
        if let Some(a) = local_addr {
            local.addr = a;
        }
        self.inner.local.add(self.inner.me, local);
        let seq = self.next_seq();
        let _ = self.inner.tx.send(RouteMsg::Add { seq, route });
    }

    /// Takes `dyno` out of every router; returns once every connected router confirmed,
    /// or after the withdraw timeout.
    pub async fn withdraw(&self, dyno: Uuid) {
        let had = self
            .inner
            .routes
            .lock()
            .map(|mut r| r.remove(&dyno).is_some())
            .unwrap_or(false);
        self.inner.local.remove(self.inner.me, dyno);
        if !had {
            return;
        }
        let seq = self.next_seq();
        let _ = self.inner.tx.send(RouteMsg::Remove { seq, dyno });
        let deadline = Instant::now() + self.inner.withdraw_timeout;
        loop {
            let pending = self
                .inner
                .links
                .lock()
                .map(|l| {
                    l.values().any(|link| {
                        link.connected.load(Ordering::SeqCst)
                            && link.acked.load(Ordering::SeqCst) < seq
                    })
                })
                .unwrap_or(false);
            if !pending || Instant::now() > deadline {
                if pending {
                    warn!(%dyno, "not every router confirmed a withdrawn dyno in time");
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Keeps a registration stream open to every other node until shutdown.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut tasks: HashMap<NodeId, (String, tokio::task::JoinHandle<()>)> = HashMap::new();
        let mut ticker = tokio::time::interval(Duration::from_millis(300));
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => break,
            }
            let nodes: Vec<(NodeId, String)> = self.inner.raft.with_state(|s| {
                s.nodes
                    .values()
                    .filter(|n| n.id != self.inner.me)
                    .map(|n| (n.id, n.peer_addr.clone()))
                    .collect()
            });
            tasks.retain(|id, (addr, t)| {
                let keep = nodes.iter().any(|(n, a)| n == id && a == addr) && !t.is_finished();
                if !keep {
                    t.abort();
                }
                keep
            });
            for (id, addr) in nodes {
                if tasks.contains_key(&id) {
                    continue;
                }
                let link = Arc::new(Link::default());
                if let Ok(mut l) = self.inner.links.lock() {
                    l.insert(id, link.clone());
                }
                let this = self.clone();
                let a = addr.clone();
                tasks.insert(
                    id,
                    (
                        addr,
                        tokio::spawn(async move { this.link(id, a, link).await }),
                    ),
                );
            }
        }
        for (_, (_, t)) in tasks {
            t.abort();
        }
    }

    /// One peer's registration stream, reconnected whenever it breaks.
    async fn link(self, node: NodeId, addr: String, link: Arc<Link>) {
        loop {
            link.connected.store(false, Ordering::SeqCst);
            let result = self.link_once(&addr, &link).await;
            link.connected.store(false, Ordering::SeqCst);
            debug!(node, error = ?result.err(), "route stream to a router ended");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn link_once(&self, addr: &str, link: &Link) -> Result<(), String> {
        let (mut send, mut recv) = self.inner.peers.open(addr, StreamKind::Routes).await?;
        // Subscribe before taking the snapshot: nothing registered in between is missed.
        let mut rx = self.inner.tx.subscribe();
        let (seq, routes) = {
            let r = self.inner.routes.lock().map_err(|e| e.to_string())?;
            (
                self.inner.seq.load(Ordering::SeqCst),
                r.values().cloned().collect::<Vec<_>>(),
            )
        };
        write_msg(&mut send, &RouteMsg::Sync { seq, routes }).await?;
        link.connected.store(true, Ordering::SeqCst);
        loop {
            let mut ack = [0u8; 8];
            tokio::select! {
                msg = rx.recv() => match msg {
                    Ok(m) => {
                        // Changes older than the snapshot are in it already.
                        if m.seq() > seq {
                            write_msg(&mut send, &m).await?;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => return Err("lagged; resyncing".into()),
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
                read = recv.read_exact(&mut ack) => {
                    read.map_err(|e| e.to_string())?;
                    link.acked.fetch_max(u64::from_be_bytes(ack), Ordering::SeqCst);
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::Utc;
    use haven_raft::model::{Dyno, DynoState};

    use super::*;

    fn dyno(id: Uuid, app: Uuid, ptype: &str, node: NodeId) -> Dyno {
        Dyno {
            id,
            app,
            process_type: ptype.into(),
            index: 1,
            release: 2,
            size: "standard-1x".into(),
            node,
            command: String::new(),
            one_off: false,
            attach: false,
            env: BTreeMap::new(),
            run: true,
            state: DynoState::Up,
            state_changed_at: Utc::now(),
            restart_seq: 0,
            restarts: 0,
            port: Some(30001),
            exit_code: None,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn a_node_may_register_only_web_dynos_the_state_places_on_it() {
        let app = Uuid::new_v4();
        let (web, worker, elsewhere) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut s = State::default();
        s.dynos.insert(web, dyno(web, app, "web", 7));
        s.dynos.insert(worker, dyno(worker, app, "worker", 7));
        s.dynos.insert(elsewhere, dyno(elsewhere, app, "web", 8));
        let route = |dyno: Uuid, app: Uuid| RouteEntry {
            app,
            dyno,
            name: "web.1".into(),
            release: 2,
            addr: "10.0.0.7:30001".into(),
        };
        assert!(owned(&s, 7, &route(web, app)));
        // Another node's dyno, a dyno under another app, a worker, an unknown dyno: refused.
        assert!(!owned(&s, 7, &route(elsewhere, app)));
        assert!(!owned(&s, 8, &route(web, app)));
        assert!(!owned(&s, 7, &route(web, Uuid::new_v4())));
        assert!(!owned(&s, 7, &route(worker, app)));
        assert!(!owned(&s, 7, &route(Uuid::new_v4(), app)));
    }
}
