//! Apps: create, rename, maintenance mode, delete; and finding the app a command names.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::releases::push_release;
use super::{Actor, CommandError, CommandOutput, CommandResult};
use crate::model::{validate_app_name, App, ConfigVars, State};

/// Creates an app and its release v1, owned by the user `owner`. Names are unique.
pub(super) fn create(
    state: &mut State,
    id: Uuid,
    name: &str,
    stack: &str,
    release_id: Uuid,
    actor: &Actor,
    owner: Uuid,
) -> CommandResult {
    validate_app_name(name).map_err(CommandError::Invalid)?;
    if !state.users.contains_key(&owner) {
        return Err(CommandError::NotFound(format!("user {owner} not found")));
    }
    if state.apps.values().any(|a| a.name == name) {
        return Err(CommandError::Conflict(format!(
            "name {name} is already taken"
        )));
    }
    if state.apps.contains_key(&id) {
        return Err(CommandError::Conflict(format!("app id {id} exists")));
    }
    let mut app = App {
        id,
        name: name.to_string(),
        stack: stack.to_string(),
        buildpacks: Vec::new(),
        maintenance: false,
        domains: Vec::new(),
        drains: Vec::new(),
        created_at: actor.at,
        updated_at: actor.at,
        released_at: None,
        config: ConfigVars::default(),
        releases: Vec::new(),
        formation: BTreeMap::new(),
        owner,
        collaborators: Vec::new(),
    };
    let config = app.config.clone();
    push_release(
        &mut app,
        release_id,
        None,
        config,
        "Initial release".into(),
        actor,
    );
    state.apps.insert(id, app.clone());
    Ok(CommandOutput::App(Box::new(app.summary())))
}

/// Renames an app and/or turns maintenance mode on or off.
pub(super) fn update(
    state: &mut State,
    app: Uuid,
    name: Option<&str>,
    maintenance: Option<bool>,
    actor: &Actor,
) -> CommandResult {
    if let Some(name) = name {
        validate_app_name(name).map_err(CommandError::Invalid)?;
        if state.apps.values().any(|a| a.name == name && a.id != app) {
            return Err(CommandError::Conflict(format!(
                "name {name} is already taken"
            )));
        }
    }
    let a = app_mut(state, &app)?;
    if let Some(name) = name {
        a.name = name.to_string();
    }
    if let Some(m) = maintenance {
        a.maintenance = m;
    }
    a.updated_at = actor.at;
    Ok(CommandOutput::App(Box::new(a.summary())))
}

/// `stack:set`: the stack of the app's next build (one of the catalog's).
pub(super) fn set_stack(state: &mut State, app: Uuid, stack: &str, actor: &Actor) -> CommandResult {
    if !crate::catalog::STACKS.contains(&stack) {
        return Err(CommandError::Invalid(format!(
            "Stack not found: {stack}. Haven's stacks are {}.",
            crate::catalog::STACKS.join(", ")
        )));
    }
    let a = app_mut(state, &app)?;
    a.stack = stack.to_string();
    a.updated_at = actor.at;
    Ok(CommandOutput::App(Box::new(a.summary())))
}

/// Deletes an app with its builds, slugs, dynos and unplaced dynos; its attachments go
/// and its add-ons are deprovisioned (refused while one is attached to another app).
pub(super) fn delete(state: &mut State, app: Uuid) -> CommandResult {
    if !state.apps.contains_key(&app) {
        return Err(not_found_app(&app));
    }
    super::addons::on_app_delete(state, app)?;
    let removed = state.apps.remove(&app).ok_or_else(|| not_found_app(&app))?;
    state.builds.retain(|_, b| b.app != app);
    state.slugs.retain(|_, s| s.app != app);
    state.dynos.retain(|_, d| d.app != app);
    state.unplaced.retain(|u| u.app != app);
    state.sni_endpoints.retain(|_, e| e.app != app);
    state.backups.retain(|_, b| b.app != app);
    state.backup_schedules.retain(|_, b| b.app != app);
    state.repos.remove(&app);
    Ok(CommandOutput::App(Box::new(removed.summary())))
}

/// The 404 of a command naming an app that does not exist.
pub(super) fn not_found_app(id: &Uuid) -> CommandError {
    CommandError::AppNotFound(*id)
}

/// The app `id`, to change.
pub(super) fn app_mut<'a>(state: &'a mut State, id: &Uuid) -> Result<&'a mut App, CommandError> {
    state.apps.get_mut(id).ok_or_else(|| not_found_app(id))
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use crate::command::fixtures::{actor, create, ADMIN};
    use crate::command::{Command, CommandError};
    use crate::model::State;

    #[test]
    fn create_app_makes_release_v1_and_rejects_duplicates() {
        let mut s = State::default();
        let id = create(&mut s, "my-app");
        let app = &s.apps[&id];
        assert_eq!(app.owner, ADMIN);
        assert_eq!(app.releases.len(), 1);
        assert_eq!(app.releases[0].version, 1);
        assert_eq!(app.releases[0].description, "Initial release");
        let before = s.clone();
        let dup = Command::CreateApp {
            id: Uuid::new_v4(),
            name: "my-app".into(),
            stack: "heroku-24".into(),
            release_id: Uuid::new_v4(),
            actor: actor(0),
            owner: ADMIN,
        }
        .apply(&mut s);
        assert!(matches!(dup, Err(CommandError::Conflict(_))));
        assert_eq!(s, before, "a rejected command changes nothing");
    }

    #[test]
    fn rename_and_delete() {
        let mut s = State::default();
        let a = create(&mut s, "one");
        let _b = create(&mut s, "two");
        let taken = Command::UpdateApp {
            app: a,
            name: Some("two".into()),
            maintenance: None,
            actor: actor(1),
        }
        .apply(&mut s);
        assert!(matches!(taken, Err(CommandError::Conflict(_))));
        Command::UpdateApp {
            app: a,
            name: Some("uno".into()),
            maintenance: Some(true),
            actor: actor(1),
        }
        .apply(&mut s)
        .unwrap();
        assert_eq!(s.find_app("uno").map(|x| x.maintenance), Some(true));
        Command::DeleteApp { app: a }.apply(&mut s).unwrap();
        assert!(s.find_app("uno").is_none());
        assert!(matches!(
            Command::DeleteApp { app: a }.apply(&mut s),
            Err(CommandError::AppNotFound(id)) if id == a
        ));
    }
}
