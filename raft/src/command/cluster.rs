//! The cluster and its nodes: bootstrap, node registration, liveness, draining, removal.

use super::{CommandError, CommandOutput, CommandResult};
use crate::model::{Cluster, Node, NodeId, NodeStatus, State, Token, User};

/// The first command of a cluster: who it is, its first node and its admin.
pub(super) fn bootstrap(
    state: &mut State,
    cluster: &Cluster,
    node: &Node,
    admin: &User,
    admin_token: &Token,
) -> CommandResult {
    if state.cluster.is_some() {
        return Err(CommandError::Conflict(
            "cluster is already bootstrapped".into(),
        ));
    }
    state.cluster = Some(cluster.clone());
    state.nodes.insert(node.id, node.clone());
    state.users.insert(admin.id, admin.clone());
    state
        .tokens
        .insert(admin_token.sha256.clone(), admin_token.clone());
    Ok(CommandOutput::Done)
}

/// Adds a node or updates its addresses; its name must be its own.
pub(super) fn register_node(state: &mut State, node: &Node) -> CommandResult {
    if state.removed_nodes.contains(&node.id) {
        return Err(CommandError::Conflict(format!(
            "node {} was removed from the cluster and cannot come back with that identity; wipe its data dir and join it as a new node",
            node.id
        )));
    }
    if let Some(other) = state
        .nodes
        .values()
        .find(|n| n.name == node.name && n.id != node.id)
    {
        return Err(CommandError::Conflict(format!(
            "node name {:?} is taken by node {}",
            node.name, other.id
        )));
    }
    let mut node = node.clone();
    if let Some(old) = state.nodes.get(&node.id) {
        // Liveness belongs to the leader and draining to operators: a node
        // updating its addresses keeps both.
        node.joined_at = old.joined_at;
        node.status = old.status;
        node.draining = old.draining;
    }
    state.nodes.insert(node.id, node);
    Ok(CommandOutput::Done)
}

/// Records a node's liveness.
pub(super) fn set_node_status(
    state: &mut State,
    node_id: NodeId,
    status: NodeStatus,
) -> CommandResult {
    node_mut(state, node_id)?.status = status;
    if status == NodeStatus::Down {
        super::addon_ha::on_node_down(state, node_id);
    }
    Ok(CommandOutput::Done)
}

/// `nodes:drain` / `nodes:undrain`.
pub(super) fn set_node_draining(
    state: &mut State,
    node_id: NodeId,
    draining: bool,
) -> CommandResult {
    node_mut(state, node_id)?.draining = draining;
    Ok(CommandOutput::Done)
}

/// Removes a node from the model.
/// Removes a node for good: its record, the dynos still placed on it (the scheduler
/// places them again), and its identity, which is refused from then on.
pub(super) fn remove_node(state: &mut State, node_id: NodeId) -> CommandResult {
    state
        .nodes
        .remove(&node_id)
        .ok_or_else(|| node_not_found(node_id))?;
    state.dynos.retain(|_, d| d.node != node_id);
    state.removed_nodes.insert(node_id);
    Ok(CommandOutput::Done)
}

fn node_mut(state: &mut State, node_id: NodeId) -> Result<&mut Node, CommandError> {
    state
        .nodes
        .get_mut(&node_id)
        .ok_or_else(|| node_not_found(node_id))
}

fn node_not_found(node_id: NodeId) -> CommandError {
    CommandError::NotFound(format!("node {node_id} not found"))
}

#[cfg(test)]
mod tests {
    use crate::command::{Command, CommandError};
    use crate::model::{Node, NodeStatus, State};

    fn node(id: u64) -> Node {
        Node {
            id,
            name: format!("n{id}"),
            peer_addr: format!("10.0.0.{id}:7401"),
            api_url: String::new(),
            router_url: String::new(),
            memory_mb: 1024,
            cpus: 1,
            labels: Default::default(),
            status: NodeStatus::Up,
            draining: false,
            joined_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_removed_node_cannot_register_again() {
        let mut s = State::default();
        Command::RegisterNode { node: node(2) }
            .apply(&mut s)
            .unwrap();
        Command::RemoveNode { node_id: 2 }.apply(&mut s).unwrap();
        assert!(s.nodes.is_empty());
        assert!(s.removed_nodes.contains(&2));
        let again = Command::RegisterNode { node: node(2) }.apply(&mut s);
        assert!(matches!(again, Err(CommandError::Conflict(m)) if m.contains("new node")));
        assert!(Command::RemoveNode { node_id: 2 }.apply(&mut s).is_err());
        // A new identity on the same host is welcome.
        Command::RegisterNode { node: node(3) }
            .apply(&mut s)
            .unwrap();
    }
}
