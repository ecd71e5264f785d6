//! `POST /actions/addons/resolve {addon, app?, addon_service?}`: what an add-on identifier
//! names, as the Heroku CLI asks before `addons:info` and `addons:destroy`. The answer is
//! an array (Heroku's shape): an add-on by id or name, or, within `app`, by the name of
//! one of the app's attachments (`DATABASE`, `REDIS`). Nothing matching is Heroku's 404.

use axum::extract::State;
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
    Ok(Json(found).into_response())
}
