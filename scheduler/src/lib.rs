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
pub fn plan(_input: &Input) -> Plan {
    Plan::default()
}
pub fn size_memory_mb(_size: &str) -> Option<u64> {
    Some(512)
}
