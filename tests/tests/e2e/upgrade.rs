//! A rolling upgrade from the previous commit's binaries to this build's: a 3-node
//! cluster started with `target/previous/havend` (made by `scripts/build-previous`) is
//! upgraded one node at a time with `hctl nodes:upgrade --exec`, followers first and the
//! leader last, under load through the routers of the other nodes. No request fails, every
//! dyno is the same process afterwards, and the nodes report this build's versions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use haven_tests::load::{Load, LoadOptions};
use haven_tests::{binary, cluster_opts, eventually, hctl, hctl_ok as ok, Env};
use serde_json::{json, Value};

/// A node timeout longer than a restart, so that no node is declared down meanwhile (the
/// README's advice for rolling upgrades).
const PATIENT: &str = "[dynos]\nnode_timeout_ms = 15000\n";

/// The previous commit's `havend` (with its `haven-init` beside it): `target/previous/`,
/// next to this build's `target/debug/`, or `HAVEN_PREVIOUS_DIR`.
fn previous_havend() -> PathBuf {
    let dir = match std::env::var_os("HAVEN_PREVIOUS_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let current = binary("havend");
            let target = current
                .parent()
                .and_then(Path::parent)
                .expect("havend lives in TARGET/debug");
            target.join("previous")
        }
    };
    let havend = dir.join("havend");
    assert!(
        havend.is_file() && dir.join("haven-init").is_file(),
        "{} is missing: run scripts/build-previous (it builds the previous commit's havend, \
         haven-init and hctl into target/previous/; scripts/test runs it)",
        havend.display()
    );
    havend
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python-hello")
}

fn dynos(env: &Env, via: usize, app: &str) -> Vec<Value> {
    env.get_json(via, &format!("/apps/{app}/dynos"))
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// `id → (node, restarts, state)` of `app`'s dynos.
fn dyno_table(env: &Env, via: usize, app: &str) -> BTreeMap<String, (String, u64, String)> {
    dynos(env, via, app)
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap().to_string(),
                (
                    d["node"]["name"].as_str().unwrap_or_default().to_string(),
                    d["restarts"].as_u64().unwrap(),
                    d["state"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

/// Paced requests through the routers of `routers`.
fn paced_load(env: &Env, routers: &[usize], host: &str) -> Load {
    let urls: Vec<String> = routers.iter().map(|r| env.router(*r).to_string()).collect();
    let opts = LoadOptions {
        pace: Some(Duration::from_millis(20)),
        timeout: Duration::from_secs(10),
        ..LoadOptions::default()
    };
    Load::start(&urls, host, opts)
}

fn name_of(env: &Env, i: usize) -> String {
    env.status(i).unwrap()["node_name"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_rolling_upgrade_from_the_previous_commit_keeps_every_dyno_and_drops_no_request() {
    let previous = previous_havend();
    let current = binary("havend");
    let testcluster = binary("testcluster");
    let mut env = cluster_opts(3, |o| {
        o.havend = Some(previous.clone());
        o.config_toml = Some(PATIENT.to_string());
    });
    let app = "rolling";
    env.post_json(0, "/apps", &json!({ "name": app })).unwrap();
    ok(hctl(
        &env,
        0,
        &["deploy", &example().to_string_lossy(), "-a", app],
    ));
    ok(hctl(&env, 0, &["ps:scale", "web=3", "-a", app]));
    ok(hctl(&env, 0, &["ps:wait", "-a", app, "--timeout", "90"]));
    let before = dyno_table(&env, 0, app);
    let pids: Vec<Vec<(String, i32)>> = (0..env.len()).map(|i| env.dyno_pids(i)).collect();
    assert_eq!(before.len(), 3, "three web dynos: {before:?}");
    assert!(
        pids.iter().all(|p| !p.is_empty()),
        "a web dyno on every node: {pids:?}"
    );
    let host = format!("{app}.localhost");

    // Followers first, the leader last: leadership moves once.
    let leader = env.leader_index().expect("a leader");
    let mut order: Vec<usize> = (0..env.len()).filter(|i| *i != leader).collect();
    order.push(leader);
    let mut report = Vec::new();
    for &i in &order {
        let others: Vec<usize> = (0..env.len()).filter(|j| *j != i).collect();
        let load = paced_load(&env, &others, &host);
        load.wait_more(30, "load flowing");
        let name = name_of(&env, i);
        let exec = format!(
            "{} upgrade --dir {} --node {i} --havend {}",
            testcluster.display(),
            env.dir().display(),
            current.display()
        );
        let out = hctl(
            &env,
            others[0],
            &["nodes:upgrade", &name, "--exec", &exec, "--timeout", "120"],
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        eprint!("{stderr}");
        ok(out);
        assert!(
            stderr.contains("back after") && !stderr.contains("warning"),
            "{stderr}"
        );
        env.reload().unwrap();
        // The upgraded node's router serves again, from the dynos it adopted.
        eventually(
            "the upgraded node's router answers",
            Duration::from_secs(30),
            || {
                reqwest::blocking::Client::new()
                    .get(format!("{}/", env.router(i)))
                    .header("Host", &host)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .is_ok_and(|r| r.status().is_success())
                    .then_some(())
            },
        );
        assert_eq!(
            env.dyno_pids(i),
            pids[i],
            "node {i} runs the same dyno processes after its upgrade"
        );
        // Old and new nodes replicate together: a write through the upgraded node (to
        // the leader, old until the last step) is read on every node. (Not a config var:
        // a new release would replace the dynos.)
        let step = format!("step-{i}");
        env.post_json(i, "/apps", &json!({ "name": step })).unwrap();
        for j in 0..env.len() {
            let got = env.get_json(j, &format!("/apps/{step}")).unwrap();
            assert_eq!(got["name"], step.as_str(), "node {j}: {got}");
        }
        load.wait_more(50, "requests answered after the upgrade");
        let samples = load.finish();
        let failures: Vec<String> = samples
            .iter()
            .filter(|s| !s.ok())
            .map(|s| s.to_string())
            .collect();
        report.push(format!(
            "{name}: {} answered, {} failed",
            samples.len() - failures.len(),
            failures.len()
        ));
        assert!(
            failures.is_empty(),
            "requests failed while {name} was upgraded: {failures:?}\n{stderr}"
        );
    }
    eprintln!("rolling upgrade, order {order:?}: {}", report.join("; "));

    // Every node runs this build, and every dyno is the one from before.
    for i in 0..env.len() {
        let s = env.status(i).unwrap();
        assert_eq!(s["version"], env!("CARGO_PKG_VERSION"), "node {i}: {s}");
        assert!(s["protocol_max"].is_u64() && s["format"].is_u64(), "{s}");
        assert!(!s["leader"].is_null(), "node {i} sees no leader: {s}");
    }
    let pids_after: Vec<Vec<(String, i32)>> = (0..env.len()).map(|i| env.dyno_pids(i)).collect();
    assert_eq!(pids_after, pids, "the same dyno processes on every node");
    assert_eq!(
        dyno_table(&env, 0, app),
        before,
        "the same dynos, up, none restarted"
    );
    let lines = ok(hctl(
        &env,
        0,
        &["logs", "-a", app, "-n", "1500", "-s", "heroku"],
    ));
    assert!(
        !lines.contains("Stopping all processes with SIGTERM"),
        "a dyno was stopped during the upgrade:\n{lines}"
    );
    // The upgraded cluster takes writes and every node reads them.
    env.post_json(1, "/apps", &json!({ "name": "after" }))
        .unwrap();
    for i in 0..env.len() {
        assert!(env.get_json(i, "/apps/after").is_ok(), "node {i}");
    }
}
