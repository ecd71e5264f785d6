//! The benchmarks of the project as a library: each section measures one thing over real
//! processes and returns [`Row`]s (figure, target, the peer measured in the same run,
//! ratio). The `bench` binary runs every section and writes one Markdown table and one
//! JSON file; the `cargo bench --bench writes|router|logs` targets run one section each.
//!
//! A section that cannot run (a peer not installed, not root) returns a row that says
//! why instead of failing the table. Figures are printed, never asserted.

pub mod addons;
pub mod apps;
pub mod chaos;
pub mod deploy;
pub mod dyno_start;
pub mod etcd;
pub mod failover;
pub mod logs;
pub mod router;
pub mod rss;
pub mod scheduler;
pub mod snapshot;
pub mod table;
pub mod writes;

use std::time::Duration;

use serde_json::{json, Value};

/// Which way a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// The figure must be at least the target (throughput).
    Higher,
    /// The figure must be at most the target (latency, time, memory).
    Lower,
}

/// What a row's figure is held to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    pub better: Better,
    /// An absolute value in the row's unit, or a multiple of the peer's figure.
    pub value: f64,
    /// `value` is a multiple of the peer's figure in the same run ("≥ 0.8 × nginx").
    pub of_peer: bool,
}

impl Target {
    pub fn at_least(value: f64) -> Target {
        Target {
            better: Better::Higher,
            value,
            of_peer: false,
        }
    }
    pub fn at_most(value: f64) -> Target {
        Target {
            better: Better::Lower,
            value,
            of_peer: false,
        }
    }
    /// At least `ratio` times the peer's figure.
    pub fn at_least_peer(ratio: f64) -> Target {
        Target {
            better: Better::Higher,
            value: ratio,
            of_peer: true,
        }
    }
    /// At most `ratio` times the peer's figure.
    pub fn at_most_peer(ratio: f64) -> Target {
        Target {
            better: Better::Lower,
            value: ratio,
            of_peer: true,
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// The section that measured it (`writes`, `router`, …).
    pub section: String,
    pub name: String,
    /// `None` when the measurement could not be made (`note` says why).
    pub figure: Option<f64>,
    pub unit: String,
    pub target: Option<Target>,
    /// The peer measured in the same run, and its figure (`None`: it could not run).
    pub peer: Option<(String, Option<f64>)>,
    /// Details: percentiles, sample counts, why a figure is missing.
    pub note: String,
}

impl Row {
    pub fn new(section: &str, name: &str, figure: f64, unit: &str) -> Row {
        Row {
            section: section.to_string(),
            name: name.to_string(),
            figure: figure.is_finite().then_some(figure),
            unit: unit.to_string(),
            target: None,
            peer: None,
            note: String::new(),
        }
    }

    /// A row whose figure could not be measured, with the reason.
    pub fn missing(section: &str, name: &str, unit: &str, reason: impl Into<String>) -> Row {
        Row {
            section: section.to_string(),
            name: name.to_string(),
            figure: None,
            unit: unit.to_string(),
            target: None,
            peer: None,
            note: reason.into(),
        }
    }

    pub fn target(mut self, t: Target) -> Row {
        self.target = Some(t);
        self
    }

    pub fn peer(mut self, name: &str, figure: Option<f64>) -> Row {
        self.peer = Some((name.to_string(), figure.filter(|f| f.is_finite())));
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }

    /// Figure divided by the peer's figure.
    pub fn ratio(&self) -> Option<f64> {
        let f = self.figure?;
        let p = self.peer.as_ref()?.1?;
        (p != 0.0).then(|| f / p)
    }

    /// The target as an absolute value in the row's unit (`None` when it is relative to a
    /// peer that did not run).
    pub fn target_value(&self) -> Option<f64> {
        let t = self.target?;
        if t.of_peer {
            Some(t.value * self.peer.as_ref()?.1?)
        } else {
            Some(t.value)
        }
    }

    /// Whether the figure meets its target (`None`: no target, or nothing to compare).
    pub fn met(&self) -> Option<bool> {
        let t = self.target?;
        let f = self.figure?;
        let v = self.target_value()?;
        Some(match t.better {
            Better::Higher => f >= v,
            Better::Lower => f <= v,
        })
    }

    pub fn to_json(&self) -> Value {
        json!({
            "section": self.section,
            "name": self.name,
            "figure": self.figure,
            "unit": self.unit,
            "target": self.target.map(|t| json!({
                "better": match t.better { Better::Higher => "at_least", Better::Lower => "at_most" },
                "value": t.value,
                "of_peer": t.of_peer,
                "absolute": self.target_value(),
            })),
            "peer": self.peer.as_ref().map(|(n, _)| n),
            "peer_figure": self.peer.as_ref().and_then(|(_, f)| *f),
            "ratio": self.ratio(),
            "met": self.met(),
            "note": self.note,
        })
    }
}

/// How long the sections run.
#[derive(Debug, Clone, Copy)]
pub struct Opts {
    /// Shorter runs, fewer samples: for checking that every section works.
    pub quick: bool,
}

impl Opts {
    /// `full` normally, `quick` with `--quick`.
    pub fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }

    pub fn secs(&self, full: u64, quick: u64) -> Duration {
        Duration::from_secs(self.pick(full, quick))
    }
}

/// A progress callback: one line per step.
pub type Progress<'a> = &'a mut dyn FnMut(&str);

/// The sections, in the order the table shows them.
pub const SECTIONS: &[&str] = &[
    "writes",
    "deploy",
    "dyno-start",
    "scheduler",
    "failover",
    "router",
    "logs",
    "rss",
    "snapshot",
    "chaos",
    "addons",
];

/// Runs section `name`; an error becomes a row that names it.
pub fn run_section(name: &str, opts: &Opts, progress: Progress<'_>) -> Vec<Row> {
    let result = match name {
        "writes" => writes::section(opts, progress),
        "deploy" => deploy::section(opts, progress),
        "dyno-start" => dyno_start::section(opts, progress),
        "scheduler" => scheduler::section(opts, progress),
        "failover" => failover::section(opts, progress),
        "router" => router::section(opts, progress),
        "logs" => logs::section(opts, progress),
        "rss" => rss::section(opts, progress),
        "snapshot" => snapshot::section(opts, progress),
        "chaos" => chaos::section(opts, progress),
        "addons" => addons::section(opts, progress),
        other => Err(anyhow::anyhow!(
            "no section {other:?}; the sections are {}",
            SECTIONS.join(", ")
        )),
    };
    result.unwrap_or_else(|e| {
        vec![Row::missing(
            name,
            name,
            "",
            format!("could not run: {e:#}"),
        )]
    })
}

/// An `n`-node cluster for a benchmark, `config_toml` given to every node. The agents run
/// as a user would run them: without `RUST_BACKTRACE` from this shell, which makes every
/// error capture and symbolize a backtrace (hundreds of MiB of debug info resident).
pub fn cluster(n: usize, config_toml: Option<&str>) -> crate::Env {
    crate::cluster_opts(n, |o| {
        o.config_toml = config_toml.map(str::to_string);
        o.env.push(("RUST_BACKTRACE".into(), "0".into()));
        o.env.push(("RUST_LIB_BACKTRACE".into(), "0".into()));
    })
}

/// The median of `v` (sorted here); NaN when empty.
pub fn median(v: &mut [f64]) -> f64 {
    percentile(v, 0.5)
}

/// The `p` quantile (0..=1) of `v` by nearest rank (sorted here); NaN when empty.
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 * p) as usize).min(v.len() - 1);
    v[i]
}

/// Whether a program is on `PATH` (it answers `--version` or `-v`).
pub fn have(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The RSS of process `pid` in MiB, from `/proc/PID/status` (`VmRSS`).
pub fn rss_mib(pid: i32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_compare_with_targets_and_peers() {
        let r = Row::new("w", "writes", 900.0, "writes/s")
            .target(Target::at_least(700.0))
            .peer("etcd", Some(1800.0));
        assert_eq!(r.met(), Some(true));
        assert_eq!(r.ratio(), Some(0.5));
        let r = Row::new("d", "start", 30.0, "ms")
            .target(Target::at_most_peer(1.0))
            .peer("crun", Some(25.0));
        assert_eq!(r.met(), Some(false));
        let r = Row::new("d", "start", 30.0, "ms")
            .target(Target::at_most_peer(1.0))
            .peer("crun", None);
        assert_eq!(r.met(), None);
        assert_eq!(Row::missing("x", "y", "s", "no").met(), None);
        assert!(Row::new("x", "nan", f64::NAN, "s").figure.is_none());
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        assert!(median(&mut []).is_nan());
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(percentile(&mut [1.0, 2.0, 3.0, 4.0], 0.99), 4.0);
    }
}
