//! Dyno network isolation over real clusters (netns mode, as root): a one-off dyno has
//! an address of its own and reaches the "internet" (a listener the test opens on the
//! cluster bridge's host address, outside every node) and the routers, but not another
//! app's web dynos by their node's address and port, not the agents' APIs, not a
//! `127.0.0.1` service of its node; routers and the host still reach web dynos on every
//! node. An add-on is reachable from the dynos of the apps it is attached to, and from
//! another app's only while attached there.

use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use haven_tests::{cluster, deploy_procfile_only, eventually, hctl, hctl_ok as ok, Env};
use serde_json::{json, Value};

use crate::router::deploy;

/// `host:port` of a URL such as `http://10.77.0.10:7400`.
fn host_port(url: &str) -> (String, u16) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (h, p) = rest.trim_end_matches('/').rsplit_once(':').unwrap();
    (h.to_string(), p.parse().unwrap())
}

/// A TCP listener on `host` (an address the test owns) that greets every client, until
/// dropped.
struct Greeter {
    port: u16,
    host: String,
    stop: Arc<AtomicBool>,
}

impl Greeter {
    fn start(host: &str) -> Greeter {
        let l = TcpListener::bind((host, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(mut c) = c {
                    let _ = c.write_all(b"hello from the internet\n");
                }
            }
        });
        Greeter {
            port,
            host: host.to_string(),
            stop,
        }
    }
}

impl Drop for Greeter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect((self.host.as_str(), self.port));
    }
}

/// A listener on `127.0.0.1:port` inside node namespace `ns`, killed when dropped.
struct LoopbackService(Child);

impl LoopbackService {
    fn start(ns: &str, port: u16) -> LoopbackService {
        let script = format!(
            "import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('127.0.0.1',{port}))\ns.listen()\nwhile True:\n  c,_=s.accept(); c.close()\n"
        );
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let svc = LoopbackService(child);
        eventually(
            &format!("127.0.0.1:{port} listens in {ns}"),
            Duration::from_secs(20),
            || {
                let probe = format!("exec 3<>/dev/tcp/127.0.0.1/{port}");
                let ok = Command::new("ip")
                    .args(["netns", "exec", ns, "bash", "-c", &probe])
                    .stderr(Stdio::null())
                    .status()
                    .ok()?
                    .success();
                ok.then_some(())
            },
        );
        svc
    }
}

impl Drop for LoopbackService {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `hctl run -a APP` with a script that tries a TCP connection to each
/// `(name, host, port)` and prints `name=open` or `name=closed`; also `addr=` (the
/// dyno's addresses). Returns the output lines.
fn probe(env: &Env, node: usize, app: &str, targets: &[(String, String, u16)]) -> String {
    let mut script = String::from("echo \"addr=$(hostname -I)\"; ");
    for (name, host, port) in targets {
        script.push_str(&format!(
            "if timeout 3 bash -c 'exec 3<>/dev/tcp/{host}/{port}' 2>/dev/null; then echo {name}=open; else echo {name}=closed; fi; "
        ));
    }
    let out = hctl(env, node, &["run", "-a", app, &script]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn has(out: &str, line: &str) -> bool {
    out.lines().any(|l| l.trim() == line)
}

/// Every web dyno of `app` as (name, node host, port).
fn web_dynos(env: &Env, app: &str) -> Vec<(String, String, u16)> {
    let nodes = env.get_json(0, "/cluster/nodes").unwrap();
    let host_of = |name: &str| {
        let n = nodes
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .unwrap();
        host_port(n["api_url"].as_str().unwrap()).0
    };
    env.get_json(0, &format!("/apps/{app}/dynos"))
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["type"] == "web")
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_string(),
                host_of(d["node"]["name"].as_str().unwrap()),
                d["port"].as_u64().unwrap() as u16,
            )
        })
        .collect()
}

#[test]
fn a_dyno_reaches_the_internet_and_the_routers_but_nothing_else_of_the_cluster() {
    let env = cluster(2);
    let Some(internet) = env.bridge_host() else {
        println!("skipped: dyno network isolation needs netns clusters (root)");
        return;
    };
    // Another app's web dynos, one on each node.
    deploy(&env, "neighbour", 2);
    let webs = web_dynos(&env, "neighbour");
    assert_eq!(webs.len(), 2);
    let greeter = Greeter::start(&internet);
    let loopback_port = 47_999;
    let _services: Vec<LoopbackService> = (0..2)
        .map(|i| LoopbackService::start(env.netns(i).unwrap(), loopback_port))
        .collect();
    env.post_json(0, "/apps", &json!({ "name": "prober" }))
        .unwrap();
    deploy_procfile_only(&env, "prober");

    let mut targets = vec![
        ("internet".to_string(), internet.clone(), greeter.port),
        (
            "loopback".to_string(),
            "127.0.0.1".to_string(),
            loopback_port,
        ),
    ];
    for (name, host, port) in &webs {
        targets.push((format!("neighbour-{name}"), host.clone(), *port));
    }
    for i in 0..2 {
        let (h, p) = host_port(env.api(i));
        targets.push((format!("api-{i}"), h.clone(), p));
        let (rh, rp) = host_port(env.router(i));
        targets.push((format!("router-{i}"), rh, rp));
        // The agent's API on the node's own side of the dyno bridge.
        targets.push((format!("gateway-api-{i}"), "10.213.0.1".to_string(), p));
    }
    // One-offs land on either node: run a few so that both the same-node and the
    // cross-node paths are tried.
    for node in 0..2 {
        let out = probe(&env, node, "prober", &targets);
        let addr = out
            .lines()
            .find_map(|l| l.strip_prefix("addr="))
            .unwrap_or_default()
            .trim()
            .to_string();
        assert!(addr.starts_with("10.213."), "the dyno's own address: {out}");
        assert!(has(&out, "internet=open"), "{out}");
        assert!(
            has(&out, "router-0=open") && has(&out, "router-1=open"),
            "{out}"
        );
        assert!(has(&out, "loopback=closed"), "{out}");
        for (name, _, _) in &webs {
            assert!(has(&out, &format!("neighbour-{name}=closed")), "{out}");
        }
        for i in 0..2 {
            assert!(has(&out, &format!("api-{i}=closed")), "{out}");
            assert!(has(&out, &format!("gateway-api-{i}=closed")), "{out}");
        }
    }

    // Routers reach the web dynos on both nodes; the host reaches each at its node's
    // address and port.
    for node in 0..2 {
        let seen = eventually(
            &format!("router {node} reaches both dynos"),
            Duration::from_secs(20),
            || {
                let mut seen = std::collections::BTreeSet::new();
                for _ in 0..30 {
                    let body = reqwest::blocking::Client::new()
                        .get(format!("{}/", env.router(node)))
                        .header("Host", "neighbour.localhost")
                        .timeout(Duration::from_secs(5))
                        .send()
                        .ok()?
                        .text()
                        .ok()?;
                    seen.insert(body.trim().to_string());
                }
                (seen.len() == 2).then_some(seen)
            },
        );
        assert!(
            seen.iter().all(|b| b.starts_with("Hello from web.")),
            "{seen:?}"
        );
    }
    for (name, host, port) in &webs {
        let body = reqwest::blocking::Client::new()
            .get(format!("http://{host}:{port}/"))
            .timeout(Duration::from_secs(5))
            .send()
            .unwrap()
            .text()
            .unwrap();
        assert!(body.starts_with(&format!("Hello from {name}")), "{body}");
    }
}

/// (host, port) of the first member of add-on `addon`.
fn member(env: &Env, addon: &str) -> (String, u16) {
    let a: Value = env.get_json(0, &format!("/addons/{addon}")).unwrap();
    let m = &a["members"][0];
    (
        m["host"].as_str().unwrap().to_string(),
        m["port"].as_u64().unwrap() as u16,
    )
}

#[test]
fn an_addon_is_reachable_only_from_the_dynos_of_apps_it_is_attached_to() {
    let env = cluster(2);
    if env.bridge_host().is_none() {
        println!("skipped: dyno network isolation needs netns clusters (root)");
        return;
    }
    for app in ["owner", "stranger"] {
        env.post_json(0, "/apps", &json!({ "name": app })).unwrap();
        deploy_procfile_only(&env, app);
    }
    ok(hctl(
        &env,
        0,
        &[
            "addons:create",
            "heroku-redis:mini",
            "-a",
            "owner",
            "--wait",
        ],
    ));
    let addons = env.get_json(0, "/apps/owner/addons").unwrap();
    let name = addons[0]["name"].as_str().unwrap().to_string();
    let (host, port) = member(&env, &name);
    let ping = r#"redis-cli --no-auth-warning -u "$REDIS_URL" PING"#;
    let target = [("redis".to_string(), host.clone(), port)];
    for node in 0..2 {
        let out = ok(hctl(&env, node, &["run", "-a", "owner", ping]));
        assert_eq!(out.trim(), "PONG", "the owner's dyno reaches its redis");
        let out = probe(&env, node, "stranger", &target);
        assert!(has(&out, "redis=closed"), "an unattached app's dyno: {out}");
    }
    // Attached to the second app too: its dynos reach it; detached: no longer.
    ok(hctl(&env, 1, &["addons:attach", &name, "-a", "stranger"]));
    for node in 0..2 {
        let out = ok(hctl(&env, node, &["run", "-a", "stranger", ping]));
        assert_eq!(
            out.trim(),
            "PONG",
            "an attached app's dyno reaches the redis"
        );
    }
    ok(hctl(&env, 0, &["addons:detach", "REDIS", "-a", "stranger"]));
    for node in 0..2 {
        let out = probe(&env, node, "stranger", &target);
        assert!(has(&out, "redis=closed"), "after the detach: {out}");
    }
}

#[test]
fn with_network_host_dynos_share_their_nodes_network() {
    let env = haven_tests::cluster_with(1, Some("[dynos]\nnetwork = \"host\"\n"));
    let Some(internet) = env.bridge_host() else {
        println!("skipped: needs netns clusters (root)");
        return;
    };
    env.post_json(0, "/apps", &json!({ "name": "hosted" }))
        .unwrap();
    deploy_procfile_only(&env, "hosted");
    let (api_host, api_port) = host_port(env.api(0));
    let out = probe(
        &env,
        0,
        "hosted",
        &[("api".to_string(), api_host.clone(), api_port)],
    );
    // The node's own address, and the agent's API is reachable: no isolation.
    assert!(out.contains(&format!("addr={api_host}")), "{out}");
    assert!(!out.contains("10.213."), "{out}");
    assert!(has(&out, "api=open"), "{out}");
    assert!(internet.starts_with("10.77."), "{internet}");
}
