//! `nodes:remove` over a real 4-node cluster under load: the node's web dynos move
//! (no request through the other routers fails), it leaves the Raft membership and the
//! node list, its identity is refused afterwards (writes through it fail, and it cannot
//! register again), and the cluster goes on writing.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use haven_tests::{eventually, hctl, hctl_ok as ok, repo_path};
use serde_json::Value;

#[test]
fn a_removed_node_moves_its_dynos_leaves_raft_and_is_refused_after() {
    let env = haven_tests::cluster(4);
    let fixture = repo_path("tests/fixtures/router-app");
    ok(hctl(&env, 0, &["apps:create", "stays-up"]));
    ok(hctl(
        &env,
        0,
        &["deploy", &fixture.to_string_lossy(), "-a", "stays-up"],
    ));
    ok(hctl(&env, 0, &["ps:scale", "web=3", "-a", "stays-up"]));
    let mut env = env;
    let leader = env.leader_index().unwrap();
    let dynos = eventually("three web dynos up", Duration::from_secs(90), || {
        let d = env.get_json(leader, "/apps/stays-up/dynos").ok()?;
        let up: Vec<Value> = d
            .as_array()?
            .iter()
            .filter(|d| d["type"] == "web" && d["state"] == "up")
            .cloned()
            .collect();
        (up.len() == 3).then_some(up)
    });
    let names: Vec<String> = (0..4)
        .map(|i| {
            env.get_json(i, "/cluster/status").unwrap()["node_name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let victim = (0..4)
        .find(|i| {
            *i != leader
                && dynos
                    .iter()
                    .any(|d| d["node"]["name"] == names[*i].as_str())
        })
        .unwrap();
    let victim_id = env.node_id(victim).to_string();
    let through = (0..4).find(|i| *i != leader && *i != victim).unwrap();

    // Load through a router that stays, during the whole removal.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        let url = format!("{}/", env.router(through));
        std::thread::spawn(move || {
            let c = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            while !stop.load(Ordering::Relaxed) {
                let ok = c
                    .get(&url)
                    .header("Host", "stays-up.localhost")
                    .send()
                    .is_ok_and(|r| r.status().is_success());
                sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let out = ok(hctl(&env, through, &["nodes:remove", &names[victim]]));
    assert!(out.contains("Removed"), "{out}");
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("nodes:remove under load: {failed} failed of {sent} requests");
    assert!(sent > 20, "{sent}");
    assert_eq!(failed, 0, "{failed} of {sent} requests failed");

    // Out of the node list and of Raft; the web dynos run elsewhere.
    let nodes = env.get_json(leader, "/cluster/nodes").unwrap();
    assert!(!nodes.to_string().contains(&victim_id), "{nodes}");
    let st = env.get_json(leader, "/cluster/status").unwrap();
    assert!(!st.to_string().contains(&victim_id), "{st}");
    let d = env.get_json(leader, "/apps/stays-up/dynos").unwrap();
    assert!(
        d.as_array()
            .unwrap()
            .iter()
            .all(|d| d["node"]["name"] != names[victim].as_str()),
        "{d}"
    );
    // The cluster writes on; the removed node cannot write through it any more.
    ok(hctl(
        &env,
        through,
        &["config:set", "AFTER=1", "-a", "stays-up"],
    ));
    eventually(
        "a write through the removed node refused",
        Duration::from_secs(30),
        || {
            let out = hctl(
                &env,
                victim,
                &["config:set", "FROM_REMOVED=1", "-a", "stays-up"],
            );
            (!out.status.success()).then_some(())
        },
    );
    let c = env.get_json(leader, "/apps/stays-up/config-vars").unwrap();
    assert!(c.get("FROM_REMOVED").is_none(), "{c}");
    // Restarted, it does not come back with that identity.
    env.restart(victim).unwrap();
    let _ = env.wait_ready(victim, Duration::from_secs(10));
    let nodes = env.get_json(leader, "/cluster/nodes").unwrap();
    assert!(!nodes.to_string().contains(&victim_id), "{nodes}");
}
