//! Release retention (`[raft] retain_releases`) over a real 3-node cluster: with 5
//! retained, an app's older releases disappear from every node's listing (also from the
//! history on disk: the nodes keep only 2 in memory), with the slug only they used; a
//! rollback to a removed release is refused, one to the oldest kept works, and the app
//! keeps serving.

use std::time::Duration;

use haven_tests::{cluster_with, eventually, hctl, hctl_ok as ok, repo_path};
use serde_json::Value;

fn versions(env: &haven_tests::Env, i: usize) -> Option<Vec<u64>> {
    let v = env.get_json(i, "/apps/kept/releases").ok()?;
    let mut out: Vec<u64> = v
        .as_array()?
        .iter()
        .filter_map(|r| r["version"].as_u64())
        .collect();
    out.sort_unstable();
    Some(out)
}

#[test]
fn old_releases_go_with_their_slug_and_the_kept_ones_still_roll_back() {
    let env = cluster_with(
        3,
        Some("[raft]\nretain_releases = 5\nreleases_in_memory = 2\n"),
    );
    let fixture = repo_path("tests/fixtures/router-app");
    ok(hctl(&env, 0, &["apps:create", "kept"]));
    ok(hctl(
        &env,
        0,
        &["deploy", &fixture.to_string_lossy(), "-a", "kept"],
    ));
    let first: Value = env.get_json(0, "/apps/kept/releases/2").unwrap();
    let first_slug = first["slug"]["id"].as_str().unwrap().to_string();
    ok(hctl(
        &env,
        1,
        &["deploy", &fixture.to_string_lossy(), "-a", "kept"],
    ));
    ok(hctl(&env, 0, &["ps:scale", "web=1", "-a", "kept"]));
    for i in 0..8 {
        ok(hctl(
            &env,
            i % 3,
            &["config:set", &format!("N={i}"), "-a", "kept"],
        ));
    }
    // v1 (create), v2 and v3 (deploys), v4..v11 (config): v7..v11 are kept.
    for i in 0..3 {
        eventually(
            &format!("node {i} lists the last 5 releases"),
            Duration::from_secs(60),
            || (versions(&env, i)? == vec![7, 8, 9, 10, 11]).then_some(()),
        );
    }
    // The first deploy's slug went with v2; v3's stays (the kept releases run it).
    let gone = env.get_json(2, &format!("/apps/kept/slugs/{first_slug}"));
    assert!(gone.is_err(), "the first slug is still there: {gone:?}");
    let out = hctl(&env, 0, &["rollback", "v4", "-a", "kept"]);
    assert!(
        !out.status.success(),
        "a rollback to a removed release worked"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("find that release"), "{err}");
    ok(hctl(&env, 0, &["rollback", "v7", "-a", "kept"]));
    ok(hctl(&env, 0, &["ps:wait", "-a", "kept", "--timeout", "90"]));
    let c: Value = env.get_json(1, "/apps/kept/config-vars").unwrap();
    assert_eq!(c["N"], "3", "{c}");
    // v12 is the rollback; v7 falls out of the window next.
    for i in 0..3 {
        eventually(
            &format!("node {i} moves the window"),
            Duration::from_secs(60),
            || (versions(&env, i)? == vec![8, 9, 10, 11, 12]).then_some(()),
        );
    }
}
