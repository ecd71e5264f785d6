//! Log drains: at most five per app, each URL once.

use uuid::Uuid;

use super::apps::app_mut;
use super::{CommandError, CommandOutput, CommandResult};
use crate::model::{validate_drain_url, Drain, State};

/// Adds a log drain to an app.
pub(super) fn add(state: &mut State, app: Uuid, drain: &Drain) -> CommandResult {
    validate_drain_url(&drain.url).map_err(CommandError::Invalid)?;
    let a = app_mut(state, &app)?;
    if a.drains.iter().any(|d| d.url == drain.url) {
        return Err(CommandError::Conflict(format!(
            "{} is already a drain of {}",
            drain.url, a.name
        )));
    }
    if a.drains.len() >= 5 {
        return Err(CommandError::Invalid(
            "an app has at most 5 log drains".into(),
        ));
    }
    a.drains.push(drain.clone());
    Ok(CommandOutput::Drain {
        app: Box::new(a.summary()),
        drain: drain.clone(),
    })
}

/// Removes a log drain, named by id, URL or token.
pub(super) fn remove(state: &mut State, app: Uuid, key: &str) -> CommandResult {
    let a = app_mut(state, &app)?;
    let pos = a
        .drains
        .iter()
        .position(|d| d.id.to_string() == key || d.url == key || d.token == key)
        .ok_or_else(|| CommandError::NotFound(format!("drain {key} not found")))?;
    let d = a.drains.remove(pos);
    Ok(CommandOutput::Drain {
        app: Box::new(a.summary()),
        drain: d,
    })
}
