//! Dyno start beside `crun run`, in the same run.
//!
//! Haven: on a 1-node cluster (the node holds the slug), worker dynos whose command
//! prints `ready` are scaled up one at a time; the agent's own log lines time each start, in
//! microseconds on one clock: from `heroku[ping.N]: Starting process with command …`
//! (the supervisor has taken the placement and is about to create the container) to
//! the dyno's first line `app[ping.N]: ready` (its process runs and has written). A
//! second figure times from the API's `Scaled to …` line to the same first line: the
//! scheduler's decision, the Raft commits and the agent's reconcile included.
//!
//! crun: an OCI bundle like a dyno's container (a read-only root with the host's `/usr`
//! bound in, new PID, mount, IPC and UTS namespaces, the host network, a cgroup) whose
//! process prints `ready`; timed from spawning `crun run` to reading that line.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, FixedOffset};
use serde_json::{json, Value};

use super::apps::{copy_files, create_app, hctl, up_dynos};
use super::{have, is_root, median, percentile, Opts, Progress, Row, Target};

const APP: &str = "dynostart";

/// Per-dyno start times from an app's log: (Starting → first line, Scaled → first line),
/// in milliseconds, for dynos of type `kind` whose first line is `ready`.
pub fn starts_from_log(log: &str, kind: &str) -> Vec<(f64, f64)> {
    let mut starting: HashMap<String, DateTime<FixedOffset>> = HashMap::new();
    let mut scaled: Option<DateTime<FixedOffset>> = None;
    let mut out = Vec::new();
    let ms = |a: DateTime<FixedOffset>, b: DateTime<FixedOffset>| {
        (b - a).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
    };
    for line in log.lines() {
        let Some((ts, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(at) = DateTime::parse_from_rfc3339(ts) else {
            continue;
        };
        let Some((who, msg)) = rest.split_once("]: ") else {
            continue;
        };
        let Some((source, process)) = who.split_once('[') else {
            continue;
        };
        if source == "app" && process == "api" && msg.starts_with("Scaled to") {
            scaled = Some(at);
        }
        if !process.starts_with(&format!("{kind}.")) {
            continue;
        }
        if source == "heroku" && msg.starts_with("Starting process") {
            starting.insert(process.to_string(), at);
        } else if source == "app" && msg == "ready" {
            if let Some(s) = starting.remove(process) {
                out.push((ms(s, at), scaled.map_or(f64::NAN, |d| ms(d, at))));
            }
        }
    }
    out
}

/// Haven's samples: `ping` scaled up by one dyno at a time to `count` (one start at a
/// time, as crun's runs are).
/// With the heroku-24 images (`scripts/build-stack`) imported first, dynos run on the
/// run image; the returned path is the node's unpacked run image, for crun's bundle.
pub fn measure_haven(
    count: usize,
    progress: Progress<'_>,
) -> Result<(Vec<(f64, f64)>, Option<std::path::PathBuf>)> {
    progress("dyno-start: starting a 1-node cluster");
    let env = super::cluster(1, None);
    let images =
        ["run", "build"].map(|k| crate::repo_path(&format!("target/stacks/heroku-24-{k}.tar.zst")));
    let mut stack_root = None;
    if images.iter().all(|p| p.is_file()) {
        progress("dyno-start: importing the heroku-24 stack images");
        hctl(
            &env,
            0,
            &[
                "stacks:import",
                "heroku-24",
                "--run",
                &images[0].to_string_lossy(),
                "--build",
                &images[1].to_string_lossy(),
            ],
        )?;
        let stack = env.get_json(0, "/stacks/heroku-24")?;
        let sha = stack["images"]
            .as_array()
            .and_then(|i| i.iter().find(|i| i["kind"] == "run"))
            .and_then(|i| i["sha256"].as_str())
            .context("the imported run image")?
            .to_string();
        stack_root = env.data_dir(0).map(|d| d.join("stacks").join(sha));
    }
    create_app(&env, APP)?;
    let dir = tempfile::tempdir()?;
    copy_files(&crate::repo_path("examples/python-hello"), dir.path())?;
    std::fs::write(
        dir.path().join("Procfile"),
        "web: python3 app.py\nping: echo ready; exec sleep 100000\n",
    )?;
    hctl(
        &env,
        0,
        &["deploy", &dir.path().to_string_lossy(), "-a", APP],
    )?;
    hctl(&env, 0, &["ps:wait", "-a", APP, "--timeout", "90"])?;
    for n in 1..=count {
        progress(&format!("dyno-start: ping={n}"));
        hctl(&env, 0, &["ps:scale", &format!("ping={n}"), "-a", APP])?;
        if !haven_testcluster::wait_until(Duration::from_secs(60), || {
            up_dynos(&env, APP, "ping").len() == n
        }) {
            bail!("{n} ping dynos were not up within 60 s");
        }
    }
    let log = hctl(&env, 0, &["logs", "-n", "1500", "-a", APP])?;
    let samples = starts_from_log(&log, "ping");
    if samples.is_empty() {
        bail!("no dyno start found in the app's log");
    }
    // crun's bundle binds the unpacked image: it must outlive the cluster.
    let stack_root = match stack_root {
        Some(root) => {
            let keep =
                std::env::temp_dir().join(format!("haven-bench-stack-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&keep);
            let ok = Command::new("cp")
                .arg("-a")
                .arg(&root)
                .arg(&keep)
                .status()?;
            ok.success().then_some(keep)
        }
        None => None,
    };
    Ok((samples, stack_root))
}

/// A bundle in `dir`: rootfs with `/usr` of `stack` (an unpacked stack image; `None`:
/// the host's) bound read-only, printing `ready`.
fn make_bundle(dir: &Path, stack: Option<&Path>) -> Result<()> {
    let base = stack.unwrap_or(Path::new("/"));
    let rootfs = dir.join("rootfs");
    for d in ["usr", "proc", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(d))?;
    }
    // Debian's merged /usr: /bin, /lib … are links into /usr, as on the host.
    for l in ["bin", "sbin", "lib", "lib64"] {
        if let Ok(target) = std::fs::read_link(base.join(l)) {
            std::os::unix::fs::symlink(target, rootfs.join(l))?;
        }
    }
    let out = Command::new("crun")
        .arg("spec")
        .current_dir(dir)
        .output()
        .context("run crun spec")?;
    if !out.status.success() {
        bail!("crun spec: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let mut spec: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json"))?)?;
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!(["/bin/sh", "-c", "echo ready"]);
    spec["root"]["readonly"] = json!(true);
    if let Some(m) = spec["mounts"].as_array_mut() {
        // A dyno sees no cgroup file system.
        m.retain(|m| m["destination"] != "/sys/fs/cgroup");
        let usr = base.join("usr").to_string_lossy().into_owned();
        m.push(json!({"destination": "/usr", "type": "bind", "source": usr, "options": ["rbind", "ro"]}));
    }
    // Dynos use the host network (they listen on host ports): no network namespace.
    if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
        ns.retain(|n| n["type"] != "network");
    }
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&spec)?)?;
    Ok(())
}

/// Whether cgroup v1 controllers are mounted beside a cgroup2 hierarchy.
pub fn hybrid_cgroups() -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let v1 = mounts
        .lines()
        .any(|l| l.split(' ').nth(2) == Some("cgroup"));
    let v2 = mounts
        .lines()
        .any(|l| l.split(' ').nth(2) == Some("cgroup2"));
    v1 && v2
}

/// crun 1.8 refuses a hybrid host whose cgroup2 hierarchy has a controller (here
/// `hugetlb`); Haven uses the v1 controllers there. So crun runs in a mount namespace of
/// its own where `/sys/fs/cgroup/unified` is unmounted: it then uses the v1 controllers
/// as Haven does. The host's mounts are untouched.
fn hide_unified_cgroup(cmd: &mut Command) {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    use std::os::unix::process::CommandExt as _;
    // SAFETY: between fork and exec the closure makes only syscalls (unshare, mount,
    // umount2) on constant paths; it allocates nothing and touches no parent state.
    unsafe {
        cmd.pre_exec(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )?;
            umount2("/sys/fs/cgroup/unified", MntFlags::MNT_DETACH)?;
            Ok(())
        });
    }
}

/// crun's samples, in milliseconds: `runs` runs of the bundle.
pub fn measure_crun(runs: usize, progress: Progress<'_>, stack: Option<&Path>) -> Result<Vec<f64>> {
    let dir = tempfile::Builder::new()
        .prefix("haven-bench-crun-")
        .tempdir()?;
    make_bundle(dir.path(), stack)?;
    let hybrid = hybrid_cgroups();
    progress(&format!("dyno-start: {runs} runs of crun run"));
    let mut out = Vec::new();
    for i in 0..runs {
        let id = format!("haven-bench-{}-{i}", std::process::id());
        let t0 = Instant::now();
        let mut cmd = Command::new("crun");
        cmd.args(["run", "--bundle"])
            .arg(dir.path())
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if hybrid {
            hide_unified_cgroup(&mut cmd);
        }
        let mut child = cmd.spawn().context("run crun")?;
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = BufReader::new(stdout).read_line(&mut line);
        }
        let took = t0.elapsed().as_secs_f64() * 1000.0;
        let status = child.wait()?;
        if line.trim() != "ready" {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            let _ = Command::new("crun").args(["delete", "-f", &id]).output();
            bail!(
                "crun run ({status}) printed {:?}: {}",
                line.trim(),
                err.trim()
            );
        }
        out.push(took);
    }
    Ok(out)
}

pub fn section(opts: &Opts, progress: Progress<'_>) -> Result<Vec<Row>> {
    let name = "dyno start: placement taken → process running (median)";
    if !is_root() {
        return Ok(vec![Row::missing(
            "dyno-start",
            name,
            "ms",
            "needs root: dynos run in containers only as root",
        )]);
    }
    let (samples, stack) = measure_haven(opts.pick(20, 5), progress)?;
    let crun = if have("crun") {
        measure_crun(opts.pick(30, 10), progress, stack.as_deref()).map_err(|e| format!("{e:#}"))
    } else {
        Err("crun is not installed (scripts/install-bench-deps)".to_string())
    };
    let root = if stack.is_some() {
        "both on the heroku-24 run image, the dyno in its own network namespace"
    } else {
        "both on the host's /usr (no stack images in target/stacks: scripts/build-stack)"
    };
    if let Some(s) = &stack {
        let _ = std::fs::remove_dir_all(s);
    }
    let mut start: Vec<f64> = samples.iter().map(|s| s.0).collect();
    let mut decided: Vec<f64> = samples
        .iter()
        .map(|s| s.1)
        .filter(|v| v.is_finite())
        .collect();
    let n = start.len();
    let (crun_med, crun_note) = match crun {
        Ok(mut v) => {
            let m = median(&mut v);
            (
                Some(m),
                format!(
                    "crun: median of {} runs, p99 {:.2} ms{}",
                    v.len(),
                    percentile(&mut v, 0.99),
                    if hybrid_cgroups() {
                        ", v1 cgroups as Haven's (crun's view of the cgroup2 mount hidden)"
                    } else {
                        ""
                    }
                ),
            )
        }
        Err(e) => (None, e),
    };
    let med = median(&mut start);
    let p99 = percentile(&mut start, 0.99);
    let mut rows = vec![Row::new("dyno-start", name, med, "ms")
        .target(Target::at_most(20.0))
        .peer("crun run", crun_med)
        .note(format!(
            "agent log: Starting process → first line, {n} dynos, p99 {p99:.2} ms; {crun_note}; {root}"
        ))];
    if let Some(c) = crun_med {
        rows.push(
            Row::new("dyno-start", "dyno start vs crun run (same run)", med, "ms")
                .target(Target::at_most_peer(1.0))
                .peer("crun run", Some(c)),
        );
    }
    let dn = decided.len();
    rows.push(
        Row::new(
            "dyno-start",
            "dyno start: scale request committed → process running (median)",
            median(&mut decided),
            "ms",
        )
        .note(format!(
            "API's Scaled-to line → first line, {dn} dynos: the leader's plan, the Raft commits and the agent's reconcile included"
        )),
    );
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_are_read_from_the_log() {
        let log = "\
2026-01-01T00:00:00.000000+00:00 app[api]: Scaled to ping@2:Standard-1X by admin
2026-01-01T00:00:00.100000+00:00 heroku[ping.1]: Starting process with command `echo ready`
2026-01-01T00:00:00.104500+00:00 app[ping.1]: ready
2026-01-01T00:00:00.200000+00:00 heroku[ping.2]: Starting process with command `echo ready`
2026-01-01T00:00:00.210000+00:00 heroku[web.1]: Starting process with command `x`
2026-01-01T00:00:00.230000+00:00 app[ping.2]: ready
2026-01-01T00:00:00.240000+00:00 app[ping.2]: ready
";
        let s = starts_from_log(log, "ping");
        assert_eq!(s.len(), 2);
        assert!((s[0].0 - 4.5).abs() < 1e-9);
        assert!((s[0].1 - 104.5).abs() < 1e-9);
        assert!((s[1].0 - 30.0).abs() < 1e-9);
    }
}
