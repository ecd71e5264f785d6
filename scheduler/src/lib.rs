//! TEMPORARY stub (replaced by the real planner).
use std::collections::{BTreeMap, BTreeSet};
pub type NodeId = u64;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatus {
    Up,
    Down,
    Draining,
}
pub struct NodeView {
    pub id: NodeId,
    pub name: String,
    pub memory_mb: u64,
    pub status: NodeStatus,
    pub labels: BTreeMap<String, String>,
    pub slugs: BTreeSet<String>,
}
pub struct FormationView {
    pub app: String,
    pub process_type: String,
    pub quantity: u32,
    pub size: String,
    pub release: u64,
    pub slug: Option<String>,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynoState {
    Starting,
    Up,
    Crashed,
    Down,
}
pub struct DynoView {
    pub id: String,
    pub app: String,
    pub process_type: String,
    pub index: u32,
    pub release: u64,
    pub size: String,
    pub node: NodeId,
    pub state: DynoState,
    pub stopping: bool,
    pub one_off: bool,
}
pub struct Input {
    pub nodes: Vec<NodeView>,
    pub formations: Vec<FormationView>,
    pub dynos: Vec<DynoView>,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    ScaledDown,
    NodeDown,
    Replaced,
    Drained,
    Orphaned,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Start {
        app: String,
        process_type: String,
        index: u32,
        release: u64,
        size: String,
        node: NodeId,
        replaces: Option<String>,
    },
    Stop {
        dyno: String,
        reason: StopReason,
    },
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplaced {
    pub app: String,
    pub process_type: String,
    pub index: u32,
    pub reason: String,
}
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub unplaced: Vec<Unplaced>,
}
pub fn plan(input: &Input) -> Plan {
    plan_min(input)
}
pub fn size_memory_mb(size: &str) -> Option<u64> {
    match size {
        "standard-2x" => Some(1024),
        "performance-m" => Some(2560),
        "performance-l" => Some(14336),
        _ => Some(512),
    }
}

/// TEMPORARY minimal planner used until the real one lands.
pub fn plan_min(input: &Input) -> Plan {
    use std::collections::BTreeMap as M;
    let mut plan = Plan::default();
    let mem = |s: &str| size_memory_mb(s).unwrap_or(512);
    let down: Vec<NodeId> = input
        .nodes
        .iter()
        .filter(|n| n.status == NodeStatus::Down)
        .map(|n| n.id)
        .collect();
    let mut used: M<NodeId, u64> = M::new();
    for d in &input.dynos {
        if !down.contains(&d.node) {
            *used.entry(d.node).or_default() += mem(&d.size);
        }
    }
    let mut placed: M<(String, String, NodeId), u32> = M::new();
    for d in input
        .dynos
        .iter()
        .filter(|d| !d.stopping && !d.one_off && !down.contains(&d.node))
    {
        *placed
            .entry((d.app.clone(), d.process_type.clone(), d.node))
            .or_default() += 1;
    }
    for d in input.dynos.iter().filter(|d| !d.stopping && !d.one_off) {
        let f = input
            .formations
            .iter()
            .find(|f| f.app == d.app && f.process_type == d.process_type);
        match f {
            None => plan.changes.push(Change::Stop {
                dyno: d.id.clone(),
                reason: StopReason::Orphaned,
            }),
            Some(f) if d.index > f.quantity || f.slug.is_none() => {
                plan.changes.push(Change::Stop {
                    dyno: d.id.clone(),
                    reason: StopReason::ScaledDown,
                })
            }
            _ => {}
        }
    }
    for f in &input.formations {
        if f.slug.is_none() {
            continue;
        }
        for index in 1..=f.quantity {
            let mine: Vec<&DynoView> = input
                .dynos
                .iter()
                .filter(|d| {
                    d.app == f.app
                        && d.process_type == f.process_type
                        && d.index == index
                        && !d.stopping
                        && !d.one_off
                })
                .collect();
            let live: Vec<&&DynoView> = mine.iter().filter(|d| !down.contains(&d.node)).collect();
            let draining = |n: NodeId| {
                input
                    .nodes
                    .iter()
                    .any(|x| x.id == n && x.status == NodeStatus::Draining)
            };
            for d in mine.iter().filter(|d| down.contains(&d.node)) {
                plan.changes.push(Change::Stop {
                    dyno: d.id.clone(),
                    reason: StopReason::NodeDown,
                });
            }
            let current: Vec<&&&DynoView> = live
                .iter()
                .filter(|d| d.release == f.release && d.size == f.size && !draining(d.node))
                .collect();
            let old: Vec<&&&DynoView> = live
                .iter()
                .filter(|d| !(d.release == f.release && d.size == f.size && !draining(d.node)))
                .collect();
            if current.iter().any(|d| d.state == DynoState::Up) {
                for o in &old {
                    plan.changes.push(Change::Stop {
                        dyno: o.id.clone(),
                        reason: StopReason::Replaced,
                    });
                }
                continue;
            }
            if !current.is_empty() {
                continue;
            }
            let need = mem(&f.size);
            let best = input
                .nodes
                .iter()
                .filter(|n| {
                    n.status == NodeStatus::Up
                        && n.memory_mb.saturating_sub(*used.get(&n.id).unwrap_or(&0)) >= need
                })
                .min_by_key(|n| {
                    (
                        *placed
                            .get(&(f.app.clone(), f.process_type.clone(), n.id))
                            .unwrap_or(&0),
                        !n.slugs.contains(f.slug.as_deref().unwrap_or("")),
                        std::cmp::Reverse(
                            n.memory_mb.saturating_sub(*used.get(&n.id).unwrap_or(&0)),
                        ),
                        n.id,
                    )
                });
            match best {
                Some(n) => {
                    *used.entry(n.id).or_default() += need;
                    *placed
                        .entry((f.app.clone(), f.process_type.clone(), n.id))
                        .or_default() += 1;
                    plan.changes.push(Change::Start {
                        app: f.app.clone(),
                        process_type: f.process_type.clone(),
                        index,
                        release: f.release,
                        size: f.size.clone(),
                        node: n.id,
                        replaces: old.first().map(|o| o.id.clone()),
                    });
                }
                None => plan.unplaced.push(Unplaced {
                    app: f.app.clone(),
                    process_type: f.process_type.clone(),
                    index,
                    reason: format!("no node has {need} MiB free for a {} dyno", f.size),
                }),
            }
        }
    }
    plan
}
