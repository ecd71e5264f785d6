//! Dyno placement for Haven (design §5), as pure functions.
//!
//! The leader hands [`plan`] a view of the cluster — nodes, formations and dynos — and
//! receives a [`Plan`]: the dynos to start (and where), the dynos to stop (and why), and
//! the dynos it could not place (and why not). The crate does no I/O and depends on
//! nothing that does; the same [`Input`] always gives the same [`Plan`], whatever the
//! order of its vectors.
//!
//! # The rules
//!
//! A formation (app + process type) wants the indices `1..=quantity` (`web.1` …
//! `web.N`) running its `release` at its `size`.
//!
//! **Which dynos count.** One-off dynos (`run.N`, release phase) are never planned and
//! never stopped, but they use memory. Stopping dynos (desired state stop) are ignored
//! except that they still use memory. Every other dyno is *live* when its node is not
//! `Down` (a dyno on a node missing from the input counts as on a `Down` node). A live
//! dyno is *current* when it runs the formation's release and size on an `Up` node.
//! Crashed dynos on `Up` nodes stay where they are (the agent restarts them); on a
//! draining node they are replaced like the others.
//!
//! **Memory.** A node's free memory is its `memory_mb` minus the memory of every dyno on
//! it (stopping and one-off ones included) plus the starts already chosen in the same
//! plan; dynos on `Down` nodes use none. A dyno of an unknown size counts as 512 MiB.
//!
//! **Stops without replacement.** A dyno of an app or process type that has no formation
//! is stopped ([`StopReason::Orphaned`]). A dyno whose index is above the quantity (or 0)
//! is stopped ([`StopReason::ScaledDown`]); quantity 0 stops them all.
//!
//! **Per index** `i` in `1..=quantity`:
//! - A current dyno exists: the best one (Up, then Starting, then Crashed/Down, then
//!   lowest id) is kept. If it is `Up`, every other live dyno of the index is stopped:
//!   [`StopReason::Drained`] for one on a draining node, [`StopReason::Replaced`]
//!   otherwise. If it is not `Up` yet (Starting, or Crashed during a roll), nothing
//!   changes and older dynos keep serving.
//! - Live dynos exist but none is current (an older release or size, or on a draining
//!   node): a new dyno is started elsewhere with `replaces` naming the old one, which
//!   keeps running until the new one is `Up` (rolling replacement).
//!   If no node has room for the extra dyno:
//!   - for a release or size change on an `Up` node, the old dyno is stopped first
//!     ([`StopReason::Replaced`]) when that frees enough memory on its node for the new
//!     one, which then starts in a later plan. This happens for at most one dyno per
//!     formation per plan, and only while no other index of the formation is in
//!     transition (a current dyno not `Up` yet, an old dyno still stopping with no
//!     replacement, a start for a missing index in this plan), so a roll under memory
//!     pressure never takes a whole process type down. Otherwise the old dyno keeps
//!     running and the index is reported in [`Plan::unplaced`].
//!   - for a dyno on a draining node, it stays and the index is reported unplaced.
//! - No live dyno: one is started; a dyno of that index on a `Down` node is stopped
//!   ([`StopReason::NodeDown`], so it never runs again when the node returns) and named
//!   in `replaces`.
//! - A formation whose release has no slug starts nothing: its missing indices are
//!   reported unplaced, and existing dynos are left as they are.
//!
//! **Placement.** Candidate nodes are `Up` (never `Draining` or `Down`) with free memory
//! ≥ the size's memory. Among them the planner picks, in order: the fewest current dynos
//! of the same app and process type (spread), a node holding the slug, the most free
//! memory, the lowest [`NodeId`]. Healthy dynos are never moved for balance alone.
//! Starts are placed in priority order — missing indices first, then moves off draining
//! nodes, then rolling replacements — and within a priority by app, process type, index.
//! When nothing fits, [`Unplaced::reason`] says why ("no node is up (2 down)", "all nodes
//! are draining", "no node has 1024 MiB free for a standard-2x dyno (largest free: 512
//! MiB on node-2)", …).
//!
//! **Add-ons.** [`place_addon`] (module `addons`) places the members of a new add-on:
//! distinct `Up` nodes with the plan's memory free, a port per address. The memory add-on
//! members reserve is taken off a node's `memory_mb` before [`plan`] sees it.
//!
//! # Output order
//!
//! [`Plan::changes`] is sorted by app, then process type; within a process type, first
//! the stops without replacement ([`StopReason::ScaledDown`], [`StopReason::Orphaned`])
//! by index from highest to lowest, then the other changes by index from lowest to
//! highest, a stop before a start for the same index, stops of one index by dyno id.
//! [`Plan::unplaced`] is sorted by app, process type, index.
//!
//! # Convergence
//!
//! Applying a plan (starts become `Starting` dynos, stops mark dynos stopping), letting the
//! agents bring dynos up and remove stopped ones, and planning again reaches an empty
//! plan; a plan over a state that matches every formation is empty.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

mod addons;

pub use addons::{place_addon, AddonNodeView, AddonRequest, MemberPlacement};

use serde::{Deserialize, Serialize};

/// A node's id, as in the replicated state.
pub type NodeId = u64;

/// Memory counted for an existing dyno whose size is unknown.
const UNKNOWN_SIZE_MB: u64 = 512;

/// The memory a dyno of `size` reserves, in MiB (`standard-1x` → 512), from
/// [`haven_catalog::DYNO_SIZES`]; `None` for an unknown size. Case and surrounding spaces
/// are ignored.
pub fn size_memory_mb(size: &str) -> Option<u64> {
    haven_catalog::dyno_size(size).map(|s| s.memory_mb)
}

/// Liveness of a node as the cluster records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeStatus {
    /// Runs dynos and takes new ones.
    Up,
    /// Gone: its dynos are stopped and started elsewhere.
    Down,
    /// Keeps its dynos until each has a replacement elsewhere; takes no new ones.
    Draining,
}

/// A node as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub id: NodeId,
    /// Shown in unplaced reasons.
    pub name: String,
    /// Memory available to dynos, in MiB.
    pub memory_mb: u64,
    pub status: NodeStatus,
    /// Not used for placement yet.
    pub labels: BTreeMap<String, String>,
    /// sha256 of the slugs whose bytes the node holds.
    pub slugs: BTreeSet<String>,
}

/// What one app's process type should run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormationView {
    /// The app id.
    pub app: String,
    pub process_type: String,
    /// Wanted dynos: indices `1..=quantity`.
    pub quantity: u32,
    /// Dyno size, one of [`haven_catalog::DYNO_SIZES`].
    pub size: String,
    /// The release version the dynos should run.
    pub release: u64,
    /// sha256 of the release's slug; `None` when there is no slug yet (nothing to run).
    pub slug: Option<String>,
}

/// A dyno's last reported state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DynoState {
    Starting,
    Up,
    Crashed,
    Down,
}

/// A dyno as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Its desired state is stop: it no longer counts, but still uses memory.
    pub stopping: bool,
    /// `run.N` and release-phase dynos: never planned, never stopped, but use memory.
    pub one_off: bool,
}

/// Everything [`plan`] looks at. The order of the vectors does not matter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    pub nodes: Vec<NodeView>,
    /// At most one per app and process type; of duplicates the highest release wins.
    pub formations: Vec<FormationView>,
    pub dynos: Vec<DynoView>,
}

/// Why a dyno is stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopReason {
    /// Its index is above the formation's quantity.
    ScaledDown,
    /// Its node is down; it must not run again when the node returns.
    NodeDown,
    /// A newer dyno with the same index is up (or, under memory pressure, the old dyno
    /// makes room for its replacement).
    Replaced,
    /// Its node is draining and its replacement is up.
    Drained,
    /// Its app or process type is no longer in the formations.
    Orphaned,
}

/// One step of a [`Plan`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Start `process_type.index` of `app` at `release` and `size` on `node`.
    Start {
        app: String,
        process_type: String,
        index: u32,
        release: u64,
        size: String,
        node: NodeId,
        /// The dyno this one will replace (stopped once this one is up, or already
        /// stopped for a node that is down).
        replaces: Option<String>,
    },
    /// Stop the dyno with this id.
    Stop { dyno: String, reason: StopReason },
}

/// A wanted dyno that this plan does not start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unplaced {
    pub app: String,
    pub process_type: String,
    pub index: u32,
    /// Human readable, e.g. "no node has 1024 MiB free for a standard-2x dyno (largest
    /// free: 512 MiB on node-2)".
    pub reason: String,
}

/// The result of [`plan`]; see the crate docs for the order of its vectors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub unplaced: Vec<Unplaced>,
}

impl Plan {
    /// True when there is nothing to start or stop (there may still be unplaced dynos).
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Computes the starts and stops that move the dynos towards the formations. Pure and
/// deterministic; see the crate docs for the rules.
pub fn plan(input: &Input) -> Plan {
    Planner::new(input).run()
}

/// Sort key of a change; see "Output order" in the crate docs.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct OrderKey {
    app: String,
    process_type: String,
    /// 0: stops without replacement, 1: per-index changes.
    group: u8,
    /// Index, reversed in group 0.
    index: u64,
    /// 0: stop, 1: start.
    kind: u8,
    dyno: String,
}

struct Slot<'a> {
    view: &'a NodeView,
    used: u64,
}

impl Slot<'_> {
    fn free(&self) -> u64 {
        self.view.memory_mb.saturating_sub(self.used)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Priority {
    Missing,
    Drain,
    Roll,
}

struct Task<'a> {
    priority: Priority,
    formation: &'a FormationView,
    index: u32,
    replaces: Option<&'a DynoView>,
    /// The index's live, non-current dynos (empty for a missing index).
    old: Vec<&'a DynoView>,
    /// Id of a dyno of this index stopped in this plan because its node is down.
    down_replaced: Option<&'a str>,
}

struct Planner<'a> {
    nodes: BTreeMap<NodeId, Slot<'a>>,
    dynos: Vec<&'a DynoView>,
    formations: BTreeMap<(&'a str, &'a str), &'a FormationView>,
    /// Current dynos (and starts of this plan) per app and process type, per node; only
    /// nodes with at least one.
    spread: BTreeMap<(&'a str, &'a str), BTreeMap<NodeId, u32>>,
    /// `Up` nodes by most free memory, then lowest id: the placement order among nodes
    /// that tie on spread and slug.
    by_free: BTreeSet<(Reverse<u64>, NodeId)>,
    /// The `Up` nodes holding each slug.
    holders: BTreeMap<&'a str, Vec<NodeId>>,
    /// [`Planner::no_room`] per memory need and size, valid until the next start.
    no_room_cache: BTreeMap<(u64, String), String>,
    changes: Vec<(OrderKey, Change)>,
    unplaced: Vec<Unplaced>,
}

fn state_rank(state: DynoState) -> u8 {
    match state {
        DynoState::Up => 0,
        DynoState::Starting => 1,
        DynoState::Crashed => 2,
        DynoState::Down => 3,
    }
}

fn dyno_memory(size: &str) -> u64 {
    size_memory_mb(size).unwrap_or(UNKNOWN_SIZE_MB)
}

impl<'a> Planner<'a> {
    fn new(input: &'a Input) -> Self {
        let mut node_views: Vec<&NodeView> = input.nodes.iter().collect();
        node_views.sort_by(|a, b| (a.id, &a.name, a.memory_mb).cmp(&(b.id, &b.name, b.memory_mb)));
        let mut nodes = BTreeMap::new();
        for view in node_views {
            nodes.entry(view.id).or_insert(Slot { view, used: 0 });
        }

        let mut dynos: Vec<&DynoView> = input.dynos.iter().collect();
        dynos.sort_by(|a, b| {
            (
                &a.id,
                &a.app,
                &a.process_type,
                a.index,
                a.node,
                a.release,
                &a.size,
            )
                .cmp(&(
                    &b.id,
                    &b.app,
                    &b.process_type,
                    b.index,
                    b.node,
                    b.release,
                    &b.size,
                ))
        });
        for d in &dynos {
            if let Some(slot) = nodes.get_mut(&d.node) {
                if slot.view.status != NodeStatus::Down {
                    slot.used += dyno_memory(&d.size);
                }
            }
        }

        let mut formations: BTreeMap<(&str, &str), &FormationView> = BTreeMap::new();
        for f in &input.formations {
            let rank = |f: &FormationView| (f.release, f.quantity, f.size.clone(), f.slug.clone());
            formations
                .entry((f.app.as_str(), f.process_type.as_str()))
                .and_modify(|kept| {
                    if rank(f) > rank(kept) {
                        *kept = f;
                    }
                })
                .or_insert(f);
        }

        let mut by_free = BTreeSet::new();
        let mut holders: BTreeMap<&str, Vec<NodeId>> = BTreeMap::new();
        for slot in nodes.values().filter(|s| s.view.status == NodeStatus::Up) {
            by_free.insert((Reverse(slot.free()), slot.view.id));
            for slug in &slot.view.slugs {
                holders.entry(slug.as_str()).or_default().push(slot.view.id);
            }
        }

        Planner {
            nodes,
            dynos,
            formations,
            spread: BTreeMap::new(),
            by_free,
            holders,
            no_room_cache: BTreeMap::new(),
            changes: Vec::new(),
            unplaced: Vec::new(),
        }
    }

    fn status_of(&self, node: NodeId) -> NodeStatus {
        self.nodes
            .get(&node)
            .map_or(NodeStatus::Down, |slot| slot.view.status)
    }

    fn node_name(&self, node: NodeId) -> String {
        self.nodes
            .get(&node)
            .map_or_else(|| format!("node {node}"), |slot| slot.view.name.clone())
    }

    fn is_current(&self, d: &DynoView, f: &FormationView) -> bool {
        d.release == f.release && d.size == f.size && self.status_of(d.node) == NodeStatus::Up
    }

    fn run(mut self) -> Plan {
        // Classify every plannable dyno.
        let mut live: BTreeMap<(&'a str, &'a str, u32), Vec<&'a DynoView>> = BTreeMap::new();
        let mut down_replaced: BTreeMap<(&'a str, &'a str, u32), &'a str> = BTreeMap::new();
        let mut stopping_here: BTreeSet<(&'a str, &'a str, u32)> = BTreeSet::new();
        for d in self.dynos.clone() {
            if d.one_off {
                continue;
            }
            let key = (d.app.as_str(), d.process_type.as_str(), d.index);
            let node_down = self.status_of(d.node) == NodeStatus::Down;
            if d.stopping {
                if !node_down {
                    stopping_here.insert(key);
                }
                continue;
            }
            let Some(f) = self.formations.get(&(key.0, key.1)).copied() else {
                self.stop(d, StopReason::Orphaned);
                continue;
            };
            if d.index == 0 || d.index > f.quantity {
                self.stop(d, StopReason::ScaledDown);
            } else if node_down {
                self.stop(d, StopReason::NodeDown);
                down_replaced.entry(key).or_insert(d.id.as_str());
            } else {
                live.entry(key).or_default().push(d);
            }
        }

        for (&(app, process_type, _), dynos) in &live {
            let f = self.formations[&(app, process_type)];
            for d in dynos {
                if self.is_current(d, f) {
                    *self
                        .spread
                        .entry((app, process_type))
                        .or_default()
                        .entry(d.node)
                        .or_default() += 1;
                }
            }
        }

        // Decide per index; collect what needs a start.
        let mut tasks: Vec<Task<'a>> = Vec::new();
        // Formations with an index in transition: no stop-first fallback for them.
        let mut busy: BTreeSet<(&'a str, &'a str)> = BTreeSet::new();
        let formations: Vec<&'a FormationView> = self.formations.values().copied().collect();
        for f in formations {
            let fkey = (f.app.as_str(), f.process_type.as_str());
            for index in 1..=f.quantity {
                let key = (fkey.0, fkey.1, index);
                let dynos = live.get(&key).cloned().unwrap_or_default();
                let (current, old): (Vec<&DynoView>, Vec<&DynoView>) =
                    dynos.into_iter().partition(|d| self.is_current(d, f));
                if let Some(&keeper) = current.iter().min_by_key(|d| (state_rank(d.state), &d.id)) {
                    if keeper.state == DynoState::Up {
                        for d in current.iter().filter(|d| d.id != keeper.id) {
                            self.stop(d, StopReason::Replaced);
                        }
                        for d in &old {
                            let reason = if self.status_of(d.node) == NodeStatus::Draining {
                                StopReason::Drained
                            } else {
                                StopReason::Replaced
                            };
                            self.stop(d, reason);
                        }
                    } else {
                        busy.insert(fkey);
                    }
                    continue;
                }
                if old.is_empty() {
                    if stopping_here.contains(&key) {
                        busy.insert(fkey);
                    }
                    tasks.push(Task {
                        priority: Priority::Missing,
                        formation: f,
                        index,
                        replaces: None,
                        old,
                        down_replaced: down_replaced.get(&key).copied(),
                    });
                    continue;
                }
                let replaces = old
                    .iter()
                    .min_by_key(|d| {
                        let draining = self.status_of(d.node) == NodeStatus::Draining;
                        (state_rank(d.state), draining, &d.id)
                    })
                    .copied();
                let rolling = old.iter().any(|d| self.status_of(d.node) == NodeStatus::Up);
                tasks.push(Task {
                    priority: if rolling {
                        Priority::Roll
                    } else {
                        Priority::Drain
                    },
                    formation: f,
                    index,
                    replaces,
                    old,
                    down_replaced: None,
                });
            }
        }

        tasks.sort_by(|a, b| {
            (
                a.priority,
                &a.formation.app,
                &a.formation.process_type,
                a.index,
            )
                .cmp(&(
                    b.priority,
                    &b.formation.app,
                    &b.formation.process_type,
                    b.index,
                ))
        });
        for task in tasks {
            self.place_task(task, &mut busy);
        }

        let mut changes = self.changes;
        changes.sort_by(|a, b| a.0.cmp(&b.0));
        let mut unplaced = self.unplaced;
        unplaced.sort_by(|a, b| {
            (&a.app, &a.process_type, a.index, &a.reason).cmp(&(
                &b.app,
                &b.process_type,
                b.index,
                &b.reason,
            ))
        });
        Plan {
            changes: changes.into_iter().map(|(_, c)| c).collect(),
            unplaced,
        }
    }

    fn place_task(&mut self, task: Task<'a>, busy: &mut BTreeSet<(&'a str, &'a str)>) {
        let f = task.formation;
        let fkey = (f.app.as_str(), f.process_type.as_str());
        let Some(slug) = f.slug.as_deref() else {
            self.unplace(
                f,
                task.index,
                format!("release v{} has no slug yet: nothing to run", f.release),
            );
            return;
        };
        let Some(need) = size_memory_mb(&f.size) else {
            self.unplace(f, task.index, format!("unknown dyno size {:?}", f.size));
            return;
        };
        match self.choose_node(f, need, slug) {
            Ok(node) => {
                let replaces = task
                    .replaces
                    .map(|d| d.id.as_str())
                    .or(task.down_replaced)
                    .map(str::to_owned);
                self.start(f, task.index, node, need, replaces);
                if task.priority == Priority::Missing {
                    busy.insert(fkey);
                }
            }
            Err(why) => match task.priority {
                Priority::Missing => self.unplace(f, task.index, why),
                Priority::Drain => {
                    let on = task
                        .replaces
                        .map_or_else(String::new, |d| self.node_name(d.node));
                    let reason = format!(
                        "{}.{} stays on draining node {on}: {why}",
                        f.process_type, task.index
                    );
                    self.unplace(f, task.index, reason);
                }
                Priority::Roll => {
                    if !busy.contains(&fkey) {
                        let victim = task
                            .old
                            .iter()
                            .filter(|d| {
                                self.nodes.get(&d.node).is_some_and(|slot| {
                                    slot.view.status == NodeStatus::Up
                                        && slot.free() + dyno_memory(&d.size) >= need
                                })
                            })
                            .min_by_key(|d| (state_rank(d.state), &d.id))
                            .copied();
                        if let Some(victim) = victim {
                            self.stop(victim, StopReason::Replaced);
                            busy.insert(fkey);
                            return;
                        }
                    }
                    let reason = format!(
                        "cannot start {}.{} at v{} yet: {why}",
                        f.process_type, task.index, f.release
                    );
                    self.unplace(f, task.index, reason);
                }
            },
        }
    }

    /// The best `Up` node with `need` MiB free, or why there is none: the minimum of
    /// (spread, not holding the slug, most free, lowest id) over the candidates, found
    /// without visiting every node — a plan places each of many dynos in about the time
    /// of a walk over the nodes that already run its process type.
    fn choose_node(&mut self, f: &FormationView, need: u64, slug: &str) -> Result<NodeId, String> {
        let chosen = self.choose_indexed(f, need, slug);
        // Every unit test checks the indexed walk against the plain minimum over all nodes.
        #[cfg(test)]
        assert_eq!(
            chosen.as_ref().ok(),
            self.choose_by_scan(f, need, slug).as_ref(),
            "indexed placement disagrees with the scan for {}.{}",
            f.app,
            f.process_type
        );
        chosen
    }

    /// The definition [`Planner::choose_node`] implements: a scan of every node.
    #[cfg(test)]
    fn choose_by_scan(&self, f: &FormationView, need: u64, slug: &str) -> Option<NodeId> {
        let counts = self.spread.get(&(f.app.as_str(), f.process_type.as_str()));
        let spread = |id: NodeId| counts.and_then(|c| c.get(&id)).copied().unwrap_or(0);
        self.nodes
            .values()
            .filter(|slot| slot.view.status == NodeStatus::Up && slot.free() >= need)
            .min_by_key(|slot| {
                (
                    spread(slot.view.id),
                    !slot.view.slugs.contains(slug),
                    Reverse(slot.free()),
                    slot.view.id,
                )
            })
            .map(|slot| slot.view.id)
    }

    fn choose_indexed(
        &mut self,
        f: &FormationView,
        need: u64,
        slug: &str,
    ) -> Result<NodeId, String> {
        let counts = self.spread.get(&(f.app.as_str(), f.process_type.as_str()));
        let spread = |id: NodeId| counts.and_then(|c| c.get(&id)).copied().unwrap_or(0);
        let fits = |slot: &Slot| slot.view.status == NodeStatus::Up && slot.free() >= need;
        // Spread 0 and holding the slug.
        let holder = self
            .holders
            .get(slug)
            .into_iter()
            .flatten()
            .filter_map(|id| self.nodes.get(id))
            .filter(|slot| fits(slot) && spread(slot.view.id) == 0)
            .min_by_key(|slot| (Reverse(slot.free()), slot.view.id));
        if let Some(slot) = holder {
            return Ok(slot.view.id);
        }
        // Spread 0: the first in free-memory order that runs none of the process type.
        // Nodes skipped here run some, so the walk is short unless every node does.
        for &(Reverse(free), id) in &self.by_free {
            if free < need {
                break;
            }
            if spread(id) == 0 {
                return Ok(id);
            }
        }
        // Every node with room runs some: the exact minimum over those.
        let best = counts.and_then(|counts| {
            counts
                .iter()
                .filter_map(|(id, &n)| self.nodes.get(id).map(|slot| (slot, n)))
                .filter(|(slot, _)| fits(slot))
                .min_by_key(|(slot, n)| {
                    (
                        *n,
                        !slot.view.slugs.contains(slug),
                        Reverse(slot.free()),
                        slot.view.id,
                    )
                })
                .map(|(slot, _)| slot.view.id)
        });
        match best {
            Some(id) => Ok(id),
            None => {
                let key = (need, f.size.clone());
                if let Some(why) = self.no_room_cache.get(&key) {
                    return Err(why.clone());
                }
                let why = self.no_room(&f.size, need);
                self.no_room_cache.insert(key, why.clone());
                Err(why)
            }
        }
    }

    fn no_room(&self, size: &str, need: u64) -> String {
        if self.nodes.is_empty() {
            return "no nodes in the cluster".to_owned();
        }
        let count = |status| {
            self.nodes
                .values()
                .filter(|s| s.view.status == status)
                .count()
        };
        let up: Vec<&Slot> = self
            .nodes
            .values()
            .filter(|s| s.view.status == NodeStatus::Up)
            .collect();
        if up.is_empty() {
            let (down, draining) = (count(NodeStatus::Down), count(NodeStatus::Draining));
            return match (down, draining) {
                (0, _) => "all nodes are draining".to_owned(),
                (_, 0) => format!("no node is up ({down} down)"),
                _ => format!("no node is up ({down} down, {draining} draining)"),
            };
        }
        let mut reason = match up.iter().max_by_key(|s| (s.free(), Reverse(s.view.id))) {
            Some(best) => format!(
                "no node has {need} MiB free for a {size} dyno (largest free: {} MiB on {})",
                best.free(),
                best.view.name
            ),
            None => format!("no node has {need} MiB free for a {size} dyno"),
        };
        if let Some(biggest) = up
            .iter()
            .max_by_key(|s| (s.view.memory_mb, Reverse(s.view.id)))
        {
            if biggest.view.memory_mb < need {
                reason.push_str(&format!(
                    "; no node that is up is that large (largest: {} MiB on {})",
                    biggest.view.memory_mb, biggest.view.name
                ));
            }
        }
        reason
    }

    fn start(
        &mut self,
        f: &'a FormationView,
        index: u32,
        node: NodeId,
        need: u64,
        replaces: Option<String>,
    ) {
        if let Some(slot) = self.nodes.get_mut(&node) {
            if self.by_free.remove(&(Reverse(slot.free()), node)) {
                slot.used += need;
                self.by_free.insert((Reverse(slot.free()), node));
            } else {
                slot.used += need;
            }
        }
        self.no_room_cache.clear();
        *self
            .spread
            .entry((f.app.as_str(), f.process_type.as_str()))
            .or_default()
            .entry(node)
            .or_default() += 1;
        let key = OrderKey {
            app: f.app.clone(),
            process_type: f.process_type.clone(),
            group: 1,
            index: u64::from(index),
            kind: 1,
            dyno: String::new(),
        };
        let change = Change::Start {
            app: f.app.clone(),
            process_type: f.process_type.clone(),
            index,
            release: f.release,
            size: f.size.clone(),
            node,
            replaces,
        };
        self.changes.push((key, change));
    }

    fn stop(&mut self, d: &DynoView, reason: StopReason) {
        let (group, index) = match reason {
            StopReason::ScaledDown | StopReason::Orphaned => (0, u64::from(u32::MAX - d.index)),
            StopReason::NodeDown | StopReason::Replaced | StopReason::Drained => {
                (1, u64::from(d.index))
            }
        };
        let key = OrderKey {
            app: d.app.clone(),
            process_type: d.process_type.clone(),
            group,
            index,
            kind: 0,
            dyno: d.id.clone(),
        };
        let change = Change::Stop {
            dyno: d.id.clone(),
            reason,
        };
        self.changes.push((key, change));
    }

    fn unplace(&mut self, f: &FormationView, index: u32, reason: String) {
        self.unplaced.push(Unplaced {
            app: f.app.clone(),
            process_type: f.process_type.clone(),
            index,
            reason,
        });
    }
}

#[cfg(test)]
mod tests;
