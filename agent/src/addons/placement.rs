//! The replicated state as add-on placement sees it: each node's address and free memory
//! (after dynos and other add-on members), and the ports members use by address.

use std::collections::{BTreeMap, BTreeSet};

use haven_raft::model::{Addon, AddonMember, NodeId, NodeStatus, State};
use haven_scheduler as sched;
use uuid::Uuid;

/// The address a node's servers listen on: the host of its peer address
/// (`10.0.0.1:7000` → `10.0.0.1`, `[::1]:7000` → `::1`).
pub fn node_host(peer_addr: &str) -> String {
    let host = match peer_addr.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => peer_addr,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// The memory a member of `addon` reserves, MiB (its plan's; 256 for an unknown plan).
pub fn member_memory_mb(addon: &Addon) -> u64 {
    haven_raft::catalog::addon_service(&addon.service)
        .and_then(|s| haven_raft::catalog::service_plan(s, &addon.plan))
        .map_or(256, |p| p.memory_mb)
}

/// Memory add-on members reserve on each node, MiB.
pub fn addon_memory_by_node(s: &State) -> BTreeMap<NodeId, u64> {
    let mut out: BTreeMap<NodeId, u64> = BTreeMap::new();
    for a in s.addons.values() {
        for m in &a.members {
            *out.entry(m.node).or_default() += member_memory_mb(a);
        }
    }
    out
}

/// Every node with its address and the memory neither dynos nor add-on members reserve.
pub fn node_views(s: &State) -> Vec<sched::AddonNodeView> {
    let addons = addon_memory_by_node(s);
    let mut dynos: BTreeMap<NodeId, u64> = BTreeMap::new();
    for d in s.dynos.values() {
        *dynos.entry(d.node).or_default() += sched::size_memory_mb(&d.size).unwrap_or(512);
    }
    s.nodes
        .values()
        .map(|n| {
            let used =
                addons.get(&n.id).copied().unwrap_or(0) + dynos.get(&n.id).copied().unwrap_or(0);
            sched::AddonNodeView {
                id: n.id,
                name: n.name.clone(),
                status: match (n.status, n.draining) {
                    (NodeStatus::Down, _) => sched::NodeStatus::Down,
                    (NodeStatus::Up, true) => sched::NodeStatus::Draining,
                    (NodeStatus::Up, false) => sched::NodeStatus::Up,
                },
                host: node_host(&n.peer_addr),
                free_mb: n.memory_mb.saturating_sub(used),
            }
        })
        .collect()
}

/// Ports existing members use, by address.
pub fn ports_in_use(s: &State) -> BTreeMap<String, BTreeSet<u16>> {
    let mut out: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    for m in s.addons.values().flat_map(|a| &a.members) {
        out.entry(m.host.clone()).or_default().insert(m.port);
    }
    out
}

/// A new member for `addon` on an up node that runs none of its members (fresh id), or
/// why there is none: the replacement of a standby whose node stays down.
pub fn place_replacement(s: &State, addon: &Addon) -> Result<AddonMember, String> {
    let service = haven_raft::catalog::addon_service(&addon.service).ok_or("unknown service")?;
    let plan = haven_raft::catalog::service_plan(service, &addon.plan).ok_or("unknown plan")?;
    let nodes: Vec<sched::AddonNodeView> = node_views(s)
        .into_iter()
        .filter(|n| addon.members.iter().all(|m| m.node != n.id))
        .collect();
    let req = sched::AddonRequest {
        plan: plan.wire_name(service),
        members: 1,
        memory_mb: plan.memory_mb,
        base_port: match service.engine {
            haven_raft::catalog::Engine::Postgres => 5432,
            haven_raft::catalog::Engine::Redis => 6379,
        },
    };
    let placed = sched::place_addon(&nodes, &ports_in_use(s), &req)?;
    let p = placed.into_iter().next().ok_or("nothing placed")?;
    Ok(AddonMember {
        id: Uuid::new_v4(),
        node: p.node,
        host: p.host,
        port: p.port,
        up: false,
        streaming: false,
        synced: false,
    })
}

/// Members for a new add-on of `service:plan`, placed on the nodes of `s` (fresh ids),
/// or why they cannot be.
pub fn place(
    s: &State,
    service: &haven_raft::catalog::AddonService,
    plan: &haven_raft::catalog::AddonPlan,
) -> Result<Vec<AddonMember>, String> {
    let req = sched::AddonRequest {
        plan: plan.wire_name(service),
        members: plan.members,
        memory_mb: plan.memory_mb,
        base_port: match service.engine {
            haven_raft::catalog::Engine::Postgres => 5432,
            haven_raft::catalog::Engine::Redis => 6379,
        },
    };
    let placed = sched::place_addon(&node_views(s), &ports_in_use(s), &req)?;
    Ok(placed
        .into_iter()
        .map(|p| AddonMember {
            id: Uuid::new_v4(),
            node: p.node,
            host: p.host,
            port: p.port,
            up: false,
            streaming: false,
            synced: false,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_come_from_peer_addresses() {
        assert_eq!(node_host("10.77.0.11:7401"), "10.77.0.11");
        assert_eq!(node_host("[::1]:7401"), "::1");
        assert_eq!(node_host("localhost"), "localhost");
    }
}
