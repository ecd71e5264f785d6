//! Releases: rollback, the end of a release phase, and making the next release.

use uuid::Uuid;

use super::apps::app_mut;
use super::{Actor, CommandError, CommandOutput, CommandResult};
use crate::model::{App, ConfigVars, Release, ReleaseStatus, State};

/// What Heroku answers to a rollback to a release without a slug (such as v1).
pub const NO_SLUG_ROLLBACK: &str = "Cannot rollback to a release that had no slug.";

/// Makes the next release with the slug and config vars of the succeeded release
/// `to_version`, looked up in memory (`Command::Rollback`, no longer proposed).
pub(super) fn rollback(
    state: &mut State,
    app: Uuid,
    to_version: u64,
    release_id: Uuid,
    actor: &Actor,
) -> CommandResult {
    let target = app_mut(state, &app)?
        .releases
        .iter()
        .find(|r| r.version == to_version)
        .ok_or_else(|| CommandError::NotFound(format!("release v{to_version} not found")))?
        .clone();
    rollback_to(state, app, &target, release_id, actor)
}

/// Makes the next release with the slug and config vars of `target`, as the proposer read
/// it. Only the carried release is used (never the node's copy, which may be on disk), so
/// the outcome is the same on every node. A release without a slug (nothing deployed
/// yet) is refused, as on Heroku.
pub(super) fn rollback_to(
    state: &mut State,
    app: Uuid,
    target: &Release,
    release_id: Uuid,
    actor: &Actor,
) -> CommandResult {
    if target.slug.is_some_and(|s| !state.slugs.contains_key(&s)) {
        return Err(CommandError::NotFound(format!(
            "release v{} was compacted away (release retention)",
            target.version
        )));
    }
    let a = app_mut(state, &app)?;
    let to_version = target.version;
    if to_version == 0 || to_version > a.last_version() {
        return Err(CommandError::NotFound(format!(
            "release v{to_version} not found"
        )));
    }
    if target.status != ReleaseStatus::Succeeded {
        return Err(CommandError::Invalid(format!(
            "release v{to_version} is {} and cannot be rolled back to",
            target.status.as_str()
        )));
    }
    if target.slug.is_none() {
        return Err(CommandError::Invalid(NO_SLUG_ROLLBACK.into()));
    }
    a.config = target.config.clone();
    let version = push_release(
        a,
        release_id,
        target.slug,
        target.config.clone(),
        format!("Rollback to v{to_version}"),
        actor,
    );
    Ok(CommandOutput::Release {
        app: Box::new(a.summary()),
        version,
    })
}

/// Ends the release phase of pending release `version`.
pub(super) fn set_status(
    state: &mut State,
    app: Uuid,
    version: u64,
    status: ReleaseStatus,
) -> CommandResult {
    let a = app_mut(state, &app)?;
    let last = a.last_version();
    // Pending releases are always kept in memory; one that is not there is decided (on
    // disk on this node) or does not exist, whichever releases this node keeps.
    let r = a
        .releases
        .iter_mut()
        .find(|r| r.version == version)
        .ok_or_else(|| match version {
            1.. if version <= last => {
                CommandError::Conflict(format!("release v{version} is no longer pending"))
            }
            _ => CommandError::NotFound(format!("release v{version} not found")),
        })?;
    if r.status != ReleaseStatus::Pending {
        // The same answer as for a decided release on disk, so that every node agrees.
        return Err(CommandError::Conflict(format!(
            "release v{version} is no longer pending"
        )));
    }
    r.status = status;
    Ok(CommandOutput::Done)
}

/// Appends a succeeded release to `app`; returns its version.
pub(super) fn push_release(
    app: &mut App,
    id: Uuid,
    slug: Option<Uuid>,
    config: ConfigVars,
    description: String,
    actor: &Actor,
) -> u64 {
    push_release_with(
        app,
        id,
        slug,
        config,
        description,
        actor,
        ReleaseStatus::Succeeded,
    )
}

/// Appends a release with `status` to `app`; returns its version.
pub(super) fn push_release_with(
    app: &mut App,
    id: Uuid,
    slug: Option<Uuid>,
    config: ConfigVars,
    description: String,
    actor: &Actor,
    status: ReleaseStatus,
) -> u64 {
    let version = app.last_version() + 1;
    app.releases.push(Release {
        id,
        version,
        slug,
        config,
        description,
        status,
        created_at: actor.at,
        user: actor.email.clone(),
    });
    app.released_at = Some(actor.at);
    app.updated_at = actor.at;
    version
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use crate::command::fixtures::{actor, create, set};
    use crate::command::{Command, CommandError, CommandOutput};
    use crate::model::State;

    #[test]
    fn rollback_restores_config_and_names_the_target() {
        let mut s = State::default();
        let id = create(&mut s, "my-app");
        set(id, &[("FOO", Some("1"))]).apply(&mut s).unwrap();
        set(id, &[("FOO", Some("2"))]).apply(&mut s).unwrap();
        // As if v2 and v3 had followed a deploy.
        let slug = Uuid::from_u128(5);
        s.slugs
            .insert(slug, crate::command::fixtures::slug(slug, id));
        for r in &mut s.apps.get_mut(&id).unwrap().releases[1..] {
            r.slug = Some(slug);
        }
        let out = Command::Rollback {
            app: id,
            to_version: 2,
            release_id: Uuid::new_v4(),
            actor: actor(2),
        }
        .apply(&mut s)
        .unwrap();
        assert!(matches!(out, CommandOutput::Release { version: 4, .. }));
        let app = &s.apps[&id];
        assert_eq!(app.releases[3].description, "Rollback to v2");
        assert_eq!(app.config["FOO"], "1");
        assert_eq!(app.releases[3].slug, Some(slug));
        let missing = Command::Rollback {
            app: id,
            to_version: 9,
            release_id: Uuid::new_v4(),
            actor: actor(2),
        }
        .apply(&mut s);
        assert!(matches!(missing, Err(CommandError::NotFound(_))));
    }

    #[test]
    fn rollback_to_uses_the_carried_release_not_the_nodes_copy() {
        let mut s = State::default();
        let id = create(&mut s, "my-app");
        set(id, &[("FOO", Some("1"))]).apply(&mut s).unwrap();
        set(id, &[("FOO", Some("2"))]).apply(&mut s).unwrap();
        let mut target = s.apps[&id].releases[1].clone();
        target.slug = Some(Uuid::from_u128(5));
        s.slugs.insert(
            Uuid::from_u128(5),
            crate::command::fixtures::slug(Uuid::from_u128(5), id),
        );
        // As on a node that keeps v2 on disk only.
        s.apps.get_mut(&id).unwrap().releases.remove(1);
        let rollback = |target: &crate::model::Release| Command::RollbackTo {
            app: id,
            target: Box::new(target.clone()),
            release_id: Uuid::new_v4(),
            actor: actor(2),
        };
        let out = rollback(&target).apply(&mut s).unwrap();
        assert!(matches!(out, CommandOutput::Release { version: 4, .. }));
        let app = &s.apps[&id];
        let r = app.releases.last().unwrap();
        assert_eq!(r.description, "Rollback to v2");
        assert_eq!((r.slug, r.config["FOO"].as_str()), (target.slug, "1"));
        assert!(app.config.shares(&r.config));
        // A version the app never had, and a release not decided, are refused.
        let before = s.clone();
        let mut future = target.clone();
        future.version = 9;
        assert!(matches!(
            rollback(&future).apply(&mut s),
            Err(CommandError::NotFound(_))
        ));
        let mut pending = target.clone();
        pending.status = crate::model::ReleaseStatus::Pending;
        assert!(matches!(
            rollback(&pending).apply(&mut s),
            Err(CommandError::Invalid(_))
        ));
        assert_eq!(s, before);
    }

    #[test]
    fn rollback_to_a_release_without_a_slug_is_refused_and_changes_nothing() {
        let mut s = State::default();
        let id = create(&mut s, "my-app");
        set(id, &[("FOO", Some("1"))]).apply(&mut s).unwrap();
        let before = s.clone();
        for to_version in [1, 2] {
            let r = Command::Rollback {
                app: id,
                to_version,
                release_id: Uuid::new_v4(),
                actor: actor(2),
            }
            .apply(&mut s);
            assert_eq!(
                r,
                Err(CommandError::Invalid(super::NO_SLUG_ROLLBACK.into())),
                "v{to_version}"
            );
            assert_eq!(s, before);
        }
    }
}
