//! The HTTP API every node serves: a subset of the Heroku Platform API v3, plus Haven's
//! `/cluster/...` calls.
//!
//! Cross-cutting rules live here, in one middleware: every response carries a
//! `Request-Id`; an `Accept` header must allow JSON or Heroku's v3 media type; every call is
//! authenticated ([`authenticate`]) by a bearer token (or Basic with the token as password)
//! whose sha256 is looked up in the replicated tokens — or, on the login call
//! `POST /oauth/authorizations` only, by Basic email and password; every error is
//! `{"id","message"}`, including the ones axum itself produces.
//!
//! Every handler asks the one authorization rule, [`access::authorize`] (caller, action,
//! app), before it reads or writes: through [`with_app`] and [`app_id`], which resolve the
//! app and ask it, or [`allow`] for calls about no app. Handlers (one module per resource)
//! choose ids and times, build a command, call [`HavenRaft::write`] and answer from the
//! command's output; reads pass the read barrier first. Model → wire conversion is by hand,
//! one function per resource.

pub mod access;
mod account;
mod addon_actions;
mod addon_attachments;
mod addon_providers;
mod addons;
mod app_metrics;
mod apps;
mod authorizations;
mod body;
mod builds;
mod cluster;
mod cluster_backup;
mod collaborators;
mod config_vars;
pub mod credentials;
mod domains;
mod dynos;
mod error;
mod fanout;
mod formation;
#[cfg(test)]
mod heroku_cli_tests;
mod log_drains;
pub mod log_sessions;
mod node_removal;
mod paging;
mod pg_backups;
mod pg_credentials;
mod releases;
pub mod rendezvous;
mod repos;
mod scheme;
mod sni_endpoints;
mod stacks;
#[cfg(test)]
mod tests;
mod users;
#[cfg(test)]
mod wire_tests;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use base64::Engine;
use chrono::Utc;
use haven_raft::command::{Actor, Command, CommandOutput};
use haven_raft::model::{self, NodeId};
use haven_raft::HavenRaft;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use access::{Action, Caller};
pub use error::ApiError;

/// Everything a request handler needs.
#[derive(Clone)]
pub struct ApiContext {
    pub raft: HavenRaft,
    pub node_id: NodeId,
    pub builder: crate::builder::Builder,
    /// This node's dyno manager.
    pub dynos: crate::dynos::DynoManager,
    pub metrics: crate::metrics::Metrics,
    pub node_name: String,
    /// This node's app log buffers (API actions are logged as `app[api]`).
    pub logs: crate::logs::Logs,
    pub sessions: log_sessions::Sessions,
    /// Dials other nodes (log sessions read every node).
    pub peers: crate::peer::QuicConnector,
    /// HTTP client for other nodes' APIs (build outputs, sources): trusts the cluster CA.
    pub http: reqwest::Client,
    /// The cluster CA certificate (PEM), for the git hook's client.
    pub ca_pem: String,
    /// Captures and restores Postgres backups from this node.
    pub backups: crate::addons::backups::Backups,
    /// `heroku run` rendezvous secrets handed out by this node.
    pub rendezvous: rendezvous::Rendezvous,
    /// This node's platform events (`GET /cluster/events`).
    pub events: crate::events::Events,
    /// Follows connected repositories (a webhook call wakes it).
    pub repos: crate::repos::Repos,
}

impl Caller {
    /// The actor of a command made now. Times are chosen here, by the proposer, so that
    /// applying the command is deterministic.
    fn actor(&self) -> Actor {
        Actor {
            email: self.email.clone(),
            at: Utc::now(),
        }
    }
}

/// The API's routes, with auth, Request-Id and Accept handling.
pub fn router(ctx: ApiContext) -> Router {
    Router::new()
        .route("/account", get(account::info))
        .route(
            "/account/password",
            axum::routing::put(account::set_password),
        )
        .route("/users/{user}/apps", get(apps::list_of_user))
        .route(
            "/oauth/authorizations",
            get(authorizations::list).post(authorizations::create),
        )
        .route(
            "/oauth/authorizations/{id}",
            get(authorizations::info).delete(authorizations::delete),
        )
        .route("/cluster/users", get(users::list).post(users::create))
        .route(
            "/cluster/addon-providers",
            get(addon_providers::list).post(addon_providers::create),
        )
        .route(
            "/cluster/addon-providers/{name}",
            axum::routing::delete(addon_providers::delete),
        )
        .route(
            "/cluster/users/{user}",
            get(users::info).delete(users::delete),
        )
        .route(
            "/apps/{app}/collaborators",
            get(collaborators::list).post(collaborators::create),
        )
        .route(
            "/apps/{app}/collaborators/{collaborator}",
            get(collaborators::info).delete(collaborators::delete),
        )
        .route("/apps", get(apps::list).post(apps::create))
        .route(
            "/apps/{app}",
            get(apps::info).patch(apps::update).delete(apps::delete),
        )
        .route(
            "/apps/{app}/config-vars",
            get(config_vars::info).patch(config_vars::update),
        )
        .route(
            "/apps/{app}/releases",
            get(releases::list).post(releases::create),
        )
        .route("/apps/{app}/releases/{release}", get(releases::info))
        .route(
            "/apps/{app}/releases/{release}/config-vars",
            get(config_vars::of_release),
        )
        .route(
            "/apps/{app}/formation",
            get(formation::list).patch(formation::batch_update),
        )
        .route(
            "/apps/{app}/formation/{formation}",
            get(formation::info).patch(formation::update),
        )
        .route("/sources", post(builds::create_source))
        .route(
            "/sources/{id}",
            get(builds::get_source).put(builds::put_source),
        )
        .route("/apps/{app}/builds", get(builds::list).post(builds::create))
        .route("/apps/{app}/builds/{build}", get(builds::info))
        .route("/apps/{app}/builds/{build}/output", get(builds::output))
        .route("/apps/{app}/slugs/{slug}", get(builds::slug_info))
        .route("/apps/{app}/slugs/{slug}/blob", get(builds::slug_blob))
        .route(
            "/apps/{app}/buildpack-installations",
            get(builds::list_buildpacks).put(builds::set_buildpacks),
        )
        .route(
            "/apps/{app}/dynos",
            get(dynos::list)
                .post(dynos::create)
                .delete(dynos::restart_all),
        )
        .route(
            "/apps/{app}/dynos/{dyno}",
            get(dynos::info).delete(dynos::restart_one),
        )
        .route("/apps/{app}/dynos/{dyno}/attach", get(dynos::attach))
        .route(
            "/apps/{app}/dynos/{dyno}/actions/stop",
            post(dynos::stop_one),
        )
        .route(
            "/apps/{app}/formations/{ptype}/dynos",
            axum::routing::delete(dynos::restart_type),
        )
        .route(
            "/apps/{app}/formations/{ptype}",
            axum::routing::delete(dynos::restart_type),
        )
        .route(
            "/apps/{app}/formations/{ptype}/actions/stop",
            post(dynos::stop_type),
        )
        .route("/apps/{app}/unplaced-dynos", get(dynos::unplaced))
        .route(
            "/apps/{app}/domains",
            get(domains::list).post(domains::create),
        )
        .route(
            "/apps/{app}/domains/{domain}",
            get(domains::info).delete(domains::delete),
        )
        .route(
            "/apps/{app}/pg-backups",
            get(pg_backups::list).post(pg_backups::capture),
        )
        .route(
            "/apps/{app}/pg-backups/{backup}",
            get(pg_backups::info).delete(pg_backups::delete),
        )
        .route(
            "/apps/{app}/pg-backups/{backup}/blob",
            get(pg_backups::download),
        )
        .route(
            "/apps/{app}/pg-backups/{backup}/actions/restore",
            post(pg_backups::restore),
        )
        .route(
            "/apps/{app}/pg-backup-schedules",
            get(pg_backups::schedules).post(pg_backups::schedule),
        )
        .route(
            "/apps/{app}/pg-backup-schedules/{database}",
            axum::routing::delete(pg_backups::unschedule),
        )
        .route(
            "/apps/{app}/sni-endpoints",
            get(sni_endpoints::list).post(sni_endpoints::create),
        )
        .route(
            "/apps/{app}/sni-endpoints/{endpoint}",
            get(sni_endpoints::info)
                .patch(sni_endpoints::update)
                .delete(sni_endpoints::delete),
        )
        .route("/addon-services", get(addons::services))
        .route("/addon-services/{service}", get(addons::service))
        .route("/addon-services/{service}/plans", get(addons::plans))
        .route("/addon-services/{service}/plans/{plan}", get(addons::plan))
        .route("/addons", get(addons::list_all))
        .route("/addons/{addon}", get(addons::info_any))
        .route(
            "/addons/{addon}/addon-attachments",
            get(addon_attachments::of_addon),
        )
        .route("/apps/{app}/addons", get(addons::list).post(addons::create))
        .route(
            "/apps/{app}/addons/{addon}",
            get(addons::info)
                .delete(addons::delete)
                .patch(addons::update),
        )
        .route(
            "/apps/{app}/addons/{addon}/actions/rotate-credentials",
            post(pg_credentials::rotate),
        )
        .route(
            "/addon-attachments",
            get(addon_attachments::list_all).post(addon_attachments::create),
        )
        .route(
            "/addon-attachments/{id}",
            get(addon_attachments::info_any).delete(addon_attachments::delete),
        )
        .route(
            "/apps/{app}/addon-attachments",
            get(addon_attachments::list),
        )
        .route(
            "/apps/{app}/addon-attachments/{attachment}",
            get(addon_attachments::info),
        )
        .route("/metrics", get(cluster::metrics))
        .route("/apps/{app}/metrics", get(app_metrics::app_metrics))
        .route("/apps/{app}/log-sessions", post(log_sessions::create))
        .route(
            "/apps/{app}/log-drains",
            get(log_drains::list).post(log_drains::create),
        )
        .route(
            "/apps/{app}/log-drains/{drain}",
            get(log_drains::info).delete(log_drains::delete),
        )
        .route("/log-sessions/{id}", get(log_sessions::open))
        .route("/buildpacks/{name}", get(builds::registry_lookup))
        .route("/actions/addons/resolve", post(addon_actions::resolve))
        .route(
            "/actions/addon-attachments/resolve",
            post(addon_actions::resolve_attachment),
        )
        .route(
            "/addons/{addon}/config",
            get(addon_actions::config).patch(addon_actions::update_config),
        )
        .route("/cluster/status", get(cluster::status))
        .route("/cluster/nodes", get(cluster::nodes))
        .route("/cluster/events", get(cluster::events))
        .route("/cluster/backup", get(cluster_backup::backup))
        .route("/stacks", get(stacks::list))
        .route("/stacks/{stack}", get(stacks::info))
        .route("/stacks/{stack}/images/{kind}", put(stacks::import))
        .route(
            "/apps/{app}/repo",
            get(repos::info)
                .put(repos::connect)
                .delete(repos::disconnect),
        )
        .route("/apps/{app}/repo/hook", post(repos::hook))
        .route(
            "/cluster/nodes/{node}",
            axum::routing::patch(cluster::update_node).delete(node_removal::remove),
        )
        .fallback(|| async {
            ApiError::not_found("no such resource; see the API reference in README.md")
        })
        .layer(axum::middleware::from_fn_with_state(ctx.clone(), guard))
        .with_state(ctx)
}

pub use haven_api::valid_request_id;

/// The request id of a request: the client's `X-Request-Id` or `Request-Id` if valid, else
/// a new uuid.
pub fn request_id(headers: &HeaderMap) -> String {
    ["x-request-id", "request-id"]
        .iter()
        .filter_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .find(|v| valid_request_id(v))
        .map(str::to_string)
        .unwrap_or_else(|| Uuid::new_v4().to_string())
}

/// Whether an `Accept` header allows the v3 JSON this API answers: `*/*`,
/// `application/json`, or `application/vnd.heroku+json` with version 3 or a `3.*` variant.
/// Any one entry of a list suffices; q-values are ignored.
pub fn acceptable(accept: &str) -> bool {
    if accept.trim().is_empty() {
        return true;
    }
    accept.split(',').any(|entry| {
        let mut params = entry.split(';').map(str::trim);
        let media = params.next().unwrap_or("").to_ascii_lowercase();
        match media.as_str() {
            "*/*" | "application/*" | "application/json" => true,
            "application/vnd.heroku+json" => params.all(|p| match p.split_once('=') {
                Some((k, v)) if k.trim().eq_ignore_ascii_case("version") => {
                    let v = v.trim().trim_matches('"');
                    v == "3" || v.starts_with("3.")
                }
                _ => true,
            }),
            _ => false,
        }
    })
}

/// What an `Authorization` header carries: a secret (a token, or a password), and with
/// Basic the username (ignored for tokens, the email for passwords).
#[derive(Debug, PartialEq, Eq)]
pub struct Credentials {
    pub username: Option<String>,
    pub secret: String,
}

/// The credentials of an `Authorization` header: `Bearer TOKEN`, or Basic `USER:SECRET`,
/// as git and the Heroku CLI send them.
pub fn credentials_from_authorization(value: &str) -> Option<Credentials> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!rest.is_empty()).then(|| Credentials {
            username: None,
            secret: rest.to_string(),
        });
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        return (!password.is_empty()).then(|| Credentials {
            username: (!user.is_empty()).then(|| user.to_string()),
            secret: password.to_string(),
        });
    }
    None
}

/// The token (or password) in an `Authorization` header.
pub fn token_from_authorization(value: &str) -> Option<String> {
    credentials_from_authorization(value).map(|c| c.secret)
}

/// sha256 of a token, hex: the key of the replicated tokens.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The middleware: Accept, auth, Request-Id, and Heroku's error shape for every error.
async fn guard(State(ctx): State<ApiContext>, mut req: Request, next: Next) -> Response {
    let rid = request_id(req.headers());
    // Passwords are taken only where a client trades them for a token (`hctl login`, the
    // Heroku CLI's `login -i`): elsewhere a request would cost an argon2 hash.
    let password_login =
        req.method() == Method::POST && req.uri().path() == "/oauth/authorizations";
    let public = public_call(
        req.method(),
        req.uri().path(),
        req.headers().contains_key(header::AUTHORIZATION),
    );
    let checked = match check_accept(req.headers(), req.uri().path()) {
        Err(e) => Err(e),
        Ok(()) if public => Ok(None),
        Ok(()) => authenticate(&ctx, req.headers(), password_login)
            .await
            .map(Some),
    };
    let mut resp = match checked {
        Err(e) => e.into_response(),
        Ok(caller) => {
            if let Some(caller) = caller {
                req.extensions_mut().insert(caller);
            }
            let tls = scheme::over_tls(&req);
            json_errors(scheme::scope(tls, next.run(req)).await).await
        }
    };
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut().insert("request-id", v);
    }
    resp
}

/// Calls answered without a token, because the Heroku CLI sends them none: the buildpack
/// registry stub (public names), and opening a log session without an `Authorization`
/// header, whose unguessable, single-use id is then the capability (the stream is the
/// session maker's, checked again when it is opened); and a connected repository's
/// webhook, which a git host signs with the link's secret (checked by its handler).
pub fn public_call(method: &Method, path: &str, has_authorization: bool) -> bool {
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
    };
    let repo_hook = path
        .strip_prefix("/apps/")
        .and_then(|rest| rest.strip_suffix("/repo/hook"))
        .is_some_and(|app| !app.is_empty() && !app.contains('/'));
    (*method == Method::GET
        && (under("/buildpacks/") || (!has_authorization && under("/log-sessions/"))))
        || (*method == Method::POST && repo_hook)
}

fn check_accept(headers: &HeaderMap, path: &str) -> Result<(), ApiError> {
    // A log session's stream is Server-Sent Events (`Accept: text/event-stream`).
    if path.starts_with("/log-sessions/") {
        return Ok(());
    }
    if let Some(accept) = headers.get(header::ACCEPT) {
        // A header that is not even text allows nothing we answer.
        if !accept.to_str().is_ok_and(acceptable) {
            return Err(ApiError::not_acceptable());
        }
    }
    Ok(())
}

/// What the replicated state says about a token.
enum TokenLookup {
    Caller(Caller),
    /// Known but past its expiry, or its user is gone.
    Refused,
    Unknown,
}

fn lookup_token(state: &model::State, hash: &str, now: chrono::DateTime<Utc>) -> TokenLookup {
    let Some(t) = state.token(hash) else {
        return TokenLookup::Unknown;
    };
    match state.users.get(&t.user_id) {
        Some(u) if !t.expired(now) => TokenLookup::Caller(Caller {
            email: u.email.clone(),
            user_id: u.id,
            admin: u.admin,
        }),
        _ => TokenLookup::Refused,
    }
}

/// Who sent a request: the user of its token (Bearer, or Basic with the token as
/// password), or — with `allow_password` — the user whose email and password came as
/// Basic credentials. Anything else is 401 with Heroku's message. Used by the API's
/// middleware and by git pushes.
pub async fn authenticate(
    ctx: &ApiContext,
    headers: &HeaderMap,
    allow_password: bool,
) -> Result<Caller, ApiError> {
    let creds = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(credentials_from_authorization)
        .ok_or_else(ApiError::unauthorized)?;
    let hash = token_hash(&creds.secret);
    // The local replica first, without a barrier: revocations and removals are Raft
    // writes, applied here within a heartbeat.
    match ctx.raft.with_state(|s| lookup_token(s, &hash, Utc::now())) {
        TokenLookup::Caller(c) => return Ok(c),
        TokenLookup::Refused => return Err(ApiError::unauthorized()),
        TokenLookup::Unknown => {}
    }
    // A token made through another node a moment ago may not be applied here yet.
    if ctx.raft.read_barrier().await.is_ok() {
        match ctx.raft.with_state(|s| lookup_token(s, &hash, Utc::now())) {
            TokenLookup::Caller(c) => return Ok(c),
            TokenLookup::Refused => return Err(ApiError::unauthorized()),
            TokenLookup::Unknown => {}
        }
    }
    let Some(email) = creds.username.filter(|_| allow_password) else {
        return Err(ApiError::unauthorized());
    };
    let user = ctx.raft.with_state(|s| {
        s.find_user(&email).and_then(|u| {
            u.password_hash.clone().map(|h| {
                (
                    Caller {
                        email: u.email.clone(),
                        user_id: u.id,
                        admin: u.admin,
                    },
                    h,
                )
            })
        })
    });
    // An unknown email costs the same argon2 check as a wrong password, so that the
    // answer's timing does not tell which emails have accounts.
    let (caller, password_hash) = match user {
        Some((caller, hash)) => (Some(caller), hash),
        None => (None, credentials::decoy_hash().to_string()),
    };
    let secret = creds.secret;
    let ok =
        tokio::task::spawn_blocking(move || credentials::verify_password(&secret, &password_hash))
            .await
            .unwrap_or(false);
    match caller {
        Some(caller) if ok => Ok(caller),
        _ => Err(ApiError::unauthorized()),
    }
}

/// Rewrites an error that a layer below the handlers answered as plain text (axum's
/// rejections, 405 from the router) into `{"id","message"}`.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let mut out = ApiError::from_status(status, &text).into_response();
    // Keep headers such as `Allow` on a 405.
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

// ---- helpers shared by the handlers ------------------------------------------------

/// Waits at the read barrier, then reads this node's replica.
async fn read<R>(ctx: &ApiContext, f: impl FnOnce(&model::State) -> R) -> Result<R, ApiError> {
    ctx.raft.read_barrier().await?;
    Ok(ctx.raft.with_state(f))
}

/// Asks the authorization rule about a call that concerns no app (the caller's account,
/// cluster operations). Cluster reads that must work without a quorum call this without a
/// barrier: the caller's admin flag never changes.
fn allow(caller: &Caller, action: Action) -> Result<(), ApiError> {
    access::authorize(caller, action, None).map_err(ApiError::from)
}

/// Runs `f` on the app `key` (name or id) after the read barrier, if `caller` may do
/// `action` to it; an app they may not see is "Couldn't find that app.". Handlers take
/// only what they need: cloning a whole app would copy its release history.
async fn with_app<R>(
    ctx: &ApiContext,
    caller: &Caller,
    action: Action,
    key: &str,
    f: impl FnOnce(&model::State, &model::App) -> R,
) -> Result<R, ApiError> {
    read(ctx, |s| {
        let app = s.find_app(key);
        access::authorize(caller, action, app)?;
        app.map(|a| f(s, a)).ok_or(access::Denied::NoSuchApp)
    })
    .await?
    .map_err(ApiError::from)
}

/// The id of app `key`, for a write `caller` may do (`action`). The local replica decides
/// without a barrier when it knows the app and the caller owns it or is an admin (neither
/// changes while the app lives; the command answers 404 if the app is gone); anything else
/// — a collaborator, whose access may just have been removed, or a name this node does
/// not know yet — is decided after the barrier.
async fn app_id(
    ctx: &ApiContext,
    caller: &Caller,
    action: Action,
    key: &str,
) -> Result<Uuid, ApiError> {
    let local = ctx.raft.with_state(|s| {
        s.find_app(key)
            .filter(|a| caller.admin || a.owner == caller.user_id)
            .map(|a| a.id)
    });
    match local {
        Some(id) => Ok(id),
        None => with_app(ctx, caller, action, key, |_, a| a.id).await,
    }
}

/// Proposes a command; cluster trouble and rejections become API errors. A rejected
/// command's "app ... not found" is worded like Heroku.
async fn write(ctx: &ApiContext, cmd: Command) -> Result<CommandOutput, ApiError> {
    match ctx.raft.write(cmd).await? {
        Ok(out) => Ok(out),
        Err(haven_raft::command::CommandError::AppNotFound(_)) => Err(ApiError::app_not_found()),
        Err(e) => Err(e.into()),
    }
}

/// The app a command's output carries.
fn output_app(out: CommandOutput) -> Result<model::App, ApiError> {
    match out {
        CommandOutput::App(a) => Ok(*a),
        CommandOutput::Release { app, .. }
        | CommandOutput::Formation { app, .. }
        | CommandOutput::Domain { app, .. }
        | CommandOutput::Drain { app, .. } => Ok(*app),
        CommandOutput::Done
        | CommandOutput::Build(_)
        | CommandOutput::Dynos(_)
        | CommandOutput::Addon { .. }
        | CommandOutput::Token(_)
        | CommandOutput::SniEndpoint(_)
        | CommandOutput::Backup(_) => Err(ApiError::internal("the command returned no app")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod unit_tests {
    use super::*;

    #[test]
    fn request_id_prefers_valid_client_ids() {
        let mut h = HeaderMap::new();
        let fresh = request_id(&h);
        assert!(fresh.parse::<Uuid>().is_ok());
        h.insert(
            "request-id",
            HeaderValue::from_static("bbbbbbbbbbbbbbbbbbbbbbbb"),
        );
        assert_eq!(request_id(&h), "bbbbbbbbbbbbbbbbbbbbbbbb");
        h.insert(
            "x-request-id",
            HeaderValue::from_static("aaaaaaaaaaaaaaaaaaaaaaaa"),
        );
        assert_eq!(request_id(&h), "aaaaaaaaaaaaaaaaaaaaaaaa");
        h.insert("x-request-id", HeaderValue::from_static("bad id"));
        assert_eq!(request_id(&h), "bbbbbbbbbbbbbbbbbbbbbbbb");
        h.insert("request-id", HeaderValue::from_static("short"));
        assert!(request_id(&h).parse::<Uuid>().is_ok());
    }

    #[test]
    fn accept_headers() {
        for ok in [
            "application/vnd.heroku+json; version=3",
            "application/vnd.heroku+json;version=3",
            "application/vnd.heroku+json; version=3.sdk",
            "application/vnd.heroku+json; version=3.variant",
            "application/vnd.heroku+json",
            "Application/JSON",
            "application/json",
            "application/json; charset=utf-8",
            "*/*",
            "application/*",
            "",
            "text/html, application/json;q=0.9",
            "text/html, */*;q=0.1",
        ] {
            assert!(acceptable(ok), "{ok}");
        }
        for bad in [
            "text/html",
            "text/plain",
            "application/vnd.heroku+json; version=2",
            "application/vnd.heroku+json; version=30",
            "application/xml",
            "image/*",
        ] {
            assert!(!acceptable(bad), "{bad}");
        }
    }

    #[test]
    fn authorization_schemes() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let cases: Vec<(String, Option<&str>)> = vec![
            ("Bearer abc".into(), Some("abc")),
            ("bearer  abc ".into(), Some("abc")),
            (format!("Basic {}", b64("any:tok")), Some("tok")),
            (format!("Basic {}", b64(":tok")), Some("tok")),
            (
                format!("basic {}", b64("me@x.org:t:with:colons")),
                Some("t:with:colons"),
            ),
            (format!("Basic {}", b64("user:")), None),
            (format!("Basic {}", b64("nocolon")), None),
            ("Basic !!!".into(), None),
            ("Token abc".into(), None),
            ("Bearer".into(), None),
            ("Bearer ".into(), None),
            ("".into(), None),
        ];
        for (header, want) in cases {
            assert_eq!(
                token_from_authorization(&header).as_deref(),
                want,
                "{header}"
            );
        }
        let c = credentials_from_authorization(&format!("Basic {}", b64("Me@X.org:pw"))).unwrap();
        assert_eq!(
            (c.username.as_deref(), c.secret.as_str()),
            (Some("Me@X.org"), "pw")
        );
        let c = credentials_from_authorization("Bearer t").unwrap();
        assert_eq!((c.username, c.secret.as_str()), (None, "t"));
    }

    #[test]
    fn token_hash_is_sha256_hex() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
