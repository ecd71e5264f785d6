//! HA add-ons' life after creation: a node's standbys leave sync when it is marked down,
//! a broken standby is taken out of sync, a standby whose node stays down is replaced, a
//! plan change adds or removes the standby, and the leader fails over to a synced
//! standby with a higher generation (fencing the old primary), moving the attachments'
//! URLs in releases.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::addons::addon_not_found;
use super::{Actor, CommandError, CommandOutput, CommandResult};
use crate::model::{Addon, AddonMember, AddonState, NodeId, NodeStatus, State};

/// Part of marking `node` down: its standbys are no longer in sync (nor streaming), so
/// that they cannot be promoted and their primaries may stop waiting for them.
pub(super) fn on_node_down(state: &mut State, node: NodeId) {
    for a in state.addons.values_mut() {
        let primary = a.primary_id();
        for m in a
            .members
            .iter_mut()
            .filter(|m| m.node == node && Some(m.id) != primary)
        {
            m.streaming = false;
            m.synced = false;
        }
    }
}

/// Changes a Haven add-on's plan, adding the standby placed by the proposer (to an HA
/// plan) or removing a standby (back to a single-node plan); the primary and the data
/// stay. Only available plans of the add-on's own service.
pub(super) fn resize(
    state: &mut State,
    addon: Uuid,
    plan: &str,
    add: Option<&AddonMember>,
    remove: Option<Uuid>,
    at: DateTime<Utc>,
) -> CommandResult {
    let a = state.addons.get(&addon).ok_or_else(addon_not_found)?;
    if a.is_provider() {
        return Err(CommandError::Invalid(
            "a provider's add-on changes plans at the provider".into(),
        ));
    }
    if a.state != AddonState::Provisioned {
        return Err(CommandError::Conflict(format!(
            "{} is {}; change its plan once it is provisioned",
            a.name,
            a.state.as_str()
        )));
    }
    let service = haven_catalog::addon_service(&a.service)
        .ok_or_else(|| CommandError::Invalid("unknown service".into()))?;
    let p = haven_catalog::service_plan(service, plan)
        .filter(|p| p.available)
        .ok_or_else(|| {
            CommandError::NotFound(format!(
                "Couldn't find either the add-on service or the add-on plan of \"{}:{plan}\".",
                service.name
            ))
        })?;
    let (have, want) = (a.members.len(), p.members as usize);
    let primary = a.primary_id();
    let mut members = a.members.clone();
    match (want.cmp(&have), add, remove) {
        (std::cmp::Ordering::Equal, None, None) => {}
        (std::cmp::Ordering::Greater, Some(new), None) if want == have + 1 => {
            let up = state
                .nodes
                .get(&new.node)
                .is_some_and(|n| n.status == NodeStatus::Up && !n.draining);
            let taken = state
                .addons
                .values()
                .flat_map(|x| &x.members)
                .any(|m| m.host == new.host && m.port == new.port);
            if !up || members.iter().any(|m| m.node == new.node) || taken {
                return Err(CommandError::Conflict(
                    "the new standby's placement went stale; try again".into(),
                ));
            }
            members.push(AddonMember {
                up: false,
                streaming: false,
                synced: false,
                ..new.clone()
            });
        }
        (std::cmp::Ordering::Less, None, Some(old)) if want + 1 == have && Some(old) != primary => {
            if !members.iter().any(|m| m.id == old) {
                return Err(CommandError::NotFound("no such standby".into()));
            }
            members.retain(|m| m.id != old);
        }
        _ => {
            return Err(CommandError::Invalid(format!(
                "{} runs {have} server(s); {} needs {want}: that change is not supported",
                a.name,
                p.wire_name(service)
            )))
        }
    }
    let a = state.addons.get_mut(&addon).ok_or_else(addon_not_found)?;
    a.members = members;
    a.plan = p.name.to_string();
    a.updated_at = at;
    Ok(CommandOutput::Addon {
        addon: Box::new(a.clone()),
        attachments: Vec::new(),
        releases: Vec::new(),
    })
}

/// Replaces a standby whose node is down with a new member placed by the leader on an up
/// node that runs no other member of the add-on; the new member starts as a standby
/// copied from the primary. The old member's data is left to its node, which removes it
/// as an orphan when it returns.
pub(super) fn replace_standby(
    state: &mut State,
    addon: Uuid,
    old: Uuid,
    new: &AddonMember,
) -> CommandResult {
    let a = state.addons.get(&addon).ok_or_else(addon_not_found)?;
    if a.state == AddonState::Deprovisioning {
        return Err(CommandError::Conflict(
            "the add-on is being deprovisioned".into(),
        ));
    }
    let primary = a.primary_id();
    let gone = a
        .members
        .iter()
        .find(|m| m.id == old && Some(m.id) != primary)
        .ok_or_else(|| CommandError::NotFound("no such standby".into()))?;
    let node_down = |id: NodeId| {
        state
            .nodes
            .get(&id)
            .is_none_or(|n| n.status == NodeStatus::Down)
    };
    if !node_down(gone.node) {
        return Err(CommandError::Conflict("the standby's node is up".into()));
    }
    let target_up = state
        .nodes
        .get(&new.node)
        .is_some_and(|n| n.status == NodeStatus::Up && !n.draining);
    if !target_up || a.members.iter().any(|m| m.node == new.node) {
        return Err(CommandError::Conflict(
            "the new standby's node is not up or runs a member already".into(),
        ));
    }
    let taken = state
        .addons
        .values()
        .flat_map(|x| &x.members)
        .any(|m| m.host == new.host && m.port == new.port);
    if taken || a.members.iter().any(|m| m.id == new.id) {
        return Err(CommandError::Conflict(
            "that address and port are taken".into(),
        ));
    }
    let a = state.addons.get_mut(&addon).ok_or_else(addon_not_found)?;
    a.members.retain(|m| m.id != old);
    a.members.push(AddonMember {
        up: false,
        streaming: false,
        synced: false,
        ..new.clone()
    });
    Ok(CommandOutput::Done)
}

/// Takes a standby out of sync (its server stopped answering or streaming while its node
/// stays up): it can no longer be promoted, and its primary may stop waiting for it.
pub(super) fn desync_standby(state: &mut State, addon: Uuid, member: Uuid) -> CommandResult {
    let a = state.addons.get_mut(&addon).ok_or_else(addon_not_found)?;
    let primary = a.primary_id();
    let m = a
        .members
        .iter_mut()
        .find(|m| m.id == member && Some(m.id) != primary)
        .ok_or_else(|| CommandError::NotFound("no such standby".into()))?;
    if !m.synced {
        return Err(CommandError::Conflict("the standby is not in sync".into()));
    }
    m.synced = false;
    m.streaming = false;
    Ok(CommandOutput::Done)
}

/// The standby a failover of `addon` would promote: the add-on has a primary whose node
/// is down (or gone) and a synced standby on an up node. `None`: no failover (the primary
/// is fine, or no standby has every acknowledged commit).
pub fn failover_target(state: &State, addon: &Addon) -> Option<Uuid> {
    if addon.state == AddonState::Deprovisioning || addon.members.len() < 2 {
        return None;
    }
    let primary = addon.primary_member()?;
    let primary_down = state
        .nodes
        .get(&primary.node)
        .is_none_or(|n| n.status == NodeStatus::Down);
    if !primary_down {
        return None;
    }
    addon
        .standbys()
        .filter(|m| m.synced)
        .find(|m| {
            state
                .nodes
                .get(&m.node)
                .is_some_and(|n| n.status == NodeStatus::Up)
        })
        .map(|m| m.id)
}

/// Fails `addon` over to its standby `to` (which must be [`failover_target`]): `to` is
/// the primary of generation + 1; every other member is a standby to rebuild (not up,
/// not in sync); each attachment's vars get the new URL in a release.
pub(super) fn failover(
    state: &mut State,
    addon: Uuid,
    to: Uuid,
    release_seed: Uuid,
    actor: &Actor,
) -> CommandResult {
    let a = state.addons.get(&addon).ok_or_else(addon_not_found)?;
    if failover_target(state, a) != Some(to) {
        return Err(CommandError::Conflict(format!(
            "{} cannot fail over to that member now",
            a.name
        )));
    }
    let a = state.addons.get_mut(&addon).ok_or_else(addon_not_found)?;
    a.primary = Some(to);
    a.generation += 1;
    for m in a.members.iter_mut().filter(|m| m.id != to) {
        m.up = false;
        m.streaming = false;
        m.synced = false;
    }
    for m in a.members.iter_mut().filter(|m| m.id == to) {
        m.streaming = false;
        m.synced = false;
    }
    a.updated_at = actor.at;
    let a = a.clone();
    super::addons::reset_all_vars(state, a, release_seed, actor, "Failover")
}
