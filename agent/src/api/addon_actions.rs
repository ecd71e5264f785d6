//! `POST /actions/addons/resolve {addon, app?, addon_service?}`: what an add-on identifier
//! names, as the Heroku CLI asks before `addons:info` and `addons:destroy`. The answer is
//! an array (Heroku's shape): an add-on by id or name, or, within `app`, by the name of
//! one of the app's attachments (`DATABASE`, `REDIS`) or by service (`heroku-postgresql`).
//! Nothing matching is Heroku's 404; more than one add-on is Heroku's `multiple_matches`.
//! `POST /actions/addon-attachments/resolve {addon_attachment, app?, addon_service?}` does
//! the same for attachments, and `GET /addons/{addon}/config` lists what an add-on gives
//! its apps (Haven's add-ons are configured by Haven: `PATCH` is refused).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use haven_api::addons as w;
use haven_raft::model::{Addon, State as Model};
use serde::Deserialize;

use super::addons::{addon_not_found, addon_wire, visible};
use super::body::JsonBody;
use super::{read, with_app, Action, ApiContext, ApiError, Caller};

/// The body of `POST /actions/addons/resolve`.
#[derive(Debug, Deserialize)]
pub struct ResolveBody {
    pub addon: String,
    #[serde(default)]
    pub app: Option<String>,
    #[serde(default)]
    pub addon_service: Option<String>,
}

/// The add-ons `key` names among those the caller sees: within `app` (if given) by id,
/// name or attachment name, else anywhere by id or name.
fn matches<'a>(
    s: &'a Model,
    caller: &Caller,
    app: Option<uuid::Uuid>,
    key: &str,
    service: Option<&str>,
) -> Vec<&'a Addon> {
    let key = key.trim();
    let mut found: Vec<&Addon> = Vec::new();
    if let Some(app) = app {
        let by_attachment = s
            .app_attachments(app)
            .into_iter()
            .filter(|t| t.name.eq_ignore_ascii_case(key))
            .filter_map(|t| s.addons.get(&t.addon));
        let owned = s
            .addons
            .values()
            .filter(|a| a.app == app && (a.name == key || a.id.to_string() == key));
        found.extend(by_attachment.chain(owned));
        if found.is_empty() {
            // A service name (`heroku-postgresql`, `redis`): the app's add-ons of it.
            if let Some(svc) = haven_raft::catalog::addon_service(key) {
                found.extend(
                    s.app_attachments(app)
                        .into_iter()
                        .filter_map(|t| s.addons.get(&t.addon))
                        .filter(|a| a.service == svc.name),
                );
            }
        }
    }
    if found.is_empty() {
        found.extend(s.find_addon(key).filter(|a| visible(s, caller, a)));
    }
    found.retain(|a| service.is_none_or(|svc| a.service == svc));
    found.sort_by_key(|a| a.id);
    found.dedup_by_key(|a| a.id);
    found
}

/// `POST /actions/addons/resolve`.
pub async fn resolve(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<ResolveBody>,
) -> Result<Response, ApiError> {
    let service = body.addon_service.as_deref().filter(|s| !s.is_empty());
    let found: Vec<w::Addon> = match body.app.as_deref().filter(|a| !a.is_empty()) {
        Some(app) => {
            with_app(&ctx, &caller, Action::ViewApp, app, |s, a| {
                matches(s, &caller, Some(a.id), &body.addon, service)
                    .into_iter()
                    .filter_map(|x| addon_wire(s, x))
                    .collect()
            })
            .await?
        }
        None => {
            read(&ctx, |s| {
                matches(s, &caller, None, &body.addon, service)
                    .into_iter()
                    .filter_map(|x| addon_wire(s, x))
                    .collect()
            })
            .await?
        }
    };
    if found.is_empty() {
        return Err(addon_not_found());
    }
    if found.len() > 1 {
        let names: Vec<&str> = found.iter().map(|a| a.name.as_str()).collect();
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "multiple_matches",
            format!(
                "Ambiguous identifier; multiple matching add-ons found: {}.",
                names.join(", ")
            ),
        ));
    }
    Ok(Json(found).into_response())
}

/// The body of `POST /actions/addon-attachments/resolve`.
#[derive(Debug, Deserialize)]
pub struct AttachmentResolveBody {
    pub addon_attachment: String,
    #[serde(default)]
    pub app: Option<String>,
    #[serde(default)]
    pub addon_service: Option<String>,
}

fn attachment_not_found() -> ApiError {
    ApiError::not_found("Couldn't find that add on attachment.")
}

/// `POST /actions/addon-attachments/resolve`: attachments by id or name (within `app`, by
/// name such as `DATABASE`; without, those of the caller's apps), as an array.
pub async fn resolve_attachment(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<AttachmentResolveBody>,
) -> Result<Response, ApiError> {
    let key = body.addon_attachment.trim().to_string();
    let service = body.addon_service.clone().filter(|s| !s.is_empty());
    let pick = move |s: &Model, t: &&haven_raft::model::Attachment| {
        (t.name.eq_ignore_ascii_case(&key) || t.id.to_string() == key)
            && service
                .as_deref()
                .is_none_or(|svc| s.addons.get(&t.addon).is_some_and(|a| a.service == svc))
    };
    let found: Vec<w::Attachment> = match body.app.as_deref().filter(|a| !a.is_empty()) {
        Some(app) => {
            with_app(&ctx, &caller, Action::ViewApp, app, |s, a| {
                s.app_attachments(a.id)
                    .into_iter()
                    .filter(|t| pick(s, t))
                    .map(|t| super::addon_attachments::attachment_wire(s, t))
                    .collect()
            })
            .await?
        }
        None => {
            read(&ctx, |s| {
                s.attachments
                    .values()
                    .filter(|t| {
                        s.apps.get(&t.app).is_some_and(|a| {
                            super::access::authorize(&caller, Action::ViewApp, Some(a)).is_ok()
                        })
                    })
                    .filter(|t| pick(s, t))
                    .map(|t| super::addon_attachments::attachment_wire(s, t))
                    .collect()
            })
            .await?
        }
    };
    if found.is_empty() {
        return Err(attachment_not_found());
    }
    Ok(Json(found).into_response())
}

/// `GET /addons/{addon}/config`: `URL`, the connection string attachments set (a secret:
/// only for those who see the add-on).
pub async fn config(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let items = read(&ctx, |s| {
        s.find_addon(&key)
            .filter(|a| visible(s, &caller, a))
            .map(|a| {
                if a.is_provider() {
                    // A provider's config values are secrets: the attached apps' config
                    // vars are the one place they are shown.
                    a.provider_config
                        .keys()
                        .map(|k| w::AddonConfigItem {
                            name: k.clone(),
                            value: None,
                        })
                        .collect()
                } else {
                    vec![w::AddonConfigItem {
                        name: "URL".into(),
                        value: a.url(),
                    }]
                }
            })
    })
    .await?
    .ok_or_else(addon_not_found)?;
    Ok(Json(items).into_response())
}

/// `PATCH /addons/{addon}/config`: refused, Haven sets its add-ons' config itself.
pub async fn update_config(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    read(&ctx, |s| {
        s.find_addon(&key)
            .filter(|a| visible(s, &caller, a))
            .map(|_| ())
    })
    .await?
    .ok_or_else(addon_not_found)?;
    Err(ApiError::invalid(
        "This add-on's config is managed by Haven and cannot be changed.",
    ))
}
