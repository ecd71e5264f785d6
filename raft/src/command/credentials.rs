//! Credentials of Haven's Postgres add-ons (`pg:credentials:rotate`): a new password,
//! chosen by the proposer, replaces the old one; every attachment's vars follow, one
//! release per attached app ("Rotate DATABASE credentials (@ref:postgresql-...)"), so
//! the apps' dynos restart with the new URL. The primary's agent sets the password in
//! the server (the old one stops working then), a standby's agent the one it
//! replicates with.

use uuid::Uuid;

use super::addons::{addon_not_found, reset_all_vars};
use super::{Actor, CommandError, CommandResult};
use crate::model::{AddonState, State};

pub(super) fn rotate(
    state: &mut State,
    addon: Uuid,
    password: &str,
    release_seed: Uuid,
    actor: &Actor,
) -> CommandResult {
    let a = state.addons.get(&addon).ok_or_else(addon_not_found)?;
    let postgres = haven_catalog::addon_service(&a.service)
        .is_some_and(|s| s.engine == haven_catalog::Engine::Postgres);
    if !postgres {
        return Err(CommandError::Invalid(format!(
            "{} is not a Postgres database of Haven's: its credentials are not rotated here.",
            a.name
        )));
    }
    if a.state == AddonState::Deprovisioning {
        return Err(CommandError::Conflict(format!(
            "{} is being deprovisioned.",
            a.name
        )));
    }
    if password.len() < 16 || !password.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(CommandError::Invalid(
            "a new password is at least 16 letters and digits".into(),
        ));
    }
    if a.password == password {
        return Err(CommandError::Invalid(
            "the new password is the old one".into(),
        ));
    }
    let a = state.addons.get_mut(&addon).ok_or_else(addon_not_found)?;
    a.password = password.to_string();
    a.updated_at = actor.at;
    let a = a.clone();
    reset_all_vars(state, a, release_seed, actor, "Rotate credentials of")
}
