//! `hctl nodes:upgrade`: a rolling upgrade, one node at a time. For each node: check that
//! the cluster can spare it (every node up, a leader, a quorum of voters without it), run
//! the operator's command that restarts its `havend` on the new binary (SIGUSR2, install,
//! start: its dynos keep running and the new agent adopts them), then wait until the node
//! answers again from a new process, sees a leader, has caught up with the cluster's log
//! and is up, before the next node. The version checks themselves are the nodes' own (an
//! incompatible node refuses to start or to talk, with a message in its log).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use haven_api as w;

use crate::client::Api;

/// What `nodes:upgrade` was asked.
pub struct Request<'a> {
    /// Node names or ids, in order; empty with `all`.
    pub nodes: &'a [String],
    /// Every node: followers first, the leader last.
    pub all: bool,
    /// `sh -c` command that restarts a node's havend on the new binary.
    pub exec: Option<&'a str>,
    /// How long each node may take to come back.
    pub timeout: Duration,
}

/// The order to upgrade `nodes` in: the named ones in the given order (each name or id
/// once), or with `all` every node with the leader last, so that leadership moves once.
pub fn upgrade_order(
    all_nodes: &[w::ClusterNode],
    named: &[String],
    all: bool,
) -> Result<Vec<w::ClusterNode>, String> {
    if all {
        let mut v: Vec<w::ClusterNode> = all_nodes.to_vec();
        v.sort_by_key(|n| (n.leader, n.name.clone()));
        return Ok(v);
    }
    if named.is_empty() {
        return Err("name the nodes to upgrade, or pass --all".into());
    }
    let mut out: Vec<w::ClusterNode> = Vec::new();
    for name in named {
        let node = all_nodes
            .iter()
            .find(|n| n.name == *name || n.id == *name)
            .ok_or_else(|| format!("no node {name}; `hctl nodes` lists them"))?;
        if out.iter().any(|n| n.id == node.id) {
            return Err(format!("{name} is named twice"));
        }
        out.push(node.clone());
    }
    Ok(out)
}

/// Whether the cluster can spare `target` now: every node up and not draining away, a
/// leader, and without it still a majority of the voters up.
pub fn preflight(
    nodes: &[w::ClusterNode],
    status: &w::ClusterStatus,
    target: &w::ClusterNode,
) -> Result<(), String> {
    if let Some(down) = nodes.iter().find(|n| n.status != "up") {
        return Err(format!(
            "{} is {}: upgrade one node at a time, and only while every node is up (bring it \
             back, or remove it with hctl nodes:remove)",
            down.name, down.status
        ));
    }
    if status.leader.is_none() {
        return Err("the cluster has no leader right now; retry when it has one".into());
    }
    let voters = &status.voters;
    if voters.contains(&target.id) {
        let up_without = voters
            .iter()
            .filter(|v| **v != target.id)
            .filter(|v| nodes.iter().any(|n| n.id == **v && n.status == "up"))
            .count();
        let quorum = voters.len() / 2 + 1;
        if up_without < quorum && voters.len() > 1 {
            return Err(format!(
                "without {} only {up_without} of {} voters would be up, fewer than a quorum \
                 ({quorum})",
                target.name,
                voters.len()
            ));
        }
    }
    Ok(())
}

/// What is known of a node's agent at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// Its agent's start time (absent from nodes that predate the field).
    pub started_at: Option<String>,
    /// Its API failed to answer at some point since the restart began.
    pub was_unreachable: bool,
}

/// Whether the node answering with `now` runs a new agent since `before`: a new start
/// time; or, from an agent that reports none, an API that went away and came back, or
/// (`exec_done`) the operator's restart command having finished.
pub fn restarted(before: &Seen, now: Option<&str>, exec_done: bool) -> bool {
    match (before.started_at.as_deref(), now) {
        (Some(b), Some(n)) => b != n,
        (None, Some(_)) => true,
        (_, None) => before.was_unreachable || exec_done,
    }
}

fn versions(st: &w::ClusterStatus) -> String {
    match (&st.version, st.protocol_min, st.protocol_max, st.format) {
        (Some(v), Some(min), Some(max), Some(f)) if min == max => {
            format!("havend {v} (peer protocol {max}, on-disk format {f})")
        }
        (Some(v), Some(min), Some(max), Some(f)) => {
            format!("havend {v} (peer protocols {min} to {max}, on-disk format {f})")
        }
        (Some(v), ..) => format!("havend {v}"),
        _ => "a havend from before version fields".to_string(),
    }
}

/// A client of `node`'s own API with the same token and CA.
fn node_api(api: &Api, node: &w::ClusterNode) -> Result<Api> {
    Api::new(&node.api_url, api.token(), api.ca_pem())
}

/// The API to watch the cluster through while `target` restarts: the one logged in to,
/// unless it is the target's; then another node's.
fn vantage(api: &Api, nodes: &[w::ClusterNode], target: &w::ClusterNode) -> Result<Api> {
    let me = api.get::<w::ClusterStatus>("/cluster/status")?.value;
    if me.node_id != target.id {
        return Api::new(&api.url, api.token(), api.ca_pem());
    }
    let other = nodes.iter().find(|n| n.id != target.id).ok_or_else(|| {
        anyhow!(
            "{} is the only node: nothing watches it restart",
            target.name
        )
    })?;
    node_api(api, other)
}

/// `hctl nodes:upgrade`.
pub fn run(api: &Api, req: &Request) -> Result<()> {
    let nodes = api.get::<Vec<w::ClusterNode>>("/cluster/nodes")?.value;
    let order = upgrade_order(&nodes, req.nodes, req.all).map_err(anyhow::Error::msg)?;
    let total = order.len();
    for (k, target) in order.iter().enumerate() {
        eprintln!("[{}/{total}] {}", k + 1, target.name);
        upgrade_one(api, target, req)?;
    }
    println!(
        "Upgraded {total} node{}: {}",
        if total == 1 { "" } else { "s" },
        order
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

fn upgrade_one(api: &Api, target: &w::ClusterNode, req: &Request) -> Result<()> {
    let nodes = api.get::<Vec<w::ClusterNode>>("/cluster/nodes")?.value;
    let watch = vantage(api, &nodes, target)?;
    let nodes = watch.get::<Vec<w::ClusterNode>>("/cluster/nodes")?.value;
    let status = watch.get::<w::ClusterStatus>("/cluster/status")?.value;
    let target = nodes
        .iter()
        .find(|n| n.id == target.id)
        .ok_or_else(|| anyhow!("{} left the cluster", target.name))?;
    preflight(&nodes, &status, target)
        .map_err(|e| anyhow!("not upgrading {}: {e}", target.name))?;
    let own = node_api(api, target)?;
    let before_status = own
        .get::<w::ClusterStatus>("/cluster/status")
        .with_context(|| format!("ask {} for its status", target.name))?
        .value;
    let mut seen = Seen {
        started_at: before_status.started_at.clone(),
        was_unreachable: false,
    };
    eprintln!("  now: {}", versions(&before_status));
    let started = Instant::now();
    let since = Utc::now();
    let exec_done = match req.exec {
        Some(cmd) => {
            eprintln!("  restarting: {cmd}");
            let host = target
                .peer_addr
                .rsplit_once(':')
                .map_or(target.peer_addr.as_str(), |(h, _)| h);
            let st = Command::new("sh")
                .args(["-c", cmd])
                .env("HAVEN_NODE", &target.name)
                .env("HAVEN_NODE_ID", &target.id)
                .env("HAVEN_NODE_HOST", host)
                .env("HAVEN_NODE_API", &target.api_url)
                .status()
                .with_context(|| format!("run {cmd}"))?;
            if !st.success() {
                bail!(
                    "the restart command failed for {} ({st}); it is as the command left it, \
                     and the other nodes were not touched",
                    target.name
                );
            }
            true
        }
        None => {
            eprintln!(
                "  restart havend on {} now (SIGUSR2, install the new binary, start it: \
                 `systemctl kill -s SIGUSR2 havend`, then `systemctl start havend`)",
                target.name
            );
            false
        }
    };
    let deadline = started + req.timeout;
    let wait = |what: &str| -> Result<()> {
        if Instant::now() >= deadline {
            bail!(
                "{} did not {what} within {:?}; see its log (journalctl -u havend): a node \
                 that refuses its data dir's format or its peers' protocol says why there",
                target.name,
                req.timeout
            );
        }
        std::thread::sleep(Duration::from_millis(200));
        Ok(())
    };
    // A new agent answers.
    loop {
        match own.get::<w::ClusterStatus>("/cluster/status") {
            Ok(a) if restarted(&seen, a.value.started_at.as_deref(), exec_done) => break,
            Ok(_) => {}
            Err(_) => seen.was_unreachable = true,
        }
        wait("come back from a new havend")?;
    }
    // It sees a leader and has applied what the cluster had committed when it came back.
    let goal = watch
        .get::<w::ClusterStatus>("/cluster/status")?
        .value
        .applied_index
        .unwrap_or(0);
    let after = loop {
        if let Ok(a) = own.get::<w::ClusterStatus>("/cluster/status") {
            let a = a.value;
            if a.leader.is_some() && a.applied_index.unwrap_or(0) >= goal {
                break a;
            }
        }
        wait("catch up with the cluster")?;
    };
    // The cluster counts it up again.
    let back = loop {
        let nodes = watch.get::<Vec<w::ClusterNode>>("/cluster/nodes")?.value;
        if let Some(n) = nodes.iter().find(|n| n.id == target.id && n.status == "up") {
            break n.clone();
        }
        wait("be up again")?;
    };
    eprintln!(
        "  back after {:.1}s: {}, caught up at index {}",
        started.elapsed().as_secs_f64(),
        versions(&after),
        after.applied_index.unwrap_or(0)
    );
    let events = watch
        .get::<Vec<w::PlatformEvent>>("/cluster/events")
        .map(|e| e.value)
        .unwrap_or_default();
    if marked_down_since(&events, &back.name, since) {
        eprintln!(
            "  warning: the leader marked {} down while it restarted, so its dynos were \
             started elsewhere instead of adopted; raise [dynos] node_timeout_ms above the \
             restart time",
            back.name
        );
    }
    Ok(())
}

/// Whether `events` say the leader marked `name` down at or after `since` (less a few
/// seconds of clock skew between the nodes and this machine).
pub fn marked_down_since(events: &[w::PlatformEvent], name: &str, since: DateTime<Utc>) -> bool {
    let from = since - chrono::Duration::seconds(5);
    let marked = format!("marked {name} down");
    events.iter().any(|e| {
        e.kind == "node"
            && e.message.starts_with(&marked)
            && DateTime::parse_from_rfc3339(&e.at).is_ok_and(|at| at.with_timezone(&Utc) >= from)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn node(id: &str, status: &str, leader: bool) -> w::ClusterNode {
        w::ClusterNode {
            id: id.into(),
            name: format!("node-{id}"),
            api_url: format!("http://10.0.0.{id}:7400"),
            peer_addr: format!("10.0.0.{id}:7401"),
            router_url: String::new(),
            role: "voter".into(),
            status: status.into(),
            leader,
            memory_mb: 1024,
            used_memory_mb: 0,
            dynos: 1,
            draining: false,
            cpus: 2,
            labels: Default::default(),
            joined_at: String::new(),
        }
    }

    fn status(voters: &[&str], leader: Option<&str>) -> w::ClusterStatus {
        w::ClusterStatus {
            cluster_id: String::new(),
            cluster_name: String::new(),
            app_domain: String::new(),
            node_id: "1".into(),
            node_name: "node-1".into(),
            leader: leader.map(str::to_string),
            leader_name: None,
            term: 1,
            voters: voters.iter().map(|v| v.to_string()).collect(),
            learners: vec![],
            applied_index: Some(1),
            last_log_index: None,
            snapshot_index: None,
            purged_index: None,
            version: None,
            started_at: None,
            protocol_min: None,
            protocol_max: None,
            format: None,
        }
    }

    fn names(v: &[w::ClusterNode]) -> Vec<&str> {
        v.iter().map(|n| n.name.as_str()).collect()
    }

    #[test]
    fn all_nodes_go_followers_first_and_the_leader_last() {
        let nodes = [
            node("2", "up", true),
            node("3", "up", false),
            node("1", "up", false),
        ];
        let order = upgrade_order(&nodes, &[], true).unwrap();
        assert_eq!(names(&order), ["node-1", "node-3", "node-2"]);
        let named = upgrade_order(&nodes, &["node-2".into(), "3".into()], false).unwrap();
        assert_eq!(names(&named), ["node-2", "node-3"]);
        assert!(upgrade_order(&nodes, &["node-9".into()], false)
            .unwrap_err()
            .contains("no node node-9"));
        assert!(upgrade_order(&nodes, &["2".into(), "node-2".into()], false).is_err());
        assert!(upgrade_order(&nodes, &[], false).is_err());
    }

    #[test]
    fn a_node_is_spared_only_while_every_node_is_up_and_a_quorum_stays() {
        let up = [
            node("1", "up", true),
            node("2", "up", false),
            node("3", "up", false),
        ];
        let st = status(&["1", "2", "3"], Some("1"));
        assert_eq!(preflight(&up, &st, &up[1]), Ok(()));
        assert_eq!(preflight(&up, &st, &up[0]), Ok(()));
        let one_down = [
            node("1", "up", true),
            node("2", "up", false),
            node("3", "down", false),
        ];
        let err = preflight(&one_down, &st, &one_down[1]).unwrap_err();
        assert!(
            err.starts_with("node-3 is down: upgrade one node at a time"),
            "{err}"
        );
        let leaderless = status(&["1", "2", "3"], None);
        assert!(preflight(&up, &leaderless, &up[1])
            .unwrap_err()
            .contains("no leader"));
        // Two voters: without either, no quorum.
        let two = [node("1", "up", true), node("2", "up", false)];
        let err = preflight(&two, &status(&["1", "2"], Some("1")), &two[1]).unwrap_err();
        assert!(err.contains("only 1 of 2 voters would be up"), "{err}");
        // A learner may always go; a single node cluster too (it is simply down a while).
        let learner = [node("1", "up", true), node("2", "up", false)];
        assert_eq!(
            preflight(&learner, &status(&["1"], Some("1")), &learner[1]),
            Ok(())
        );
        let single = [node("1", "up", true)];
        assert_eq!(
            preflight(&single, &status(&["1"], Some("1")), &single[0]),
            Ok(())
        );
    }

    #[test]
    fn a_node_marked_down_during_its_restart_is_noticed() {
        let ev = |kind: &str, at: &str, message: &str| w::PlatformEvent {
            at: at.into(),
            node: "node-1".into(),
            kind: kind.into(),
            message: message.into(),
        };
        let since = DateTime::parse_from_rfc3339("2026-01-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let down = "marked node-2 down: not heard from for 2000 ms";
        assert!(marked_down_since(
            &[ev("node", "2026-01-01T10:00:03.120Z", down)],
            "node-2",
            since
        ));
        // Before the restart, of another node, or another kind: no.
        assert!(!marked_down_since(
            &[
                ev("node", "2026-01-01T09:50:00Z", down),
                ev(
                    "node",
                    "2026-01-01T10:00:03Z",
                    "marked node-3 down: not heard"
                ),
                ev(
                    "node",
                    "2026-01-01T10:00:03Z",
                    "marked node-2 up: heard from again"
                ),
                ev("raft", "2026-01-01T10:00:03Z", down),
            ],
            "node-2",
            since
        ));
    }

    #[test]
    fn a_restart_is_seen_by_a_new_start_time_or_an_absence() {
        let known = Seen {
            started_at: Some("t1".into()),
            was_unreachable: false,
        };
        assert!(!restarted(&known, Some("t1"), true));
        assert!(restarted(&known, Some("t2"), false));
        // From a node before the field to one with it.
        let unknown = Seen::default();
        assert!(restarted(&unknown, Some("t1"), false));
        // Neither reports it: the API's absence, or the finished restart command, tells.
        assert!(!restarted(&unknown, None, false));
        assert!(restarted(&unknown, None, true));
        let gone = Seen {
            was_unreachable: true,
            ..Seen::default()
        };
        assert!(restarted(&gone, None, false));
    }
}
