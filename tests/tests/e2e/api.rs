//! The HTTP API as a Heroku client sees it: shapes, statuses, errors, pagination, schema.

use haven_tests::{cluster, heroku_schema, validate_haven as validate};
use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::{json, Value};

fn call(env: &haven_tests::Env, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let (st, v) = env.request(0, method, path, body.as_ref()).unwrap();
    (st.as_u16(), v)
}

/// A raw request, for what `TestCluster::request` always gets right.
fn raw(
    env: &haven_tests::Env,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = Client::new().request(method, format!("{}{}", env.api(0), path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req
            .header("Content-Type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn assert_error(got: (u16, Value), status: u16, id: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["id"], id, "{}", got.1);
    assert!(
        got.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        got.1
    );
}

#[test]
fn releases_follow_heroku_rules() {
    let env = cluster(1);
    let (st, app) = call(&env, Method::POST, "/apps", Some(json!({"name": "flow"})));
    assert_eq!(st, 201);
    assert_eq!(app["name"], "flow");
    let (_, rels) = call(&env, Method::GET, "/apps/flow/releases", None);
    assert_eq!(rels[0]["version"], 1);
    // Nothing is deployed yet: v1 has no slug, and Heroku refuses to roll back to it.
    let (st, refused) = call(
        &env,
        Method::POST,
        "/apps/flow/releases",
        Some(json!({"release": "1"})),
    );
    assert_eq!(
        (st, refused["id"].as_str(), refused["message"].as_str()),
        (
            422,
            Some("invalid_params"),
            Some("Cannot rollback to a release that had no slug.")
        ),
        "{refused}"
    );
    assert_eq!(
        call(&env, Method::GET, "/apps/flow/releases", None).1,
        rels,
        "a refused rollback makes no release"
    );
    // A deploy (v2) gives the next releases a slug.
    haven_tests::deploy_procfile_only(&env, "flow");
    let (st, cfg) = call(
        &env,
        Method::PATCH,
        "/apps/flow/config-vars",
        Some(json!({"FOO": "1", "BAR": "x"})),
    );
    assert_eq!((st, cfg.clone()), (200, json!({"FOO": "1", "BAR": "x"})));
    let (_, cfg) = call(
        &env,
        Method::PATCH,
        "/apps/flow/config-vars",
        Some(json!({"FOO": null})),
    );
    assert_eq!(cfg, json!({"BAR": "x"}));
    let (_, v4) = call(&env, Method::GET, "/apps/flow/releases/4", None);
    assert_eq!(v4["description"], "Remove FOO config vars");
    assert_eq!(v4["current"], true);
    let (_, v3) = call(&env, Method::GET, "/apps/flow/releases/v3", None);
    assert_eq!(v3["description"], "Set BAR, FOO config vars");
    assert_eq!(v3["eligible_for_rollback"], true);
    assert!(v3["slug"]["id"].is_string(), "{v3}");
    let (_, v1) = call(&env, Method::GET, "/apps/flow/releases/1", None);
    assert_eq!(v1["eligible_for_rollback"], false, "{v1}");
    // By id too.
    let (st, by_id) = call(
        &env,
        Method::GET,
        &format!("/apps/flow/releases/{}", v3["id"].as_str().unwrap()),
        None,
    );
    assert_eq!((st, by_id["version"].clone()), (200, json!(3)));
    let (_, v3cfg) = call(&env, Method::GET, "/apps/flow/releases/3/config-vars", None);
    assert_eq!(v3cfg, json!({"FOO": "1", "BAR": "x"}));
    let (st, v5) = call(
        &env,
        Method::POST,
        "/apps/flow/releases",
        Some(json!({"release": v3["id"]})),
    );
    assert_eq!(st, 201, "{v5}");
    assert_eq!(
        (v5["version"].clone(), v5["description"].clone()),
        (json!(5), json!("Rollback to v3"))
    );
    assert_eq!(v5["slug"], v3["slug"], "the rollback runs v3's slug");
    let (_, cfg) = call(&env, Method::GET, "/apps/flow/config-vars", None);
    assert_eq!(
        cfg,
        json!({"FOO": "1", "BAR": "x"}),
        "rollback restores v3's config vars"
    );
    // Formation: numbers, strings, relative changes and sizes.
    let (st, f) = call(
        &env,
        Method::PATCH,
        "/apps/flow/formation",
        Some(
            json!({"updates": [{"type": "web", "quantity": 2}, {"type": "worker", "quantity": "1", "size": "standard-2X"}]}),
        ),
    );
    assert_eq!(st, 200, "{f}");
    assert_eq!(f.as_array().map(Vec::len), Some(2));
    let (_, f) = call(
        &env,
        Method::PATCH,
        "/apps/flow/formation",
        Some(json!({"updates": [{"type": "web", "quantity": "+1"}]})),
    );
    assert_eq!(f[0]["quantity"], 3);
    let (_, f) = call(
        &env,
        Method::PATCH,
        "/apps/flow/formation/web",
        Some(json!({"quantity": "-2"})),
    );
    assert_eq!(f["quantity"], 1);
    let (_, worker) = call(&env, Method::GET, "/apps/flow/formation/worker", None);
    assert_eq!(
        (worker["quantity"].clone(), worker["size"].clone()),
        (json!(1), json!("Standard-2X"))
    );
    assert_error(
        call(
            &env,
            Method::PATCH,
            "/apps/flow/formation/web",
            Some(json!({"quantity": "-5"})),
        ),
        422,
        "invalid_params",
    );
    // Rename and maintenance.
    let (st, app) = call(
        &env,
        Method::PATCH,
        "/apps/flow",
        Some(json!({"name": "flow2", "maintenance": true})),
    );
    assert_eq!(
        (st, app["name"].clone(), app["maintenance"].clone()),
        (200, json!("flow2"), json!(true))
    );
    assert_error(
        call(&env, Method::GET, "/apps/flow", None),
        404,
        "not_found",
    );
    let (st, _) = call(&env, Method::DELETE, "/apps/flow2", None);
    assert_eq!(st, 200);
    assert_error(
        call(&env, Method::GET, "/apps/flow2", None),
        404,
        "not_found",
    );
}

/// What a user can read of the app `keep`: apps, releases, config vars, formation.
fn visible_state(env: &haven_tests::Env) -> Vec<Value> {
    [
        "/apps",
        "/apps/keep/releases",
        "/apps/keep/config-vars",
        "/apps/keep/formation",
    ]
    .iter()
    .map(|p| call(env, Method::GET, p, None).1)
    .collect()
}

#[test]
fn bad_input_gets_heroku_errors_and_changes_nothing() {
    let env = cluster(1);
    assert_eq!(
        call(&env, Method::POST, "/apps", Some(json!({"name": "keep"}))).0,
        201
    );
    let (st, f) = call(
        &env,
        Method::PATCH,
        "/apps/keep/formation",
        Some(json!({"updates": [{"type": "web", "quantity": 1}]})),
    );
    assert_eq!(st, 200, "{f}");
    let before = visible_state(&env);
    let token = env.token().to_string();
    let auth = format!("Bearer {token}");
    const V3: &str = "application/vnd.heroku+json; version=3";
    let ok: &[(&str, &str)] = &[("Authorization", &auth), ("Accept", V3)];
    // (what, method, path, headers, body, status, error id)
    #[allow(clippy::type_complexity)]
    let cases: Vec<(
        &str,
        Method,
        &str,
        Vec<(&str, &str)>,
        Option<&str>,
        u16,
        &str,
    )> = vec![
        (
            "invalid app name",
            Method::POST,
            "/apps",
            ok.to_vec(),
            Some(r#"{"name":"Bad_Name"}"#),
            422,
            "invalid_params",
        ),
        (
            "one-letter app name",
            Method::POST,
            "/apps",
            ok.to_vec(),
            Some(r#"{"name":"a"}"#),
            422,
            "invalid_params",
        ),
        (
            "rename to an invalid name",
            Method::PATCH,
            "/apps/keep",
            ok.to_vec(),
            Some(r#"{"name":"-bad"}"#),
            422,
            "invalid_params",
        ),
        (
            "duplicate app name",
            Method::POST,
            "/apps",
            ok.to_vec(),
            Some(r#"{"name":"keep"}"#),
            409,
            "conflict",
        ),
        (
            "unknown app",
            Method::GET,
            "/apps/missing",
            ok.to_vec(),
            None,
            404,
            "not_found",
        ),
        (
            "config vars of an unknown app",
            Method::PATCH,
            "/apps/missing/config-vars",
            ok.to_vec(),
            Some(r#"{"A":"1"}"#),
            404,
            "not_found",
        ),
        (
            "malformed JSON on create",
            Method::POST,
            "/apps",
            ok.to_vec(),
            Some(r#"{"name": "#),
            400,
            "bad_request",
        ),
        (
            "malformed JSON on config vars",
            Method::PATCH,
            "/apps/keep/config-vars",
            ok.to_vec(),
            Some("not json"),
            400,
            "bad_request",
        ),
        (
            "missing token",
            Method::POST,
            "/apps",
            vec![("Accept", V3)],
            Some(r#"{"name":"sneaky"}"#),
            401,
            "unauthorized",
        ),
        (
            "wrong token",
            Method::PATCH,
            "/apps/keep/config-vars",
            vec![("Authorization", "Bearer hvn_wrong"), ("Accept", V3)],
            Some(r#"{"A":"1"}"#),
            401,
            "unauthorized",
        ),
        (
            "wrong basic password",
            Method::GET,
            "/apps",
            vec![("Authorization", "Basic Omh2bl93cm9uZw=="), ("Accept", V3)],
            None,
            401,
            "unauthorized",
        ),
        (
            "unknown release",
            Method::GET,
            "/apps/keep/releases/42",
            ok.to_vec(),
            None,
            404,
            "not_found",
        ),
        (
            "config vars of an unknown release",
            Method::GET,
            "/apps/keep/releases/42/config-vars",
            ok.to_vec(),
            None,
            404,
            "not_found",
        ),
        (
            "bad Accept",
            Method::POST,
            "/apps",
            vec![("Authorization", &auth), ("Accept", "text/html")],
            Some(r#"{"name":"sneaky"}"#),
            406,
            "not_acceptable",
        ),
        (
            "API version 2",
            Method::GET,
            "/apps",
            vec![
                ("Authorization", &auth),
                ("Accept", "application/vnd.heroku+json; version=2"),
            ],
            None,
            406,
            "not_acceptable",
        ),
        (
            "bad Range field",
            Method::GET,
            "/apps",
            vec![
                ("Authorization", &auth),
                ("Accept", V3),
                ("Range", "size .."),
            ],
            None,
            400,
            "bad_request",
        ),
        (
            "bad Range max",
            Method::GET,
            "/apps",
            vec![
                ("Authorization", &auth),
                ("Accept", V3),
                ("Range", "name ..; max=0"),
            ],
            None,
            400,
            "bad_request",
        ),
        (
            "rollback to an unknown version",
            Method::POST,
            "/apps/keep/releases",
            ok.to_vec(),
            Some(r#"{"release":"42"}"#),
            404,
            "not_found",
        ),
        (
            "non-string config value",
            Method::PATCH,
            "/apps/keep/config-vars",
            ok.to_vec(),
            Some(r#"{"N":5}"#),
            422,
            "invalid_params",
        ),
        (
            "empty formation batch",
            Method::PATCH,
            "/apps/keep/formation",
            ok.to_vec(),
            Some(r#"{"updates":[]}"#),
            422,
            "invalid_params",
        ),
        (
            "unknown dyno size",
            Method::PATCH,
            "/apps/keep/formation",
            ok.to_vec(),
            Some(r#"{"updates":[{"type":"web","size":"giant"}]}"#),
            422,
            "invalid_params",
        ),
        (
            "negative quantity",
            Method::PATCH,
            "/apps/keep/formation/web",
            ok.to_vec(),
            Some(r#"{"quantity":"-5"}"#),
            422,
            "invalid_params",
        ),
    ];
    for (what, method, path, headers, body, status, id) in cases {
        let (st, h, got) = raw(&env, method.clone(), path, &headers, body);
        assert_eq!(st, status, "{what}: {method} {path} answered {st} {got}");
        assert_eq!(got["id"], id, "{what}: {got}");
        assert!(
            got["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: no message in {got}"
        );
        assert!(h.contains_key("request-id"), "{what}: no Request-Id header");
        assert_eq!(visible_state(&env), before, "{what} changed the app");
    }
    // Basic auth with the token as password works, as on Heroku.
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!(":{token}")
        )
    );
    let (st, _, _) = raw(
        &env,
        Method::GET,
        "/apps",
        &[("Authorization", &basic)],
        None,
    );
    assert_eq!(st, 200);
    // A request id is echoed when valid.
    let rid = "abcdefghij0123456789-req";
    let (_, h, _) = raw(
        &env,
        Method::GET,
        "/account",
        &[("Authorization", &auth), ("X-Request-Id", rid)],
        None,
    );
    assert_eq!(h.get("request-id").and_then(|v| v.to_str().ok()), Some(rid));
    assert_eq!(
        visible_state(&env),
        before,
        "no bad request changed anything"
    );
}

/// Follows `Next-Range` from `range` until a 200; returns every item and the page count.
fn all_pages(env: &haven_tests::Env, path: &str, range: &str) -> (Vec<Value>, usize) {
    let auth = format!("Bearer {}", env.token());
    let mut items = Vec::new();
    let mut range = range.to_string();
    for pages in 1..100 {
        let (st, h, body) = raw(
            env,
            Method::GET,
            path,
            &[("Authorization", &auth), ("Range", &range)],
            None,
        );
        items.extend(
            body.as_array()
                .unwrap_or_else(|| panic!("{body}"))
                .iter()
                .cloned(),
        );
        match st {
            206 => {
                range = h
                    .get("next-range")
                    .expect("a 206 carries Next-Range")
                    .to_str()
                    .unwrap()
                    .to_string()
            }
            200 => {
                assert!(
                    !h.contains_key("next-range"),
                    "a full page has no Next-Range"
                );
                return (items, pages);
            }
            other => panic!("GET {path} with Range {range:?}: status {other} {body}"),
        }
    }
    panic!("GET {path}: Next-Range never ended")
}

#[test]
fn lists_page_with_range_and_next_range() {
    let env = cluster(1);
    for n in ["app-c", "app-a", "app-e", "app-b", "app-d"] {
        assert_eq!(
            call(&env, Method::POST, "/apps", Some(json!({"name": n}))).0,
            201
        );
    }
    let (apps, pages) = all_pages(&env, "/apps", "name ..; max=2");
    let names: Vec<&str> = apps.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(pages, 3);
    assert_eq!(names, ["app-a", "app-b", "app-c", "app-d", "app-e"]);
    let auth = format!("Bearer {}", env.token());
    let (_, _, body) = raw(
        &env,
        Method::GET,
        "/apps",
        &[
            ("Authorization", &auth),
            ("Range", "name ..; order=desc, max=1"),
        ],
        None,
    );
    assert_eq!(body[0]["name"], "app-e");
    // Releases page by version: v1 plus four config changes.
    for k in 0..4 {
        let (st, _) = call(
            &env,
            Method::PATCH,
            "/apps/app-a/config-vars",
            Some(json!({ "K": k.to_string() })),
        );
        assert_eq!(st, 200);
    }
    let (releases, pages) = all_pages(&env, "/apps/app-a/releases", "version ..; max=2");
    let versions: Vec<u64> = releases
        .iter()
        .map(|r| r["version"].as_u64().unwrap())
        .collect();
    assert_eq!((versions, pages), (vec![1, 2, 3, 4, 5], 3));
}

#[test]
fn responses_validate_against_the_heroku_schema() {
    let env = cluster(1);
    let root = heroku_schema();
    let def = |pointer: &str| {
        root.pointer(pointer)
            .unwrap_or_else(|| panic!("schema has no {pointer}"))
            .clone()
    };
    const APP: &str = "/definitions/app";
    const RELEASE: &str = "/definitions/release";
    const FORMATION: &str = "/definitions/formation";
    const ACCOUNT: &str = "/definitions/account";
    const CONFIG: &str = "/definitions/config-var/definitions/config_vars";
    let (_, app) = call(
        &env,
        Method::POST,
        "/apps",
        Some(json!({"name": "schema-app"})),
    );
    let (_, set) = call(
        &env,
        Method::PATCH,
        "/apps/schema-app/config-vars",
        Some(json!({"A": "1", "DATABASE_URL": "postgres://x"})),
    );
    let (_, batch) = call(
        &env,
        Method::PATCH,
        "/apps/schema-app/formation",
        Some(
            json!({"updates": [{"type": "web", "quantity": 1}, {"type": "worker", "quantity": "2", "size": "standard-2x"}]}),
        ),
    );
    // A rollback needs a release with a slug: deploy one (v2) to an app of its own, so
    // that schema-app's formation starts no dynos.
    call(
        &env,
        Method::POST,
        "/apps",
        Some(json!({"name": "schema-rel"})),
    );
    haven_tests::deploy_procfile_only(&env, "schema-rel");
    let (st, rollback) = call(
        &env,
        Method::POST,
        "/apps/schema-rel/releases",
        Some(json!({"release": "2"})),
    );
    assert_eq!(st, 201, "{rollback}");
    let (_, patched) = call(
        &env,
        Method::PATCH,
        "/apps/schema-app",
        Some(json!({"maintenance": true})),
    );
    let get = |path: &str| {
        let (st, v) = call(&env, Method::GET, path, None);
        assert_eq!(st, 200, "GET {path}: {v}");
        v
    };
    let mut checks: Vec<(&str, &str, Value)> = vec![
        ("POST /apps", APP, app),
        ("GET /apps/{app}", APP, get("/apps/schema-app")),
        ("PATCH /apps/{app}", APP, patched),
        ("GET release", RELEASE, get("/apps/schema-app/releases/2")),
        ("POST rollback", RELEASE, rollback),
        (
            "GET formation",
            FORMATION,
            get("/apps/schema-app/formation/web"),
        ),
        ("GET /account", ACCOUNT, get("/account")),
        ("PATCH config-vars", CONFIG, set),
        (
            "GET config-vars",
            CONFIG,
            get("/apps/schema-app/config-vars"),
        ),
        (
            "GET release config-vars",
            CONFIG,
            get("/apps/schema-app/releases/2/config-vars"),
        ),
    ];
    // Lists: every item matches the resource.
    for (what, pointer, list) in [
        ("GET /apps item", APP, get("/apps")),
        (
            "GET releases item",
            RELEASE,
            get("/apps/schema-app/releases"),
        ),
        (
            "GET formation item",
            FORMATION,
            get("/apps/schema-app/formation"),
        ),
        ("PATCH formation item", FORMATION, batch),
    ] {
        let items = list.as_array().unwrap_or_else(|| panic!("{what}: {list}"));
        assert!(!items.is_empty(), "{what}: empty list");
        checks.extend(items.iter().map(|v| (what, pointer, v.clone())));
    }
    for (what, pointer, value) in checks {
        let schema = def(pointer);
        let errors = validate(&root, &schema, &value);
        assert!(
            errors.is_empty(),
            "{what} does not match {pointer}: {errors:#?}\n{value}"
        );
        // Every property the schema defines for the resource is present.
        if let Some(props) = schema["properties"].as_object() {
            for key in props.keys() {
                let optional = matches!(
                    key.as_str(),
                    "addon_plan_names" | "artifacts" | "output_stream_url" | "app" | "dyno_size"
                );
                assert!(
                    value.get(key).is_some() || optional,
                    "{what} lacks {key}: {value}"
                );
            }
        }
    }
}
