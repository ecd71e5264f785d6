//! Domains: `GET/POST /apps/{app}/domains`, `GET/DELETE /apps/{app}/domains/{id-or-hostname}`.
//! The list starts with the app's default host (`<app>.<app domain>`, kind `heroku`), then
//! its custom domains, which the router also answers for.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use haven_api as w;
use haven_raft::command::{Command, CommandOutput};
use haven_raft::model::{self, State as Model};
use uuid::Uuid;

use super::apps::{name_id, time};
use super::body::JsonBody;
use super::{app_id, with_app, write, Action, ApiContext, ApiError, Caller};

fn default_host(s: &Model, a: &model::App) -> String {
    let domain = s
        .cluster
        .as_ref()
        .map_or("localhost", |c| c.app_domain.as_str());
    format!("{}.{domain}", a.name)
}

pub(super) fn to_wire(s: &Model, a: &model::App, d: &model::Domain) -> w::Domain {
    w::Domain {
        id: d.id.to_string(),
        hostname: d.hostname.clone(),
        kind: "custom".into(),
        cname: Some(default_host(s, a)),
        status: "succeeded".into(),
        acm_status: None,
        acm_status_reason: None,
        sni_endpoint: s.serving_endpoint(a.id, &d.hostname).map(|e| w::IdRef {
            id: e.id.to_string(),
        }),
        app: w::AppRef {
            id: a.id.to_string(),
            name: a.name.clone(),
        },
        created_at: time(d.created_at),
        updated_at: time(d.created_at),
    }
}

pub(super) fn default_wire(s: &Model, a: &model::App) -> w::Domain {
    let host = default_host(s, a);
    w::Domain {
        id: name_id("domain", &host),
        hostname: host,
        kind: "heroku".into(),
        cname: None,
        status: "none".into(),
        acm_status: None,
        acm_status_reason: None,
        sni_endpoint: None,
        app: w::AppRef {
            id: a.id.to_string(),
            name: a.name.clone(),
        },
        created_at: time(a.created_at),
        updated_at: time(a.created_at),
    }
}

/// `GET /apps/{app}/domains`.
pub async fn list(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let list = with_app(&ctx, &caller, Action::ViewApp, &key, |s, a| {
        let mut v = vec![default_wire(s, a)];
        v.extend(a.domains.iter().map(|d| to_wire(s, a, d)));
        v
    })
    .await?;
    Ok(Json(list).into_response())
}

/// `GET /apps/{app}/domains/{id-or-hostname}`.
pub async fn info(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, domain)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let want = domain.trim_end_matches('.').to_ascii_lowercase();
    let d = with_app(&ctx, &caller, Action::ViewApp, &key, |s, a| {
        let def = default_wire(s, a);
        if def.hostname == want || def.id == want {
            return Some(def);
        }
        a.domains
            .iter()
            .find(|d| d.hostname == want || d.id.to_string() == want)
            .map(|d| to_wire(s, a, d))
    })
    .await?
    .ok_or_else(|| ApiError::not_found("Couldn't find that domain."))?;
    Ok(Json(d).into_response())
}

/// `POST /apps/{app}/domains {"hostname": "www.example.com"}` → 201.
pub async fn create(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    JsonBody(body): JsonBody<w::DomainCreate>,
) -> Result<Response, ApiError> {
    let hostname = model::normalize_hostname(&body.hostname).map_err(ApiError::invalid)?;
    let app = app_id(&ctx, &caller, Action::ChangeApp, &key).await?;
    let now = Utc::now();
    let out = write(
        &ctx,
        Command::AddDomain {
            app,
            domain: model::Domain {
                id: Uuid::new_v4(),
                hostname,
                created_at: now,
            },
            at: now,
        },
    )
    .await?;
    let CommandOutput::Domain { app, domain } = out else {
        return Err(ApiError::internal("the command returned no domain"));
    };
    let wire = ctx.raft.with_state(|s| to_wire(s, &app, &domain));
    Ok((StatusCode::CREATED, Json(wire)).into_response())
}

/// `DELETE /apps/{app}/domains/{id-or-hostname}`.
pub async fn delete(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, domain)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let app = app_id(&ctx, &caller, Action::ChangeApp, &key).await?;
    let out = write(
        &ctx,
        Command::RemoveDomain {
            app,
            key: domain,
            at: Utc::now(),
        },
    )
    .await?;
    let CommandOutput::Domain { app, domain } = out else {
        return Err(ApiError::internal("the command returned no domain"));
    };
    let wire = ctx.raft.with_state(|s| to_wire(s, &app, &domain));
    Ok(Json(wire).into_response())
}
