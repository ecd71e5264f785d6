//! Haven-only calls: `GET /cluster/status`, `GET /cluster/nodes`, `PATCH
//! /cluster/nodes/{node}` (drain) and `GET /cluster/events` (platform events).
//!
//! They read this node's replica and Raft status without a read barrier on purpose: they
//! are how an operator finds out why a cluster has no leader, so they must answer then too.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use haven_api as w;
use haven_raft::catalog;
use haven_raft::command::Command;
use haven_raft::model::{self, State as Model};
use haven_raft::RaftStatus;

use super::apps::time;
use super::body::JsonBody;
use super::{allow, Action, ApiContext, ApiError, Caller};

/// Model and Raft status → wire for the cluster's status as node `status.node_id` sees it.
pub fn status_to_wire(state: &Model, status: &RaftStatus) -> w::ClusterStatus {
    let name_of = |id: u64| state.nodes.get(&id).map(|n| n.name.clone());
    let cluster = state.cluster.as_ref();
    w::ClusterStatus {
        cluster_id: cluster.map(|c| c.id.to_string()).unwrap_or_default(),
        cluster_name: cluster.map(|c| c.name.clone()).unwrap_or_default(),
        app_domain: cluster.map(|c| c.app_domain.clone()).unwrap_or_default(),
        node_id: status.node_id.to_string(),
        node_name: name_of(status.node_id).unwrap_or_default(),
        leader: status.leader.map(|l| l.to_string()),
        leader_name: status.leader.and_then(name_of),
        term: status.term,
        voters: status.voters.iter().map(u64::to_string).collect(),
        learners: status.learners.iter().map(u64::to_string).collect(),
        applied_index: status.applied_index,
        last_log_index: status.last_log_index,
        snapshot_index: status.snapshot_index,
        purged_index: status.purged_index,
        version: Some(crate::version::VERSION.to_string()),
        started_at: Some(crate::version::started_at_rfc3339()),
        protocol_min: Some(haven_raft::version::MIN_PROTOCOL),
        protocol_max: Some(haven_raft::version::PROTOCOL),
        format: Some(haven_raft::version::FORMAT),
    }
}

/// Model → wire for one node; its role comes from the Raft membership.
pub fn node_to_wire(s: &Model, n: &model::Node, status: &RaftStatus) -> w::ClusterNode {
    let placed: Vec<&model::Dyno> = s
        .dynos
        .values()
        .filter(|d| d.node == n.id && (d.run || d.state != model::DynoState::Down))
        .collect();
    let used_memory_mb = placed
        .iter()
        .map(|d| catalog::dyno_size(&d.size).map_or(512, |s| s.memory_mb))
        .sum();
    let role = if status.voters.contains(&n.id) {
        "voter"
    } else if status.learners.contains(&n.id) {
        "learner"
    } else {
        // Registered in the model but not (or no longer) in the membership.
        "none"
    };
    w::ClusterNode {
        id: n.id.to_string(),
        name: n.name.clone(),
        api_url: n.api_url.clone(),
        peer_addr: n.peer_addr.clone(),
        router_url: n.router_url.clone(),
        role: role.into(),
        status: n.status_text().into(),
        leader: status.leader == Some(n.id),
        memory_mb: n.memory_mb,
        used_memory_mb,
        dynos: placed.len() as u32,
        draining: n.draining,
        cpus: n.cpus,
        labels: n.labels.clone(),
        joined_at: time(n.joined_at),
    }
}

/// `GET /cluster/status`. No read barrier, deliberately: an operator must see the cluster
/// as this node knows it even when there is no leader to confirm a read.
pub async fn status(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    allow(&caller, Action::Cluster)?;
    let st = ctx.raft.status();
    let body = ctx.raft.with_state(|s| status_to_wire(s, &st));
    Ok(Json(body).into_response())
}

/// `GET /cluster/nodes`. No read barrier, as for the status: it must answer without a
/// leader.
pub async fn nodes(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    allow(&caller, Action::Cluster)?;
    let st = ctx.raft.status();
    let body: Vec<w::ClusterNode> = ctx
        .raft
        .with_state(|s| s.nodes.values().map(|n| node_to_wire(s, n, &st)).collect());
    Ok(Json(body).into_response())
}

/// `GET /metrics`: Prometheus text: the router's counters, and gauges of Raft, the
/// scheduler's view (dynos by state, unplaced), this node's dynos and its routes.
pub async fn metrics(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
) -> Response {
    if let Err(e) = allow(&caller, Action::Cluster) {
        return e.into_response();
    }
    let st = ctx.raft.status();
    let me = ctx.node_id;
    let mut gauges: Vec<(&str, &str, Vec<(&str, String)>, f64)> = vec![
        (
            "haven_raft_term",
            "Current Raft term.",
            vec![],
            st.term as f64,
        ),
        (
            "haven_raft_is_leader",
            "1 when this node leads.",
            vec![],
            f64::from(u8::from(st.leader == Some(me))),
        ),
        (
            "haven_raft_applied_index",
            "Last log index applied here.",
            vec![],
            st.applied_index.unwrap_or(0) as f64,
        ),
        (
            "haven_raft_last_log_index",
            "Last log index stored here.",
            vec![],
            st.last_log_index.unwrap_or(0) as f64,
        ),
        (
            "haven_raft_voters",
            "Voters in the membership.",
            vec![],
            st.voters.len() as f64,
        ),
        (
            "haven_log_lines_total",
            "App log lines this node has taken in since it started.",
            vec![],
            ctx.logs.total() as f64,
        ),
    ];
    ctx.raft.with_state(|s| {
        let mut by_state: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
        for d in s.dynos.values() {
            let e = by_state.entry(d.state.as_str()).or_default();
            e.0 += 1;
            if d.node == me {
                e.1 += 1;
            }
        }
        for (state, (all, here)) in by_state {
            gauges.push((
                "haven_cluster_dynos",
                "Dynos in the cluster, by reported state.",
                vec![("state", state.to_string())],
                all as f64,
            ));
            gauges.push((
                "haven_node_dynos",
                "Dynos placed on this node, by reported state.",
                vec![("state", state.to_string())],
                here as f64,
            ));
        }
        gauges.push((
            "haven_scheduler_unplaced_dynos",
            "Formation dynos the scheduler could not place.",
            vec![],
            s.unplaced.len() as f64,
        ));
        gauges.push((
            "haven_cluster_nodes_up",
            "Nodes marked up.",
            vec![],
            s.nodes
                .values()
                .filter(|n| n.status == model::NodeStatus::Up)
                .count() as f64,
        ));
    });
    let text = ctx.metrics.render(&ctx.node_name, &gauges);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
        .into_response()
}

/// `PATCH /cluster/nodes/{node} {"draining": true}`: `nodes:drain` moves the node's dynos
/// away and keeps new ones off it; `false` undoes it. The node is named by id or name.
pub async fn update_node(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    JsonBody(body): JsonBody<w::ClusterNodeUpdate>,
) -> Result<Response, ApiError> {
    allow(&caller, Action::Cluster)?;
    let Some(draining) = body.draining else {
        return Err(ApiError::invalid(
            "nothing to change: send {\"draining\": true|false}",
        ));
    };
    ctx.raft.read_barrier().await?;
    let id = ctx
        .raft
        .with_state(|s| {
            s.nodes
                .values()
                .find(|n| n.name == key || n.id.to_string() == key)
                .map(|n| n.id)
        })
        .ok_or_else(|| ApiError::not_found(format!("no node named {key}; see hctl nodes")))?;
    super::write(
        &ctx,
        Command::SetNodeDraining {
            node_id: id,
            draining,
        },
    )
    .await?;
    let name = ctx
        .raft
        .with_state(|s| s.nodes.get(&id).map(|n| n.name.clone()))
        .unwrap_or_default();
    ctx.events.record(
        "node",
        if draining {
            format!("{} drained {name}: its dynos move away", caller.email)
        } else {
            format!("{} undrained {name}", caller.email)
        },
    );
    let st = ctx.raft.status();
    let body = ctx
        .raft
        .with_state(|s| s.nodes.get(&id).map(|n| node_to_wire(s, n, &st)))
        .ok_or_else(|| ApiError::not_found("the node is gone"))?;
    Ok(Json(body).into_response())
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct EventsQuery {
    /// `node`: this node's events only.
    #[serde(default)]
    scope: Option<String>,
}

/// `GET /cluster/events`: the newest platform events of every up node, newest first
/// (`?scope=node`: this node's own, oldest first).
pub async fn events(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    axum::extract::Query(q): axum::extract::Query<EventsQuery>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    allow(&caller, Action::Cluster)?;
    let mine = ctx.events.list();
    if q.scope.as_deref() == Some("node") {
        return Ok(Json(mine).into_response());
    }
    let (theirs, _) = super::fanout::ask_others::<Vec<crate::events::Event>>(
        &ctx,
        &headers,
        "/cluster/events?scope=node",
    )
    .await;
    let all = mine
        .into_iter()
        .chain(theirs.into_iter().flatten())
        .collect();
    Ok(Json(crate::events::merge(all, crate::events::CAPACITY)).into_response())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::DateTime;
    use uuid::Uuid;

    use super::*;

    fn node(id: u64, name: &str) -> model::Node {
        model::Node {
            id,
            name: name.into(),
            peer_addr: format!("127.0.0.1:{id}"),
            api_url: format!("http://127.0.0.1:1{id}"),
            router_url: format!("http://127.0.0.1:2{id}"),
            memory_mb: 2048,
            cpus: 4,
            labels: BTreeMap::from([("zone".to_string(), "a".to_string())]),
            draining: false,
            status: if id == 3 {
                model::NodeStatus::Down
            } else {
                model::NodeStatus::Up
            },
            joined_at: DateTime::from_timestamp(0, 0).unwrap(),
        }
    }

    fn sample() -> (Model, RaftStatus) {
        let mut s = Model {
            cluster: Some(model::Cluster {
                id: Uuid::from_u128(9),
                name: "prod".into(),
                app_domain: "apps.test".into(),
                created_at: DateTime::from_timestamp(0, 0).unwrap(),
                join_secret_sha256: String::new(),
                ca_fingerprint: String::new(),
            }),
            ..Model::default()
        };
        for (id, name) in [(1, "n1"), (2, "n2"), (3, "n3"), (4, "n4")] {
            s.nodes.insert(id, node(id, name));
        }
        let st = RaftStatus {
            node_id: 2,
            leader: Some(1),
            term: 5,
            voters: vec![1, 2, 3],
            learners: vec![4],
            applied_index: Some(10),
            last_log_index: Some(11),
            snapshot_index: None,
            purged_index: None,
            members: vec![],
        };
        (s, st)
    }

    #[test]
    fn status_names_the_leader() {
        let (s, st) = sample();
        let w = status_to_wire(&s, &st);
        assert_eq!(w.cluster_id, Uuid::from_u128(9).to_string());
        assert_eq!(
            (w.cluster_name.as_str(), w.app_domain.as_str()),
            ("prod", "apps.test")
        );
        assert_eq!((w.node_id.as_str(), w.node_name.as_str()), ("2", "n2"));
        assert_eq!(
            (w.leader.as_deref(), w.leader_name.as_deref()),
            (Some("1"), Some("n1"))
        );
        assert_eq!(w.voters, ["1", "2", "3"]);
        assert_eq!(w.learners, ["4"]);
        assert_eq!(
            (w.term, w.applied_index, w.last_log_index),
            (5, Some(10), Some(11))
        );
        let leaderless = RaftStatus { leader: None, ..st };
        let w = status_to_wire(&s, &leaderless);
        assert_eq!((w.leader, w.leader_name), (None, None));
    }

    #[test]
    fn nodes_carry_role_status_and_leader() {
        let (s, st) = sample();
        let got: Vec<(String, String, String, bool)> = s
            .nodes
            .values()
            .map(|n| node_to_wire(&s, n, &st))
            .map(|n| (n.id, n.role, n.status, n.leader))
            .collect();
        let want = [
            ("1", "voter", "up", true),
            ("2", "voter", "up", false),
            ("3", "voter", "down", false),
            ("4", "learner", "up", false),
        ];
        let want: Vec<(String, String, String, bool)> = want
            .iter()
            .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), *d))
            .collect();
        assert_eq!(got, want);
        let n = node_to_wire(&s, &s.nodes[&1], &st);
        assert_eq!(n.joined_at, "1970-01-01T00:00:00Z");
        assert_eq!(n.labels["zone"], "a");
    }
}
