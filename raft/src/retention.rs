//! Release retention (issue 14, step 3), the proposer's half: with an operator's
//! `keep` (the leader's `[raft] retain_releases`), each app keeps its newest `keep`
//! releases — and whatever [`crate::command`]'s compaction protects: what a dyno runs,
//! the current release, pending ones — and the older ones go, with the slugs and builds
//! only they used. [`plan`] reads the state and the history on disk (under the state's
//! read lock) and proposes one `CompactReleases` per app that has anything to remove;
//! applying it is deterministic, so every node removes the same.

use std::collections::BTreeSet;

use uuid::Uuid;

use crate::command::Command;
use crate::model::{BuildStatus, State};
use crate::History;

/// The compactions `keep` asks for now (none when `keep` is 0: every release is kept).
pub fn plan(state: &State, history: &History, keep: u64) -> anyhow::Result<Vec<Command>> {
    let mut out = Vec::new();
    if keep == 0 {
        return Ok(out);
    }
    for a in state.apps.values() {
        let last = a.last_version();
        if last <= keep {
            continue;
        }
        let below = last - keep + 1;
        let protected = crate::command::protected_releases(state, a.id);
        let old_in_memory = a
            .releases
            .iter()
            .any(|r| r.version < below && !protected.contains(&r.version));
        let old_on_disk = !history
            .stored_range(a.id, 1, below - 1, false, 1)?
            .is_empty();
        if !old_in_memory && !old_on_disk {
            continue;
        }
        let old = history.window(a, 1, below - 1, false, usize::MAX)?;
        let kept = history.window(a, below, last, false, usize::MAX)?;
        let mut kept_slugs: BTreeSet<Uuid> = kept.iter().filter_map(|r| r.slug).collect();
        kept_slugs.extend(
            a.releases
                .iter()
                .filter(|r| protected.contains(&r.version))
                .filter_map(|r| r.slug),
        );
        let gone: Vec<_> = old
            .iter()
            .filter(|r| !protected.contains(&r.version))
            .collect();
        let gone_ids: BTreeSet<Uuid> = gone.iter().map(|r| r.id).collect();
        let slugs: BTreeSet<Uuid> = gone
            .iter()
            .filter_map(|r| r.slug)
            .filter(|s| !kept_slugs.contains(s))
            .collect();
        let oldest_kept = kept.first().map(|r| r.created_at);
        let builds: Vec<Uuid> = state
            .app_builds(a.id)
            .into_iter()
            .filter(|b| b.status != BuildStatus::Pending)
            .filter(|b| {
                b.release.is_some_and(|r| gone_ids.contains(&r))
                    || b.slug.is_some_and(|s| slugs.contains(&s))
                    || (b.release.is_none()
                        && b.slug.is_none()
                        && oldest_kept.is_some_and(|t| b.created_at < t))
            })
            .map(|b| b.id)
            .collect();
        out.push(Command::CompactReleases {
            app: a.id,
            below,
            slugs: slugs.into_iter().collect(),
            builds,
        });
    }
    Ok(out)
}
