//! The short chaos schedule: five nodes, about two minutes of seeded faults (kills of
//! random nodes and of the leader, SIGSTOP, partitions of one node and of a minority,
//! one-way cuts, kills during a deploy and during a build) under config-var writes and
//! reads, router traffic and `hctl ps`; then the verdict of `testcluster chaos`.
//!
//! The seed comes from `HAVEN_CHAOS_SEED`, else from the clock; a failure prints it and
//! the command that replays the same schedule.

use std::time::Duration;

use haven_testcluster::chaos::{self, ChaosOptions};
use haven_testcluster::Mode;

#[test]
fn a_short_chaos_schedule_loses_no_write_and_converges() {
    let seed = std::env::var("HAVEN_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs())
        });
    let dir = tempfile::Builder::new()
        .prefix("haven-chaos-")
        .tempdir()
        .unwrap();
    let opts = ChaosOptions {
        nodes: 5,
        duration: Duration::from_secs(120),
        seed,
        apps: 2,
        dir: dir.path().to_path_buf(),
        keep: false,
        havend: None,
        mode: match std::env::var("HAVEN_E2E_MODE").as_deref() {
            Ok("loopback") => Mode::Loopback,
            _ => Mode::Auto,
        },
    };
    eprintln!("chaos seed {seed}");
    let report = chaos::run(&opts, &mut |line| eprintln!("{line}"))
        .unwrap_or_else(|e| panic!("chaos run with seed {seed}: {e:#}"));
    eprintln!("{report}");
    eprintln!("{}", report.to_json()["figures"]);
    assert!(
        report.applied >= 5,
        "only {} faults applied",
        report.applied
    );
    assert!(report.passed(), "{report}");
}
