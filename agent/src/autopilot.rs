//! The voter autopilot (design §2 and §4), run by the leader's loop ([`round`]): a voter
//! down past `[dynos] voter_replace_after_secs` gives its seat to a live learner and
//! leaves the membership, so that dead hosts do not pile up until the cluster loses its
//! quorum. The voters stay an odd number (3 or 5) when the live nodes allow, and the
//! autopilot never leaves fewer than 3: with too few live nodes it changes nothing
//! ([`plan`], pure). A node that returns after its seat was given away is added back as
//! a learner. A member the model has removed (`havend leave`, or a `nodes:remove` cut
//! short) leaves the membership at once, whatever the count; its seat goes to a live
//! learner when there is one.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use haven_raft::model::{self, NodeId, NodeStatus};
use haven_raft::HavenRaft;
use tracing::{debug, warn};

use crate::events::Events;

/// The largest voter set the autopilot builds.
pub const MAX_VOTERS: usize = 5;
/// It never leaves fewer voters than this.
pub const MIN_VOTERS: usize = 3;

/// The membership and liveness the leader sees.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// Nodes down for longer than the autopilot waits.
    pub dead: BTreeSet<NodeId>,
    /// Nodes the model has removed (`State::removed_nodes`).
    pub removed: BTreeSet<NodeId>,
}

/// What to change: the new voters, and the nodes to remove from the membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub voters: BTreeSet<NodeId>,
    pub promoted: BTreeSet<NodeId>,
    pub demoted: BTreeSet<NodeId>,
    pub removed: BTreeSet<NodeId>,
    /// The removed are members the model removed (not dead voters).
    pub left: bool,
}

/// The change for `v`, if any: when a member was removed from the model, or a voter is
/// dead.
pub fn plan(v: &View) -> Option<Change> {
    let gone: BTreeSet<NodeId> = v
        .voters
        .union(&v.learners)
        .filter(|id| v.removed.contains(id))
        .copied()
        .collect();
    if !gone.is_empty() {
        return plan_departure(v, gone);
    }
    let dead_voters: BTreeSet<NodeId> = v.voters.intersection(&v.dead).copied().collect();
    if dead_voters.is_empty() {
        return None;
    }
    let live_voters: Vec<NodeId> = v.voters.difference(&v.dead).copied().collect();
    let candidates: Vec<NodeId> = v.learners.difference(&v.dead).copied().collect();
    let mut target = (live_voters.len() + candidates.len()).min(MAX_VOTERS);
    if target % 2 == 0 {
        target -= 1;
    }
    if target < MIN_VOTERS {
        return None;
    }
    // Live voters keep their seats first (lowest ids when there are too many), then
    // learners take the free ones.
    let voters: BTreeSet<NodeId> = live_voters
        .iter()
        .chain(candidates.iter())
        .take(target)
        .copied()
        .collect();
    Some(Change {
        promoted: voters.difference(&v.voters).copied().collect(),
        demoted: live_voters
            .iter()
            .filter(|id| !voters.contains(id))
            .copied()
            .collect(),
        removed: dead_voters,
        voters,
        left: false,
    })
}

/// Members removed from the model leave; the remaining voters keep their seats and live
/// learners fill them up to an odd number (at most [`MAX_VOTERS`]). Nothing when no
/// voter would remain.
fn plan_departure(v: &View, gone: BTreeSet<NodeId>) -> Option<Change> {
    let kept: BTreeSet<NodeId> = v.voters.difference(&gone).copied().collect();
    if kept.is_empty() {
        return None;
    }
    let candidates: Vec<NodeId> = v
        .learners
        .iter()
        .filter(|id| !gone.contains(id) && !v.dead.contains(id))
        .copied()
        .collect();
    let mut target = (kept.len() + candidates.len()).min(MAX_VOTERS);
    if target % 2 == 0 {
        target -= 1;
    }
    let target = target.max(kept.len());
    let promoted: BTreeSet<NodeId> = candidates.into_iter().take(target - kept.len()).collect();
    Some(Change {
        voters: kept.union(&promoted).copied().collect(),
        promoted,
        demoted: BTreeSet::new(),
        removed: gone,
        left: true,
    })
}

/// The autopilot's round in the leader's loop: a voter down past `after` gives
/// its seat to a live learner and leaves the membership; a node up again outside the
/// membership (its seat was given away) is added back as a learner.
pub async fn round(
    raft: &HavenRaft,
    me: NodeId,
    events: &Events,
    after: Duration,
    down_since: &mut HashMap<NodeId, Instant>,
    outside_since: &mut HashMap<NodeId, Instant>,
) {
    let now = Instant::now();
    let status = raft.status();
    let members: BTreeSet<NodeId> = status.members.iter().map(|(id, _)| *id).collect();
    let (down, outside, removed): (BTreeSet<NodeId>, Vec<model::Node>, BTreeSet<NodeId>) = raft
        .with_state(|s| {
            let down = s
                .nodes
                .values()
                .filter(|n| n.status == NodeStatus::Down)
                .map(|n| n.id)
                .collect();
            let outside = s
                .nodes
                .values()
                .filter(|n| n.status == NodeStatus::Up && n.id != me && !members.contains(&n.id))
                .cloned()
                .collect();
            (down, outside, s.removed_nodes.clone())
        });
    down_since.retain(|id, _| down.contains(id));
    for id in &down {
        down_since.entry(*id).or_insert(now);
    }
    let view = View {
        voters: status.voters.iter().copied().collect(),
        learners: status.learners.iter().copied().collect(),
        dead: down_since
            .iter()
            .filter(|(_, t)| now.duration_since(**t) >= after)
            .map(|(id, _)| *id)
            .collect(),
        removed,
    };
    if let Some(c) = plan(&view) {
        let name = |id: &NodeId| {
            raft.with_state(|s| {
                s.nodes
                    .get(id)
                    .map_or_else(|| id.to_string(), |n| n.name.clone())
            })
        };
        let names = |ids: &BTreeSet<NodeId>| ids.iter().map(name).collect::<Vec<_>>().join(", ");
        match raft
            .change_voters(c.voters.clone(), c.removed.clone())
            .await
        {
            Ok(()) => {
                let mut what =
                    if c.left {
                        format!(
                        "autopilot took {} out of the Raft membership (removed from the cluster)",
                        c.removed.iter().map(|id| id.to_string()).collect::<Vec<_>>().join(", ")
                    )
                    } else {
                        format!(
                            "autopilot removed {} (a voter down for over {} s)",
                            names(&c.removed),
                            after.as_secs()
                        )
                    };
                if !c.promoted.is_empty() {
                    what.push_str(&format!("; promoted {} to voter", names(&c.promoted)));
                }
                if !c.demoted.is_empty() {
                    what.push_str(&format!(
                        "; {} now a learner (voters stay odd)",
                        names(&c.demoted)
                    ));
                }
                what.push_str(&format!("; voters: {}", names(&c.voters)));
                events.record("autopilot", what);
            }
            Err(e) => warn!(error = %e, "the voter autopilot's change failed"),
        }
    }
    // Returning nodes: added back as learners once they have stayed outside a moment (a
    // joining node is being added by its own join meanwhile).
    outside_since.retain(|id, _| outside.iter().any(|n| n.id == *id));
    for node in outside {
        let first = *outside_since.entry(node.id).or_insert(now);
        if now.duration_since(first) < Duration::from_secs(5) {
            continue;
        }
        outside_since.insert(node.id, now + Duration::from_secs(25));
        let raft = raft.clone();
        let events = events.clone();
        tokio::spawn(async move {
            match raft.add_node(node.clone()).await {
                Ok(Ok(_)) => events.record(
                    "autopilot",
                    format!("{} is back: added to the Raft membership again", node.name),
                ),
                Ok(Err(e)) => debug!(error = %e, "re-adding a returning node refused"),
                Err(e) => debug!(error = %e, "could not re-add a returning node yet"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    fn view(voters: &[NodeId], learners: &[NodeId], dead: &[NodeId]) -> View {
        View {
            voters: set(voters),
            learners: set(learners),
            dead: set(dead),
            removed: BTreeSet::new(),
        }
    }

    #[test]
    fn a_member_removed_from_the_model_leaves_at_once() {
        let mut v = view(&[1, 2, 3], &[4], &[]);
        v.removed = set(&[2]);
        let c = plan(&v).unwrap();
        assert!(c.left);
        assert_eq!(c.removed, set(&[2]));
        assert_eq!(c.voters, set(&[1, 3, 4]));
        assert_eq!(c.promoted, set(&[4]));
        // No learner: two voters remain (an explicit removal may go below three).
        let mut v = view(&[1, 2, 3], &[], &[]);
        v.removed = set(&[3]);
        assert_eq!(plan(&v).unwrap().voters, set(&[1, 2]));
        // A removed learner just leaves.
        let mut v = view(&[1, 2, 3], &[4], &[]);
        v.removed = set(&[4]);
        let c = plan(&v).unwrap();
        assert_eq!(c.voters, set(&[1, 2, 3]));
        assert_eq!(c.removed, set(&[4]));
        // The last voter never leaves this way.
        let mut v = view(&[1], &[], &[]);
        v.removed = set(&[1]);
        assert_eq!(plan(&v), None);
        // Removed ids outside the membership change nothing.
        let mut v = view(&[1, 2, 3], &[], &[]);
        v.removed = set(&[7]);
        assert_eq!(plan(&v), None);
    }

    #[test]
    fn a_dead_voter_gives_its_seat_to_a_live_learner() {
        let c = plan(&view(&[1, 2, 3, 4, 5], &[6], &[2])).unwrap();
        assert_eq!(c.voters, set(&[1, 3, 4, 5, 6]));
        assert_eq!(c.promoted, set(&[6]));
        assert_eq!(c.removed, set(&[2]));
        assert!(c.demoted.is_empty());
    }

    #[test]
    fn voters_stay_odd_and_never_fewer_than_three() {
        // Four live nodes: three voters, the fourth a learner.
        let c = plan(&view(&[1, 2, 3, 4, 5], &[], &[5])).unwrap();
        assert_eq!(c.voters, set(&[1, 2, 3]));
        assert_eq!(c.demoted, set(&[4]));
        assert_eq!(c.removed, set(&[5]));
        // Two dead of five, no learner: the three live ones.
        let c = plan(&view(&[1, 2, 3, 4, 5], &[], &[1, 2])).unwrap();
        assert_eq!(c.voters, set(&[3, 4, 5]));
        // Three voters, one dead, no learner: nothing (two would be too few).
        assert_eq!(plan(&view(&[1, 2, 3], &[], &[3])), None);
        // ... with a live learner: it takes the seat.
        let c = plan(&view(&[1, 2, 3], &[4], &[3])).unwrap();
        assert_eq!(c.voters, set(&[1, 2, 4]));
        // A dead learner is no candidate.
        assert_eq!(plan(&view(&[1, 2, 3], &[4], &[3, 4])), None);
        // Nobody dead: nothing.
        assert_eq!(plan(&view(&[1, 2, 3], &[4, 5], &[])), None);
    }
}
