//! Dynos: the leader's plans, what nodes report, restarts and stops, one-off dynos.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::apps::not_found_app;
use super::{CommandError, CommandOutput, CommandResult};
use crate::model::{Dyno, DynoState, NodeId, State, Unplaced};

/// Which dynos a restart or stop means.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum DynoTarget {
    All,
    Type(String),
    /// A dyno name (`web.1`) or id.
    Dyno(String),
}

/// One dyno's state as its node reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DynoReport {
    pub id: Uuid,
    pub state: DynoState,
    pub restarts: u32,
    pub port: Option<u16>,
    pub exit_code: Option<i32>,
}

/// The leader's scheduling decisions: dynos to start (placed), dynos to stop, and what
/// could not be placed (replaces the previous list).
pub(super) fn apply_plan(
    state: &mut State,
    starts: &[Dyno],
    stops: &[Uuid],
    unplaced: &[Unplaced],
) -> CommandResult {
    for d in starts {
        if state.dynos.contains_key(&d.id) {
            return Err(CommandError::Conflict(format!("dyno {} exists", d.id)));
        }
        if !state.nodes.contains_key(&d.node) {
            return Err(CommandError::NotFound(format!("node {} not found", d.node)));
        }
    }
    for d in starts {
        // An app deleted since the plan was made gets no dynos.
        if state.apps.contains_key(&d.app) {
            state.dynos.insert(d.id, d.clone());
        }
    }
    for id in stops {
        if let Some(d) = state.dynos.get_mut(id) {
            d.run = false;
        }
    }
    state.unplaced = unplaced
        .iter()
        .filter(|u| state.apps.contains_key(&u.app))
        .cloned()
        .collect();
    Ok(CommandOutput::Done)
}

/// A node reports its dynos: new states, and dynos it has stopped for good (removed). A
/// node speaks only for the dynos placed on it.
pub(super) fn report(
    state: &mut State,
    node: NodeId,
    reports: &[DynoReport],
    gone: &[Uuid],
    at: DateTime<Utc>,
) -> CommandResult {
    for r in reports {
        if let Some(d) = state.dynos.get_mut(&r.id).filter(|d| d.node == node) {
            if d.state != r.state {
                d.state_changed_at = at;
            }
            d.state = r.state;
            d.restarts = r.restarts;
            d.port = r.port;
            d.exit_code = r.exit_code;
        }
    }
    for id in gone {
        if state.dynos.get(id).is_some_and(|d| d.node == node) {
            state.dynos.remove(id);
        }
    }
    Ok(CommandOutput::Done)
}

/// `ps:restart`: restart an app's dynos in place.
pub(super) fn restart(state: &mut State, app: Uuid, target: &DynoTarget) -> CommandResult {
    update_dynos(state, app, target, |d| {
        d.restart_seq = d.restart_seq.wrapping_add(1)
    })
}

/// `ps:stop`: stop dynos (formation dynos are then started again by the scheduler).
pub(super) fn stop(state: &mut State, app: Uuid, target: &DynoTarget) -> CommandResult {
    update_dynos(state, app, target, |d| d.run = false)
}

/// Records a one-off dyno placed on a node, numbered apart from the app's live dynos.
pub(super) fn create_one_off(state: &mut State, dyno: &Dyno) -> CommandResult {
    let a = state
        .apps
        .get(&dyno.app)
        .ok_or_else(|| not_found_app(&dyno.app))?;
    // By version range, not by the releases kept in memory: those differ between nodes.
    if dyno.release == 0 || dyno.release > a.last_version() {
        return Err(CommandError::NotFound(format!(
            "release v{} not found",
            dyno.release
        )));
    }
    if !state.nodes.contains_key(&dyno.node) {
        return Err(CommandError::NotFound(format!(
            "node {} not found",
            dyno.node
        )));
    }
    if state.dynos.contains_key(&dyno.id) {
        return Err(CommandError::Conflict(format!("dyno {} exists", dyno.id)));
    }
    let mut d = dyno.clone();
    // run.N numbers are unique among the app's live dynos.
    while state
        .dynos
        .values()
        .any(|o| o.app == d.app && o.process_type == d.process_type && o.index == d.index)
    {
        d.index = if d.index >= 9999 { 1000 } else { d.index + 1 };
    }
    state.dynos.insert(d.id, d.clone());
    Ok(CommandOutput::Dynos(vec![d]))
}

/// Applies `f` to the dynos `target` names; answers them.
fn update_dynos(
    state: &mut State,
    app: Uuid,
    target: &DynoTarget,
    f: impl Fn(&mut Dyno),
) -> CommandResult {
    let ids = target_dynos(state, app, target)?;
    let mut out = Vec::new();
    for id in ids {
        if let Some(d) = state.dynos.get_mut(&id) {
            f(d);
            out.push(d.clone());
        }
    }
    Ok(CommandOutput::Dynos(out))
}

/// The ids of an app's dynos that `target` names; a named dyno or type that does not exist
/// is a 404.
fn target_dynos(state: &State, app: Uuid, target: &DynoTarget) -> Result<Vec<Uuid>, CommandError> {
    if !state.apps.contains_key(&app) {
        return Err(not_found_app(&app));
    }
    let ids: Vec<Uuid> = state
        .dynos
        .values()
        .filter(|d| d.app == app && d.run)
        .filter(|d| match target {
            DynoTarget::All => true,
            DynoTarget::Type(t) => &d.process_type == t,
            DynoTarget::Dyno(n) => d.name() == *n || d.id.to_string() == *n,
        })
        .map(|d| d.id)
        .collect();
    match target {
        DynoTarget::Dyno(n) if ids.is_empty() => {
            Err(CommandError::NotFound(format!("dyno {n} not found")))
        }
        DynoTarget::Type(t) if ids.is_empty() => {
            Err(CommandError::NotFound(format!("no {t} dynos are running")))
        }
        _ => Ok(ids),
    }
}
