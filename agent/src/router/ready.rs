//! What the router knows about the cluster before it answers for it: whether this node's
//! replica has caught up with the leader once since start, whether every node that is up
//! has sent its full route set, and which nodes have gone silent (liveness).
//!
//! A router that has just started knows no routes: answering then would turn a restart
//! into a burst of 404s and H14s. Instead a request that finds no app, or no dyno, waits
//! (bounded) while the router is still catching up or while the state says a web dyno of
//! the app is starting or up somewhere. Routes of a silent node (a frozen or cut-off host)
//! are picked last, and an idempotent request in flight to one is sent again elsewhere.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use haven_raft::model::{NodeId, NodeStatus, State};
use haven_raft::HavenRaft;
use tokio::sync::watch;
use tracing::{debug, info};

use super::table::Table;
use crate::config::RouterTuning;
use crate::liveness::Liveness;

/// The router's view of the cluster's readiness and health. Shared by the router thread
/// and the task that catches the replica up.
pub struct Readiness {
    me: NodeId,
    started: Instant,
    caught_up: AtomicBool,
    liveness: Liveness,
    sync_grace: Duration,
    silent_after: Duration,
}

impl Readiness {
    pub fn new(me: NodeId, liveness: Liveness, tuning: &RouterTuning) -> Arc<Readiness> {
        Arc::new(Readiness {
            me,
            started: Instant::now(),
            caught_up: AtomicBool::new(false),
            liveness,
            sync_grace: Duration::from_millis(tuning.sync_grace_ms),
            silent_after: Duration::from_millis(tuning.silent_after_ms.max(1)),
        })
    }

    /// Still within the grace period after start, during which the router waits for its
    /// replica and its routes rather than answer "not found".
    pub fn in_grace(&self) -> bool {
        self.started.elapsed() < self.sync_grace
    }

    /// Whether this node's replica has applied everything the leader had committed at
    /// some point since start (so a host it does not know is really unknown).
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    /// Whether `node` has not been heard from lately (never this node itself).
    pub fn silent(&self, node: NodeId) -> bool {
        node != self.me
            && silent(
                self.liveness.last_seen(node),
                self.started,
                Instant::now(),
                self.silent_after,
            )
    }

    /// Whether the table holds every route it will get soon: every other node that the
    /// state marks up and that is not silent has sent its full set, or the grace period
    /// is over.
    pub fn routes_synced(&self, s: &State, table: &Table) -> bool {
        !self.in_grace()
            || routes_synced(
                s.nodes
                    .values()
                    .filter(|n| n.id != self.me && n.status == NodeStatus::Up)
                    .map(|n| n.id),
                |n| table.synced_from(n),
                |n| self.silent(n),
            )
    }
}

/// Whether a node last heard from at `last_seen` (`None`: never, since `started`) is silent
/// at `now`: nothing from it for `after`.
pub fn silent(last_seen: Option<Instant>, started: Instant, now: Instant, after: Duration) -> bool {
    let since = last_seen.unwrap_or(started);
    now.saturating_duration_since(since) > after
}

/// Whether the routes of every node in `up` are in: each has synced, or is silent (a node
/// that does not answer must not keep the router waiting).
pub fn routes_synced(
    mut up: impl Iterator<Item = NodeId>,
    synced: impl Fn(NodeId) -> bool,
    silent: impl Fn(NodeId) -> bool,
) -> bool {
    up.all(|n| synced(n) || silent(n))
}

/// Whether a request that no dyno can take now waits for one (until the hold deadline)
/// rather than being answered H10/H14: only if web dynos are wanted, and either the routes
/// are not all in yet or the state has a web dyno of the app that is starting or up on a
/// node that is not down (its route is coming, or its node is being declared down and the
/// dyno moved).
pub fn hold(web_wanted: u32, routes_synced: bool, web_expected: bool) -> bool {
    web_wanted > 0 && (!routes_synced || web_expected)
}

/// Once after start: waits for a read barrier to pass (retrying while there is no leader)
/// and marks the replica caught up. Until then, and within the grace period, the router
/// holds requests for hosts it does not know.
pub async fn catch_up(raft: HavenRaft, ready: Arc<Readiness>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let barrier = tokio::time::timeout(Duration::from_secs(2), raft.read_barrier());
        tokio::select! {
            r = barrier => match r {
                Ok(Ok(())) => {
                    ready.caught_up.store(true, Ordering::Release);
                    info!(after_ms = ready.started.elapsed().as_millis() as u64, "router: replica caught up");
                    return;
                }
                Ok(Err(e)) => debug!(error = %e, "router: read barrier failed; retrying"),
                Err(_) => debug!("router: read barrier timed out; retrying"),
            },
            _ = shutdown.changed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_silent_after_the_bound_counted_from_start_if_never_heard() {
        let t0 = Instant::now();
        let bound = Duration::from_millis(1500);
        let at = |ms| t0 + Duration::from_millis(ms);
        // Heard 1 s ago: fine; 2 s ago: silent.
        assert!(!silent(Some(at(1000)), t0, at(2000), bound));
        assert!(silent(Some(at(0)), t0, at(2000), bound));
        // Never heard: not silent until the bound has passed since the router started.
        assert!(!silent(None, t0, at(1000), bound));
        assert!(silent(None, t0, at(1600), bound));
        // A clock reading before the last heartbeat is not a silence.
        assert!(!silent(Some(at(3000)), t0, at(2000), bound));
    }

    #[test]
    fn routes_are_in_once_every_up_node_synced_or_went_silent() {
        let synced = |n: NodeId| n == 1 || n == 2;
        let none_silent = |_: NodeId| false;
        assert!(routes_synced([1, 2].into_iter(), synced, none_silent));
        // Node 3 has not synced yet: wait for it.
        assert!(!routes_synced([1, 2, 3].into_iter(), synced, none_silent));
        // Unless it is silent (frozen, cut off, dead but not yet marked down).
        assert!(routes_synced([1, 2, 3].into_iter(), synced, |n| n == 3));
        // No other node at all: nothing to wait for.
        assert!(routes_synced(std::iter::empty(), synced, none_silent));
    }

    #[test]
    fn requests_wait_for_routes_only_while_some_can_come() {
        // Scaled to zero: H14 at once, synced or not.
        assert!(!hold(0, false, false));
        assert!(!hold(0, true, true));
        // A router still syncing waits.
        assert!(hold(2, false, false));
        // A synced router waits while a web dyno is starting or up somewhere...
        assert!(hold(2, true, true));
        // ...and answers at once when none is (all crashed: H10; none placed: H14).
        assert!(!hold(2, true, false));
    }
}
