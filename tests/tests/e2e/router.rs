//! The router over real clusters: every node routes to web dynos on every node, Heroku's
//! headers and error codes, custom domains, WebSockets, metrics, and no lost requests
//! across a deploy or (after a short window) a node's death.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use haven_tests::load::{Load, LoadOptions};
use haven_tests::{binary, cluster, cluster_with, eventually, hctl, hctl_ok as ok, Env};
use serde_json::{json, Value};

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("router-app")
}

/// Creates `app`, deploys the router fixture app and waits for `web` dynos up.
pub(crate) fn deploy(env: &Env, app: &str, web: u32) {
    env.post_json(0, "/apps", &json!({ "name": app })).unwrap();
    ok(hctl(
        env,
        0,
        &["deploy", &fixture().to_string_lossy(), "-a", app],
    ));
    ok(hctl(
        env,
        0,
        &["ps:scale", &format!("web={web}"), "-a", app],
    ));
    wait_up(env, app, web as usize);
}

pub(crate) fn wait_up(env: &Env, app: &str, n: usize) {
    eventually(
        &format!("{n} web dynos of {app} up"),
        Duration::from_secs(90),
        || {
            let d = env.get_json(0, &format!("/apps/{app}/dynos")).ok()?;
            let ups = d
                .as_array()?
                .iter()
                .filter(|d| d["type"] == "web" && d["state"] == "up")
                .count();
            (ups == n && d.as_array()?.len() == n).then_some(())
        },
    );
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// GET `path` through node `node`'s router with `Host: host`.
fn get(env: &Env, node: usize, host: &str, path: &str) -> Result<(u16, String), String> {
    let r = client()
        .get(format!("{}{path}", env.router(node)))
        .header("Host", host)
        .send()
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    Ok((status, r.text().unwrap_or_default()))
}

#[test]
fn every_router_reaches_web_dynos_on_every_node() {
    let env = cluster(3);
    deploy(&env, "everywhere", 3);
    for node in 0..3 {
        // Every router has every node's dynos; they are spread at random, so 60 requests
        // reach all three (a miss has a chance of about 3 · (2/3)^60).
        let seen: BTreeSet<String> = eventually(
            &format!("router {node} reaches all three dynos"),
            Duration::from_secs(20),
            || {
                let mut seen = BTreeSet::new();
                for _ in 0..60 {
                    let (status, body) = get(&env, node, "everywhere.localhost", "/").ok()?;
                    if status != 200 {
                        return None;
                    }
                    seen.insert(body.trim().to_string());
                }
                (seen.len() == 3).then_some(seen)
            },
        );
        assert_eq!(
            seen,
            BTreeSet::from([
                "Hello from web.1".to_string(),
                "Hello from web.2".to_string(),
                "Hello from web.3".to_string()
            ])
        );
    }
    // The router logs one Heroku-style line per request; /metrics counts them.
    let metrics = client()
        .get(format!("{}/metrics", env.api(1)))
        .bearer_auth(env.token())
        .send()
        .unwrap()
        .text()
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("haven_router_requests_total{")
                && l.contains("app=\"everywhere\"")
                && l.contains("2xx")
        })
        .unwrap_or_else(|| panic!("no request counter in:\n{metrics}"));
    let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 60, "{line}");
    assert!(metrics.contains("haven_raft_term"), "{metrics}");
    assert!(metrics.contains("haven_router_request_duration_seconds_bucket"));
    let unauth = client()
        .get(format!("{}/metrics", env.api(1)))
        .send()
        .unwrap();
    assert_eq!(unauth.status().as_u16(), 401);
}

#[test]
fn the_router_adds_heroku_headers_and_answers_errors_with_codes() {
    let env = cluster_with(
        1,
        Some("[router]\nfirst_byte_timeout_ms = 1000\nidle_timeout_ms = 1000\n"),
    );
    deploy(&env, "headers", 1);
    let host = "headers.localhost";
    let r = client()
        .get(format!("{}/headers", env.router(0)))
        .header("Host", host)
        .header("X-Request-Id", "client-chosen-request-id-123")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let h: Value = r.json().unwrap();
    assert_eq!(h["x-request-id"], "client-chosen-request-id-123");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-port"], "7480");
    assert!(h["x-forwarded-for"].as_str().unwrap().len() >= 7, "{h}");
    assert!(h["via"].as_str().unwrap().contains("haven"), "{h}");
    let start: u128 = h["x-request-start"].as_str().unwrap().parse().unwrap();
    assert!(start > 1_700_000_000_000, "ms since the epoch: {start}");
    // An invalid request id is replaced.
    let r = client()
        .get(format!("{}/headers", env.router(0)))
        .header("Host", host)
        .header("X-Request-Id", "bad id")
        .send()
        .unwrap();
    let h: Value = r.json().unwrap();
    assert_ne!(h["x-request-id"], "bad id");
    assert!(h["x-request-id"].as_str().unwrap().len() >= 20);
    // Request bodies pass through.
    let r = client()
        .post(format!("{}/upload", env.router(0)))
        .header("Host", host)
        .body(vec![7u8; 300_000])
        .send()
        .unwrap();
    assert_eq!(r.text().unwrap(), "got 300000 bytes\n");

    // Unknown host: 404 page.
    let (status, body) = get(&env, 0, "nothing.localhost", "/").unwrap();
    assert_eq!(status, 404);
    assert!(body.contains("No such app"), "{body}");
    // H12: no first byte within the (lowered) timeout.
    let (status, body) = get(&env, 0, host, "/sleep/3").unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("H12"), "{body}");
    // H15: a body that goes silent past the idle window is cut, and logged.
    let r = client()
        .get(format!("{}/stall/3", env.router(0)))
        .header("Host", host)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body = r.text();
    assert!(
        body.as_ref().map_or(true, |b| !b.contains("last")),
        "the stalled body was not cut: {body:?}"
    );
    let out = Command::new(binary("hctl"))
        .args(["logs", "-a", "headers", "-p", "router", "-n", "50"])
        .env("HAVEN_API", env.api(0))
        .env("HAVEN_TOKEN", env.token())
        .env("HOME", std::env::temp_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("at=error code=H15 desc=\"Idle connection\""),
        "{text}"
    );
    assert!(text.contains("code=H12"), "{text}");
    // H80: maintenance mode.
    ok(hctl(&env, 0, &["maintenance:on", "-a", "headers"]));
    let (status, body) = get(&env, 0, host, "/").unwrap();
    assert_eq!(status, 503);
    assert!(
        body.contains("H80") && body.contains("Maintenance"),
        "{body}"
    );
    ok(hctl(&env, 0, &["maintenance:off", "-a", "headers"]));
    assert_eq!(get(&env, 0, host, "/").unwrap().0, 200);
    // H14: scaled to zero.
    ok(hctl(&env, 0, &["ps:scale", "web=0", "-a", "headers"]));
    let body = eventually("H14 once scaled to 0", Duration::from_secs(30), || {
        let (status, body) = get(&env, 0, host, "/").ok()?;
        (status == 503 && body.contains("H14")).then_some(body)
    });
    assert!(body.contains("Application Error"), "{body}");
}

#[test]
fn custom_domains_and_websockets_route_to_the_app() {
    let env = cluster(2);
    deploy(&env, "domains", 1);
    let out = ok(hctl(
        &env,
        1,
        &["domains:add", "www.example.test", "-a", "domains"],
    ));
    assert!(out.contains("Adding www.example.test"), "{out}");
    let body = eventually("the custom domain routes", Duration::from_secs(10), || {
        let (status, body) = get(&env, 1, "WWW.Example.test:7480", "/").ok()?;
        (status == 200).then_some(body)
    });
    assert_eq!(body.trim(), "Hello from web.1");
    let taken = env.request(
        0,
        reqwest::Method::POST,
        "/apps/domains/domains",
        Some(&json!({"hostname": "www.example.test"})),
    );
    assert_eq!(taken.unwrap().0.as_u16(), 409);
    let list = ok(hctl(&env, 0, &["domains", "-a", "domains"]));
    assert!(
        list.contains("domains.localhost") && list.contains("www.example.test"),
        "{list}"
    );
    ok(hctl(
        &env,
        0,
        &["domains:remove", "www.example.test", "-a", "domains"],
    ));
    // Routers read their own replica: the removal reaches node 1 within moments.
    eventually(
        "the removed domain answers 404",
        Duration::from_secs(10),
        || (get(&env, 1, "www.example.test", "/").ok()?.0 == 404).then_some(()),
    );

    // A WebSocket upgrade passes through to the dyno and echoes.
    use tungstenite::client::IntoClientRequest;
    for node in 0..2 {
        let router = env.router(node).trim_start_matches("http://").to_string();
        let stream = TcpStream::connect(&router).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let req = "ws://domains.localhost:7480/ws"
            .into_client_request()
            .unwrap();
        let (mut ws, resp) = tungstenite::client(req, stream).unwrap();
        assert_eq!(resp.status().as_u16(), 101);
        for msg in ["hello", "through the router"] {
            ws.send(tungstenite::Message::Text(msg.into())).unwrap();
            match ws.read().unwrap() {
                tungstenite::Message::Text(t) => assert_eq!(t.as_str(), msg),
                other => panic!("unexpected {other:?}"),
            }
        }
        ws.close(None).unwrap();
    }
}

#[test]
fn a_deploy_under_steady_load_loses_no_request() {
    let env = cluster(2);
    deploy(&env, "steady", 2);
    let routers = vec![env.router(0).to_string(), env.router(1).to_string()];
    let load = Load::start(&routers, "steady.localhost", LoadOptions::default());
    load.wait_more(20, "load flowing");
    // A config change rolls both dynos to a new release.
    ok(hctl(&env, 1, &["config:set", "ROLL=1", "-a", "steady"]));
    eventually("both dynos on v3", Duration::from_secs(90), || {
        let d = env.get_json(0, "/apps/steady/dynos").ok()?;
        let list = d.as_array()?;
        (list.len() == 2
            && list
                .iter()
                .all(|d| d["state"] == "up" && d["release"]["version"] == 3))
        .then_some(())
    });
    // And a new build rolls them again.
    ok(hctl(
        &env,
        0,
        &["deploy", &fixture().to_string_lossy(), "-a", "steady"],
    ));
    eventually("both dynos on v4", Duration::from_secs(90), || {
        let d = env.get_json(0, "/apps/steady/dynos").ok()?;
        let list = d.as_array()?;
        (list.len() == 2
            && list
                .iter()
                .all(|d| d["state"] == "up" && d["release"]["version"] == 4))
        .then_some(())
    });
    let samples = load.finish();
    let ok_count = samples.iter().filter(|s| s.ok()).count();
    let failures: Vec<String> = samples
        .iter()
        .filter(|s| !s.ok())
        .map(|s| s.to_string())
        .collect();
    eprintln!(
        "deploys under load: {ok_count} requests answered, {} failed",
        failures.len()
    );
    assert!(ok_count > 100, "the load did not run: {ok_count}");
    assert!(
        failures.is_empty(),
        "requests failed during the deploys: {failures:?}"
    );
}

#[test]
fn killing_a_node_under_load_costs_at_most_a_short_window_of_errors() {
    let mut env = cluster(3);
    deploy(&env, "survivor", 3);
    let victim_name = {
        let d = env.get_json(0, "/apps/survivor/dynos").unwrap();
        let names: BTreeMap<String, usize> = (0..3)
            .map(|i| {
                (
                    env.status(i).unwrap()["node_name"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                    i,
                )
            })
            .collect();
        // A node other than node 0 that runs a web dyno.
        d.as_array()
            .unwrap()
            .iter()
            .map(|d| d["node"]["name"].as_str().unwrap().to_string())
            .find(|n| names[n] != 0)
            .unwrap()
    };
    let victim = (0..3)
        .find(|i| env.status(*i).unwrap()["node_name"] == victim_name.as_str())
        .unwrap();
    let survivors: Vec<String> = (0..3)
        .filter(|i| *i != victim)
        .map(|i| env.router(i).to_string())
        .collect();
    let load = Load::start(&survivors, "survivor.localhost", LoadOptions::default());
    load.wait_more(20, "load flowing");
    let killed = Instant::now();
    env.kill(victim).unwrap();
    // Keep the load on until the formation is whole again elsewhere.
    eventually("three web dynos up again", Duration::from_secs(60), || {
        let d = env.get_json(0, "/apps/survivor/dynos").ok()?;
        let ups = d
            .as_array()?
            .iter()
            .filter(|d| d["state"] == "up" && d["node"]["name"] != victim_name.as_str())
            .count();
        (ups == 3).then_some(())
    });
    load.wait_more(50, "requests answered once the formation is whole");
    let samples = load.finish();
    let ok_count = samples.iter().filter(|s| s.ok()).count();
    let failures: Vec<&haven_tests::load::Sample> = samples.iter().filter(|s| !s.ok()).collect();
    let window = match (failures.first(), failures.last()) {
        (Some(first), Some(last)) => last.done.duration_since(first.done),
        _ => Duration::ZERO,
    };
    let after_kill = failures
        .last()
        .map(|l| l.done.duration_since(killed))
        .unwrap_or_default();
    eprintln!(
        "node killed under load: {ok_count} answered, {} failed, errors over {:.2}s (last {:.2}s after the kill)",
        failures.len(),
        window.as_secs_f64(),
        after_kill.as_secs_f64()
    );
    assert!(ok_count > 100);
    assert!(
        window < Duration::from_secs(2),
        "errors spanned {window:?}: {}",
        failures
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    );
}
