//! Builds over real clusters: `git push` to any node (real git over smart HTTP), `hctl
//! deploy`, buildpacks, slugs on several nodes, refusals, and one build at a time.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use haven_tests::{cluster, eventually, hctl, heroku_schema, validate_haven, Env};
use serde_json::{json, Value};

/// The repository's `examples/` dir.
fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("examples")
        .join(name)
}

fn git(dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@haven.local"])
        .args(["-c", "credential.helper=", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .unwrap()
}

fn git_ok(dir: &Path, args: &[&str]) -> String {
    let out = git(dir, args);
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A git repository holding a copy of `src`, with one commit.
fn repo_from(src: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(src, dir.path());
    git_ok(dir.path(), &["init", "-q"]);
    git_ok(dir.path(), &["add", "-A"]);
    git_ok(dir.path(), &["commit", "-q", "-m", "first"]);
    dir
}

fn copy_dir(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dest.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// `http://any:TOKEN@NODE/APP.git`.
fn remote(env: &Env, node: usize, app: &str, token: &str) -> String {
    let api = env.api(node);
    let hostport = api.trim_start_matches("http://");
    format!("http://git:{token}@{hostport}/{app}.git")
}

/// Pushes HEAD to `branch` of the app's remote on `node`; returns (success, stderr).
fn push(env: &Env, repo: &Path, node: usize, app: &str, branch: &str) -> (bool, String) {
    let url = remote(env, node, app, env.token());
    let out = git(repo, &["push", &url, &format!("HEAD:refs/heads/{branch}")]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn create_app(env: &Env, name: &str) {
    env.post_json(0, "/apps", &json!({ "name": name })).unwrap();
}

fn releases(env: &Env, node: usize, app: &str) -> Vec<Value> {
    env.get_json(node, &format!("/apps/{app}/releases"))
        .unwrap()
        .as_array()
        .cloned()
        .unwrap()
}

/// A buildpack in a temp dir (all nodes share this host's file system).
fn buildpack(detect: &str, compile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for (name, body) in [
        ("detect", detect),
        ("compile", compile),
        ("release", "echo '--- {}'"),
    ] {
        let p = bin.join(name);
        std::fs::write(&p, format!("#!/usr/bin/env bash\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

fn status_of(env: &Env, node: usize, path: &str) -> u16 {
    let url = format!("{}{path}", env.api(node));
    reqwest::blocking::Client::new()
        .get(url)
        .bearer_auth(env.token())
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[test]
fn git_push_to_any_node_builds_a_release_whose_slug_is_on_three_nodes() {
    let mut env = cluster(3);
    create_app(&env, "pushed");
    let repo = repo_from(&example("python-hello"));
    let commit = git_ok(repo.path(), &["rev-parse", "HEAD"]);

    let (ok, out) = push(&env, repo.path(), 1, "pushed", "main");
    assert!(ok, "push failed:\n{out}");
    for want in [
        "remote: -----> Building on the",
        "Python app detected",
        "remote: -----> Discovering process types",
        "Procfile declares types -> web",
        "remote: -----> Compressing...",
        "remote:        Released v2",
        "pushed.",
        "deployed to Haven",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // Output arrives in order.
    let detected = out.find("Python app detected").unwrap();
    let released = out.find("Released v2").unwrap();
    assert!(detected < released);

    let rels = releases(&env, 2, "pushed");
    let v2 = rels.iter().find(|r| r["version"] == 2).unwrap();
    assert_eq!(v2["description"], format!("Deploy {}", &commit[..7]));
    let slug = v2["slug"]["id"].as_str().unwrap().to_string();
    let formation = env.get_json(0, "/apps/pushed/formation/web").unwrap();
    assert_eq!(formation["quantity"], 1);
    assert_eq!(formation["command"], "python3 app.py");
    let slug_info = env
        .get_json(0, &format!("/apps/pushed/slugs/{slug}"))
        .unwrap();
    assert_eq!(slug_info["process_types"]["web"], "python3 app.py");
    assert_eq!(slug_info["commit"], commit);
    // Every node of three holds the slug before the release exists.
    for node in 0..3 {
        assert_eq!(
            status_of(&env, node, &format!("/apps/pushed/slugs/{slug}/blob")),
            200,
            "node {node} lacks the slug"
        );
    }
    let builds = env.get_json(0, "/apps/pushed/builds").unwrap();
    let schema = heroku_schema();
    let b = &builds[0];
    assert_eq!(b["status"], "succeeded");
    assert_eq!(b["release"]["id"], v2["id"]);
    let errs = validate_haven(&schema, &schema["definitions"]["build"], b);
    assert!(errs.is_empty(), "build JSON off-schema: {errs:?}\n{b}");

    // A second commit pushed to a node that never saw the app's repository.
    std::fs::write(repo.path().join("NOTES"), "v3").unwrap();
    git_ok(repo.path(), &["add", "-A"]);
    git_ok(repo.path(), &["commit", "-q", "-m", "second"]);
    let (ok, out) = push(&env, repo.path(), 2, "pushed", "master");
    assert!(ok, "second push failed:\n{out}");
    assert!(out.contains("Released v3"), "{out}");

    // The slug outlives the node that built it.
    env.kill(1).unwrap();
    for node in [0, 2] {
        assert_eq!(
            status_of(&env, node, &format!("/apps/pushed/slugs/{slug}/blob")),
            200
        );
    }
}

#[test]
fn pushes_that_cannot_deploy_are_refused_and_change_nothing() {
    let env = cluster(1);
    create_app(&env, "refusals");
    let repo = repo_from(&example("python-hello"));

    let (ok, out) = push(&env, repo.path(), 0, "refusals", "dev");
    assert!(!ok);
    assert!(out.contains("non-deploy branch dev"), "{out}");

    let url = remote(&env, 0, "refusals", "not-the-token");
    let bad = git(repo.path(), &["push", &url, "HEAD:refs/heads/main"]);
    assert!(!bad.status.success());
    let text = String::from_utf8_lossy(&bad.stderr);
    assert!(
        text.contains("Authentication failed") || text.contains("401"),
        "{text}"
    );

    let (ok, out) = push(&env, repo.path(), 0, "no-such-app", "main");
    assert!(!ok);
    assert!(out.contains("not found"), "{out}");

    let empty = tempfile::tempdir().unwrap();
    git_ok(empty.path(), &["init", "-q"]);
    let url = remote(&env, 0, "refusals", env.token());
    let out = git(empty.path(), &["push", &url, "main"]);
    assert!(
        !out.status.success(),
        "pushing an empty repository succeeded"
    );

    assert_eq!(
        releases(&env, 0, "refusals").len(),
        1,
        "no release was made"
    );
    let builds = env.get_json(0, "/apps/refusals/builds").unwrap();
    assert_eq!(builds.as_array().map(Vec::len), Some(0));
}

#[test]
fn a_failed_build_rejects_the_push_keeps_its_output_and_makes_no_release() {
    let env = cluster(1);
    create_app(&env, "failing");
    // Config vars reach the buildpack only as ENV_DIR files.
    let bp = buildpack(
        "echo Failing",
        r#"[ -z "$SECRET_KEY" ] && [ "$(cat "$3/SECRET_KEY")" = "s3cr3t-value" ] && echo "env dir ok"
echo "build uid $(id -u)"
echo "about to fail"
exit 3"#,
    );
    let bp_path = bp.path().to_string_lossy().into_owned();
    let (st, _) = env
        .request(
            0,
            reqwest::Method::PATCH,
            "/apps/failing/config-vars",
            Some(&json!({ "SECRET_KEY": "s3cr3t-value", "BUILDPACK_URL": bp_path })),
        )
        .unwrap();
    assert!(st.is_success());
    let before = releases(&env, 0, "failing").len();
    let repo = repo_from(&example("python-hello"));
    let (ok, out) = push(&env, repo.path(), 0, "failing", "main");
    assert!(!ok, "a failing build was accepted:\n{out}");
    assert!(out.contains("env dir ok"), "{out}");
    assert!(out.contains("about to fail"), "{out}");
    assert!(out.contains("pre-receive hook declined"), "{out}");
    // As root the build runs in the dyno sandbox, as the unprivileged dyno user.
    if nix::unistd::geteuid().is_root() {
        assert!(out.contains("build uid 64000"), "{out}");
    }
    assert!(
        !out.contains("s3cr3t-value"),
        "a config value leaked:\n{out}"
    );
    assert_eq!(releases(&env, 0, "failing").len(), before);
    let builds = env.get_json(0, "/apps/failing/builds").unwrap();
    let b = &builds[0];
    assert_eq!(b["status"], "failed");
    assert!(b["release"].is_null());
    // The output is kept.
    let text = reqwest::blocking::Client::new()
        .get(b["output_stream_url"].as_str().unwrap())
        .bearer_auth(env.token())
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(text.contains("about to fail"), "{text}");
}

#[test]
fn hctl_deploy_streams_the_build_and_hctl_lists_builds_and_buildpacks() {
    let env = cluster(2);
    create_app(&env, "deployed");
    let src = tempfile::tempdir().unwrap();
    copy_dir(&example("python-hello"), src.path());
    std::fs::create_dir_all(src.path().join("big")).unwrap();
    std::fs::write(src.path().join("big/ignored.bin"), "x").unwrap();
    std::fs::write(src.path().join(".slugignore"), "big/\n").unwrap();
    let dir = src.path().to_string_lossy().into_owned();
    let out = hctl(&env, 1, &["deploy", &dir, "-a", "deployed"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "deploy failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Python app detected"), "{stdout}");
    assert!(stdout.contains("Released v2"), "{stdout}");
    let rels = releases(&env, 0, "deployed");
    let v2 = rels.iter().find(|r| r["version"] == 2).unwrap();
    assert!(
        v2["description"].as_str().unwrap().starts_with("Deploy "),
        "{v2}"
    );

    let listed: Value =
        serde_json::from_slice(&hctl(&env, 0, &["builds", "--json", "-a", "deployed"]).stdout)
            .unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert_eq!(listed[0]["status"], "succeeded");
    let id = listed[0]["id"].as_str().unwrap();
    let output = hctl(&env, 0, &["builds:output", id, "-a", "deployed"]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("Released v2"));

    // Buildpacks: set, add, list, clear.
    assert!(hctl(
        &env,
        0,
        &["buildpacks:set", "heroku/python", "-a", "deployed"]
    )
    .status
    .success());
    assert!(hctl(
        &env,
        1,
        &["buildpacks:add", "heroku/nodejs", "-a", "deployed"]
    )
    .status
    .success());
    let list = String::from_utf8_lossy(&hctl(&env, 0, &["buildpacks", "-a", "deployed"]).stdout)
        .into_owned();
    assert!(
        list.contains("1. heroku/python") && list.contains("2. heroku/nodejs"),
        "{list}"
    );
    let bad = hctl(&env, 0, &["buildpacks:add", "not a url", "-a", "deployed"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid"));
    assert!(hctl(&env, 0, &["buildpacks:clear", "-a", "deployed"])
        .status
        .success());
    let api = env
        .get_json(0, "/apps/deployed/buildpack-installations")
        .unwrap();
    assert_eq!(api, json!([]));
}

#[test]
fn a_second_build_of_an_app_is_refused_while_the_first_runs() {
    let env = cluster(1);
    create_app(&env, "serial");
    // The buildpack waits (up to 120 s) until the test drops a file into the build dir
    // (which the build sandbox binds from the node's data dir).
    let bp = buildpack(
        "echo Gated",
        "echo waiting\nfor i in $(seq 1200); do [ -e \"$1/.gate-open\" ] && break; sleep 0.1; done\nrm -f \"$1/.gate-open\"\necho 'web: true' > $1/Procfile\necho gate passed",
    );
    let (st, _) = env
        .request(
            0,
            reqwest::Method::PUT,
            "/apps/serial/buildpack-installations",
            Some(&json!({ "updates": [{ "buildpack": bp.path().to_string_lossy() }] })),
        )
        .unwrap();
    assert!(st.is_success());
    let repo = repo_from(&example("python-hello"));
    let first = {
        let url = remote(&env, 0, "serial", env.token());
        let dir = repo.path().to_path_buf();
        std::thread::spawn(move || git(&dir, &["push", &url, "HEAD:refs/heads/main"]))
    };
    let first_id = eventually(
        "the first build is pending",
        Duration::from_secs(60),
        || {
            let b = env.get_json(0, "/apps/serial/builds").ok()?;
            (b[0]["status"] == "pending").then(|| b[0]["id"].as_str().unwrap().to_string())
        },
    );
    let cluster: Value =
        serde_json::from_str(&std::fs::read_to_string(env.dir().join("cluster.json")).unwrap())
            .unwrap();
    let build_dir = Path::new(cluster["nodes"][0]["data_dir"].as_str().unwrap())
        .join("builds")
        .join(&first_id)
        .join("app");
    let src = env.post_json(0, "/sources", &json!({})).unwrap();
    let put = src["source_blob"]["put_url"].as_str().unwrap();
    let tarball = Command::new("git")
        .args(["archive", "--format=tar", "HEAD"])
        .current_dir(repo.path())
        .output()
        .unwrap()
        .stdout;
    let r = reqwest::blocking::Client::new()
        .put(put)
        .bearer_auth(env.token())
        .body(tarball)
        .send()
        .unwrap();
    assert!(r.status().is_success());
    let second = reqwest::blocking::Client::new()
        .post(format!("{}/apps/serial/builds", env.api(0)))
        .bearer_auth(env.token())
        .json(&json!({ "source_blob": { "url": src["source_blob"]["get_url"] } }))
        .send()
        .unwrap();
    assert_eq!(second.status().as_u16(), 409);
    let body: Value = second.json().unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("already running"),
        "{body}"
    );
    std::fs::write(build_dir.join(".gate-open"), "").unwrap();
    let out = first.join().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("gate passed") && text.contains("Released v2"),
        "{text}"
    );
    let builds = env.get_json(0, "/apps/serial/builds").unwrap();
    assert_eq!(
        builds.as_array().map(Vec::len),
        Some(1),
        "the refused build left no record"
    );
}

#[test]
fn a_build_lost_with_its_node_fails_when_the_node_returns_and_the_app_deploys_again() {
    let mut env = cluster(3);
    create_app(&env, "lost");
    // A build that never ends by itself.
    let bp = buildpack(
        "echo Stuck",
        "echo building\nfor i in $(seq 1200); do sleep 0.1; done",
    );
    let (st, _) = env
        .request(
            0,
            reqwest::Method::PUT,
            "/apps/lost/buildpack-installations",
            Some(&json!({ "updates": [{ "buildpack": bp.path().to_string_lossy() }] })),
        )
        .unwrap();
    assert!(st.is_success());
    let repo = repo_from(&example("python-hello"));
    let push1 = {
        let url = remote(&env, 1, "lost", env.token());
        let dir = repo.path().to_path_buf();
        std::thread::spawn(move || git(&dir, &["push", &url, "HEAD:refs/heads/main"]))
    };
    let id = eventually("the build is pending", Duration::from_secs(60), || {
        let b = env.get_json(0, "/apps/lost/builds").ok()?;
        (b[0]["status"] == "pending").then(|| b[0]["id"].as_str().unwrap().to_string())
    });
    // The builder's node dies in the middle of the build and comes back.
    env.kill(1).unwrap();
    let _ = push1.join();
    env.restart(1).unwrap();
    env.wait_ready(1, Duration::from_secs(60)).unwrap();
    eventually("the lost build failed", Duration::from_secs(60), || {
        let b = env.get_json(0, &format!("/apps/lost/builds/{id}")).ok()?;
        (b["status"] == "failed").then_some(())
    });
    // The app is not stuck behind it: a new deploy through another node goes through.
    let (st, _) = env
        .request(
            0,
            reqwest::Method::PUT,
            "/apps/lost/buildpack-installations",
            Some(&json!({ "updates": [] })),
        )
        .unwrap();
    assert!(st.is_success());
    let (ok, text) = push(&env, repo.path(), 0, "lost", "main");
    assert!(ok, "{text}");
    assert!(text.contains("Released v"), "{text}");
}
