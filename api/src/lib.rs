//! Wire types of Haven's HTTP API.
//!
//! The shapes follow the Heroku Platform API v3 (its schema is kept in
//! `tests/fixtures/heroku-platform-api-schema.json`).
//! These are *wire* types: the agent converts its domain model into them by hand at the API
//! boundary, and `hctl` decodes them. Timestamps are RFC 3339 strings, ids are UUID strings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod addons;
pub mod attach;
pub mod backups;
pub mod certs;
pub mod pin;
pub mod repos;
pub mod request_id;
pub mod urls;

pub use backups::{PgBackup, PgBackupSchedule, PgBackupScheduleCreate, PgBackupTarget};
pub use certs::{SniEndpoint, SniEndpointCreate, SslCert};
pub use repos::{Repo, RepoBuild, RepoConnect};
pub use request_id::valid_request_id;
pub use urls::web_url;

/// The `Accept` header every client sends.
pub const ACCEPT: &str = "application/vnd.heroku+json; version=3";

/// Error body of every non-2xx answer: `{"id": "not_found", "message": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub id: String,
    pub message: String,
}

/// `{id, name}` reference to another resource.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NamedRef {
    pub id: String,
    pub name: String,
}

/// `{id}` reference.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdRef {
    pub id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserRef {
    pub id: String,
    pub email: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Generation {
    pub id: String,
    pub name: String,
}

/// An app, as `GET /apps/{app}` answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct App {
    pub id: String,
    pub name: String,
    pub git_url: String,
    pub web_url: String,
    pub maintenance: bool,
    pub stack: NamedRef,
    pub build_stack: NamedRef,
    pub generation: Generation,
    pub owner: UserRef,
    pub region: NamedRef,
    pub organization: Option<NamedRef>,
    pub team: Option<NamedRef>,
    pub space: Option<NamedRef>,
    pub internal_routing: Option<bool>,
    pub acm: bool,
    pub buildpack_provided_description: Option<String>,
    pub repo_size: Option<u64>,
    pub slug_size: Option<u64>,
    pub archived_at: Option<String>,
    pub released_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// `POST /apps` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AppCreate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
}

/// `PATCH /apps/{app}` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AppUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<bool>,
    /// The stack of the app's next build (`heroku stack:set`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_stack: Option<String>,
}

/// A stack, as `GET /stacks` answers: the Platform API's fields, and the images Haven has
/// for it (none: builds and dynos of the stack use the host's root).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stack {
    pub id: String,
    pub name: String,
    /// `supported`.
    pub state: String,
    /// The stack of apps created without one.
    pub default: bool,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub images: Vec<StackImage>,
}

/// One imported image of a stack.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StackImage {
    /// `run` (the root of dynos) or `build` (the root of builds).
    pub kind: String,
    /// sha256 (hex) of the compressed image.
    pub sha256: String,
    pub bytes: u64,
    pub unpacked_bytes: u64,
    /// The image's OS (`PRETTY_NAME` of its os-release).
    pub os: String,
    /// Names of the nodes that hold it.
    pub nodes: Vec<String>,
    pub created_at: String,
}

/// Config vars: `GET/PATCH /apps/{app}/config-vars`. In a PATCH body a `null` value unsets.
pub type ConfigVars = BTreeMap<String, String>;
pub type ConfigVarsPatch = BTreeMap<String, Option<String>>;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppRef {
    pub id: String,
    pub name: String,
}

/// A release, as `GET /apps/{app}/releases/{id-or-version}` answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Release {
    pub id: String,
    pub version: u64,
    pub status: String,
    pub current: bool,
    pub description: String,
    pub app: AppRef,
    pub slug: Option<IdRef>,
    pub user: UserRef,
    pub addon_plan_names: Vec<String>,
    pub artifacts: Vec<serde_json::Value>,
    pub output_stream_url: Option<String>,
    pub eligible_for_rollback: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// `POST /apps/{app}/releases` body: `{"release": ID-OR-VERSION}` rolls back.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReleaseCreate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A process type's formation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Formation {
    pub id: String,
    pub app: AppRef,
    #[serde(rename = "type")]
    pub process_type: String,
    pub quantity: u32,
    pub size: String,
    pub dyno_size: NamedRef,
    pub command: String,
    pub created_at: String,
    pub updated_at: String,
}

/// A quantity in a formation update: a number, or a string holding a number or a relative
/// change (`"+1"`, `"-1"`), as the Heroku CLI sends them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Quantity {
    Number(i64),
    Text(String),
}

/// One entry of `PATCH /apps/{app}/formation` `{"updates": [...]}`, or the body of
/// `PATCH /apps/{app}/formation/{type}` (where `type` may be absent).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FormationUpdate {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub process_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FormationBatchUpdate {
    pub updates: Vec<FormationUpdate>,
}

/// `GET /account`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub allow_tracking: bool,
    pub beta: bool,
    pub verified: bool,
    pub federated: bool,
    pub two_factor_authentication: bool,
    pub last_login: Option<String>,
    pub suspended_at: Option<String>,
    pub delinquent_at: Option<String>,
    pub sms_number: Option<String>,
    pub country_of_residence: Option<String>,
    pub default_organization: Option<NamedRef>,
    pub default_team: Option<NamedRef>,
    pub identity_provider: Option<serde_json::Value>,
    pub created_at: String,
    pub updated_at: String,
}

/// `PUT /account/password` body (Haven-only): the caller's new password.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PasswordUpdate {
    pub password: String,
}

/// The user of a collaborator.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CollaboratorUser {
    pub id: String,
    pub email: String,
    pub federated: bool,
}

/// `{name, description}` of an app permission (Heroku teams; empty for personal apps).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppPermission {
    pub name: String,
    pub description: String,
}

/// Who may use an app, as `GET /apps/{app}/collaborators` lists them: the owner (role
/// `owner`) and the collaborators (role `collaborator`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Collaborator {
    pub id: String,
    pub app: AppRef,
    pub user: CollaboratorUser,
    pub role: Option<String>,
    pub permissions: Vec<AppPermission>,
    pub created_at: String,
    pub updated_at: String,
}

/// `POST /apps/{app}/collaborators` body: the user by email or id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CollaboratorCreate {
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silent: Option<bool>,
}

/// The access token of an OAuth authorization. `token` is shown only when it is made
/// (Haven stores only its hash).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessToken {
    pub id: String,
    pub token: String,
    /// Seconds left until it expires; `null`: it lasts until revoked.
    pub expires_in: Option<i64>,
}

/// `{id, email, full_name}` of an authorization's user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuthorizationUser {
    pub id: String,
    pub email: String,
    pub full_name: Option<String>,
}

/// An API token, in Heroku's shape of an OAuth authorization (`/oauth/authorizations`).
/// `access_token` is `null` except in the answer that made it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OAuthAuthorization {
    pub id: String,
    pub description: String,
    pub scope: Vec<String>,
    pub access_token: Option<AccessToken>,
    pub client: Option<serde_json::Value>,
    pub grant: Option<serde_json::Value>,
    pub refresh_token: Option<serde_json::Value>,
    pub session: Option<serde_json::Value>,
    pub user: AuthorizationUser,
    /// Haven's addition: when it expires (`null`: never).
    #[serde(default)]
    pub expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// `POST /oauth/authorizations` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuthorizationCreate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Seconds until the token expires; absent: it lasts until revoked. A number, or a
    /// string holding one (the Heroku CLI sends `"3600"`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "number_or_numeric_string"
    )]
    pub expires_in: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Vec<String>>,
}

/// An optional integer given as a JSON number or as a string of digits (`"3600"`, as
/// the Heroku CLI sends `expires_in`); `null` is none.
fn number_or_numeric_string<'de, D>(d: D) -> Result<Option<i64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrText {
        Number(i64),
        Text(String),
    }
    match Option::<NumberOrText>::deserialize(d)? {
        None => Ok(None),
        Some(NumberOrText::Number(n)) => Ok(Some(n)),
        Some(NumberOrText::Text(t)) => t.trim().parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!("{t:?} is not a whole number of seconds"))
        }),
    }
}

/// A user, as the admin's `GET /cluster/users` lists them: Haven-only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterUser {
    pub id: String,
    pub email: String,
    pub admin: bool,
    /// Whether they can log in with a password.
    pub password: bool,
    /// Apps they own.
    pub apps: u32,
    pub created_at: String,
}

/// `POST /cluster/users` body: Haven-only.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterUserCreate {
    pub email: String,
    #[serde(default)]
    pub admin: bool,
    /// Give them a generated one-time password instead of a first token.
    #[serde(default)]
    pub password: bool,
}

/// `POST /cluster/users` answer: the user and their first secret, shown only here.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterUserCreated {
    pub user: ClusterUser,
    /// Their first API token (without `password`).
    pub token: Option<String>,
    /// Their generated password (with `password`); they should change it with
    /// `hctl passwords:set`.
    pub password: Option<String>,
}

/// `GET /cluster/status`: Haven-only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterStatus {
    pub cluster_id: String,
    pub cluster_name: String,
    pub app_domain: String,
    /// The node that answered.
    pub node_id: String,
    pub node_name: String,
    pub leader: Option<String>,
    pub leader_name: Option<String>,
    pub term: u64,
    pub voters: Vec<String>,
    pub learners: Vec<String>,
    pub applied_index: Option<u64>,
    pub last_log_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    /// The answering node's havend version (absent from nodes before version fields).
    #[serde(default)]
    pub version: Option<String>,
    /// When its agent started: a restart changes it.
    #[serde(default)]
    pub started_at: Option<String>,
    /// The peer protocols it speaks (`haven_raft::version`).
    #[serde(default)]
    pub protocol_min: Option<u32>,
    #[serde(default)]
    pub protocol_max: Option<u32>,
    /// The on-disk format of its store.
    #[serde(default)]
    pub format: Option<u32>,
}

/// One entry of `GET /cluster/events` (Haven-only): something the platform did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlatformEvent {
    pub at: String,
    /// The node that made it.
    pub node: String,
    /// `raft`, `node`, `autopilot`, `scheduler`, `addon`, `dyno`.
    pub kind: String,
    pub message: String,
}

/// One entry of `GET /cluster/nodes`: Haven-only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterNode {
    pub id: String,
    pub name: String,
    pub api_url: String,
    pub peer_addr: String,
    pub router_url: String,
    pub role: String,
    pub status: String,
    pub leader: bool,
    pub memory_mb: u64,
    /// Memory reserved by the dynos placed on the node (by size).
    #[serde(default)]
    pub used_memory_mb: u64,
    /// Dynos placed on the node (running or starting).
    #[serde(default)]
    pub dynos: u32,
    pub draining: bool,
    pub cpus: u32,
    pub labels: BTreeMap<String, String>,
    pub joined_at: String,
}

/// `PATCH /cluster/nodes/{node}` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterNodeUpdate {
    #[serde(default)]
    pub draining: Option<bool>,
}

/// A dyno, as `GET /apps/{app}/dynos/{id-or-name}` answers. `node`, `restarts` and
/// `state_changed_at` are Haven's additions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Dyno {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub process_type: String,
    pub state: String,
    pub command: String,
    pub size: String,
    pub attach_url: Option<String>,
    pub app: AppRef,
    pub release: DynoRelease,
    pub created_at: String,
    pub updated_at: String,
    pub node: Option<NamedRef>,
    pub restarts: u32,
    pub state_changed_at: String,
    pub exit_code: Option<i32>,
    /// The host port a web dyno listens on, on its node's address.
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DynoRelease {
    pub id: String,
    pub version: u64,
}

/// `POST /apps/{app}/dynos` body: a one-off dyno.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DynoCreate {
    pub command: String,
    #[serde(default)]
    pub attach: Option<bool>,
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub size: Option<String>,
    #[serde(rename = "type", default)]
    pub process_type: Option<String>,
}

/// A formation dyno the scheduler could not place (`GET /apps/{app}/unplaced-dynos`,
/// Haven's addition).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnplacedDyno {
    pub name: String,
    #[serde(rename = "type")]
    pub process_type: String,
    pub reason: String,
}

/// A domain, as `GET /apps/{app}/domains/{id-or-hostname}` answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Domain {
    pub id: String,
    pub hostname: String,
    /// `heroku` (the app's default host) or `custom`.
    pub kind: String,
    pub cname: Option<String>,
    pub status: String,
    pub acm_status: Option<String>,
    pub acm_status_reason: Option<String>,
    pub sni_endpoint: Option<IdRef>,
    pub app: AppRef,
    pub created_at: String,
    pub updated_at: String,
}

/// `POST /apps/{app}/domains` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DomainCreate {
    pub hostname: String,
}

/// Where a build's source comes from: `source_blob` of `POST /apps/{app}/builds`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceBlob {
    pub url: String,
    #[serde(default)]
    pub checksum: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub version_description: Option<String>,
}

/// A buildpack reference: `{url, name}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BuildpackRef {
    pub url: String,
    #[serde(default)]
    pub name: String,
}

/// `POST /apps/{app}/builds` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BuildCreate {
    pub source_blob: SourceBlob,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buildpacks: Option<Vec<BuildpackRef>>,
}

/// A build, as `GET /apps/{app}/builds/{id}` answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Build {
    pub id: String,
    pub app: IdRef,
    pub buildpacks: Option<Vec<BuildpackRef>>,
    pub output_stream_url: String,
    pub source_blob: SourceBlob,
    pub release: Option<IdRef>,
    pub slug: Option<IdRef>,
    pub stack: String,
    pub status: String,
    pub user: UserRef,
    pub created_at: String,
    pub updated_at: String,
}

/// `POST /sources` answer: where to upload a source tarball and where builds fetch it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Source {
    pub source_blob: SourceUrls,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceUrls {
    pub get_url: String,
    pub put_url: String,
}

/// One of `GET /apps/{app}/buildpack-installations`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BuildpackInstallation {
    pub ordinal: u32,
    pub buildpack: BuildpackRef,
}

/// `PUT /apps/{app}/buildpack-installations` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BuildpackInstallationsUpdate {
    pub updates: Vec<BuildpackUpdate>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BuildpackUpdate {
    pub buildpack: String,
}

/// A slug, as `GET /apps/{app}/slugs/{id}` answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Slug {
    pub id: String,
    pub blob: SlugBlob,
    pub buildpack_provided_description: Option<String>,
    pub checksum: Option<String>,
    pub commit: Option<String>,
    pub commit_description: Option<String>,
    pub process_types: BTreeMap<String, String>,
    pub size: Option<u64>,
    pub stack: NamedRef,
    pub created_at: String,
    pub updated_at: String,
    /// Haven-only: the ids of the nodes that hold the compressed slug.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holders: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SlugBlob {
    pub method: String,
    pub url: String,
}

/// A log drain, as `GET /apps/{app}/log-drains/{id-or-url-or-token}` answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogDrain {
    pub id: String,
    pub url: String,
    /// Sent with every line, so the receiver can tell which app a line is from.
    pub token: String,
    pub addon: Option<serde_json::Value>,
    pub app: AppRef,
    pub created_at: String,
    pub updated_at: String,
}

/// `POST /apps/{app}/log-drains` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogDrainCreate {
    pub url: String,
}

/// `POST /apps/{app}/log-sessions` body (all optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogSessionCreate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dyno: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub process_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<bool>,
}

/// `POST /apps/{app}/log-sessions` answer: where to read the session's lines.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogSession {
    pub id: String,
    pub logplex_url: String,
    pub created_at: String,
    pub updated_at: String,
}

/// The `{}` answer of calls that only start something (dyno restarts and stops, 202).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Accepted {}

/// Parses a `Range` header value such as `id ..; max=200, order=desc` or
/// `version 5..; max=10;`. Lenient about separators, as Heroku is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSpec {
    pub field: String,
    pub start: Option<String>,
    pub end: Option<String>,
    pub max: usize,
    pub descending: bool,
}

/// The default and largest page sizes of list calls.
pub const DEFAULT_PAGE: usize = 200;
pub const MAX_PAGE: usize = 1000;

impl RangeSpec {
    /// Parses a `Range` header. Errors name what is wrong.
    pub fn parse(header: &str) -> Result<RangeSpec, String> {
        let header = header.trim();
        let mut parts = header
            .split([';', ','])
            .map(str::trim)
            .filter(|p| !p.is_empty());
        let first = parts
            .next()
            .ok_or_else(|| "empty Range header".to_string())?;
        let (field, range) = match first.split_once(char::is_whitespace) {
            Some((f, r)) => (f.trim(), r.trim()),
            None => (first, ""),
        };
        if field.is_empty() || !field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid Range field {field:?}"));
        }
        let (start, end) = if range.is_empty() {
            (None, None)
        } else {
            let (s, e) = range
                .split_once("..")
                .ok_or_else(|| format!("invalid Range {range:?}: expected START..END"))?;
            let s = s.trim();
            let e = e.trim();
            (
                (!s.is_empty()).then(|| s.to_string()),
                (!e.is_empty()).then(|| e.to_string()),
            )
        };
        let mut spec = RangeSpec {
            field: field.to_string(),
            start,
            end,
            max: DEFAULT_PAGE,
            descending: false,
        };
        for p in parts {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| format!("invalid Range parameter {p:?}"))?;
            match k.trim() {
                "max" => {
                    let n: usize = v
                        .trim()
                        .parse()
                        .map_err(|_| format!("invalid Range max {v:?}"))?;
                    if n == 0 {
                        return Err("Range max must be at least 1".into());
                    }
                    spec.max = n.min(MAX_PAGE);
                }
                "order" => match v.trim() {
                    "asc" => spec.descending = false,
                    "desc" => spec.descending = true,
                    o => return Err(format!("invalid Range order {o:?}: use asc or desc")),
                },
                other => return Err(format!("unknown Range parameter {other:?}")),
            }
        }
        Ok(spec)
    }

    /// Renders as a header value (used for `Next-Range`).
    pub fn render(&self) -> String {
        format!(
            "{} {}..{}; max={}{}",
            self.field,
            self.start.as_deref().unwrap_or(""),
            self.end.as_deref().unwrap_or(""),
            self.max,
            if self.descending { ", order=desc" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_leniently() {
        let cases: &[(&str, RangeSpec)] = &[
            (
                "id ..",
                RangeSpec {
                    field: "id".into(),
                    start: None,
                    end: None,
                    max: 200,
                    descending: false,
                },
            ),
            (
                "id ..; max=10;",
                RangeSpec {
                    field: "id".into(),
                    start: None,
                    end: None,
                    max: 10,
                    descending: false,
                },
            ),
            (
                "version 5..; max=2, order=desc",
                RangeSpec {
                    field: "version".into(),
                    start: Some("5".into()),
                    end: None,
                    max: 2,
                    descending: true,
                },
            ),
            (
                "name a..z; max=5000",
                RangeSpec {
                    field: "name".into(),
                    start: Some("a".into()),
                    end: Some("z".into()),
                    max: 1000,
                    descending: false,
                },
            ),
            (
                "id",
                RangeSpec {
                    field: "id".into(),
                    start: None,
                    end: None,
                    max: 200,
                    descending: false,
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(&RangeSpec::parse(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn rejects_bad_ranges() {
        for bad in [
            "",
            "id ..; max=x",
            "id ..; max=0",
            "id ..; order=up",
            "id 5",
            "i-d ..",
            "id ..; foo=1",
        ] {
            assert!(RangeSpec::parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn expires_in_accepts_numbers_and_strings() {
        for (body, want) in [
            (r#"{"expires_in":3600}"#, Some(3600)),
            (r#"{"expires_in":"3600"}"#, Some(3600)),
            (r#"{"expires_in":null}"#, None),
            (r#"{}"#, None),
        ] {
            let c: AuthorizationCreate = serde_json::from_str(body).unwrap();
            assert_eq!(c.expires_in, want, "{body}");
        }
        let err = serde_json::from_str::<AuthorizationCreate>(r#"{"expires_in":"soon"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("whole number"), "{err}");
    }

    #[test]
    fn ranges_the_heroku_cli_sends_parse() {
        let spec = RangeSpec::parse("version ..; order=desc,max=1").unwrap();
        assert_eq!((spec.max, spec.descending), (1, true));
        let spec = RangeSpec::parse("version ..; max=15, order=desc").unwrap();
        assert_eq!((spec.max, spec.descending), (15, true));
        let spec = RangeSpec::parse("id ..; max=1000;").unwrap();
        assert_eq!((spec.field.as_str(), spec.max), ("id", 1000));
    }

    #[test]
    fn quantity_accepts_numbers_and_strings() {
        let u: FormationUpdate = serde_json::from_str(r#"{"type":"web","quantity":"+1"}"#).unwrap();
        assert_eq!(u.quantity, Some(Quantity::Text("+1".into())));
        let u: FormationUpdate =
            serde_json::from_str(r#"{"quantity":3,"size":"standard-2x"}"#).unwrap();
        assert_eq!(u.quantity, Some(Quantity::Number(3)));
    }
}
