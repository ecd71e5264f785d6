//! Log throughput and latency on a 2-node cluster.
//!
//! 1. Lines per second one node takes from a dyno that prints as fast as it can, while
//!    the lines also go to a syslog drain (a local TCP sink) and a `--tail` session.
//! 2. End-to-end latency from a dyno's write to a tail client reading through the other
//!    node (p50/p99 over 200 requests, each logging one line).
//!
//! Run: `cargo build --release --workspace && cargo bench -p haven-tests --bench logs`.
//! Prints a summary and one JSON line.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use haven_tests::{binary, cluster, eventually, Env};
use serde_json::json;

fn hctl(env: &Env, node: usize) -> Command {
    let mut c = Command::new(binary("hctl"));
    c.env("HOME", std::env::temp_dir())
        .env("XDG_CONFIG_HOME", std::env::temp_dir().join("hctl-bench"))
        .env("HAVEN_API", env.api(node))
        .env("HAVEN_TOKEN", env.token());
    c
}

fn run(env: &Env, node: usize, args: &[&str]) {
    let out = hctl(env, node).args(args).output().expect("hctl");
    assert!(
        out.status.success(),
        "hctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn log_lines_total(env: &Env, node: usize) -> f64 {
    let text = reqwest::blocking::Client::new()
        .get(format!("{}/metrics", env.api(node)))
        .bearer_auth(env.token())
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("haven_log_lines_total{"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

fn main() {
    let env = cluster(2);
    env.post_json(0, "/apps", &json!({"name": "logbench"}))
        .expect("app");
    let dir = tempfile::tempdir().expect("dir");
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python-hello");
    for f in ["app.py", "requirements.txt"] {
        std::fs::copy(example.join(f), dir.path().join(f)).expect("copy");
    }
    std::fs::write(
        dir.path().join("flood.py"),
        "import sys, time\nstart = time.time()\nn = 0\nwrite = sys.stdout.write\nwhile time.time() - start < 15:\n    for _ in range(1000):\n        write('flood line %d of the log benchmark, padded to a typical length\\n' % n)\n        n += 1\nsys.stdout.flush()\ntime.sleep(100000)\n",
    )
    .expect("flood.py");
    std::fs::write(
        dir.path().join("Procfile"),
        "web: python3 app.py\nflood: python3 flood.py\n",
    )
    .expect("procfile");
    run(
        &env,
        0,
        &["deploy", &dir.path().to_string_lossy(), "-a", "logbench"],
    );
    run(&env, 0, &["ps:wait", "-a", "logbench", "--timeout", "90"]);

    // A syslog drain into a sink on this host, and a tail session, both consuming.
    let sink = std::net::TcpListener::bind("0.0.0.0:0").expect("sink");
    let port = sink.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in sink.incoming() {
            let Ok(mut c) = conn else { break };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                while c.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
            });
        }
    });
    let router_ip = env
        .router(0)
        .trim_start_matches("http://")
        .rsplit_once(':')
        .expect("ip")
        .0
        .to_string();
    let host = if router_ip.starts_with("127.") {
        router_ip.clone()
    } else {
        let mut o: Vec<&str> = router_ip.split('.').collect();
        o[3] = "1";
        o.join(".")
    };
    run(
        &env,
        0,
        &[
            "drains:add",
            &format!("syslog://{host}:{port}"),
            "-a",
            "logbench",
        ],
    );
    let mut tail = hctl(&env, 1)
        .args(["logs", "--tail", "-n", "0", "-a", "logbench"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("tail");
    let tail_out = tail.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    std::thread::spawn(move || {
        for line in BufReader::new(tail_out).lines() {
            let Ok(l) = line else { break };
            let _ = tx.send((Instant::now(), l));
        }
    });

    // 1. Throughput: the flood dyno prints for 15 s; count what its node takes in.
    run(&env, 0, &["ps:scale", "flood=1", "-a", "logbench"]);
    eventually("the flood dyno is up", Duration::from_secs(60), || {
        let d = env.get_json(0, "/apps/logbench/dynos").ok()?;
        d.as_array()?
            .iter()
            .find(|d| d["type"] == "flood" && d["state"] == "up")
            .cloned()
    });
    let node_of = |name: &str| -> usize {
        let d = env
            .get_json(0, &format!("/apps/logbench/dynos/{name}"))
            .expect("dyno");
        (0..env.len())
            .find(|i| {
                env.status(*i)
                    .ok()
                    .and_then(|s| s["node_name"].as_str().map(str::to_string))
                    .as_deref()
                    == d["node"]["name"].as_str()
            })
            .expect("node")
    };
    let flood_node = node_of("flood.1");
    std::thread::sleep(Duration::from_secs(2));
    let (t0, c0) = (Instant::now(), log_lines_total(&env, flood_node));
    std::thread::sleep(Duration::from_secs(10));
    let (t1, c1) = (Instant::now(), log_lines_total(&env, flood_node));
    let per_sec = (c1 - c0) / t1.duration_since(t0).as_secs_f64();
    run(&env, 0, &["ps:scale", "flood=0", "-a", "logbench"]);
    // Drain what the tail still has to read.
    std::thread::sleep(Duration::from_secs(3));
    while rx.try_recv().is_ok() {}

    // 2. Latency: a request per 50 ms through the web dyno's node's router; the tail
    //    reads through node 1.
    let web_node = node_of("web.1");
    let client = reqwest::blocking::Client::new();
    let mut lat = Vec::new();
    for i in 0..200 {
        let path = format!("/lat-{i}");
        let sent = Instant::now();
        let ok = client
            .get(format!("{}{path}", env.router(web_node)))
            .header("Host", "logbench.localhost")
            .send()
            .is_ok_and(|r| r.status().is_success());
        if !ok {
            continue;
        }
        let needle = format!("GET {path} ");
        let deadline = sent + Duration::from_secs(5);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok((at, l)) if l.contains(&needle) => {
                    lat.push(at.duration_since(sent));
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = tail.kill();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN)
    };
    println!("logs benchmark (2 nodes; a syslog drain and a --tail session consuming)");
    println!("  lines/s taken in by one node from one flooding dyno: {per_sec:.0}");
    println!(
        "  dyno write -> tail client via the other node: p50 {:.1} ms, p99 {:.1} ms ({} of 200 seen)",
        pct(0.50),
        pct(0.99),
        lat.len()
    );
    println!(
        "{}",
        json!({"bench": "logs", "lines_per_sec": per_sec, "latency_p50_ms": pct(0.5), "latency_p99_ms": pct(0.99), "samples": lat.len()})
    );
}
