//! Committed writes per second on a 3-node cluster (fsync on: every write is a Raft commit
//! synced to disk on a quorum), with 1 and 32 clients, sent to the leader and to a
//! follower (which forwards to the leader): Haven's config-var writes through its API,
//! and, with the same client loop in the same run, puts to a 3-member etcd cluster
//! through its HTTP/JSON gateway ([`super::etcd`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use serde_json::json;

use super::{etcd, percentile, Opts, Progress, Row, Target};

/// A cap on writes per case, so a much faster build still makes a bounded history.
const MAX_WRITES: usize = 100_000;
/// A request slower than this counts as an error and frees its client.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What one case measured.
#[derive(Debug, Clone)]
pub struct Figure {
    pub clients: usize,
    pub writes: usize,
    pub errors: usize,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Builds request `n` of client `c`.
pub type MakeRequest =
    Arc<dyn Fn(&reqwest::Client, usize, u64) -> reqwest::RequestBuilder + Send + Sync>;

/// `clients` clients each sending requests made by `make` one after another for `run`;
/// a write counts when its answer is a 2xx whose body was read.
pub async fn load(clients: usize, run: Duration, make: MakeRequest) -> Figure {
    load_capped(clients, run, MAX_WRITES, make).await
}

/// [`load`] that stops after `cap` requests were sent.
pub async fn load_capped(clients: usize, run: Duration, cap: usize, make: MakeRequest) -> Figure {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap_or_default();
    let sent = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, make, sent) = (http.clone(), make.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            let mut n = 0u64;
            while start.elapsed() < run && sent.fetch_add(1, Ordering::Relaxed) < cap {
                n += 1;
                let t = Instant::now();
                // Read the body: a response dropped unread closes its connection instead
                // of returning it to the pool, and the benchmark would time TCP setup.
                let ok = match make(&http, c, n).send().await {
                    Ok(r) => r.status().is_success() & r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            lat.extend(l);
            errors += e;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    Figure {
        clients,
        writes: lat.len(),
        errors,
        per_sec: lat.len() as f64 / elapsed,
        p50_ms: percentile(&mut lat, 0.50),
        p99_ms: percentile(&mut lat, 0.99),
    }
}

/// Haven's config-var write of client `c`: `PATCH /apps/APP/config-vars {"Kc": "n"}`,
/// where APP is `bench` for `apps` 1, else `bench-{c % apps}`.
pub fn haven_write(api: String, token: String, apps: usize) -> MakeRequest {
    Arc::new(move |http, c, n| {
        let app = if apps <= 1 {
            "bench".to_string()
        } else {
            format!("bench-{}", c % apps)
        };
        http.patch(format!("{api}/apps/{app}/config-vars"))
            .bearer_auth(&token)
            .header("Accept", "application/vnd.heroku+json; version=3")
            .json(&json!({ format!("K{c}"): n.to_string() }))
    })
}

/// etcd's put of client `c` through the gRPC gateway: `POST /v3/kv/put`.
pub fn etcd_put(client_url: String) -> MakeRequest {
    let b64 = base64::engine::general_purpose::STANDARD;
    Arc::new(move |http, c, n| {
        http.post(format!("{client_url}/v3/kv/put")).json(&json!({
            "key": b64.encode(format!("K{c}")),
            "value": b64.encode(n.to_string()),
        }))
    })
}

/// The goal of a case, from issue 14's targets for this 2-core machine.
pub fn goal(clients: usize, to_leader: bool) -> f64 {
    match (clients, to_leader) {
        (1, _) => 700.0,
        (_, true) => 10_000.0,
        (_, false) => 8_000.0,
    }
}

fn note(f: &Figure) -> String {
    format!(
        "p50 {:.2} ms, p99 {:.2} ms; {} writes, {} errors",
        f.p50_ms, f.p99_ms, f.writes, f.errors
    )
}

/// Haven's figures: (clients, "leader"|"follower", figure) for 1 and 32 clients.
pub fn measure_haven(
    run: Duration,
    config_toml: Option<&str>,
    progress: Progress<'_>,
) -> Result<Vec<(usize, &'static str, Figure)>> {
    progress("writes: starting a 3-node Haven cluster");
    let mut env = super::cluster(3, config_toml);
    let leader = env.leader_index().context("no leader")?;
    let follower = (leader + 1) % 3;
    let (st, body) = env.request(
        leader,
        reqwest::Method::POST,
        "/apps",
        Some(&json!({"name": "bench"})),
    )?;
    if st.as_u16() != 201 {
        bail!("create the app: {st} {body}");
    }
    let token = env.token().to_string();
    let rt = tokio::runtime::Runtime::new()?;
    let mut out = Vec::new();
    for clients in [1usize, 32] {
        for (i, target) in [(leader, "leader"), (follower, "follower")] {
            let f = rt.block_on(load(
                clients,
                run,
                haven_write(env.api(i).to_string(), token.clone(), 1),
            ));
            progress(&format!(
                "writes: Haven, {clients} clients to the {target}: {:.0}/s ({})",
                f.per_sec,
                note(&f)
            ));
            out.push((clients, target, f));
        }
    }
    env.down();
    Ok(out)
}

/// etcd's figures, as [`measure_haven`]'s.
pub fn measure_etcd(
    run: Duration,
    progress: Progress<'_>,
) -> Result<Vec<(usize, &'static str, Figure)>> {
    progress("writes: starting a 3-member etcd cluster");
    let cluster = etcd::Cluster::start()?;
    let leader = cluster.leader()?;
    let follower = (leader + 1) % 3;
    let rt = tokio::runtime::Runtime::new()?;
    let mut out = Vec::new();
    for clients in [1usize, 32] {
        for (i, target) in [(leader, "leader"), (follower, "follower")] {
            let f = rt.block_on(load(clients, run, etcd_put(cluster.client_url(i))));
            progress(&format!(
                "writes: etcd, {clients} clients to the {target}: {:.0}/s ({})",
                f.per_sec,
                note(&f)
            ));
            out.push((clients, target, f));
        }
    }
    Ok(out)
}

pub fn section(opts: &Opts, progress: Progress<'_>) -> Result<Vec<Row>> {
    let run = opts.secs(5, 2);
    let config = std::env::var("BENCH_HAVEND_CONFIG").ok();
    let haven = measure_haven(run, config.as_deref(), progress)?;
    let peer = if !super::have("etcd") {
        Err("etcd is not installed (scripts/install-bench-deps)".to_string())
    } else {
        measure_etcd(run, progress).map_err(|e| format!("{e:#}"))
    };
    let mut rows = Vec::new();
    for (clients, target, f) in &haven {
        let p = peer.as_ref().ok().and_then(|p| {
            p.iter()
                .find(|(c, t, _)| c == clients && t == target)
                .map(|(_, _, f)| f)
        });
        let mut n = format!("Haven: {}", note(f));
        match (&peer, p) {
            (_, Some(p)) => n.push_str(&format!("; etcd: {}", note(p))),
            (Err(e), None) => n.push_str(&format!("; etcd: {e}")),
            (Ok(_), None) => {}
        }
        let name = format!(
            "Raft writes/s, {clients} client{}, to the {target}",
            if *clients == 1 { "" } else { "s" }
        );
        rows.push(
            Row::new("writes", &name, f.per_sec, "writes/s")
                .target(Target::at_least(goal(*clients, *target == "leader")))
                .peer("etcd 3 members", p.map(|p| p.per_sec))
                .note(n),
        );
    }
    Ok(rows)
}
