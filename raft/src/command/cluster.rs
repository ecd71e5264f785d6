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
pub(super) fn remove_node(state: &mut State, node_id: NodeId) -> CommandResult {
    state
        .nodes
        .remove(&node_id)
        .ok_or_else(|| node_not_found(node_id))?;
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
