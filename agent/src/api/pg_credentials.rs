//! `POST /apps/{app}/addons/{addon}/actions/rotate-credentials {"confirm"}`
//! (`pg:credentials:rotate`): a new random password for a Postgres add-on the app owns.
//! Confirmed with the app's name, as the Heroku CLI asks: every app attached gets the new
//! URL in a release and restarts, and connections with the old password fail once the
//! primary's agent set the new one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use uuid::Uuid;

use haven_raft::command::Command;

use super::addons::{addon_not_found, answer, password};
use super::body::JsonBody;
use super::{with_app, Action, ApiContext, ApiError, Caller};

#[derive(Debug, Default, Deserialize)]
pub struct RotateBody {
    #[serde(default)]
    pub confirm: Option<String>,
}

pub async fn rotate(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, addon)): Path<(String, String)>,
    JsonBody(body): JsonBody<RotateBody>,
) -> Result<Response, ApiError> {
    let (id, app_name) = with_app(&ctx, &caller, Action::ChangeApp, &key, |s, app| {
        s.find_addon(&addon)
            .filter(|a| a.app == app.id)
            .map(|a| (a.id, app.name.clone()))
    })
    .await?
    .ok_or_else(addon_not_found)?;
    if body.confirm.as_deref() != Some(app_name.as_str()) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "confirmation_required",
            format!(
                "Rotating the credentials breaks every connection that uses the old ones: confirm with the app's name, {app_name}."
            ),
        ));
    }
    let out = super::write(
        &ctx,
        Command::RotateAddonCredentials {
            addon: id,
            password: password(),
            release_seed: Uuid::new_v4(),
            actor: caller.actor(),
        },
    )
    .await?;
    Ok(Json(answer(&ctx, &caller, out, "Rotate credentials of")?).into_response())
}
