//! Third-party add-on providers (admins only): `GET/POST /cluster/addon-providers`,
//! `DELETE /cluster/addon-providers/{name}`. A provider's password goes into the
//! replicated state only; no answer shows it.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use haven_api::addons as w;
use haven_raft::command::Command;
use haven_raft::model::AddonProvider;
use uuid::Uuid;

use super::access::Action;
use super::apps::time;
use super::body::JsonBody;
use super::{allow, read, ApiContext, ApiError, Caller};

pub fn provider_wire(p: &AddonProvider) -> w::AddonProvider {
    w::AddonProvider {
        id: p.id.to_string(),
        name: p.name.clone(),
        url: p.url.clone(),
        plans: p.plans.clone(),
        created_at: time(p.created_at),
    }
}

/// `GET /cluster/addon-providers`.
pub async fn list(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    allow(&caller, Action::Cluster)?;
    let list = read(&ctx, |s| {
        s.addon_providers
            .values()
            .map(provider_wire)
            .collect::<Vec<_>>()
    })
    .await?;
    Ok(Json(list).into_response())
}

/// `POST /cluster/addon-providers {name, url, password, plans}` → 201.
pub async fn create(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<w::AddonProviderCreate>,
) -> Result<Response, ApiError> {
    allow(&caller, Action::Cluster)?;
    let provider = AddonProvider {
        id: Uuid::new_v4(),
        name: body.name.trim().to_string(),
        url: body.url.trim().trim_end_matches('/').to_string(),
        password: body.password,
        plans: body
            .plans
            .iter()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
        created_at: chrono::Utc::now(),
    };
    let wire = provider_wire(&provider);
    super::write(&ctx, Command::AddAddonProvider { provider }).await?;
    Ok((StatusCode::CREATED, Json(wire)).into_response())
}

/// `DELETE /cluster/addon-providers/{name}`: refused while add-ons of it exist.
pub async fn delete(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    allow(&caller, Action::Cluster)?;
    let p = read(&ctx, |s| s.addon_providers.get(&name).map(provider_wire))
        .await?
        .ok_or_else(|| ApiError::not_found("Couldn't find that add-on provider."))?;
    super::write(&ctx, Command::RemoveAddonProvider { name }).await?;
    Ok(Json(p).into_response())
}
