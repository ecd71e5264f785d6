//! Backup and restore of the cluster state (issue 18, item 4), over real clusters: a
//! 3-node cluster with an app (a deployed slug, config vars, a release history longer
//! than the nodes keep in memory, a formation) is backed up with `hctl cluster:backup
//! --slugs`, destroyed, and restored with `havend restore` on a fresh data dir; a second
//! node joins the restored one. The app comes back with the same releases, config and
//! formation, serves through the routers from the restored slug, old API tokens still
//! work, and every node holds the same state. A backup of a newer format is refused.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use haven_tests::{cluster_opts, eventually, hctl, hctl_ok as ok, repo_path};
use serde_json::Value;

const SMALL_MEMORY: &str = "[raft]\nreleases_in_memory = 3\n";

fn releases(env: &haven_tests::Env, i: usize) -> Vec<(String, u64, String)> {
    let out = ok(hctl(env, i, &["releases", "-a", "keeper", "--json"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    let mut r: Vec<(String, u64, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["version"].as_u64().unwrap(),
                r["description"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    r.sort_by_key(|x| x.1);
    r
}

fn config(env: &haven_tests::Env, i: usize) -> Value {
    env.get_json(i, "/apps/keeper/config-vars").unwrap()
}

fn formation(env: &haven_tests::Env, i: usize) -> Vec<(String, u64)> {
    let v = env.get_json(i, "/apps/keeper/formation").unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["type"].as_str().unwrap().to_string(),
                f["quantity"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn answers(env: &haven_tests::Env, i: usize) -> bool {
    reqwest::blocking::Client::new()
        .get(format!("{}/", env.router(i)))
        .header("Host", "keeper.localhost")
        .timeout(Duration::from_secs(5))
        .send()
        .is_ok_and(|r| r.status().is_success())
}

#[test]
fn a_restored_cluster_has_the_apps_releases_and_config_it_had() {
    let keep = tempfile::tempdir().unwrap();
    let file = keep.path().join("cluster.tar.gz");
    let (before_releases, before_config, before_formation, old_token, manifest) = {
        let mut env = cluster_opts(3, |o| o.config_toml = Some(SMALL_MEMORY.into()));
        let fixture = repo_path("tests/fixtures/router-app");
        ok(hctl(&env, 0, &["apps:create", "keeper"]));
        ok(hctl(
            &env,
            1,
            &["deploy", &fixture.to_string_lossy(), "-a", "keeper"],
        ));
        for i in 0..6 {
            ok(hctl(
                &env,
                i % 3,
                &[
                    "config:set",
                    &format!("STEP={i}"),
                    "SECRET=s3cr3t",
                    "-a",
                    "keeper",
                ],
            ));
        }
        ok(hctl(&env, 0, &["ps:scale", "web=2", "-a", "keeper"]));
        ok(hctl(
            &env,
            0,
            &["ps:wait", "-a", "keeper", "--timeout", "90"],
        ));
        let rel = releases(&env, 2);
        assert!(rel.len() >= 8, "{rel:?}");
        // Taken through a follower: it fetches the slug from a holder if it lacks it.
        let leader = env.leader_index().unwrap();
        let through = (0..3).find(|i| *i != leader).unwrap();
        let out = ok(hctl(
            &env,
            through,
            &[
                "cluster:backup",
                &file.to_string_lossy(),
                "--slugs",
                "--json",
            ],
        ));
        let manifest: Value = serde_json::from_str(&out).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(&file.metadata().unwrap().permissions());
        assert_eq!(
            mode & 0o077,
            0,
            "the backup is readable by others: {mode:o}"
        );
        (
            rel,
            config(&env, 0),
            formation(&env, 0),
            env.token().to_string(),
            manifest,
        )
        // The whole cluster is destroyed here.
    };
    assert_eq!(manifest["kind"], "haven-cluster-backup");
    assert_eq!(manifest["apps"], 1);
    assert_eq!(
        manifest["missing"].as_array().unwrap().len(),
        0,
        "{manifest}"
    );
    assert_eq!(manifest["blobs"].as_array().unwrap().len(), 1, "{manifest}");

    let env = cluster_opts(2, |o| {
        o.config_toml = Some(SMALL_MEMORY.into());
        o.restore_from = Some(file.clone());
    });
    for i in 0..2 {
        assert_eq!(releases(&env, i), before_releases, "releases on node {i}");
        assert_eq!(config(&env, i), before_config, "config on node {i}");
        assert_eq!(
            formation(&env, i),
            before_formation,
            "formation on node {i}"
        );
    }
    // The app runs again from the slug that came with the backup, on the new nodes.
    for i in 0..2 {
        eventually(
            &format!("keeper answers through node {i}'s router"),
            Duration::from_secs(120),
            || answers(&env, i).then_some(()),
        );
    }
    // Tokens of the old cluster still authenticate.
    let resp = reqwest::blocking::Client::new()
        .get(format!("{}/apps/keeper", env.api(1)))
        .bearer_auth(&old_token)
        .header("Accept", "application/vnd.heroku+json; version=3")
        .send()
        .unwrap();
    assert!(resp.status().is_success(), "old token: {}", resp.status());
    // A backup is restored only into a new data dir, and a newer format is refused.
    let havend = haven_tests::binary("havend");
    let newer = keep.path().join("newer.tar.gz");
    write_backup_of_format(&newer, 99);
    let out = std::process::Command::new(&havend)
        .args(["restore", "--from"])
        .arg(&newer)
        .arg("--data-dir")
        .arg(keep.path().join("fresh"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("format 99") && err.contains("newer havend"),
        "{err}"
    );
    assert!(
        !keep.path().join("fresh").exists(),
        "a refused restore leaves its data dir"
    );
}

/// A backup file whose manifest claims `format`.
fn write_backup_of_format(path: &Path, format: u32) {
    let manifest = serde_json::json!({
        "kind": "haven-cluster-backup", "format": format, "haven_version": "99.0.0",
        "created_at": "2030-01-01T00:00:00Z", "cluster_id": "x", "cluster_name": "haven",
        "node": "node-0", "apps": 0, "releases": 0, "blobs": [],
    })
    .to_string();
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    );
    let mut t = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_size(manifest.len() as u64);
    h.set_cksum();
    t.append_data(&mut h, "manifest.json", manifest.as_bytes())
        .unwrap();
    t.into_inner().unwrap().finish().unwrap().flush().unwrap();
}
