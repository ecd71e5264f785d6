//! Request handlers, one per API call.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use haven_api as w;
use haven_raft::command::{Actor, Command, CommandOutput, FormationChange, QuantityChange};
use haven_raft::model::{self, validate_app_name, validate_config_key};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::paging::{page, Field, Key};
use super::{wire, ApiContext, ApiError, Caller};

type ApiResult = Result<Response, ApiError>;

fn actor(caller: &Caller) -> Actor {
    Actor { email: caller.email.clone(), at: Utc::now() }
}

/// Parses a JSON body; an empty body counts as `{}` where `empty_ok`.
fn json_body<T: DeserializeOwned>(body: &Bytes, empty_ok: bool) -> Result<T, ApiError> {
    let text: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        if empty_ok {
            b"{}"
        } else {
            return Err(ApiError::bad_request("the request body is empty; send a JSON object"));
        }
    } else {
        body
    };
    serde_json::from_slice(text).map_err(|e| ApiError::bad_request(format!("invalid JSON in the request body: {e}")))
}

/// Waits at the read barrier, then reads.
async fn read<R>(ctx: &ApiContext, f: impl FnOnce(&model::State) -> R) -> Result<R, ApiError> {
    ctx.raft.read_barrier().await?;
    Ok(ctx.raft.with_state(f))
}

/// Runs `f` on the app `key` (name or id) after the read barrier. Handlers take only what
/// they need: cloning a whole app would copy its release history.
async fn with_app<R>(ctx: &ApiContext, key: &str, f: impl FnOnce(&model::State, &model::App) -> R) -> Result<R, ApiError> {
    read(ctx, |s| s.find_app(key).map(|a| f(s, a))).await?.ok_or_else(ApiError::app_not_found)
}

/// The id of app `key`, for a write. A write needs no read barrier: the local replica
/// resolves names it knows, and the command itself is judged on the leader. Only a name
/// this replica does not know yet (just created elsewhere) waits at the barrier.
async fn app_id(ctx: &ApiContext, key: &str) -> Result<Uuid, ApiError> {
    match ctx.raft.with_state(|s| s.find_app(key).map(|a| a.id)) {
        Some(id) => Ok(id),
        None => with_app(ctx, key, |_, a| a.id).await,
    }
}

async fn write(ctx: &ApiContext, cmd: Command) -> Result<CommandOutput, ApiError> {
    Ok(ctx.raft.write(cmd).await??)
}

fn paged<T: serde::Serialize>(
    items: Vec<T>,
    headers: &HeaderMap,
    fields: &[Field<T>],
) -> ApiResult {
    let range = headers.get("range").and_then(|v| v.to_str().ok());
    let (status, resp_headers, items) = page(items, range, fields)?;
    Ok((status, resp_headers, Json(items)).into_response())
}

fn app_of(out: CommandOutput) -> Result<model::App, ApiError> {
    match out {
        CommandOutput::App(a) => Ok(*a),
        CommandOutput::Release { app, .. } | CommandOutput::Formation { app, .. } => Ok(*app),
        CommandOutput::Done => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "the command returned no app")),
    }
}

// ---- account -----------------------------------------------------------------------

pub async fn account(State(ctx): State<ApiContext>, Extension(caller): Extension<Caller>) -> ApiResult {
    let user = read(&ctx, |s| s.users.get(&caller.user_id).cloned())
        .await?
        .ok_or_else(|| ApiError::not_found("this token's user no longer exists"))?;
    Ok(Json(wire::account(&user)).into_response())
}

// ---- apps --------------------------------------------------------------------------

const ADJECTIVES: &[&str] = &["quiet", "sharp", "calm", "bold", "bright", "gentle", "swift", "misty", "sunny", "lucky", "brave", "noble"];
const NOUNS: &[&str] = &["river", "meadow", "harbor", "forest", "island", "canyon", "summit", "valley", "garden", "lagoon", "prairie", "glacier"];

/// A Heroku-like name such as `sharp-river-4821`.
pub fn random_app_name() -> String {
    let mut rng = rand::thread_rng();
    format!(
        "{}-{}-{:04}",
        ADJECTIVES.choose(&mut rng).unwrap_or(&"haven"),
        NOUNS.choose(&mut rng).unwrap_or(&"app"),
        rng.gen_range(0..10000)
    )
}

fn app_fields() -> Vec<Field<w::App>> {
    vec![
        Field { name: "name", key: |a| Key::Text(a.name.clone()) },
        Field { name: "id", key: |a| Key::Text(a.id.clone()) },
    ]
}

pub async fn list_apps(State(ctx): State<ApiContext>, headers: HeaderMap) -> ApiResult {
    let node = ctx.node_id;
    let apps = read(&ctx, |s| s.apps.values().map(|a| wire::app(s, node, a)).collect::<Vec<_>>()).await?;
    paged(apps, &headers, &app_fields())
}

pub async fn create_app(State(ctx): State<ApiContext>, Extension(caller): Extension<Caller>, body: Bytes) -> ApiResult {
    let req: w::AppCreate = json_body(&body, true)?;
    let name = match req.name {
        Some(n) => {
            validate_app_name(&n).map_err(ApiError::invalid)?;
            n
        }
        None => random_app_name(),
    };
    let stack = req.stack.unwrap_or_else(|| "heroku-24".into());
    let out = write(
        &ctx,
        Command::CreateApp { id: Uuid::new_v4(), name, stack, release_id: Uuid::new_v4(), actor: actor(&caller) },
    )
    .await?;
    let app = app_of(out)?;
    let body = ctx.raft.with_state(|s| wire::app(s, ctx.node_id, &app));
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn app_info(State(ctx): State<ApiContext>, Path(key): Path<String>) -> ApiResult {
    let node = ctx.node_id;
    Ok(Json(with_app(&ctx, &key, |s, a| wire::app(s, node, a)).await?).into_response())
}

pub async fn update_app(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    body: Bytes,
) -> ApiResult {
    let req: w::AppUpdate = json_body(&body, false)?;
    if let Some(n) = &req.name {
        validate_app_name(n).map_err(ApiError::invalid)?;
    }
    let id = app_id(&ctx, &key).await?;
    let out = write(
        &ctx,
        Command::UpdateApp { app: id, name: req.name, maintenance: req.maintenance, actor: actor(&caller) },
    )
    .await?;
    let app = app_of(out)?;
    Ok(Json(ctx.raft.with_state(|s| wire::app(s, ctx.node_id, &app))).into_response())
}

pub async fn delete_app(State(ctx): State<ApiContext>, Path(key): Path<String>) -> ApiResult {
    let id = app_id(&ctx, &key).await?;
    let app = app_of(write(&ctx, Command::DeleteApp { app: id }).await?)?;
    Ok(Json(ctx.raft.with_state(|s| wire::app(s, ctx.node_id, &app))).into_response())
}

// ---- config vars -------------------------------------------------------------------

pub async fn config_vars(State(ctx): State<ApiContext>, Path(key): Path<String>) -> ApiResult {
    Ok(Json(with_app(&ctx, &key, |_, a| a.config.clone()).await?).into_response())
}

/// Validates a config-vars PATCH body: values are strings (set) or null (unset).
pub fn parse_config_patch(body: &Bytes) -> Result<BTreeMap<String, Option<String>>, ApiError> {
    let map: serde_json::Map<String, serde_json::Value> = json_body(body, false)?;
    let mut changes = BTreeMap::new();
    for (k, v) in map {
        validate_config_key(&k).map_err(ApiError::invalid)?;
        let v = match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s),
            other => {
                return Err(ApiError::invalid(format!(
                    "config var {k} must be a string or null, not {}",
                    match other {
                        serde_json::Value::Bool(_) => "a boolean",
                        serde_json::Value::Number(_) => "a number",
                        serde_json::Value::Array(_) => "an array",
                        _ => "an object",
                    }
                )))
            }
        };
        changes.insert(k, v);
    }
    Ok(changes)
}

pub async fn patch_config_vars(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    body: Bytes,
) -> ApiResult {
    let changes = parse_config_patch(&body)?;
    if changes.is_empty() {
        return Ok(Json(with_app(&ctx, &key, |_, a| a.config.clone()).await?).into_response());
    }
    let id = app_id(&ctx, &key).await?;
    let out = write(
        &ctx,
        Command::SetConfig { app: id, changes, release_id: Uuid::new_v4(), actor: actor(&caller) },
    )
    .await?;
    Ok(Json(app_of(out)?.config).into_response())
}

pub async fn release_config_vars(State(ctx): State<ApiContext>, Path((key, rel)): Path<(String, String)>) -> ApiResult {
    let config = with_app(&ctx, &key, |_, a| a.find_release(&rel).map(|r| r.config.clone())).await?;
    Ok(Json(config.ok_or_else(ApiError::release_not_found)?).into_response())
}

// ---- releases ----------------------------------------------------------------------

pub async fn list_releases(State(ctx): State<ApiContext>, Path(key): Path<String>, headers: HeaderMap) -> ApiResult {
    let rels: Vec<w::Release> = with_app(&ctx, &key, |s, a| a.releases.iter().map(|r| wire::release(s, a, r)).collect()).await?;
    paged(
        rels,
        &headers,
        &[
            Field { name: "version", key: |r: &w::Release| Key::Num(r.version) },
            Field { name: "id", key: |r: &w::Release| Key::Text(r.id.clone()) },
        ],
    )
}

pub async fn release_info(State(ctx): State<ApiContext>, Path((key, rel)): Path<(String, String)>) -> ApiResult {
    let r = with_app(&ctx, &key, |s, a| a.find_release(&rel).map(|r| wire::release(s, a, r))).await?;
    Ok(Json(r.ok_or_else(ApiError::release_not_found)?).into_response())
}

pub async fn create_release(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    body: Bytes,
) -> ApiResult {
    let value: serde_json::Value = json_body(&body, false)?;
    let target = match value.get("release") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(_) => return Err(ApiError::invalid("release must be a release id or version")),
        None if value.get("slug").is_some() => {
            return Err(ApiError::invalid("creating a release from a slug is not supported yet; deploy with git push or hctl deploy"))
        }
        None => return Err(ApiError::invalid("missing release: send {\"release\": ID-OR-VERSION} to roll back")),
    };
    let (id, to) = with_app(&ctx, &key, |_, a| (a.id, a.find_release(&target).map(|r| r.version))).await?;
    let to = to.ok_or_else(ApiError::release_not_found)?;
    let out = write(&ctx, Command::Rollback { app: id, to_version: to, release_id: Uuid::new_v4(), actor: actor(&caller) }).await?;
    let CommandOutput::Release { app, version } = out else {
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "rollback returned no release"));
    };
    let r = app.find_release(&version.to_string()).ok_or_else(ApiError::release_not_found)?;
    Ok((StatusCode::CREATED, Json(ctx.raft.with_state(|s| wire::release(s, &app, r)))).into_response())
}

// ---- formation ---------------------------------------------------------------------

fn quantity_change(q: &w::Quantity) -> Result<QuantityChange, ApiError> {
    match q {
        w::Quantity::Number(n) if *n >= 0 => u32::try_from(*n)
            .map(QuantityChange::Set)
            .map_err(|_| ApiError::invalid(format!("quantity {n} is too large"))),
        w::Quantity::Number(n) => Err(ApiError::invalid(format!("quantity {n} is invalid: it cannot be negative"))),
        w::Quantity::Text(t) => QuantityChange::parse(t).map_err(ApiError::invalid),
    }
}

fn formation_change(u: &w::FormationUpdate, ptype: &str) -> Result<FormationChange, ApiError> {
    if u.quantity.is_none() && u.size.is_none() {
        return Err(ApiError::invalid(format!("the update of {ptype} names neither quantity nor size")));
    }
    if let Some(size) = &u.size {
        model::normalize_size(size).map_err(ApiError::invalid)?;
    }
    Ok(FormationChange {
        process_type: ptype.to_string(),
        quantity: u.quantity.as_ref().map(quantity_change).transpose()?,
        size: u.size.clone(),
        new_id: Uuid::new_v4(),
    })
}

pub async fn list_formation(State(ctx): State<ApiContext>, Path(key): Path<String>) -> ApiResult {
    let list: Vec<w::Formation> = with_app(&ctx, &key, |_, a| a.formation.values().map(|f| wire::formation(a, f)).collect()).await?;
    Ok(Json(list).into_response())
}

fn find_formation<'a>(app: &'a model::App, key: &str) -> Result<&'a model::Formation, ApiError> {
    app.formation
        .get(key)
        .or_else(|| app.formation.values().find(|f| f.id.to_string() == key))
        .ok_or_else(|| ApiError::not_found(format!("Couldn't find that process type ({key}).")))
}

pub async fn formation_info(State(ctx): State<ApiContext>, Path((key, ptype)): Path<(String, String)>) -> ApiResult {
    let f = with_app(&ctx, &key, |_, a| find_formation(a, &ptype).map(|f| wire::formation(a, f))).await??;
    Ok(Json(f).into_response())
}

pub async fn batch_update_formation(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    body: Bytes,
) -> ApiResult {
    let req: w::FormationBatchUpdate = json_body(&body, false)?;
    if req.updates.is_empty() {
        return Err(ApiError::invalid("updates is empty; send {\"updates\": [{\"type\": \"web\", \"quantity\": 1}]}"));
    }
    let changes = req
        .updates
        .iter()
        .map(|u| {
            let t = u.process_type.as_deref().ok_or_else(|| ApiError::invalid("every update needs a type"))?;
            model::validate_process_type(t).map_err(ApiError::invalid)?;
            formation_change(u, t)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let id = app_id(&ctx, &key).await?;
    let out = write(&ctx, Command::UpdateFormation { app: id, changes, actor: actor(&caller) }).await?;
    let CommandOutput::Formation { app, types } = out else {
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "formation update returned nothing"));
    };
    let list: Vec<w::Formation> = types
        .iter()
        .filter_map(|t| app.formation.get(t))
        .map(|f| wire::formation(&app, f))
        .collect();
    Ok(Json(list).into_response())
}

pub async fn update_formation(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, ptype)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let req: w::FormationUpdate = json_body(&body, false)?;
    model::validate_process_type(&ptype).map_err(ApiError::invalid)?;
    let change = formation_change(&req, &ptype)?;
    let id = app_id(&ctx, &key).await?;
    let out = write(&ctx, Command::UpdateFormation { app: id, changes: vec![change], actor: actor(&caller) }).await?;
    let app = app_of(out)?;
    let f = find_formation(&app, &ptype)?;
    Ok(Json(wire::formation(&app, f)).into_response())
}

// ---- cluster -----------------------------------------------------------------------

pub async fn cluster_status(State(ctx): State<ApiContext>) -> ApiResult {
    let st = ctx.raft.status();
    let body = ctx.raft.with_state(|s| {
        let name_of = |id: u64| s.nodes.get(&id).map(|n| n.name.clone());
        w::ClusterStatus {
            cluster_id: s.cluster.as_ref().map(|c| c.id.to_string()).unwrap_or_default(),
            cluster_name: s.cluster.as_ref().map(|c| c.name.clone()).unwrap_or_default(),
            app_domain: s.cluster.as_ref().map(|c| c.app_domain.clone()).unwrap_or_default(),
            node_id: st.node_id.to_string(),
            node_name: name_of(st.node_id).unwrap_or_default(),
            leader: st.leader.map(|l| l.to_string()),
            leader_name: st.leader.and_then(name_of),
            term: st.term,
            voters: st.voters.iter().map(u64::to_string).collect(),
            learners: st.learners.iter().map(u64::to_string).collect(),
            applied_index: st.applied_index,
            last_log_index: st.last_log_index,
            snapshot_index: st.snapshot_index,
            purged_index: st.purged_index,
        }
    });
    Ok(Json(body).into_response())
}

pub async fn cluster_nodes(State(ctx): State<ApiContext>) -> ApiResult {
    let st = ctx.raft.status();
    let nodes: Vec<w::ClusterNode> = ctx.raft.with_state(|s| {
        s.nodes
            .values()
            .map(|n| w::ClusterNode {
                id: n.id.to_string(),
                name: n.name.clone(),
                api_url: n.api_url.clone(),
                peer_addr: n.peer_addr.clone(),
                router_url: n.router_url.clone(),
                role: if st.voters.contains(&n.id) {
                    "voter"
                } else if st.learners.contains(&n.id) {
                    "learner"
                } else {
                    "none"
                }
                .into(),
                status: n.status.as_str().into(),
                leader: st.leader == Some(n.id),
                memory_mb: n.memory_mb,
                cpus: n.cpus,
                labels: n.labels.clone(),
                joined_at: wire::time(n.joined_at),
            })
            .collect()
    });
    Ok(Json(nodes).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_names_are_valid() {
        for _ in 0..200 {
            let n = random_app_name();
            assert!(validate_app_name(&n).is_ok(), "{n}");
        }
    }

    #[test]
    fn config_patch_validation() {
        let ok = parse_config_patch(&Bytes::from(r#"{"A":"1","B":null}"#)).unwrap();
        assert_eq!(ok.get("A"), Some(&Some("1".to_string())));
        assert_eq!(ok.get("B"), Some(&None));
        for (body, status) in [
            (r#"{"A":1}"#, 422),
            (r#"{"A":true}"#, 422),
            (r#"{"1A":"x"}"#, 422),
            (r#"{"A":"#, 400),
            (r#"[1]"#, 400),
            ("", 400),
        ] {
            let err = parse_config_patch(&Bytes::from(body)).unwrap_err();
            assert_eq!(err.status.as_u16(), status, "{body}");
        }
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity_change(&w::Quantity::Number(2)).unwrap(), QuantityChange::Set(2));
        assert_eq!(quantity_change(&w::Quantity::Text("+1".into())).unwrap(), QuantityChange::Add(1));
        assert!(quantity_change(&w::Quantity::Number(-1)).is_err());
        assert!(quantity_change(&w::Quantity::Text("lots".into())).is_err());
    }
}
