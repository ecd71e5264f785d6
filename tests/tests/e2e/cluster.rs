//! Raft cluster behaviour over real clusters: formation, forwarding, failover, restarts,
//! snapshots, partitions and foreign peers.

use std::time::{Duration, Instant};

use base64::Engine;
use haven_tests::{binary, cluster, cluster_opts, cluster_with, eventually};
use reqwest::Method;
use serde_json::{json, Value};

fn status(env: &haven_tests::Env, i: usize) -> Option<Value> {
    env.get_json(i, "/cluster/status").ok()
}

fn create_app(env: &haven_tests::Env, i: usize, name: &str) {
    let (st, body) = env
        .request(i, Method::POST, "/apps", Some(&json!({ "name": name })))
        .unwrap();
    assert_eq!(st.as_u16(), 201, "create {name} on node {i}: {body}");
}

fn set_var(
    env: &haven_tests::Env,
    i: usize,
    app: &str,
    key: &str,
    value: &str,
) -> Result<(), String> {
    match env.request(
        i,
        Method::PATCH,
        &format!("/apps/{app}/config-vars"),
        Some(&json!({ key: value })),
    ) {
        Ok((st, _)) if st.is_success() => Ok(()),
        Ok((st, body)) => Err(format!("{st} {body}")),
        Err(e) => Err(format!("{e:#}")),
    }
}

#[test]
fn three_nodes_form_one_cluster() {
    let env = cluster(3);
    for i in 0..3 {
        let s = status(&env, i).expect("status");
        assert_eq!(
            s["voters"].as_array().map(Vec::len),
            Some(3),
            "node {i}: {s}"
        );
        assert_eq!(
            s["leader"],
            status(&env, 0).unwrap()["leader"],
            "all nodes agree on the leader"
        );
        let mut voters: Vec<&str> = s["voters"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        voters.sort_unstable();
        let mut ids: Vec<&str> = (0..3).map(|n| env.node_id(n)).collect();
        ids.sort_unstable();
        assert_eq!(voters, ids, "node {i}: the voters are the three nodes");
        assert!(
            s["leader"].as_str().is_some_and(|l| ids.contains(&l)),
            "node {i}: the leader is one of the nodes: {s}"
        );
    }
    let nodes = env.get_json(2, "/cluster/nodes").unwrap();
    assert_eq!(nodes.as_array().map(Vec::len), Some(3));
    assert_eq!(
        nodes
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["leader"] == json!(true))
            .count(),
        1
    );
}

#[test]
fn app_created_through_a_follower_is_visible_on_every_node_at_once() {
    let mut env = cluster(3);
    let leader = env.leader_index().expect("leader");
    let follower = (leader + 1) % 3;
    create_app(&env, follower, "seen-everywhere");
    for i in 0..3 {
        // No waiting: the read barrier makes an acknowledged write visible on any node.
        let (st, body) = env
            .request(i, Method::GET, "/apps/seen-everywhere", None)
            .unwrap();
        assert_eq!(st.as_u16(), 200, "node {i}: {body}");
    }
}

#[test]
fn killing_the_leader_elects_another_and_keeps_acknowledged_writes() {
    let mut env = cluster(3);
    create_app(&env, 0, "durable");
    // 50 acknowledged writes, spread over every node (followers forward to the leader).
    const WRITES: usize = 50;
    for k in 0..WRITES {
        set_var(&env, k % 3, "durable", &format!("K{k}"), &k.to_string()).expect("write");
    }
    let old = env.leader_index().expect("leader");
    let old_id = env.node_id(old).to_string();
    env.kill(old).unwrap();
    let started = Instant::now();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    // Elected means: both survivors name the same leader, and it is not the dead one.
    let new_leader = eventually("a new leader", Duration::from_secs(10), || {
        let a = status(&env, survivors[0])?["leader"].as_str()?.to_string();
        let b = status(&env, survivors[1])?["leader"].as_str()?.to_string();
        (a != old_id && a == b).then_some(a)
    });
    let elected = started.elapsed();
    println!(
        "new leader {new_leader} elected {} ms after the leader was killed",
        elected.as_millis()
    );
    assert!(
        elected < Duration::from_secs(5),
        "election took {elected:?}"
    );
    for i in &survivors {
        let config = env.get_json(*i, "/apps/durable/config-vars").unwrap();
        for k in 0..WRITES {
            assert_eq!(
                config[format!("K{k}")],
                json!(k.to_string()),
                "node {i} lost the acknowledged write K{k}"
            );
        }
    }
    // And the cluster takes new writes, through both survivors.
    for i in &survivors {
        set_var(&env, *i, "durable", "AFTER", &i.to_string()).expect("write after failover");
    }
}

#[test]
fn a_killed_node_restarts_and_catches_up() {
    let mut env = cluster(3);
    let leader = env.leader_index().expect("leader");
    let victim = (leader + 1) % 3;
    env.kill(victim).unwrap();
    let other = (0..3).find(|i| *i != victim && *i != leader).unwrap();
    create_app(&env, other, "while-down");
    set_var(&env, leader, "while-down", "A", "1").unwrap();
    env.restart(victim).unwrap();
    let config = eventually(
        "the restarted node to answer with the new app",
        Duration::from_secs(20),
        || {
            let (st, body) = env
                .request(victim, Method::GET, "/apps/while-down/config-vars", None)
                .ok()?;
            st.is_success().then_some(body)
        },
    );
    assert_eq!(config["A"], "1");
    // Its own replica caught up too: applied index reaches the leader's.
    let target = status(&env, leader).unwrap()["applied_index"]
        .as_u64()
        .unwrap();
    eventually("the replica to catch up", Duration::from_secs(10), || {
        (status(&env, victim)?["applied_index"].as_u64()? >= target).then_some(())
    });
}

#[test]
fn a_node_behind_a_purged_log_catches_up_by_snapshot() {
    let mut env = cluster_with(3, Some("[raft]\nsnapshot_after = 20\nkeep_logs = 5\n"));
    let leader = env.leader_index().expect("leader");
    let victim = (leader + 2) % 3;
    create_app(&env, leader, "snappy");
    let before = status(&env, victim).unwrap()["last_log_index"]
        .as_u64()
        .unwrap();
    env.kill(victim).unwrap();
    for k in 0..80 {
        set_var(&env, leader, "snappy", "N", &k.to_string()).unwrap();
    }
    let purged = eventually(
        "the leader to purge its log",
        Duration::from_secs(10),
        || {
            let p = status(&env, leader)?["purged_index"].as_u64()?;
            (p > before + 1).then_some(p)
        },
    );
    println!("leader purged up to {purged}; the stopped node had {before}");
    env.restart(victim).unwrap();
    let s = eventually(
        "the node to install a snapshot",
        Duration::from_secs(30),
        || {
            let s = status(&env, victim)?;
            (s["snapshot_index"].as_u64()? > before).then_some(s)
        },
    );
    println!("restarted node status: {s}");
    let target = status(&env, leader).unwrap()["applied_index"]
        .as_u64()
        .unwrap();
    eventually(
        "the restarted node's applied index to reach the leader's",
        Duration::from_secs(20),
        || (status(&env, victim)?["applied_index"].as_u64()? >= target).then_some(()),
    );
    let config = env.get_json(victim, "/apps/snappy/config-vars").unwrap();
    assert_eq!(config["N"], "79");
}

#[test]
fn a_partitioned_minority_cannot_commit_and_heals() {
    let mut env = cluster(3);
    if !env.is_netns() {
        println!("skipped: partitions need root and iproute2 (network namespaces)");
        return;
    }
    create_app(&env, 0, "split");
    let old = env.leader_index().expect("leader");
    env.partition(old).unwrap();
    let majority: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    // The majority elects a leader and commits.
    eventually("the majority to commit", Duration::from_secs(15), || {
        set_var(&env, majority[0], "split", "MAJORITY", "yes").ok()
    });
    // The isolated old leader cannot commit: its write fails (503 or a timeout).
    let lost = set_var(&env, old, "split", "MINORITY", "no");
    assert!(lost.is_err(), "a write on the minority side must fail");
    println!("write on the partitioned node: {}", lost.unwrap_err());
    for i in &majority {
        let c = env.get_json(*i, "/apps/split/config-vars").unwrap();
        assert!(
            c.get("MINORITY").is_none(),
            "node {i} sees the refused write: {c}"
        );
    }
    env.heal(old).unwrap();
    // After heal every node names the same leader, has applied the same log, and answers
    // with the same data.
    let view = |i: usize| -> Value {
        json!({
            "status": status(&env, i),
            // git_url and web_url name the answering node's address: compare the rest.
            "apps": env.get_json(i, "/apps").ok().map(|apps| {
                apps.as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| json!([a["id"], a["name"], a["released_at"], a["maintenance"]]))
                    .collect::<Vec<_>>()
            }),
            "config": env.get_json(i, "/apps/split/config-vars").ok(),
        })
    };
    let agree = |views: &[Value]| {
        let key = |v: &Value| {
            (
                v["status"]["leader"].clone(),
                v["status"]["applied_index"].clone(),
                v["apps"].clone(),
                v["config"].clone(),
            )
        };
        views[0]["status"]["leader"].is_string()
            && views[0]["config"].is_object()
            && views.iter().all(|v| key(v) == key(&views[0]))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let views: Vec<Value> = (0..3).map(view).collect();
        if agree(&views) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nodes still disagree 20 s after heal: {views:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for i in 0..3 {
        let c = env.get_json(i, "/apps/split/config-vars").unwrap();
        assert_eq!(c["MAJORITY"], "yes", "node {i}");
        assert!(
            c.get("MINORITY").is_none(),
            "node {i} has the write the minority refused: {c}"
        );
    }
}

#[test]
fn a_partitioned_follower_refuses_writes_and_catches_up_after_heal() {
    let mut env = cluster(3);
    if !env.is_netns() {
        println!("skipped: partitions need root and iproute2 (network namespaces)");
        return;
    }
    create_app(&env, 0, "cut-off");
    let leader = env.leader_index().expect("leader");
    let cut = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    env.partition(cut).unwrap();
    // The leader keeps its majority: writes through it and the other follower commit.
    set_var(&env, leader, "cut-off", "A", "1").expect("write on the majority");
    set_var(&env, other, "cut-off", "B", "2").expect("write on the majority");
    // The cut-off follower cannot forward to the leader nor confirm a read.
    let started = Instant::now();
    let refused = set_var(&env, cut, "cut-off", "C", "3");
    assert!(refused.is_err(), "a write to a cut-off follower must fail");
    println!(
        "cut-off follower answered in {} ms: {}",
        started.elapsed().as_millis(),
        refused.unwrap_err()
    );
    env.heal(cut).unwrap();
    let config = eventually(
        "the healed follower to serve the majority's writes",
        Duration::from_secs(20),
        || {
            let (st, c) = env
                .request(cut, Method::GET, "/apps/cut-off/config-vars", None)
                .ok()?;
            (st.is_success() && c["B"] == "2").then_some(c)
        },
    );
    assert_eq!(
        config,
        json!({"A": "1", "B": "2"}),
        "the refused write stays refused"
    );
    // The cut-off node may have raised its term while alone, so the heal may cause a new
    // election; either way all nodes end up naming one leader.
    eventually(
        "all nodes to name one leader",
        Duration::from_secs(20),
        || {
            let leaders: Vec<Value> = (0..3)
                .map(|i| status(&env, i).map(|s| s["leader"].clone()))
                .collect::<Option<_>>()?;
            (leaders[0].is_string() && leaders.iter().all(|l| *l == leaders[0])).then_some(())
        },
    );
}

/// Rewrites a join token's fields (it is base64url JSON).
fn edit_token(token: &str, f: impl FnOnce(&mut Value)) -> String {
    let body = token.strip_prefix("HVNJ1.").unwrap();
    let mut v: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .unwrap(),
    )
    .unwrap();
    f(&mut v);
    format!(
        "HVNJ1.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
    )
}

fn try_join(token: &str, peer: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(binary("havend"))
        .args(["join", "--token", token, "--data-dir"])
        .arg(dir.path().join("data"))
        .args([
            "--name",
            "intruder",
            "--api-listen",
            "127.0.0.1:0",
            "--peer-listen",
            "127.0.0.1:0",
            "--router-listen",
            "127.0.0.1:0",
            "--advertise-host",
            "127.0.0.1",
            peer,
        ])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn peers_without_the_cluster_ca_or_secret_are_refused() {
    let env = cluster(1);
    let other = cluster(1);
    let peer = env.file.nodes[0].peer.clone();
    // A token of another cluster: its CA fingerprint does not match this cluster's chain.
    let (ok, err) = try_join(&other.file.join_token, &peer);
    assert!(!ok, "joining with a foreign cluster's token must fail");
    assert!(
        err.contains("not from the cluster CA") || err.contains("certificate"),
        "{err}"
    );
    // The right CA but a wrong secret.
    let forged = edit_token(&env.file.join_token, |v| v["s"] = json!("guess"));
    let (ok, err) = try_join(&forged, &peer);
    assert!(!ok);
    assert!(err.contains("join secret was refused"), "{err}");
    let s = status(&env, 0).unwrap();
    assert_eq!(
        s["voters"].as_array().map(Vec::len),
        Some(1),
        "membership unchanged: {s}"
    );
    assert_eq!(s["learners"].as_array().map(Vec::len), Some(0));
}

#[test]
fn secrets_never_appear_in_node_logs() {
    // Debug logging on: even then no token or config value may be written.
    // Set per cluster, not in this process: other tests run beside this one.
    let env = cluster_opts(3, |o| o.env.push(("HAVEN_LOG".into(), "debug".into())));
    create_app(&env, 1, "secretive");
    set_var(
        &env,
        2,
        "secretive",
        "DATABASE_URL",
        "postgres://u:hunter2-s3cr3t@db/x",
    )
    .unwrap();
    set_var(&env, 0, "secretive", "API_KEY", "k3y-v4lue-never-logged").unwrap();
    let token = env.token().to_string();
    for n in &env.file.nodes {
        let log = std::fs::read_to_string(&n.log).unwrap();
        assert!(
            log.lines().count() > 10,
            "node log {} is nearly empty",
            n.log.display()
        );
        assert!(
            log.contains(" DEBUG "),
            "node log {} has no debug lines: HAVEN_LOG did not reach the node",
            n.log.display()
        );
        for secret in ["hunter2-s3cr3t", "k3y-v4lue-never-logged", token.as_str()] {
            assert!(
                !log.contains(secret),
                "{} contains a secret",
                n.log.display()
            );
        }
    }
}

#[test]
fn a_sixth_node_joins_as_a_learner() {
    let env = cluster(6);
    let s = status(&env, 5).expect("status");
    assert_eq!(s["voters"].as_array().map(Vec::len), Some(5), "{s}");
    assert_eq!(s["learners"].as_array().map(Vec::len), Some(1), "{s}");
    assert_eq!(s["learners"][0], env.node_id(5), "{s}");
    // The learner serves the API like any node.
    create_app(&env, 5, "from-learner");
    let (st, _) = env
        .request(0, Method::GET, "/apps/from-learner", None)
        .unwrap();
    assert_eq!(st.as_u16(), 200);
}

#[test]
fn sigterm_stops_a_node_cleanly_and_it_restarts_from_its_data_dir() {
    let mut env = cluster(3);
    create_app(&env, 0, "survives-restart");
    let victim = (env.leader_index().expect("leader") + 1) % 3;
    let pid = env.file.nodes[victim].pid;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    eventually(
        "the node to exit after SIGTERM",
        Duration::from_secs(10),
        || (!env.alive(victim)).then_some(()),
    );
    let log = std::fs::read_to_string(&env.file.nodes[victim].log).unwrap();
    assert!(
        log.contains("SIGTERM received") && log.contains("stopped"),
        "no clean shutdown in the log"
    );
    env.restart(victim).unwrap();
    let (st, _) = eventually(
        "the restarted node to answer",
        Duration::from_secs(20),
        || {
            env.request(victim, Method::GET, "/apps/survives-restart", None)
                .ok()
                .filter(|(st, _)| st.is_success())
        },
    );
    assert_eq!(st.as_u16(), 200);
}
