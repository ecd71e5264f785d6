//! Third-party add-on providers: register and remove (admins only, at the API).

use super::{CommandError, CommandOutput, CommandResult};
use crate::model::{
    validate_provider_name, validate_provider_plans, validate_provider_url, AddonProvider, State,
};

/// Registers `provider` (name, URL and plans checked; a taken name is refused).
pub(super) fn add(state: &mut State, provider: &AddonProvider) -> CommandResult {
    validate_provider_name(&provider.name).map_err(CommandError::Invalid)?;
    validate_provider_url(&provider.url).map_err(CommandError::Invalid)?;
    validate_provider_plans(&provider.plans).map_err(CommandError::Invalid)?;
    if provider.password.len() < 8 {
        return Err(CommandError::Invalid(
            "The provider's password is too short (at least 8 characters).".into(),
        ));
    }
    if state.addon_providers.contains_key(&provider.name)
        || state.addon_providers.values().any(|p| p.id == provider.id)
    {
        return Err(CommandError::Conflict(format!(
            "The add-on provider {} is already registered.",
            provider.name
        )));
    }
    state
        .addon_providers
        .insert(provider.name.clone(), provider.clone());
    Ok(CommandOutput::Done)
}

/// Removes a provider; refused while add-ons of it exist (destroy them first).
pub(super) fn remove(state: &mut State, name: &str) -> CommandResult {
    if !state.addon_providers.contains_key(name) {
        return Err(CommandError::NotFound(
            "Couldn't find that add-on provider.".into(),
        ));
    }
    if let Some(a) = state
        .addons
        .values()
        .find(|a| a.is_provider() && a.service == name)
    {
        return Err(CommandError::Conflict(format!(
            "The add-on {} of provider {name} still exists; destroy it first.",
            a.name
        )));
    }
    state.addon_providers.remove(name);
    Ok(CommandOutput::Done)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "providers_tests.rs"]
mod tests;
