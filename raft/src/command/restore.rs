//! Restoring a cluster from a backup (`havend restore`, issue 18 item 4): the restored
//! node's first commands. `RestoreState` puts the backed-up model (already rebased onto
//! the new node by [`crate::model::rebase_restored`]) into an empty cluster;
//! `RestoreReleases` then brings back each app's older releases, a chunk per entry, which
//! the state machine moves to its history on disk as it does with any old release.
//! Both go through the log, so a node joining later gets them by log or snapshot.

use uuid::Uuid;

use super::{CommandError, CommandOutput, CommandResult};
use crate::model::{Release, State};

/// Replaces an empty state with a restored one.
pub(super) fn restore_state(state: &mut State, restored: &State) -> CommandResult {
    if state.cluster.is_some() {
        return Err(CommandError::Conflict(
            "this cluster already has a state: a backup is restored only into a new cluster".into(),
        ));
    }
    if restored.cluster.is_none() {
        return Err(CommandError::Invalid(
            "the backup holds no cluster (was it made of an initialized cluster?)".into(),
        ));
    }
    *state = restored.clone();
    Ok(CommandOutput::Done)
}

/// Adds older releases of `app` from a backup: each must be older than the newest one
/// the app has; versions already in memory are skipped (a restore resumed after a
/// restart sends a chunk again, and a release already on disk is written again as the
/// same record).
pub(super) fn restore_releases(
    state: &mut State,
    app: Uuid,
    releases: &[Release],
) -> CommandResult {
    let a = state
        .apps
        .get_mut(&app)
        .ok_or_else(|| CommandError::NotFound(format!("no app {app} to restore releases of")))?;
    let newest = a.last_version();
    if let Some(r) = releases
        .iter()
        .find(|r| r.version == 0 || r.version > newest)
    {
        return Err(CommandError::Invalid(format!(
            "release v{} of {} is not older than its newest release v{newest}",
            r.version, a.name
        )));
    }
    for r in releases {
        if a.releases.iter().any(|m| m.version == r.version) {
            continue;
        }
        let at = a.releases.partition_point(|m| m.version < r.version);
        a.releases.insert(at, r.clone());
    }
    Ok(CommandOutput::Done)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::command::fixtures::{create, set};

    fn cluster_with_app(n: usize) -> (State, Uuid) {
        let mut s = State::default();
        s.cluster = Some(crate::model::Cluster {
            id: Uuid::new_v4(),
            name: "haven".into(),
            app_domain: "localhost".into(),
            created_at: chrono::Utc::now(),
            join_secret_sha256: "x".into(),
            ca_fingerprint: "y".into(),
        });
        let app = create(&mut s, "my-app");
        for i in 0..n {
            let v = i.to_string();
            set(app, &[("N", Some(v.as_str()))]).apply(&mut s).unwrap();
        }
        (s, app)
    }

    #[test]
    fn a_restored_state_fills_only_an_empty_cluster() {
        let (backed_up, _) = cluster_with_app(3);
        let mut fresh = State::default();
        restore_state(&mut fresh, &backed_up).unwrap();
        assert_eq!(fresh, backed_up);
        let again = restore_state(&mut fresh, &backed_up).unwrap_err();
        assert!(matches!(again, CommandError::Conflict(_)), "{again}");
        let empty = restore_state(&mut State::default(), &State::default()).unwrap_err();
        assert!(matches!(empty, CommandError::Invalid(_)), "{empty}");
    }

    #[test]
    fn older_releases_come_back_in_order_once() {
        let (full, app) = cluster_with_app(6);
        let all = full.apps[&app].releases.clone();
        assert_eq!(all.len(), 7);
        // The backup's head kept the newest three in memory; the rest comes in chunks.
        let mut head = full.clone();
        head.apps.get_mut(&app).unwrap().releases.drain(..4);
        let mut s = State::default();
        restore_state(&mut s, &head).unwrap();
        restore_releases(&mut s, app, &all[2..4]).unwrap();
        restore_releases(&mut s, app, &all[..2]).unwrap();
        // A chunk sent again changes nothing.
        restore_releases(&mut s, app, &all[..2]).unwrap();
        assert_eq!(s.apps[&app].releases, all);
        assert_eq!(s, full);
        let newer = Release {
            version: 99,
            ..all[0].clone()
        };
        let err = restore_releases(&mut s, app, &[newer]).unwrap_err();
        assert!(err.to_string().contains("not older"), "{err}");
        let err = restore_releases(&mut s, Uuid::new_v4(), &all[..1]).unwrap_err();
        assert!(matches!(err, CommandError::NotFound(_)), "{err}");
    }
}
