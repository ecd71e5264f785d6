//! Tokens revoked, expired and of removed users refused on every node within a second;
//! passwords trade for tokens; Heroku's error bodies; no secret in any node's log.

use haven_tests::cluster;

use super::*;

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
