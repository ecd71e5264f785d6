//! Official Heroku classic buildpacks run unmodified (netns mode, as root): an unmodified
//! copy of heroku/heroku-buildpack-python (`tests/fixtures/buildpacks/`), served by a real
//! git server on the cluster's "internet" address, gets past its detection and its
//! `$STACK` check and then fails fast, with its own download error, because this
//! machine has no internet to fetch Python from; the app keeps its release. Builds see
//! `STACK=heroku-24`, the stack `hctl apps:info` shows.

use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use haven_tests::{cluster, eventually, hctl, hctl_ok as ok, repo_path, Env};
use serde_json::{json, Value};

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

fn git_ok(dir: &Path, args: &[&str]) {
    let out = git(dir, args);
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Commits everything in `dir` (a repository made on the first call).
fn commit_all(dir: &Path, message: &str) {
    if !dir.join(".git").exists() {
        git_ok(dir, &["init", "-q"]);
    }
    git_ok(dir, &["add", "-A"]);
    git_ok(dir, &["commit", "-q", "-m", message]);
}

/// Copies `src` into `dest`, keeping file modes (the buildpack's scripts stay executable).
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

/// A git server (`git daemon --inetd`, one per connection) for the repositories under a
/// temp dir, on `host` (an address the test owns); stops and kills its children when
/// dropped.
struct GitServer {
    base: tempfile::TempDir,
    host: String,
    port: u16,
    stop: Arc<AtomicBool>,
    children: Arc<Mutex<Vec<Child>>>,
}

impl GitServer {
    fn start(host: &str) -> GitServer {
        let base = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind((host, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let children = Arc::new(Mutex::new(Vec::<Child>::new()));
        let (s, kids, dir) = (stop.clone(), children.clone(), base.path().to_path_buf());
        std::thread::spawn(move || {
            for c in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(c) = c else { continue };
                let Ok(input) = c.try_clone() else { continue };
                let child = Command::new("git")
                    .arg("daemon")
                    .arg("--inetd")
                    .arg("--export-all")
                    .arg("--informative-errors")
                    .arg(format!("--base-path={}", dir.display()))
                    .stdin(Stdio::from(OwnedFd::from(input)))
                    .stdout(Stdio::from(OwnedFd::from(c)))
                    .stderr(Stdio::null())
                    .spawn();
                if let (Ok(child), Ok(mut kids)) = (child, kids.lock()) {
                    // Reap the ones that ended.
                    kids.retain_mut(|k| !matches!(k.try_wait(), Ok(Some(_))));
                    kids.push(child);
                }
            }
        });
        GitServer {
            base,
            host: host.to_string(),
            port,
            stop,
            children,
        }
    }

    /// Serves a copy of `src` committed as repository `name`; returns its URL.
    fn serve(&self, name: &str, src: &Path) -> String {
        let dir = self.base.path().join(name);
        copy_dir(src, &dir);
        commit_all(&dir, "as vendored");
        format!("git://{}:{}/{name}", self.host, self.port)
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect((self.host.as_str(), self.port));
        if let Ok(mut kids) = self.children.lock() {
            for k in kids.iter_mut() {
                let _ = k.kill();
                let _ = k.wait();
            }
        }
    }
}

/// A child process killed (and reaped) when dropped, so that a test that panics while
/// waiting for it leaves nothing behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `git push` of HEAD to the app's `main` on node 0, waited for until it ends or
/// `deadline` passes (then the test fails with the output so far). Returns (success,
/// the push's stderr, which carries the build output, and how long it took).
fn push_within(env: &Env, repo: &Path, app: &str, deadline: Duration) -> (bool, String, Duration) {
    let hostport = env.api(0).trim_start_matches("http://").to_string();
    let url = format!("http://git:{}@{hostport}/{app}.git", env.token());
    let log_path = repo.join(".git").join("push.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let started = Instant::now();
    let mut child = Reaped(
        Command::new("git")
            .args(["-c", "credential.helper="])
            .args(["push", &url, "HEAD:refs/heads/main"])
            .current_dir(repo)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    );
    let status = {
        let mut poll = || child.0.try_wait().unwrap();
        let what = format!("the push to {app} to end");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            eventually(&what, deadline, &mut poll)
        }));
        match result {
            Ok(s) => s,
            Err(_) => panic!(
                "the build did not end within {deadline:?}; its output so far:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            ),
        }
    };
    let took = started.elapsed();
    let out = std::fs::read_to_string(&log_path).unwrap();
    (status.success(), out, took)
}

fn releases(env: &Env, app: &str) -> Vec<Value> {
    env.get_json(0, &format!("/apps/{app}/releases"))
        .unwrap()
        .as_array()
        .cloned()
        .unwrap()
}

/// A buildpack that prints the `STACK` its compile sees.
fn stack_probe() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for (name, body) in [
        ("detect", "echo StackProbe"),
        ("compile", "echo \"STACK=$STACK\""),
        ("release", "echo '--- {}'"),
    ] {
        let p = bin.join(name);
        std::fs::write(&p, format!("#!/usr/bin/env bash\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

/// A minimal Python app: the standard-library web server of `examples/python-hello`, an
/// empty `requirements.txt`, a Procfile and a `.python-version` (so that the buildpack
/// needs no network to choose the version).
fn python_app() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let example = repo_path("examples/python-hello");
    for f in ["app.py", "Procfile"] {
        std::fs::copy(example.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(dir.path().join("requirements.txt"), "").unwrap();
    std::fs::write(dir.path().join(".python-version"), "3.13\n").unwrap();
    commit_all(dir.path(), "first");
    dir
}

fn fixture() -> PathBuf {
    repo_path("tests/fixtures/buildpacks/heroku-buildpack-python")
}

/// The unmodified official Python buildpack, over git from the "internet", with
/// `STACK=heroku-24`: it detects the app, accepts the stack, chooses Python 3.13 from
/// `.python-version` and then cannot download Python (no internet here), so the build
/// fails with the buildpack's own curl and "Unable to download/install Python" errors
/// and the app's previous release stays. Measured here (no internet; the build's DNS
/// queries go unanswered): the failing push takes 50 s, nearly all of it the buildpack's
/// own `curl --retry 5` backoff (1+2+4+8+16 s) and 3 s connect timeouts; the clone of
/// the unreachable upstream URL fails in 10 s. The test allows 180 s.
#[test]
fn the_official_python_buildpack_gets_past_its_stack_check_and_fails_fast_offline() {
    let env = cluster(1);
    let Some(internet) = env.bridge_host() else {
        println!("skipped: serving buildpacks on the cluster's internet address needs netns clusters (root)");
        return;
    };
    let server = GitServer::start(&internet);
    let probe_src = stack_probe();
    let probe_url = server.serve("stack-probe", probe_src.path());
    let python_url = server.serve("heroku-buildpack-python", &fixture());
    env.post_json(0, "/apps", &json!({ "name": "official" }))
        .unwrap();

    // The stack a build sees is the app's.
    ok(hctl(
        &env,
        0,
        &["buildpacks:set", &probe_url, "-a", "official"],
    ));
    let app = python_app();
    let (pushed, out, _) = push_within(&env, app.path(), "official", Duration::from_secs(180));
    assert!(pushed, "the stack probe's build failed:\n{out}");
    assert!(out.contains("STACK=heroku-24"), "{out}");
    assert!(out.contains("Released v2"), "{out}");
    let info = ok(hctl(&env, 0, &["apps:info", "-a", "official"]));
    assert!(
        info.lines()
            .any(|l| l.contains("Stack") && l.trim_end().ends_with("heroku-24")),
        "{info}"
    );
    let before = releases(&env, "official");

    // The official buildpack, unmodified.
    ok(hctl(
        &env,
        0,
        &["buildpacks:set", &python_url, "-a", "official"],
    ));
    std::fs::write(app.path().join("NOTES"), "second\n").unwrap();
    commit_all(app.path(), "second");
    let (pushed, out, took) = push_within(&env, app.path(), "official", Duration::from_secs(180));
    println!("the failing build took {took:?}");
    assert!(!pushed, "a build without Python succeeded:\n{out}");
    for want in [
        // Haven ran the buildpack's bin/detect ("Python").
        "-----> Python app detected",
        // Past checks::ensure_supported_stack, reading .python-version offline.
        "Using Python 3.13 specified in .python-version",
        "Installing Python 3.13.",
        // curl's own error, then the buildpack's.
        "curl: (",
        "Error: Unable to download/install Python.",
        "heroku-buildpack-python.s3.dualstack.us-east-1.amazonaws.com/python-3.13.",
        "ubuntu-24.04",
        "pre-receive hook declined",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(!out.contains("isn't recognised"), "{out}");
    assert!(!out.contains("no longer supported"), "{out}");

    // Nothing changed: no new release, the build is recorded as failed, and the web
    // dyno of v2 still answers.
    assert_eq!(releases(&env, "official"), before);
    let builds = env.get_json(0, "/apps/official/builds").unwrap();
    let builds = builds.as_array().unwrap();
    assert_eq!(builds.len(), 2, "{builds:?}");
    let failed: Vec<&Value> = builds.iter().filter(|b| b["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{builds:?}");
    assert!(failed[0]["release"].is_null(), "{}", failed[0]);
    let body = eventually("v2's web dyno answers", Duration::from_secs(60), || {
        let r = reqwest::blocking::Client::new()
            .get(format!("{}/", env.router(0)))
            .header("Host", "official.localhost")
            .timeout(Duration::from_secs(5))
            .send()
            .ok()?;
        r.status().is_success().then(|| r.text().ok()).flatten()
    });
    assert!(body.starts_with("Hello from web."), "{body}");

    // The command a user types, where the node has no internet: the clone fails, fast.
    let upstream = "https://github.com/heroku/heroku-buildpack-python";
    ok(hctl(
        &env,
        0,
        &["buildpacks:set", upstream, "-a", "official"],
    ));
    std::fs::write(app.path().join("NOTES"), "third\n").unwrap();
    commit_all(app.path(), "third");
    let (pushed, out, took) = push_within(&env, app.path(), "official", Duration::from_secs(180));
    println!("the build with the upstream URL took {took:?}");
    assert!(!out.contains("isn't recognised"), "{out}");
    if !pushed {
        assert!(
            out.contains(&format!("Could not fetch the buildpack {upstream}"))
                || out.contains("Error: Unable to download/install Python."),
            "{out}"
        );
        assert_eq!(releases(&env, "official"), before);
    }
    drop(server);
}
