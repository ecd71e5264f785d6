//! The dyno runtime through `havend dyno-run`: isolation, limits, signals and cleanup of
//! container dynos (as root), and Process mode (any user).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use haven_tests::{binary, eventually};

const DYNO_UID: u32 = 64000;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A temp dir with `slug/` (an extracted slug), `state/` (the runtime's state dir),
/// `out/` (bound writable), `data/` (bound read-only) and `secret` (never in a dyno).
struct Fixture {
    tmp: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::Builder::new()
            .prefix("haven-rt-")
            .tempdir()
            .unwrap();
        let fx = Fixture { tmp };
        for d in ["slug/.profile.d", "slug/bin", "state", "out", "data"] {
            std::fs::create_dir_all(fx.path(d)).unwrap();
        }
        std::fs::write(fx.path("slug/hello.txt"), "hello from the slug\n").unwrap();
        std::fs::write(fx.path("slug/owned.txt"), "original\n").unwrap();
        std::fs::write(fx.path("slug/.profile.d/x.sh"), "export FOO=from-profile\n").unwrap();
        std::fs::write(fx.path("data/in.txt"), "data in\n").unwrap();
        std::fs::write(fx.path("secret"), "host secret\n").unwrap();
        // The out dir is written by the dyno user.
        std::fs::set_permissions(fx.path("out"), std::fs::Permissions::from_mode(0o777)).unwrap();
        if is_root() {
            // Slugs extracted for the dyno user: the dyno may change its own files.
            std::os::unix::fs::chown(fx.path("slug/owned.txt"), Some(DYNO_UID), Some(DYNO_UID))
                .unwrap();
        }
        fx
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn script(&self, name: &str, body: &str) {
        let p = self.path(&format!("slug/bin/{name}"));
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// `havend dyno-run` over this fixture's slug and state dir.
    fn dyno_run(&self, id: &str, args: &[&str], command: &str) -> Command {
        let mut cmd = Command::new(binary("havend"));
        cmd.arg("dyno-run")
            .arg("--slug")
            .arg(self.path("slug"))
            .arg("--state-dir")
            .arg(self.path("state"))
            .arg("--id")
            .arg(id)
            .args(args)
            .arg("--")
            .arg(command)
            .env("HAVEN_LOG", "warn");
        cmd
    }
}

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Starts `cmd` with piped stdio, writing `stdin` (then closing it).
fn start(mut cmd: Command, stdin: &str) -> (Child, std::thread::JoinHandle<(String, String)>) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = child.stdin.take().unwrap();
    let input = stdin.to_string();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let readers = std::thread::spawn(move || {
        let _ = w.write_all(input.as_bytes());
        drop(w);
        let e = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let mut o = String::new();
        let _ = out.read_to_string(&mut o);
        (o, e.join().unwrap_or_default())
    });
    (child, readers)
}

/// Waits for `child` up to `timeout` (then kills it and fails).
fn finish(
    mut child: Child,
    readers: std::thread::JoinHandle<(String, String)>,
    timeout: Duration,
) -> Output {
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let (o, e) = readers.join().unwrap();
            panic!("dyno-run did not finish within {timeout:?}\nstdout:\n{o}\nstderr:\n{e}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = readers.join().unwrap();
    Output {
        status,
        stdout,
        stderr,
    }
}

fn run(cmd: Command, stdin: &str) -> Output {
    let (child, readers) = start(cmd, stdin);
    finish(child, readers, Duration::from_secs(60))
}

/// The value of the first `key=value` line of `out`.
fn field<'a>(out: &'a Output, key: &str) -> &'a str {
    let prefix = format!("{key}=");
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| {
            panic!(
                "no {key}= line\nstdout:\n{}\nstderr:\n{}",
                out.stdout, out.stderr
            )
        })
}

fn mounts_mentioning(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// The host dirs a `/proc/self/cgroup` line from inside the dyno can name.
fn cgroup_dirs(line: &str) -> Vec<PathBuf> {
    let mut it = line.splitn(3, ':');
    let (_, controllers, path) = (it.next(), it.next().unwrap_or(""), it.next().unwrap_or(""));
    let rel = path.trim_start_matches('/');
    let mut out: Vec<PathBuf> = controllers
        .split(',')
        .filter(|c| !c.is_empty())
        .map(|c| Path::new("/sys/fs/cgroup").join(c).join(rel))
        .collect();
    out.push(Path::new("/sys/fs/cgroup").join(rel));
    out.push(Path::new("/sys/fs/cgroup/unified").join(rel));
    out
}

fn skip_unless_root(what: &str) -> bool {
    if is_root() {
        return false;
    }
    println!("skipped: {what} needs root (container dynos)");
    true
}

const CHECK_SH: &str = r#"#!/bin/bash
echo "pid=$$"
echo "init=$(tr '\0' ' ' </proc/1/cmdline)"
n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo "procs=$n"
echo "hostname=$(cat /proc/sys/kernel/hostname)"
echo "resolves=$(getent hosts "$(cat /proc/sys/kernel/hostname)" | cut -d' ' -f1)"
echo "uid=$(id -u)"
echo "gid=$(id -g)"
echo "user=$(id -un 2>/dev/null)"
echo "slug=$(cat /app/hello.txt)"
echo written >/app/new.txt && echo "appnew=$(cat /app/new.txt)"
echo changed >/app/owned.txt && echo "owned=$(cat /app/owned.txt)"
echo "tmp=$(ls -A /tmp | wc -l)"
touch /tmp/mine && echo "tmpwrite=ok"
if [ -e "$OUTSIDE" ] || [ -e "$(dirname "$OUTSIDE")" ]; then echo outside=visible; else echo outside=hidden; fi
if cat /etc/shadow >/dev/null 2>&1; then echo shadow=readable; else echo shadow=denied; fi
echo "nnp=$(grep NoNewPrivs /proc/self/status | tr -dc 0-9)"
echo "foo=$FOO"
echo "bar=$BAR"
echo "home=$HOME"
echo "pwd=$(pwd)"
echo "dyno=$DYNO"
if touch /etc/haven-x 2>/dev/null; then echo etc=writable; else echo etc=readonly; fi
if touch /haven-x 2>/dev/null; then echo root=writable; else echo root=readonly; fi
echo "data=$(cat /data/in.txt)"
if touch /data/x 2>/dev/null; then echo data=writable; else echo data=readonly; fi
echo out >/out/result && echo "outwrite=ok"
echo x >/dev/null && echo "devnull=ok"
read -r line; echo "stdin=$line"
grep -E ':memory:|^0::' /proc/self/cgroup | sed 's/^/cgroup=/'
echo "to stderr" >&2
exit 42
"#;

#[test]
fn runtime_container_isolates_the_dyno_and_cleans_up() {
    if skip_unless_root("container isolation") {
        return;
    }
    let fx = Fixture::new();
    fx.script("check.sh", CHECK_SH);
    let id = "rt-isolation-1";
    let data = format!("{}:/data", fx.path("data").display());
    let out_bind = format!("{}:/out:rw", fx.path("out").display());
    let outside = format!("OUTSIDE={}", fx.path("secret").display());
    let cmd = fx.dyno_run(
        id,
        &[
            "--mode",
            "container",
            "--hostname",
            "web.1",
            "--env",
            "BAR=from-env",
            "--env",
            &outside,
            "--bind",
            &data,
            "--bind",
            &out_bind,
        ],
        "bin/check.sh",
    );
    let out = run(cmd, "line from stdin\n");
    assert_eq!(
        out.status.code(),
        Some(42),
        "exit code propagates\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    assert!(out.stderr.contains("to stderr"), "{}", out.stderr);
    // PID namespace: the command is PID 2 under our init, and sees no host process.
    assert_eq!(field(&out, "pid"), "2");
    // The small init binary beside havend, not `havend dyno-init`.
    assert!(field(&out, "init").contains("haven-init"), "{}", out.stdout);
    assert_eq!(field(&out, "procs"), "2", "only init and the command");
    assert_eq!(field(&out, "hostname"), "web.1");
    assert_eq!(
        field(&out, "resolves"),
        "127.0.0.1",
        "the hostname resolves without DNS"
    );
    assert_eq!(field(&out, "uid"), DYNO_UID.to_string());
    assert_eq!(field(&out, "gid"), DYNO_UID.to_string());
    assert_eq!(field(&out, "user"), "dyno");
    assert_eq!(field(&out, "nnp"), "1");
    // /app: the slug, writable through the overlay, the slug itself untouched.
    assert_eq!(field(&out, "slug"), "hello from the slug");
    assert_eq!(field(&out, "appnew"), "written");
    assert_eq!(field(&out, "owned"), "changed");
    assert!(
        !fx.path("slug/new.txt").exists(),
        "a write reached the slug"
    );
    assert_eq!(
        std::fs::read_to_string(fx.path("slug/owned.txt")).unwrap(),
        "original\n"
    );
    assert_eq!(field(&out, "tmp"), "0", "/tmp starts empty");
    assert_eq!(field(&out, "tmpwrite"), "ok");
    assert_eq!(field(&out, "outside"), "hidden");
    assert_eq!(field(&out, "shadow"), "denied");
    assert_eq!(field(&out, "foo"), "from-profile", ".profile.d is sourced");
    assert_eq!(field(&out, "bar"), "from-env");
    assert_eq!(field(&out, "home"), "/app");
    assert_eq!(field(&out, "pwd"), "/app");
    assert_eq!(field(&out, "dyno"), "web.1");
    assert_eq!(field(&out, "etc"), "readonly");
    assert_eq!(field(&out, "root"), "readonly");
    assert_eq!(field(&out, "data"), "data in");
    assert!(
        out.stdout.contains("data=readonly"),
        "read-only bind: {}",
        out.stdout
    );
    assert_eq!(field(&out, "outwrite"), "ok");
    assert_eq!(
        std::fs::read_to_string(fx.path("out/result")).unwrap(),
        "out\n"
    );
    assert_eq!(field(&out, "devnull"), "ok");
    assert_eq!(field(&out, "stdin"), "line from stdin");
    // The dyno ran in its own cgroup, gone now; so are its dir and any mount.
    let cgroups: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("cgroup="))
        .filter(|l| l.ends_with(&format!("/haven/{id}")))
        .collect();
    assert!(
        !cgroups.is_empty(),
        "the dyno is not in a haven/{id} cgroup:\n{}",
        out.stdout
    );
    for line in cgroups {
        for d in cgroup_dirs(line) {
            assert!(!d.exists(), "cgroup {} is left behind", d.display());
        }
    }
    assert!(
        !fx.path("state").join(id).exists(),
        "the dyno dir is left behind"
    );
    assert_eq!(mounts_mentioning(&fx.path("state")), Vec::<String>::new());
}

#[test]
fn runtime_container_memory_limit_kills_and_reports_oom() {
    if skip_unless_root("the memory limit") {
        return;
    }
    let fx = Fixture::new();
    // Quota 32 MiB: the hard limit is 64 MiB. 8 MiB fits, 300 MiB does not.
    let cmd = fx.dyno_run(
        "rt-oom-1",
        &["--mode", "container", "--memory-mb", "32"],
        r#"python3 -c 'a = b"x" * (8 << 20); print("small ok", flush=True); b = b"x" * (300 << 20); print("survived")'"#,
    );
    let out = run(cmd, "");
    assert!(
        out.stdout.contains("small ok"),
        "python did not start: {}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(!out.stdout.contains("survived"), "{}", out.stdout);
    assert_eq!(
        out.status.code(),
        Some(128 + 9),
        "killed by SIGKILL\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("ran out of memory"),
        "OOM reported: {}",
        out.stderr
    );
    assert!(!fx.path("state/rt-oom-1").exists());
}

#[test]
fn runtime_container_programs_may_reopen_their_stdout_and_stderr() {
    if skip_unless_root("reopening stdio") {
        return;
    }
    let fx = Fixture::new();
    // nginx and many loggers open /dev/stderr by path; the pipes are the agent's.
    let cmd = fx.dyno_run(
        "rt-stdio-1",
        &["--mode", "container"],
        "echo to-stdout > /dev/stdout && echo to-stderr > /dev/stderr",
    );
    let out = run(cmd, "");
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("to-stdout"), "{}", out.stdout);
    assert!(out.stderr.contains("to-stderr"), "{}", out.stderr);
    // The host's /dev/null, bound into every dyno, keeps its owner.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata("/dev/null").unwrap().uid(), 0);
}

const TERM_SH: &str = r#"#!/bin/bash
trap 'wait "$BG"; echo main >/out/main; exit 7' TERM
( trap 'echo got >/out/bg; exit 0' TERM; echo ready >/out/ready; while :; do sleep 0.05; done ) &
BG=$!
while :; do sleep 0.05; done
"#;

fn sigterm(child: &Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}

#[test]
fn runtime_container_sigterm_reaches_every_process() {
    if skip_unless_root("container signals") {
        return;
    }
    let fx = Fixture::new();
    fx.script("term.sh", TERM_SH);
    let out_bind = format!("{}:/out:rw", fx.path("out").display());
    let cmd = fx.dyno_run(
        "rt-term-1",
        &["--mode", "container", "--bind", &out_bind],
        "bin/term.sh",
    );
    let (child, readers) = start(cmd, "");
    eventually(
        "the dyno's background process to start",
        Duration::from_secs(30),
        || fx.path("out/ready").exists().then_some(()),
    );
    // The dyno's mounts live in its own mount namespace only.
    assert_eq!(mounts_mentioning(&fx.path("state")), Vec::<String>::new());
    assert!(fx.path("state/rt-term-1/upper").is_dir());
    sigterm(&child);
    let out = finish(child, readers, Duration::from_secs(30));
    assert_eq!(
        out.status.code(),
        Some(7),
        "the main process's trap decides the exit code\n{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(fx.path("out/bg")).unwrap_or_default(),
        "got\n",
        "the background process got SIGTERM"
    );
    assert!(fx.path("out/main").exists());
    assert!(!fx.path("state/rt-term-1").exists());
}

#[test]
fn runtime_container_kill_after_the_stop_timeout() {
    if skip_unless_root("container kill") {
        return;
    }
    let fx = Fixture::new();
    fx.script(
        "stubborn.sh",
        "#!/bin/bash\ntrap '' TERM\n( trap '' TERM; echo ready >/out/ready; while :; do sleep 0.05; done ) &\nwhile :; do sleep 0.05; done\n",
    );
    let out_bind = format!("{}:/out:rw", fx.path("out").display());
    let cmd = fx.dyno_run(
        "rt-kill-1",
        &[
            "--mode",
            "container",
            "--bind",
            &out_bind,
            "--stop-timeout",
            "1",
        ],
        "bin/stubborn.sh",
    );
    let (child, readers) = start(cmd, "");
    eventually("the dyno to start", Duration::from_secs(30), || {
        fx.path("out/ready").exists().then_some(())
    });
    sigterm(&child);
    let out = finish(child, readers, Duration::from_secs(30));
    assert_eq!(
        out.status.code(),
        Some(128 + 9),
        "SIGKILL after the timeout\n{}",
        out.stderr
    );
    assert!(!out.stderr.contains("out of memory"), "{}", out.stderr);
    assert!(!fx.path("state/rt-kill-1").exists());
}

#[test]
fn runtime_process_mode_runs_a_copy_of_the_slug() {
    let fx = Fixture::new();
    fx.script(
        "pm.sh",
        "#!/bin/bash\necho \"home=$HOME\"\necho \"pwd=$(pwd)\"\necho \"foo=$FOO\"\necho \"bar=$BAR\"\necho \"slug=$(cat hello.txt)\"\necho written >new.txt\nread -r l; echo \"stdin=$l\"\nexit 3\n",
    );
    let cmd = fx.dyno_run(
        "rt-process-1",
        &["--mode", "process", "--env", "BAR=from-env"],
        "bin/pm.sh",
    );
    let out = run(cmd, "typed\n");
    assert_eq!(out.status.code(), Some(3), "{}", out.stderr);
    let copy = fx.path("state/rt-process-1/app");
    assert_eq!(field(&out, "home"), copy.to_string_lossy());
    assert_eq!(field(&out, "pwd"), copy.to_string_lossy());
    assert_eq!(field(&out, "foo"), "from-profile");
    assert_eq!(field(&out, "bar"), "from-env");
    assert_eq!(field(&out, "slug"), "hello from the slug");
    assert_eq!(field(&out, "stdin"), "typed");
    assert!(!fx.path("slug/new.txt").exists());
    assert!(!fx.path("state/rt-process-1").exists());
    assert!(out.status.signal().is_none());
}

#[test]
fn runtime_container_pids_limit_caps_forks() {
    if skip_unless_root("the pids limit") {
        return;
    }
    let fx = Fixture::new();
    fx.script(
        "forks.py",
        "#!/usr/bin/env python3\nimport os, time\nfor i in range(100):\n    try:\n        pid = os.fork()\n    except OSError:\n        print('limited at', i, flush=True)\n        break\n    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\nelse:\n    print('unlimited', flush=True)\n",
    );
    let cmd = fx.dyno_run(
        "rt-pids-1",
        &["--mode", "container", "--pids", "16"],
        "bin/forks.py",
    );
    let out = run(cmd, "");
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let n: usize = out
        .stdout
        .trim()
        .strip_prefix("limited at ")
        .unwrap_or_else(|| panic!("forks were not limited: {}", out.stdout))
        .parse()
        .unwrap();
    // 16 tasks: init, python, and at most 14 children.
    assert!(n <= 14, "{n} forks under a limit of 16");
    assert!(!fx.path("state/rt-pids-1").exists());
}
