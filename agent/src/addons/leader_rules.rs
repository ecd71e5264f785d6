//! The leader's decisions about add-ons, as pure functions of the replicated state (the
//! leader's loop writes the commands they return): failovers of add-ons whose primary's
//! node is down, synced standbys to take out of sync, standbys to replace on another
//! node, and members of deprovisioned add-ons lost with their node.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::Utc;
use haven_raft::command::{failover_target, Command};
use haven_raft::model::{AddonState, NodeId, NodeStatus, State};

use super::placement;
use tracing::debug;
use uuid::Uuid;

/// For the leader: failovers of add-ons whose primary's node is down to a synced standby.
pub fn failovers(s: &State) -> Vec<Command> {
    s.addons
        .values()
        .filter_map(|a| {
            let to = failover_target(s, a)?;
            Some(Command::FailoverAddon {
                addon: a.id,
                to,
                release_seed: Uuid::new_v4(),
                actor: haven_raft::command::Actor {
                    email: format!("{}@addons.haven", a.service),
                    at: Utc::now(),
                },
            })
        })
        .collect()
}

/// How long a synced standby on an up node may fail to answer or stream before the leader
/// takes it out of sync (its primary's commits wait for it meanwhile).
pub const STANDBY_GRACE: Duration = Duration::from_secs(10);

/// For the leader: synced standbys on up nodes whose server has not answered or streamed
/// for [`STANDBY_GRACE`] (`broken` keeps since when each was seen so): commands that take
/// them out of sync.
pub fn broken_standbys(
    s: &State,
    broken: &mut HashMap<Uuid, std::time::Instant>,
    now: std::time::Instant,
) -> Vec<Command> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for a in s.addons.values() {
        let primary = a.primary_id();
        for m in a
            .members
            .iter()
            .filter(|m| Some(m.id) != primary && m.synced)
        {
            let node_up = s
                .nodes
                .get(&m.node)
                .is_some_and(|n| n.status == NodeStatus::Up);
            if !node_up || (m.up && m.streaming) {
                continue;
            }
            seen.insert(m.id);
            let since = *broken.entry(m.id).or_insert(now);
            if now.duration_since(since) >= STANDBY_GRACE {
                out.push(Command::DesyncStandby {
                    addon: a.id,
                    member: m.id,
                });
            }
        }
    }
    broken.retain(|id, _| seen.contains(id));
    out
}

/// For the leader: standbys of HA add-ons whose node has not been heard from for
/// `after` (`heard` tells when a node was last heard from), each replaced by a member
/// placed on another up node. A standby that cannot be placed waits (and is logged).
pub fn replacements(
    s: &State,
    heard: impl Fn(NodeId) -> Option<std::time::Instant>,
    now: std::time::Instant,
    after: Duration,
) -> Vec<Command> {
    let mut out = Vec::new();
    for a in s
        .addons
        .values()
        .filter(|a| a.state != AddonState::Deprovisioning && a.members.len() > 1)
    {
        let primary = a.primary_id();
        for m in a.members.iter().filter(|m| Some(m.id) != primary) {
            let down = s
                .nodes
                .get(&m.node)
                .is_none_or(|n| n.status == NodeStatus::Down);
            let long = heard(m.node).is_none_or(|t| now.duration_since(t) >= after);
            if !(down && long) {
                continue;
            }
            match placement::place_replacement(s, a) {
                Ok(new) => out.push(Command::ReplaceStandby {
                    addon: a.id,
                    old: m.id,
                    new,
                }),
                Err(e) => debug!(addon = %a.name, error = %e, "no node for a new standby"),
            }
        }
    }
    out
}

/// For the leader: members of deprovisioning add-ons whose node is down or gone (their
/// data goes when the node returns, as an orphan), reported gone on the node's behalf.
pub fn lost_members(s: &State) -> Vec<Command> {
    let mut by_node: HashMap<NodeId, Vec<Uuid>> = HashMap::new();
    for a in s
        .addons
        .values()
        .filter(|a| a.state == AddonState::Deprovisioning)
    {
        for m in &a.members {
            let down = s
                .nodes
                .get(&m.node)
                .is_none_or(|n| n.status == NodeStatus::Down);
            if down {
                by_node.entry(m.node).or_default().push(m.id);
            }
        }
    }
    let mut out: Vec<Command> = by_node
        .into_iter()
        .map(|(node, gone)| Command::ReportAddonMembers {
            node,
            reports: Vec::new(),
            gone,
            at: Utc::now(),
        })
        .collect();
    out.sort_by_key(|c| match c {
        Command::ReportAddonMembers { node, .. } => *node,
        _ => 0,
    });
    out
}
