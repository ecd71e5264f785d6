//! TestCluster over real `havend` processes: start, faults, reopen from cluster.json, down.
//! Skipped with a note when havend is not built (`cargo build --bins`).

#![allow(clippy::unwrap_used)] // tests may panic

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use haven_testcluster::{find_binary, pid_alive, ClusterFile, Mode, Options, TestCluster};

fn havend() -> Option<PathBuf> {
    match find_binary("havend", None, "HAVEND_BIN") {
        Ok(p) => Some(p),
        Err(e) => {
            println!("skipped: {e:#}");
            None
        }
    }
}

/// A fresh directory for one cluster; on drop (also after a failed assert) it stops any
/// cluster still recorded in it and removes it.
struct ClusterDir(PathBuf);

impl ClusterDir {
    fn new(tag: &str) -> ClusterDir {
        let dir = std::env::temp_dir().join(format!("haven-tc-{tag}-{}", std::process::id()));
        ClusterDir(dir)
    }
}

impl Drop for ClusterDir {
    fn drop(&mut self) {
        if let Ok(mut tc) = TestCluster::load(&self.0) {
            tc.down();
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits for a leader other than `not`.
fn leader_other_than(tc: &mut TestCluster, not: Option<usize>, timeout: Duration) -> usize {
    let mut found = None;
    let ok = haven_testcluster::wait_until(timeout, || {
        found = tc.leader_index().filter(|l| Some(*l) != not);
        found.is_some()
    });
    assert!(ok, "no leader within {timeout:?}");
    found.unwrap_or_default()
}

#[test]
fn loopback_cluster_survives_faults_and_reopens_from_its_file() {
    let Some(havend) = havend() else { return };
    let guard = ClusterDir::new("loop");
    let dir = guard.0.clone();
    let mut opts = Options::new(3, &dir);
    opts.mode = Mode::Loopback;
    opts.havend = Some(havend);
    let mut tc = TestCluster::start(opts).unwrap_or_else(|e| panic!("start: {e:#}"));
    assert_eq!(tc.len(), 3);
    assert!(!tc.is_netns());
    let file = ClusterFile::read(&dir).expect("cluster.json");
    assert_eq!(file.mode, Mode::Loopback);
    assert!(file
        .nodes
        .iter()
        .all(|n| n.api.starts_with("http://127.0.0.1:") && !n.id.is_empty()));
    assert!(tc
        .partition(0)
        .unwrap_err()
        .to_string()
        .contains("netns mode"));

    // Kill the leader: another one is elected by the two left.
    let old = leader_other_than(&mut tc, None, Duration::from_secs(10));
    let old_pid = tc.file.nodes[old].pid;
    tc.kill(old).unwrap();
    assert!(!pid_alive(old_pid) && !tc.alive(old));
    let new = leader_other_than(&mut tc, Some(old), Duration::from_secs(15));
    assert_ne!(new, old);

    // Restart it: it comes back with a new pid and sees a leader.
    tc.restart(old).unwrap();
    assert_ne!(tc.file.nodes[old].pid, old_pid);
    tc.wait_ready(old, Duration::from_secs(30)).unwrap();

    // A stopped node stays alive but does not answer; cont brings it back.
    let victim = (new + 1) % 3;
    tc.stop(victim).unwrap();
    assert!(tc.alive(victim));
    // SIGSTOP lands asynchronously: a request already in flight may still be answered.
    assert!(
        haven_testcluster::wait_until(Duration::from_secs(5), || tc.status(victim).is_err()),
        "a stopped node must not answer"
    );
    tc.cont(victim).unwrap();
    tc.wait_ready(victim, Duration::from_secs(15)).unwrap();

    // Restart works on a stopped node too.
    tc.stop(victim).unwrap();
    tc.restart(victim).unwrap();
    tc.wait_ready(victim, Duration::from_secs(30)).unwrap();

    // Another handle from cluster.json sees the same nodes and pids.
    tc.save().unwrap();
    let mut other = TestCluster::load(&dir).unwrap();
    assert_eq!(other.file, tc.file);
    assert!(other.get_json(0, "/cluster/nodes").is_ok());
    assert!(other.leader_index().is_some());
    drop(other); // keeps the cluster running
    assert!((0..3).all(|i| tc.alive(i)));

    let pids: Vec<i32> = tc.file.nodes.iter().map(|n| n.pid).collect();
    tc.down();
    assert!(pids.iter().all(|p| !pid_alive(*p)));
    assert!(!ClusterFile::path(&dir).exists());
}

#[test]
fn the_cli_starts_a_cluster_that_outlives_it() {
    let Some(havend) = havend() else { return };
    let Ok(bin) = find_binary("testcluster", None, "TESTCLUSTER_BIN") else {
        println!("skipped: testcluster binary not built");
        return;
    };
    let guard = ClusterDir::new("cli");
    let dir = guard.0.clone();
    let run = |args: &[&str]| {
        let out = Command::new(&bin)
            .args(args)
            .arg("--dir")
            .arg(&dir)
            .output()
            .expect("run testcluster");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "testcluster {args:?} failed: {text}");
        text
    };
    let havend_arg = havend.display().to_string();
    let out = run(&[
        "up",
        "--nodes",
        "2",
        "--mode",
        "loopback",
        "--havend",
        &havend_arg,
    ]);
    assert!(out.contains("admin token: hvn_"), "{out}");
    // The nodes outlived `up`, and a second `up` on the same dir refuses.
    let file = ClusterFile::read(&dir).unwrap();
    assert!(file.nodes.iter().all(|n| pid_alive(n.pid)));
    let again = Command::new(&bin)
        .args([
            "up",
            "--nodes",
            "2",
            "--mode",
            "loopback",
            "--havend",
            &havend_arg,
            "--dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        !again.status.success()
            && String::from_utf8_lossy(&again.stderr).contains("testcluster down")
    );

    let status = run(&["status"]);
    assert!(status.contains("leader"), "{status}");
    run(&["restart", "--node", "1"]);
    let after = ClusterFile::read(&dir).unwrap();
    assert_ne!(
        after.nodes[1].pid, file.nodes[1].pid,
        "restart must record the new pid"
    );
    let mut tc = TestCluster::load(&dir).unwrap();
    tc.wait_ready(1, Duration::from_secs(30)).unwrap();
    run(&["kill", "--node", "1"]);
    assert!(!pid_alive(after.nodes[1].pid));
    run(&["down"]);
    assert!(!pid_alive(after.nodes[0].pid));
}

#[test]
fn netns_partition_isolates_a_node_the_host_still_reaches() {
    let Some(havend) = havend() else { return };
    if !haven_testcluster::netns::available() {
        println!("skipped: partitions need root and iproute2 (network namespaces)");
        return;
    }
    let guard = ClusterDir::new("netns");
    let dir = guard.0.clone();
    let mut opts = Options::new(3, &dir);
    opts.mode = Mode::Netns;
    opts.havend = Some(havend);
    let mut tc = TestCluster::start(opts).unwrap_or_else(|e| panic!("start: {e:#}"));
    assert!(tc.is_netns());
    let k = tc.file.bridge.expect("bridge");
    assert!(tc.api(1).starts_with(&format!("http://10.77.{k}.11:")));

    let old = leader_other_than(&mut tc, None, Duration::from_secs(10));
    let old_id = tc.node_id(old).to_string();
    tc.partition(old).unwrap();
    assert_eq!(ClusterFile::read(&dir).unwrap().partitioned, vec![old]);
    // The other two elect a new leader; the host still reaches the isolated node.
    let new = leader_other_than(&mut tc, Some(old), Duration::from_secs(15));
    assert_ne!(new, old);
    let s = tc.status(old).expect("the host reaches a partitioned node");
    assert!(
        s["term"].as_u64() < tc.status(new).unwrap()["term"].as_u64(),
        "isolated node: {s}"
    );

    tc.heal_all().unwrap();
    let new_id = tc.node_id(new).to_string();
    let agree = haven_testcluster::wait_until(Duration::from_secs(20), || {
        (0..3).all(|i| {
            tc.status(i)
                .is_ok_and(|s| s["leader"].as_str() == Some(new_id.as_str()))
        })
    });
    assert!(
        agree,
        "all nodes follow {new_id} after heal (old leader {old_id})"
    );

    tc.down();
    let names = haven_testcluster::netns::list_namespaces().unwrap();
    assert!(
        !names.iter().any(|n| n.starts_with(&format!("hv{k}-"))),
        "{names:?}"
    );
    let links = haven_testcluster::netns::list_links().unwrap();
    assert!(
        !links.contains(&haven_testcluster::netns::bridge_name(k)),
        "{links:?}"
    );
}
