//! Commands: the only way the replicated [`State`] changes.
//!
//! A command carries every id and timestamp it needs; the proposer picks them, so applying
//! a command is a pure function of the state and the command, the same on every replica.
//! A command that breaks a rule (a taken name, an unknown app) is rejected during apply
//! with a [`CommandError`] and changes nothing.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{
    normalize_size, validate_app_name, validate_buildpack, validate_config_key,
    validate_process_type, App, Build, BuildStatus, Cluster, Dyno, DynoState, Formation, Node,
    NodeId, NodeStatus, Release, ReleaseStatus, Slug, State, Token, Unplaced, User,
    BUILD_STALE_SECS, DEFAULT_SIZE, MAX_QUANTITY,
};

/// Who asked for a change and when; recorded in releases.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Actor {
    pub email: String,
    pub at: DateTime<Utc>,
}

/// A change of quantity in a formation update.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum QuantityChange {
    Set(u32),
    /// `+1`, `-2`: relative to the current quantity (0 for a new type).
    Add(i64),
}

impl QuantityChange {
    /// Parses `3`, `"3"`, `"+1"`, `"-1"`.
    pub fn parse(text: &str) -> Result<QuantityChange, String> {
        let t = text.trim();
        let bad = || format!("quantity {text:?} is invalid: use a number such as 2, or +1 / -1");
        if let Some(rest) = t.strip_prefix('+') {
            rest.parse::<i64>()
                .map(QuantityChange::Add)
                .map_err(|_| bad())
        } else if t.starts_with('-') {
            t.parse::<i64>().map(QuantityChange::Add).map_err(|_| bad())
        } else {
            t.parse::<u32>().map(QuantityChange::Set).map_err(|_| bad())
        }
    }
}

/// One process type's change in a [`Command::UpdateFormation`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FormationChange {
    pub process_type: String,
    pub quantity: Option<QuantityChange>,
    pub size: Option<String>,
    /// Id for the formation if this change creates it.
    pub new_id: Uuid,
}

/// A change to the replicated state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Command {
    /// The first command of a cluster: who it is, its first node and its admin.
    Bootstrap {
        cluster: Cluster,
        node: Node,
        admin: User,
        admin_token: Token,
    },
    /// Adds a node or updates its addresses (a joining or restarted node).
    RegisterNode {
        node: Node,
    },
    /// Records a node's liveness.
    SetNodeStatus {
        node_id: NodeId,
        status: NodeStatus,
    },
    /// Removes a node from the model.
    RemoveNode {
        node_id: NodeId,
    },
    /// Creates an app and its release v1.
    CreateApp {
        id: Uuid,
        name: String,
        stack: String,
        release_id: Uuid,
        actor: Actor,
    },
    /// Renames an app and/or turns maintenance mode on or off.
    UpdateApp {
        app: Uuid,
        name: Option<String>,
        maintenance: Option<bool>,
        actor: Actor,
    },
    DeleteApp {
        app: Uuid,
    },
    /// Sets (`Some`) and unsets (`None`) config vars; makes the next release.
    SetConfig {
        app: Uuid,
        changes: BTreeMap<String, Option<String>>,
        release_id: Uuid,
        actor: Actor,
    },
    /// Makes the next release with the slug and config vars of an earlier one.
    Rollback {
        app: Uuid,
        to_version: u64,
        release_id: Uuid,
        actor: Actor,
    },
    /// Sets quantities and sizes of process types.
    UpdateFormation {
        app: Uuid,
        changes: Vec<FormationChange>,
        actor: Actor,
    },
    /// Adds an API token.
    AddToken {
        token: Token,
    },
    /// Records a new pending build. Refused while another build of the app is pending
    /// (unless that one is stale: its node is down or it is older than
    /// [`BUILD_STALE_SECS`]; a stale one is marked failed).
    StartBuild {
        build: Build,
    },
    /// Ends a pending build. Success records the slug and makes the next release with the
    /// app's config vars at that moment, and sets the formation's process types.
    FinishBuild {
        build: Uuid,
        result: BuildResult,
        at: DateTime<Utc>,
    },
    /// Sets an app's buildpacks (empty: detect).
    SetBuildpacks {
        app: Uuid,
        buildpacks: Vec<String>,
        actor: Actor,
    },
    /// Adds a custom domain to an app (unique across the cluster).
    AddDomain {
        app: Uuid,
        domain: crate::model::Domain,
        at: DateTime<Utc>,
    },
    /// Removes a custom domain (by hostname or id).
    RemoveDomain {
        app: Uuid,
        key: String,
        at: DateTime<Utc>,
    },
    /// Adds a log drain to an app (a URL once per app).
    AddDrain {
        app: Uuid,
        drain: crate::model::Drain,
    },
    /// Removes a log drain (by id, URL or token).
    RemoveDrain {
        app: Uuid,
        key: String,
    },
    /// Records that nodes now hold a slug's bytes.
    AddSlugHolders {
        slug: Uuid,
        nodes: Vec<NodeId>,
    },
    /// The leader's scheduling decisions: dynos to start (placed), dynos to stop, and what
    /// could not be placed (replaces the previous list).
    ApplyPlan {
        starts: Vec<Dyno>,
        stops: Vec<Uuid>,
        unplaced: Vec<Unplaced>,
    },
    /// A node reports its dynos: new states, and dynos it has stopped for good (removed).
    ReportDynos {
        node: NodeId,
        reports: Vec<DynoReport>,
        gone: Vec<Uuid>,
        at: DateTime<Utc>,
    },
    /// `ps:restart`: restart an app's dynos in place (all, one type, or one dyno by name).
    RestartDynos {
        app: Uuid,
        target: DynoTarget,
    },
    /// `ps:stop`: stop dynos (formation dynos are then started again by the scheduler).
    StopDynos {
        app: Uuid,
        target: DynoTarget,
    },
    /// Records a one-off dyno placed on a node.
    CreateOneOff {
        dyno: Dyno,
    },
    /// `nodes:drain` / `nodes:undrain`.
    SetNodeDraining {
        node_id: NodeId,
        draining: bool,
    },
    /// The release phase of a pending release ended.
    SetReleaseStatus {
        app: Uuid,
        version: u64,
        status: ReleaseStatus,
    },
}

/// Which dynos a restart or stop means.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum DynoTarget {
    All,
    Type(String),
    /// A dyno name (`web.1`) or id.
    Dyno(String),
}

/// One dyno's state as its node reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DynoReport {
    pub id: Uuid,
    pub state: DynoState,
    pub restarts: u32,
    pub port: Option<u16>,
    pub exit_code: Option<i32>,
}

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

/// Why a command was rejected. The variants map onto HTTP statuses at the API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// 404
    #[error("{0}")]
    NotFound(String),
    /// 409
    #[error("{0}")]
    Conflict(String),
    /// 422
    #[error("{0}")]
    Invalid(String),
}

/// What a successful command produced, so that a client answered by a follower gets the
/// result without a second read. Apps in outputs are [`App::summary`]s: their size does not
/// grow with the release history.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum CommandOutput {
    #[default]
    Done,
    App(Box<App>),
    Release {
        app: Box<App>,
        version: u64,
    },
    Formation {
        app: Box<App>,
        types: Vec<String>,
    },
    Build(Box<Build>),
    Dynos(Vec<Dyno>),
    Domain {
        app: Box<App>,
        domain: crate::model::Domain,
    },
    Drain {
        app: Box<App>,
        drain: crate::model::Drain,
    },
}

/// The result of applying a command, as stored in the state machine's responses.
pub type CommandResult = Result<CommandOutput, CommandError>;

fn not_found_app(id: &Uuid) -> CommandError {
    CommandError::NotFound(format!("app {id} not found"))
}

fn app_mut<'a>(state: &'a mut State, id: &Uuid) -> Result<&'a mut App, CommandError> {
    state.apps.get_mut(id).ok_or_else(|| not_found_app(id))
}

fn push_release(
    app: &mut App,
    id: Uuid,
    slug: Option<Uuid>,
    config: BTreeMap<String, String>,
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

fn push_release_with(
    app: &mut App,
    id: Uuid,
    slug: Option<Uuid>,
    config: BTreeMap<String, String>,
    description: String,
    actor: &Actor,
    status: ReleaseStatus,
) -> u64 {
    let version = app.releases.len() as u64 + 1;
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

/// Heroku-style description of a config change.
pub fn config_description(changes: &BTreeMap<String, Option<String>>) -> String {
    let set: Vec<&str> = changes
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k.as_str())
        .collect();
    let unset: Vec<&str> = changes
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k.as_str())
        .collect();
    match (set.is_empty(), unset.is_empty()) {
        (false, true) => format!("Set {} config vars", set.join(", ")),
        (true, false) => format!("Remove {} config vars", unset.join(", ")),
        _ => format!(
            "Set {} and remove {} config vars",
            set.join(", "),
            unset.join(", ")
        ),
    }
}

impl Command {
    /// Applies the command to `state`. Deterministic; on error nothing changed.
    pub fn apply(&self, state: &mut State) -> CommandResult {
        match self {
            Command::Bootstrap {
                cluster,
                node,
                admin,
                admin_token,
            } => {
                if state.cluster.is_some() {
                    return Err(CommandError::Conflict(
                        "cluster is already bootstrapped".into(),
                    ));
                }
                state.cluster = Some(cluster.clone());
                state.nodes.insert(node.id, node.clone());
                state.users.insert(admin.id, admin.clone());
                state
                    .tokens
                    .insert(admin_token.sha256.clone(), admin_token.clone());
                Ok(CommandOutput::Done)
            }
            Command::RegisterNode { node } => {
                if let Some(other) = state
                    .nodes
                    .values()
                    .find(|n| n.name == node.name && n.id != node.id)
                {
                    return Err(CommandError::Conflict(format!(
                        "node name {:?} is taken by node {}",
                        node.name, other.id
                    )));
                }
                let mut node = node.clone();
                if let Some(old) = state.nodes.get(&node.id) {
                    // Liveness belongs to the leader and draining to operators: a node
                    // updating its addresses keeps both.
                    node.joined_at = old.joined_at;
                    node.status = old.status;
                    node.draining = old.draining;
                }
                state.nodes.insert(node.id, node);
                Ok(CommandOutput::Done)
            }
            Command::SetNodeStatus { node_id, status } => {
                let node = state
                    .nodes
                    .get_mut(node_id)
                    .ok_or_else(|| CommandError::NotFound(format!("node {node_id} not found")))?;
                node.status = *status;
                Ok(CommandOutput::Done)
            }
            Command::RemoveNode { node_id } => {
                state
                    .nodes
                    .remove(node_id)
                    .ok_or_else(|| CommandError::NotFound(format!("node {node_id} not found")))?;
                Ok(CommandOutput::Done)
            }
            Command::CreateApp {
                id,
                name,
                stack,
                release_id,
                actor,
            } => {
                validate_app_name(name).map_err(CommandError::Invalid)?;
                if state.apps.values().any(|a| &a.name == name) {
                    return Err(CommandError::Conflict(format!(
                        "name {name} is already taken"
                    )));
                }
                if state.apps.contains_key(id) {
                    return Err(CommandError::Conflict(format!("app id {id} exists")));
                }
                let mut app = App {
                    id: *id,
                    name: name.clone(),
                    stack: stack.clone(),
                    buildpacks: Vec::new(),
                    maintenance: false,
                    domains: Vec::new(),
                    drains: Vec::new(),
                    created_at: actor.at,
                    updated_at: actor.at,
                    released_at: None,
                    config: BTreeMap::new(),
                    releases: Vec::new(),
                    formation: BTreeMap::new(),
                };
                push_release(
                    &mut app,
                    *release_id,
                    None,
                    BTreeMap::new(),
                    "Initial release".into(),
                    actor,
                );
                state.apps.insert(*id, app.clone());
                Ok(CommandOutput::App(Box::new(app.summary())))
            }
            Command::UpdateApp {
                app,
                name,
                maintenance,
                actor,
            } => {
                if let Some(name) = name {
                    validate_app_name(name).map_err(CommandError::Invalid)?;
                    if state.apps.values().any(|a| &a.name == name && a.id != *app) {
                        return Err(CommandError::Conflict(format!(
                            "name {name} is already taken"
                        )));
                    }
                }
                let a = app_mut(state, app)?;
                if let Some(name) = name {
                    a.name = name.clone();
                }
                if let Some(m) = maintenance {
                    a.maintenance = *m;
                }
                a.updated_at = actor.at;
                Ok(CommandOutput::App(Box::new(a.summary())))
            }
            Command::DeleteApp { app } => {
                let removed = state.apps.remove(app).ok_or_else(|| not_found_app(app))?;
                state.builds.retain(|_, b| b.app != *app);
                state.slugs.retain(|_, s| s.app != *app);
                state.dynos.retain(|_, d| d.app != *app);
                state.unplaced.retain(|u| u.app != *app);
                Ok(CommandOutput::App(Box::new(removed.summary())))
            }
            Command::SetConfig {
                app,
                changes,
                release_id,
                actor,
            } => {
                for key in changes.keys() {
                    validate_config_key(key).map_err(CommandError::Invalid)?;
                }
                if changes.is_empty() {
                    return Err(CommandError::Invalid("no config vars to change".into()));
                }
                let a = app_mut(state, app)?;
                let mut config = a.config.clone();
                for (k, v) in changes {
                    match v {
                        Some(v) => {
                            config.insert(k.clone(), v.clone());
                        }
                        None => {
                            config.remove(k);
                        }
                    }
                }
                let slug = a.current_release().and_then(|r| r.slug);
                a.config = config.clone();
                let version = push_release(
                    a,
                    *release_id,
                    slug,
                    config,
                    config_description(changes),
                    actor,
                );
                Ok(CommandOutput::Release {
                    app: Box::new(a.summary()),
                    version,
                })
            }
            Command::Rollback {
                app,
                to_version,
                release_id,
                actor,
            } => {
                let a = app_mut(state, app)?;
                let target = a
                    .releases
                    .iter()
                    .find(|r| r.version == *to_version)
                    .ok_or_else(|| {
                        CommandError::NotFound(format!("release v{to_version} not found"))
                    })?
                    .clone();
                if target.status != ReleaseStatus::Succeeded {
                    return Err(CommandError::Invalid(format!(
                        "release v{to_version} is {} and cannot be rolled back to",
                        target.status.as_str()
                    )));
                }
                a.config = target.config.clone();
                let version = push_release(
                    a,
                    *release_id,
                    target.slug,
                    target.config,
                    format!("Rollback to v{to_version}"),
                    actor,
                );
                Ok(CommandOutput::Release {
                    app: Box::new(a.summary()),
                    version,
                })
            }
            Command::UpdateFormation {
                app,
                changes,
                actor,
            } => {
                let a = app_mut(state, app)?;
                let mut formation = a.formation.clone();
                let mut types = Vec::new();
                for change in changes {
                    validate_process_type(&change.process_type).map_err(CommandError::Invalid)?;
                    let entry = formation
                        .entry(change.process_type.clone())
                        .or_insert_with(|| Formation {
                            id: change.new_id,
                            process_type: change.process_type.clone(),
                            quantity: 0,
                            size: DEFAULT_SIZE.into(),
                            command: String::new(),
                            created_at: actor.at,
                            updated_at: actor.at,
                        });
                    if let Some(q) = change.quantity {
                        let new = match q {
                            QuantityChange::Set(n) => i64::from(n),
                            QuantityChange::Add(d) => i64::from(entry.quantity).saturating_add(d),
                        };
                        if !(0..=i64::from(MAX_QUANTITY)).contains(&new) {
                            return Err(CommandError::Invalid(format!(
                                "quantity of {} would be {new}: it must be between 0 and {MAX_QUANTITY}",
                                change.process_type
                            )));
                        }
                        entry.quantity = new as u32;
                    }
                    if let Some(size) = &change.size {
                        entry.size = normalize_size(size).map_err(CommandError::Invalid)?;
                    }
                    entry.updated_at = actor.at;
                    types.push(change.process_type.clone());
                }
                a.formation = formation;
                a.updated_at = actor.at;
                Ok(CommandOutput::Formation {
                    app: Box::new(a.summary()),
                    types,
                })
            }
            Command::AddToken { token } => {
                if state.tokens.contains_key(&token.sha256) {
                    return Err(CommandError::Conflict("token exists".into()));
                }
                state.tokens.insert(token.sha256.clone(), token.clone());
                Ok(CommandOutput::Done)
            }
            Command::StartBuild { build } => start_build(state, build),
            Command::FinishBuild { build, result, at } => finish_build(state, *build, result, *at),
            Command::SetBuildpacks {
                app,
                buildpacks,
                actor,
            } => {
                for bp in buildpacks {
                    validate_buildpack(bp).map_err(CommandError::Invalid)?;
                }
                let a = app_mut(state, app)?;
                a.buildpacks = buildpacks.clone();
                a.updated_at = actor.at;
                Ok(CommandOutput::App(Box::new(a.summary())))
            }
            Command::ApplyPlan {
                starts,
                stops,
                unplaced,
            } => {
                for d in starts {
                    if state.dynos.contains_key(&d.id) {
                        return Err(CommandError::Conflict(format!("dyno {} exists", d.id)));
                    }
                    if !state.nodes.contains_key(&d.node) {
                        return Err(CommandError::NotFound(format!("node {} not found", d.node)));
                    }
                }
                for d in starts {
                    // An app deleted since the plan was made gets no dynos.
                    if state.apps.contains_key(&d.app) {
                        state.dynos.insert(d.id, d.clone());
                    }
                }
                for id in stops {
                    if let Some(d) = state.dynos.get_mut(id) {
                        d.run = false;
                    }
                }
                state.unplaced = unplaced
                    .iter()
                    .filter(|u| state.apps.contains_key(&u.app))
                    .cloned()
                    .collect();
                Ok(CommandOutput::Done)
            }
            Command::ReportDynos {
                node,
                reports,
                gone,
                at,
            } => {
                for r in reports {
                    if let Some(d) = state.dynos.get_mut(&r.id).filter(|d| d.node == *node) {
                        if d.state != r.state {
                            d.state_changed_at = *at;
                        }
                        d.state = r.state;
                        d.restarts = r.restarts;
                        d.port = r.port;
                        d.exit_code = r.exit_code;
                    }
                }
                for id in gone {
                    if state.dynos.get(id).is_some_and(|d| d.node == *node) {
                        state.dynos.remove(id);
                    }
                }
                Ok(CommandOutput::Done)
            }
            Command::RestartDynos { app, target } => update_dynos(state, *app, target, |d| {
                d.restart_seq = d.restart_seq.wrapping_add(1)
            }),
            Command::StopDynos { app, target } => {
                update_dynos(state, *app, target, |d| d.run = false)
            }
            Command::CreateOneOff { dyno } => {
                let a = state
                    .apps
                    .get(&dyno.app)
                    .ok_or_else(|| not_found_app(&dyno.app))?;
                if !a.releases.iter().any(|r| r.version == dyno.release) {
                    return Err(CommandError::NotFound(format!(
                        "release v{} not found",
                        dyno.release
                    )));
                }
                if !state.nodes.contains_key(&dyno.node) {
                    return Err(CommandError::NotFound(format!(
                        "node {} not found",
                        dyno.node
                    )));
                }
                if state.dynos.contains_key(&dyno.id) {
                    return Err(CommandError::Conflict(format!("dyno {} exists", dyno.id)));
                }
                let mut d = dyno.clone();
                // run.N numbers are unique among the app's live dynos.
                while state.dynos.values().any(|o| {
                    o.app == d.app && o.process_type == d.process_type && o.index == d.index
                }) {
                    d.index = if d.index >= 9999 { 1000 } else { d.index + 1 };
                }
                state.dynos.insert(d.id, d.clone());
                Ok(CommandOutput::Dynos(vec![d]))
            }
            Command::SetNodeDraining { node_id, draining } => {
                let node = state
                    .nodes
                    .get_mut(node_id)
                    .ok_or_else(|| CommandError::NotFound(format!("node {node_id} not found")))?;
                node.draining = *draining;
                Ok(CommandOutput::Done)
            }
            Command::SetReleaseStatus {
                app,
                version,
                status,
            } => {
                let a = app_mut(state, app)?;
                let r = a
                    .releases
                    .iter_mut()
                    .find(|r| r.version == *version)
                    .ok_or_else(|| {
                        CommandError::NotFound(format!("release v{version} not found"))
                    })?;
                if r.status != ReleaseStatus::Pending {
                    return Err(CommandError::Conflict(format!(
                        "release v{version} is already {}",
                        r.status.as_str()
                    )));
                }
                r.status = *status;
                Ok(CommandOutput::Done)
            }
            Command::AddDomain { app, domain, at } => {
                let host = crate::model::normalize_hostname(&domain.hostname)
                    .map_err(CommandError::Invalid)?;
                let default_domain = state.cluster.as_ref().map(|c| c.app_domain.clone());
                if let Some(d) = default_domain {
                    if host == d || host.ends_with(&format!(".{d}")) {
                        return Err(CommandError::Invalid(format!(
                            "{host} is under the cluster's app domain {d}; apps answer there already"
                        )));
                    }
                }
                if let Some(owner) = state
                    .apps
                    .values()
                    .find(|a| a.domains.iter().any(|d| d.hostname == host))
                {
                    return Err(CommandError::Conflict(format!(
                        "{host} is already used by app {}",
                        owner.name
                    )));
                }
                let a = app_mut(state, app)?;
                let d = crate::model::Domain {
                    id: domain.id,
                    hostname: host,
                    created_at: domain.created_at,
                };
                a.domains.push(d.clone());
                a.updated_at = *at;
                Ok(CommandOutput::Domain {
                    app: Box::new(a.summary()),
                    domain: d,
                })
            }
            Command::RemoveDomain { app, key, at } => {
                let a = app_mut(state, app)?;
                let want = key.trim().trim_end_matches('.').to_ascii_lowercase();
                let pos = a
                    .domains
                    .iter()
                    .position(|d| d.hostname == want || d.id.to_string() == want)
                    .ok_or_else(|| CommandError::NotFound(format!("domain {key} not found")))?;
                let d = a.domains.remove(pos);
                a.updated_at = *at;
                Ok(CommandOutput::Domain {
                    app: Box::new(a.summary()),
                    domain: d,
                })
            }
            Command::AddDrain { app, drain } => {
                crate::model::validate_drain_url(&drain.url).map_err(CommandError::Invalid)?;
                let a = app_mut(state, app)?;
                if a.drains.iter().any(|d| d.url == drain.url) {
                    return Err(CommandError::Conflict(format!(
                        "{} is already a drain of {}",
                        drain.url, a.name
                    )));
                }
                if a.drains.len() >= 5 {
                    return Err(CommandError::Invalid(
                        "an app has at most 5 log drains".into(),
                    ));
                }
                a.drains.push(drain.clone());
                Ok(CommandOutput::Drain {
                    app: Box::new(a.summary()),
                    drain: drain.clone(),
                })
            }
            Command::RemoveDrain { app, key } => {
                let a = app_mut(state, app)?;
                let pos = a
                    .drains
                    .iter()
                    .position(|d| d.id.to_string() == *key || d.url == *key || d.token == *key)
                    .ok_or_else(|| CommandError::NotFound(format!("drain {key} not found")))?;
                let d = a.drains.remove(pos);
                Ok(CommandOutput::Drain {
                    app: Box::new(a.summary()),
                    drain: d,
                })
            }
            Command::AddSlugHolders { slug, nodes } => {
                let s = state
                    .slugs
                    .get_mut(slug)
                    .ok_or_else(|| CommandError::NotFound(format!("slug {slug} not found")))?;
                s.holders.extend(nodes.iter().copied());
                Ok(CommandOutput::Done)
            }
        }
    }
}

/// Applies `f` to the dynos `target` names; answers them.
fn update_dynos(
    state: &mut State,
    app: Uuid,
    target: &DynoTarget,
    f: impl Fn(&mut Dyno),
) -> CommandResult {
    let ids = target_dynos(state, app, target)?;
    let mut out = Vec::new();
    for id in ids {
        if let Some(d) = state.dynos.get_mut(&id) {
            f(d);
            out.push(d.clone());
        }
    }
    Ok(CommandOutput::Dynos(out))
}

/// The ids of an app's dynos that `target` names; a named dyno or type that does not exist
/// is a 404.
fn target_dynos(state: &State, app: Uuid, target: &DynoTarget) -> Result<Vec<Uuid>, CommandError> {
    if !state.apps.contains_key(&app) {
        return Err(not_found_app(&app));
    }
    let ids: Vec<Uuid> = state
        .dynos
        .values()
        .filter(|d| d.app == app && d.run)
        .filter(|d| match target {
            DynoTarget::All => true,
            DynoTarget::Type(t) => &d.process_type == t,
            DynoTarget::Dyno(n) => d.name() == *n || d.id.to_string() == *n,
        })
        .map(|d| d.id)
        .collect();
    match target {
        DynoTarget::Dyno(n) if ids.is_empty() => {
            Err(CommandError::NotFound(format!("dyno {n} not found")))
        }
        DynoTarget::Type(t) if ids.is_empty() => {
            Err(CommandError::NotFound(format!("no {t} dynos are running")))
        }
        _ => Ok(ids),
    }
}

fn start_build(state: &mut State, build: &Build) -> CommandResult {
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
            b.failure = Some("the build was lost: its node went down or stopped answering".into());
            b.updated_at = build.created_at;
        }
    }
    let mut b = build.clone();
    b.status = BuildStatus::Pending;
    state.builds.insert(b.id, b.clone());
    Ok(CommandOutput::Build(Box::new(b)))
}

fn finish_build(
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

/// After a deploy, the formation holds exactly the slug's process types, with their
/// commands. A new `web` type starts at quantity 1 (as on Heroku's first deploy), other new
/// types at 0; existing quantities and sizes are kept. New formation ids derive from the
/// release id so that apply stays deterministic.
fn set_formation_types(
    app: &mut App,
    types: &BTreeMap<String, String>,
    release_id: Uuid,
    at: DateTime<Utc>,
) {
    let keep: BTreeSet<&String> = types.keys().collect();
    app.formation.retain(|t, _| keep.contains(t));
    for (i, (t, command)) in types.iter().enumerate() {
        // The release phase runs once per release; it is never a long-running formation.
        if t == "release" {
            continue;
        }
        let entry = app.formation.entry(t.clone()).or_insert_with(|| Formation {
            id: derived_id(release_id, i as u64),
            process_type: t.clone(),
            quantity: u32::from(t == "web"),
            size: DEFAULT_SIZE.into(),
            command: String::new(),
            created_at: at,
            updated_at: at,
        });
        if entry.command != *command {
            entry.command = command.clone();
            entry.updated_at = at;
        }
    }
}

/// A deterministic id derived from another (for records a command creates in bulk).
fn derived_id(base: Uuid, n: u64) -> Uuid {
    let mut bytes = *base.as_bytes();
    for (i, b) in (n + 1).to_be_bytes().iter().enumerate() {
        bytes[8 + i] ^= b;
    }
    // Keep it a valid v4-looking uuid.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Uuid::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(secs: i64) -> Actor {
        Actor {
            email: "admin@haven.local".into(),
            at: DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap(),
        }
    }

    fn create(state: &mut State, name: &str) -> Uuid {
        let id = Uuid::new_v4();
        Command::CreateApp {
            id,
            name: name.into(),
            stack: "heroku-24".into(),
            release_id: Uuid::new_v4(),
            actor: actor(0),
        }
        .apply(state)
        .unwrap();
        id
    }

    fn set(app: Uuid, pairs: &[(&str, Option<&str>)]) -> Command {
        Command::SetConfig {
            app,
            changes: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
                .collect(),
            release_id: Uuid::new_v4(),
            actor: actor(1),
        }
    }

    #[test]
    fn create_app_makes_release_v1_and_rejects_duplicates() {
        let mut s = State::default();
        let id = create(&mut s, "my-app");
        let app = &s.apps[&id];
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
        }
        .apply(&mut s);
        assert!(matches!(dup, Err(CommandError::Conflict(_))));
        assert_eq!(s, before, "a rejected command changes nothing");
    }

    #[test]
    fn config_changes_make_releases_with_descriptions() {
        let mut s = State::default();
        let id = create(&mut s, "my-app");
        set(id, &[("FOO", Some("1")), ("BAR", Some("2"))])
            .apply(&mut s)
            .unwrap();
        set(id, &[("FOO", None)]).apply(&mut s).unwrap();
        set(id, &[("BAZ", Some("3")), ("BAR", None)])
            .apply(&mut s)
            .unwrap();
        let app = &s.apps[&id];
        let descs: Vec<&str> = app
            .releases
            .iter()
            .map(|r| r.description.as_str())
            .collect();
        assert_eq!(
            descs,
            [
                "Initial release",
                "Set BAR, FOO config vars",
                "Remove FOO config vars",
                "Set BAZ and remove BAR config vars"
            ]
        );
        assert_eq!(
            app.config,
            BTreeMap::from([("BAZ".to_string(), "3".to_string())])
        );
        assert_eq!(app.releases[1].config.len(), 2);
    }

    #[test]
    fn rollback_restores_config_and_names_the_target() {
        let mut s = State::default();
        let id = create(&mut s, "my-app");
        set(id, &[("FOO", Some("1"))]).apply(&mut s).unwrap();
        set(id, &[("FOO", Some("2"))]).apply(&mut s).unwrap();
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
    fn formation_quantities_absolute_and_relative() {
        let mut s = State::default();
        let id = create(&mut s, "my-app");
        let change = |t: &str, q: Option<QuantityChange>, size: Option<&str>| FormationChange {
            process_type: t.into(),
            quantity: q,
            size: size.map(str::to_string),
            new_id: Uuid::new_v4(),
        };
        let cases: Vec<(Vec<FormationChange>, Result<(u32, &str), ()>)> = vec![
            (
                vec![change("web", Some(QuantityChange::Set(2)), None)],
                Ok((2, "standard-1x")),
            ),
            (
                vec![change("web", Some(QuantityChange::Add(1)), None)],
                Ok((3, "standard-1x")),
            ),
            (
                vec![change(
                    "web",
                    Some(QuantityChange::Add(-1)),
                    Some("Standard-2X"),
                )],
                Ok((2, "standard-2x")),
            ),
            (
                vec![change("web", Some(QuantityChange::Add(-5)), None)],
                Err(()),
            ),
            (
                vec![change("web", Some(QuantityChange::Set(101)), None)],
                Err(()),
            ),
            (vec![change("web", None, Some("giant"))], Err(())),
            (
                vec![change("we b", Some(QuantityChange::Set(1)), None)],
                Err(()),
            ),
        ];
        for (changes, want) in cases {
            let before = s.clone();
            let got = Command::UpdateFormation {
                app: id,
                changes: changes.clone(),
                actor: actor(3),
            }
            .apply(&mut s);
            match want {
                Ok((q, size)) => {
                    got.unwrap();
                    let f = &s.apps[&id].formation["web"];
                    assert_eq!((f.quantity, f.size.as_str()), (q, size), "{changes:?}");
                }
                Err(()) => {
                    assert!(got.is_err(), "{changes:?}");
                    assert_eq!(s, before);
                }
            }
        }
    }

    #[test]
    fn quantity_parsing() {
        assert_eq!(QuantityChange::parse("3"), Ok(QuantityChange::Set(3)));
        assert_eq!(QuantityChange::parse("+1"), Ok(QuantityChange::Add(1)));
        assert_eq!(QuantityChange::parse("-2"), Ok(QuantityChange::Add(-2)));
        assert!(QuantityChange::parse("x").is_err());
        assert!(QuantityChange::parse("").is_err());
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
            Err(CommandError::NotFound(_))
        ));
    }

    #[test]
    fn commands_roundtrip_through_bincode() {
        let cmd = set(Uuid::new_v4(), &[("A", Some("1")), ("B", None)]);
        let bytes = bincode::serialize(&cmd).unwrap();
        let back: Command = bincode::deserialize(&bytes).unwrap();
        assert_eq!(cmd, back);
    }
}

#[cfg(test)]
mod build_tests {
    use super::*;
    use crate::model::{Node, NodeStatus};

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
        Command::CreateApp {
            id,
            name: "my-app".into(),
            stack: "haven-1".into(),
            release_id: Uuid::new_v4(),
            actor: Actor {
                email: "a@b".into(),
                at: at(0),
            },
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
