//! The routing table of one node's router: the web dynos registered by every node, which
//! nodes have sent their full set at least once, and the choice of a dyno for a request
//! (least outstanding requests between two random choices, skipping quarantined dynos and
//! dynos of nodes not heard from while others are left).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use haven_raft::model::NodeId;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

/// A web dyno as its node registers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteEntry {
    pub app: Uuid,
    pub dyno: Uuid,
    /// `web.1`.
    pub name: String,
    pub release: u64,
    /// `host:port` the dyno listens on.
    pub addr: String,
}

/// Idle keep-alive connections kept per dyno.
const IDLE_PER_BACKEND: usize = 256;

/// A keep-alive client connection to a dyno.
pub type Sender = hyper::client::conn::http1::SendRequest<ReqBody>;

/// The body of a request on its way to a dyno: the client's own, or none for a request
/// sent again after a failed attempt.
pub type ReqBody =
    http_body_util::Either<hyper::body::Incoming, http_body_util::Empty<hyper::body::Bytes>>;

/// A registered dyno with its live counters and idle connections.
pub struct Backend {
    pub entry: RouteEntry,
    /// The node that registered it (where it runs).
    pub node: NodeId,
    /// Requests in flight to it through this router.
    pub outstanding: AtomicUsize,
    quarantined_until: Mutex<Option<Instant>>,
    idle: Mutex<Vec<Sender>>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("entry", &self.entry)
            .finish()
    }
}

impl Backend {
    fn new(node: NodeId, entry: RouteEntry) -> Backend {
        Backend {
            entry,
            node,
            outstanding: AtomicUsize::new(0),
            quarantined_until: Mutex::new(None),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// An idle keep-alive connection to the dyno, if one is open.
    pub fn take_idle(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    /// Keeps a connection for the next request (up to a bound).
    pub fn put_idle(&self, s: Sender) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < IDLE_PER_BACKEND && !s.is_closed() {
                idle.push(s);
            }
        }
    }

    fn quarantined(&self, now: Instant) -> bool {
        self.quarantined_until
            .lock()
            .ok()
            .and_then(|q| *q)
            .is_some_and(|t| t > now)
    }

    /// Leaves the dyno out for `d` (its connect failed).
    pub fn quarantine(&self, d: Duration) {
        if let Ok(mut q) = self.quarantined_until.lock() {
            *q = Some(Instant::now() + d);
        }
    }
}

/// Counts a request in flight; dropping it ends the count.
pub struct InFlight(Arc<Backend>);

impl InFlight {
    pub fn new(b: Arc<Backend>) -> InFlight {
        b.outstanding.fetch_add(1, Ordering::Relaxed);
        InFlight(b)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// All routes, by the node that registered them.
pub struct Table {
    by_node: Mutex<HashMap<NodeId, HashMap<Uuid, Arc<Backend>>>>,
    /// Nodes whose full route set arrived at least once since this router started.
    synced: Mutex<HashSet<NodeId>>,
    /// Bumped on every change, so that a held request wakes up when routes arrive.
    changes: watch::Sender<u64>,
}

impl Default for Table {
    fn default() -> Table {
        Table {
            by_node: Mutex::default(),
            synced: Mutex::default(),
            changes: watch::Sender::new(0),
        }
    }
}

impl Table {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, HashMap<Uuid, Arc<Backend>>>> {
        self.by_node.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that sees every later change of the table (subscribe before reading it).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Whether `node`'s full route set has arrived since this router started.
    pub fn synced_from(&self, node: NodeId) -> bool {
        self.synced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&node)
    }

    /// Replaces every route of `node` (a full resync).
    pub fn replace_node(&self, node: NodeId, entries: Vec<RouteEntry>) {
        self.replace_routes(node, entries);
        self.synced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node);
        self.changed();
    }

    fn replace_routes(&self, node: NodeId, entries: Vec<RouteEntry>) {
        let mut m = self.lock();
        let old = m.remove(&node).unwrap_or_default();
        let mut new = HashMap::new();
        for e in entries {
            // Keep the counters of a dyno that stays.
            let b = match old.get(&e.dyno) {
                Some(b) if b.entry == e => b.clone(),
                _ => Arc::new(Backend::new(node, e.clone())),
            };
            new.insert(e.dyno, b);
        }
        if !new.is_empty() {
            m.insert(node, new);
        }
    }

    pub fn add(&self, node: NodeId, e: RouteEntry) {
        self.lock()
            .entry(node)
            .or_default()
            .insert(e.dyno, Arc::new(Backend::new(node, e)));
        self.changed();
    }

    pub fn remove(&self, node: NodeId, dyno: Uuid) {
        {
            let mut m = self.lock();
            if let Some(routes) = m.get_mut(&node) {
                routes.remove(&dyno);
                if routes.is_empty() {
                    m.remove(&node);
                }
            }
        }
        self.changed();
    }

    /// Drops every route of `node` (its connection is lost or it is down).
    pub fn drop_node(&self, node: NodeId) {
        self.lock().remove(&node);
        self.changed();
    }

    /// The backends of `app`, except those of nodes in `skip_nodes`.
    pub fn backends(&self, app: Uuid, skip_nodes: &[NodeId]) -> Vec<Arc<Backend>> {
        let m = self.lock();
        let mut v: Vec<Arc<Backend>> = m
            .iter()
            .filter(|(n, _)| !skip_nodes.contains(n))
            .flat_map(|(_, routes)| routes.values())
            .filter(|b| b.entry.app == app)
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            a.entry
                .name
                .cmp(&b.entry.name)
                .then(a.entry.dyno.cmp(&b.entry.dyno))
        });
        v
    }
}

/// Picks a backend: two random choices among the usable ones, the one with fewer requests
/// in flight. Those in `tried` never; quarantined ones and those of nodes in `silent` (not
/// heard from lately) only when nothing better is left: first a dyno neither quarantined
/// nor silent, then one not quarantined, then any. `rand` gives indices in `0..n`.
pub fn choose(
    backends: &[Arc<Backend>],
    tried: &[Uuid],
    silent: &[NodeId],
    now: Instant,
    mut rand: impl FnMut(usize) -> usize,
) -> Option<Arc<Backend>> {
    let fresh: Vec<&Arc<Backend>> = backends
        .iter()
        .filter(|b| !tried.contains(&b.entry.dyno))
        .collect();
    let healthy: Vec<&Arc<Backend>> = fresh
        .iter()
        .copied()
        .filter(|b| !b.quarantined(now))
        .collect();
    let heard: Vec<&Arc<Backend>> = healthy
        .iter()
        .copied()
        .filter(|b| !silent.contains(&b.node))
        .collect();
    let pool = [heard, healthy, fresh]
        .into_iter()
        .find(|p| !p.is_empty())
        .unwrap_or_default();
    match pool.len() {
        0 => None,
        1 => Some(pool[0].clone()),
        n => {
            let a = rand(n);
            let mut b = rand(n - 1);
            if b >= a {
                b += 1;
            }
            let (x, y) = (pool[a], pool[b]);
            let lx = x.outstanding.load(Ordering::Relaxed);
            let ly = y.outstanding.load(Ordering::Relaxed);
            Some(if ly < lx { y.clone() } else { x.clone() })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(app: Uuid, n: u128) -> RouteEntry {
        RouteEntry {
            app,
            dyno: Uuid::from_u128(n),
            name: format!("web.{n}"),
            release: 1,
            addr: format!("10.0.0.{n}:5000"),
        }
    }

    #[test]
    fn nodes_register_resync_and_drop_their_routes() {
        let t = Table::default();
        let app = Uuid::new_v4();
        let other = Uuid::new_v4();
        t.replace_node(1, vec![entry(app, 1), entry(app, 2)]);
        t.add(2, entry(app, 3));
        t.add(2, entry(other, 4));
        assert_eq!(t.backends(app, &[]).len(), 3);
        assert_eq!(
            t.backends(app, &[2]).len(),
            2,
            "routes of a down node are skipped"
        );
        t.remove(1, Uuid::from_u128(1));
        assert_eq!(t.backends(app, &[]).len(), 2);
        // A node removing a dyno it does not own changes nothing.
        t.remove(1, Uuid::from_u128(3));
        assert_eq!(t.backends(app, &[]).len(), 2);
        t.drop_node(2);
        let left = t.backends(app, &[]);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].entry.name, "web.2");
        // A resync keeps the counters of dynos that stay and drops the rest.
        let _busy = InFlight::new(left[0].clone());
        t.replace_node(1, vec![entry(app, 2), entry(app, 5)]);
        let now = t.backends(app, &[]);
        assert_eq!(now.len(), 2);
        assert_eq!(now[0].outstanding.load(Ordering::Relaxed), 1);
        t.replace_node(1, vec![]);
        assert!(t.backends(app, &[]).is_empty());
    }

    #[test]
    fn the_less_busy_of_two_choices_wins_and_quarantined_ones_are_skipped() {
        let t = Table::default();
        let app = Uuid::new_v4();
        t.replace_node(1, vec![entry(app, 1), entry(app, 2), entry(app, 3)]);
        let b = t.backends(app, &[]);
        let _l1 = InFlight::new(b[0].clone());
        let _l2 = InFlight::new(b[0].clone());
        // Choices 0 and 1: web.1 has 2 in flight, web.2 none.
        let mut seq = vec![0usize, 0].into_iter();
        let got = choose(&b, &[], &[], Instant::now(), |_| seq.next().unwrap()).unwrap();
        assert_eq!(got.entry.name, "web.2");
        // Quarantine web.2 and web.3: only web.1 is usable.
        b[1].quarantine(Duration::from_secs(5));
        b[2].quarantine(Duration::from_secs(5));
        let got = choose(&b, &[], &[], Instant::now(), |n| n - 1).unwrap();
        assert_eq!(got.entry.name, "web.1");
        // Tried ones are never picked again; quarantined ones serve when nothing else is left.
        let got = choose(&b, &[b[0].entry.dyno], &[], Instant::now(), |_| 0).unwrap();
        assert_ne!(got.entry.name, "web.1");
        assert!(choose(
            &b,
            &[b[0].entry.dyno, b[1].entry.dyno, b[2].entry.dyno],
            &[],
            Instant::now(),
            |_| 0
        )
        .is_none());
        // Quarantine ends.
        let later = Instant::now() + Duration::from_secs(6);
        let mut seq = vec![1usize, 1].into_iter();
        let got = choose(&b, &[], &[], later, |_| seq.next().unwrap()).unwrap();
        assert_eq!(got.entry.name, "web.2");
    }

    #[test]
    fn dynos_of_silent_nodes_are_picked_only_when_no_other_is_left() {
        let t = Table::default();
        let app = Uuid::new_v4();
        t.replace_node(1, vec![entry(app, 1)]);
        t.replace_node(2, vec![entry(app, 2), entry(app, 3)]);
        let b = t.backends(app, &[]);
        assert_eq!(b.iter().map(|b| b.node).collect::<Vec<_>>(), [1, 2, 2]);
        // Node 2 is silent: every pick goes to node 1's dyno, whatever the dice say.
        for r in 0..3 {
            let got = choose(&b, &[], &[2], Instant::now(), |n| r % n).unwrap();
            assert_eq!(got.entry.name, "web.1");
        }
        // A quarantined dyno of a node that is heard from still loses to a silent node's.
        b[0].quarantine(Duration::from_secs(5));
        let got = choose(&b, &[], &[2], Instant::now(), |_| 0).unwrap();
        assert_eq!(got.node, 2);
        // Once web.1 was tried, the silent node's dynos are all that is left: used.
        let got = choose(&b, &[b[0].entry.dyno], &[2], Instant::now(), |_| 0).unwrap();
        assert_eq!(got.node, 2);
    }

    #[tokio::test]
    async fn the_table_tells_who_synced_and_wakes_waiters_on_change() {
        let t = Table::default();
        let app = Uuid::new_v4();
        assert!(!t.synced_from(1));
        let mut changes = t.subscribe();
        // An empty full set counts as synced: the node has no dynos to offer.
        t.replace_node(1, vec![]);
        assert!(t.synced_from(1));
        assert!(!t.synced_from(2));
        changes.changed().await.unwrap();
        // Single additions do not make a node synced, but they wake a waiter.
        let mut changes = t.subscribe();
        let waiter = tokio::spawn(async move { changes.changed().await.is_ok() });
        t.add(2, entry(app, 1));
        assert!(waiter.await.unwrap());
        assert!(!t.synced_from(2));
        // A node whose stream ended stays synced (its routes are gone, not unknown).
        t.replace_node(2, vec![entry(app, 1)]);
        t.drop_node(2);
        assert!(t.synced_from(2));
        assert!(t.backends(app, &[]).is_empty());
    }

    #[test]
    fn load_spreads_over_every_backend() {
        let t = Table::default();
        let app = Uuid::new_v4();
        t.replace_node(1, (1..=4).map(|n| entry(app, n)).collect());
        let b = t.backends(app, &[]);
        let mut held = Vec::new();
        let mut x: u64 = 7;
        for _ in 0..400 {
            let got = choose(&b, &[], &[], Instant::now(), |n| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 33) as usize) % n
            })
            .unwrap();
            held.push(InFlight::new(got));
        }
        for backend in &b {
            let n = backend.outstanding.load(Ordering::Relaxed);
            assert!(
                (80..=120).contains(&n),
                "{} has {n} of 400",
                backend.entry.name
            );
        }
    }
}
