//! Log drains: `GET/POST /apps/{app}/log-drains`, `GET/DELETE
//! /apps/{app}/log-drains/{id-or-url-or-token}`. Every node ships the app's lines it
//! produces to each drain ([`crate::drains`]).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use chrono::Utc;
use haven_api::{LogDrain, LogDrainCreate};
use haven_raft::command::{Command, CommandOutput};
use haven_raft::model;
use uuid::Uuid;

use super::apps::time;
use super::body::JsonBody;
use super::{app_id, with_app, write, Action, ApiContext, ApiError, Caller};

pub(super) fn to_wire(a: &model::App, d: &model::Drain) -> LogDrain {
    LogDrain {
        id: d.id.to_string(),
        url: d.url.clone(),
        token: d.token.clone(),
        addon: None,
        app: haven_api::AppRef {
            id: a.id.to_string(),
            name: a.name.clone(),
        },
        created_at: time(d.created_at),
        updated_at: time(d.created_at),
    }
}

/// `GET /apps/{app}/log-drains`.
pub async fn list(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let list: Vec<LogDrain> = with_app(&ctx, &caller, Action::ViewApp, &key, |_, a| {
        a.drains.iter().map(|d| to_wire(a, d)).collect()
    })
    .await?;
    Ok(Json(list).into_response())
}

/// `GET /apps/{app}/log-drains/{id-or-url-or-token}`.
pub async fn info(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, drain)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let d = with_app(&ctx, &caller, Action::ViewApp, &key, |_, a| {
        a.drains
            .iter()
            .find(|d| d.id.to_string() == drain || d.url == drain || d.token == drain)
            .map(|d| to_wire(a, d))
    })
    .await?
    .ok_or_else(|| ApiError::not_found("Couldn't find that log drain."))?;
    Ok(Json(d).into_response())
}

/// `POST /apps/{app}/log-drains {"url": "syslog://logs.example.com:514"}` → 201.
pub async fn create(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    JsonBody(body): JsonBody<LogDrainCreate>,
) -> Result<Response, ApiError> {
    let url = body.url.trim().to_string();
    model::validate_drain_url(&url).map_err(ApiError::invalid)?;
    let app = app_id(&ctx, &caller, Action::ChangeApp, &key).await?;
    let drain = model::Drain {
        id: Uuid::new_v4(),
        url,
        token: format!("d.{}", Uuid::new_v4()),
        created_at: Utc::now(),
    };
    let CommandOutput::Drain { app, drain } = write(&ctx, Command::AddDrain { app, drain }).await?
    else {
        return Err(ApiError::internal("the command returned no drain"));
    };
    Ok((StatusCode::CREATED, Json(to_wire(&app, &drain))).into_response())
}

/// `DELETE /apps/{app}/log-drains/{id-or-url-or-token}`.
pub async fn delete(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, drain)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let app = app_id(&ctx, &caller, Action::ChangeApp, &key).await?;
    let CommandOutput::Drain { app, drain } =
        write(&ctx, Command::RemoveDrain { app, key: drain }).await?
    else {
        return Err(ApiError::internal("the command returned no drain"));
    };
    Ok(Json(to_wire(&app, &drain)).into_response())
}
