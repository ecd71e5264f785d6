//! Custom domains: unique across the cluster, never under the cluster's app domain.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::apps::app_mut;
use super::{CommandError, CommandOutput, CommandResult};
use crate::model::{normalize_hostname, Domain, State};

/// Adds a custom domain to an app.
pub(super) fn add(
    state: &mut State,
    app: Uuid,
    domain: &Domain,
    at: DateTime<Utc>,
) -> CommandResult {
    let host = normalize_hostname(&domain.hostname).map_err(CommandError::Invalid)?;
    let default_domain = state.cluster.as_ref().map(|c| c.app_domain.clone());
    if let Some(d) = default_domain {
        if host == d || host.ends_with(&format!(".{d}")) {
            return Err(CommandError::Invalid(format!(
                "{host} is under the cluster's app domain {d}; apps answer there already"
            )));
        }
    }
    if let Some(owner) = state
        .apps
        .values()
        .find(|a| a.domains.iter().any(|d| d.hostname == host))
    {
        return Err(CommandError::Conflict(format!(
            "{host} is already used by app {}",
            owner.name
        )));
    }
    let a = app_mut(state, &app)?;
    let d = Domain {
        id: domain.id,
        hostname: host,
        created_at: domain.created_at,
    };
    a.domains.push(d.clone());
    a.updated_at = at;
    Ok(CommandOutput::Domain {
        app: Box::new(a.summary()),
        domain: d,
    })
}

/// Removes a custom domain, named by hostname (any case, trailing dot allowed) or id.
pub(super) fn remove(state: &mut State, app: Uuid, key: &str, at: DateTime<Utc>) -> CommandResult {
    let a = app_mut(state, &app)?;
    let want = key.trim().trim_end_matches('.').to_ascii_lowercase();
    let pos = a
        .domains
        .iter()
        .position(|d| d.hostname == want || d.id.to_string() == want)
        .ok_or_else(|| CommandError::NotFound(format!("domain {key} not found")))?;
    let d = a.domains.remove(pos);
    a.updated_at = at;
    Ok(CommandOutput::Domain {
        app: Box::new(a.summary()),
        domain: d,
    })
}
