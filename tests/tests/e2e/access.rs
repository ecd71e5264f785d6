//! Users, tokens and per-app access over real clusters (design §13): a stranger sees
//! nothing of an app until its owner shares it, on the leader and on followers alike;
//! revoked, expired and removed tokens are refused on every node; Heroku's error bodies;
//! admin-only cluster calls; no secret in any node's log.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use haven_tests::{binary, cluster, eventually, heroku_schema, validate_haven, Env};
use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::{json, Value};

const V3: &str = "application/vnd.heroku+json; version=3";

/// A request to node `node` with `auth` as the whole `Authorization` header (none if
/// empty) and a raw body; returns status and JSON (a non-JSON body as a JSON string).
fn raw(
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
fn call(
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

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Makes a user through the admin; returns their first token (or, with `password`, their
/// generated password).
fn make_user(env: &Env, email: &str, password: bool) -> String {
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
fn follower(env: &mut Env) -> (usize, usize) {
    let leader = eventually("a leader", Duration::from_secs(30), || env.leader_index());
    ((leader + 1) % env.len(), leader)
}

/// Every call of every app resource family that `who` may not make on `app`: (method,
/// path, body).
fn app_calls(app: &str, who: &str) -> Vec<(Method, String, Option<Value>)> {
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
fn git_refs(env: &Env, node: usize, app: &str, token: &str) -> u16 {
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

fn assert_no_such_app(got: &(u16, Value), what: &str) {
    assert_eq!(got.0, 404, "{what}: {}", got.1);
    assert_eq!(
        (got.1["id"].as_str(), got.1["message"].as_str()),
        (Some("not_found"), Some("Couldn't find that app.")),
        "{what}"
    );
}

/// What the owner sees of the app: nothing a refused call may change.
fn owner_view(env: &Env, token: &str, app: &str) -> Vec<Value> {
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

#[test]
fn only_the_owner_collaborators_and_admins_reach_an_app() {
    let mut env = cluster(3);
    let alice = make_user(&env, "alice@example.com", false);
    let bob = make_user(&env, "bob@example.com", false);
    // Alice's app, with something in every family.
    let (st, app) = call(
        &env,
        0,
        &alice,
        Method::POST,
        "/apps",
        Some(json!({"name": "shared"})),
    );
    assert_eq!(st, 201, "{app}");
    assert_eq!(app["owner"]["email"], "alice@example.com");
    for (method, path, body) in [
        (
            Method::PATCH,
            "/apps/shared/config-vars",
            json!({"SECRET": "alice-only"}),
        ),
        (
            Method::PATCH,
            "/apps/shared/formation",
            json!({"updates": [{"type": "web", "quantity": 0}]}),
        ),
        (
            Method::POST,
            "/apps/shared/domains",
            json!({"hostname": "shared.example.com"}),
        ),
        (
            Method::POST,
            "/apps/shared/log-drains",
            json!({"url": "syslog://127.0.0.1:9"}),
        ),
    ] {
        let (st, v) = call(&env, 0, &alice, method, path, Some(body));
        assert!(st == 200 || st == 201, "{path}: {st} {v}");
    }
    let before = owner_view(&env, &alice, "shared");
    let (f, leader) = follower(&mut env);

    // Bob is a stranger: every call answers as if the app did not exist, through the
    // leader and through a follower.
    for node in [leader, f] {
        for (method, path, body) in app_calls("shared", "bob@example.com") {
            let got = call(&env, node, &bob, method.clone(), &path, body);
            assert_no_such_app(&got, &format!("bob {method} {path} on node {node}"));
        }
        assert_eq!(
            git_refs(&env, node, "shared", &bob),
            404,
            "bob's git push on node {node}"
        );
        for path in ["/apps", "/users/~/apps"] {
            let (st, apps) = call(&env, node, &bob, Method::GET, path, None);
            assert_eq!(
                (st, apps.clone()),
                (200, json!([])),
                "bob's {path} on node {node}"
            );
        }
    }
    assert_eq!(
        owner_view(&env, &alice, "shared"),
        before,
        "bob's calls changed the app"
    );
    // The owner and the admin see it.
    assert_eq!(git_refs(&env, f, "shared", &alice), 200);
    let (st, all) = call(&env, f, env.token(), Method::GET, "/apps", None);
    assert_eq!(st, 200);
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "shared"),
        "{all}"
    );

    // Alice shares the app with Bob (through a follower).
    let (st, c) = call(
        &env,
        f,
        &alice,
        Method::POST,
        "/apps/shared/collaborators",
        Some(json!({"user": "bob@example.com"})),
    );
    assert_eq!(st, 201, "{c}");
    assert_eq!(
        (c["user"]["email"].as_str(), c["role"].as_str()),
        (Some("bob@example.com"), Some("collaborator"))
    );
    for node in [f, leader] {
        let (st, a) = call(&env, node, &bob, Method::GET, "/apps/shared", None);
        assert_eq!((st, a["name"].as_str()), (200, Some("shared")), "{a}");
        let (st, cfg) = call(
            &env,
            node,
            &bob,
            Method::GET,
            "/apps/shared/config-vars",
            None,
        );
        assert_eq!((st, cfg["SECRET"].as_str()), (200, Some("alice-only")));
        assert_eq!(
            git_refs(&env, node, "shared", &bob),
            200,
            "bob's push on node {node}"
        );
        let (st, apps) = call(&env, node, &bob, Method::GET, "/apps", None);
        assert_eq!(st, 200);
        let names: Vec<&str> = apps
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a["name"].as_str())
            .collect();
        assert_eq!(names, ["shared"]);
    }
    let (st, cfg) = call(
        &env,
        f,
        &bob,
        Method::PATCH,
        "/apps/shared/config-vars",
        Some(json!({"BOB": "was here"})),
    );
    assert_eq!((st, cfg["BOB"].as_str()), (200, Some("was here")), "{cfg}");
    for path in [
        "/releases",
        "/formation",
        "/dynos",
        "/domains",
        "/log-drains",
        "/builds",
        "/collaborators",
    ] {
        let (st, v) = call(
            &env,
            f,
            &bob,
            Method::GET,
            &format!("/apps/shared{path}"),
            None,
        );
        assert_eq!(st, 200, "bob GET {path}: {v}");
    }
    let (st, who) = call(
        &env,
        f,
        &bob,
        Method::GET,
        "/apps/shared/collaborators",
        None,
    );
    assert_eq!(st, 200);
    let roles: Vec<(&str, &str)> = who
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["user"]["email"].as_str().unwrap(),
                c["role"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("alice@example.com", "owner"),
            ("bob@example.com", "collaborator")
        ]
    );
    // A log session made while Bob may see the app.
    let (st, session) = call(
        &env,
        f,
        &bob,
        Method::POST,
        "/apps/shared/log-sessions",
        Some(json!({"lines": 10})),
    );
    assert_eq!(st, 201, "{session}");
    // A collaborator can neither rename nor destroy the app.
    for (method, body) in [
        (Method::DELETE, None),
        (Method::PATCH, Some(json!({"name": "bobs-app"}))),
    ] {
        let (st, e) = call(&env, f, &bob, method.clone(), "/apps/shared", body);
        assert_eq!(
            (st, e["id"].as_str()),
            (403, Some("forbidden")),
            "bob {method}: {e}"
        );
    }
    // Nobody removes the owner.
    let (st, e) = call(
        &env,
        f,
        &bob,
        Method::DELETE,
        "/apps/shared/collaborators/alice@example.com",
        None,
    );
    assert_eq!((st, e["id"].as_str()), (422, Some("invalid_params")), "{e}");

    // Alice takes it back: Bob is a stranger again at once, on every node.
    let (st, gone) = call(
        &env,
        leader,
        &alice,
        Method::DELETE,
        "/apps/shared/collaborators/bob@example.com",
        None,
    );
    assert_eq!(
        (st, gone["user"]["email"].as_str()),
        (200, Some("bob@example.com")),
        "{gone}"
    );
    let before = owner_view(&env, &alice, "shared");
    for node in [f, leader] {
        for (method, path, body) in app_calls("shared", "bob@example.com") {
            let got = call(&env, node, &bob, method.clone(), &path, body);
            assert_no_such_app(&got, &format!("removed bob {method} {path} on node {node}"));
        }
        assert_eq!(git_refs(&env, node, "shared", &bob), 404);
    }
    assert_eq!(
        owner_view(&env, &alice, "shared"),
        before,
        "removed bob changed the app"
    );
    // The log session he made before cannot be opened now.
    let url = session["logplex_url"].as_str().unwrap();
    let (st, _) = raw_url(url, &bob);
    assert_eq!(st, 404, "bob opened a log session after losing access");

    // Cluster operations are for admins.
    let node_name = env.get_json(0, "/cluster/nodes").unwrap()[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    for (method, path, body) in [
        (Method::GET, "/cluster/status".to_string(), None),
        (Method::GET, "/cluster/nodes".to_string(), None),
        (
            Method::PATCH,
            format!("/cluster/nodes/{node_name}"),
            Some(json!({"draining": true})),
        ),
        (Method::GET, "/cluster/users".to_string(), None),
        (
            Method::POST,
            "/cluster/users".to_string(),
            Some(json!({"email": "mallory@example.com"})),
        ),
        (
            Method::GET,
            "/cluster/users/alice@example.com".to_string(),
            None,
        ),
        (
            Method::DELETE,
            "/cluster/users/alice@example.com".to_string(),
            None,
        ),
        (Method::GET, "/metrics".to_string(), None),
        (
            Method::GET,
            "/users/alice@example.com/apps".to_string(),
            None,
        ),
    ] {
        for node in [f, leader] {
            let (st, e) = call(&env, node, &bob, method.clone(), &path, body.clone());
            assert_eq!(
                (st, e["id"].as_str()),
                (403, Some("forbidden")),
                "bob {method} {path}: {e}"
            );
            assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }
    assert_eq!(
        env.get_json(0, "/cluster/nodes").unwrap()[0]["draining"],
        false
    );
    // The admin may do all of it, and the owner may destroy her app.
    let (st, users) = call(&env, f, env.token(), Method::GET, "/cluster/users", None);
    assert_eq!(st, 200);
    assert_eq!(users.as_array().map(Vec::len), Some(3), "{users}");
    let (st, _) = call(
        &env,
        f,
        env.token(),
        Method::GET,
        "/apps/shared/config-vars",
        None,
    );
    assert_eq!(st, 200);
    let (st, d) = call(&env, f, &alice, Method::DELETE, "/apps/shared", None);
    assert_eq!(st, 200, "{d}");
}

/// A GET of a full URL with a bearer token.
fn raw_url(url: &str, token: &str) -> (u16, String) {
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
fn refused_everywhere(env: &Env, token: &str, since: Instant, within: Duration, what: &str) {
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

#[test]
fn tokens_are_revoked_and_expire_on_every_node_and_passwords_log_in() {
    let mut env = cluster(3);
    let password = make_user(&env, "carol@example.com", true);
    // A wrong password, an unknown user, no credentials and a password where a token is
    // wanted all get Heroku's 401.
    for (what, auth, path) in [
        (
            "wrong password",
            basic("carol@example.com", "not-her-password"),
            "/oauth/authorizations",
        ),
        (
            "unknown user",
            basic("nobody@example.com", &password),
            "/oauth/authorizations",
        ),
        ("no credentials", String::new(), "/oauth/authorizations"),
        (
            "a password on another call",
            basic("carol@example.com", &password),
            "/apps",
        ),
    ] {
        let method = if path == "/apps" {
            Method::GET
        } else {
            Method::POST
        };
        let (st, e) = raw(&env, 1, &auth, method, path, Some("{}"));
        assert_eq!(
            (st, e["id"].as_str(), e["message"].as_str()),
            (
                401,
                Some("unauthorized"),
                Some("Invalid credentials provided.")
            ),
            "{what}: {e}"
        );
    }
    // The right one trades for a token (on a follower); the token works on every node.
    let (f, leader) = follower(&mut env);
    let (st, login) = raw(
        &env,
        f,
        &basic("carol@example.com", &password),
        Method::POST,
        "/oauth/authorizations",
        Some(r#"{"description": "laptop"}"#),
    );
    assert_eq!(st, 201, "{login}");
    let token = login["access_token"]["token"].as_str().unwrap().to_string();
    for node in 0..env.len() {
        let (st, me) = call(&env, node, &token, Method::GET, "/account", None);
        assert_eq!(
            (st, me["email"].as_str()),
            (200, Some("carol@example.com")),
            "{me}"
        );
    }
    // Malformed JSON gets Heroku's 400, and changes nothing.
    for path in [
        "/oauth/authorizations",
        "/account/password",
        "/cluster/users",
        "/apps",
    ] {
        let method = if path == "/account/password" {
            Method::PUT
        } else {
            Method::POST
        };
        let auth = if path == "/cluster/users" {
            format!("Bearer {}", env.token())
        } else {
            format!("Bearer {token}")
        };
        let (st, e) = raw(&env, f, &auth, method, path, Some("{\"description\": "));
        assert_eq!(
            (st, e["id"].as_str()),
            (400, Some("bad_request")),
            "{path}: {e}"
        );
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // A second token, listed without its secret; revoked through one node, it is refused
    // by every node within a second.
    let (st, second) = call(
        &env,
        leader,
        &token,
        Method::POST,
        "/oauth/authorizations",
        Some(json!({"description": "ci"})),
    );
    assert_eq!(st, 201, "{second}");
    let second_token = second["access_token"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, list) = call(&env, f, &token, Method::GET, "/oauth/authorizations", None);
    assert_eq!(st, 200);
    let descriptions: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["description"].as_str())
        .collect();
    assert_eq!(descriptions, ["laptop", "ci"], "{list}");
    assert!(
        !list.to_string().contains(&second_token),
        "a list shows a secret: {list}"
    );
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["access_token"].is_null()));
    let id = second["id"].as_str().unwrap();
    // Another user cannot see or revoke it.
    let dave = make_user(&env, "dave@example.com", false);
    for method in [Method::GET, Method::DELETE] {
        let (st, e) = call(
            &env,
            f,
            &dave,
            method,
            &format!("/oauth/authorizations/{id}"),
            None,
        );
        assert_eq!((st, e["id"].as_str()), (404, Some("not_found")), "{e}");
    }
    let (st, revoked) = call(
        &env,
        f,
        &token,
        Method::DELETE,
        &format!("/oauth/authorizations/{id}"),
        None,
    );
    assert_eq!((st, revoked["id"].as_str()), (200, Some(id)), "{revoked}");
    refused_everywhere(
        &env,
        &second_token,
        Instant::now(),
        Duration::from_secs(1),
        "revoked token",
    );
    let (st, e) = call(
        &env,
        f,
        &token,
        Method::GET,
        &format!("/oauth/authorizations/{id}"),
        None,
    );
    assert_eq!((st, e["id"].as_str()), (404, Some("not_found")));
    // A token that expires: accepted, then refused everywhere.
    let (st, short) = call(
        &env,
        leader,
        &token,
        Method::POST,
        "/oauth/authorizations",
        Some(json!({"description": "short", "expires_in": 3})),
    );
    assert_eq!(st, 201, "{short}");
    assert!(
        short["access_token"]["expires_in"]
            .as_i64()
            .is_some_and(|s| (1..=3).contains(&s)),
        "{short}"
    );
    let short_token = short["access_token"]["token"].as_str().unwrap().to_string();
    let made = Instant::now();
    let (st, _) = call(&env, f, &short_token, Method::GET, "/account", None);
    assert_eq!(st, 200, "a fresh token with 3 s to live was refused");
    refused_everywhere(
        &env,
        &short_token,
        made,
        Duration::from_secs(10),
        "expired token",
    );
    for bad in [0, -1] {
        let (st, e) = call(
            &env,
            f,
            &token,
            Method::POST,
            "/oauth/authorizations",
            Some(json!({"expires_in": bad})),
        );
        assert_eq!((st, e["id"].as_str()), (422, Some("invalid_params")), "{e}");
    }
    // Passwords: a new one replaces the old.
    let (st, _) = call(
        &env,
        f,
        &token,
        Method::PUT,
        "/account/password",
        Some(json!({"password": "short"})),
    );
    assert_eq!(st, 422);
    let (st, _) = call(
        &env,
        f,
        &token,
        Method::PUT,
        "/account/password",
        Some(json!({"password": "carols new password"})),
    );
    assert_eq!(st, 200);
    let login_with = |pw: &str| {
        raw(
            &env,
            leader,
            &basic("carol@example.com", pw),
            Method::POST,
            "/oauth/authorizations",
            None,
        )
        .0
    };
    assert_eq!(login_with(&password), 401);
    assert_eq!(login_with("carols new password"), 201);
    // Removing a user revokes every token of theirs on every node.
    let (st, _) = call(
        &env,
        leader,
        env.token(),
        Method::DELETE,
        "/cluster/users/carol@example.com",
        None,
    );
    assert_eq!(st, 200);
    refused_everywhere(
        &env,
        &token,
        Instant::now(),
        Duration::from_secs(1),
        "removed user's token",
    );
    assert_eq!(login_with("carols new password"), 401);
    // The last admin stays.
    let (st, e) = call(
        &env,
        leader,
        env.token(),
        Method::DELETE,
        "/cluster/users/admin@haven.local",
        None,
    );
    assert_eq!((st, e["id"].as_str()), (409, Some("conflict")), "{e}");

    // No secret is in any node's own log.
    for i in 0..env.len() {
        let own = std::fs::read_to_string(env.dir().join(format!("node{i}/havend.log"))).unwrap();
        for (what, secret) in [
            ("the admin token", env.token()),
            ("carol's first password", password.as_str()),
            ("carol's new password", "carols new password"),
            ("carol's token", token.as_str()),
            ("the revoked token", second_token.as_str()),
            ("the expired token", short_token.as_str()),
            ("dave's token", dave.as_str()),
        ] {
            assert!(!own.contains(secret), "node {i}'s log holds {what}");
        }
    }
}

#[test]
fn users_collaborators_and_authorizations_match_the_heroku_schema() {
    let env = cluster(1);
    let root = heroku_schema();
    let erin = make_user(&env, "erin@example.com", false);
    call(
        &env,
        0,
        env.token(),
        Method::POST,
        "/apps",
        Some(json!({"name": "schema-access"})),
    );
    let (st, added) = call(
        &env,
        0,
        env.token(),
        Method::POST,
        "/apps/schema-access/collaborators",
        Some(json!({"user": "erin@example.com"})),
    );
    assert_eq!(st, 201, "{added}");
    let (_, list) = call(
        &env,
        0,
        env.token(),
        Method::GET,
        "/apps/schema-access/collaborators",
        None,
    );
    let (_, one) = call(
        &env,
        0,
        env.token(),
        Method::GET,
        "/apps/schema-access/collaborators/erin@example.com",
        None,
    );
    let (st, made) = call(
        &env,
        0,
        &erin,
        Method::POST,
        "/oauth/authorizations",
        Some(json!({"description": "schema", "expires_in": 600})),
    );
    assert_eq!(st, 201, "{made}");
    let (_, auths) = call(&env, 0, &erin, Method::GET, "/oauth/authorizations", None);
    let (_, account) = call(&env, 0, &erin, Method::GET, "/account", None);
    let mut checks = vec![
        ("POST collaborator", "/definitions/collaborator", added),
        ("GET collaborator", "/definitions/collaborator", one),
        (
            "POST authorization",
            "/definitions/oauth-authorization",
            made,
        ),
        ("GET /account", "/definitions/account", account),
    ];
    for (what, pointer, items) in [
        ("GET collaborators item", "/definitions/collaborator", list),
        (
            "GET authorizations item",
            "/definitions/oauth-authorization",
            auths,
        ),
    ] {
        let items = items
            .as_array()
            .unwrap_or_else(|| panic!("{what}: {items}"))
            .clone();
        assert!(!items.is_empty(), "{what}");
        checks.extend(items.into_iter().map(|v| (what, pointer, v)));
    }
    for (what, pointer, value) in checks {
        let schema = root.pointer(pointer).unwrap().clone();
        let errors = validate_haven(&root, &schema, &value);
        assert!(
            errors.is_empty(),
            "{what} does not match {pointer}: {errors:#?}\n{value}"
        );
        for key in schema["properties"].as_object().unwrap().keys() {
            assert!(value.get(key).is_some(), "{what} lacks {key}: {value}");
        }
    }
}

/// `hctl ARGS` against node 0 as the holder of `token` (empty: no token), in `home`, with
/// `stdin` fed in.
fn hctl_as(env: &Env, home: &std::path::Path, token: &str, args: &[&str], stdin: &str) -> Output {
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

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "hctl failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn failed(out: Output) -> String {
    assert!(
        !out.status.success(),
        "hctl succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The line after the one that contains `label`, trimmed.
fn after(out: &str, label: &str) -> String {
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

#[test]
fn hctl_manages_users_access_and_tokens() {
    let env = cluster(2);
    let home = tempfile::tempdir().unwrap();
    let admin = env.token().to_string();
    let out = ok(hctl_as(
        &env,
        home.path(),
        &admin,
        &["users:create", "dev@example.com"],
        "",
    ));
    assert!(
        out.contains("Creating dev@example.com (user)... done"),
        "{out}"
    );
    let dev = after(&out, "API token");
    assert!(dev.starts_with("hvn_"), "{out}");
    let out = ok(hctl_as(
        &env,
        home.path(),
        &admin,
        &["users:create", "ops@example.com", "--password"],
        "",
    ));
    let ops_password = after(&out, "Password");
    let users: Value = serde_json::from_str(&ok(hctl_as(
        &env,
        home.path(),
        &admin,
        &["users", "--json"],
        "",
    )))
    .unwrap();
    let emails: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["email"].as_str())
        .collect();
    assert_eq!(
        emails,
        ["admin@haven.local", "dev@example.com", "ops@example.com"]
    );
    let table = ok(hctl_as(&env, home.path(), &admin, &["users"], ""));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("dev@example.com") && l.contains("user")),
        "{table}"
    );
    // A non-admin may not.
    let err = failed(hctl_as(&env, home.path(), &dev, &["users"], ""));
    assert!(err.contains("only cluster admins"), "{err}");

    // ops logs in with email and password; a wrong password is refused with Heroku's words.
    let err = failed(hctl_as(
        &env,
        home.path(),
        "",
        &["login", "--email", "ops@example.com"],
        "wrong password\n",
    ));
    assert!(err.contains("Invalid credentials provided."), "{err}");
    let out = ok(hctl_as(
        &env,
        home.path(),
        "",
        &["login", "--email", "ops@example.com"],
        &format!("{ops_password}\n"),
    ));
    assert!(out.contains("Logged in as ops@example.com"), "{out}");
    assert_eq!(
        ok(hctl_as(&env, home.path(), "", &["whoami"], "")).trim(),
        "ops@example.com"
    );
    let ops = ok(hctl_as(&env, home.path(), "", &["auth:token"], ""))
        .trim()
        .to_string();
    assert!(ops.starts_with("hvn_"), "{ops}");
    let auths = ok(hctl_as(&env, home.path(), "", &["authorizations"], ""));
    assert!(auths.contains("hctl login from"), "{auths}");
    // The same through the interactive prompt: email, then password.
    let home2 = tempfile::tempdir().unwrap();
    let out = ok(hctl_as(
        &env,
        home2.path(),
        "",
        &["login"],
        &format!("ops@example.com\n{ops_password}\n"),
    ));
    assert!(out.contains("Logged in as ops@example.com"), "{out}");

    // dev's app: ops sees nothing of it until dev gives access.
    ok(hctl_as(
        &env,
        home.path(),
        &dev,
        &["apps:create", "dev-app"],
        "",
    ));
    let err = failed(hctl_as(
        &env,
        home.path(),
        &ops,
        &["config", "-a", "dev-app"],
        "",
    ));
    assert!(err.contains("Couldn't find that app."), "{err}");
    let out = ok(hctl_as(
        &env,
        home.path(),
        &dev,
        &["access:add", "ops@example.com", "-a", "dev-app"],
        "",
    ));
    assert!(
        out.contains("Adding ops@example.com access to the app ⬢ dev-app... done"),
        "{out}"
    );
    let access = ok(hctl_as(
        &env,
        home.path(),
        &ops,
        &["access", "-a", "dev-app"],
        "",
    ));
    assert!(access.contains("=== dev-app Access List"), "{access}");
    assert!(
        access
            .lines()
            .any(|l| l.starts_with("dev@example.com") && l.contains("owner")),
        "{access}"
    );
    assert!(
        access
            .lines()
            .any(|l| l.starts_with("ops@example.com") && l.contains("collaborator")),
        "{access}"
    );
    let listed: Value = serde_json::from_str(&ok(hctl_as(
        &env,
        home.path(),
        &ops,
        &["access", "-a", "dev-app", "--json"],
        "",
    )))
    .unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    let apps = ok(hctl_as(&env, home.path(), &ops, &["apps"], ""));
    assert!(
        apps.contains("=== Collaborated Apps") && apps.contains("dev-app"),
        "{apps}"
    );
    let mine = ok(hctl_as(&env, home.path(), &dev, &["apps"], ""));
    assert!(mine.contains("=== dev@example.com Apps\ndev-app"), "{mine}");
    ok(hctl_as(
        &env,
        home.path(),
        &ops,
        &["config:set", "FROM_OPS=1", "-a", "dev-app"],
        "",
    ));
    let err = failed(hctl_as(
        &env,
        home.path(),
        &ops,
        &["apps:destroy", "-a", "dev-app", "--confirm", "dev-app"],
        "",
    ));
    assert!(err.contains("owner"), "{err}");
    let out = ok(hctl_as(
        &env,
        home.path(),
        &dev,
        &["access:remove", "ops@example.com", "-a", "dev-app"],
        "",
    ));
    assert!(
        out.contains("Removing ops@example.com access from the app ⬢ dev-app... done"),
        "{out}"
    );
    let err = failed(hctl_as(
        &env,
        home.path(),
        &ops,
        &["config", "-a", "dev-app"],
        "",
    ));
    assert!(err.contains("Couldn't find that app."), "{err}");

    // Tokens: made once, listed, revoked.
    let made: Value = serde_json::from_str(&ok(hctl_as(
        &env,
        home.path(),
        &ops,
        &[
            "authorizations:create",
            "--description",
            "deploy bot",
            "--expires-in",
            "3600",
            "--json",
        ],
        "",
    )))
    .unwrap();
    let bot = made["access_token"]["token"].as_str().unwrap().to_string();
    let id = made["id"].as_str().unwrap().to_string();
    assert_eq!(
        ok(hctl_as(&env, home.path(), &bot, &["whoami"], "")).trim(),
        "ops@example.com"
    );
    let shown = ok(hctl_as(
        &env,
        home.path(),
        &ops,
        &["authorizations:create", "-d", "shown"],
        "",
    ));
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("Token:") && l.contains("hvn_")),
        "{shown}"
    );
    let list = ok(hctl_as(&env, home.path(), &ops, &["authorizations"], ""));
    assert!(
        list.contains("deploy bot") && list.contains(&id) && !list.contains(&bot),
        "{list}"
    );
    let out = ok(hctl_as(
        &env,
        home.path(),
        &ops,
        &["authorizations:revoke", &id],
        "",
    ));
    assert!(
        out.contains("Revoking OAuth Authorization deploy bot... done"),
        "{out}"
    );
    let err = failed(hctl_as(&env, home.path(), &bot, &["whoami"], ""));
    assert!(err.contains("hctl login"), "{err}");
    // users:remove wants a confirmation, then revokes everything of theirs.
    let err = failed(hctl_as(
        &env,
        home.path(),
        &admin,
        &["users:remove", "ops@example.com"],
        "",
    ));
    assert!(err.contains("--confirm ops@example.com"), "{err}");
    ok(hctl_as(
        &env,
        home.path(),
        &admin,
        &[
            "users:remove",
            "ops@example.com",
            "--confirm",
            "ops@example.com",
        ],
        "",
    ));
    failed(hctl_as(&env, home.path(), &ops, &["whoami"], ""));
}
