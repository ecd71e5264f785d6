//! HA Redis (`heroku-redis:premium-0`) over a real 3-node cluster: a primary and a
//! replica on another node; keys the replica acknowledged (`WAIT`) survive a SIGKILL of
//! the primary's node because the leader fails over to the replica, which promotes
//! itself; REDIS_URL moves to it in a new release; the old primary's node returns and
//! its member comes back as a replica of the new primary, refusing writes.

use std::process::Command;
use std::time::{Duration, Instant};

use haven_tests::{cluster, eventually, hctl, hctl_command, hctl_ok as ok, Env};
use serde_json::{json, Value};

/// `hctl redis:cli -a APP -- ARGS` through node `node`: its trimmed output, if it ran.
fn redis(env: &Env, node: usize, app: &str, args: &[&str]) -> Option<String> {
    let mut a = vec!["redis:cli", "-a", app, "--"];
    a.extend_from_slice(args);
    let out = hctl_command(env, node, &a).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `redis-cli` straight to a member's address, as a client holding an old URL would.
fn redis_at(password: &str, m: &Value, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .env("REDISCLI_AUTH", password)
        .args(["-h", m["host"].as_str().unwrap(), "-p"])
        .arg(m["port"].to_string())
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn addon(env: &Env, node: usize, name: &str) -> Value {
    env.get_json(node, &format!("/addons/{name}")).unwrap()
}

fn role(env: &Env, a: &Value, role: &str) -> (usize, Value) {
    let m = a["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == role)
        .unwrap_or_else(|| panic!("no {role} in {a}"))
        .clone();
    (env.index_of(m["node"]["id"].as_str().unwrap()).unwrap(), m)
}

fn in_sync(a: &Value) -> bool {
    a["state"] == "provisioned"
        && a["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["up"] == true && (m["role"] == "primary" || m["synced"] == true))
}

fn redis_url(env: &Env, node: usize, app: &str) -> String {
    env.get_json(node, &format!("/apps/{app}/config-vars"))
        .unwrap()["REDIS_URL"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn premium_0_fails_over_to_its_replica_and_the_old_primary_follows_the_new_one() {
    let mut env = cluster(3);
    env.post_json(0, "/apps", &json!({ "name": "cache" }))
        .unwrap();
    let out = ok(hctl(
        &env,
        0,
        &[
            "addons:create",
            "heroku-redis:premium-0",
            "-a",
            "cache",
            "--wait",
        ],
    ));
    let name = out
        .lines()
        .find(|l| l.starts_with("Created "))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    let a = eventually("the replica in sync", Duration::from_secs(120), || {
        let a = addon(&env, 0, &name);
        in_sync(&a).then_some(a)
    });
    let (p_node, primary) = role(&env, &a, "primary");
    let (s_node, replica) = role(&env, &a, "standby");
    assert_ne!(p_node, s_node);
    let other = (0..3).find(|i| *i != p_node && *i != s_node).unwrap();
    let url = redis_url(&env, other, "cache");
    let password = url
        .strip_prefix("redis://default:")
        .and_then(|r| r.split_once('@'))
        .unwrap()
        .0
        .to_string();
    let at = |m: &Value| format!("@{}:{}", m["host"].as_str().unwrap(), m["port"]);
    assert!(url.contains(&at(&primary)), "{url}");
    let info = ok(hctl(&env, other, &["redis:info", "-a", "cache"]));
    assert!(
        info.contains("HA Status") && info.contains("Available") && info.contains("Replica"),
        "{info}"
    );
    // The replica is read-only.
    assert!(
        redis_at(&password, &replica, &["SET", "x", "1"]).contains("READONLY"),
        "a replica refuses writes"
    );

    // Keys, then WAIT until the replica has them all (Redis replicates asynchronously).
    let n = 30;
    for i in 1..=n {
        let k = format!("k{i}");
        let v = format!("v{i}");
        assert_eq!(
            redis(&env, other, "cache", &["SET", &k, &v]).as_deref(),
            Some("OK")
        );
    }
    assert_eq!(
        redis(&env, other, "cache", &["WAIT", "1", "5000"]).as_deref(),
        Some("1"),
        "the replica acknowledged every key"
    );

    // The primary's host dies.
    let killed = Instant::now();
    env.kill(p_node).unwrap();
    eventually(
        "the promoted replica takes writes through REDIS_URL",
        Duration::from_secs(90),
        || {
            let url = redis_url(&env, other, "cache");
            if !url.contains(&at(&replica)) {
                return None;
            }
            (redis(&env, other, "cache", &["SET", "after", "1"]).as_deref() == Some("OK"))
                .then_some(())
        },
    );
    println!(
        "redis failover: primary's node killed → the replica takes writes through REDIS_URL in {:.1} s",
        killed.elapsed().as_secs_f64()
    );
    for i in 1..=n {
        assert_eq!(
            redis(&env, other, "cache", &["GET", &format!("k{i}")]).as_deref(),
            Some(format!("v{i}").as_str()),
            "key k{i} survived"
        );
    }
    let rels = env.get_json(other, "/apps/cache/releases").unwrap();
    let last = rels.as_array().unwrap().last().unwrap().clone();
    assert!(
        last["description"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Failover REDIS (@ref:{name})")),
        "{last}"
    );

    // The old primary's node returns: its member follows the new primary.
    env.restart(p_node).unwrap();
    let a = eventually(
        "the old primary back as an in-sync replica",
        Duration::from_secs(120),
        || {
            let a = addon(&env, other, &name);
            in_sync(&a).then_some(a)
        },
    );
    let (back, m) = role(&env, &a, "standby");
    assert_eq!(back, p_node);
    assert_eq!(m["id"], primary["id"]);
    assert!(
        redis_at(&password, &m, &["SET", "stale", "1"]).contains("READONLY"),
        "the old primary never takes writes again"
    );
    assert_eq!(
        redis(&env, other, "cache", &["SET", "later", "2"]).as_deref(),
        Some("OK")
    );
    assert_eq!(
        redis(&env, other, "cache", &["WAIT", "1", "5000"]).as_deref(),
        Some("1")
    );
    assert_eq!(redis_at(&password, &m, &["GET", "later"]), "2");
    assert_eq!(redis_at(&password, &m, &["GET", "k1"]), "v1");
}
