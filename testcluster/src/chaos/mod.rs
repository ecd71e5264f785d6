//! `testcluster chaos`: a seeded schedule of faults against a fresh cluster running apps
//! under load, then a verdict (design §13).
//!
//! [`run`] starts the cluster, deploys the apps (`apps.rs`), starts the clients
//! (`workload.rs`), applies the schedule (`schedule.rs`, `faults.rs`) one fault at a
//! time, heals everything and checks (`verdict.rs`): acknowledged writes present, each
//! key's history linearizable (`linearizable.rs`), formations exact, no half-made
//! release, state that reopens after every node is killed at once, and no router error
//! outside the window after a fault. The same seed replays the same schedule.

mod apps;
mod faults;
pub mod linearizable;
pub mod schedule;
mod verdict;
mod workload;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{json, Value};

pub use schedule::{Event, Fault};
pub use verdict::Check;

use crate::{Mode, Options, TestCluster};
use workload::{lock, NodeHealth, Shared, Targets, Workload, KEYS, KV_APP};

/// Value every register starts with.
const INIT: &str = "init";
/// How long formations may take to be exact after healing.
const SETTLE: Duration = Duration::from_secs(180);

/// What a chaos run does.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    pub nodes: usize,
    /// Length of the fault phase.
    pub duration: Duration,
    pub seed: u64,
    /// Apps with web and worker formations.
    pub apps: usize,
    /// Where the cluster lives.
    pub dir: PathBuf,
    /// Leave the cluster running afterwards.
    pub keep: bool,
    pub havend: Option<PathBuf>,
    pub mode: Mode,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Report {
    pub opts: ChaosOptions,
    pub schedule: Vec<Event>,
    /// How many events of the schedule were applied.
    pub applied: usize,
    pub checks: Vec<Check>,
    /// Deploys made during faults: (app, fault, outcome).
    pub deploys: Vec<(String, String, Result<(), String>)>,
    pub figures: Value,
}

impl Report {
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }
    /// The first check that failed.
    pub fn first_violation(&self) -> Option<&Check> {
        self.checks.iter().find(|c| !c.ok)
    }
    /// The command that replays this run.
    pub fn replay(&self) -> String {
        format!(
            "testcluster chaos --nodes {} --duration {}s --seed {} --apps {}",
            self.opts.nodes,
            self.opts.duration.as_secs(),
            self.opts.seed,
            self.opts.apps
        )
    }
    pub fn to_json(&self) -> Value {
        json!({
            "seed": self.opts.seed,
            "nodes": self.opts.nodes,
            "duration_s": self.opts.duration.as_secs_f64(),
            "apps": self.opts.apps,
            "passed": self.passed(),
            "schedule": self.schedule.iter().take(self.applied).map(|e| json!({
                "at_s": e.at.as_secs_f64(), "fault": e.fault.to_string()
            })).collect::<Vec<_>>(),
            "checks": self.checks.iter().map(|c| json!({
                "name": c.name, "ok": c.ok, "detail": c.detail
            })).collect::<Vec<_>>(),
            "deploys": self.deploys.iter().map(|(a, f, r)| json!({
                "app": a, "during": f, "ok": r.is_ok(), "error": r.as_ref().err()
            })).collect::<Vec<_>>(),
            "figures": self.figures,
            "replay": self.replay(),
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "chaos seed {}: {} nodes, {}s of faults, {} of {} scheduled faults applied",
            self.opts.seed,
            self.opts.nodes,
            self.opts.duration.as_secs(),
            self.applied,
            self.schedule.len()
        )?;
        if !self.passed() {
            writeln!(f, "schedule:")?;
            for e in self.schedule.iter().take(self.applied) {
                writeln!(f, "  {:>6.1}s  {}", e.at.as_secs_f64(), e.fault)?;
            }
        }
        for (app, during, r) in &self.deploys {
            match r {
                Ok(()) => writeln!(f, "deploy of {app} during \"{during}\": succeeded")?,
                Err(e) => writeln!(f, "deploy of {app} during \"{during}\": failed: {e}")?,
            }
        }
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(5);
        writeln!(f, "{:width$}  result  detail", "check")?;
        for c in &self.checks {
            let r = if c.ok { "ok" } else { "FAIL" };
            writeln!(f, "{:width$}  {r:<6}  {}", c.name, c.detail)?;
        }
        match self.first_violation() {
            None => writeln!(f, "verdict: PASS")?,
            Some(c) => writeln!(f, "verdict: FAIL (first violated check: {})", c.name)?,
        }
        write!(f, "replay: {}", self.replay())
    }
}

/// Runs a chaos test as `opts` says, reporting progress lines to `progress`.
pub fn run(opts: &ChaosOptions, progress: &mut dyn FnMut(&str)) -> Result<Report> {
    let mut o = Options::new(opts.nodes, &opts.dir);
    o.havend = opts.havend.clone();
    o.mode = opts.mode;
    progress(&format!(
        "starting {} nodes in {}",
        opts.nodes,
        opts.dir.display()
    ));
    let mut tc = TestCluster::start(o).context("start the cluster")?;
    if opts.keep {
        tc.keep();
    }
    let spec = schedule::ScheduleSpec {
        seed: opts.seed,
        nodes: opts.nodes,
        duration: opts.duration,
        apps: opts.apps,
        agent_kills: true,
        partitions: tc.is_netns(),
    };
    let events = schedule::schedule(&spec);
    let hctl = apps::Hctl::new(&tc)?;
    let src = apps::write_fixture(tc.dir())?;

    // The registers, then the apps.
    tc.post_json(0, "/apps", &json!({ "name": KV_APP }))?;
    let init: serde_json::Map<String, Value> =
        KEYS.iter().map(|k| (k.to_string(), json!(INIT))).collect();
    let (status, body) = tc.request(
        0,
        reqwest::Method::PATCH,
        &format!("/apps/{KV_APP}/config-vars"),
        Some(&Value::Object(init)),
    )?;
    anyhow::ensure!(status.is_success(), "set the registers: {status} {body}");
    let before = verdict::latest_version(&tc, 0, KV_APP).map_err(anyhow::Error::msg)?;
    let names: Vec<String> = (0..opts.apps).map(apps::app_name).collect();
    for app in &names {
        progress(&format!("deploying {app}"));
        apps::create(&tc, &hctl, app, &src)?;
    }
    let setup = verdict::formations_converge(&tc, &names, SETTLE, "apps up before faults");
    anyhow::ensure!(setup.ok, "{}", setup.detail);

    let shared = Arc::new(Shared::new(opts.nodes));
    let targets = Targets {
        apis: (0..tc.len()).map(|i| tc.api(i).to_string()).collect(),
        routers: (0..tc.len()).map(|i| tc.router(i).to_string()).collect(),
        token: tc.token().to_string(),
        apps: names.clone(),
    };
    let mut load = Workload::start(shared.clone(), targets, hctl.clone(), opts.seed);
    let flowing = crate::wait_until(Duration::from_secs(60), || {
        names.is_empty() || load.routed_ok() > 20
    });
    anyhow::ensure!(flowing, "no request got through a router within 60 s");

    let mut checks = Vec::new();
    let mut applied = 0;
    let (windows, deploy_handles) = {
        let mut inj = faults::Injector::new(
            &mut tc,
            shared.clone(),
            hctl.clone(),
            src.clone(),
            names.clone(),
            opts.seed,
        );
        let phase = Instant::now();
        for ev in &events {
            let due = phase + ev.at;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                // The schedule's timing, not a synchronization.
                std::thread::sleep(wait);
            }
            if phase.elapsed() >= opts.duration {
                break;
            }
            progress(&format!(
                "[{:>6.1}s] {}",
                phase.elapsed().as_secs_f64(),
                ev.fault
            ));
            if let Err(e) = inj.apply(ev) {
                checks.push(Check::new(
                    "every fault healed",
                    false,
                    format!("{}: {e:#}", ev.fault),
                ));
                applied += 1;
                break;
            }
            applied += 1;
        }
        (
            std::mem::take(&mut inj.windows),
            std::mem::take(&mut inj.deploys),
        )
    };
    progress("healing every node");
    heal_everything(&mut tc, &shared);
    load.stop();
    let deploys: Vec<_> = deploy_handles
        .into_iter()
        .map(faults::Deploy::finish)
        .collect();

    progress("checking");
    let mut ops = std::mem::take(&mut *lock(&load.ops));
    let counts = *lock(&load.writes);
    let samples = std::mem::take(&mut *lock(&load.routed));
    let (snaps, snap_fail) = *lock(&load.snapshots);
    let start = shared_start(&shared);
    checks.push(verdict::writes_present(&tc, counts, before));
    checks.push(verdict::values_agree(&tc, &mut ops, start));
    checks.push(verdict::linearizable(&ops, INIT));
    if let Some(app) = names.first() {
        let r = apps::deploy(&hctl, opts.nodes - 1, app, &src);
        checks.push(Check::new(
            "a deploy after healing succeeds",
            r.is_ok(),
            r.err()
                .map_or(format!("{app} deployed"), |e| format!("{e:#}")),
        ));
    }
    checks.push(verdict::formations_converge(
        &tc,
        &names,
        SETTLE,
        "formations exact",
    ));
    checks.push(verdict::releases_hold_slugs(&tc, &names));
    let (router, router_figures) = verdict::router_errors(&samples, &windows);
    checks.push(router);

    progress("killing every node at once and restarting them");
    checks.push(reopen(&mut tc, &names, &mut ops, start));

    let figures = json!({
        "writes": {"acked": counts.acked, "unknown": counts.unknown, "failed": counts.failed},
        "register_ops": ops.len(),
        "router": router_figures,
        "ps_snapshots": {"taken": snaps, "failed": snap_fail},
        "fault_windows": windows.iter().map(|w| json!({
            "start_s": w.start.as_secs_f64(), "end_s": w.end.as_secs_f64(), "fault": w.what
        })).collect::<Vec<_>>(),
    });
    if !opts.keep {
        tc.down();
    }
    Ok(Report {
        opts: opts.clone(),
        schedule: events,
        applied,
        checks,
        deploys,
        figures,
    })
}

/// The instant the clients count their times from.
fn shared_start(shared: &Shared) -> Instant {
    Instant::now() - shared.now()
}

/// SIGCONT to every node, heal every partition, restart any node that is not running,
/// and wait until all are ready.
fn heal_everything(tc: &mut TestCluster, shared: &Shared) {
    for i in 0..tc.len() {
        if tc.alive(i) {
            let _ = tc.cont(i);
        }
    }
    if tc.is_netns() {
        let _ = tc.heal_all();
    }
    for i in 0..tc.len() {
        if !tc.alive(i) {
            let _ = tc.restart(i);
        }
        if tc.wait_ready(i, Duration::from_secs(90)).is_ok() {
            shared.set(i, NodeHealth::Up);
        }
    }
}

/// Every node SIGKILLed at once, then restarted from its data dir: RocksDB reopens on
/// each, the cluster elects a leader, and the registers and formations are as before.
fn reopen(tc: &mut TestCluster, apps: &[String], ops: &mut Vec<KeyOp>, start: Instant) -> Check {
    let name = "state reopens after killing every node";
    for i in 0..tc.len() {
        if let Err(e) = tc.kill(i) {
            return Check::new(name, false, format!("kill node {i}: {e:#}"));
        }
    }
    for i in 0..tc.len() {
        if let Err(e) = tc.restart(i) {
            return Check::new(name, false, format!("restart node {i}: {e:#}"));
        }
    }
    for i in 0..tc.len() {
        if let Err(e) = tc.wait_ready(i, Duration::from_secs(90)) {
            return Check::new(name, false, format!("{e:#}"));
        }
    }
    let before = ops.len();
    let agree = verdict::values_agree(tc, ops, start);
    if !agree.ok {
        return Check::new(name, false, agree.detail);
    }
    // The reads after the restart must continue the same history.
    let lin = verdict::linearizable(ops, INIT);
    if !lin.ok {
        return Check::new(name, false, format!("after the restart: {}", lin.detail));
    }
    let conv = verdict::formations_converge(tc, apps, SETTLE, name);
    if !conv.ok {
        return conv;
    }
    Check::new(
        name,
        true,
        format!(
            "{} nodes restarted, {} registers as before, {}",
            tc.len(),
            (ops.len() - before) / tc.len().max(1),
            conv.detail
        ),
    )
}

use workload::KeyOp;

/// Parses `90s`, `5m`, `1h` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s
        .char_indices()
        .find(|(_, c)| !c.is_ascii_digit() && *c != '.')
    {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 90s, 5m or 1h"))?;
    let mult = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use ms, s, m or h")),
    };
    if !(n * mult).is_finite() || n * mult < 0.0 {
        return Err(format!("{s:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(n * mult))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("42").unwrap(), Duration::from_secs(42));
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("m").is_err());
    }
}
