//! Postgres backups: started (numbered per app), finished (with the dump's holders, or why
//! it failed), deleted; daily schedules, whose backups are kept [`SCHEDULED_RETAINED`] per
//! database.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::apps::app_mut;
use super::{CommandError, CommandOutput, CommandResult};
use crate::model::{
    Addon, Backup, BackupResult, BackupSchedule, BackupStatus, NodeId, State, SCHEDULED_RETAINED,
};

/// The Postgres add-on `id`, for a backup command.
fn postgres<'a>(state: &'a State, id: &Uuid, name: &str) -> Result<&'a Addon, CommandError> {
    let addon = state
        .addons
        .get(id)
        .ok_or_else(|| CommandError::NotFound(format!("add-on {name} not found")))?;
    if haven_catalog::addon_service(&addon.service).map(|s| s.engine)
        != Some(haven_catalog::Engine::Postgres)
    {
        return Err(CommandError::Invalid(format!(
            "{} is not a Postgres database; only heroku-postgresql add-ons have backups",
            addon.name
        )));
    }
    Ok(addon)
}

/// Records a running backup; its number is the app's next.
pub(super) fn start(state: &mut State, backup: &Backup) -> CommandResult {
    app_mut(state, &backup.app)?;
    let addon = postgres(state, &backup.addon, &backup.addon_name)?;
    if backup.scheduled {
        // One scheduled backup per slot, whichever leader proposes it.
        let slot = state
            .backup_schedules
            .get(&backup.addon)
            .and_then(|s| s.due(backup.started_at))
            .ok_or_else(|| CommandError::Conflict("no scheduled backup is due".into()))?;
        if state
            .backups
            .values()
            .any(|b| b.addon == backup.addon && b.scheduled && b.started_at >= slot)
        {
            return Err(CommandError::Conflict(
                "this slot's scheduled backup exists".into(),
            ));
        }
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
    let done = b.clone();
    if done.scheduled && done.status == BackupStatus::Completed {
        // Retention: the newest completed scheduled backups of the database are kept.
        let mut kept: Vec<(u32, Uuid)> = state
            .backups
            .values()
            .filter(|o| o.addon == done.addon && o.scheduled && o.status == BackupStatus::Completed)
            .map(|o| (o.number, o.id))
            .collect();
        kept.sort();
        let excess = kept.len().saturating_sub(SCHEDULED_RETAINED);
        for (_, old) in kept.into_iter().take(excess) {
            state.backups.remove(&old);
        }
    }
    Ok(CommandOutput::Backup(Box::new(done)))
}

/// Sets (or moves) the daily schedule of a Postgres add-on the app owns or has attached.
pub(super) fn schedule(state: &mut State, schedule: &BackupSchedule) -> CommandResult {
    app_mut(state, &schedule.app)?;
    postgres(state, &schedule.addon, &schedule.addon.to_string())?;
    state
        .backup_schedules
        .insert(schedule.addon, schedule.clone());
    Ok(CommandOutput::Done)
}

/// Removes the daily schedule of an add-on of `app`.
pub(super) fn unschedule(state: &mut State, app: Uuid, addon: Uuid) -> CommandResult {
    app_mut(state, &app)?;
    match state.backup_schedules.get(&addon) {
        Some(s) if s.app == app => {}
        _ => {
            return Err(CommandError::NotFound(
                "that database has no backup schedule".into(),
            ))
        }
    }
    state.backup_schedules.remove(&addon);
    Ok(CommandOutput::Done)
}

/// Deletes a backup of `app` (its bytes stay on the holders until they collect them).
/// More nodes hold backup `id`'s dump (the leader's re-replication).
pub(super) fn add_holders(state: &mut State, id: Uuid, nodes: &[NodeId]) -> CommandResult {
    let b = state
        .backups
        .get_mut(&id)
        .ok_or_else(|| CommandError::NotFound(format!("backup {id} not found")))?;
    for n in nodes {
        if !b.holders.contains(n) {
            b.holders.push(*n);
        }
    }
    Ok(CommandOutput::Done)
}

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
                provider_resource: None,
                provider_config: Default::default(),
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
            scheduled: false,
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

    #[test]
    fn one_scheduled_backup_per_slot_and_seven_are_kept() {
        let mut s = State::default();
        let app = create(&mut s, "shop");
        let db = addon(&mut s, app, "heroku-postgresql");
        let day = chrono::Duration::days(1);
        Command::ScheduleBackups {
            schedule: crate::model::BackupSchedule {
                addon: db,
                app,
                hour: 2,
                minute: 0,
                created_at: actor(0).at - day,
            },
        }
        .apply(&mut s)
        .unwrap();
        let mut first = None;
        for d in 0..9 {
            let mut b = backup(app, db);
            b.scheduled = true;
            b.started_at = actor(0).at + day * d;
            let b = started(&mut s, &b);
            // A second proposal for the same slot (another leader) is refused.
            let mut again = backup(app, db);
            again.scheduled = true;
            again.started_at = b.started_at + chrono::Duration::minutes(1);
            assert!(Command::StartBackup { backup: again }
                .apply(&mut s)
                .is_err());
            Command::FinishBackup {
                id: b.id,
                result: BackupResult::Completed {
                    sha256: "ab".repeat(32),
                    size: 1,
                    holders: vec![1],
                },
                at: b.started_at,
            }
            .apply(&mut s)
            .unwrap();
            first.get_or_insert(b.id);
        }
        let kept: Vec<u32> = s.app_backups(app).iter().map(|b| b.number).collect();
        assert_eq!(kept, vec![3, 4, 5, 6, 7, 8, 9]);
        // A manual backup is never dropped by retention.
        let manual = started(&mut s, &backup(app, db));
        assert!(s.backups.contains_key(&manual.id));
        Command::UnscheduleBackups { app, addon: db }
            .apply(&mut s)
            .unwrap();
        assert!(s.backup_schedules.is_empty());
        let err = Command::UnscheduleBackups { app, addon: db }
            .apply(&mut s)
            .unwrap_err();
        assert!(matches!(err, CommandError::NotFound(_)), "{err:?}");
    }
}
