//! Router throughput and latency, side by side in one run against the same upstream (an
//! nginx answering a fixed body from a web dyno): `wrk` straight to the dyno, through
//! Debian's nginx as a reverse proxy, and through Haven's router.

use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::apps::{create_app, fixture, hctl, index_of_node, node_host, up_dynos, url_host};
use super::{have, Opts, Progress, Row, Target};

pub const CONNECTIONS: usize = 32;

/// What one wrk run measured.
#[derive(Debug, Clone)]
pub struct Figure {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

/// `12.34us`, `1.20ms`, `2.00s` → milliseconds.
pub fn parse_ms(s: &str) -> f64 {
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

/// The figures of wrk's `--latency` output.
pub fn parse_wrk(text: &str) -> Figure {
    let mut f = Figure {
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
            // Only what follows the colon: "2xx or 3xx" are not counts.
            let counts = t.split_once(':').map_or("", |(_, v)| v);
            f.errors += counts
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    f
}

/// `wrk -t2 -cCONNECTIONS -dSECONDS --latency URL` with an optional Host header.
pub fn wrk(url: &str, host: Option<&str>, seconds: u64) -> Result<Figure> {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t2",
        &format!("-c{CONNECTIONS}"),
        &format!("-d{seconds}s"),
        "--latency",
    ]);
    if let Some(h) = host {
        cmd.args(["-H", &format!("Host: {h}")]);
    }
    let out = cmd.arg(url).output().context("run wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let f = parse_wrk(&text);
    if f.rps == 0.0 {
        bail!(
            "wrk gave no figure for {url}: {}{}",
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(f)
}

/// Debian's nginx as a reverse proxy to `upstream`, listening on `listen`, in network
/// namespace `netns` when given. Killed when dropped.
struct Proxy {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_nginx(upstream: &str, listen: &str, netns: Option<&str>) -> Result<Proxy> {
    let dir = tempfile::tempdir()?;
    let conf = dir.path().join("proxy.conf");
    // HTTP/1.1 and keep-alive to the upstream, as an operator would set it.
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\ndaemon off;\npid {p}/nginx.pid;\nerror_log {p}/error.log warn;\nevents {{ worker_connections 4096; }}\nhttp {{\n access_log off;\n client_body_temp_path {p}/b; proxy_temp_path {p}/p; fastcgi_temp_path {p}/f; uwsgi_temp_path {p}/u; scgi_temp_path {p}/s;\n upstream app {{ server {upstream}; keepalive 64; }}\n server {{ listen {listen}; location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header X-Forwarded-For $remote_addr; }} }}\n}}\n",
            p = dir.path().display()
        ),
    )?;
    let conf = conf.to_string_lossy().into_owned();
    let child = match netns {
        Some(ns) => Command::new("ip")
            .args(["netns", "exec", ns, "nginx", "-c", &conf])
            .spawn(),
        None => Command::new("nginx").args(["-c", &conf]).spawn(),
    }
    .context("start nginx")?;
    let proxy = Proxy { child, _dir: dir };
    if !haven_testcluster::wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(listen).is_ok()
    }) {
        bail!("the nginx proxy did not listen on {listen} within 10 s");
    }
    Ok(proxy)
}

/// (direct, nginx, Haven) figures, each over `seconds`.
pub fn measure(seconds: u64, progress: Progress<'_>) -> Result<(Figure, Figure, Figure)> {
    progress("router: starting a 3-node cluster and the nginx upstream app");
    let env = super::cluster(3, None);
    create_app(&env, "bench")?;
    hctl(
        &env,
        0,
        &[
            "deploy",
            &fixture("nginx-app").to_string_lossy(),
            "-a",
            "bench",
        ],
    )?;
    if !haven_testcluster::wait_until(Duration::from_secs(60), || {
        up_dynos(&env, "bench", "web").len() == 1
    }) {
        bail!("the upstream dyno was not up within 60 s");
    }
    let d = up_dynos(&env, "bench", "web")
        .into_iter()
        .next()
        .context("no dyno")?;
    let node = d["node"]["name"].as_str().unwrap_or("").to_string();
    let upstream = format!(
        "{}:{}",
        node_host(&env, &node)?,
        d["port"].as_u64().unwrap_or(0)
    );
    // The router of the node that runs the dyno: the same network path as direct.
    let router_idx = index_of_node(&env, &node).context("the dyno's node")?;
    let router = env.router(router_idx).to_string();
    // The proxy runs in the same network namespace as that node's router, so that wrk
    // reaches both over the same path.
    let cluster_file: Value =
        serde_json::from_str(&std::fs::read_to_string(env.dir().join("cluster.json"))?)?;
    let netns = cluster_file["nodes"][router_idx]["netns"]
        .as_str()
        .map(str::to_string);
    let listen = match &netns {
        Some(_) => format!("{}:18480", url_host(&router)),
        None => "127.0.0.1:18480".to_string(),
    };
    let nginx = start_nginx(&upstream, &listen, netns.as_deref())?;
    progress("router: wrk straight to the dyno");
    let direct = wrk(&format!("http://{upstream}/"), None, seconds)?;
    progress("router: wrk through nginx");
    let nginx_fig = wrk(&format!("http://{listen}/"), None, seconds)?;
    drop(nginx);
    progress("router: wrk through Haven's router");
    let haven = wrk(&format!("{router}/"), Some("bench.localhost"), seconds)?;
    Ok((direct, nginx_fig, haven))
}

pub fn section(opts: &Opts, progress: Progress<'_>) -> Result<Vec<Row>> {
    let name = "router: requests/s through Haven's router";
    // `have` only needs the program to start (nginx refuses --version but runs).
    for tool in ["wrk", "nginx"] {
        if !have(tool) {
            return Ok(vec![Row::missing(
                "router",
                name,
                "req/s",
                format!("{tool} is not installed (scripts/install-bench-deps)"),
            )]);
        }
    }
    let seconds = opts.pick(10, 3);
    let (direct, nginx, haven) = measure(seconds, progress)?;
    let detail = |f: &Figure| {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, {} errors",
            f.p50_ms, f.p99_ms, f.errors
        )
    };
    Ok(vec![
        Row::new("router", name, haven.rps, "req/s")
            .target(Target::at_least_peer(0.8))
            .peer("nginx proxy", Some(nginx.rps))
            .note(format!(
                "wrk -t2 -c{CONNECTIONS} {seconds}s, same upstream; Haven {}; nginx {}",
                detail(&haven),
                detail(&nginx)
            )),
        Row::new(
            "router",
            "router: p99 latency through Haven's router",
            haven.p99_ms,
            "ms",
        )
        .target(Target::at_most_peer(1.5))
        .peer("nginx proxy", Some(nginx.p99_ms)),
        Row::new(
            "router",
            "router: requests/s straight to the dyno",
            direct.rps,
            "req/s",
        )
        .note(format!("no proxy: the ceiling; {}", detail(&direct))),
        Row::new(
            "router",
            "router: Haven's router vs direct",
            haven.rps,
            "req/s",
        )
        .peer("direct", Some(direct.rps)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_is_parsed() {
        let text = "  Latency Distribution\n     50%  410.00us\n     99%    2.50ms\n  Socket errors: connect 0, read 2, write 0, timeout 1\n  Non-2xx or 3xx responses: 3\nRequests/sec:  47261.10\n";
        let f = parse_wrk(text);
        assert_eq!(f.rps, 47261.10);
        assert!((f.p50_ms - 0.41).abs() < 1e-9);
        assert_eq!(f.p99_ms, 2.5);
        assert_eq!(f.errors, 6);
    }
}
