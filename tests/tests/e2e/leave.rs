//! `havend leave` over a real 3-node cluster: run on the leader's host while it serves
//! a web dyno, it moves the dyno (the app answers through another router all along),
//! hands the lead over, takes the node out of the Raft membership and the node list, and
//! stops the agent; the data dir is refused by `havend run` afterwards, and the cluster
//! goes on writing under a new leader.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use haven_testcluster::pid_alive;
use haven_tests::{eventually, hctl, hctl_ok as ok, repo_path};
use serde_json::Value;

#[test]
fn a_node_that_leaves_moves_its_dynos_and_is_gone_for_good() {
    let mut env = haven_tests::cluster(3);
    let fixture = repo_path("tests/fixtures/router-app");
    ok(hctl(&env, 0, &["apps:create", "goes-on"]));
    ok(hctl(
        &env,
        0,
        &["deploy", &fixture.to_string_lossy(), "-a", "goes-on"],
    ));
    ok(hctl(&env, 0, &["ps:scale", "web=3", "-a", "goes-on"]));
    ok(hctl(
        &env,
        0,
        &["ps:wait", "-a", "goes-on", "--timeout", "90"],
    ));
    let leader = env.leader_index().unwrap();
    let names: Vec<String> = (0..3)
        .map(|i| {
            env.status(i).unwrap()["node_name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let dynos = env.get_json(leader, "/apps/goes-on/dynos").unwrap();
    let on = |i: usize| {
        dynos
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["node"]["name"] == names[i].as_str())
    };
    // The leader leaves (the harder case: it must hand the lead over); the load goes
    // through another node's router.
    let victim = leader;
    eprintln!("the leaving node runs a dyno: {}", on(victim));
    let through = (0..3).find(|i| *i != victim).unwrap();
    let victim_id = env.node_id(victim).to_string();
    let pid = env.file.nodes[victim].pid;
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
                sent.fetch_add(1, Ordering::Relaxed);
                let ok = c
                    .get(&url)
                    .header("Host", "goes-on.localhost")
                    .send()
                    .is_ok_and(|r| r.status().is_success());
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let data_dir = env.data_dir(victim).unwrap().to_path_buf();
    let havend = haven_tests::binary("havend");
    let out = std::process::Command::new(&havend)
        .arg("leave")
        .arg("--data-dir")
        .arg(&data_dir)
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    assert!(
        out.status.success(),
        "havend leave failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("left the cluster"));
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("{failed} of {sent} requests failed during the leave");
    assert!(sent > 0);
    assert_eq!(failed, 0, "{failed} of {sent} requests failed");
    // The agent stops by itself.
    eventually("the agent that left stops", Duration::from_secs(60), || {
        (!pid_alive(pid)).then_some(())
    });
    // Out of the node list and of the membership, as every remaining node sees it.
    for i in (0..3).filter(|i| *i != victim) {
        eventually(
            &format!("node {i} forgets the node"),
            Duration::from_secs(60),
            || {
                let nodes = env.get_json(i, "/cluster/nodes").ok()?;
                let gone = !nodes
                    .as_array()?
                    .iter()
                    .any(|n| n["id"] == victim_id.as_str());
                let s: Value = env.status(i).ok()?;
                let member = s["voters"]
                    .as_array()?
                    .iter()
                    .chain(s["learners"].as_array()?.iter())
                    .any(|v| v == victim_id.as_str());
                (gone && !member).then_some(())
            },
        );
    }
    // Its dynos run elsewhere, and the cluster still writes.
    let d = env.get_json(through, "/apps/goes-on/dynos").unwrap();
    assert!(d
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["node"]["name"] != names[victim].as_str()));
    ok(hctl(
        &env,
        through,
        &["config:set", "AFTER=yes", "-a", "goes-on"],
    ));
    // `havend run` refuses the data dir, and so does a second leave.
    let run = std::process::Command::new(&havend)
        .args(["run", "--data-dir"])
        .arg(&data_dir)
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("left its cluster"), "{err}");
}
