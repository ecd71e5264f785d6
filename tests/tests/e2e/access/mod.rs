//! Users, tokens and per-app access over real clusters (design §13): a stranger sees
//! nothing of an app until its owner shares it, on the leader and on followers alike
//! (`apps`); revoked, expired and removed tokens are refused on every node, and no secret
//! is in any node's log (`tokens`); the resources match Heroku's schema (`schema`); hctl's
//! user, access and token commands (`hctl`). This file holds the helpers they share.

mod apps;
mod hctl;
mod schema;
mod tokens;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use haven_tests::{binary, eventually, Env};
use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::{json, Value};

const V3: &str = "application/vnd.heroku+json; version=3";

/// A request to node `node` with `auth` as the whole `Authorization` header (none if
/// empty) and a raw body; returns status and JSON (a non-JSON body as a JSON string).
pub(super) fn raw(
    env: &Env,
    node: usize,
    auth: &str,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let mut req = Client::new()
        .request(method, format!("{}{path}", env.api(node)))
        .header("Accept", V3)
        .timeout(Duration::from_secs(30));
    if !auth.is_empty() {
        req = req.header("Authorization", auth);
    }
    if let Some(b) = body {
        req = req
            .header("Content-Type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A JSON request with a bearer token.
pub(super) fn call(
    env: &Env,
    node: usize,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    raw(
        env,
        node,
        &format!("Bearer {token}"),
        method,
        path,
        body.as_deref(),
    )
}

pub(super) fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Makes a user through the admin; returns their first token (or, with `password`, their
/// generated password).
pub(super) fn make_user(env: &Env, email: &str, password: bool) -> String {
    let (st, made) = call(
        env,
        0,
        env.token(),
        Method::POST,
        "/cluster/users",
        Some(json!({"email": email, "password": password})),
    );
    assert_eq!(st, 201, "{made}");
    assert_eq!(made["user"]["email"], email);
    let key = if password { "password" } else { "token" };
    made[key]
        .as_str()
        .unwrap_or_else(|| panic!("{made}"))
        .to_string()
}

/// A node other than the leader.
pub(super) fn follower(env: &mut Env) -> (usize, usize) {
    let leader = eventually("a leader", Duration::from_secs(30), || env.leader_index());
    ((leader + 1) % env.len(), leader)
}

/// Every call of every app resource family that `who` may not make on `app`: (method,
/// path, body).
pub(super) fn app_calls(app: &str, who: &str) -> Vec<(Method, String, Option<Value>)> {
    let p = |s: &str| format!("/apps/{app}{s}");
    vec![
        (Method::GET, p(""), None),
        (Method::PATCH, p(""), Some(json!({"maintenance": true}))),
        (Method::PATCH, p(""), Some(json!({"name": "stolen-app"}))),
        (Method::DELETE, p(""), None),
        (Method::GET, p("/config-vars"), None),
        (
            Method::PATCH,
            p("/config-vars"),
            Some(json!({"SNEAKY": "1"})),
        ),
        (Method::GET, p("/releases"), None),
        (Method::GET, p("/releases/1"), None),
        (Method::GET, p("/releases/1/config-vars"), None),
        (Method::POST, p("/releases"), Some(json!({"release": "1"}))),
        (Method::GET, p("/formation"), None),
        (Method::GET, p("/formation/web"), None),
        (
            Method::PATCH,
            p("/formation"),
            Some(json!({"updates": [{"type": "web", "quantity": 1}]})),
        ),
        (
            Method::PATCH,
            p("/formation/web"),
            Some(json!({"quantity": 1})),
        ),
        (Method::GET, p("/builds"), None),
        (Method::GET, p("/metrics"), None),
        (
            Method::POST,
            p("/builds"),
            Some(json!({"source_blob": {"url": "http://127.0.0.1:9/x.tgz"}})),
        ),
        (Method::GET, p("/buildpack-installations"), None),
        (
            Method::PUT,
            p("/buildpack-installations"),
            Some(json!({"updates": [{"buildpack": "python"}]})),
        ),
        (Method::GET, p("/dynos"), None),
        (Method::GET, p("/dynos/web.1"), None),
        (
            Method::POST,
            p("/dynos"),
            Some(json!({"command": "bash", "attach": false})),
        ),
        (Method::DELETE, p("/dynos"), None),
        (Method::DELETE, p("/dynos/web.1"), None),
        (Method::POST, p("/dynos/web.1/actions/stop"), None),
        (Method::DELETE, p("/formations/web/dynos"), None),
        (Method::POST, p("/formations/web/actions/stop"), None),
        (Method::GET, p("/unplaced-dynos"), None),
        (Method::GET, p("/domains"), None),
        (Method::GET, p("/domains/shared.example.com"), None),
        (
            Method::POST,
            p("/domains"),
            Some(json!({"hostname": "stolen.example.com"})),
        ),
        (Method::DELETE, p("/domains/shared.example.com"), None),
        (Method::GET, p("/log-drains"), None),
        (
            Method::POST,
            p("/log-drains"),
            Some(json!({"url": "syslog://127.0.0.1:9"})),
        ),
        (Method::POST, p("/log-sessions"), Some(json!({"lines": 10}))),
        (Method::GET, p("/collaborators"), None),
        (
            Method::POST,
            p("/collaborators"),
            Some(json!({"user": who})),
        ),
        (Method::DELETE, p(&format!("/collaborators/{who}")), None),
        (Method::GET, p("/addons"), None),
        (
            Method::POST,
            p("/addons"),
            Some(json!({"plan": "heroku-postgresql"})),
        ),
        (Method::GET, p("/addon-attachments"), None),
        (Method::GET, p("/sni-endpoints"), None),
        (
            Method::POST,
            p("/sni-endpoints"),
            Some(json!({"certificate_chain": "x", "private_key": "y"})),
        ),
        (Method::GET, p("/sni-endpoints/curved-00001"), None),
        (
            Method::PATCH,
            p("/sni-endpoints/curved-00001"),
            Some(json!({"certificate_chain": "x", "private_key": "y"})),
        ),
        (Method::DELETE, p("/sni-endpoints/curved-00001"), None),
        (Method::GET, p("/pg-backups"), None),
        (Method::POST, p("/pg-backups"), Some(json!({}))),
        (Method::GET, p("/pg-backups/b001"), None),
        (Method::GET, p("/pg-backups/b001/blob"), None),
        (
            Method::POST,
            p("/pg-backups/b001/actions/restore"),
            Some(json!({})),
        ),
        (Method::DELETE, p("/pg-backups/b001"), None),
        (Method::GET, p("/pg-backup-schedules"), None),
        (
            Method::POST,
            p("/pg-backup-schedules"),
            Some(json!({"at": "02:00 UTC"})),
        ),
        (Method::DELETE, p("/pg-backup-schedules/DATABASE"), None),
    ]
}

/// `git push`'s first request (the ref advertisement) with a token as Basic password.
pub(super) fn git_refs(env: &Env, node: usize, app: &str, token: &str) -> u16 {
    Client::new()
        .get(format!(
            "{}/{app}.git/info/refs?service=git-receive-pack",
            env.api(node)
        ))
        .header("Authorization", basic("git", token))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

pub(super) fn assert_no_such_app(got: &(u16, Value), what: &str) {
    assert_eq!(got.0, 404, "{what}: {}", got.1);
    assert_eq!(
        (got.1["id"].as_str(), got.1["message"].as_str()),
        (Some("not_found"), Some("Couldn't find that app.")),
        "{what}"
    );
}

/// What the owner sees of the app: nothing a refused call may change.
pub(super) fn owner_view(env: &Env, token: &str, app: &str) -> Vec<Value> {
    [
        "",
        "/config-vars",
        "/releases",
        "/formation",
        "/domains",
        "/log-drains",
        "/collaborators",
        "/buildpack-installations",
        "/addons",
        "/sni-endpoints",
        "/pg-backups",
        "/pg-backup-schedules",
    ]
    .iter()
    .map(|p| {
        let (st, v) = call(env, 0, token, Method::GET, &format!("/apps/{app}{p}"), None);
        assert_eq!(st, 200, "{p}: {v}");
        v
    })
    .collect()
}

/// A GET of a full URL with a bearer token.
pub(super) fn raw_url(url: &str, token: &str) -> (u16, String) {
    let resp = Client::new()
        .get(url)
        .bearer_auth(token)
        .timeout(Duration::from_secs(10))
        .send()
        .unwrap();
    let st = resp.status().as_u16();
    (st, resp.text().unwrap_or_default())
}

/// Polls every node until each refuses `token` (401 with Heroku's body), within
/// `within` of `since`.
pub(super) fn refused_everywhere(
    env: &Env,
    token: &str,
    since: Instant,
    within: Duration,
    what: &str,
) {
    for node in 0..env.len() {
        loop {
            let (st, body) = call(env, node, token, Method::GET, "/account", None);
            if st == 401 {
                assert_eq!(
                    (body["id"].as_str(), body["message"].as_str()),
                    (Some("unauthorized"), Some("Invalid credentials provided.")),
                    "{what}: {body}"
                );
                break;
            }
            assert_eq!(st, 200, "{what}: node {node}: {body}");
            assert!(
                since.elapsed() < within,
                "{what}: node {node} still accepts the token after {:?}",
                since.elapsed()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `hctl ARGS` against node 0 as the holder of `token` (empty: no token), in `home`, with
/// `stdin` fed in.
pub(super) fn hctl_as(
    env: &Env,
    home: &std::path::Path,
    token: &str,
    args: &[&str],
    stdin: &str,
) -> Output {
    let mut cmd = Command::new(binary("hctl"));
    cmd.args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .env("HAVEN_API", env.api(0))
        .env_remove("HAVEN_APP")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if token.is_empty() {
        cmd.env_remove("HAVEN_TOKEN");
    } else {
        cmd.env("HAVEN_TOKEN", token);
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub(super) fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "hctl failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub(super) fn failed(out: Output) -> String {
    assert!(
        !out.status.success(),
        "hctl succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The line after the one that contains `label`, trimmed.
pub(super) fn after(out: &str, label: &str) -> String {
    let mut lines = out.lines();
    lines
        .find(|l| l.contains(label))
        .unwrap_or_else(|| panic!("no {label:?} in:\n{out}"));
    lines
        .next()
        .unwrap_or_else(|| panic!("nothing after {label:?} in:\n{out}"))
        .trim()
        .to_string()
}
