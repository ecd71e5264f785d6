//! The replicated model (design §2): cluster, nodes, apps, config vars, releases,
//! formations, users, API tokens and who may use which app (owners, collaborators).
//!
//! Every replica holds the same [`State`]; it changes only by applying a
//! [`Command`](crate::command::Command). Types here are domain types, serialized with
//! bincode in the log and snapshots: no `skip_serializing_if`, no untagged enums, and never
//! a reordered field or variant (bincode encodes by position).
//!
//! What the model accepts (names, sizes, URLs) is in `rules`, re-exported here.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

mod addon_rules;
mod addons;
mod backups;
mod certs;
mod config_vars;
mod providers;
mod repos;
mod restored;
mod rules;
mod stacks;

pub use addon_rules::{
    attachment_naming, generated_addon_name, normalize_attachment_name, validate_addon_name,
    ADJECTIVES, COLOURS,
};
pub use addons::{Addon, AddonMember, AddonState, Attachment, Role};
pub use backups::{
    parse_schedule_time, Backup, BackupResult, BackupSchedule, BackupStatus, SCHEDULED_RETAINED,
};
pub use certs::{generated_endpoint_name, name_matches, CertInfo, SniEndpoint};
pub use config_vars::ConfigVars;
pub use providers::{
    provider_attachment_name, provider_config_prefix, provider_config_var, provider_config_vars,
    validate_provider_name, validate_provider_plans, validate_provider_url, AddonProvider,
};
pub use repos::{redact_url, validate_branch, validate_commit, validate_repo_url, RepoLink};
pub use restored::{rebase_restored, Rebase};
pub use stacks::{stack_image_key, StackImage, StackImageKind};

pub use rules::{
    normalize_email, normalize_hostname, normalize_size, validate_app_name, validate_buildpack,
    validate_config_key, validate_drain_url, validate_process_type, MAX_QUANTITY,
};

/// A Raft node id. Chosen at random by the node when it is created.
pub type NodeId = u64;

/// The default dyno size of a new formation (from the platform's catalog).
pub const DEFAULT_SIZE: &str = haven_catalog::DEFAULT_DYNO_SIZE;

/// The one cluster this state belongs to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Cluster {
    pub id: Uuid,
    pub name: String,
    /// Apps answer at `<app>.<app_domain>`.
    pub app_domain: String,
    pub created_at: DateTime<Utc>,
    /// sha256 (hex) of the join secret carried by join tokens.
    pub join_secret_sha256: String,
    /// sha256 (hex) of the cluster CA certificate (DER).
    pub ca_fingerprint: String,
}

/// Liveness of a node as the cluster records it (the leader commits only transitions).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum NodeStatus {
    Up,
    Down,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Up => "up",
            NodeStatus::Down => "down",
        }
    }
}

/// A host running `havend`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Node {
    pub id: NodeId,
    pub name: String,
    /// `host:port` of the QUIC peer endpoint.
    pub peer_addr: String,
    /// `http://host:port` of the HTTP API.
    pub api_url: String,
    /// `http://host:port` of the HTTP router.
    pub router_url: String,
    pub memory_mb: u64,
    pub cpus: u32,
    pub labels: BTreeMap<String, String>,
    pub status: NodeStatus,
    /// Set by `nodes:drain`: its dynos move away and no new ones are placed on it.
    pub draining: bool,
    pub joined_at: DateTime<Utc>,
}

impl Node {
    /// `up`, `down` or `draining`, as `hctl nodes` shows it.
    pub fn status_text(&self) -> &'static str {
        match (self.status, self.draining) {
            (NodeStatus::Down, _) => "down",
            (NodeStatus::Up, true) => "draining",
            (NodeStatus::Up, false) => "up",
        }
    }
}

/// An app. Names follow Heroku: `^[a-z][a-z0-9-]{1,28}[a-z0-9]$`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct App {
    pub id: Uuid,
    pub name: String,
    pub stack: String,
    pub buildpacks: Vec<String>,
    pub maintenance: bool,
    /// Custom domains the router answers for this app.
    pub domains: Vec<Domain>,
    /// Log drains: where every node ships this app's lines.
    pub drains: Vec<Drain>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Time of the newest release.
    pub released_at: Option<DateTime<Utc>>,
    /// The config vars now in force (those of the newest release, shared with it).
    pub config: ConfigVars,
    /// The releases this node keeps in memory, in version order: the newest ones, the
    /// current one, pending ones and those a dyno runs. Older ones are in the node's
    /// history on disk (`haven_raft::History`); versions run from 1 without gaps, so the
    /// newest release is always the last here.
    pub releases: Vec<Release>,
    /// Formation by process type.
    pub formation: BTreeMap<String, Formation>,
    /// The user who created the app (design §13). Owners never change today.
    pub owner: Uuid,
    /// Users the owner shares the app with, in the order they were added.
    pub collaborators: Vec<Collaborator>,
}

/// A user an app is shared with: they may do everything its owner may, except rename or
/// destroy it (as on Heroku for personal apps).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Collaborator {
    pub id: Uuid,
    pub user: Uuid,
    pub created_at: DateTime<Utc>,
}

impl App {
    /// Whether `user` owns the app or collaborates on it.
    pub fn is_member(&self, user: Uuid) -> bool {
        self.owner == user || self.collaborators.iter().any(|c| c.user == user)
    }

    /// The release in force: the newest that succeeded.
    pub fn current_release(&self) -> Option<&Release> {
        self.releases
            .iter()
            .rev()
            .find(|r| r.status == ReleaseStatus::Succeeded)
    }

    /// A copy without the release history: only the newest release and the current one.
    /// Command outputs carry this, so that their size does not grow with the history.
    pub fn summary(&self) -> App {
        let mut releases: Vec<Release> = Vec::new();
        if let Some(current) = self.current_release() {
            releases.push(current.clone());
        }
        if let Some(last) = self.releases.last() {
            if releases.last().map(|r| r.id) != Some(last.id) {
                releases.push(last.clone());
            }
        }
        App {
            releases,
            ..self.clone_without_releases()
        }
    }

    fn clone_without_releases(&self) -> App {
        App {
            id: self.id,
            name: self.name.clone(),
            stack: self.stack.clone(),
            buildpacks: self.buildpacks.clone(),
            maintenance: self.maintenance,
            domains: self.domains.clone(),
            drains: self.drains.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            released_at: self.released_at,
            config: self.config.clone(),
            releases: Vec::new(),
            formation: self.formation.clone(),
            owner: self.owner,
            collaborators: self.collaborators.clone(),
        }
    }

    /// The version of the newest release (0 before the first).
    pub fn last_version(&self) -> u64 {
        self.releases.last().map_or(0, |r| r.version)
    }

    /// A release kept in memory by version (`5`, `v5`) or id; older ones are read with
    /// `haven_raft::History::find`.
    pub fn find_release(&self, key: &str) -> Option<&Release> {
        let version = key.strip_prefix('v').unwrap_or(key).parse::<u64>().ok();
        match version {
            Some(v) => self.releases.iter().find(|r| r.version == v),
            None => self.releases.iter().find(|r| r.id.to_string() == key),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum ReleaseStatus {
    Pending,
    Succeeded,
    Failed,
}

impl ReleaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseStatus::Pending => "pending",
            ReleaseStatus::Succeeded => "succeeded",
            ReleaseStatus::Failed => "failed",
        }
    }
}

/// A release: a slug (none before the first build) paired with config vars.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Release {
    pub id: Uuid,
    pub version: u64,
    pub slug: Option<Uuid>,
    pub config: ConfigVars,
    pub description: String,
    pub status: ReleaseStatus,
    pub created_at: DateTime<Utc>,
    /// Email of who made it.
    pub user: String,
}

/// A log drain: `syslog://host:port` (RFC 5424 over TCP, octet counting) or
/// `http(s)://…` (logplex-framed POSTs).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Drain {
    pub id: Uuid,
    pub url: String,
    /// `d.<uuid>`: names the drain in the lines it receives (`Logplex-Drain-Token`).
    pub token: String,
    pub created_at: DateTime<Utc>,
}

/// A custom domain of an app.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Domain {
    pub id: Uuid,
    /// Lowercase, without a trailing dot.
    pub hostname: String,
    pub created_at: DateTime<Utc>,
}

/// The wanted quantity and size of one process type.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Formation {
    pub id: Uuid,
    pub process_type: String,
    pub quantity: u32,
    pub size: String,
    pub command: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An API token (an OAuth authorization in the API). Only its sha256 is stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Token {
    pub id: Uuid,
    pub sha256: String,
    pub user_email: String,
    pub user_id: Uuid,
    pub description: String,
    pub created_at: DateTime<Utc>,
    /// After this the token is refused (checked when a request comes, by the node that
    /// answers it); `None`: it lasts until revoked.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Token {
    /// Whether the token is past its expiry at `now`.
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|t| now >= t)
    }
}

/// A user account. The first is the admin made at `havend init`; admins make the others.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    /// Lowercase; unique.
    pub email: String,
    pub created_at: DateTime<Utc>,
    /// Admins run the cluster (nodes, users) and see every app.
    pub admin: bool,
    /// The argon2 hash (PHC string) of the user's password, if they have one; hashed by
    /// the proposer, so the password itself is never in the log.
    pub password_hash: Option<String>,
}

/// A built slug: a zstd-compressed tar of `/app`, named by the sha256 of its bytes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Slug {
    pub id: Uuid,
    pub app: Uuid,
    /// sha256 (hex) of the compressed file: its name in every node's slug store.
    pub sha256: String,
    /// Compressed bytes.
    pub size: u64,
    /// Process types: from the Procfile, else the last buildpack's `bin/release`.
    pub process_types: BTreeMap<String, String>,
    /// Nodes that hold the compressed slug.
    pub holders: BTreeSet<NodeId>,
    /// The source version (a git commit for pushes).
    pub commit: Option<String>,
    pub stack: String,
    /// What the buildpacks detected ("Python", "Node.js").
    pub buildpack_provided_description: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum BuildStatus {
    Pending,
    Succeeded,
    Failed,
}

impl BuildStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildStatus::Pending => "pending",
            BuildStatus::Succeeded => "succeeded",
            BuildStatus::Failed => "failed",
        }
    }
}

/// A build of an app's source into a slug, run on one node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Build {
    pub id: Uuid,
    pub app: Uuid,
    pub status: BuildStatus,
    /// The node running the build; it keeps the output.
    pub node: NodeId,
    pub source_url: String,
    pub source_checksum: Option<String>,
    pub source_version: Option<String>,
    /// Buildpacks asked for when the build started (empty: detected).
    pub buildpacks: Vec<String>,
    pub stack: String,
    pub user_email: String,
    pub user_id: Uuid,
    pub output_stream_url: String,
    pub slug: Option<Uuid>,
    pub release: Option<Uuid>,
    /// Why a failed build failed (one line).
    pub failure: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The state a dyno's agent last reported (Heroku's dyno states).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum DynoState {
    Starting,
    Up,
    Crashed,
    Down,
}

impl DynoState {
    pub fn as_str(self) -> &'static str {
        match self {
            DynoState::Starting => "starting",
            DynoState::Up => "up",
            DynoState::Crashed => "crashed",
            DynoState::Down => "down",
        }
    }
}

/// A dyno: one process of an app's formation (`web.1`) or a one-off (`run.4821`), placed
/// on a node by the leader.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Dyno {
    pub id: Uuid,
    pub app: Uuid,
    pub process_type: String,
    /// `web.3` → 3; the number of a one-off.
    pub index: u32,
    /// The release version it runs.
    pub release: u64,
    pub size: String,
    pub node: NodeId,
    /// The command it runs (the formation's, or the one-off's).
    pub command: String,
    /// One-offs (`run.N`, the release phase) are outside the formation.
    pub one_off: bool,
    /// A one-off whose caller attaches to its stdin/stdout (started by the attach).
    pub attach: bool,
    /// Extra environment of a one-off.
    pub env: BTreeMap<String, String>,
    /// `false` once the leader or a user asked it to stop; the node stops it and reports
    /// it gone, which removes it.
    pub run: bool,
    /// The last state its node reported.
    pub state: DynoState,
    pub state_changed_at: DateTime<Utc>,
    /// Raised by `ps:restart`: the node restarts the process in place.
    pub restart_seq: u32,
    /// Crash restarts so far (reported by the node).
    pub restarts: u32,
    /// The host port a web dyno listens on (reported when it starts).
    pub port: Option<u16>,
    /// Exit code of a finished one-off.
    pub exit_code: Option<i32>,
    pub created_at: DateTime<Utc>,
}

impl Dyno {
    /// A new dyno placed on `node`, about to start; `id` and `at` come from the proposer.
    /// One-offs get their extra fields set by the caller (`one_off`, `attach`, `env`).
    #[allow(clippy::too_many_arguments)]
    pub fn placed(
        id: Uuid,
        app: Uuid,
        process_type: &str,
        index: u32,
        release: u64,
        size: &str,
        node: NodeId,
        command: String,
        at: DateTime<Utc>,
    ) -> Dyno {
        Dyno {
            id,
            app,
            process_type: process_type.to_string(),
            index,
            release,
            size: size.to_string(),
            node,
            command,
            one_off: false,
            attach: false,
            env: BTreeMap::new(),
            run: true,
            state: DynoState::Starting,
            state_changed_at: at,
            restart_seq: 0,
            restarts: 0,
            port: None,
            exit_code: None,
            created_at: at,
        }
    }

    /// `web.1`, `run.4821`.
    pub fn name(&self) -> String {
        format!("{}.{}", self.process_type, self.index)
    }
}

/// A formation dyno the scheduler could not place, and why (shown by `hctl ps`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Unplaced {
    pub app: Uuid,
    pub process_type: String,
    pub index: u32,
    pub reason: String,
}

/// How the failure of a build lost with its node begins.
pub const LOST_BUILD: &str = "the build was lost";

/// A pending build older than this is considered lost (its node died or restarted) and
/// does not block the next build of its app.
pub const BUILD_STALE_SECS: i64 = 30 * 60;

/// The whole replicated state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    pub cluster: Option<Cluster>,
    pub nodes: BTreeMap<NodeId, Node>,
    /// Apps by id.
    pub apps: BTreeMap<Uuid, App>,
    pub users: BTreeMap<Uuid, User>,
    /// Tokens by their sha256 (hex).
    pub tokens: BTreeMap<String, Token>,
    /// Slugs by id.
    pub slugs: BTreeMap<Uuid, Slug>,
    /// Builds by id.
    pub builds: BTreeMap<Uuid, Build>,
    /// Dynos by id.
    pub dynos: BTreeMap<Uuid, Dyno>,
    /// What the scheduler's last plan could not place.
    pub unplaced: Vec<Unplaced>,
    /// Add-ons by id.
    pub addons: BTreeMap<Uuid, Addon>,
    /// Add-on attachments by id.
    pub attachments: BTreeMap<Uuid, Attachment>,
    /// Apps' certificates (SNI endpoints) by id.
    pub sni_endpoints: BTreeMap<Uuid, SniEndpoint>,
    /// Postgres backups by id.
    pub backups: BTreeMap<Uuid, Backup>,
    /// Daily backup schedules by add-on id.
    pub backup_schedules: BTreeMap<Uuid, BackupSchedule>,
    /// Registered third-party add-on providers by name.
    pub addon_providers: BTreeMap<String, AddonProvider>,
    /// Connected repositories by app id.
    pub repos: BTreeMap<Uuid, RepoLink>,
    /// Nodes removed from the cluster (`nodes:remove`): their identity — the node id
    /// their certificate names — is refused from then on.
    pub removed_nodes: BTreeSet<NodeId>,
    /// Stack images by [`stack_image_key`]. Kept out of the state's serialized form
    /// (commands and backups carry states of the shape before stack images existed):
    /// snapshots carry them beside the state (`storage/machine.rs`).
    #[serde(skip)]
    pub stack_images: BTreeMap<String, StackImage>,
}

impl State {
    /// An app by name or id.
    pub fn find_app(&self, key: &str) -> Option<&App> {
        if let Ok(id) = key.parse::<Uuid>() {
            if let Some(app) = self.apps.get(&id) {
                return Some(app);
            }
        }
        self.apps.values().find(|a| a.name == key)
    }

    /// The slug a release runs, if it has one.
    pub fn release_slug(&self, release: &Release) -> Option<&Slug> {
        release.slug.and_then(|id| self.slugs.get(&id))
    }

    /// An app's builds, oldest first.
    pub fn app_builds(&self, app: Uuid) -> Vec<&Build> {
        let mut builds: Vec<&Build> = self.builds.values().filter(|b| b.app == app).collect();
        builds.sort_by_key(|b| (b.created_at, b.id));
        builds
    }

    /// An app's dynos, by process type and index.
    pub fn app_dynos(&self, app: Uuid) -> Vec<&Dyno> {
        let mut dynos: Vec<&Dyno> = self.dynos.values().filter(|d| d.app == app).collect();
        dynos.sort_by(|a, b| {
            (&a.process_type, a.index, a.created_at).cmp(&(&b.process_type, b.index, b.created_at))
        });
        dynos
    }

    /// An add-on by name or id.
    pub fn find_addon(&self, key: &str) -> Option<&Addon> {
        if let Ok(id) = key.parse::<Uuid>() {
            if let Some(a) = self.addons.get(&id) {
                return Some(a);
            }
        }
        self.addons.values().find(|a| a.name == key)
    }

    /// The add-on `key` names for app `app`: an add-on it owns or has attached, by name or
    /// id, or by attachment name (`DATABASE`, `HEROKU_POSTGRESQL_JADE`, with or without
    /// `_URL`).
    pub fn app_addon(&self, app: Uuid, key: &str) -> Option<&Addon> {
        let att = key.strip_suffix("_URL").unwrap_or(key);
        let attached = self
            .attachments
            .values()
            .find(|t| t.app == app && t.name.eq_ignore_ascii_case(att))
            .and_then(|t| self.addons.get(&t.addon));
        attached.or_else(|| {
            self.find_addon(key).filter(|a| {
                a.app == app
                    || self
                        .attachments
                        .values()
                        .any(|t| t.app == app && t.addon == a.id)
            })
        })
    }

    /// An app's backups, oldest first.
    pub fn app_backups(&self, app: Uuid) -> Vec<&Backup> {
        let mut v: Vec<&Backup> = self.backups.values().filter(|b| b.app == app).collect();
        v.sort_by_key(|b| b.number);
        v
    }

    /// An app's attachments, by name.
    pub fn app_attachments(&self, app: Uuid) -> Vec<&Attachment> {
        let mut v: Vec<&Attachment> = self.attachments.values().filter(|t| t.app == app).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// An add-on's attachments, oldest first.
    pub fn addon_attachments(&self, addon: Uuid) -> Vec<&Attachment> {
        let mut v: Vec<&Attachment> = self
            .attachments
            .values()
            .filter(|t| t.addon == addon)
            .collect();
        v.sort_by_key(|t| (t.created_at, t.id));
        v
    }

    /// The token whose sha256 is `sha256_hex`.
    pub fn token(&self, sha256_hex: &str) -> Option<&Token> {
        self.tokens.get(sha256_hex)
    }

    /// A user by email (any case) or id.
    pub fn find_user(&self, key: &str) -> Option<&User> {
        if let Ok(id) = key.parse::<Uuid>() {
            if let Some(u) = self.users.get(&id) {
                return Some(u);
            }
        }
        let email = key.trim().to_ascii_lowercase();
        self.users.values().find(|u| u.email == email)
    }

    /// A user's tokens, oldest first.
    pub fn user_tokens(&self, user: Uuid) -> Vec<&Token> {
        let mut tokens: Vec<&Token> = self.tokens.values().filter(|t| t.user_id == user).collect();
        tokens.sort_by_key(|t| (t.created_at, t.id));
        tokens
    }
}
