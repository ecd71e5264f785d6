//! `DELETE /cluster/nodes/{node}` (`hctl nodes:remove`, admins): removes a node for good.
//! It is drained first and the call waits (up to [`DRAIN_DEADLINE`]) until its formation
//! dynos run elsewhere, so routing drops nothing; then it leaves the Raft membership
//! (voters keep a majority of the rest) and the model with `RemoveNode`, which also
//! revokes its identity: every node refuses a peer whose certificate names a removed
//! node, and it can never register again (a wiped host joins as a new node). Refused
//! while add-on members live on the node, and for the last voter. Answered by the
//! leader: another node passes the call on.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use haven_raft::command::Command;
use haven_raft::model::NodeId;

use super::cluster::node_to_wire;
use super::{allow, write, Action, ApiContext, ApiError, Caller};

/// How long the removal waits for the node's dynos to move.
const DRAIN_DEADLINE: Duration = Duration::from_secs(180);

fn conflict(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "conflict", msg.into())
}

pub async fn remove(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    allow(&caller, Action::Cluster)?;
    ctx.raft.read_barrier().await?;
    let status = ctx.raft.status();
    if status.leader != Some(ctx.node_id) {
        return pass_to_leader(&ctx, &key, &headers, status.leader).await;
    }
    let found = ctx.raft.with_state(|s| {
        s.nodes
            .values()
            .find(|n| n.name == key || n.id.to_string() == key)
            .map(|n| (n.clone(), node_to_wire(s, n, &status)))
    });
    let (node, wire) =
        found.ok_or_else(|| ApiError::not_found(format!("no node named {key}; see hctl nodes")))?;
    let addons: Vec<String> = ctx.raft.with_state(|s| {
        s.addons
            .values()
            .filter(|a| a.members.iter().any(|m| m.node == node.id))
            .map(|a| a.name.clone())
            .collect()
    });
    if !addons.is_empty() {
        return Err(conflict(format!(
            "{} holds members of add-ons ({}); destroy them or let a standby take over first",
            node.name,
            addons.join(", ")
        )));
    }
    let voters: BTreeSet<NodeId> = status.voters.iter().copied().collect();
    let rest: BTreeSet<NodeId> = voters.iter().copied().filter(|v| *v != node.id).collect();
    if rest.is_empty() {
        return Err(conflict(format!(
            "{} is the cluster's only voter: it cannot be removed",
            node.name
        )));
    }
    // Drain: the scheduler starts its dynos elsewhere before it stops them there.
    if !node.draining {
        write(
            &ctx,
            Command::SetNodeDraining {
                node_id: node.id,
                draining: true,
            },
        )
        .await?;
    }
    let deadline = tokio::time::Instant::now() + DRAIN_DEADLINE;
    // Re-counted whenever the state applies an entry.
    let mut changes = ctx.raft.changes();
    loop {
        let left = ctx.raft.with_state(|s| {
            s.dynos
                .values()
                .filter(|d| d.node == node.id && !d.one_off)
                .count()
        });
        if left == 0 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(conflict(format!(
                "{} still runs {left} dynos after {} s of draining (see hctl ps); it stays drained — run nodes:remove again",
                node.name,
                DRAIN_DEADLINE.as_secs()
            )));
        }
        let _ = tokio::time::timeout_at(deadline, changes.next()).await;
    }
    if node.id == ctx.node_id {
        // The leader removes itself: the removal commits while it still leads (outside
        // the membership it could not find the next leader); leaving the membership
        // then makes it step down, or the next leader's autopilot takes it out.
        write(&ctx, Command::RemoveNode { node_id: node.id }).await?;
        let leaving = ctx.raft.change_voters(rest, BTreeSet::from([node.id]));
        if !matches!(
            tokio::time::timeout(Duration::from_secs(10), leaving).await,
            Ok(Ok(()))
        ) {
            tracing::warn!(
                "leaving the membership failed or took too long; the next leader removes this node"
            );
        }
    } else {
        ctx.raft
            .change_voters(rest, BTreeSet::from([node.id]))
            .await?;
        write(&ctx, Command::RemoveNode { node_id: node.id }).await?;
    }
    ctx.events.record(
        "node",
        format!(
            "{} removed {} from the cluster: its identity is refused from now on",
            caller.email, node.name
        ),
    );
    Ok(Json(wire).into_response())
}

/// The leader does the removal: pass the call on with the caller's credentials.
async fn pass_to_leader(
    ctx: &ApiContext,
    key: &str,
    headers: &HeaderMap,
    leader: Option<NodeId>,
) -> Result<Response, ApiError> {
    let url = leader
        .and_then(|l| {
            ctx.raft
                .with_state(|s| s.nodes.get(&l).map(|n| n.api_url.clone()))
        })
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the cluster has no leader now; retry in a moment",
            )
        })?;
    let mut req = ctx
        .http
        .delete(format!("{url}/cluster/nodes/{key}"))
        .header(header::ACCEPT, "application/vnd.heroku+json; version=3")
        .timeout(DRAIN_DEADLINE + Duration::from_secs(60));
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        req = req.header(header::AUTHORIZATION, auth.clone());
    }
    let resp = req.send().await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("the leader does not answer: {e}"),
        )
    })?;
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = resp.bytes().await.unwrap_or_default();
    Ok((
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_vec(),
    )
        .into_response())
}
