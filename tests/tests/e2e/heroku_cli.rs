//! The stock npm `heroku` CLI (11.x, installed by `scripts/install-deps` into
//! `target/heroku-cli`, or `$HEROKU_CLI_BIN`) against real clusters, unchanged: apps,
//! config, releases, domains, access, authorizations, maintenance, buildpacks, add-ons,
//! `git push heroku main`, ps, run (the rendezvous attach), logs and rollback, each
//! checked by its output and by its effect through the API.
//!
//! The CLI sends its token only to `127.0.0.1` or `localhost`, so in netns mode it runs
//! inside the node's namespace (`ip netns exec`), where havend listens on every address;
//! both the leader and a follower are driven. It gets a home of its own (it writes a git
//! credential helper into `~/.gitconfig`) and the environment README.md documents.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use haven_tests::{cluster, eventually, repo_path, Env};
use serde_json::{json, Value};

/// The CLI's `bin/heroku`; its absence is a setup error (`scripts/install-deps`).
fn heroku_bin() -> PathBuf {
    let path = std::env::var_os("HEROKU_CLI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_path("target/heroku-cli/node_modules/.bin/heroku"));
    assert!(
        path.exists(),
        "the Heroku CLI is missing at {}: run scripts/install-deps (or set HEROKU_CLI_BIN)",
        path.display()
    );
    path
}

/// The Heroku CLI pointed at one node, with a home of its own.
struct Heroku<'a> {
    env: &'a Env,
    node: usize,
    home: tempfile::TempDir,
    bin: PathBuf,
}

impl<'a> Heroku<'a> {
    fn new(env: &'a Env, node: usize) -> Heroku<'a> {
        let home = tempfile::tempdir().unwrap();
        // The first run prints a terms-of-service banner unless this exists.
        std::fs::create_dir_all(home.path().join(".cache/heroku")).unwrap();
        std::fs::write(home.path().join(".cache/heroku/terms-of-service"), "").unwrap();
        Heroku {
            env,
            node,
            home,
            bin: heroku_bin(),
        }
    }

    /// `127.0.0.1:PORT` of the node's API, as the CLI (in the node's namespace) reaches it.
    fn local_api(&self) -> String {
        let api = self.env.api(self.node);
        let port = api.rsplit(':').next().unwrap().trim_end_matches('/');
        format!("127.0.0.1:{port}")
    }

    /// `program` with the CLI's environment, in the node's namespace when there is one.
    fn command(&self, program: &Path) -> Command {
        let mut c = match self.env.netns(self.node) {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        };
        let api = format!("http://{}", self.local_api());
        let ca = self.env.data_dir(self.node).unwrap().join("ca.pem");
        let bin_dir = self.bin.parent().unwrap();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join(".config"))
            .env("XDG_CACHE_HOME", self.home.path().join(".cache"))
            .env("XDG_DATA_HOME", self.home.path().join(".local/share"))
            .env("PATH", path)
            .env("HEROKU_HOST", &api)
            .env("HEROKU_API_KEY", self.env.token())
            .env("HEROKU_GIT_HOST", self.local_api())
            .env("HEROKU_PARTICLEBOARD_URL", &api)
            .env("HEROKU_BUILDPACK_REGISTRY_URL", &api)
            .env("DISABLE_TELEMETRY", "true")
            .env("HEROKU_SKIP_ANALYTICS", "1")
            .env("HEROKU_SKIP_NEW_VERSION_CHECK", "true")
            .env("HEROKU_DISABLE_AUTOUPDATE", "1")
            .env("NODE_EXTRA_CA_CERTS", &ca)
            .env("GIT_SSL_CAINFO", &ca)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("NO_COLOR", "1")
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .env_remove("HEROKU_APP")
            // Not this repository's checkout: `apps:create` adds a remote to the repo it runs in.
            .current_dir(self.home.path())
            .stdin(Stdio::null());
        c
    }

    fn heroku(&self, args: &[&str]) -> Command {
        let mut c = self.command(&self.bin);
        c.args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.heroku(args).output().unwrap()
    }

    /// stdout + stderr of a run that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let text = text(&out);
        assert!(out.status.success(), "heroku {args:?} failed:\n{text}");
        text
    }

    /// stdout + stderr of a run that must fail with `code`.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let text = text(&out);
        assert_eq!(out.status.code(), Some(code), "heroku {args:?}:\n{text}");
        text
    }

    /// `heroku ARGS --json`, parsed.
    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.run(&a);
        assert!(out.status.success(), "heroku {a:?} failed:\n{}", text(&out));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("heroku {a:?}: {e}:\n{}", text(&out)))
    }

    /// `heroku run ...` with `stdin` piped in.
    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut c = self.heroku(args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn get(env: &Env, node: usize, path: &str) -> Value {
    env.get_json(node, path)
        .unwrap_or_else(|e| panic!("GET {path}: {e:#}"))
}

/// The leader's index and a follower's.
fn leader_and_follower(env: &mut Env) -> (usize, usize) {
    let leader = eventually("a leader", Duration::from_secs(30), || env.leader_index());
    (leader, (leader + 1) % env.len())
}

#[test]
fn the_heroku_cli_manages_apps_config_releases_and_access() {
    let mut env = cluster(2);
    let (leader, follower) = leader_and_follower(&mut env);
    let (l, f) = (Heroku::new(&env, leader), Heroku::new(&env, follower));

    // apps:create on the leader, seen from the follower.
    let out = l.ok(&["apps:create", "hk-one"]);
    assert!(out.contains("Creating hk-one... done"), "{out}");
    assert!(out.contains("/hk-one.git"), "{out}");
    let out = f.ok(&["apps"]);
    assert!(out.contains("hk-one"), "{out}");
    let info = f.ok(&["apps:info", "-a", "hk-one"]);
    for want in [
        "=== hk-one",
        "Owner:",
        "admin@haven.local",
        "Stack:",
        "heroku-24",
    ] {
        assert!(info.contains(want), "{want}: {info}");
    }
    let out = f.fails(&["apps:info", "-a", "hk-nosuch"], 2);
    assert!(out.contains("Couldn't find that app."), "{out}");

    // config: set on the follower, read back by the CLI and the API.
    let out = f.ok(&["config:set", "GREETING=hello world", "N=1", "-a", "hk-one"]);
    assert!(out.contains("done, v2"), "{out}");
    assert_eq!(
        get(&env, leader, "/apps/hk-one/config-vars")["GREETING"],
        "hello world"
    );
    assert_eq!(
        l.ok(&["config:get", "GREETING", "-a", "hk-one"]).trim(),
        "hello world"
    );
    let out = l.ok(&["config:unset", "N", "-a", "hk-one"]);
    assert!(out.contains("done, v3"), "{out}");
    let cfg = l.json(&["config", "-a", "hk-one"]);
    assert_eq!(cfg, json!({"GREETING": "hello world"}));

    // releases, newest first; releases:info of the latest and of v1.
    let out = f.ok(&["releases", "-a", "hk-one"]);
    assert!(out.contains("Current: v3"), "{out}");
    let v3 = out.find("v3").unwrap();
    assert!(v3 < out.find("v1 ").unwrap(), "{out}");
    assert!(out.contains("Remove N config vars"), "{out}");
    let out = l.ok(&["releases:info", "-a", "hk-one"]);
    assert!(out.contains("=== Release v3"), "{out}");
    assert!(out.contains("GREETING: hello world"), "{out}");
    let out = l.ok(&["releases:info", "v1", "-a", "hk-one"]);
    assert!(out.contains("Initial release"), "{out}");

    // domains: add, list (the Heroku domain and the custom one), remove.
    let out = f.ok(&["domains:add", "www.hk-one.example", "-a", "hk-one"]);
    assert!(out.contains("DNS Target"), "{out}");
    let out = l.ok(&["domains", "-a", "hk-one"]);
    assert!(out.contains("Heroku Domain"), "{out}");
    assert!(out.contains("www.hk-one.example"), "{out}");
    l.ok(&["domains:remove", "www.hk-one.example", "-a", "hk-one"]);
    let hosts: Vec<String> = get(&env, follower, "/apps/hk-one/domains")
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["hostname"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !hosts.iter().any(|h| h == "www.hk-one.example"),
        "{hosts:?}"
    );

    // access: a collaborator added and removed; an unknown email is Heroku's 404.
    env.post_json(
        leader,
        "/cluster/users",
        &json!({"email": "dev@hk.example"}),
    )
    .unwrap();
    l.ok(&["access:add", "dev@hk.example", "-a", "hk-one"]);
    let out = f.ok(&["access", "-a", "hk-one"]);
    assert!(
        out.contains("dev@hk.example") && out.contains("collaborator"),
        "{out}"
    );
    f.ok(&["access:remove", "dev@hk.example", "-a", "hk-one"]);
    let out = l.ok(&["access", "-a", "hk-one"]);
    assert!(!out.contains("dev@hk.example"), "{out}");
    let out = l.fails(&["access:add", "nobody@hk.example", "-a", "hk-one"], 2);
    assert!(out.contains("Couldn't find that user"), "{out}");

    // authorizations: create (expires_in as the CLI sends it, a string), list, revoke.
    let token = l
        .ok(&["authorizations:create", "-d", "hk-ci", "-e", "3600", "-S"])
        .trim()
        .to_string();
    assert!(token.starts_with("hvn_"), "{token}");
    let list = f.json(&["authorizations"]);
    let made = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["description"] == "hk-ci")
        .unwrap_or_else(|| panic!("{list}"))
        .clone();
    let id = made["id"].as_str().unwrap();
    let out = f.ok(&["authorizations:revoke", id]);
    assert!(out.contains("revoked authorization from hk-ci"), "{out}");
    let out = f.fails(&["authorizations:info", id], 2);
    assert!(out.contains("Couldn't find that authorization."), "{out}");

    // maintenance on and off.
    f.ok(&["maintenance:on", "-a", "hk-one"]);
    assert_eq!(l.ok(&["maintenance", "-a", "hk-one"]).trim(), "on");
    assert_eq!(get(&env, follower, "/apps/hk-one")["maintenance"], true);
    l.ok(&["maintenance:off", "-a", "hk-one"]);
    assert_eq!(get(&env, leader, "/apps/hk-one")["maintenance"], false);

    // buildpacks through the registry stub on the node.
    let out = l.ok(&["buildpacks:set", "heroku/python", "-a", "hk-one"]);
    assert!(out.contains("Buildpack set."), "{out}");
    f.ok(&["buildpacks:add", "heroku/nodejs", "-a", "hk-one"]);
    let out = f.ok(&["buildpacks", "-a", "hk-one"]);
    assert!(
        out.contains("1. heroku/python") && out.contains("2. heroku/nodejs"),
        "{out}"
    );
    l.ok(&["buildpacks:remove", "heroku/nodejs", "-a", "hk-one"]);
    let bps = get(&env, leader, "/apps/hk-one/buildpack-installations");
    assert_eq!(bps.as_array().unwrap().len(), 1, "{bps}");
    l.ok(&["buildpacks:clear", "-a", "hk-one"]);
    assert_eq!(
        f.ok(&["buildpacks", "-a", "hk-one"]).trim(),
        "hk-one has no Buildpacks."
    );

    // rename, then destroy; the old and the destroyed name are Heroku's 404.
    let out = f.ok(&["apps:rename", "hk-two", "-a", "hk-one"]);
    assert!(out.contains("/hk-two.git"), "{out}");
    assert_eq!(get(&env, leader, "/apps/hk-two")["name"], "hk-two");
    l.ok(&["apps:destroy", "-a", "hk-two", "--confirm", "hk-two"]);
    let out = f.fails(&["config", "-a", "hk-two"], 2);
    assert!(out.contains("Couldn't find that app."), "{out}");
    assert!(f.ok(&["apps"]).contains("You have no apps."));
}

#[test]
fn the_heroku_cli_deploys_scales_runs_and_reads_logs() {
    let mut env = cluster(2);
    let (leader, follower) = leader_and_follower(&mut env);
    let (l, f) = (Heroku::new(&env, leader), Heroku::new(&env, follower));
    l.ok(&["apps:create", "hk-app"]);

    // git:remote, then `git push heroku main` to the https URL it set, as the CLI's own
    // credential helper answers git (in the follower's namespace).
    let src = tempfile::tempdir().unwrap();
    let dir = src.path().join("app");
    let copied = Command::new("cp")
        .arg("-r")
        .arg(repo_path("examples/python-hello"))
        .arg(&dir)
        .status()
        .unwrap();
    assert!(copied.success());
    let git = |args: &[&str]| {
        let mut c = f.command(Path::new("/usr/bin/git"));
        c.args(args).current_dir(&dir);
        let out = c.output().unwrap();
        assert!(out.status.success(), "git {args:?}:\n{}", text(&out));
        text(&out)
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&[
        "-c",
        "user.email=dev@hk.example",
        "-c",
        "user.name=dev",
        "commit",
        "-qm",
        "first",
    ]);
    let mut c = f.heroku(&["git:remote", "-a", "hk-app"]);
    c.current_dir(&dir);
    let out = text(&c.output().unwrap());
    assert!(out.contains("set git remote heroku to https://"), "{out}");
    let remote = git(&["remote", "get-url", "heroku"]);
    assert_eq!(
        remote.trim(),
        format!("https://{}/hk-app.git", f.local_api())
    );
    let out = git(&["push", "heroku", "main"]);
    assert!(out.contains("Released v2"), "{out}");
    eventually("web.1 up", Duration::from_secs(60), || {
        let dynos = get(&env, leader, "/apps/hk-app/dynos");
        dynos
            .as_array()?
            .iter()
            .any(|d| d["name"] == "web.1" && d["state"] == "up")
            .then_some(())
    });

    // ps and ps:scale (the CLI sends quantities as strings, "+1" included).
    let out = l.ok(&["ps", "-a", "hk-app"]);
    assert!(
        out.contains("=== web") && out.contains("web.1: up"),
        "{out}"
    );
    let out = f.ok(&["ps:scale", "web=2", "-a", "hk-app"]);
    assert!(out.contains("now running web at 2:"), "{out}");
    let quantity = |node| get(&env, node, "/apps/hk-app/formation/web")["quantity"].clone();
    assert_eq!(quantity(leader), 2);
    l.ok(&["ps:scale", "web-1", "-a", "hk-app"]);
    assert_eq!(quantity(follower), 1);
    let out = f.ok(&["ps:scale", "-a", "hk-app"]);
    assert!(out.contains("web=1:"), "{out}");

    // run: output, piped stdin (ended by the CLI's \x04), exit codes, on both nodes.
    let out = l.run_with_stdin(
        &["run", "cat; echo from-the-dyno; exit 3", "-a", "hk-app"],
        "piped in\n",
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(3), "{shown}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("piped in\nfrom-the-dyno"), "{shown}");
    assert!(!stdout.contains("heroku-command-exit-status"), "{shown}");
    let out = f.ok(&["run", "-a", "hk-app", "--", "echo", "$((6*7))"]);
    assert!(out.contains("42"), "{out}");
    let out = f.fails(&["run", "-x", "-a", "hk-app", "--", "false"], 1);
    assert!(out.contains("exited with code 1"), "{out}");

    // logs: history with -n, --source, --dyno (-p sends the type as `dyno`).
    let out = f.ok(&["logs", "-n", "200", "-a", "hk-app"]);
    assert!(
        out.contains("heroku[web.1]: State changed from starting to up"),
        "{out}"
    );
    assert!(out.contains("app[web.1]:"), "{out}");
    let out = l.ok(&["logs", "--source", "app", "-a", "hk-app"]);
    assert!(
        out.contains("app[web.1]:") && !out.contains("heroku[web.1]"),
        "{out}"
    );
    let out = l.ok(&["logs", "--dyno", "web.1", "-a", "hk-app"]);
    assert!(out.contains("[web.1]") && !out.contains("[run."), "{out}");
    let out = f.ok(&["logs", "-p", "run", "-n", "5", "-a", "hk-app"]);
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty() && lines.len() <= 5, "{out}");
    assert!(lines.iter().all(|l| l.contains("[run.")), "{out}");

    // logs --tail on the follower sees a restart made through the leader.
    let mut tail = f.heroku(&["logs", "--tail", "-a", "hk-app"]);
    tail.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = tail.spawn().unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let reader = {
        let seen = seen.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut s = seen.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        })
    };
    eventually("the tail's history", Duration::from_secs(30), || {
        seen.lock().unwrap().contains("[web.1]").then_some(())
    });
    l.ok(&["ps:restart", "-p", "web", "-a", "hk-app"]);
    eventually("the restart in the tail", Duration::from_secs(30), || {
        seen.lock()
            .unwrap()
            .contains("Stopping all processes with SIGTERM")
            .then_some(())
    });
    let _ = child.kill();
    let _ = child.wait();
    reader.join().unwrap();

    // ps:restart of one dyno and of all; ps:stop of a dyno (the formation starts it again).
    f.ok(&["ps:restart", "-d", "web.1", "-a", "hk-app"]);
    l.ok(&["ps:restart", "-a", "hk-app"]);
    f.ok(&["ps:stop", "-d", "web.1", "-a", "hk-app"]);
    let out = l.fails(&["ps:restart", "-d", "web.9", "-a", "hk-app"], 2);
    assert!(out.contains("not found"), "{out}");

    // config:set makes v3; rollback (to the second eligible release, v2) makes v4.
    l.ok(&["config:set", "EXTRA=1", "-a", "hk-app"]);
    let out = f.ok(&["rollback", "-a", "hk-app"]);
    assert!(
        out.contains("Rolling back hk-app to v2... done, v4"),
        "{out}"
    );
    let cfg = get(&env, leader, "/apps/hk-app/config-vars");
    assert!(cfg.get("EXTRA").is_none(), "{cfg}");

    // add-ons: create, list, info (by name and by attachment), destroy.
    let out = l.ok(&["addons:create", "heroku-redis:mini", "-a", "hk-app"]);
    assert!(
        out.contains("Creating heroku-redis:mini on hk-app"),
        "{out}"
    );
    let addons = f.json(&["addons", "-a", "hk-app"]);
    let name = addons[0]["name"].as_str().unwrap().to_string();
    let out = f.ok(&["addons", "-a", "hk-app"]);
    assert!(out.contains(&name) && out.contains("as REDIS"), "{out}");
    let out = l.ok(&["addons:info", &name, "-a", "hk-app"]);
    assert!(
        out.contains(&format!("=== {name}")) && out.contains("hk-app::REDIS"),
        "{out}"
    );
    let out = f.ok(&["addons:info", "REDIS", "-a", "hk-app"]);
    assert!(out.contains(&format!("=== {name}")), "{out}");
    let out = f.fails(&["addons:info", "hk-nosuch-addon", "-a", "hk-app"], 2);
    assert!(out.contains("Couldn't find that add-on."), "{out}");
    let out = f.ok(&[
        "addons:destroy",
        &name,
        "-a",
        "hk-app",
        "--confirm",
        "hk-app",
    ]);
    assert!(
        out.contains(&format!("Destroying {name} on hk-app")),
        "{out}"
    );
    let out = l.ok(&["addons", "-a", "hk-app"]);
    assert!(out.contains("No add-ons for app hk-app."), "{out}");
}
