//! Agent restarts keep dynos: `havend` killed alone (SIGKILL) or stopped for an upgrade
//! (SIGUSR2) leaves its dynos running and serving, and the next agent adopts them — same
//! processes, no restart, routes back — while the routers of the other nodes answer every
//! request. An agent that stays dead past the node timeout has its dynos replaced
//! elsewhere, and when it returns it kills the orphans it left.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use haven_testcluster::pid_alive;
use haven_tests::load::{Load, LoadOptions};
use haven_tests::{cluster_with, eventually, hctl, hctl_ok as ok, Env};
use serde_json::{json, Value};

/// A node timeout long enough that a restarted agent is never declared down meanwhile.
const PATIENT: &str = "[dynos]\nnode_timeout_ms = 15000\n";

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python-hello")
}

/// Creates `app` from the python-hello example (it logs every request on stdout) with
/// `web` dynos, and waits for them to be up.
fn deploy(env: &Env, app: &str, web: u32) {
    env.post_json(0, "/apps", &json!({ "name": app })).unwrap();
    ok(hctl(
        env,
        0,
        &["deploy", &example().to_string_lossy(), "-a", app],
    ));
    ok(hctl(
        env,
        0,
        &["ps:scale", &format!("web={web}"), "-a", app],
    ));
    ok(hctl(env, 0, &["ps:wait", "-a", app, "--timeout", "90"]));
}

fn dynos(env: &Env, app: &str) -> Vec<Value> {
    env.get_json(0, &format!("/apps/{app}/dynos"))
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

fn node_index(env: &Env, name: &str) -> usize {
    (0..env.len())
        .find(|i| env.status(*i).is_ok_and(|s| s["node_name"] == name))
        .unwrap_or_else(|| panic!("no node named {name}"))
}

/// A node other than node 0 that runs a web dyno of `app`.
fn victim(env: &Env, app: &str) -> usize {
    dynos(env, app)
        .iter()
        .filter_map(|d| d["node"]["name"].as_str())
        .map(|n| node_index(env, n))
        .find(|i| *i != 0)
        .expect("a web dyno on a node other than node 0")
}

/// `id → (restarts, state)` of `app`'s dynos on node `i`.
fn dynos_on(env: &Env, app: &str, i: usize) -> BTreeMap<String, (u64, String)> {
    let name = env.status(i).unwrap()["node_name"]
        .as_str()
        .unwrap()
        .to_string();
    dynos(env, app)
        .iter()
        .filter(|d| d["node"]["name"] == name.as_str())
        .map(|d| {
            (
                d["id"].as_str().unwrap().to_string(),
                (
                    d["restarts"].as_u64().unwrap(),
                    d["state"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

/// The host part of node `i`'s router URL (dynos listen on that address).
fn host_of(env: &Env, i: usize) -> String {
    let url = env.router(i);
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.rsplit_once(':').map_or(rest, |(h, _)| h).to_string()
}

/// GET `path` straight from dyno `id` of `app` (its node's address and `$PORT`).
fn get_dyno(env: &Env, app: &str, node: usize, id: &str, path: &str) -> bool {
    let Some(port) = dynos(env, app)
        .iter()
        .find(|d| d["id"] == id)
        .and_then(|d| d["port"].as_u64())
    else {
        return false;
    };
    reqwest::blocking::Client::new()
        .get(format!("http://{}:{port}{path}", host_of(env, node)))
        .timeout(Duration::from_secs(5))
        .send()
        .is_ok_and(|r| r.status().is_success())
}

/// HTTP requests in a loop through some routers (two threads each); paced (a few hundred
/// a second) so that the app's logs keep the probes' lines.
fn paced_load(env: &Env, routers: &[usize], host: &str) -> Load {
    let urls: Vec<String> = routers.iter().map(|r| env.router(*r).to_string()).collect();
    let opts = LoadOptions {
        pace: Some(Duration::from_millis(20)),
        timeout: Duration::from_secs(10),
        ..LoadOptions::default()
    };
    Load::start(&urls, host, opts)
}

/// Stops the load: the requests answered, and every failure.
fn finish(load: Load) -> (usize, Vec<String>) {
    let samples = load.finish();
    let ok = samples.iter().filter(|s| s.ok()).count();
    let failures = samples
        .iter()
        .filter(|s| !s.ok())
        .map(|s| s.to_string())
        .collect();
    (ok, failures)
}

/// The routers of every node but `victim`.
fn others(env: &Env, victim: usize) -> Vec<usize> {
    (0..env.len()).filter(|i| *i != victim).collect()
}

/// Checks that the dynos of `victim` are the ones recorded before its agent went away:
/// same processes, `up` with unchanged restart counts, and reachable through its router
/// and node 0's again.
fn assert_adopted(
    env: &Env,
    app: &str,
    victim: usize,
    pids: &[(String, i32)],
    api: &BTreeMap<String, (u64, String)>,
) {
    eventually(
        "the restarted node's router answers",
        Duration::from_secs(30),
        || {
            reqwest::blocking::Client::new()
                .get(format!("{}/", env.router(victim)))
                .header("Host", format!("{app}.localhost"))
                .timeout(Duration::from_secs(5))
                .send()
                .is_ok_and(|r| r.status().is_success())
                .then_some(())
        },
    );
    assert_eq!(
        env.dyno_pids(victim),
        pids,
        "the restarted agent runs the same dyno processes"
    );
    assert_eq!(
        &dynos_on(env, app, victim),
        api,
        "the adopted dynos are up with the same restart counts"
    );
    // Node 0's router reaches the adopted dynos again (their names answer).
    let names = names_of(env, app, api);
    eventually(
        "node 0's router reaches the adopted dynos",
        Duration::from_secs(30),
        || {
            let body = reqwest::blocking::Client::new()
                .get(format!("{}/", env.router(0)))
                .header("Host", format!("{app}.localhost"))
                .timeout(Duration::from_secs(5))
                .send()
                .ok()?
                .text()
                .ok()?;
            names
                .iter()
                .any(|n| body.contains(&format!(" {n} ")))
                .then_some(())
        },
    );
}

/// The names of `app`'s dynos whose ids are keys of `api`.
fn names_of(env: &Env, app: &str, api: &BTreeMap<String, (u64, String)>) -> BTreeSet<String> {
    dynos(env, app)
        .iter()
        .filter(|d| api.contains_key(d["id"].as_str().unwrap()))
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until node 0's router has dropped the dynos named `names` (30 answers in a row
/// from other dynos: were one still routed, that would happen with odds below 1e-5).
fn wait_unrouted(env: &Env, app: &str, names: &BTreeSet<String>) {
    let mut streak = 0;
    eventually(
        "node 0's router drops the dead agent's routes",
        Duration::from_secs(30),
        || {
            let body = reqwest::blocking::Client::new()
                .get(format!("{}/", env.router(0)))
                .header("Host", format!("{app}.localhost"))
                .timeout(Duration::from_secs(5))
                .send()
                .ok()?
                .text()
                .ok()?;
            if names.iter().any(|n| body.contains(&format!(" {n} "))) {
                streak = 0;
            } else {
                streak += 1;
            }
            (streak >= 30).then_some(())
        },
    );
}

/// `app`'s log lines (any node merges them all), with `extra` filters.
fn logs(env: &Env, app: &str, extra: &[&str]) -> String {
    let mut args = vec!["logs", "-a", app, "-n", "1500"];
    args.extend_from_slice(extra);
    ok(hctl(env, 0, &args))
}

#[test]
fn an_agent_killed_alone_comes_back_with_the_same_dynos_and_no_request_lost() {
    let mut env = cluster_with(3, Some(PATIENT));
    deploy(&env, "keeper", 3);
    let victim = victim(&env, "keeper");
    let pids = env.dyno_pids(victim);
    let api = dynos_on(&env, "keeper", victim);
    assert!(
        !pids.is_empty(),
        "no dyno process recorded on node {victim}"
    );
    assert_eq!(
        pids.iter()
            .map(|(id, _)| id.clone())
            .collect::<BTreeSet<_>>(),
        api.keys().cloned().collect::<BTreeSet<_>>()
    );
    let names = names_of(&env, "keeper", &api);
    let load = paced_load(&env, &others(&env, victim), "keeper.localhost");
    load.wait_more(30, "load flowing");

    let killed = Instant::now();
    env.kill_agent(victim).unwrap();
    for (id, pid) in &pids {
        assert!(pid_alive(*pid), "dyno {id} (pid {pid}) died with its agent");
    }
    // The dyno serves, and logs to its output file, with nobody reading it.
    let (probe_id, _) = &pids[0];
    assert!(
        get_dyno(&env, "keeper", victim, probe_id, "/while-the-agent-is-dead"),
        "the dyno does not answer while its agent is dead"
    );
    // The agent stays dead until the other routers have dropped its routes (its QUIC
    // connection timed out), so both the drop and the return happen under load.
    wait_unrouted(&env, "keeper", &names);
    load.wait_more(100, "requests answered while the agent is dead");
    env.restart(victim).unwrap();
    env.wait_ready(victim, Duration::from_secs(60)).unwrap();
    let back = killed.elapsed();
    assert_adopted(&env, "keeper", victim, &pids, &api);
    load.wait_more(50, "requests answered after the restart");
    let (answered, failures) = finish(load);

    // Log collection resumes where the dead agent stopped, and goes on.
    let probe_name = dynos(&env, "keeper")
        .iter()
        .find(|d| d["id"] == probe_id.as_str())
        .and_then(|d| d["name"].as_str().map(str::to_string))
        .unwrap();
    assert!(get_dyno(
        &env,
        "keeper",
        victim,
        probe_id,
        "/after-the-restart"
    ));
    eventually(
        "the adopted dyno's lines in the app's logs",
        Duration::from_secs(30),
        || {
            let l = logs(&env, "keeper", &["-s", "app", "-d", &probe_name]);
            (l.contains("/while-the-agent-is-dead") && l.contains("/after-the-restart"))
                .then_some(())
        },
    );
    eprintln!(
        "agent SIGKILLed and restarted ({:.1}s down): dyno pids kept {:?}; \
         other routers: {answered} answered, {} failed",
        back.as_secs_f64(),
        pids,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "the other nodes' routers failed requests: {failures:?}"
    );

    // The adopted dyno (not a child of the new agent) is supervised: a crash restarts it.
    let (crash_id, crash_pid) = pids[0].clone();
    let before = api[&crash_id].0;
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &crash_pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    eventually(
        "the crashed adopted dyno restarted",
        Duration::from_secs(60),
        || {
            let now = dynos_on(&env, "keeper", victim);
            let (restarts, state) = now.get(&crash_id)?;
            let pid = env
                .dyno_pids(victim)
                .into_iter()
                .find(|(id, _)| *id == crash_id)?
                .1;
            (*restarts == before + 1 && state == "up" && pid != crash_pid).then_some(())
        },
    );
}

#[test]
fn an_upgrade_stops_the_agent_but_not_its_dynos_and_drops_no_request() {
    let mut env = cluster_with(3, Some(PATIENT));
    deploy(&env, "upgrade", 3);
    let victim = victim(&env, "upgrade");
    let pids = env.dyno_pids(victim);
    let api = dynos_on(&env, "upgrade", victim);
    assert!(!pids.is_empty());
    let names = names_of(&env, "upgrade", &api);
    let load = paced_load(&env, &others(&env, victim), "upgrade.localhost");
    load.wait_more(30, "load flowing");

    env.stop_agent_for_upgrade(victim, Duration::from_secs(30))
        .unwrap();
    for (id, pid) in &pids {
        assert!(
            pid_alive(*pid),
            "dyno {id} (pid {pid}) stopped with its agent"
        );
    }
    // Replace the binary: the next agent runs another file than the dynos' init.
    let upgraded = env.dir().join("havend-upgraded");
    std::fs::copy(&env.file.havend, &upgraded).unwrap();
    env.file.havend = upgraded;
    wait_unrouted(&env, "upgrade", &names);
    load.wait_more(100, "requests answered while the agent is stopped");
    env.restart(victim).unwrap();
    env.wait_ready(victim, Duration::from_secs(60)).unwrap();
    assert_adopted(&env, "upgrade", victim, &pids, &api);
    load.wait_more(50, "requests answered after the upgrade");
    let (answered, failures) = finish(load);
    eprintln!(
        "agent upgraded (SIGUSR2, new binary, start): dyno pids kept {:?}; \
         other routers: {answered} answered, {} failed",
        pids,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "the other nodes' routers failed requests: {failures:?}"
    );
    let lines = logs(&env, "upgrade", &["-s", "heroku"]);
    assert!(
        !lines.contains("Stopping all processes with SIGTERM"),
        "a dyno was stopped during the upgrade:\n{lines}"
    );

    // An adopted dyno stops as any other: SIGTERM, and its last output is collected.
    ok(hctl(&env, 0, &["ps:scale", "web=0", "-a", "upgrade"]));
    eventually("the adopted dynos stopped", Duration::from_secs(60), || {
        pids.iter().all(|(_, p)| !pid_alive(*p)).then_some(())
    });
    eventually(
        "the adopted dynos' SIGTERM and last words in the logs",
        Duration::from_secs(30),
        || {
            let l = logs(&env, "upgrade", &[]);
            names
                .iter()
                .all(|n| {
                    l.contains(&format!("heroku[{n}]: Stopping all processes with SIGTERM"))
                        && l.contains(&format!("app[{n}]: stopped"))
                })
                .then_some(())
        },
    );
}

#[test]
fn an_agent_back_after_its_node_was_declared_down_kills_the_dynos_it_left() {
    let mut env = cluster_with(3, None);
    deploy(&env, "orphans", 3);
    let victim = victim(&env, "orphans");
    let pids = env.dyno_pids(victim);
    let old: BTreeSet<String> = pids.iter().map(|(id, _)| id.clone()).collect();
    assert!(!pids.is_empty());
    let victim_name = env.status(victim).unwrap()["node_name"]
        .as_str()
        .unwrap()
        .to_string();

    env.kill_agent(victim).unwrap();
    eventually(
        "three web dynos up on the other nodes",
        Duration::from_secs(90),
        || {
            let d = dynos(&env, "orphans");
            let ups = d
                .iter()
                .filter(|d| d["state"] == "up" && d["node"]["name"] != victim_name.as_str())
                .count();
            (ups == 3).then_some(())
        },
    );
    // The orphans still run while their agent is dead.
    assert!(pids.iter().all(|(_, p)| pid_alive(*p)));

    env.restart(victim).unwrap();
    env.wait_ready(victim, Duration::from_secs(60)).unwrap();
    eventually(
        "the returned agent killed its orphan dynos",
        Duration::from_secs(60),
        || pids.iter().all(|(_, p)| !pid_alive(*p)).then_some(()),
    );
    let left: BTreeSet<String> = env
        .dyno_pids(victim)
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| old.contains(id))
        .collect();
    assert!(left.is_empty(), "orphans still recorded: {left:?}");
    let current: BTreeSet<String> = dynos(&env, "orphans")
        .iter()
        .filter(|d| d["state"] == "up")
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(current.len(), 3);
    assert!(current.is_disjoint(&old), "the state still runs an orphan");
    // Every router answers, from the current dynos only (the orphans are gone).
    for i in 0..env.len() {
        for _ in 0..20 {
            let r = reqwest::blocking::Client::new()
                .get(format!("{}/", env.router(i)))
                .header("Host", "orphans.localhost")
                .timeout(Duration::from_secs(5))
                .send()
                .unwrap();
            assert!(r.status().is_success(), "router {i}: {}", r.status());
        }
    }
    eprintln!(
        "agent dead past the node timeout: {} orphan dynos (pids {:?}) killed on its return",
        pids.len(),
        pids.iter().map(|(_, p)| p).collect::<Vec<_>>()
    );
}

/// An adopted dyno ends with its own exit status: its init leaves the status in a file
/// (opened before PID 1 changes the root) that the next agent reads. It used to be lost,
/// and every adopted dyno's end read as a SIGKILL (status 137).
#[test]
fn an_adopted_dyno_exits_with_its_own_status() {
    let mut env = cluster_with(1, Some(PATIENT));
    let dir = tempfile::tempdir().unwrap();
    haven_tests::bench::apps::copy_files(&example(), dir.path()).unwrap();
    std::fs::write(
        dir.path().join("Procfile"),
        "web: python3 app.py\nworker: echo started; sleep 12; exit 3\n",
    )
    .unwrap();
    env.post_json(0, "/apps", &json!({ "name": "leaver" }))
        .unwrap();
    ok(hctl(
        &env,
        0,
        &["deploy", &dir.path().to_string_lossy(), "-a", "leaver"],
    ));
    ok(hctl(&env, 0, &["ps:scale", "worker=1", "-a", "leaver"]));
    eventually("the worker started", Duration::from_secs(60), || {
        logs(&env, "leaver", &[])
            .contains("app[worker.1]: started")
            .then_some(())
    });
    env.kill_agent(0).unwrap();
    env.restart(0).unwrap();
    env.wait_ready(0, Duration::from_secs(60)).unwrap();
    let before = logs(&env, "leaver", &[]);
    assert!(
        !before.contains("Process exited"),
        "the worker exited before its agent was restarted:\n{before}"
    );
    let lines = eventually("the adopted worker exited", Duration::from_secs(60), || {
        let l = logs(&env, "leaver", &["-s", "heroku"]);
        l.contains("heroku[worker.1]: Process exited").then_some(l)
    });
    let first = lines
        .lines()
        .find(|l| l.contains("heroku[worker.1]: Process exited"))
        .unwrap();
    assert!(
        first.ends_with("Process exited with status 3"),
        "the adopted worker's end: {first}\n{lines}"
    );
}
