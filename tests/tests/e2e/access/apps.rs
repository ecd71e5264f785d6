//! A stranger, a collaborator, a removed collaborator and an admin against one app, through
//! the leader and a follower: every resource family refused or allowed as on Heroku.

use haven_tests::cluster;

use super::*;

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
