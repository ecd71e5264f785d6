//! Log throughput and latency on a 2-node cluster.
//!
//! 1. Lines per second one node takes from a dyno that prints as fast as it can, while
//!    the lines also go to a syslog drain (a local TCP sink) and a `--tail` session.
//! 2. End-to-end latency from a dyno's write to a tail client reading through the other
//!    node (p50/p99 over requests that each log one line).

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::apps::{create_app, hctl, index_of_node, url_host};
use super::{percentile, Opts, Progress, Row, Target};
use crate::Env;

const APP: &str = "logbench";

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

/// The node index of dyno `name` of the app.
fn node_of(env: &Env, name: &str) -> Result<usize> {
    let d = env.get_json(0, &format!("/apps/{APP}/dynos/{name}"))?;
    let node = d["node"]["name"].as_str().context("dyno without node")?;
    index_of_node(env, node).context("the dyno's node")
}

/// What the section measured.
#[derive(Debug, Clone)]
pub struct Figures {
    pub lines_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub samples: usize,
    pub sent: usize,
}

pub fn measure(opts: &Opts, progress: Progress<'_>) -> Result<Figures> {
    progress("logs: starting a 2-node cluster");
    let env = super::cluster(2, None);
    create_app(&env, APP)?;
    let dir = tempfile::tempdir()?;
    let example = crate::repo_path("examples/python-hello");
    for f in ["app.py", "requirements.txt"] {
        std::fs::copy(example.join(f), dir.path().join(f))?;
    }
    let flood_secs = opts.pick(15, 6);
    std::fs::write(
        dir.path().join("flood.py"),
        format!("import sys, time\nstart = time.time()\nn = 0\nwrite = sys.stdout.write\nwhile time.time() - start < {flood_secs}:\n    for _ in range(1000):\n        write('flood line %d of the log benchmark, padded to a typical length\\n' % n)\n        n += 1\nsys.stdout.flush()\ntime.sleep(100000)\n"),
    )?;
    std::fs::write(
        dir.path().join("Procfile"),
        "web: python3 app.py\nflood: python3 flood.py\n",
    )?;
    hctl(
        &env,
        0,
        &["deploy", &dir.path().to_string_lossy(), "-a", APP],
    )?;
    hctl(&env, 0, &["ps:wait", "-a", APP, "--timeout", "90"])?;

    // A syslog drain into a sink on this host, and a tail session, both consuming.
    let sink = std::net::TcpListener::bind("0.0.0.0:0")?;
    let port = sink.local_addr()?.port();
    std::thread::spawn(move || {
        for conn in sink.incoming() {
            let Ok(mut c) = conn else { break };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                while c.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
            });
        }
    });
    let router_ip = url_host(env.router(0));
    // In network namespaces the host is the bridge's first address.
    let host = if router_ip.starts_with("127.") {
        router_ip
    } else {
        let mut o: Vec<&str> = router_ip.split('.').collect();
        if let Some(last) = o.last_mut() {
            *last = "1";
        }
        o.join(".")
    };
    hctl(
        &env,
        0,
        &["drains:add", &format!("syslog://{host}:{port}"), "-a", APP],
    )?;
    let mut tail = crate::hctl_command(&env, 1, &["logs", "--tail", "-n", "0", "-a", APP])
        .stdout(Stdio::piped())
        .spawn()
        .context("start hctl logs --tail")?;
    let tail_out = tail.stdout.take().context("tail stdout")?;
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    std::thread::spawn(move || {
        for line in BufReader::new(tail_out).lines() {
            let Ok(l) = line else { break };
            let _ = tx.send((Instant::now(), l));
        }
    });
    let result = (|| {
        // 1. Throughput: the flood dyno prints; count what its node takes in.
        progress("logs: flooding");
        hctl(&env, 0, &["ps:scale", "flood=1", "-a", APP])?;
        if !haven_testcluster::wait_until(Duration::from_secs(60), || {
            !super::apps::up_dynos(&env, APP, "flood").is_empty()
        }) {
            bail!("the flood dyno was not up within 60 s");
        }
        let flood_node = node_of(&env, "flood.1")?;
        std::thread::sleep(Duration::from_secs(2));
        let (t0, c0) = (Instant::now(), log_lines_total(&env, flood_node));
        std::thread::sleep(Duration::from_secs(flood_secs - 4));
        let (t1, c1) = (Instant::now(), log_lines_total(&env, flood_node));
        let per_sec = (c1 - c0) / t1.duration_since(t0).as_secs_f64();
        hctl(&env, 0, &["ps:scale", "flood=0", "-a", APP])?;
        // Drain what the tail still has to read.
        std::thread::sleep(Duration::from_secs(3));
        while rx.try_recv().is_ok() {}

        // 2. Latency: a request per 50 ms through the web dyno's node's router; the tail
        //    reads through node 1.
        progress("logs: tail latency");
        let web_node = node_of(&env, "web.1")?;
        let client = reqwest::blocking::Client::new();
        let mut lat = Vec::new();
        let sent = opts.pick(200, 50);
        for i in 0..sent {
            let path = format!("/lat-{i}");
            let at = Instant::now();
            let ok = client
                .get(format!("{}{path}", env.router(web_node)))
                .header("Host", "logbench.localhost")
                .send()
                .is_ok_and(|r| r.status().is_success());
            if !ok {
                continue;
            }
            let needle = format!("GET {path} ");
            let deadline = at + Duration::from_secs(5);
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                match rx.recv_timeout(left) {
                    Ok((seen, l)) if l.contains(&needle) => {
                        lat.push(seen.duration_since(at).as_secs_f64() * 1000.0);
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Figures {
            lines_per_sec: per_sec,
            samples: lat.len(),
            p50_ms: percentile(&mut lat, 0.5),
            p99_ms: percentile(&mut lat, 0.99),
            sent,
        })
    })();
    let _ = tail.kill();
    let _ = tail.wait();
    result
}

pub fn section(opts: &Opts, progress: Progress<'_>) -> Result<Vec<Row>> {
    let f = measure(opts, progress)?;
    Ok(vec![
        Row::new(
            "logs",
            "logs: lines/s one node takes in from one dyno",
            f.lines_per_sec,
            "lines/s",
        )
        .target(Target::at_least(100_000.0))
        .note("while a syslog drain and a --tail session consume"),
        Row::new(
            "logs",
            "logs: dyno write → tail client via the other node, p99",
            f.p99_ms,
            "ms",
        )
        .target(Target::at_most(50.0))
        .note(format!(
            "p50 {:.1} ms; {} of {} lines seen",
            f.p50_ms, f.samples, f.sent
        )),
    ])
}
