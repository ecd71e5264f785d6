//! Committed config-var writes per second through the API of a 3-node cluster (fsync on:
//! every write is a Raft commit synced to disk on a quorum), with 1 and 32 clients, sent
//! to the leader and to a follower (which forwards to the leader).
//!
//! Run: `cargo build --release --bin havend && cargo bench -p haven-tests --bench writes`.
//! Prints one line per case and a JSON line with every figure. `BENCH_HAVEND_CONFIG` may
//! hold TOML given to every node (e.g. a `[raft]` table) to compare settings.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use haven_tests::cluster_with;
use serde_json::json;

/// How long each case runs.
const RUN: Duration = Duration::from_secs(5);
/// A cap on writes per case, so a much faster build still makes a bounded release history.
const MAX_WRITES: usize = 100_000;
/// A request slower than this counts as an error and frees its client.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

struct Figure {
    clients: usize,
    target: &'static str,
    writes: usize,
    errors: usize,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn run_case(url: String, token: String, clients: usize, target: &'static str) -> Figure {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("client");
    let sent = std::sync::Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let http = http.clone();
        let url = url.clone();
        let token = token.clone();
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            let mut n = 0u64;
            while start.elapsed() < RUN && sent.fetch_add(1, Ordering::Relaxed) < MAX_WRITES {
                n += 1;
                let t = Instant::now();
                let resp = http
                    .patch(&url)
                    .bearer_auth(&token)
                    .header("Accept", "application/vnd.heroku+json; version=3")
                    .json(&json!({ format!("K{c}"): n.to_string() }))
                    .send()
                    .await;
                // Read the body: a response dropped unread closes its connection instead
                // of returning it to the pool, and the benchmark would time TCP setup.
                let ok = match resp {
                    Ok(r) => r.status().is_success() & r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    lat.push(t.elapsed());
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
        let (l, e) = t.await.expect("client task");
        lat.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    Figure {
        clients,
        target,
        writes: lat.len(),
        errors,
        per_sec: lat.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    println!(
        "havend: {} (build it with `cargo build --release --bin havend` first)",
        haven_tests::binary("havend").display()
    );
    let mut env = cluster_with(3, std::env::var("BENCH_HAVEND_CONFIG").ok().as_deref());
    let leader = env.leader_index().expect("a leader");
    let follower = (leader + 1) % 3;
    let (st, body) = env
        .request(
            leader,
            reqwest::Method::POST,
            "/apps",
            Some(&json!({"name": "bench"})),
        )
        .expect("create app");
    assert_eq!(st.as_u16(), 201, "{body}");
    let token = env.token().to_string();
    let urls = [
        (env.api(leader).to_string(), "leader"),
        (env.api(follower).to_string(), "follower"),
    ];
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut figures = Vec::new();
    for clients in [1usize, 32] {
        for (api, target) in &urls {
            let f = rt.block_on(run_case(
                format!("{api}/apps/bench/config-vars"),
                token.clone(),
                clients,
                target,
            ));
            let goal = if clients == 1 { 300.0 } else { 3000.0 };
            println!(
                "writes/s clients={} target={}: {:.1} (p50 {:.2} ms, p99 {:.2} ms; {} writes, {} errors; target >= {goal})",
                f.clients, f.target, f.per_sec, f.p50_ms, f.p99_ms, f.writes, f.errors
            );
            figures.push(f);
        }
    }
    let all: Vec<_> = figures
        .iter()
        .map(|f| json!({"clients": f.clients, "target": f.target, "writes_per_sec": f.per_sec, "p50_ms": f.p50_ms, "p99_ms": f.p99_ms, "writes": f.writes, "errors": f.errors, "goal_writes_per_sec": if f.clients == 1 { 300 } else { 3000 }}))
        .collect();
    println!(
        "{}",
        json!({"bench": "config_var_writes_3_nodes", "results": all})
    );
    env.down();
}
