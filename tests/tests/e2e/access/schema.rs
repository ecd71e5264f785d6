//! Users, collaborators and authorizations as the Heroku Platform API schema has them.

use haven_tests::{cluster, heroku_schema, validate_haven};

use super::*;

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
