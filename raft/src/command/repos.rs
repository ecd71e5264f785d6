//! Connecting an app to a repository, and the automatic build of a new commit: the
//! commit is taken and the build recorded in one command, so a commit is built once
//! however many pollers (an old and a new leader, a webhook and a poll) saw it. A commit
//! whose build was lost with its node (pending on a down node, or failed as lost) may be
//! taken again.

use uuid::Uuid;

use super::apps::not_found_app;
use super::{CommandError, CommandOutput, CommandResult};
use crate::model::{
    validate_branch, validate_commit, validate_repo_url, Build, BuildStatus, NodeStatus, RepoLink,
    State, LOST_BUILD,
};

/// Connects (or reconnects) an app; a new URL or branch starts from its next commit.
pub(super) fn connect(state: &mut State, link: &RepoLink) -> CommandResult {
    if !state.apps.contains_key(&link.app) {
        return Err(not_found_app(&link.app));
    }
    validate_repo_url(&link.url).map_err(CommandError::Invalid)?;
    validate_branch(&link.branch).map_err(CommandError::Invalid)?;
    let mut link = link.clone();
    if let Some(old) = state.repos.get(&link.app) {
        if old.url == link.url && old.branch == link.branch {
            link.last_commit = old.last_commit.clone();
            link.last_build = old.last_build;
        }
    }
    state.repos.insert(link.app, link);
    Ok(CommandOutput::Done)
}

pub(super) fn disconnect(state: &mut State, app: Uuid) -> CommandResult {
    if !state.apps.contains_key(&app) {
        return Err(not_found_app(&app));
    }
    state
        .repos
        .remove(&app)
        .map(|_| CommandOutput::Done)
        .ok_or_else(|| CommandError::NotFound("the app is not connected to a repository".into()))
}

/// Takes `commit` of the app's connected branch for `build`: refused (409) when that
/// commit was taken already or the app is no longer connected; else the build is
/// recorded as `StartBuild` would.
pub(super) fn start_build(state: &mut State, build: &Build, commit: &str) -> CommandResult {
    validate_commit(commit).map_err(CommandError::Invalid)?;
    let link = state.repos.get(&build.app).ok_or_else(|| {
        CommandError::Conflict("the app is no longer connected to a repository".into())
    })?;
    if link.last_commit.as_deref() == Some(commit) && !lost(state, link.last_build) {
        return Err(CommandError::Conflict(format!(
            "commit {commit} was taken for a build already"
        )));
    }
    let out = super::builds::start(state, build)?;
    if let Some(link) = state.repos.get_mut(&build.app) {
        link.last_commit = Some(commit.to_string());
        link.last_build = Some(build.id);
    }
    Ok(out)
}

/// Whether build `id` was lost with its node: still pending on a node marked down, or
/// failed as lost.
pub fn lost(state: &State, id: Option<Uuid>) -> bool {
    let Some(b) = id.and_then(|id| state.builds.get(&id)) else {
        return false;
    };
    match b.status {
        BuildStatus::Pending => state
            .nodes
            .get(&b.node)
            .is_none_or(|n| n.status == NodeStatus::Down),
        BuildStatus::Failed => b
            .failure
            .as_deref()
            .is_some_and(|f| f.starts_with(LOST_BUILD)),
        BuildStatus::Succeeded => false,
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;

    use crate::command::fixtures::{create, ADMIN};
    use crate::command::{Command, CommandError};
    use crate::model::{Build, BuildStatus, RepoLink, State};

    fn link(app: Uuid) -> RepoLink {
        RepoLink {
            app,
            url: "file:///srv/git/app.git".into(),
            branch: "main".into(),
            webhook_secret: "s".into(),
            user_id: ADMIN,
            user_email: "a@example.com".into(),
            connected_at: Utc::now(),
            last_commit: None,
            last_build: None,
        }
    }

    fn build(app: Uuid) -> Build {
        let now = Utc::now();
        Build {
            id: Uuid::new_v4(),
            app,
            status: BuildStatus::Pending,
            node: 1,
            source_url: "file:///srv/git/app.git".into(),
            source_checksum: None,
            source_version: Some("a".repeat(40)),
            buildpacks: vec![],
            stack: "heroku-24".into(),
            user_email: "a@example.com".into(),
            user_id: ADMIN,
            output_stream_url: String::new(),
            slug: None,
            release: None,
            failure: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn a_commit_is_taken_for_one_build_only() {
        let mut s = State::default();
        let app = create(&mut s, "web-app");
        let commit = "a".repeat(40);
        let start = |s: &mut State| {
            Command::StartRepoBuild {
                build: build(app),
                commit: commit.clone(),
            }
            .apply(s)
        };
        assert!(matches!(start(&mut s), Err(CommandError::Conflict(_))));
        Command::ConnectRepo { link: link(app) }
            .apply(&mut s)
            .unwrap();
        start(&mut s).unwrap();
        for b in s.builds.values_mut() {
            b.status = BuildStatus::Succeeded;
        }
        let again = start(&mut s).unwrap_err();
        assert!(again.to_string().contains("taken"), "{again}");
        assert_eq!(s.builds.len(), 1);
        // A build lost with its node gives the commit back.
        for b in s.builds.values_mut() {
            b.status = BuildStatus::Failed;
            b.failure = Some(format!("{}: its node went down", crate::model::LOST_BUILD));
        }
        start(&mut s).unwrap();
        assert_eq!(s.builds.len(), 2);
        for b in s.builds.values_mut() {
            b.status = BuildStatus::Succeeded;
        }
        // Reconnecting the same branch keeps what was taken; another branch does not.
        Command::ConnectRepo { link: link(app) }
            .apply(&mut s)
            .unwrap();
        assert!(start(&mut s).is_err());
        let mut other = link(app);
        other.branch = "next".into();
        Command::ConnectRepo { link: other }.apply(&mut s).unwrap();
        assert_eq!(s.repos[&app].last_commit, None);
        Command::DisconnectRepo { app }.apply(&mut s).unwrap();
        assert!(Command::DisconnectRepo { app }.apply(&mut s).is_err());
    }

    #[test]
    fn bad_links_are_refused() {
        let mut s = State::default();
        let app = create(&mut s, "web-app");
        let mut l = link(app);
        l.url = "ext::sh".into();
        assert!(matches!(
            Command::ConnectRepo { link: l }.apply(&mut s),
            Err(CommandError::Invalid(_))
        ));
        let mut l = link(app);
        l.branch = "a..b".into();
        assert!(Command::ConnectRepo { link: l }.apply(&mut s).is_err());
        assert!(s.repos.is_empty());
    }
}
