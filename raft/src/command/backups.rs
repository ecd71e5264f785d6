//! Postgres backups: started (numbered per app), finished (with the dump's holders, or why
//! it failed), deleted.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::apps::app_mut;
use super::{CommandError, CommandOutput, CommandResult};
use crate::model::{Backup, BackupResult, BackupStatus, State};

/// Records a running backup; its number is the app's next.
pub(super) fn start(state: &mut State, backup: &Backup) -> CommandResult {
    app_mut(state, &backup.app)?;
    let Some(addon) = state.addons.get(&backup.addon) else {
        return Err(CommandError::NotFound(format!(
            "add-on {} not found",
            backup.addon_name
        )));
    };
    if haven_catalog::addon_service(&addon.service).map(|s| s.engine)
        != Some(haven_catalog::Engine::Postgres)
    {
        return Err(CommandError::Invalid(format!(
            "{} is not a Postgres database; only heroku-postgresql add-ons have backups",
            addon.name
        )));
    }
    if state.backups.contains_key(&backup.id) {
        return Err(CommandError::Conflict("backup id in use".into()));
    }
    let number = state
        .backups
        .values()
        .filter(|b| b.app == backup.app)
        .map(|b| b.number)
        .max()
        .unwrap_or(0)
        + 1;
    let b = Backup {
        number,
        addon_name: addon.name.clone(),
        status: BackupStatus::Running,
        finished_at: None,
        size: 0,
        sha256: None,
        holders: Vec::new(),
        ..backup.clone()
    };
    state.backups.insert(b.id, b.clone());
    Ok(CommandOutput::Backup(Box::new(b)))
}

/// Records how a running backup ended.
pub(super) fn finish(
    state: &mut State,
    id: Uuid,
    result: &BackupResult,
    at: DateTime<Utc>,
) -> CommandResult {
    let b = state
        .backups
        .get_mut(&id)
        .ok_or_else(|| CommandError::NotFound("backup not found".into()))?;
    if b.status != BackupStatus::Running {
        return Err(CommandError::Conflict(format!(
            "{} has already finished",
            b.label()
        )));
    }
    match result {
        BackupResult::Completed {
            sha256,
            size,
            holders,
        } => {
            b.status = BackupStatus::Completed;
            b.sha256 = Some(sha256.clone());
            b.size = *size;
            b.holders = holders.clone();
        }
        BackupResult::Failed(why) => b.status = BackupStatus::Failed(why.clone()),
    }
    b.finished_at = Some(at);
    Ok(CommandOutput::Backup(Box::new(b.clone())))
}

/// Deletes a backup of `app` (its bytes stay on the holders until they collect them).
pub(super) fn delete(state: &mut State, app: Uuid, id: Uuid) -> CommandResult {
    app_mut(state, &app)?;
    match state.backups.get(&id) {
        Some(b) if b.app == app => {}
        _ => return Err(CommandError::NotFound("backup not found".into())),
    }
    let b = state
        .backups
        .remove(&id)
        .ok_or_else(|| CommandError::NotFound("backup not found".into()))?;
    Ok(CommandOutput::Backup(Box::new(b)))
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use crate::command::fixtures::{actor, create};
    use crate::command::{Command, CommandError, CommandOutput};
    use crate::model::{Addon, AddonState, Backup, BackupResult, BackupStatus, State};

    fn addon(state: &mut State, app: Uuid, service: &str) -> Uuid {
        let id = Uuid::new_v4();
        state.addons.insert(
            id,
            Addon {
                id,
                name: format!("{service}-x-00001"),
                service: service.into(),
                plan: "essential-0".into(),
                app,
                state: AddonState::Provisioned,
                password: "pw".into(),
                members: Vec::new(),
                created_at: actor(0).at,
                updated_at: actor(0).at,
                primary: None,
                generation: 0,
            },
        );
        id
    }

    fn backup(app: Uuid, addon: Uuid) -> Backup {
        Backup {
            id: Uuid::new_v4(),
            number: 0,
            app,
            addon,
            addon_name: String::new(),
            node: 1,
            status: BackupStatus::Running,
            started_at: actor(0).at,
            finished_at: None,
            size: 0,
            sha256: None,
            holders: Vec::new(),
        }
    }

    fn started(s: &mut State, b: &Backup) -> Backup {
        let out = Command::StartBackup { backup: b.clone() }.apply(s).unwrap();
        match out {
            CommandOutput::Backup(b) => *b,
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn backups_are_numbered_per_app_and_finish_once() {
        let mut s = State::default();
        let app = create(&mut s, "shop");
        let db = addon(&mut s, app, "heroku-postgresql");
        let first = started(&mut s, &backup(app, db));
        let second = started(&mut s, &backup(app, db));
        assert_eq!(
            (first.label(), second.label()),
            ("b001".into(), "b002".into())
        );
        assert_eq!(first.addon_name, "heroku-postgresql-x-00001");
        let done = BackupResult::Completed {
            sha256: "ab".repeat(32),
            size: 42,
            holders: vec![1, 2, 3],
        };
        Command::FinishBackup {
            id: first.id,
            result: done.clone(),
            at: actor(5).at,
        }
        .apply(&mut s)
        .unwrap();
        assert_eq!(s.backups[&first.id].status, BackupStatus::Completed);
        assert_eq!(s.backups[&first.id].holders, vec![1, 2, 3]);
        let again = Command::FinishBackup {
            id: first.id,
            result: done,
            at: actor(6).at,
        }
        .apply(&mut s)
        .unwrap_err();
        assert!(matches!(again, CommandError::Conflict(_)), "{again:?}");
        // Another app numbers its own from 1.
        let blog = create(&mut s, "blog");
        let db2 = addon(&mut s, blog, "heroku-postgresql");
        assert_eq!(started(&mut s, &backup(blog, db2)).number, 1);
    }

    #[test]
    fn only_postgres_has_backups_and_apps_delete_their_own() {
        let mut s = State::default();
        let app = create(&mut s, "shop");
        let redis = addon(&mut s, app, "heroku-redis");
        let err = Command::StartBackup {
            backup: backup(app, redis),
        }
        .apply(&mut s)
        .unwrap_err();
        assert!(matches!(err, CommandError::Invalid(_)), "{err:?}");
        let db = addon(&mut s, app, "heroku-postgresql");
        let b = started(&mut s, &backup(app, db));
        let other = create(&mut s, "blog");
        let err = Command::DeleteBackup {
            app: other,
            id: b.id,
        }
        .apply(&mut s)
        .unwrap_err();
        assert!(matches!(err, CommandError::NotFound(_)), "{err:?}");
        Command::DeleteBackup { app, id: b.id }
            .apply(&mut s)
            .unwrap();
        assert!(s.backups.is_empty());
        // Deleting the app removes its backups.
        started(&mut s, &backup(app, db));
        Command::DeleteApp { app }.apply(&mut s).unwrap();
        assert!(s.backups.is_empty());
    }
}
