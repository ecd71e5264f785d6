//! Connected repositories over a real cluster: every new commit on the followed branch of
//! a real git repository is built and released exactly once — through a leader's death —,
//! other branches are ignored, and a webhook call signed with the link's secret deploys
//! at once while an unsigned one does nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use haven_tests::{eventually, hctl, hctl_ok as ok, repo_path, Env};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// A git repository holding the router test app, on branch `main`.
struct Repo {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.email=dev@example.com", "-c", "user.name=Dev"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app");
        std::fs::create_dir(&path).unwrap();
        for f in ["Procfile", "app.py", "requirements.txt"] {
            std::fs::copy(repo_path("tests/fixtures/router-app").join(f), path.join(f)).unwrap();
        }
        git(&path, &["init", "--quiet", "-b", "main"]);
        git(&path, &["add", "."]);
        git(&path, &["commit", "--quiet", "-m", "first"]);
        Repo { _dir: dir, path }
    }

    fn url(&self) -> String {
        format!("file://{}", self.path.display())
    }

    /// A new commit on `branch`: its id.
    fn commit(&self, branch: &str, msg: &str) -> String {
        let current = git(&self.path, &["rev-parse", "--abbrev-ref", "HEAD"]);
        if current != branch {
            let exists = Command::new("git")
                .args(["rev-parse", "--verify", "--quiet", branch])
                .current_dir(&self.path)
                .output()
                .unwrap()
                .status
                .success();
            if exists {
                git(&self.path, &["checkout", "--quiet", branch]);
            } else {
                git(&self.path, &["checkout", "--quiet", "-b", branch]);
            }
        }
        std::fs::write(self.path.join("CHANGES"), msg).unwrap();
        git(&self.path, &["add", "CHANGES"]);
        git(&self.path, &["commit", "--quiet", "-m", msg]);
        git(&self.path, &["rev-parse", "HEAD"])
    }

    fn head(&self) -> String {
        git(&self.path, &["rev-parse", "HEAD"])
    }
}

/// The app's builds of `commit` (any node's view).
fn builds_of(env: &Env, node: usize, app: &str, commit: &str) -> Vec<Value> {
    env.get_json(node, &format!("/apps/{app}/builds"))
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["source_blob"]["version"] == commit)
        .cloned()
        .collect()
}

/// Waits until `commit` is built and its release is the app's current one.
fn released(env: &Env, node: usize, app: &str, commit: &str) {
    eventually(
        &format!("a release of {commit}"),
        Duration::from_secs(240),
        || {
            let b = builds_of(env, node, app, commit);
            assert!(
                !b.iter().any(|b| b["status"] == "failed"),
                "the build of {commit} failed: {b:?}"
            );
            let ok = b.iter().any(|b| b["status"] == "succeeded");
            let releases = env.get_json(node, &format!("/apps/{app}/releases")).ok()?;
            let last = releases.as_array()?.last()?.clone();
            (ok && last["description"].as_str()?.contains(&commit[..7])).then_some(())
        },
    );
}

#[test]
fn a_connected_branch_deploys_each_new_commit_once_through_a_leader_death() {
    let mut env = haven_tests::cluster_with(3, Some("[builds]\nrepo_poll_ms = 300\n"));
    let repo = Repo::new();
    ok(hctl(&env, 0, &["apps:create", "follows-main"]));

    // Bad input is told at once and connects nothing.
    let bad = hctl(
        &env,
        1,
        &["repo:connect", "ext::sh -c x", "-a", "follows-main"],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is invalid"));
    let missing = hctl(
        &env,
        1,
        &[
            "repo:connect",
            &repo.url(),
            "--branch",
            "nope",
            "-a",
            "follows-main",
        ],
    );
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("has no branch nope"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    let gone = format!("file://{}/none", repo.path.display());
    let unreadable = hctl(&env, 1, &["repo:connect", &gone, "-a", "follows-main"]);
    assert!(!unreadable.status.success());
    assert!(String::from_utf8_lossy(&unreadable.stderr).contains("cannot read"));
    assert_eq!(
        env.request(1, reqwest::Method::GET, "/apps/follows-main/repo", None)
            .unwrap()
            .0
            .as_u16(),
        404
    );

    // Connected: the branch's head deploys and serves.
    let out = ok(hctl(
        &env,
        1,
        &["repo:connect", &repo.url(), "-a", "follows-main"],
    ));
    assert!(out.contains("Webhook secret"), "{out}");
    let first = repo.head();
    released(&env, 0, "follows-main", &first);
    eventually("the app to answer", Duration::from_secs(60), || {
        let r = reqwest::blocking::Client::new()
            .get(format!("{}/", env.router(2)))
            .header("Host", "follows-main.localhost")
            .send()
            .ok()?;
        r.status().is_success().then_some(())
    });

    // A commit on another branch is not deployed; the next one on main is.
    let other = repo.commit("dev", "not followed");
    let second = repo.commit("main", "second");
    released(&env, 2, "follows-main", &second);
    assert!(builds_of(&env, 0, "follows-main", &other).is_empty());

    // The leader dies; the next leader follows on without building a commit twice.
    let leader = env.leader_index().unwrap();
    env.kill(leader).unwrap();
    let alive = (0..3).find(|i| *i != leader).unwrap();
    // A build copies its slug to three nodes, so it waits until the dead one is known
    // down (else it fails for want of the third copy, as a push would).
    let dead_id = env.node_id(leader).to_string();
    eventually(
        "the dead leader marked down",
        Duration::from_secs(60),
        || {
            let nodes = env.get_json(alive, "/cluster/nodes").ok()?;
            nodes
                .as_array()?
                .iter()
                .any(|n| n["id"] == dead_id.as_str() && n["status"] == "down")
                .then_some(())
        },
    );
    let third = repo.commit("main", "third");
    released(&env, alive, "follows-main", &third);
    for c in [&first, &second, &third] {
        let b = builds_of(&env, alive, "follows-main", c);
        assert_eq!(b.len(), 1, "builds of {c}: {b:?}");
    }
    let info: Value = serde_json::from_str(&ok(hctl(
        &env,
        alive,
        &["repo:info", "--json", "-a", "follows-main"],
    )))
    .unwrap();
    assert_eq!(info["last_commit"], third.as_str());
    assert_eq!(info["last_build"]["status"], "succeeded");
    assert!(info.get("webhook_secret").is_none(), "{info}");

    // Disconnected: nothing more is deployed.
    ok(hctl(
        &env,
        alive,
        &["repo:disconnect", "-a", "follows-main"],
    ));
    let fourth = repo.commit("main", "fourth");
    let fifth_app = "follows-too";
    ok(hctl(&env, alive, &["apps:create", fifth_app]));
    ok(hctl(
        &env,
        alive,
        &["repo:connect", &repo.url(), "-a", fifth_app],
    ));
    // By the time another app connected to the same branch has built it, the
    // disconnected one has had many polls to (wrongly) build it too.
    released(&env, alive, fifth_app, &fourth);
    assert!(builds_of(&env, alive, "follows-main", &fourth).is_empty());
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[test]
fn a_signed_webhook_call_deploys_at_once_and_an_unsigned_one_does_nothing() {
    // Polls are an hour apart: only the connect and the webhook make builds here.
    let mut env = haven_tests::cluster_with(2, Some("[builds]\nrepo_poll_ms = 3600000\n"));
    let repo = Repo::new();
    ok(hctl(&env, 0, &["apps:create", "hooked"]));
    let connected: Value = serde_json::from_str(&ok(hctl(
        &env,
        0,
        &["repo:connect", &repo.url(), "--json", "-a", "hooked"],
    )))
    .unwrap();
    let secret = connected["webhook_secret"].as_str().unwrap().to_string();
    assert!(connected["webhook_url"]
        .as_str()
        .unwrap()
        .ends_with("/apps/hooked/repo/hook"));
    released(&env, 0, "hooked", &repo.head());

    // The hook is called on a node that does not lead: it passes the call on.
    let leader = env.leader_index().unwrap();
    let other = 1 - leader;
    let second = repo.commit("main", "second");
    let body = br#"{"ref":"refs/heads/main"}"#.to_vec();
    let hook = |headers: &[(&str, String)]| {
        let mut r = reqwest::blocking::Client::new()
            .post(format!("{}/apps/hooked/repo/hook", env.api(other)))
            .header("Content-Type", "application/json")
            .header("Accept", "*/*")
            .body(body.clone());
        for (k, v) in headers {
            r = r.header(*k, v);
        }
        r.send().unwrap().status().as_u16()
    };
    assert_eq!(hook(&[]), 401);
    assert_eq!(
        hook(&[("X-Hub-Signature-256", sign("not-the-secret", &body))]),
        401
    );
    assert_eq!(hook(&[("X-Gitlab-Token", "not-the-secret".into())]), 401);
    assert!(builds_of(&env, 0, "hooked", &second).is_empty());
    assert_eq!(hook(&[("X-Hub-Signature-256", sign(&secret, &body))]), 202);
    released(&env, other, "hooked", &second);
    let third = repo.commit("main", "third");
    assert_eq!(hook(&[("X-Gitlab-Token", secret.clone())]), 202);
    released(&env, leader, "hooked", &third);

    // An unknown app answers as an unsigned call does: nothing says it exists.
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/apps/no-such-app/repo/hook", env.api(0)))
        .header("X-Gitlab-Token", secret.clone())
        .body(json!({}).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // The restart of a node does not lose the link (it is replicated state).
    env.kill(other).unwrap();
    env.restart(other).unwrap();
    env.wait_ready(other, Duration::from_secs(60)).unwrap();
    let info = env.get_json(other, "/apps/hooked/repo").unwrap();
    assert_eq!(info["last_commit"], third.as_str());
}
