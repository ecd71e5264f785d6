//! Placement time of the pure scheduler: [`haven_scheduler::plan`] over 1,000 empty nodes
//! and 1,000 apps whose web formations want 100 dynos each (100,000 starts), wall time,
//! median of a few runs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::{bail, Result};
use haven_scheduler::{plan, Change, FormationView, Input, NodeStatus, NodeView};

use super::{median, Opts, Progress, Row, Target};

/// The input: `nodes` nodes with room for all, `apps` × `per_app` web dynos to place.
pub fn input(nodes: u64, apps: usize, per_app: u32) -> Input {
    let per_node = (apps as u64 * u64::from(per_app)).div_ceil(nodes.max(1));
    Input {
        nodes: (1..=nodes)
            .map(|id| NodeView {
                id,
                name: format!("node-{id}"),
                memory_mb: 512 * (per_node + 1),
                status: NodeStatus::Up,
                labels: BTreeMap::new(),
                slugs: BTreeSet::new(),
            })
            .collect(),
        formations: (0..apps)
            .map(|a| FormationView {
                app: format!("app-{a:05}"),
                process_type: "web".into(),
                quantity: per_app,
                size: "standard-1x".into(),
                release: 1,
                slug: Some(format!("slug-{a}")),
            })
            .collect(),
        dynos: Vec::new(),
    }
}

pub fn section(opts: &Opts, progress: Progress<'_>) -> Result<Vec<Row>> {
    // --quick places a tenth: the full size takes minutes in a debug build.
    let (apps, label) = opts.pick((1000, "100k"), (100, "10k (--quick)"));
    let dynos = apps * 100;
    let input = input(1000, apps, 100);
    let runs = opts.pick(5, 1);
    let mut times = Vec::new();
    for r in 0..runs {
        let t = Instant::now();
        let p = plan(&input);
        let took = t.elapsed().as_secs_f64();
        let starts = p
            .changes
            .iter()
            .filter(|c| matches!(c, Change::Start { .. }))
            .count();
        if starts != dynos || !p.unplaced.is_empty() {
            bail!(
                "the plan placed {starts} of {dynos} dynos ({} unplaced)",
                p.unplaced.len()
            );
        }
        progress(&format!("scheduler: run {} of {runs}: {took:.3} s", r + 1));
        times.push(took);
    }
    let n = times.len();
    let med = median(&mut times);
    Ok(vec![Row::new(
        "scheduler",
        &format!("scheduler: place {label} dynos onto 1k nodes"),
        med,
        "s",
    )
    .target(Target::at_most(1.0))
    .note(format!(
        "haven_scheduler::plan, median of {n} run{}{}",
        if n == 1 { "" } else { "s" },
        if cfg!(debug_assertions) {
            ", debug build"
        } else {
            ""
        }
    ))])
}
