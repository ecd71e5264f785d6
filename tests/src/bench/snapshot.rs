//! Snapshots at size (issue 14): on a 3-node cluster with one follower stopped, 100,000
//! releases (config-var writes from 32 clients over 100 apps) make the leader build
//! snapshots and purge its log past the stopped follower; restarted, the follower
//! catches up by installing one. The figures are the agents' own log lines — the
//! leader's last `snapshot built` (its file written in the background, with its size)
//! and the follower's `snapshot installed` — and the follower's time from restart to
//! applied as far as the leader.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::apps::create_app;
use super::writes::{haven_write, load_capped};
use super::{Opts, Progress, Row};
use crate::Env;

const APPS: usize = 100;

/// `(ms, bytes)` of the last line of `what` ("snapshot built" or "snapshot installed")
/// in node `i`'s log.
fn last_line(env: &Env, i: usize, what: &str) -> Option<(f64, f64)> {
    let log = std::fs::read_to_string(&env.file.nodes[i].log).ok()?;
    let line = log.lines().rev().find(|l| l.contains(what))?;
    let field = |name: &str| -> Option<f64> {
        let at = line.find(&format!("{name}="))? + name.len() + 1;
        let rest = &line[at..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    };
    Some((field("ms")?, field("bytes")?))
}

fn applied(env: &Env, i: usize) -> Option<u64> {
    env.status(i).ok()?["applied_index"].as_u64()
}

pub fn section(opts: &Opts, progress: Progress<'_>) -> Result<Vec<Row>> {
    let releases = opts.pick(100_000, 10_000);
    progress("snapshot: starting a 3-node cluster");
    let mut env = super::cluster(3, Some("[raft]\nkeep_logs = 1000\n"));
    for a in 0..APPS {
        create_app(&env, &format!("bench-{a}"))?;
    }
    let leader = env.leader_index().context("no leader")?;
    let follower = (0..3).find(|i| *i != leader).context("no follower")?;
    env.kill(follower)?;
    progress(&format!(
        "snapshot: making {releases} releases with node {follower} down"
    ));
    let rt = tokio::runtime::Runtime::new()?;
    let f = rt.block_on(load_capped(
        32,
        Duration::from_secs(3600),
        releases,
        haven_write(env.api(leader).to_string(), env.token().to_string(), APPS),
    ));
    // The leader's newest snapshot covers the writes once it is built.
    let target = applied(&env, leader).context("the leader's status")?;
    let t = Instant::now();
    loop {
        let st = env.status(leader)?;
        if st["snapshot_index"].as_u64().unwrap_or(0) + 5000 >= target
            && st["purged_index"].as_u64().unwrap_or(0) > 0
        {
            break;
        }
        if t.elapsed() > Duration::from_secs(120) {
            bail!("the leader built no snapshot near index {target}: {st}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let built = last_line(&env, leader, "snapshot built");
    progress("snapshot: restarting the follower");
    let t = Instant::now();
    env.restart(follower)?;
    let target = applied(&env, leader).context("the leader's status")?;
    loop {
        if applied(&env, follower).is_some_and(|a| a >= target) {
            break;
        }
        if t.elapsed() > Duration::from_secs(300) {
            bail!("the follower did not catch up in 300 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let caught_up = t.elapsed().as_secs_f64();
    let installed = last_line(&env, follower, "snapshot installed");
    env.down();
    let mib = |b: f64| b / 1048576.0;
    let mut rows = Vec::new();
    match built {
        Some((ms, bytes)) => rows.push(
            Row::new(
                "snapshot",
                &format!("snapshot build at {}k releases", f.writes / 1000),
                ms / 1000.0,
                "s",
            )
            .note(format!(
                "{:.1} MiB file written in the background (the apply loop does not wait); {} writes, {} errors",
                mib(bytes),
                f.writes,
                f.errors
            )),
        ),
        None => rows.push(Row::missing(
            "snapshot",
            "snapshot build",
            "s",
            "no `snapshot built` line in the leader's log",
        )),
    }
    match installed {
        Some((ms, bytes)) => rows.push(
            Row::new(
                "snapshot",
                &format!("snapshot install at {}k releases", f.writes / 1000),
                ms / 1000.0,
                "s",
            )
            .note(format!(
                "{:.1} MiB; the restarted follower applied as far as the leader {caught_up:.1} s after its start",
                mib(bytes)
            )),
        ),
        None => rows.push(Row::missing(
            "snapshot",
            "snapshot install",
            "s",
            "no `snapshot installed` line in the follower's log (it caught up from the log?)",
        )),
    }
    Ok(rows)
}
