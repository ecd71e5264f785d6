//! Release retention (issue 14, step 3): `CompactReleases` removes an app's releases older
//! than a version, as the leader's retention decided (`crate::retention`), with the slugs
//! and builds only those releases used. What a dyno runs, the current release and pending
//! ones are never removed, whatever their version; a slug another remaining release (in
//! memory) uses stays. The state machine deletes the same versions from the history on
//! disk in the batch that applies the command (`storage/machine.rs`).

use std::collections::BTreeSet;

use uuid::Uuid;

use super::apps::app_mut;
use super::{CommandOutput, CommandResult};
use crate::model::{BuildStatus, ReleaseStatus, State};

/// The versions of `app` a compaction must keep even below its bound (all in memory: the
/// state machine never moves such a release to disk).
pub fn protected(state: &State, app: Uuid) -> BTreeSet<u64> {
    let mut keep: BTreeSet<u64> = state
        .dynos
        .values()
        .filter(|d| d.app == app)
        .map(|d| d.release)
        .collect();
    if let Some(a) = state.apps.get(&app) {
        keep.extend(a.current_release().map(|r| r.version));
        keep.extend(
            a.releases
                .iter()
                .filter(|r| r.status == ReleaseStatus::Pending)
                .map(|r| r.version),
        );
        keep.insert(a.last_version());
    }
    keep
}

pub(super) fn compact(
    state: &mut State,
    app: Uuid,
    below: u64,
    slugs: &[Uuid],
    builds: &[Uuid],
) -> CommandResult {
    let keep = protected(state, app);
    let a = app_mut(state, &app)?;
    a.releases
        .retain(|r| r.version >= below || keep.contains(&r.version));
    let in_use: BTreeSet<Uuid> = state
        .apps
        .values()
        .flat_map(|a| a.releases.iter().filter_map(|r| r.slug))
        .collect();
    for id in slugs {
        if !in_use.contains(id) && state.slugs.get(id).is_some_and(|s| s.app == app) {
            state.slugs.remove(id);
        }
    }
    for id in builds {
        if state
            .builds
            .get(id)
            .is_some_and(|b| b.app == app && b.status != BuildStatus::Pending)
        {
            state.builds.remove(id);
        }
    }
    Ok(CommandOutput::Done)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::command::fixtures::{create, set};

    fn app_with(n: usize) -> (State, Uuid) {
        let mut s = State::default();
        let app = create(&mut s, "my-app");
        for i in 0..n {
            let v = i.to_string();
            set(app, &[("N", Some(v.as_str()))]).apply(&mut s).unwrap();
        }
        (s, app)
    }

    fn versions(s: &State, app: Uuid) -> Vec<u64> {
        s.apps[&app].releases.iter().map(|r| r.version).collect()
    }

    #[test]
    fn old_releases_go_but_not_what_a_dyno_runs_nor_the_newest() {
        let (mut s, app) = app_with(9);
        assert_eq!(versions(&s, app).len(), 10);
        // A dyno still runs v3.
        let d = crate::model::Dyno::placed(
            Uuid::new_v4(),
            app,
            "web",
            1,
            3,
            "standard-1x",
            1,
            "python app.py".into(),
            chrono::Utc::now(),
        );
        s.dynos.insert(d.id, d);
        compact(&mut s, app, 8, &[], &[]).unwrap();
        assert_eq!(versions(&s, app), vec![3, 8, 9, 10]);
        // A bound past the newest keeps the newest.
        compact(&mut s, app, 99, &[], &[]).unwrap();
        assert_eq!(versions(&s, app), vec![3, 10]);
        assert!(matches!(
            compact(&mut s, Uuid::new_v4(), 2, &[], &[]),
            Err(crate::command::CommandError::AppNotFound(_))
        ));
    }
}
