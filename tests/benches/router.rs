//! Router throughput and latency, side by side in one run against the same upstream (an
//! nginx answering a fixed body from a web dyno): `wrk` straight to the dyno, through
//! Debian's nginx as a reverse proxy, and through Haven's router. Then the failover
//! figure: requests that fail, and over how long, when a node running one of three web
//! dynos is killed under load.
//!
//! Run: `cargo build --release --workspace && cargo bench -p haven-tests --bench router`
//! (needs `wrk` and `nginx`: `apt-get install wrk nginx`). Prints a table and one JSON line.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use haven_tests::{binary, cluster, eventually};
use serde_json::{json, Value};

const CONNECTIONS: usize = 32;
const SECONDS: u64 = 10;

struct Figure {
    name: &'static str,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

/// `12.34us`, `1.20ms`, `2.00s` → milliseconds.
fn parse_ms(s: &str) -> f64 {
    let s = s.trim();
    let (num, mult) = if let Some(v) = s.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1000.0)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().unwrap_or(f64::NAN) * mult
}

fn wrk(name: &'static str, url: &str, host: Option<&str>) -> Figure {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t2",
        &format!("-c{CONNECTIONS}"),
        &format!("-d{SECONDS}s"),
        "--latency",
    ]);
    if let Some(h) = host {
        cmd.args(["-H", &format!("Host: {h}")]);
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut f = Figure {
        name,
        rps: 0.0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        errors: 0,
    };
    for line in text.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            f.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = t.strip_prefix("50%") {
            f.p50_ms = parse_ms(v);
        } else if let Some(v) = t.strip_prefix("99%") {
            f.p99_ms = parse_ms(v);
        } else if t.starts_with("Non-2xx or 3xx responses:") || t.starts_with("Socket errors:") {
            f.errors += t
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    if f.rps == 0.0 {
        eprintln!(
            "wrk gave no figure for {name}:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    f
}

fn hctl(env: &haven_tests::Env, args: &[&str]) {
    let home = tempfile::tempdir().expect("home");
    let out = Command::new(binary("hctl"))
        .args(args)
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
        .env("HAVEN_API", env.api(0))
        .env("HAVEN_TOKEN", env.token())
        .output()
        .expect("hctl");
    assert!(
        out.status.success(),
        "hctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn fixture(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn web_dynos(env: &haven_tests::Env, app: &str) -> Vec<Value> {
    env.get_json(0, &format!("/apps/{app}/dynos"))
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d["type"] == "web" && d["state"] == "up")
        .collect()
}

fn node_host(env: &haven_tests::Env, name: &str) -> String {
    let nodes = env.get_json(0, "/cluster/nodes").expect("nodes");
    let n = nodes
        .as_array()
        .expect("list")
        .iter()
        .find(|n| n["name"] == name)
        .expect("node")
        .clone();
    let api = n["api_url"]
        .as_str()
        .expect("api")
        .trim_start_matches("http://")
        .to_string();
    api.rsplit_once(':').expect("port").0.to_string()
}

fn main() {
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("router bench skipped: wrk is not installed (apt-get install wrk nginx)");
        return;
    }
    let mut env = cluster(3);
    env.post_json(0, "/apps", &json!({"name": "bench"}))
        .expect("create app");
    hctl(&env, &["deploy", &fixture("nginx-app"), "-a", "bench"]);
    eventually("the upstream dyno is up", Duration::from_secs(60), || {
        (web_dynos(&env, "bench").len() == 1).then_some(())
    });
    let d = &web_dynos(&env, "bench")[0];
    let node = d["node"]["name"].as_str().expect("node").to_string();
    let upstream = format!(
        "{}:{}",
        node_host(&env, &node),
        d["port"].as_u64().expect("port")
    );
    // The router of the node that runs the dyno: the same network path as direct.
    let router_idx = (0..env.len())
        .find(|i| {
            env.status(*i)
                .ok()
                .and_then(|s| s["node_name"].as_str().map(str::to_string))
                == Some(node.clone())
        })
        .expect("router node");
    let router = env.router(router_idx).to_string();

    // Debian's nginx as a reverse proxy to the same dyno (HTTP/1.1 and keep-alive to the
    // upstream, as an operator would set it), in the same network namespace as that node's
    // router, so that wrk reaches both over the same path.
    let cluster_file: Value = serde_json::from_str(
        &std::fs::read_to_string(env.dir().join("cluster.json")).expect("cluster.json"),
    )
    .expect("cluster.json");
    let netns = cluster_file["nodes"][router_idx]["netns"]
        .as_str()
        .map(str::to_string);
    let router_host = router
        .trim_start_matches("http://")
        .rsplit_once(':')
        .expect("router port")
        .0
        .to_string();
    let (listen, nginx_url) = match &netns {
        Some(_) => (
            format!("{router_host}:18480"),
            format!("http://{router_host}:18480/"),
        ),
        None => (
            "127.0.0.1:18480".to_string(),
            "http://127.0.0.1:18480/".to_string(),
        ),
    };
    let dir = tempfile::tempdir().expect("dir");
    let conf = dir.path().join("proxy.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\ndaemon off;\npid {p}/nginx.pid;\nerror_log {p}/error.log warn;\nevents {{ worker_connections 4096; }}\nhttp {{\n access_log off;\n client_body_temp_path {p}/b; proxy_temp_path {p}/p; fastcgi_temp_path {p}/f; uwsgi_temp_path {p}/u; scgi_temp_path {p}/s;\n upstream app {{ server {upstream}; keepalive 64; }}\n server {{ listen {listen}; location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header X-Forwarded-For $remote_addr; }} }}\n}}\n",
            p = dir.path().display()
        ),
    )
    .expect("write nginx conf");
    let mut nginx = match &netns {
        Some(ns) => Command::new("ip")
            .args(["netns", "exec", ns, "nginx", "-c", &conf.to_string_lossy()])
            .spawn(),
        None => Command::new("nginx")
            .args(["-c", &conf.to_string_lossy()])
            .spawn(),
    }
    .expect("start nginx (apt-get install nginx)");
    eventually("nginx proxy answers", Duration::from_secs(10), || {
        std::net::TcpStream::connect(&listen).ok().map(|_| ())
    });

    let direct = wrk("direct to the dyno", &format!("http://{upstream}/"), None);
    let nginx_fig = wrk("through nginx", &nginx_url, None);
    let haven = wrk(
        "through Haven's router",
        &format!("{router}/"),
        Some("bench.localhost"),
    );
    let _ = nginx.kill();
    let _ = nginx.wait();

    // Failover under load: three web dynos, kill a node that runs one (not node 0).
    hctl(&env, &["ps:scale", "web=3", "-a", "bench"]);
    eventually("three web dynos up", Duration::from_secs(60), || {
        (web_dynos(&env, "bench").len() == 3).then_some(())
    });
    let names: Vec<String> = (0..env.len())
        .map(|i| {
            env.status(i)
                .ok()
                .and_then(|s| s["node_name"].as_str().map(str::to_string))
                .unwrap_or_default()
        })
        .collect();
    let victim = (1..env.len())
        .find(|i| {
            web_dynos(&env, "bench")
                .iter()
                .any(|d| d["node"]["name"] == names[*i].as_str())
        })
        .expect("a victim");
    let routers: Vec<String> = (0..env.len())
        .filter(|i| *i != victim)
        .map(|i| env.router(i).to_string())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let failures: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let mut threads = Vec::new();
    for t in 0..8 {
        let (stop, answered, failures) = (stop.clone(), answered.clone(), failures.clone());
        let url = format!("{}/", routers[t % routers.len()]);
        threads.push(std::thread::spawn(move || {
            let c = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client");
            while !stop.load(Ordering::Relaxed) {
                match c.get(&url).header("Host", "bench.localhost").send() {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes();
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => failures.lock().expect("lock").push(Instant::now()),
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_secs(2));
    let killed = Instant::now();
    env.kill(victim).expect("kill");
    let names_c = names.clone();
    eventually(
        "three web dynos up elsewhere",
        Duration::from_secs(60),
        || {
            let d = web_dynos(&env, "bench");
            (d.len() == 3
                && d.iter()
                    .all(|d| d["node"]["name"] != names_c[victim].as_str()))
            .then_some(())
        },
    );
    let replaced_after = killed.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let fails = failures.lock().expect("lock").clone();
    let window = match (fails.first(), fails.last()) {
        (Some(a), Some(b)) => b.duration_since(*a),
        _ => Duration::ZERO,
    };

    println!("router benchmark: {CONNECTIONS} connections, {SECONDS}s each, wrk -t2, same upstream (nginx in a dyno)");
    println!(
        "{:<26} {:>12} {:>10} {:>10} {:>8}",
        "path", "requests/s", "p50 ms", "p99 ms", "errors"
    );
    for f in [&direct, &nginx_fig, &haven] {
        println!(
            "{:<26} {:>12.0} {:>10.3} {:>10.3} {:>8}",
            f.name, f.rps, f.p50_ms, f.p99_ms, f.errors
        );
    }
    println!(
        "Haven / nginx throughput: {:.2}; p99 added over direct: Haven {:.3} ms, nginx {:.3} ms",
        haven.rps / nginx_fig.rps,
        haven.p99_ms - direct.p99_ms,
        nginx_fig.p99_ms - direct.p99_ms
    );
    println!(
        "failover: {} requests answered, {} failed over {:.2}s; replacement dyno up {:.2}s after the kill",
        answered.load(Ordering::Relaxed),
        fails.len(),
        window.as_secs_f64(),
        replaced_after.as_secs_f64()
    );
    let fig = |f: &Figure| json!({"rps": f.rps, "p50_ms": f.p50_ms, "p99_ms": f.p99_ms, "errors": f.errors});
    println!(
        "{}",
        json!({
            "bench": "router",
            "connections": CONNECTIONS,
            "seconds": SECONDS,
            "direct": fig(&direct),
            "nginx": fig(&nginx_fig),
            "haven": fig(&haven),
            "failover": {
                "answered": answered.load(Ordering::Relaxed),
                "failed": fails.len(),
                "error_window_s": window.as_secs_f64(),
                "replaced_after_s": replaced_after.as_secs_f64(),
            }
        })
    );
}
