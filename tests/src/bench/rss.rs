//! Memory of `havend`: the resident set (`VmRSS` of `/proc/PID/status`) of each agent of a
//! fresh idle 3-node cluster, and of the same agents after 100,000 releases (config-var
//! writes from 32 clients spread over 10 apps; each write makes a release).

use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::apps::create_app;
use super::writes::{haven_write, load_capped};
use super::{rss_mib, Opts, Progress, Row, Target};
use crate::Env;

const APPS: usize = 10;

/// The RSS of every node's `havend`, in MiB.
fn rss_of_nodes(env: &Env) -> Result<Vec<f64>> {
    env.file
        .nodes
        .iter()
        .map(|n| {
            let comm = std::fs::read_to_string(format!("/proc/{}/comm", n.pid)).unwrap_or_default();
            if comm.trim() != "havend" {
                bail!("process {} is {:?}, not havend", n.pid, comm.trim());
            }
            rss_mib(n.pid).with_context(|| format!("read the RSS of pid {}", n.pid))
        })
        .collect()
}

fn list(v: &[f64]) -> String {
    v.iter()
        .map(|m| format!("{m:.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn section(opts: &Opts, progress: Progress<'_>) -> Result<Vec<Row>> {
    progress("rss: starting a 3-node cluster");
    let mut env = super::cluster(3, None);
    // Idle: formed, nothing deployed; let start-up work settle.
    std::thread::sleep(opts.secs(10, 3));
    let idle = rss_of_nodes(&env)?;
    progress(&format!("rss: idle agents: {} MiB", list(&idle)));
    let idle_max = idle.iter().copied().fold(0.0, f64::max);

    let releases = opts.pick(100_000, 5_000);
    for a in 0..APPS {
        create_app(&env, &format!("bench-{a}"))?;
    }
    let leader = env.leader_index().context("no leader")?;
    progress(&format!("rss: making {releases} releases"));
    let rt = tokio::runtime::Runtime::new()?;
    let f = rt.block_on(load_capped(
        32,
        Duration::from_secs(1800),
        releases,
        haven_write(env.api(leader).to_string(), env.token().to_string(), APPS),
    ));
    let after = rss_of_nodes(&env)?;
    progress(&format!(
        "rss: after {} releases ({:.0}/s): {} MiB",
        f.writes,
        f.per_sec,
        list(&after)
    ));
    let after_max = after.iter().copied().fold(0.0, f64::max);
    env.down();
    Ok(vec![
        Row::new(
            "rss",
            "idle agent RSS (largest of 3 nodes)",
            idle_max,
            "MiB",
        )
        .target(Target::at_most(40.0))
        .note(format!("each node: {} MiB", list(&idle))),
        Row::new(
            "rss",
            &format!(
                "agent RSS after {}k releases (largest of 3 nodes)",
                releases / 1000
            ),
            after_max,
            "MiB",
        )
        .target(Target::at_most(100.0))
        .note(format!(
            "{} releases over {APPS} apps ({} errors); each node: {} MiB",
            f.writes,
            f.errors,
            list(&after)
        )),
    ])
}
