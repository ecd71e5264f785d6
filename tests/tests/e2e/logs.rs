//! Logs over real clusters: lines of dynos on every node, the router, the platform and the
//! API, merged by time and readable from any node; `--tail`; filters; the per-app cap; a
//! dead node not stalling the stream; config values never logged.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use haven_tests::{binary, cluster, eventually, Env};
use serde_json::json;

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python-hello")
}

fn hctl_cmd(env: &Env, node: usize, args: &[&str]) -> Command {
    let home = std::env::temp_dir().join(format!("hctl-home-{}", std::process::id()));
    let mut c = Command::new(binary("hctl"));
    c.args(args)
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", &home)
        .env("HAVEN_API", env.api(node))
        .env("HAVEN_TOKEN", env.token());
    c
}

fn hctl(env: &Env, node: usize, args: &[&str]) -> Output {
    hctl_cmd(env, node, args).output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "hctl failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn deploy(env: &Env, app: &str, web: u32) {
    env.post_json(0, "/apps", &json!({ "name": app })).unwrap();
    ok(hctl(
        env,
        0,
        &["deploy", &example().to_string_lossy(), "-a", app],
    ));
    ok(hctl(
        env,
        0,
        &["ps:scale", &format!("web={web}"), "-a", app],
    ));
    ok(hctl(env, 0, &["ps:wait", "-a", app, "--timeout", "90"]));
}

fn hit(env: &Env, node: usize, app: &str) -> bool {
    reqwest::blocking::Client::new()
        .get(format!("{}/", env.router(node)))
        .header("Host", format!("{app}.localhost"))
        .timeout(Duration::from_secs(5))
        .send()
        .is_ok_and(|r| r.status().is_success())
}

fn logs(env: &Env, node: usize, app: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["logs", "-a", app];
    args.extend_from_slice(extra);
    ok(hctl(env, node, &args))
        .lines()
        .map(str::to_string)
        .collect()
}

/// A running `hctl logs --tail` whose lines arrive on a channel.
struct Tail {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Tail {
    fn start(env: &Env, node: usize, app: &str) -> Tail {
        let mut child = hctl_cmd(env, node, &["logs", "--tail", "-n", "0", "-a", app])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(l) = line else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Tail { child, lines: rx }
    }

    /// Waits for a line containing `needle`; returns how long it took.
    fn wait_for(&self, needle: &str, timeout: Duration) -> Option<Duration> {
        let start = Instant::now();
        while let Some(left) = timeout.checked_sub(start.elapsed()) {
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return Some(start.elapsed()),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn lines_from_every_node_merge_in_time_order_on_any_node() {
    let env = cluster(3);
    deploy(&env, "merged", 3);
    ok(hctl(
        &env,
        1,
        &["config:set", "SECRET_TOKEN=do-not-log-me", "-a", "merged"],
    ));
    ok(hctl(
        &env,
        0,
        &["ps:wait", "-a", "merged", "--timeout", "90"],
    ));
    // Requests through every router reach dynos on every node; each dyno logs them.
    let all = eventually(
        "every dyno logged a request",
        Duration::from_secs(30),
        || {
            for node in 0..3 {
                for _ in 0..10 {
                    hit(&env, node, "merged");
                }
            }
            let lines = logs(&env, 2, "merged", &["-n", "1500"]);
            let has = |s: &str| lines.iter().any(|l| l.contains(s));
            (has("app[web.1]: ") && has("app[web.2]: ") && has("app[web.3]: ")).then_some(lines)
        },
    );
    for want in [
        "heroku[router]: at=info method=GET path=\"/\" host=merged.localhost",
        "heroku[web.1]: State changed from starting to up",
        "app[api]: Build started by admin@haven.local",
        "app[api]: Build succeeded",
        "app[api]: Deploy ",
        "app[api]: Release v2 created by admin@haven.local",
        "app[api]: Scaled to web@3:Standard-1X by admin@haven.local",
        "app[api]: Set SECRET_TOKEN config vars by admin@haven.local",
    ] {
        assert!(
            all.iter().any(|l| l.contains(want)),
            "no {want:?} in:\n{}",
            all.join("\n")
        );
    }
    // Heroku's format, in time order.
    let times: Vec<chrono::DateTime<chrono::FixedOffset>> = all
        .iter()
        .map(|l| chrono::DateTime::parse_from_rfc3339(l.split(' ').next().unwrap()).unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "not in time order");
    assert!(
        all[0].split(' ').next().unwrap().contains('.'),
        "microseconds: {}",
        all[0]
    );
    // The same from another node.
    let other = logs(&env, 0, "merged", &["-n", "1500"]);
    assert!(other.iter().any(|l| l.contains("app[web.3]: ")));
    // Config values are in no log line, and in no node's own log either.
    assert!(!all.iter().any(|l| l.contains("do-not-log-me")));
    for i in 0..3 {
        let own = std::fs::read_to_string(env.dir().join(format!("node{i}/havend.log"))).unwrap();
        assert!(
            !own.contains("do-not-log-me"),
            "node {i}'s log holds a config value"
        );
        assert!(!own.contains(env.token()), "node {i}'s log holds the token");
    }

    // Filters.
    let web1 = logs(&env, 1, "merged", &["-n", "1500", "-d", "web.1"]);
    assert!(
        !web1.is_empty() && web1.iter().all(|l| l.contains("[web.1]:")),
        "{web1:?}"
    );
    let router = logs(&env, 1, "merged", &["-n", "1500", "-p", "router"]);
    assert!(!router.is_empty() && router.iter().all(|l| l.contains("heroku[router]:")));
    let heroku = logs(&env, 1, "merged", &["-n", "1500", "-s", "heroku"]);
    assert!(!heroku.is_empty() && heroku.iter().all(|l| l.contains(" heroku[")));
    let three = logs(&env, 1, "merged", &["-n", "3"]);
    assert_eq!(three.len(), 3);
    assert_eq!(&three[..], &all[all.len() - 3..]);
    let too_many = hctl(&env, 1, &["logs", "-a", "merged", "-n", "5000"]);
    assert!(!too_many.status.success());
}

#[test]
fn tail_shows_new_lines_within_a_second_and_survives_a_dead_node() {
    let mut env = cluster(3);
    deploy(&env, "tailed", 3);
    let tail = Tail::start(&env, 0, "tailed");
    // The session is open once a line written now shows up.
    eventually("the tail is live", Duration::from_secs(10), || {
        hit(&env, 1, "tailed");
        tail.wait_for("heroku[router]:", Duration::from_millis(500))
            .map(|_| ())
    });
    let mut worst = Duration::ZERO;
    for i in 0..5 {
        let path = format!("/probe-{i}");
        let sent = Instant::now();
        let r = reqwest::blocking::Client::new()
            .get(format!("{}{path}", env.router(2)))
            .header("Host", "tailed.localhost")
            .send()
            .unwrap();
        assert!(r.status().is_success());
        let took = tail
            .wait_for(&format!("GET {path} "), Duration::from_secs(5))
            .map(|_| sent.elapsed());
        let took =
            took.unwrap_or_else(|| panic!("the dyno's line for {path} never reached the tail"));
        worst = worst.max(took);
    }
    eprintln!("tail latency, dyno write to tail client on another node: worst {worst:?} of 5");
    assert!(worst < Duration::from_secs(1), "took {worst:?}");

    // A killed node does not stall the stream: lines from the others keep coming.
    env.kill(2).unwrap();
    eventually(
        "lines still flow with a node dead",
        Duration::from_secs(20),
        || {
            hit(&env, 1, "tailed");
            tail.wait_for("heroku[router]:", Duration::from_millis(500))
                .map(|_| ())
        },
    );
    // After a restart its new lines (its router's) join.
    env.restart(2).unwrap();
    env.wait_ready(2, Duration::from_secs(30)).unwrap();
    eventually(
        "the restarted node's lines join",
        Duration::from_secs(30),
        || {
            let r = reqwest::blocking::Client::new()
                .get(format!("{}/after-restart", env.router(2)))
                .header("Host", "tailed.localhost")
                .timeout(Duration::from_secs(5))
                .send()
                .ok()?;
            r.status().is_success().then_some(())?;
            tail.wait_for("path=\"/after-restart\"", Duration::from_millis(800))
                .map(|_| ())
        },
    );
}

#[test]
fn each_node_keeps_the_last_1500_lines_of_an_app() {
    let env = cluster(1);
    env.post_json(0, "/apps", &json!({ "name": "flood" }))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for f in ["app.py", "requirements.txt"] {
        std::fs::copy(example().join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(
        dir.path().join("Procfile"),
        "web: python3 app.py\nworker: seq 1 3000; sleep 100000\n",
    )
    .unwrap();
    ok(hctl(
        &env,
        0,
        &["deploy", &dir.path().to_string_lossy(), "-a", "flood"],
    ));
    ok(hctl(&env, 0, &["ps:scale", "worker=1", "-a", "flood"]));
    let lines = eventually(
        "the worker printed 3000 lines",
        Duration::from_secs(60),
        || {
            let l = logs(&env, 0, "flood", &["-n", "1500"]);
            l.iter()
                .any(|l| l.ends_with("app[worker.1]: 3000"))
                .then_some(l)
        },
    );
    assert_eq!(lines.len(), 1500);
    let first_seq: Vec<u64> = lines
        .iter()
        .filter_map(|l| {
            l.rsplit_once("app[worker.1]: ")
                .and_then(|(_, n)| n.parse().ok())
        })
        .collect();
    assert!(
        first_seq[0] > 1500,
        "older lines were dropped: starts at {}",
        first_seq[0]
    );
    assert!(
        first_seq.windows(2).all(|w| w[1] == w[0] + 1),
        "no gaps or reordering"
    );
}
