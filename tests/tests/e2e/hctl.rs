//! `hctl` against a real cluster, as a user types it.

use std::process::{Command, Output};

use haven_tests::{binary, cluster};
use serde_json::Value;

fn hctl(env: &haven_tests::Env, node: usize, args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(binary("hctl"))
        .args(args)
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
        .env("HAVEN_API", env.api(node))
        .env("HAVEN_TOKEN", env.token())
        .env("HAVEN_APP", "cli-app")
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "hctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn hctl_manages_an_app_through_any_node() {
    let env = cluster(3);
    assert!(ok(hctl(&env, 1, &["apps:create", "cli-app"])).contains("Creating ⬢ cli-app... done"));
    let out = ok(hctl(
        &env,
        2,
        &["config:set", "GREETING=hello world", "URL=x://a=b"],
    ));
    assert!(out.contains("done, v2"), "{out}");
    assert_eq!(ok(hctl(&env, 0, &["config:get", "URL"])).trim(), "x://a=b");
    let config: Value = serde_json::from_str(&ok(hctl(&env, 0, &["config", "--json"]))).unwrap();
    assert_eq!(config["GREETING"], "hello world");
    ok(hctl(&env, 1, &["config:unset", "URL"]));
    let releases = ok(hctl(&env, 1, &["releases"]));
    assert!(
        releases.contains("Remove URL config vars") && releases.contains("Initial release"),
        "{releases}"
    );
    let v2 = releases
        .lines()
        .find(|l| l.split_whitespace().next() == Some("v2"))
        .unwrap_or_else(|| panic!("no v2 line in:\n{releases}"));
    assert!(v2.contains("Set GREETING, URL config vars"), "{v2}");
    let listed: Value = serde_json::from_str(&ok(hctl(&env, 1, &["releases", "--json"]))).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");
    // Nothing was deployed to cli-app: Heroku refuses to roll back to a release without
    // a slug, and so does Haven.
    let refused = hctl(&env, 2, &["rollback"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("Cannot rollback to a release that had no slug."),
        "{err}"
    );
    // Rollbacks after a deploy (v2), on an app of their own (no dynos start there).
    ok(hctl(&env, 0, &["apps:create", "cli-rel"]));
    haven_tests::deploy_procfile_only(&env, "cli-rel");
    ok(hctl(
        &env,
        1,
        &["config:set", "URL=x://a=b", "-a", "cli-rel"],
    ));
    ok(hctl(&env, 1, &["config:unset", "URL", "-a", "cli-rel"]));
    let out = ok(hctl(&env, 2, &["rollback", "-a", "cli-rel"]));
    assert!(out.contains("to v3... done, v5"), "{out}");
    assert_eq!(
        ok(hctl(&env, 0, &["config:get", "URL", "-a", "cli-rel"])).trim(),
        "x://a=b"
    );
    let scaled: Value = serde_json::from_str(&ok(hctl(
        &env,
        0,
        &["ps:scale", "web=2", "worker=1:standard-2x", "--json"],
    )))
    .unwrap();
    assert_eq!(scaled.as_array().map(Vec::len), Some(2));
    assert!(ok(hctl(&env, 0, &["ps:scale", "web+1"])).contains("web=3"));
    let info: Value = serde_json::from_str(&ok(hctl(&env, 0, &["apps:info", "--json"]))).unwrap();
    assert_eq!(info["name"], "cli-app");
    let nodes: Value = serde_json::from_str(&ok(hctl(&env, 0, &["nodes", "--json"]))).unwrap();
    assert_eq!(nodes.as_array().map(Vec::len), Some(3));
    assert!(ok(hctl(&env, 0, &["cluster:status"])).contains("Voters:"));
    let refused = hctl(&env, 0, &["apps:destroy", "-a", "cli-app"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--confirm cli-app"));
    ok(hctl(
        &env,
        0,
        &["apps:destroy", "-a", "cli-app", "--confirm", "cli-app"],
    ));
    let apps: Value = serde_json::from_str(&ok(hctl(&env, 0, &["apps", "--json"]))).unwrap();
    let names: Vec<&str> = apps
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, ["cli-rel"], "cli-app is gone");
}

#[test]
fn hctl_errors_are_one_line_and_name_the_url() {
    let env = cluster(1);
    let home = tempfile::tempdir().unwrap();
    let bad_token = Command::new(binary("hctl"))
        .args(["apps"])
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
        .env("HAVEN_API", env.api(0))
        .env("HAVEN_TOKEN", "hvn_wrong")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad_token.stderr).to_string();
    assert!(!bad_token.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(env.api(0)) && err.contains("hctl login"),
        "{err}"
    );
    // Nothing listens on this loopback port.
    let unreachable = Command::new(binary("hctl"))
        .args(["apps"])
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
        .env("HAVEN_API", "http://127.0.0.1:9")
        .env("HAVEN_TOKEN", env.token())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&unreachable.stderr).to_string();
    assert!(!unreachable.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("http://127.0.0.1:9") && err.contains("cannot reach"),
        "{err}"
    );
    let missing = hctl(&env, 0, &["apps:info", "-a", "nope"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("Couldn't find that app."));
}

#[test]
fn hctl_login_saves_a_private_config() {
    use std::os::unix::fs::PermissionsExt;
    let env = cluster(1);
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(binary("hctl"))
        .args(["login", "--api", env.api(0), "--token", env.token()])
        .env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("HAVEN_API")
        .env_remove("HAVEN_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = home.path().join(".config/hctl/config.toml");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let who = Command::new(binary("hctl"))
        .args(["whoami"])
        .env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("HAVEN_API")
        .env_remove("HAVEN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&who.stdout).trim(),
        "admin@haven.local"
    );
}
