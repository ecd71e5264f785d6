//! Commands: the only way the replicated [`State`] changes.
//!
//! A command carries every id and timestamp it needs; the proposer picks them, so applying
//! a command is a pure function of the state and the command, the same on every replica.
//! A command that breaks a rule (a taken name, an unknown app) is rejected during apply
//! with a [`CommandError`] and changes nothing.
//!
//! [`Command::apply`] only dispatches; each resource area applies its commands in its own
//! module: `cluster` (bootstrap and nodes), `tokens`, `users`, `apps`, `collaborators`,
//! `config`, `releases`, `formation`, `builds` (with buildpacks and slugs), `dynos`,
//! `domains`, `drains`, `addons` (add-ons and attachments), `certs` (SNI endpoints), `backups` (Postgres backups),
//! `providers` (third-party add-on providers), `repos` (connected repositories), `restore`
//! (a new cluster from a backup), `retention` (old releases compacted away).
//!
//! The log and snapshots hold these types as bincode, which encodes enum variants by
//! position and struct fields in order: never reorder or remove them (in this file or the
//! area files that hold payload types); a new command goes at the end of [`Command`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{
    App, Build, Cluster, Collaborator, Dyno, Node, NodeId, NodeStatus, Release, ReleaseStatus,
    State, Token, Unplaced, User,
};

mod addon_ha;
mod addons;
mod apps;
mod attachments;
mod backups;
mod builds;
mod certs;
mod cluster;
mod collaborators;
mod config;
mod credentials;
mod domains;
mod drains;
mod dynos;
mod formation;
mod providers;
mod releases;
mod repos;
mod restore;
mod retention;
mod stacks;
mod tokens;
mod users;

#[cfg(test)]
pub(crate) mod fixtures;

pub use addon_ha::failover_target;
pub use addons::{AttachmentSpec, MemberReport};
pub use builds::BuildResult;
pub use config::config_description;
pub use dynos::{DynoReport, DynoTarget};
pub use formation::{FormationChange, QuantityChange};
pub use releases::NO_SLUG_ROLLBACK;
pub use repos::lost as build_lost;
pub use retention::protected as protected_releases;

/// Who asked for a change and when; recorded in releases.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Actor {
    pub email: String,
    pub at: DateTime<Utc>,
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
    /// Creates an app and its release v1, owned by user `owner`.
    CreateApp {
        id: Uuid,
        name: String,
        stack: String,
        release_id: Uuid,
        actor: Actor,
        owner: Uuid,
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
    /// Makes the next release with the slug and config vars of an earlier one, looked up
    /// among the releases kept in memory. No longer proposed (a node may keep that release
    /// on disk only): `RollbackTo` replaces it; kept so that the log format stays.
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
    /// Creates an add-on (members placed by the proposer), its first attachment and the
    /// release that sets its config vars.
    CreateAddon {
        addon: crate::model::Addon,
        attachment: AttachmentSpec,
        release_id: Uuid,
        actor: Actor,
    },
    /// Detaches every attachment of an add-on (one release each, ids derived from
    /// `release_seed`) and starts its deprovisioning.
    DestroyAddon {
        addon: Uuid,
        release_seed: Uuid,
        actor: Actor,
    },
    /// Attaches an add-on to an app: sets its config vars in a release.
    AttachAddon {
        addon: Uuid,
        attachment: AttachmentSpec,
        release_id: Uuid,
        actor: Actor,
    },
    /// Removes an attachment: unsets its config vars in a release.
    DetachAddon {
        attachment: Uuid,
        release_id: Uuid,
        actor: Actor,
    },
    /// A node reports its add-on members: which answer, which have their data removed.
    ReportAddonMembers {
        node: NodeId,
        reports: Vec<MemberReport>,
        gone: Vec<Uuid>,
        at: DateTime<Utc>,
    },
    /// Adds a user, with their first token if one is given.
    CreateUser {
        user: User,
        token: Option<Token>,
    },
    /// Removes a user with their tokens and collaborations (refused while they own apps,
    /// and for the last admin).
    RemoveUser {
        user: Uuid,
    },
    /// Sets (`Some`) or clears a user's password hash (argon2, made by the proposer).
    SetPassword {
        user: Uuid,
        password_hash: Option<String>,
    },
    /// Revokes one of `user`'s tokens.
    RevokeToken {
        user: Uuid,
        token: Uuid,
    },
    /// Shares an app with a user.
    AddCollaborator {
        app: Uuid,
        collaborator: Collaborator,
    },
    /// Stops sharing an app with a user.
    RemoveCollaborator {
        app: Uuid,
        user: Uuid,
    },
    /// Adds a certificate to an app (parsed and checked by the proposer).
    AddSniEndpoint {
        endpoint: crate::model::SniEndpoint,
    },
    /// Replaces the certificate and key of an app's endpoint (named by name or id).
    UpdateSniEndpoint {
        app: Uuid,
        key: String,
        certificate_chain: String,
        private_key: String,
        cert: crate::model::CertInfo,
        at: DateTime<Utc>,
    },
    /// Removes an app's endpoint (named by name or id).
    RemoveSniEndpoint {
        app: Uuid,
        key: String,
    },
    /// Records a Postgres backup that starts now (numbered by apply).
    StartBackup {
        backup: crate::model::Backup,
    },
    /// Records how a backup ended.
    FinishBackup {
        id: Uuid,
        result: crate::model::BackupResult,
        at: DateTime<Utc>,
    },
    /// Deletes one of an app's backups.
    DeleteBackup {
        app: Uuid,
        id: Uuid,
    },
    /// Sets the daily backup schedule of a Postgres add-on.
    ScheduleBackups {
        schedule: crate::model::BackupSchedule,
    },
    /// Removes an add-on's backup schedule.
    UnscheduleBackups {
        app: Uuid,
        addon: Uuid,
    },
    /// The leader's failover of an add-on whose primary's node is down: the synced
    /// standby `to` becomes the primary, the generation is raised (fencing the old
    /// primary), and every attachment's URL vars move to it, in one release per app.
    FailoverAddon {
        addon: Uuid,
        to: Uuid,
        release_seed: Uuid,
        actor: Actor,
    },
    /// The leader takes a synced standby out of sync after its server stopped answering
    /// or streaming on an up node, so that its primary stops waiting for it.
    DesyncStandby {
        addon: Uuid,
        member: Uuid,
    },
    /// The leader replaces a standby whose node has been down too long with a member on
    /// another node (placed by the leader).
    ReplaceStandby {
        addon: Uuid,
        old: Uuid,
        new: crate::model::AddonMember,
    },
    /// Registers a third-party add-on provider (its password chosen by the operator).
    AddAddonProvider {
        provider: crate::model::AddonProvider,
    },
    /// Removes a provider that has no add-ons left.
    RemoveAddonProvider {
        name: String,
    },
    /// A provider add-on's new plan, after the provider changed it; `config`: the
    /// provider's new config, if it returned one (the attachments' vars follow, one
    /// release each, ids derived from `release_seed`).
    ChangeAddonPlan {
        addon: Uuid,
        plan: String,
        config: Option<BTreeMap<String, String>>,
        release_seed: Uuid,
        actor: Actor,
    },
    /// A Haven add-on's plan change: with the standby the proposer placed (to an HA
    /// plan) or without the standby `remove` (back to one server).
    ResizeAddon {
        addon: Uuid,
        plan: String,
        add: Option<crate::model::AddonMember>,
        remove: Option<Uuid>,
        at: DateTime<Utc>,
    },
    /// Makes an add-on the app's attachment of that name (`pg:promote`: `DATABASE`),
    /// taking the name from the add-on that had it, in one release.
    PromoteAttachment {
        addon: Uuid,
        attachment: AttachmentSpec,
        release_id: Uuid,
        actor: Actor,
    },
    /// A Postgres add-on's new password (`pg:credentials:rotate`), chosen by the
    /// proposer; its attachments' vars follow, one release each (ids derived from
    /// `release_seed`).
    RotateAddonCredentials {
        addon: Uuid,
        password: String,
        release_seed: Uuid,
        actor: Actor,
    },
    /// Makes the next release with the slug and config vars of `target`, an earlier
    /// release of the app as the proposer read it (from memory or its history on disk).
    /// Apply uses the carried release and never looks it up, so every node makes the same
    /// release whichever releases it keeps in memory.
    RollbackTo {
        app: Uuid,
        target: Box<Release>,
        release_id: Uuid,
        actor: Actor,
    },
    /// `repo:connect`: the app follows a branch of a repository (replaces a link).
    ConnectRepo {
        link: crate::model::RepoLink,
    },
    /// `repo:disconnect`.
    DisconnectRepo {
        app: Uuid,
    },
    /// An automatic deploy: takes `commit` of the connected branch and records `build`,
    /// refused if the commit was taken already (each commit is built once).
    StartRepoBuild {
        build: Build,
        commit: String,
    },
    /// `havend restore`: the backed-up state (rebased onto the new node) fills a new,
    /// empty cluster.
    RestoreState {
        state: Box<State>,
    },
    /// `havend restore`: older releases of one app from the backup, a chunk at a time.
    RestoreReleases {
        app: Uuid,
        releases: Vec<Release>,
    },
    /// More nodes hold a Postgres backup's dump (the leader's re-replication).
    AddBackupHolders {
        backup: Uuid,
        nodes: Vec<NodeId>,
    },
    /// Release retention: the app's releases older than `below` go (not what a dyno
    /// runs, the current or a pending one), with `slugs` and `builds` only they used.
    CompactReleases {
        app: Uuid,
        below: u64,
        slugs: Vec<Uuid>,
        builds: Vec<Uuid>,
    },
    /// `hctl stacks:import`: the stack's image of `kind` is the blob `sha256`, which
    /// `node` holds (replaces an earlier image of that stack and kind).
    SetStackImage {
        stack: String,
        kind: crate::model::StackImageKind,
        sha256: String,
        bytes: u64,
        unpacked_bytes: u64,
        os: String,
        node: NodeId,
        at: DateTime<Utc>,
    },
    /// More nodes hold a stack image (each node fetches every image once).
    AddStackImageHolders {
        sha256: String,
        nodes: Vec<NodeId>,
    },
    /// `stack:set`: the stack of the app's next build.
    SetAppStack {
        app: Uuid,
        stack: String,
        actor: Actor,
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
    /// 404: the app the command names does not exist (the API words it like Heroku).
    #[error("app {0} not found")]
    AppNotFound(Uuid),
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
    /// An add-on after the command, the attachments it made or removed, and the releases
    /// it made (app, version).
    Addon {
        addon: Box<crate::model::Addon>,
        attachments: Vec<crate::model::Attachment>,
        releases: Vec<(Uuid, u64)>,
    },
    /// A token a command removed.
    Token(Box<Token>),
    /// An SNI endpoint after the command (or the one it removed).
    SniEndpoint(Box<crate::model::SniEndpoint>),
    /// A backup after the command (or the one it deleted).
    Backup(Box<crate::model::Backup>),
}

/// The result of applying a command, as stored in the state machine's responses.
pub type CommandResult = Result<CommandOutput, CommandError>;

impl Command {
    /// Applies the command to `state`. Deterministic; on error nothing changed.
    pub fn apply(&self, state: &mut State) -> CommandResult {
        match self {
            Command::Bootstrap {
                cluster: c,
                node,
                admin,
                admin_token,
            } => cluster::bootstrap(state, c, node, admin, admin_token),
            Command::RegisterNode { node } => cluster::register_node(state, node),
            Command::SetNodeStatus { node_id, status } => {
                cluster::set_node_status(state, *node_id, *status)
            }
            Command::RemoveNode { node_id } => cluster::remove_node(state, *node_id),
            Command::SetNodeDraining { node_id, draining } => {
                cluster::set_node_draining(state, *node_id, *draining)
            }
            Command::AddToken { token } => tokens::add(state, token),
            Command::CreateApp {
                id,
                name,
                stack,
                release_id,
                actor,
                owner,
            } => apps::create(state, *id, name, stack, *release_id, actor, *owner),
            Command::UpdateApp {
                app,
                name,
                maintenance,
                actor,
            } => apps::update(state, *app, name.as_deref(), *maintenance, actor),
            Command::DeleteApp { app } => apps::delete(state, *app),
            Command::SetConfig {
                app,
                changes,
                release_id,
                actor,
            } => config::set(state, *app, changes, *release_id, actor),
            Command::Rollback {
                app,
                to_version,
                release_id,
                actor,
            } => releases::rollback(state, *app, *to_version, *release_id, actor),
            Command::SetReleaseStatus {
                app,
                version,
                status,
            } => releases::set_status(state, *app, *version, *status),
            Command::UpdateFormation {
                app,
                changes,
                actor,
            } => formation::update(state, *app, changes, actor),
            Command::StartBuild { build } => builds::start(state, build),
            Command::FinishBuild { build, result, at } => {
                builds::finish(state, *build, result, *at)
            }
            Command::SetBuildpacks {
                app,
                buildpacks,
                actor,
            } => builds::set_buildpacks(state, *app, buildpacks, actor),
            Command::AddSlugHolders { slug, nodes } => {
                builds::add_slug_holders(state, *slug, nodes)
            }
            Command::ApplyPlan {
                starts,
                stops,
                unplaced,
            } => dynos::apply_plan(state, starts, stops, unplaced),
            Command::ReportDynos {
                node,
                reports,
                gone,
                at,
            } => dynos::report(state, *node, reports, gone, *at),
            Command::RestartDynos { app, target } => dynos::restart(state, *app, target),
            Command::StopDynos { app, target } => dynos::stop(state, *app, target),
            Command::CreateOneOff { dyno } => dynos::create_one_off(state, dyno),
            Command::AddDomain { app, domain, at } => domains::add(state, *app, domain, *at),
            Command::RemoveDomain { app, key, at } => domains::remove(state, *app, key, *at),
            Command::AddDrain { app, drain } => drains::add(state, *app, drain),
            Command::RemoveDrain { app, key } => drains::remove(state, *app, key),
            Command::CreateAddon {
                addon,
                attachment,
                release_id,
                actor,
            } => addons::create(state, addon, attachment, *release_id, actor),
            Command::DestroyAddon {
                addon,
                release_seed,
                actor,
            } => addons::destroy(state, *addon, *release_seed, actor),
            Command::AttachAddon {
                addon,
                attachment,
                release_id,
                actor,
            } => attachments::attach(state, *addon, attachment, *release_id, actor),
            Command::DetachAddon {
                attachment,
                release_id,
                actor,
            } => attachments::detach(state, *attachment, *release_id, actor),
            Command::ReportAddonMembers {
                node,
                reports,
                gone,
                at,
            } => addons::report(state, *node, reports, gone, *at),
            Command::CreateUser { user, token } => users::create(state, user, token.as_ref()),
            Command::RemoveUser { user } => users::remove(state, *user),
            Command::SetPassword {
                user,
                password_hash,
            } => users::set_password(state, *user, password_hash.as_deref()),
            Command::RevokeToken { user, token } => tokens::revoke(state, *user, *token),
            Command::AddCollaborator { app, collaborator } => {
                collaborators::add(state, *app, collaborator)
            }
            Command::RemoveCollaborator { app, user } => collaborators::remove(state, *app, *user),
            Command::AddSniEndpoint { endpoint } => certs::add(state, endpoint),
            Command::UpdateSniEndpoint {
                app,
                key,
                certificate_chain,
                private_key,
                cert,
                at,
            } => certs::update(state, *app, key, certificate_chain, private_key, cert, *at),
            Command::RemoveSniEndpoint { app, key } => certs::remove(state, *app, key),
            Command::StartBackup { backup } => backups::start(state, backup),
            Command::FinishBackup { id, result, at } => backups::finish(state, *id, result, *at),
            Command::DeleteBackup { app, id } => backups::delete(state, *app, *id),
            Command::ScheduleBackups { schedule } => backups::schedule(state, schedule),
            Command::UnscheduleBackups { app, addon } => backups::unschedule(state, *app, *addon),
            Command::FailoverAddon {
                addon,
                to,
                release_seed,
                actor,
            } => addon_ha::failover(state, *addon, *to, *release_seed, actor),
            Command::DesyncStandby { addon, member } => {
                addon_ha::desync_standby(state, *addon, *member)
            }
            Command::ReplaceStandby { addon, old, new } => {
                addon_ha::replace_standby(state, *addon, *old, new)
            }
            Command::AddAddonProvider { provider } => providers::add(state, provider),
            Command::RemoveAddonProvider { name } => providers::remove(state, name),
            Command::ChangeAddonPlan {
                addon,
                plan,
                config,
                release_seed,
                actor,
            } => addons::change_plan(state, *addon, plan, config.as_ref(), *release_seed, actor),
            Command::ResizeAddon {
                addon,
                plan,
                add,
                remove,
                at,
            } => addon_ha::resize(state, *addon, plan, add.as_ref(), *remove, *at),
            Command::PromoteAttachment {
                addon,
                attachment,
                release_id,
                actor,
            } => attachments::promote(state, *addon, attachment, *release_id, actor),
            Command::RotateAddonCredentials {
                addon,
                password,
                release_seed,
                actor,
            } => credentials::rotate(state, *addon, password, *release_seed, actor),
            Command::RollbackTo {
                app,
                target,
                release_id,
                actor,
            } => releases::rollback_to(state, *app, target, *release_id, actor),
            Command::ConnectRepo { link } => repos::connect(state, link),
            Command::DisconnectRepo { app } => repos::disconnect(state, *app),
            Command::StartRepoBuild { build, commit } => repos::start_build(state, build, commit),
            Command::RestoreState { state: restored } => restore::restore_state(state, restored),
            Command::RestoreReleases { app, releases } => {
                restore::restore_releases(state, *app, releases)
            }
            Command::AddBackupHolders { backup, nodes } => {
                backups::add_holders(state, *backup, nodes)
            }
            Command::CompactReleases {
                app,
                below,
                slugs,
                builds,
            } => retention::compact(state, *app, *below, slugs, builds),
            Command::SetStackImage {
                stack,
                kind,
                sha256,
                bytes,
                unpacked_bytes,
                os,
                node,
                at,
            } => stacks::set_image(
                state,
                stack,
                *kind,
                sha256,
                *bytes,
                *unpacked_bytes,
                os,
                *node,
                *at,
            ),
            Command::AddStackImageHolders { sha256, nodes } => {
                stacks::add_holders(state, sha256, nodes)
            }
            Command::SetAppStack { app, stack, actor } => {
                apps::set_stack(state, *app, stack, actor)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::set;
    use super::*;

    #[test]
    fn commands_roundtrip_through_bincode() {
        let cmd = set(Uuid::new_v4(), &[("A", Some("1")), ("B", None)]);
        let bytes = bincode::serialize(&cmd).unwrap();
        let back: Command = bincode::deserialize(&bytes).unwrap();
        assert_eq!(cmd, back);
    }
}
