//! The router through faults, over real clusters under a steady client load: a restarted
//! router answers no error once it accepts connections (it holds requests until it knows
//! the routes), and GETs through healthy routers survive the SIGKILL or the SIGSTOP of a
//! node that runs one of the app's web dynos (sent again to another dyno). Every test
//! prints its counts: requests, answers by status, connection errors.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use haven_testcluster::netns;
use haven_tests::load::{counts, Load, LoadOptions, Sample};
use haven_tests::{cluster, eventually, Env};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::router::{deploy, wait_up};

/// GETs from four threads spread over `routers`, each on a fresh connection (so that a
/// request is also a connect to the router), until finished.
fn hammer(routers: Vec<String>, host: &str) -> Load {
    let opts = LoadOptions {
        threads_per_router: (4 / routers.len().max(1)).max(1),
        fresh_connections: true,
        ..LoadOptions::default()
    };
    Load::start(&routers, host, opts)
}

/// The cluster indices of the nodes running the app's web dynos.
fn dyno_nodes(env: &Env, app: &str) -> BTreeSet<usize> {
    let names: BTreeMap<String, usize> = (0..env.len())
        .filter_map(|i| {
            let s = env.status(i).ok()?;
            Some((s["node_name"].as_str()?.to_string(), i))
        })
        .collect();
    let d = env.get_json(0, &format!("/apps/{app}/dynos")).unwrap();
    d.as_array()
        .unwrap()
        .iter()
        .filter(|d| d["type"] == "web")
        .filter_map(|d| names.get(d["node"]["name"].as_str()?).copied())
        .collect()
}

/// Waits until every router in `routers` answers the app with 200.
fn wait_served(env: &Env, routers: &[usize], host: &str) {
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for &i in routers {
        eventually(
            &format!("router {i} serves {host}"),
            Duration::from_secs(30),
            || {
                let r = c.get(env.router(i)).header("Host", host).send().ok()?;
                r.status().is_success().then_some(())
            },
        );
    }
}

/// Node `i`'s name.
fn node_name(env: &Env, i: usize) -> String {
    env.status(i).unwrap()["node_name"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `n` web dynos of `app` up on nodes other than the one named `victim` (whose old dyno
/// may still be listed); asks node `via`.
fn wait_up_without(env: &Env, via: usize, app: &str, victim: &str, n: usize) {
    eventually(
        &format!("{n} web dynos of {app} up off {victim}"),
        Duration::from_secs(90),
        || {
            let d = env.get_json(via, &format!("/apps/{app}/dynos")).ok()?;
            let ups = d
                .as_array()?
                .iter()
                .filter(|d| d["type"] == "web" && d["state"] == "up")
                .filter(|d| d["node"]["name"] != victim)
                .count();
            (ups == n).then_some(())
        },
    );
}

/// Sends `sig` to every process of node `i`'s network namespace, its dynos included (the
/// agent's own process group holds only the agent): the whole host dies or freezes.
/// `None` outside netns mode.
fn signal_host(env: &Env, i: usize, sig: Signal) -> Option<usize> {
    let k = env.file.bridge?;
    Some(signal_ns(&netns::ns_name(k, i), sig))
}

fn signal_ns(ns: &str, sig: Signal) -> usize {
    let out = std::process::Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .unwrap();
    let pids: Vec<i32> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    for p in &pids {
        let _ = kill(Pid::from_raw(*p), sig);
    }
    pids.len()
}

/// Wakes a frozen host's processes when dropped (a failed test must not leave them
/// stopped behind the cluster's own cleanup).
struct Thaw(Option<String>);

impl Drop for Thaw {
    fn drop(&mut self) {
        if let Some(ns) = &self.0 {
            signal_ns(ns, Signal::SIGCONT);
        }
    }
}

#[test]
fn a_restarted_router_answers_no_error_once_it_accepts_connections() {
    let mut env = cluster(3);
    let (app, host) = ("held", "held.localhost");
    deploy(&env, app, 2);
    // Two dynos on three nodes leave a node without one: restart that one, so that every
    // route it needs comes from the other nodes.
    let used = dyno_nodes(&env, app);
    let victim = (0..3).find(|i| !used.contains(i)).unwrap();
    wait_served(&env, &[victim], host);
    let t0 = Instant::now();
    let load = hammer(vec![env.router(victim).to_string()], host);
    eventually("load flowing", Duration::from_secs(10), || {
        (load.ok_since(t0) > 20).then_some(())
    });
    let restarted = Instant::now();
    env.restart(victim).unwrap();
    env.wait_ready(victim, Duration::from_secs(60)).unwrap();
    eventually(
        "200 answers from the restarted router",
        Duration::from_secs(60),
        || (load.ok_since(restarted) > 200).then_some(()),
    );
    let samples = load.finish();
    let after: Vec<&Sample> = samples.iter().filter(|s| s.sent >= restarted).collect();
    // The first request of the new process that got any HTTP answer: from then on its
    // router accepts connections.
    let accepting = after
        .iter()
        .filter(|s| s.answered())
        .map(|s| s.sent)
        .min()
        .unwrap();
    let (down, up): (Vec<&Sample>, Vec<&Sample>) = after
        .iter()
        .partition(|s| s.sent < accepting && !s.answered());
    let slowest = up
        .iter()
        .map(|s| s.done.duration_since(s.sent))
        .max()
        .unwrap_or_default();
    eprintln!(
        "router restart: {} requests sent after the restart; before the router accepted \
         ({:.2}s): {}; after: {} (slowest {:.2}s)",
        after.len(),
        accepting.duration_since(restarted).as_secs_f64(),
        counts(down.iter().copied()),
        counts(up.iter().copied()),
        slowest.as_secs_f64(),
    );
    let errors: Vec<&&Sample> = up.iter().filter(|s| !s.ok()).collect();
    assert!(
        errors.is_empty(),
        "the restarted router answered errors: {errors:?}"
    );
}

#[test]
fn killing_a_node_with_a_web_dyno_loses_no_get_through_the_other_routers() {
    let mut env = cluster(3);
    let (app, host) = ("killed", "killed.localhost");
    deploy(&env, app, 3);
    let victim = *dyno_nodes(&env, app).iter().find(|i| **i != 0).unwrap();
    let others: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    wait_served(&env, &others, host);
    let routers = others.iter().map(|i| env.router(*i).to_string()).collect();
    let t0 = Instant::now();
    let load = hammer(routers, host);
    eventually("load flowing", Duration::from_secs(10), || {
        (load.ok_since(t0) > 20).then_some(())
    });
    let victim_name = node_name(&env, victim);
    let killed = Instant::now();
    // The host dies: the agent and its dynos.
    let Some(n) = signal_host(&env, victim, Signal::SIGKILL) else {
        eprintln!("skipped: killing a whole host needs netns mode");
        return;
    };
    env.kill(victim).unwrap();
    eprintln!("killed {n} processes of node {victim}");
    wait_up_without(&env, others[0], app, &victim_name, 3);
    let whole = Instant::now();
    eventually("load after the move", Duration::from_secs(30), || {
        (load.ok_since(whole) > 100).then_some(())
    });
    let samples = load.finish();
    let after: Vec<&Sample> = samples.iter().filter(|s| s.sent >= killed).collect();
    let errors: Vec<&&Sample> = after.iter().filter(|s| !s.ok()).collect();
    eprintln!(
        "node {victim} killed under load: {} requests after the kill: {}; formation whole \
         again after {:.2}s; errors at {:?} s after the kill",
        after.len(),
        counts(after.iter().copied()),
        whole.duration_since(killed).as_secs_f64(),
        errors
            .iter()
            .map(|s| format!("{:.2}", s.sent.duration_since(killed).as_secs_f64()))
            .collect::<Vec<_>>(),
    );
    assert!(errors.is_empty(), "GETs failed: {errors:?}");
}

#[test]
fn a_frozen_node_stops_being_chosen_and_its_gets_go_elsewhere() {
    let mut env = cluster(3);
    let (app, host) = ("frozen", "frozen.localhost");
    deploy(&env, app, 3);
    let victim = *dyno_nodes(&env, app).iter().find(|i| **i != 0).unwrap();
    let others: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    wait_served(&env, &others, host);
    let routers = others.iter().map(|i| env.router(*i).to_string()).collect();
    let t0 = Instant::now();
    let load = hammer(routers, host);
    eventually("load flowing", Duration::from_secs(10), || {
        (load.ok_since(t0) > 20).then_some(())
    });
    let victim_name = node_name(&env, victim);
    let stopped = Instant::now();
    // The host freezes: the agent and its dynos (whose TCP still accepts connections).
    let Some(n) = signal_host(&env, victim, Signal::SIGSTOP) else {
        eprintln!("skipped: freezing a whole host needs netns mode");
        return;
    };
    let _thaw = Thaw(env.file.bridge.map(|k| netns::ns_name(k, victim)));
    eprintln!("froze {n} processes of node {victim}");
    // The leader declares the node down and its dyno starts elsewhere.
    wait_up_without(&env, others[0], app, &victim_name, 3);
    let moved = Instant::now();
    eventually("load after the move", Duration::from_secs(30), || {
        (load.ok_since(moved) > 100).then_some(())
    });
    // It wakes up: its dyno is stopped (it was replaced), again without a lost request.
    let resumed = Instant::now();
    signal_host(&env, victim, Signal::SIGCONT);
    env.wait_ready(victim, Duration::from_secs(60)).unwrap();
    eventually("load after the wake-up", Duration::from_secs(30), || {
        (load.ok_since(resumed) > 100).then_some(())
    });
    wait_up(&env, app, 3);
    let samples = load.finish();
    let after: Vec<&Sample> = samples.iter().filter(|s| s.sent >= stopped).collect();
    let errors: Vec<&&Sample> = after.iter().filter(|s| !s.ok()).collect();
    let slowest = after
        .iter()
        .map(|s| {
            (
                s.done.duration_since(s.sent),
                s.sent.duration_since(stopped),
            )
        })
        .max()
        .unwrap_or_default();
    eprintln!(
        "node {victim} frozen under load: {} requests after SIGSTOP: {}; dyno moved after \
         {:.2}s; slowest answer {:.2}s (sent {:.2}s after SIGSTOP); errors at {:?} s",
        after.len(),
        counts(after.iter().copied()),
        moved.duration_since(stopped).as_secs_f64(),
        slowest.0.as_secs_f64(),
        slowest.1.as_secs_f64(),
        errors
            .iter()
            .map(|s| format!("{:.2}", s.sent.duration_since(stopped).as_secs_f64()))
            .collect::<Vec<_>>(),
    );
    assert!(errors.is_empty(), "GETs failed: {errors:?}");
    // Within the detection bound (1.5 s of silence, then a check every 100 ms) plus a
    // request's own time, a GET caught on the frozen dyno is answered by another one.
    assert!(
        slowest.0 < Duration::from_secs(5),
        "a GET waited {:?} on the frozen node",
        slowest.0
    );
}
