//! Builds and what they use and make: starting and ending builds, an app's buildpacks,
//! and which nodes hold a slug.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::apps::{app_mut, not_found_app};
use super::formation::set_formation_types;
use super::releases::push_release_with;
use super::{Actor, CommandError, CommandOutput, CommandResult};
use crate::model::{
    validate_buildpack, validate_process_type, Build, BuildStatus, NodeId, NodeStatus,
    ReleaseStatus, Slug, State, BUILD_STALE_SECS, LOST_BUILD,
};

/// How a build ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum BuildResult {
    Succeeded {
        slug: Slug,
        release_id: Uuid,
        /// "Deploy 1a2b3c4".
        description: String,
    },
    Failed {
        reason: String,
    },
}

/// Records a new pending build; refused while a build of the app that is not stale runs.
pub(super) fn start(state: &mut State, build: &Build) -> CommandResult {
    let app = state
        .apps
        .get(&build.app)
        .ok_or_else(|| not_found_app(&build.app))?;
    if state.builds.contains_key(&build.id) {
        return Err(CommandError::Conflict(format!("build {} exists", build.id)));
    }
    let mut stale = Vec::new();
    for other in state
        .builds
        .values()
        .filter(|b| b.app == build.app && b.status == BuildStatus::Pending)
    {
        let node_down = state
            .nodes
            .get(&other.node)
            .is_none_or(|n| n.status == NodeStatus::Down);
        let age = build.created_at - other.created_at;
        if node_down || age.num_seconds() > BUILD_STALE_SECS {
            stale.push(other.id);
        } else {
            let node = state
                .nodes
                .get(&other.node)
                .map_or_else(|| other.node.to_string(), |n| n.name.clone());
            return Err(CommandError::Conflict(format!(
                "a build of {} is already running on {node} (build {}, started {}s ago); wait for it to finish and push again",
                app.name,
                other.id,
                age.num_seconds().max(0)
            )));
        }
    }
    for id in stale {
        if let Some(b) = state.builds.get_mut(&id) {
            b.status = BuildStatus::Failed;
            b.failure = Some(format!(
                "{LOST_BUILD}: its node went down or stopped answering"
            ));
            b.updated_at = build.created_at;
        }
    }
    let mut b = build.clone();
    b.status = BuildStatus::Pending;
    state.builds.insert(b.id, b.clone());
    Ok(CommandOutput::Build(Box::new(b)))
}

/// Ends a pending build; success records the slug, makes the next release and sets the
/// formation's process types.
pub(super) fn finish(
    state: &mut State,
    id: Uuid,
    result: &BuildResult,
    at: DateTime<Utc>,
) -> CommandResult {
    let build = state
        .builds
        .get(&id)
        .ok_or_else(|| CommandError::NotFound(format!("build {id} not found")))?;
    if build.status != BuildStatus::Pending {
        return Err(CommandError::Conflict(format!(
            "build {id} has already {}",
            build.status.as_str()
        )));
    }
    let app_id = build.app;
    match result {
        BuildResult::Failed { reason } => {
            let b = state
                .builds
                .get_mut(&id)
                .ok_or_else(|| not_found_app(&app_id))?;
            b.status = BuildStatus::Failed;
            b.failure = Some(reason.clone());
            b.updated_at = at;
            Ok(CommandOutput::Build(Box::new(b.clone())))
        }
        BuildResult::Succeeded {
            slug,
            release_id,
            description,
        } => {
            for t in slug.process_types.keys() {
                validate_process_type(t).map_err(CommandError::Invalid)?;
            }
            if state.slugs.contains_key(&slug.id) {
                return Err(CommandError::Conflict(format!("slug {} exists", slug.id)));
            }
            let actor = Actor {
                email: build.user_email.clone(),
                at,
            };
            let a = app_mut(state, &app_id)?;
            let config = a.config.clone();
            // A slug with a `release` process type runs its release phase first: the
            // release stays pending (and the dynos on the previous one) until it passes.
            let status = if slug.process_types.contains_key("release") {
                ReleaseStatus::Pending
            } else {
                ReleaseStatus::Succeeded
            };
            let version = push_release_with(
                a,
                *release_id,
                Some(slug.id),
                config,
                description.clone(),
                &actor,
                status,
            );
            set_formation_types(a, &slug.process_types, *release_id, at);
            let summary = a.summary();
            let mut slug = slug.clone();
            slug.app = app_id;
            state.slugs.insert(slug.id, slug.clone());
            if let Some(b) = state.builds.get_mut(&id) {
                b.status = BuildStatus::Succeeded;
                b.slug = Some(slug.id);
                b.release = Some(*release_id);
                b.updated_at = at;
            }
            Ok(CommandOutput::Release {
                app: Box::new(summary),
                version,
            })
        }
    }
}

/// Sets an app's buildpacks (empty: detect).
pub(super) fn set_buildpacks(
    state: &mut State,
    app: Uuid,
    buildpacks: &[String],
    actor: &Actor,
) -> CommandResult {
    for bp in buildpacks {
        validate_buildpack(bp).map_err(CommandError::Invalid)?;
    }
    let a = app_mut(state, &app)?;
    a.buildpacks = buildpacks.to_vec();
    a.updated_at = actor.at;
    Ok(CommandOutput::App(Box::new(a.summary())))
}

/// Records that nodes now hold a slug's bytes.
pub(super) fn add_slug_holders(state: &mut State, slug: Uuid, nodes: &[NodeId]) -> CommandResult {
    let s = state
        .slugs
        .get_mut(&slug)
        .ok_or_else(|| CommandError::NotFound(format!("slug {slug} not found")))?;
    s.holders.extend(nodes.iter().copied());
    Ok(CommandOutput::Done)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{DateTime, Utc};
    use uuid::Uuid;

    use crate::command::{
        Actor, BuildResult, Command, CommandError, CommandOutput, FormationChange, QuantityChange,
    };
    use crate::model::{
        Build, BuildStatus, Node, NodeId, NodeStatus, Slug, State, BUILD_STALE_SECS,
    };

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn state_with_app() -> (State, Uuid) {
        let mut s = State::default();
        for (id, status) in [(1, NodeStatus::Up), (2, NodeStatus::Down)] {
            s.nodes.insert(
                id,
                Node {
                    id,
                    name: format!("node-{id}"),
                    peer_addr: String::new(),
                    api_url: String::new(),
                    router_url: String::new(),
                    memory_mb: 1024,
                    cpus: 1,
                    labels: BTreeMap::new(),
                    status,
                    draining: false,
                    joined_at: at(0),
                },
            );
        }
        let id = Uuid::new_v4();
        let owner = crate::command::fixtures::user(1, "a@b", true);
        s.users.insert(owner.id, owner.clone());
        Command::CreateApp {
            id,
            name: "my-app".into(),
            stack: "haven-1".into(),
            release_id: Uuid::new_v4(),
            actor: Actor {
                email: "a@b".into(),
                at: at(0),
            },
            owner: owner.id,
        }
        .apply(&mut s)
        .unwrap();
        (s, id)
    }

    fn build(app: Uuid, node: NodeId, secs: i64) -> Build {
        Build {
            id: Uuid::new_v4(),
            app,
            status: BuildStatus::Pending,
            node,
            source_url: "http://n/sources/x".into(),
            source_checksum: None,
            source_version: Some("1a2b3c4d5e".into()),
            buildpacks: vec![],
            stack: "haven-1".into(),
            user_email: "a@b".into(),
            user_id: Uuid::nil(),
            output_stream_url: String::new(),
            slug: None,
            release: None,
            failure: None,
            created_at: at(secs),
            updated_at: at(secs),
        }
    }

    fn slug(types: &[(&str, &str)]) -> Slug {
        Slug {
            id: Uuid::new_v4(),
            app: Uuid::nil(),
            sha256: "ab".repeat(32),
            size: 10,
            process_types: types
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            holders: [1].into(),
            commit: None,
            stack: "haven-1".into(),
            buildpack_provided_description: Some("Python".into()),
            created_at: at(5),
        }
    }

    #[test]
    fn a_second_build_of_an_app_is_refused_while_one_runs() {
        let (mut s, app) = state_with_app();
        let first = build(app, 1, 10);
        Command::StartBuild {
            build: first.clone(),
        }
        .apply(&mut s)
        .unwrap();
        let before = s.clone();
        let second = Command::StartBuild {
            build: build(app, 1, 20),
        }
        .apply(&mut s);
        match second {
            Err(CommandError::Conflict(m)) => {
                assert!(m.contains("already running on node-1"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s, before);
        // Once the first ends, the next may start.
        Command::FinishBuild {
            build: first.id,
            result: BuildResult::Failed {
                reason: "compile failed".into(),
            },
            at: at(30),
        }
        .apply(&mut s)
        .unwrap();
        Command::StartBuild {
            build: build(app, 1, 40),
        }
        .apply(&mut s)
        .unwrap();
        assert_eq!(
            s.apps[&app].releases.len(),
            1,
            "a failed build makes no release"
        );
    }

    #[test]
    fn a_stale_or_orphaned_build_does_not_block() {
        let (mut s, app) = state_with_app();
        let on_down_node = build(app, 2, 10);
        Command::StartBuild {
            build: on_down_node.clone(),
        }
        .apply(&mut s)
        .unwrap();
        Command::StartBuild {
            build: build(app, 1, 11),
        }
        .apply(&mut s)
        .unwrap();
        assert_eq!(s.builds[&on_down_node.id].status, BuildStatus::Failed);
        let (mut s, app) = state_with_app();
        let old = build(app, 1, 0);
        Command::StartBuild { build: old.clone() }
            .apply(&mut s)
            .unwrap();
        Command::StartBuild {
            build: build(app, 1, BUILD_STALE_SECS + 1),
        }
        .apply(&mut s)
        .unwrap();
        assert_eq!(s.builds[&old.id].status, BuildStatus::Failed);
    }

    #[test]
    fn a_successful_build_releases_with_current_config_and_sets_formation() {
        let (mut s, app) = state_with_app();
        Command::SetConfig {
            app,
            changes: [("FOO".to_string(), Some("1".to_string()))].into(),
            release_id: Uuid::new_v4(),
            actor: Actor {
                email: "a@b".into(),
                at: at(1),
            },
        }
        .apply(&mut s)
        .unwrap();
        let b = build(app, 1, 10);
        Command::StartBuild { build: b.clone() }
            .apply(&mut s)
            .unwrap();
        let sl = slug(&[
            ("web", "python app.py"),
            ("worker", "python w.py"),
            ("release", "migrate"),
        ]);
        let rid = Uuid::new_v4();
        let out = Command::FinishBuild {
            build: b.id,
            result: BuildResult::Succeeded {
                slug: sl.clone(),
                release_id: rid,
                description: "Deploy 1a2b3c4".into(),
            },
            at: at(20),
        }
        .apply(&mut s)
        .unwrap();
        assert!(matches!(out, CommandOutput::Release { version: 3, .. }));
        let a = &s.apps[&app];
        let r = a.releases.last().unwrap();
        assert_eq!(
            (r.slug, r.description.as_str()),
            (Some(sl.id), "Deploy 1a2b3c4")
        );
        assert_eq!(r.config["FOO"], "1");
        assert_eq!(a.formation["web"].quantity, 1);
        assert_eq!(a.formation["web"].command, "python app.py");
        assert_eq!(a.formation["worker"].quantity, 0);
        assert!(!a.formation.contains_key("release"));
        assert_eq!(s.slugs[&sl.id].app, app);
        assert_eq!(s.builds[&b.id].status, BuildStatus::Succeeded);
        assert_eq!(s.builds[&b.id].release, Some(rid));
        // A finished build cannot finish again.
        let again = Command::FinishBuild {
            build: b.id,
            result: BuildResult::Failed { reason: "x".into() },
            at: at(21),
        }
        .apply(&mut s);
        assert!(matches!(again, Err(CommandError::Conflict(_))));
        // Config changes keep the slug; a deploy without `worker` drops it from the formation.
        Command::UpdateFormation {
            app,
            changes: vec![FormationChange {
                process_type: "web".into(),
                quantity: Some(QuantityChange::Set(3)),
                size: None,
                new_id: Uuid::new_v4(),
            }],
            actor: Actor {
                email: "a@b".into(),
                at: at(22),
            },
        }
        .apply(&mut s)
        .unwrap();
        let b2 = build(app, 1, 30);
        Command::StartBuild { build: b2.clone() }
            .apply(&mut s)
            .unwrap();
        Command::FinishBuild {
            build: b2.id,
            result: BuildResult::Succeeded {
                slug: slug(&[("web", "gunicorn app")]),
                release_id: Uuid::new_v4(),
                description: "Deploy 2b3c4d5".into(),
            },
            at: at(40),
        }
        .apply(&mut s)
        .unwrap();
        let a = &s.apps[&app];
        assert_eq!(
            a.formation["web"].quantity, 3,
            "quantity kept across deploys"
        );
        assert_eq!(a.formation["web"].command, "gunicorn app");
        assert!(!a.formation.contains_key("worker"));
    }

    #[test]
    fn buildpacks_are_validated() {
        let (mut s, app) = state_with_app();
        let set = |bps: &[&str]| Command::SetBuildpacks {
            app,
            buildpacks: bps.iter().map(|b| b.to_string()).collect(),
            actor: Actor {
                email: "a@b".into(),
                at: at(1),
            },
        };
        set(&["heroku/python", "https://github.com/x/y.git#v1", "/opt/bp"])
            .apply(&mut s)
            .unwrap();
        assert_eq!(s.apps[&app].buildpacks.len(), 3);
        let before = s.clone();
        assert!(set(&["has space"]).apply(&mut s).is_err());
        assert!(set(&["$(rm -rf)"]).apply(&mut s).is_err());
        assert_eq!(s, before);
    }
}
