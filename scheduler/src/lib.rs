//! haven-scheduler: where an app's dynos run (design §5). Pure: no I/O, no clock, no
//! randomness; the same input gives the same plan.
//!
//! [`plan`] takes the nodes (memory, status, slugs held), the formations (quantity, size,
//! the release to run and its slug) and the dynos as the replicated state knows them, and
//! returns the changes that move the cluster toward the formations:
//!
//! - Every formation wants indices `1..=quantity` (`web.1`, `web.2`, …) running its release
//!   at its size. A missing index gets a [`Change::Start`] on the best node: up (not
//!   draining or down) with enough free memory; among those, fewest dynos of the same app
//!   and type (spread), then holding the slug, then most free memory, then lowest id.
//! - Free memory counts every dyno on the node that is not on a down node: running,
//!   stopping and one-off ones, and the starts chosen earlier in the same plan.
//! - Indices above the quantity stop ([`StopReason::ScaledDown`]); dynos of a type or app
//!   no longer in the formations stop ([`StopReason::Orphaned`]).
//! - A dyno on a down node stops ([`StopReason::NodeDown`], so that it does not run again
//!   when the node returns) and its index starts elsewhere.
//! - A dyno whose release or size differs from its formation, or that sits on a draining
//!   node, is replaced by rolling: a new dyno starts first (`replaces` names the old one)
//!   and the old one stops ([`StopReason::Replaced`] / [`StopReason::Drained`]) only once
//!   the new one is up. A crashed replacement leaves the old one running. When no node has
//!   room for the extra dyno of a roll, the old one stops first if that frees the room the
//!   new one needs; a draining node's dynos that have nowhere to go stay and are reported.
//! - A crashed dyno on an up node stays where it is (its agent restarts it): healthy dynos
//!   never move just for balance.
//! - What cannot be placed is reported in [`Plan::unplaced`] with a reason people can act on.
//!
//! Changes come sorted by app, process type and index, stops before starts.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub type NodeId = u64;

/// A node as the scheduler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeStatus {
    Up,
    Down,
    Draining,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub id: NodeId,
    pub name: String,
    pub memory_mb: u64,
    pub status: NodeStatus,
    pub labels: BTreeMap<String, String>,
    /// sha256 of the slugs the node holds.
    pub slugs: BTreeSet<String>,
}

/// What one process type of an app wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormationView {
    pub app: String,
    pub process_type: String,
    pub quantity: u32,
    pub size: String,
    /// The release version its dynos should run.
    pub release: u64,
    /// sha256 of the release's slug; `None` before the first build.
    pub slug: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynoState {
    Starting,
    Up,
    Crashed,
    Down,
}

/// A dyno as the replicated state knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynoView {
    pub id: String,
    pub app: String,
    pub process_type: String,
    /// `web.3` → 3.
    pub index: u32,
    pub release: u64,
    pub size: String,
    pub node: NodeId,
    pub state: DynoState,
    /// Asked to stop; still uses memory until its node reports it gone.
    pub stopping: bool,
    /// `run.N` and release-phase dynos: never planned or stopped here, but use memory.
    pub one_off: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub nodes: Vec<NodeView>,
    pub formations: Vec<FormationView>,
    pub dynos: Vec<DynoView>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StopReason {
    ScaledDown,
    NodeDown,
    /// A newer dyno with the same index is up.
    Replaced,
    /// Moved off a draining node (its replacement is up).
    Drained,
    /// Its app or process type is no longer in the formations.
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
        /// The dyno this one replaces, if any.
        replaces: Option<String>,
    },
    Stop {
        dyno: String,
        reason: StopReason,
    },
}

/// A formation dyno that cannot be placed now, and why.
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

/// Memory a dyno size reserves, MiB.
pub fn size_memory_mb(size: &str) -> Option<u64> {
    match size {
        "eco" | "basic" | "standard-1x" => Some(512),
        "standard-2x" => Some(1024),
        "performance-m" => Some(2560),
        "performance-l" => Some(14336),
        _ => None,
    }
}

/// Memory of a size for accounting: unknown sizes count as the smallest.
fn mem(size: &str) -> u64 {
    size_memory_mb(size).unwrap_or(512)
}

/// The working state of one planning pass.
struct Pass<'a> {
    input: &'a Input,
    nodes: BTreeMap<NodeId, &'a NodeView>,
    used: BTreeMap<NodeId, u64>,
    /// (app, type, node) → dynos counted for spreading.
    spread: BTreeMap<(&'a str, &'a str, NodeId), u32>,
    plan: Plan,
}

impl<'a> Pass<'a> {
    fn new(input: &'a Input) -> Pass<'a> {
        let nodes: BTreeMap<NodeId, &NodeView> = input.nodes.iter().map(|n| (n.id, n)).collect();
        let down = |id: NodeId| nodes.get(&id).is_none_or(|n| n.status == NodeStatus::Down);
        let mut used = BTreeMap::new();
        let mut spread = BTreeMap::new();
        for d in &input.dynos {
            if down(d.node) {
                continue;
            }
            *used.entry(d.node).or_insert(0) += mem(&d.size);
            if !d.stopping && !d.one_off {
                *spread
                    .entry((d.app.as_str(), d.process_type.as_str(), d.node))
                    .or_insert(0) += 1;
            }
        }
        Pass {
            input,
            nodes,
            used,
            spread,
            plan: Plan::default(),
        }
    }

    fn status(&self, node: NodeId) -> NodeStatus {
        self.nodes.get(&node).map_or(NodeStatus::Down, |n| n.status)
    }

    fn free(&self, n: &NodeView) -> u64 {
        n.memory_mb
            .saturating_sub(self.used.get(&n.id).copied().unwrap_or(0))
    }

    fn stop(&mut self, d: &DynoView, reason: StopReason) {
        self.plan.changes.push(Change::Stop {
            dyno: d.id.clone(),
            reason,
        });
    }

    /// The best node for a dyno of `f`, or why there is none.
    fn choose(&self, f: &FormationView) -> Result<NodeId, String> {
        let Some(need) = size_memory_mb(&f.size) else {
            return Err(format!("dyno size {:?} is unknown", f.size));
        };
        let up: Vec<&NodeView> = self
            .input
            .nodes
            .iter()
            .filter(|n| n.status == NodeStatus::Up)
            .collect();
        if up.is_empty() {
            let draining = self
                .input
                .nodes
                .iter()
                .any(|n| n.status == NodeStatus::Draining);
            return Err(if draining {
                "every node that is up is draining".into()
            } else {
                "no node is up".into()
            });
        }
        let slug = f.slug.as_deref().unwrap_or("");
        let best = up.iter().filter(|n| self.free(n) >= need).min_by_key(|n| {
            (
                self.spread
                    .get(&(f.app.as_str(), f.process_type.as_str(), n.id))
                    .copied()
                    .unwrap_or(0),
                !n.slugs.contains(slug),
                std::cmp::Reverse(self.free(n)),
                n.id,
            )
        });
        match best {
            Some(n) => Ok(n.id),
            None => {
                let most = up
                    .iter()
                    .max_by_key(|n| (self.free(n), std::cmp::Reverse(n.id)))
                    .map(|n| format!("; most free: {} MiB on {}", self.free(n), n.name))
                    .unwrap_or_default();
                Err(format!(
                    "no node has {need} MiB free for a {} dyno{most}",
                    f.size
                ))
            }
        }
    }

    fn start(
        &mut self,
        f: &'a FormationView,
        index: u32,
        node: NodeId,
        replaces: Option<&DynoView>,
    ) {
        *self.used.entry(node).or_insert(0) += mem(&f.size);
        *self
            .spread
            .entry((f.app.as_str(), f.process_type.as_str(), node))
            .or_insert(0) += 1;
        self.plan.changes.push(Change::Start {
            app: f.app.clone(),
            process_type: f.process_type.clone(),
            index,
            release: f.release,
            size: f.size.clone(),
            node,
            replaces: replaces.map(|d| d.id.clone()),
        });
    }

    fn unplaced(&mut self, f: &FormationView, index: u32, reason: String) {
        self.plan.unplaced.push(Unplaced {
            app: f.app.clone(),
            process_type: f.process_type.clone(),
            index,
            reason,
        });
    }

    /// One index of one formation.
    fn place(&mut self, f: &'a FormationView, index: u32, mine: &[&'a DynoView]) {
        let mut live: Vec<&DynoView> = Vec::new();
        let mut lost: Option<&DynoView> = None;
        for d in mine {
            if self.status(d.node) == NodeStatus::Down {
                self.stop(d, StopReason::NodeDown);
                lost = lost.or(Some(d));
            } else {
                live.push(d);
            }
        }
        let good = |d: &DynoView, status: NodeStatus| {
            d.release == f.release && d.size == f.size && status != NodeStatus::Draining
        };
        let (current, old): (Vec<&DynoView>, Vec<&DynoView>) =
            live.iter().partition(|d| good(d, self.status(d.node)));
        if let Some(keep) = current
            .iter()
            .filter(|d| d.state == DynoState::Up)
            .min_by_key(|d| &d.id)
            .copied()
        {
            // The index runs as wanted: retire everything else of it.
            for d in &old {
                let reason = if self.status(d.node) == NodeStatus::Draining
                    && d.release == f.release
                    && d.size == f.size
                {
                    StopReason::Drained
                } else {
                    StopReason::Replaced
                };
                self.stop(d, reason);
            }
            for d in current.iter().filter(|d| d.id != keep.id) {
                self.stop(d, StopReason::Replaced);
            }
            return;
        }
        if !current.is_empty() {
            // A current dyno is starting (or crashed and being restarted): wait for it.
            return;
        }
        let replaces = old.iter().min_by_key(|d| &d.id).copied();
        match self.choose(f) {
            Ok(node) => self.start(f, index, node, replaces.or(lost)),
            Err(reason) => match replaces {
                // No room for the extra dyno of a roll: stop the old one first when that
                // frees the room (on an up node), and start the new one next round.
                Some(old)
                    if self.status(old.node) == NodeStatus::Up
                        && self
                            .nodes
                            .get(&old.node)
                            .is_some_and(|n| self.free(n) + mem(&old.size) >= mem(&f.size)) =>
                {
                    self.stop(old, StopReason::Replaced);
                    self.unplaced(
                        f,
                        index,
                        format!("{reason}; the running dyno stops first to make room"),
                    );
                }
                _ => self.unplaced(f, index, reason),
            },
        }
    }
}

/// The changes that move the dynos toward the formations. Deterministic.
pub fn plan(input: &Input) -> Plan {
    let mut pass = Pass::new(input);
    let formations: BTreeMap<(&str, &str), &FormationView> = input
        .formations
        .iter()
        .map(|f| ((f.app.as_str(), f.process_type.as_str()), f))
        .collect();
    // Group the planned dynos by formation and index.
    let mut by_index: BTreeMap<(&str, &str, u32), Vec<&DynoView>> = BTreeMap::new();
    let mut dynos: Vec<&DynoView> = input
        .dynos
        .iter()
        .filter(|d| !d.stopping && !d.one_off)
        .collect();
    dynos.sort_by(|a, b| a.id.cmp(&b.id));
    for d in dynos {
        let key = (d.app.as_str(), d.process_type.as_str());
        match formations.get(&key) {
            None => pass.stop(d, StopReason::Orphaned),
            Some(f) if f.slug.is_none() => pass.stop(d, StopReason::Orphaned),
            Some(f) if d.index == 0 || d.index > f.quantity => pass.stop(d, StopReason::ScaledDown),
            Some(_) => by_index.entry((key.0, key.1, d.index)).or_default().push(d),
        }
    }
    for f in formations.values() {
        for index in 1..=f.quantity {
            if f.slug.is_none() {
                pass.unplaced(
                    f,
                    index,
                    "the app has no slug yet: deploy it (git push or hctl deploy)".into(),
                );
                continue;
            }
            let mine = by_index
                .get(&(f.app.as_str(), f.process_type.as_str(), index))
                .cloned()
                .unwrap_or_default();
            pass.place(f, index, &mine);
        }
    }
    let mut plan = pass.plan;
    // Stable order: by app, type, index (from the dyno for stops), stops first.
    let dyno_key: BTreeMap<&str, (&str, &str, u32)> = input
        .dynos
        .iter()
        .map(|d| {
            (
                d.id.as_str(),
                (d.app.as_str(), d.process_type.as_str(), d.index),
            )
        })
        .collect();
    let key = |c: &Change| -> (String, String, u32, u8, String) {
        match c {
            Change::Stop { dyno, .. } => {
                let (a, t, i) = dyno_key.get(dyno.as_str()).copied().unwrap_or(("", "", 0));
                (a.to_string(), t.to_string(), i, 0, dyno.clone())
            }
            Change::Start {
                app,
                process_type,
                index,
                ..
            } => (app.clone(), process_type.clone(), *index, 1, String::new()),
        }
    };
    plan.changes.sort_by_key(key);
    plan.changes.dedup();
    plan
}

#[cfg(test)]
mod tests;
