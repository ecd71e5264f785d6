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
    let (_, v3) = call(&env, Method::GET, "/apps/flow/releases/3", None);
    assert_eq!(v3["description"], "Remove FOO config vars");
    assert_eq!(v3["current"], true);
    let (_, v2) = call(&env, Method::GET, "/apps/flow/releases/v2", None);
    assert_eq!(v2["description"], "Set BAR, FOO config vars");
    assert_eq!(v2["eligible_for_rollback"], true);
    // By id too.
    let (st, by_id) = call(
        &env,
        Method::GET,
        &format!("/apps/flow/releases/{}", v2["id"].as_str().unwrap()),
        None,
    );
    assert_eq!((st, by_id["version"].clone()), (200, json!(2)));
    let (_, v2cfg) = call(&env, Method::GET, "/apps/flow/releases/2/config-vars", None);
    assert_eq!(v2cfg, json!({"FOO": "1", "BAR": "x"}));
    let (st, v4) = call(
        &env,
        Method::POST,
        "/apps/flow/releases",
        Some(json!({"release": v2["id"]})),
    );
    assert_eq!(st, 201, "{v4}");
    assert_eq!(
        (v4["version"].clone(), v4["description"].clone()),
        (json!(4), json!("Rollback to v2"))
    );
    let (_, cfg) = call(&env, Method::GET, "/apps/flow/config-vars", None);
    assert_eq!(
        cfg,
        json!({"FOO": "1", "BAR": "x"}),
        "rollback restores v2's config vars"
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

#[test]
fn bad_input_gets_heroku_errors_and_changes_nothing() {
    let env = cluster(1);
    assert_eq!(
        call(&env, Method::POST, "/apps", Some(json!({"name": "keep"}))).0,
        201
    );
    let snapshot = |env: &haven_tests::Env| {
        (
            call(env, Method::GET, "/apps", None).1,
            call(env, Method::GET, "/apps/keep/releases", None).1,
        )
    };
    let before = snapshot(&env);
    let token = env.token().to_string();
    let auth = format!("Bearer {token}");
    assert_error(
        call(
            &env,
            Method::POST,
            "/apps",
            Some(json!({"name": "Bad_Name"})),
        ),
        422,
        "invalid_params",
    );
    assert_error(
        call(&env, Method::POST, "/apps", Some(json!({"name": "keep"}))),
        409,
        "conflict",
    );
    assert_error(
        call(&env, Method::GET, "/apps/missing", None),
        404,
        "not_found",
    );
    assert_error(
        call(&env, Method::GET, "/apps/keep/releases/42", None),
        404,
        "not_found",
    );
    assert_error(
        call(
            &env,
            Method::POST,
            "/apps/keep/releases",
            Some(json!({"release": "42"})),
        ),
        404,
        "not_found",
    );
    assert_error(
        call(
            &env,
            Method::PATCH,
            "/apps/keep/config-vars",
            Some(json!({"N": 5})),
        ),
        422,
        "invalid_params",
    );
    assert_error(
        call(
            &env,
            Method::PATCH,
            "/apps/keep/formation",
            Some(json!({"updates": []})),
        ),
        422,
        "invalid_params",
    );
    assert_error(
        call(
            &env,
            Method::PATCH,
            "/apps/keep/formation",
            Some(json!({"updates": [{"type": "web", "size": "giant"}]})),
        ),
        422,
        "invalid_params",
    );
    let (st, h, body) = raw(
        &env,
        Method::POST,
        "/apps",
        &[("Authorization", &auth)],
        Some("{\"name\": "),
    );
    assert_error((st, body), 400, "bad_request");
    assert!(h.contains_key("request-id"));
    let (st, _, body) = raw(&env, Method::GET, "/apps", &[], None);
    assert_error((st, body), 401, "unauthorized");
    let (st, _, body) = raw(
        &env,
        Method::GET,
        "/apps",
        &[("Authorization", "Bearer hvn_wrong")],
        None,
    );
    assert_error((st, body), 401, "unauthorized");
    let (st, _, body) = raw(
        &env,
        Method::GET,
        "/apps",
        &[("Authorization", &auth), ("Accept", "text/html")],
        None,
    );
    assert_error((st, body), 406, "not_acceptable");
    let (st, _, body) = raw(
        &env,
        Method::GET,
        "/apps",
        &[("Authorization", &auth), ("Range", "size ..")],
        None,
    );
    assert_error((st, body), 400, "bad_request");
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
    assert_eq!(snapshot(&env), before, "no bad request changed anything");
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
    let auth = format!("Bearer {}", env.token());
    let mut names = Vec::new();
    let mut range = "name ..; max=2".to_string();
    let mut pages = 0;
    loop {
        let (st, h, body) = raw(
            &env,
            Method::GET,
            "/apps",
            &[("Authorization", &auth), ("Range", &range)],
            None,
        );
        pages += 1;
        names.extend(
            body.as_array()
                .unwrap()
                .iter()
                .map(|a| a["name"].as_str().unwrap().to_string()),
        );
        match st {
            206 => range = h.get("next-range").unwrap().to_str().unwrap().to_string(),
            200 => break,
            other => panic!("status {other}"),
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["app-a", "app-b", "app-c", "app-d", "app-e"]);
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
}

#[test]
fn responses_validate_against_the_heroku_schema() {
    let env = cluster(1);
    let root = heroku_schema();
    let def = |name: &str| root["definitions"][name].clone();
    let (_, app) = call(
        &env,
        Method::POST,
        "/apps",
        Some(json!({"name": "schema-app"})),
    );
    call(
        &env,
        Method::PATCH,
        "/apps/schema-app/config-vars",
        Some(json!({"A": "1"})),
    );
    call(
        &env,
        Method::PATCH,
        "/apps/schema-app/formation",
        Some(json!({"updates": [{"type": "web", "quantity": 1}]})),
    );
    let checks: Vec<(&str, Value)> = vec![
        ("app", app),
        ("app", call(&env, Method::GET, "/apps/schema-app", None).1),
        (
            "release",
            call(&env, Method::GET, "/apps/schema-app/releases/2", None).1,
        ),
        (
            "formation",
            call(&env, Method::GET, "/apps/schema-app/formation/web", None).1,
        ),
        ("account", call(&env, Method::GET, "/account", None).1),
        (
            "config-var",
            call(&env, Method::GET, "/apps/schema-app/config-vars", None).1,
        ),
    ];
    for (name, value) in checks {
        let errors = validate(&root, &def(name), &value);
        assert!(
            errors.is_empty(),
            "{name} does not match the schema: {errors:#?}\n{value}"
        );
        // Every property the schema defines for the resource is present (config vars are a map).
        if name != "config-var" {
            for key in def(name)["properties"].as_object().unwrap().keys() {
                let optional = matches!(
                    key.as_str(),
                    "addon_plan_names" | "artifacts" | "output_stream_url" | "app" | "dyno_size"
                );
                assert!(
                    value.get(key).is_some() || optional,
                    "{name} lacks {key}: {value}"
                );
            }
        }
    }
    let (_, list) = call(&env, Method::GET, "/apps/schema-app/releases", None);
    for r in list.as_array().unwrap() {
        assert!(validate(&root, &def("release"), r).is_empty());
    }
}
