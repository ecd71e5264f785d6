//! Slug upkeep over a real 4-node cluster: a node down during a deploy lacks the slug;
//! when a holder then dies (past the timeout), the leader copies the slug to it, and new
//! placements of the release start; a deleted app's slug leaves every node's store.

use std::time::Duration;

use haven_tests::{eventually, hctl, hctl_ok as ok, repo_path, Env};
use serde_json::Value;

fn slug_of(env: &Env, node: usize, app: &str) -> Value {
    let releases = env
        .get_json(node, &format!("/apps/{app}/releases"))
        .unwrap();
    let slug = releases.as_array().unwrap().last().unwrap()["slug"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    env.get_json(node, &format!("/apps/{app}/slugs/{slug}"))
        .unwrap()
}

fn holders(slug: &Value) -> Vec<String> {
    slug["holders"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|h| h.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_slug_whose_holders_died_is_copied_so_its_release_still_starts() {
    let mut env = haven_tests::cluster_with(
        4,
        Some("[dynos]\nvoter_replace_after_secs = 2\n[builds]\nslug_gc_grace_secs = 10\n"),
    );
    let fixture = repo_path("tests/fixtures/router-app");
    // A node that is down while the app deploys does not get the slug.
    let leader = env.leader_index().unwrap();
    let away = (0..4).find(|i| *i != leader).unwrap();
    let away_id = env.node_id(away).to_string();
    env.kill(away).unwrap();
    eventually("the node marked down", Duration::from_secs(30), || {
        let nodes = env.get_json(leader, "/cluster/nodes").ok()?;
        nodes
            .as_array()?
            .iter()
            .any(|n| n["id"] == away_id.as_str() && n["status"] == "down")
            .then_some(())
    });
    // A worker-only app: no dyno runs (and fetches the slug) until it is scaled.
    ok(hctl(&env, leader, &["apps:create", "kept"]));
    let dir = tempfile::tempdir().unwrap();
    let src = fixture.to_string_lossy().into_owned();
    std::fs::write(dir.path().join("Procfile"), "worker: sleep 3600\n").unwrap();
    ok(hctl(
        &env,
        leader,
        &["deploy", &dir.path().to_string_lossy(), "-a", "kept"],
    ));
    let first = holders(&slug_of(&env, leader, "kept"));
    assert_eq!(first.len(), 3, "{first:?}");
    assert!(!first.contains(&away_id));
    env.restart(away).unwrap();
    env.wait_ready(away, Duration::from_secs(60)).unwrap();

    // A holder dies: past the timeout, the slug is copied to the node that lacked it.
    let victim = first
        .iter()
        .map(|id| env.index_of(id).unwrap())
        .find(|i| *i != leader)
        .unwrap();
    env.kill(victim).unwrap();
    eventually(
        "the slug copied to the node that lacked it",
        Duration::from_secs(90),
        || {
            let h = holders(&slug_of(&env, leader, "kept"));
            h.contains(&away_id).then_some(())
        },
    );
    let victims = [victim];
    // The release starts on the node that got the copy, as on the others.
    ok(hctl(&env, leader, &["ps:scale", "worker=3", "-a", "kept"]));
    eventually("three worker dynos up", Duration::from_secs(90), || {
        let dynos = env.get_json(leader, "/apps/kept/dynos").ok()?;
        let up = dynos
            .as_array()?
            .iter()
            .filter(|d| d["type"] == "worker" && d["state"] == "up")
            .count();
        (up == 3).then_some(())
    });
    let events = env.get_json(leader, "/cluster/events").unwrap();
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "slugs" && e["message"].as_str().unwrap().contains("copied slug")),
        "{events}"
    );

    // A deleted app's slug leaves the stores of the live nodes.
    ok(hctl(&env, leader, &["apps:create", "short-lived"]));
    ok(hctl(&env, leader, &["deploy", &src, "-a", "short-lived"]));
    let sha = slug_of(&env, leader, "short-lived")["checksum"]
        .as_str()
        .unwrap()
        .trim_start_matches("SHA256:")
        .to_string();
    let live: Vec<usize> = (0..4).filter(|i| !victims.contains(i)).collect();
    let file = |i: usize| {
        env.data_dir(i)
            .unwrap()
            .join("slugs")
            .join(format!("{sha}.tar.zst"))
    };
    assert!(live.iter().any(|i| file(*i).exists()));
    ok(hctl(
        &env,
        leader,
        &[
            "apps:destroy",
            "-a",
            "short-lived",
            "--confirm",
            "short-lived",
        ],
    ));
    eventually(
        "the deleted app's slug gone from every live node",
        Duration::from_secs(90),
        || live.iter().all(|i| !file(*i).exists()).then_some(()),
    );
    // The kept app's slug is still there.
    let kept = slug_of(&env, leader, "kept")["checksum"]
        .as_str()
        .unwrap()
        .trim_start_matches("SHA256:")
        .to_string();
    let kept_file = env
        .data_dir(leader)
        .unwrap()
        .join("slugs")
        .join(format!("{kept}.tar.zst"));
    assert!(kept_file.exists());
}
