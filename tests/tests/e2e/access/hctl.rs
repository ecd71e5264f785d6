//! hctl's users, access and authorizations commands, and login by email and password.

use haven_tests::cluster;

use super::*;

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
