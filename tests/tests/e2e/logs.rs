//! Logs over real clusters: lines of dynos on every node, the router, the platform and the
//! API, merged by time and readable from any node; `--tail`; filters; the per-app cap; a
//! dead node not stalling the stream; config values never logged.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use haven_tests::{cluster, eventually, hctl, hctl_command, hctl_ok as ok, Env};
use serde_json::json;

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python-hello")
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
        let mut child = hctl_command(env, node, &["logs", "--tail", "-n", "0", "-a", app])
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
    // `-n 3` is the newest three of the full listing. Lines of the requests
    // above may still be arriving from other nodes, so compare listings taken
    // back to back until no line arrives between them.
    eventually(
        "-n 3 is the tail of the listing",
        Duration::from_secs(20),
        || {
            let three = logs(&env, 1, "merged", &["-n", "3"]);
            assert_eq!(three.len(), 3);
            let all = logs(&env, 1, "merged", &["-n", "1500"]);
            (three[..] == all[all.len() - 3..]).then_some(())
        },
    );
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

/// The address this test host has as the nodes see it (the bridge's, in netns mode).
fn host_address(env: &Env) -> String {
    let router = env.router(0).trim_start_matches("http://").to_string();
    let ip = router.rsplit_once(':').unwrap().0.to_string();
    if ip.starts_with("127.") {
        return ip;
    }
    let mut octets: Vec<&str> = ip.split('.').collect();
    octets[3] = "1";
    octets.join(".")
}

/// Reads RFC 6587 octet-counted messages from one TCP connection at a time.
fn syslog_server() -> (u16, mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { break };
            let tx = tx.clone();
            std::thread::spawn(move || {
                use std::io::Read;
                let mut r = BufReader::new(conn);
                loop {
                    let mut len = Vec::new();
                    let mut b = [0u8; 1];
                    loop {
                        if r.read_exact(&mut b).is_err() {
                            return;
                        }
                        if b[0] == b' ' {
                            break;
                        }
                        len.push(b[0]);
                    }
                    let n: usize = String::from_utf8_lossy(&len).parse().unwrap();
                    let mut msg = vec![0u8; n];
                    if r.read_exact(&mut msg).is_err() {
                        return;
                    }
                    if tx.send(String::from_utf8_lossy(&msg).into_owned()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, rx)
}

/// A minimal HTTP server that records each POST's headers and body and answers 200.
fn http_server() -> (u16, mpsc::Receiver<(String, String)>) {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let tx = tx.clone();
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut r = BufReader::new(conn.try_clone().unwrap());
                loop {
                    let mut head = String::new();
                    loop {
                        let mut l = String::new();
                        if r.read_line(&mut l).unwrap_or(0) == 0 {
                            return;
                        }
                        if l == "\r\n" {
                            break;
                        }
                        head.push_str(&l);
                    }
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    let mut body = vec![0u8; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    let _ = tx.send((
                        head.to_ascii_lowercase(),
                        String::from_utf8_lossy(&body).into_owned(),
                    ));
                    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                }
            });
        }
    });
    (port, rx)
}

fn wait_msg<T>(rx: &mpsc::Receiver<T>, what: &str, f: impl Fn(&T) -> bool) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(m) if f(&m) => return m,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn drains_receive_lines_in_syslog_and_logplex_framing_and_a_dead_one_overflows() {
    let env = cluster(2);
    deploy(&env, "drained", 2);
    let host = host_address(&env);
    let (sport, srx) = syslog_server();
    let (hport, hrx) = http_server();
    let syslog_url = format!("syslog://{host}:{sport}");
    let http_url = format!("http://{host}:{hport}/logs");
    let out = ok(hctl(&env, 1, &["drains:add", &syslog_url, "-a", "drained"]));
    assert!(out.contains("Successfully added drain"), "{out}");
    ok(hctl(&env, 0, &["drains:add", &http_url, "-a", "drained"]));
    let dup = hctl(&env, 0, &["drains:add", &http_url, "-a", "drained"]);
    assert!(!dup.status.success());
    let bad = hctl(&env, 0, &["drains:add", "ftp://x", "-a", "drained"]);
    assert!(!bad.status.success());
    let listed = ok(hctl(&env, 0, &["drains", "-a", "drained"]));
    assert!(
        listed.contains(&syslog_url) && listed.contains(&http_url),
        "{listed}"
    );

    // Lines from dynos on both nodes reach both drains (nodes pick a new drain up within
    // half a second; lines from before that are not shipped, so keep making new ones).
    let msg = eventually(
        "a dyno line on the syslog drain",
        Duration::from_secs(30),
        || {
            hit(&env, 0, "drained");
            hit(&env, 1, "drained");
            let deadline = Instant::now() + Duration::from_millis(300);
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                match srx.recv_timeout(left) {
                    Ok(m) if m.contains(" app web.") => return Some(m),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            None
        },
    );
    // <PRI>1 TIME TOKEN SOURCE PROCESS - - MSG
    let parts: Vec<&str> = msg.splitn(8, ' ').collect();
    assert_eq!(parts[0], "<190>1", "{msg}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(parts[1]).is_ok(),
        "{msg}"
    );
    assert!(parts[2].starts_with("d."), "{msg}");
    assert_eq!((parts[5], parts[6]), ("-", "-"), "{msg}");
    let _router_line = eventually(
        "a router line on the syslog drain",
        Duration::from_secs(30),
        || {
            hit(&env, 0, "drained");
            srx.recv_timeout(Duration::from_millis(300))
                .ok()
                .filter(|m| m.contains(" heroku router - - at=info"))
        },
    );
    let (head, body) = eventually("a logplex POST", Duration::from_secs(30), || {
        hit(&env, 1, "drained");
        hrx.recv_timeout(Duration::from_millis(300))
            .ok()
            .filter(|(_, b)| b.contains(" app web."))
    });
    assert!(head.starts_with("post /logs http/1.1"), "{head}");
    assert!(
        head.contains("content-type: application/logplex-1"),
        "{head}"
    );
    assert!(head.contains("logplex-drain-token: d."), "{head}");
    assert!(head.contains("logplex-frame-id: "), "{head}");
    let count: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("logplex-msg-count: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The body is `count` octet-counted frames.
    let mut rest = body.as_str();
    let mut frames = 0;
    while !rest.is_empty() {
        let (n, tail) = rest.split_once(' ').unwrap();
        let n: usize = n.parse().unwrap();
        assert!(tail[..n].starts_with("<190>1 "));
        rest = &tail[n..];
        frames += 1;
    }
    assert_eq!(frames, count);

    // A drain that is down: its buffer overflows, L10 is logged, the others keep going.
    ok(hctl(
        &env,
        0,
        &["drains:remove", &http_url, "-a", "drained"],
    ));
    let dead = format!("syslog://{host}:9");
    ok(hctl(&env, 0, &["drains:add", &dead, "-a", "drained"]));
    let dir = tempfile::tempdir().unwrap();
    for f in ["app.py", "requirements.txt"] {
        std::fs::copy(example().join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(
        dir.path().join("Procfile"),
        // Enough lines to overflow the 1,024-line buffer, few enough that the one L10
        // notice stays among the app's last 1,500 lines for the check below to find.
        "web: python3 app.py\nworker: seq 1 1200; sleep 100000\n",
    )
    .unwrap();
    ok(hctl(
        &env,
        0,
        &["deploy", &dir.path().to_string_lossy(), "-a", "drained"],
    ));
    ok(hctl(&env, 0, &["ps:scale", "worker=1", "-a", "drained"]));
    eventually("L10 in the app's logs", Duration::from_secs(60), || {
        logs(&env, 0, "drained", &["-n", "1500", "-s", "heroku"])
            .iter()
            .any(|l| l.contains("heroku[logplex]: Error L10 (output buffer overflow)"))
            .then_some(())
    });
    // The live syslog drain still gets the worker's lines.
    wait_msg(&srx, "the worker's last line on the live drain", |m| {
        m.ends_with(" app worker.1 - - 1200")
    });
    ok(hctl(&env, 0, &["drains:remove", &dead, "-a", "drained"]));
}
