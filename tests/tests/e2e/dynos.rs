//! Dynos over real clusters: scheduling across nodes, the lifecycle (boot, crash
//! restarts, restarts and stops), rolling releases, the release phase, one-off dynos
//! attached to `hctl run`, draining, and failover when a node is killed.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use haven_tests::{binary, cluster, cluster_with, eventually, hctl, hctl_ok as ok, Env};
use serde_json::{json, Value};

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("examples")
        .join(name)
}

fn hctl_in(env: &Env, node: usize, args: &[&str], stdin: Option<&str>) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary("hctl"))
        .args(args)
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
        .env("HAVEN_API", env.api(node))
        .env("HAVEN_TOKEN", env.token())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        let mut w = child.stdin.take().unwrap();
        w.write_all(text.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Creates `app` and deploys `src` (a directory) to it through node 0.
fn deploy(env: &Env, app: &str, src: &Path) {
    env.post_json(0, "/apps", &json!({ "name": app })).unwrap();
    let dir = src.to_string_lossy().into_owned();
    ok(hctl(env, 0, &["deploy", &dir, "-a", app]));
}

/// An app dir made of the example app plus `procfile`.
fn app_dir(procfile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["app.py", "requirements.txt"] {
        std::fs::copy(example("python-hello").join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(dir.path().join("Procfile"), procfile).unwrap();
    dir
}

fn dynos(env: &Env, node: usize, app: &str) -> Vec<Value> {
    env.get_json(node, &format!("/apps/{app}/dynos"))
        .unwrap()
        .as_array()
        .cloned()
        .unwrap()
}

/// Up dynos of a type, as (name, node name, release version, port).
fn up(env: &Env, app: &str, ptype: &str) -> Vec<Value> {
    dynos(env, 0, app)
        .into_iter()
        .filter(|d| d["type"] == ptype && d["state"] == "up")
        .collect()
}

/// The host of node `i`'s API (dynos listen on the same address).
fn host_of(env: &Env, node_name: &str) -> String {
    let nodes = env.get_json(0, "/cluster/nodes").unwrap();
    let n = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == node_name)
        .unwrap()
        .clone();
    n["api_url"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .rsplit_once(':')
        .unwrap()
        .0
        .to_string()
}

/// GET / of a dyno straight on its node's address and port.
fn get_dyno(env: &Env, app: &str, name: &str) -> Option<String> {
    let d = env.get_json(0, &format!("/apps/{app}/dynos/{name}")).ok()?;
    let host = host_of(env, d["node"]["name"].as_str()?);
    let port = d["port"].as_u64()?;
    reqwest::blocking::Client::new()
        .get(format!("http://{host}:{port}/"))
        .timeout(Duration::from_secs(2))
        .send()
        .ok()?
        .text()
        .ok()
}

#[test]
fn scaled_web_dynos_spread_over_the_nodes_and_answer() {
    let env = cluster(3);
    deploy(&env, "spread", &example("python-hello"));
    ok(hctl(&env, 1, &["ps:scale", "web=3", "-a", "spread"]));
    let list = eventually("three web dynos up", Duration::from_secs(60), || {
        let u = up(&env, "spread", "web");
        (u.len() == 3).then_some(u)
    });
    let nodes: BTreeSet<String> = list
        .iter()
        .map(|d| d["node"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(nodes.len(), 3, "one web dyno per node: {list:?}");
    for name in ["web.1", "web.2", "web.3"] {
        let body = eventually(&format!("{name} answers"), Duration::from_secs(20), || {
            get_dyno(&env, "spread", name)
        });
        assert!(body.starts_with(&format!("Hello from {name}")), "{body}");
    }
    // hctl ps shows every dyno with its node and release.
    let ps = ok(hctl(&env, 2, &["ps", "-a", "spread"]));
    assert!(
        ps.contains("=== web (standard-1x): python3 app.py (3)"),
        "{ps}"
    );
    for name in ["web.1", "web.2", "web.3"] {
        assert!(ps.contains(name), "{ps}");
    }
    // Scaling down stops the highest numbers.
    ok(hctl(&env, 0, &["ps:scale", "web=1", "-a", "spread"]));
    eventually("only web.1 left", Duration::from_secs(60), || {
        let all = dynos(&env, 0, "spread");
        (all.len() == 1 && all[0]["name"] == "web.1").then_some(())
    });
    let nodes = env.get_json(0, "/cluster/nodes").unwrap();
    let placed: u64 = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["dynos"].as_u64().unwrap())
        .sum();
    assert_eq!(placed, 1);
}

#[test]
fn a_config_change_rolls_web_dynos_with_one_always_up() {
    let env = cluster(2);
    deploy(&env, "rolling", &example("python-hello"));
    eventually("web.1 up", Duration::from_secs(60), || {
        (up(&env, "rolling", "web").len() == 1).then_some(())
    });
    ok(hctl(
        &env,
        1,
        &["config:set", "GREETING=Howdy", "-a", "rolling"],
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = dynos(&env, 0, "rolling");
        let ups: Vec<&Value> = all.iter().filter(|d| d["state"] == "up").collect();
        assert!(
            !ups.is_empty(),
            "no web dyno was up during the roll: {all:?}"
        );
        if all.len() == 1 && ups.len() == 1 && ups[0]["release"]["version"] == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the roll did not finish: {all:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let body = eventually("web.1 answers", Duration::from_secs(20), || {
        get_dyno(&env, "rolling", "web.1")
    });
    assert!(body.starts_with("Howdy from web.1"), "{body}");
    ok(hctl(
        &env,
        0,
        &["ps:wait", "-a", "rolling", "--timeout", "30"],
    ));
}

#[test]
fn crashing_dynos_restart_with_growing_cool_offs() {
    let env = cluster(1);
    let dir = app_dir("web: python3 app.py\nworker: echo boom; exit 3\n");
    deploy(&env, "crashy", dir.path());
    ok(hctl(&env, 0, &["ps:scale", "worker=1", "-a", "crashy"]));
    let d = eventually(
        "the worker crashed and restarted",
        Duration::from_secs(60),
        || {
            let d = dynos(&env, 0, "crashy")
                .into_iter()
                .find(|d| d["name"] == "worker.1")?;
            (d["restarts"].as_u64()? >= 3).then_some(d)
        },
    );
    assert!(
        ["crashed", "up", "starting"].contains(&d["state"].as_str().unwrap()),
        "{d}"
    );
    // The web dyno is unaffected.
    assert_eq!(up(&env, "crashy", "web").len(), 1);
}

#[test]
fn a_web_dyno_that_never_binds_its_port_times_out_and_crashes() {
    let env = cluster_with(1, Some("[dynos]\nboot_timeout_secs = 2\n"));
    let dir = app_dir("web: sleep 1000\n");
    deploy(&env, "nobind", dir.path());
    eventually("R10 crash", Duration::from_secs(30), || {
        let d = dynos(&env, 0, "nobind").into_iter().next()?;
        (d["restarts"].as_u64()? >= 1).then_some(())
    });
}

#[test]
fn hctl_run_attaches_stdin_stdout_and_the_exit_code() {
    let env = cluster(2);
    deploy(&env, "oneoff", &example("python-hello"));
    // Through a node that did not build the app.
    let out = hctl(
        &env,
        1,
        &["run", "-a", "oneoff", "echo hello from $DYNO; exit 7"],
    );
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("hello from run."), "{stdout}");
    let out = hctl_in(
        &env,
        0,
        &["run", "-a", "oneoff", "tr a-z A-Z"],
        Some("piped in\n"),
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "PIPED IN\n");
    let out = hctl(
        &env,
        0,
        &[
            "run",
            "-a",
            "oneoff",
            "cat requirements.txt >/dev/null && test -f app.py",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "the slug is the working directory"
    );
    // Finished one-offs go away.
    eventually("one-offs cleared", Duration::from_secs(20), || {
        dynos(&env, 0, "oneoff")
            .iter()
            .all(|d| d["type"] != "run")
            .then_some(())
    });
}

#[test]
fn restart_and_stop_replace_dynos() {
    let env = cluster(1);
    deploy(&env, "restarts", &example("python-hello"));
    let first = eventually("web.1 up", Duration::from_secs(60), || {
        up(&env, "restarts", "web").into_iter().next()
    });
    ok(hctl(&env, 0, &["ps:restart", "web", "-a", "restarts"]));
    eventually("web.1 restarted", Duration::from_secs(60), || {
        let d = up(&env, "restarts", "web").into_iter().next()?;
        (d["state_changed_at"] != first["state_changed_at"] || d["port"] != first["port"])
            .then_some(())
    });
    ok(hctl(&env, 0, &["ps:stop", "web.1", "-a", "restarts"]));
    eventually("a new web.1", Duration::from_secs(60), || {
        let d = up(&env, "restarts", "web").into_iter().next()?;
        (d["id"] != first["id"]).then_some(())
    });
    let missing = hctl(&env, 0, &["ps:restart", "web.9", "-a", "restarts"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
}

#[test]
fn a_failing_release_phase_keeps_the_old_release_running() {
    let env = cluster(1);
    deploy(&env, "phased", &example("python-hello"));
    eventually("web.1 up on v2", Duration::from_secs(60), || {
        let u = up(&env, "phased", "web");
        (u.len() == 1 && u[0]["release"]["version"] == 2).then_some(())
    });
    let bad = app_dir("web: python3 app.py\nrelease: echo migrating; exit 1\n");
    ok(hctl(
        &env,
        0,
        &["deploy", &bad.path().to_string_lossy(), "-a", "phased"],
    ));
    let v3 = eventually("v3 failed", Duration::from_secs(60), || {
        let r = env.get_json(0, "/apps/phased/releases/3").ok()?;
        (r["status"] != "pending").then_some(r)
    });
    assert_eq!(v3["status"], "failed");
    let u = up(&env, "phased", "web");
    assert_eq!(
        u[0]["release"]["version"], 2,
        "the old release keeps running"
    );

    let good = app_dir("web: python3 app.py\nrelease: echo migrated\n");
    ok(hctl(
        &env,
        0,
        &["deploy", &good.path().to_string_lossy(), "-a", "phased"],
    ));
    eventually("v4 succeeded and runs", Duration::from_secs(60), || {
        let r = env.get_json(0, "/apps/phased/releases/4").ok()?;
        let u = up(&env, "phased", "web");
        (r["status"] == "succeeded" && u.len() == 1 && u[0]["release"]["version"] == 4)
            .then_some(())
    });
}

#[test]
fn dynos_that_fit_nowhere_are_reported_with_a_reason() {
    let env = cluster_with(2, Some("[dynos]\nmemory_mb = 768\n"));
    deploy(&env, "toobig", &example("python-hello"));
    ok(hctl(
        &env,
        0,
        &["ps:scale", "web=2:standard-2x", "-a", "toobig"],
    ));
    let ps = eventually("unplaced reason shown", Duration::from_secs(30), || {
        let out = ok(hctl(&env, 1, &["ps", "-a", "toobig"]));
        out.contains("Not placed").then_some(out)
    });
    assert!(ps.contains("web.1") && ps.contains("1024"), "{ps}");
}

#[test]
fn draining_a_node_moves_its_dynos_away() {
    let env = cluster(3);
    deploy(&env, "drained", &example("python-hello"));
    ok(hctl(&env, 0, &["ps:scale", "web=3", "-a", "drained"]));
    let list = eventually("three up", Duration::from_secs(60), || {
        let u = up(&env, "drained", "web");
        (u.len() == 3).then_some(u)
    });
    let victim = list[0]["node"]["name"].as_str().unwrap().to_string();
    let out = ok(hctl(&env, 1, &["nodes:drain", &victim]));
    assert!(out.contains("Draining"), "{out}");
    eventually(
        "nothing left on the drained node",
        Duration::from_secs(60),
        || {
            let all = dynos(&env, 0, "drained");
            let ups = all.iter().filter(|d| d["state"] == "up").count();
            (all.len() == 3 && ups == 3 && all.iter().all(|d| d["node"]["name"] != victim.as_str()))
                .then_some(())
        },
    );
    let nodes = ok(hctl(&env, 0, &["nodes"]));
    assert!(nodes.contains("draining"), "{nodes}");
    ok(hctl(&env, 0, &["nodes:undrain", &victim]));
}

#[test]
fn killing_a_node_brings_its_dynos_up_elsewhere_and_never_more_than_asked() {
    let mut env = cluster(3);
    deploy(&env, "failover", &example("python-hello"));
    ok(hctl(&env, 0, &["ps:scale", "web=3", "-a", "failover"]));
    let list = eventually("three up", Duration::from_secs(60), || {
        let u = up(&env, "failover", "web");
        (u.len() == 3).then_some(u)
    });
    // Kill a node that is not node 0 (the one the test reads through).
    let victim_name = list
        .iter()
        .map(|d| d["node"]["name"].as_str().unwrap().to_string())
        .find(|n| host_of(&env, n) != host_of(&env, &node_name(&env, 0)))
        .unwrap();
    let victim = (0..3).find(|i| node_name(&env, *i) == victim_name).unwrap();
    let killed_at = Instant::now();
    env.kill(victim).unwrap();
    eventually(
        "three up again, none on the dead node",
        Duration::from_secs(60),
        || {
            let u: Vec<Value> = dynos(&env, 0, "failover")
                .into_iter()
                .filter(|d| d["state"] == "up" && d["node"]["name"] != victim_name.as_str())
                .collect();
            (u.len() == 3).then_some(())
        },
    );
    let took = killed_at.elapsed();
    eprintln!(
        "failover: dynos up elsewhere {:.1}s after the kill",
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");

    // The node comes back: its old dynos are stopped, never run beside the new ones.
    env.restart(victim).unwrap();
    env.wait_ready(victim, Duration::from_secs(30)).unwrap();
    eventually(
        "the formation is exactly three",
        Duration::from_secs(60),
        || {
            let all = dynos(&env, 0, "failover");
            let nodes = env.get_json(0, "/cluster/nodes").ok()?;
            let back_up = nodes
                .as_array()?
                .iter()
                .any(|n| n["name"] == victim_name.as_str() && n["status"] == "up");
            (back_up && all.len() == 3 && all.iter().all(|d| d["state"] == "up")).then_some(())
        },
    );
}

fn node_name(env: &Env, i: usize) -> String {
    env.status(i).unwrap()["node_name"]
        .as_str()
        .unwrap()
        .to_string()
}
