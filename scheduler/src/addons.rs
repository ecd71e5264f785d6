//! Placement of add-on members (design §12), as a pure function.
//!
//! [`place_addon`] picks a node and a port for each member of a new add-on: members of
//! one add-on never share a node; a node must be `Up` (not draining, not down) with the
//! plan's memory free; among those the most free memory wins, then the lowest id. The
//! port is the lowest at or above the service's base port that no other member on the
//! same address uses (nodes that share an address, as on loopback, share ports).

use std::collections::{BTreeMap, BTreeSet};

use crate::{NodeId, NodeStatus};

/// A node as add-on placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddonNodeView {
    pub id: NodeId,
    pub name: String,
    pub status: NodeStatus,
    /// The address its servers listen on.
    pub host: String,
    /// Memory not reserved by dynos or other add-on members, MiB.
    pub free_mb: u64,
}

/// What a new add-on needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddonRequest {
    /// `heroku-postgresql:essential-0`, for messages.
    pub plan: String,
    pub members: u32,
    pub memory_mb: u64,
    /// The first port to try (5432 for Postgres, 6379 for Redis).
    pub base_port: u16,
}

/// Where one member goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPlacement {
    pub node: NodeId,
    pub host: String,
    pub port: u16,
}

/// A node and port for each member, or why they cannot be placed. `ports_in_use` holds
/// the ports existing members use, by address.
pub fn place_addon(
    nodes: &[AddonNodeView],
    ports_in_use: &BTreeMap<String, BTreeSet<u16>>,
    req: &AddonRequest,
) -> Result<Vec<MemberPlacement>, String> {
    let want = req.members.max(1) as usize;
    let up: Vec<&AddonNodeView> = nodes
        .iter()
        .filter(|n| n.status == NodeStatus::Up)
        .collect();
    let mut fit: Vec<&AddonNodeView> = up
        .iter()
        .copied()
        .filter(|n| n.free_mb >= req.memory_mb)
        .collect();
    fit.sort_by(|a, b| b.free_mb.cmp(&a.free_mb).then(a.id.cmp(&b.id)));
    if fit.len() < want {
        let largest = up
            .iter()
            .max_by(|a, b| a.free_mb.cmp(&b.free_mb).then(b.id.cmp(&a.id)));
        let why = if up.is_empty() {
            "no node is up".to_string()
        } else if want > 1 && up.len() < want {
            format!("it needs {want} nodes up and the cluster has {}", up.len())
        } else {
            match largest {
                Some(n) => format!(
                    "{} of {want} nodes needed have {} MiB free (largest free: {} MiB on {})",
                    fit.len(),
                    req.memory_mb,
                    n.free_mb,
                    n.name
                ),
                None => "no node is up".to_string(),
            }
        };
        return Err(format!("cannot place {}: {why}", req.plan));
    }
    let mut taken = ports_in_use.clone();
    let mut out = Vec::with_capacity(want);
    for n in fit.into_iter().take(want) {
        let used = taken.entry(n.host.clone()).or_default();
        let port = (req.base_port..=u16::MAX)
            .find(|p| !used.contains(p))
            .ok_or_else(|| format!("cannot place {}: no port free on {}", req.plan, n.name))?;
        used.insert(port);
        out.push(MemberPlacement {
            node: n.id,
            host: n.host.clone(),
            port,
        });
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn node(id: NodeId, status: NodeStatus, host: &str, free_mb: u64) -> AddonNodeView {
        AddonNodeView {
            id,
            name: format!("node-{id}"),
            status,
            host: host.into(),
            free_mb,
        }
    }

    fn req(members: u32, memory_mb: u64) -> AddonRequest {
        AddonRequest {
            plan: "heroku-postgresql:essential-0".into(),
            members,
            memory_mb,
            base_port: 5432,
        }
    }

    #[test]
    fn members_go_to_distinct_nodes_with_the_most_free_memory() {
        let nodes = [
            node(1, NodeStatus::Up, "10.0.0.1", 1000),
            node(2, NodeStatus::Up, "10.0.0.2", 4000),
            node(3, NodeStatus::Up, "10.0.0.3", 4000),
            node(4, NodeStatus::Draining, "10.0.0.4", 9000),
            node(5, NodeStatus::Down, "10.0.0.5", 9000),
        ];
        let got = place_addon(&nodes, &BTreeMap::new(), &req(2, 256)).unwrap();
        assert_eq!(got.iter().map(|m| m.node).collect::<Vec<_>>(), [2, 3]);
        assert!(got.iter().all(|m| m.port == 5432));
        let one = place_addon(&nodes, &BTreeMap::new(), &req(1, 256)).unwrap();
        assert_eq!((one[0].node, one[0].host.as_str()), (2, "10.0.0.2"));
    }

    #[test]
    fn ports_are_unique_per_address() {
        let nodes = [
            node(1, NodeStatus::Up, "127.0.0.1", 1000),
            node(2, NodeStatus::Up, "127.0.0.1", 1000),
        ];
        let used = BTreeMap::from([("127.0.0.1".to_string(), BTreeSet::from([5432, 5434]))]);
        let got = place_addon(&nodes, &used, &req(2, 100)).unwrap();
        assert_eq!(got.iter().map(|m| m.port).collect::<Vec<_>>(), [5433, 5435]);
    }

    #[test]
    fn refusals_say_why() {
        let small = [
            node(1, NodeStatus::Up, "a", 100),
            node(2, NodeStatus::Up, "b", 200),
        ];
        let e = place_addon(&small, &BTreeMap::new(), &req(1, 256)).unwrap_err();
        assert!(e.contains("largest free: 200 MiB on node-2"), "{e}");
        let one = [node(1, NodeStatus::Up, "a", 9000)];
        let e = place_addon(&one, &BTreeMap::new(), &req(2, 256)).unwrap_err();
        assert!(e.contains("needs 2 nodes up and the cluster has 1"), "{e}");
        let down = [node(1, NodeStatus::Down, "a", 9000)];
        let e = place_addon(&down, &BTreeMap::new(), &req(1, 256)).unwrap_err();
        assert!(e.contains("no node is up"), "{e}");
        assert!(place_addon(&[], &BTreeMap::new(), &req(1, 1)).is_err());
    }
}
