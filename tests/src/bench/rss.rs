//! Memory of `havend` as releases pile up (issue 14): the resident set (`VmRSS` of
//! `/proc/PID/status`) of each agent of a fresh idle 3-node cluster, and of the same
//! agents after 5,000, 50,000 and 200,000 releases (config-var writes from 32 clients
//! spread over 100 apps; each write makes a release), with the p99 latency of the last
//! 2,000 writes before each size.

use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::apps::create_app;
use super::writes::{haven_write, load_capped};
use super::{rss_mib, Opts, Progress, Row, Target};
use crate::Env;

const APPS: usize = 100;
/// Writes timed at each size (the last ones before it).
const PROBE: usize = 2_000;

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

    let sizes: Vec<usize> = if opts.quick {
        vec![2_500, 5_000, 10_000]
    } else {
        vec![5_000, 50_000, 200_000]
    };
    for a in 0..APPS {
        create_app(&env, &format!("bench-{a}"))?;
    }
    let leader = env.leader_index().context("no leader")?;
    let rt = tokio::runtime::Runtime::new()?;
    let write = || haven_write(env.api(leader).to_string(), env.token().to_string(), APPS);
    let mut done = 0usize;
    let mut errors = 0usize;
    let mut at: Vec<(usize, Vec<f64>, f64)> = Vec::new();
    for size in &sizes {
        let fill = size.saturating_sub(PROBE).saturating_sub(done);
        progress(&format!("rss: making {fill} releases, then timing {PROBE}"));
        let f = rt.block_on(load_capped(32, Duration::from_secs(3600), fill, write()));
        done += f.writes;
        errors += f.errors;
        let probe = rt.block_on(load_capped(32, Duration::from_secs(600), PROBE, write()));
        done += probe.writes;
        errors += probe.errors;
        let rss = rss_of_nodes(&env)?;
        progress(&format!(
            "rss: after {done} releases: {} MiB; p99 {:.2} ms",
            list(&rss),
            probe.p99_ms
        ));
        at.push((done, rss, probe.p99_ms));
    }
    env.down();
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let mut rows = vec![Row::new(
        "rss",
        "idle agent RSS (largest of 3 nodes)",
        idle_max,
        "MiB",
    )
    .target(Target::at_most(40.0))
    .note(format!("each node: {} MiB", list(&idle)))];
    for (n, rss, p99) in &at {
        rows.push(
            Row::new(
                "rss",
                &format!("agent RSS after {}k releases (largest of 3 nodes)", n / 1000),
                max(rss),
                "MiB",
            )
            .target(Target::at_most(100.0))
            .note(format!(
                "{n} releases over {APPS} apps; each node: {} MiB; p99 of the last {PROBE} writes {p99:.2} ms",
                list(rss)
            )),
        );
    }
    if let (Some(first), Some(last)) = (at.first(), at.last()) {
        rows.push(
            Row::new(
                "rss",
                &format!(
                    "RSS growth from {}k to {}k releases",
                    first.0 / 1000,
                    last.0 / 1000
                ),
                max(&last.1) / max(&first.1).max(0.1),
                "×",
            )
            .target(Target::at_most(1.5))
            .note(format!("{errors} write errors in all")),
        );
        rows.push(
            Row::new(
                "rss",
                &format!(
                    "p99 write latency at {}k vs {}k releases",
                    last.0 / 1000,
                    first.0 / 1000
                ),
                last.2 / first.2.max(0.001),
                "×",
            )
            .target(Target::at_most(1.2))
            .note(format!(
                "{:.2} ms vs {:.2} ms, 32 clients to the leader",
                last.2, first.2
            )),
        );
    }
    Ok(rows)
}
