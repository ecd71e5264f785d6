//! The chaos verdict: a short seeded fault schedule on five nodes
//! ([`haven_testcluster::chaos::run`]), its checks and the router error rate.

use std::time::Duration;

use anyhow::Result;
use haven_testcluster::chaos::{self, ChaosOptions};
use haven_testcluster::Mode;

use super::{Opts, Progress, Row, Target};

pub fn section(opts: &Opts, progress: Progress<'_>) -> Result<Vec<Row>> {
    let seed = std::env::var("HAVEN_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(42);
    let dir = tempfile::Builder::new()
        .prefix("haven-bench-chaos-")
        .tempdir()?;
    let copts = ChaosOptions {
        nodes: 5,
        duration: opts.secs(60, 30),
        seed,
        apps: 2,
        dir: dir.path().to_path_buf(),
        keep: false,
        havend: None,
        mode: Mode::Auto,
    };
    let report = chaos::run(&copts, &mut |line| progress(&format!("chaos: {line}")))?;
    let ok = report.checks.iter().filter(|c| c.ok).count();
    let total = report.checks.len();
    let verdict = match report.first_violation() {
        None => "PASS".to_string(),
        Some(c) => format!("FAIL (first violated check: {}: {})", c.name, c.detail),
    };
    let router = &report.to_json()["figures"]["router"];
    let rate = router["error_rate"].as_f64().unwrap_or(f64::NAN) * 100.0;
    Ok(vec![
        Row::new("chaos", "chaos verdict: checks passed", ok as f64, "checks")
            .target(Target::at_least(total.max(1) as f64))
            .note(format!(
                "{verdict}; {} faults applied over {:?} on 5 nodes; replay: {}",
                report.applied,
                Duration::from_secs(copts.duration.as_secs()),
                report.replay()
            )),
        Row::new(
            "chaos",
            "chaos: router errors from healthy routers",
            rate,
            "%",
        )
        .target(Target::at_most(0.1))
        .note(format!(
            "{} errors of {} requests, {} outside the windows after faults",
            router["errors"], router["requests"], router["errors_outside_windows"]
        )),
    ])
}
