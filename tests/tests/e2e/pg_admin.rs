//! Postgres administration over a real cluster: `pg:promote` moves DATABASE_URL to
//! another database in one release (the old one keeps its colour var) and needs the
//! app's name as confirmation over the API; a service name naming two of the app's
//! databases is `multiple_matches`; `pg:credentials:rotate` gives a database a
//! new password: the new URL works, the old password no longer does, and data stays.

use std::process::Command;
use std::time::Duration;

use haven_tests::{cluster, eventually, hctl, hctl_ok as ok, Env};
use serde_json::{json, Value};

fn config(env: &Env, app: &str) -> Value {
    env.get_json(0, &format!("/apps/{app}/config-vars"))
        .unwrap()
}

fn last_description(env: &Env, app: &str) -> String {
    let rels = env.get_json(0, &format!("/apps/{app}/releases")).unwrap();
    rels.as_array().unwrap().last().unwrap()["description"]
        .as_str()
        .unwrap()
        .to_string()
}

fn create(env: &Env, app: &str) -> String {
    let out = ok(hctl(
        env,
        0,
        &[
            "addons:create",
            "heroku-postgresql:essential-0",
            "-a",
            app,
            "--wait",
        ],
    ));
    out.lines()
        .find(|l| l.starts_with("Created "))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("{out}"))
        .to_string()
}

/// `psql URL -c SQL` from the host (sslmode=require): its output, or its error.
fn psql_url(url: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .arg(url)
        .args(["-XAtc", sql])
        .env("PGSSLMODE", "require")
        .env("PGCONNECT_TIMEOUT", "3")
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

#[test]
fn promote_moves_database_url_and_rotation_replaces_the_password() {
    let env = cluster(1);
    env.post_json(0, "/apps", &json!({ "name": "shop" }))
        .unwrap();
    create(&env, "shop");
    let second = create(&env, "shop");
    let before = config(&env, "shop");
    let first_url = before["DATABASE_URL"].as_str().unwrap().to_string();
    let second_att: Vec<Value> = env
        .get_json(0, "/apps/shop/addon-attachments")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["addon"]["name"] == second.as_str())
        .cloned()
        .collect();
    let second_var = second_att[0]["config_vars"][0]
        .as_str()
        .unwrap()
        .to_string();
    let second_url = before[&second_var].as_str().unwrap().to_string();
    assert_ne!(first_url, second_url);
    psql_url(
        &second_url,
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('second')",
    )
    .unwrap();

    // Two databases: the service name is ambiguous within the app, a name is not.
    let err = env
        .post_json(
            0,
            "/actions/addons/resolve",
            &json!({"addon": "heroku-postgresql", "app": "shop"}),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("multiple_matches") && err.contains(&second),
        "{err}"
    );
    let one = env
        .post_json(
            0,
            "/actions/addons/resolve",
            &json!({"addon": second, "app": "shop"}),
        )
        .unwrap();
    assert_eq!(one.as_array().unwrap().len(), 1);

    // Over the API, taking the DATABASE name needs the app's name.
    let err = env
        .post_json(
            0,
            "/addon-attachments",
            &json!({"addon": second, "app": "shop", "name": "DATABASE"}),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("confirmation_required"), "{err}");
    assert_eq!(config(&env, "shop"), before, "nothing changed");

    let out = ok(hctl(&env, 0, &["pg:promote", &second, "-a", "shop"]));
    assert!(out.contains("Promoting") && out.contains("done"), "{out}");
    let after = config(&env, "shop");
    assert_eq!(after["DATABASE_URL"], second_url.as_str());
    assert_eq!(after[&second_var], second_url.as_str());
    let kept: Vec<&String> = after
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, v)| k.starts_with("HEROKU_POSTGRESQL_") && **v == first_url.as_str())
        .map(|(k, _)| k)
        .collect();
    assert_eq!(kept.len(), 1, "the old database keeps its colour: {after}");
    assert_eq!(
        last_description(&env, "shop"),
        format!("Attach DATABASE (@ref:{second})")
    );
    // pg:psql's default is the promoted database now.
    let v = ok(hctl(
        &env,
        0,
        &["pg:psql", "-a", "shop", "-c", "SELECT v FROM t"],
    ));
    assert!(v.contains("second"), "{v}");
    let again = hctl(&env, 0, &["pg:promote", &second, "-a", "shop"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already the DATABASE_URL"),
        "{again:?}"
    );

    // Rotation: refused without confirmation; then a new password in a new release.
    let out = hctl(&env, 0, &["pg:credentials:rotate", "-a", "shop"]);
    assert!(!out.status.success());
    assert_eq!(config(&env, "shop"), after, "nothing changed");
    let out = ok(hctl(
        &env,
        0,
        &["pg:credentials:rotate", "-a", "shop", "--confirm", "shop"],
    ));
    assert!(out.contains("done"), "{out}");
    let rotated = config(&env, "shop");
    let new_url = rotated["DATABASE_URL"].as_str().unwrap().to_string();
    assert_ne!(new_url, second_url);
    assert_eq!(rotated[&second_var], new_url.as_str());
    assert_eq!(
        last_description(&env, "shop"),
        format!("Rotate credentials of DATABASE (@ref:{second})")
    );
    eventually(
        "the new password works and the old one does not",
        Duration::from_secs(30),
        || {
            let new_ok = psql_url(&new_url, "SELECT v FROM t").ok()? == "second";
            let old_refused = psql_url(&second_url, "SELECT 1")
                .err()
                .is_some_and(|e| e.contains("password authentication failed"));
            (new_ok && old_refused).then_some(())
        },
    );
    // The other database's credentials did not change.
    assert_eq!(psql_url(&first_url, "SELECT 1").unwrap(), "1");
}
