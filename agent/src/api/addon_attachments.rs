//! Add-on attachments: `POST /addon-attachments`, `GET/DELETE /addon-attachments/{id}`,
//! `GET /addon-attachments`, `GET /apps/{app}/addon-attachments[/{id-or-name}]`, `GET
//! /addons/{id-or-name}/addon-attachments`. Attaching and detaching each make one release.
//! Attaching under a name another add-on's attachment has (`pg:promote`: `DATABASE`)
//! takes the name over, once confirmed with the app's name (`confirmation_required`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use haven_api::addons as w;
use haven_api::NamedRef;
use haven_raft::command::{AttachmentSpec, Command, CommandError, CommandOutput};
use haven_raft::model::{Attachment, State as Model};
use uuid::Uuid;

use super::access::{self, Action};
use super::addons::addon_not_found;
use super::addons::visible;
use super::apps::time;
use super::body::JsonBody;
use super::{app_id, read, with_app, ApiContext, ApiError, Caller};

fn attachment_not_found() -> ApiError {
    ApiError::not_found("Couldn't find that add-on attachment.")
}

fn app_ref(s: &Model, id: Uuid) -> NamedRef {
    NamedRef {
        id: id.to_string(),
        name: s.apps.get(&id).map_or_else(String::new, |a| a.name.clone()),
    }
}

/// An attachment as the API shows it.
pub fn attachment_wire(s: &Model, t: &Attachment) -> w::Attachment {
    let addon = s.addons.get(&t.addon);
    w::Attachment {
        id: t.id.to_string(),
        name: t.name.clone(),
        namespace: None,
        addon: w::AttachmentAddon {
            id: t.addon.to_string(),
            name: addon.map_or_else(String::new, |a| a.name.clone()),
            app: addon.map_or_else(|| app_ref(s, t.app), |a| app_ref(s, a.app)),
        },
        app: app_ref(s, t.app),
        web_url: None,
        log_input_url: None,
        created_at: time(t.created_at),
        updated_at: time(t.created_at),
        config_vars: t.config_vars.clone(),
    }
}

/// Whether `caller` may see attachment `t`: they may view the app it is attached to.
fn may_view(s: &Model, caller: &Caller, t: &Attachment) -> bool {
    access::allows(s, caller, Action::ViewApp, t.app)
}

/// `GET /addon-attachments`: those of the apps the caller may see.
pub async fn list_all(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let list: Vec<w::Attachment> = read(&ctx, |s| {
        let mut v: Vec<&Attachment> = s
            .attachments
            .values()
            .filter(|t| may_view(s, &caller, t))
            .collect();
        v.sort_by_key(|t| (t.created_at, t.id));
        v.into_iter().map(|t| attachment_wire(s, t)).collect()
    })
    .await?;
    Ok(Json(list).into_response())
}

/// `GET /addon-attachments/{id}`.
pub async fn info_any(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let t = read(&ctx, |s| {
        let id: Uuid = id.parse().ok()?;
        s.attachments
            .get(&id)
            .filter(|t| may_view(s, &caller, t))
            .map(|t| attachment_wire(s, t))
    })
    .await?
    .ok_or_else(attachment_not_found)?;
    Ok(Json(t).into_response())
}

/// `GET /apps/{app}/addon-attachments`.
pub async fn list(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let list: Vec<w::Attachment> = with_app(&ctx, &caller, Action::ViewApp, &key, |s, app| {
        s.app_attachments(app.id)
            .into_iter()
            .map(|t| attachment_wire(s, t))
            .collect()
    })
    .await?;
    Ok(Json(list).into_response())
}

/// `GET /apps/{app}/addon-attachments/{id-or-name}`.
pub async fn info(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let t = with_app(&ctx, &caller, Action::ViewApp, &key, |s, app| {
        s.app_attachments(app.id)
            .into_iter()
            .find(|t| t.name.eq_ignore_ascii_case(&name) || t.id.to_string() == name)
            .map(|t| attachment_wire(s, t))
    })
    .await?
    .ok_or_else(attachment_not_found)?;
    Ok(Json(t).into_response())
}

/// `GET /addons/{id-or-name}/addon-attachments`.
pub async fn of_addon(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let list = read(&ctx, |s| {
        s.find_addon(&key)
            .filter(|a| visible(s, &caller, a))
            .map(|a| {
                s.addon_attachments(a.id)
                    .into_iter()
                    .filter(|t| may_view(s, &caller, t))
                    .map(|t| attachment_wire(s, t))
                    .collect::<Vec<_>>()
            })
    })
    .await?
    .ok_or_else(addon_not_found)?;
    Ok(Json(list).into_response())
}

/// The attachment of an add-on command's output, as the API shows it.
fn answer(
    ctx: &ApiContext,
    caller: &Caller,
    out: CommandOutput,
    verb: &str,
) -> Result<Response, ApiError> {
    let CommandOutput::Addon {
        addon,
        attachments,
        releases,
    } = out
    else {
        return Err(ApiError::internal("the command returned no attachment"));
    };
    let t = attachments
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("the command returned no attachment"))?;
    for (app, version) in &releases {
        ctx.logs.api(
            *app,
            &format!(
                "{verb} {} (@ref:{}) by {}",
                t.name, addon.name, caller.email
            ),
        );
        ctx.logs.api(
            *app,
            &format!("Release v{version} created by {}", caller.email),
        );
    }
    let mut wire = ctx.raft.with_state(|s| attachment_wire(s, &t));
    // The local replica may not have applied it yet: name the add-on from the output.
    wire.addon.name = addon.name.clone();
    let status = if verb == "Attach" {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(wire)).into_response())
}

/// `POST /addon-attachments {"addon", "app", "name", "confirm"}`.
pub async fn create(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<w::AttachmentCreate>,
) -> Result<Response, ApiError> {
    let app = app_id(&ctx, &caller, Action::ChangeApp, &body.app).await?;
    // Sharing an add-on needs a say over the app that owns it.
    let addon = read(&ctx, |s| {
        s.find_addon(&body.addon)
            .filter(|a| access::allows(s, &caller, Action::ChangeApp, a.app))
            .map(|a| a.id)
    })
    .await?
    .ok_or_else(addon_not_found)?;
    // A name another add-on's attachment has (`pg:promote` asks for DATABASE) is taken
    // over only when confirmed with the app's name, as on Heroku.
    let wanted = body
        .name
        .as_deref()
        .map(|n| n.trim().to_ascii_uppercase().replace('-', "_"));
    let holder = read(&ctx, |s| {
        let app_name = s.apps.get(&app).map(|a| a.name.clone()).unwrap_or_default();
        let held = wanted.as_deref().and_then(|n| {
            s.app_attachments(app)
                .into_iter()
                .find(|t| t.name == n && t.addon != addon)
                .map(|t| {
                    s.addons
                        .get(&t.addon)
                        .map_or_else(String::new, |a| a.name.clone())
                })
        });
        (app_name, held)
    })
    .await?;
    let spec = AttachmentSpec {
        id: Uuid::new_v4(),
        app,
        name: body.name.clone(),
    };
    let cmd = match holder {
        (app_name, Some(held)) => {
            if body.confirm.as_deref() != Some(app_name.as_str()) {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "confirmation_required",
                    format!(
                        "{} is the {} of {app_name} now: confirm with the app's name, {app_name}, to replace it.",
                        held,
                        wanted.unwrap_or_default()
                    ),
                ));
            }
            Command::PromoteAttachment {
                addon,
                attachment: spec,
                release_id: Uuid::new_v4(),
                actor: caller.actor(),
            }
        }
        _ => Command::AttachAddon {
            addon,
            attachment: spec,
            release_id: Uuid::new_v4(),
            actor: caller.actor(),
        },
    };
    match ctx.raft.write(cmd).await? {
        Ok(out) => answer(&ctx, &caller, out, "Attach"),
        Err(CommandError::AppNotFound(_)) => Err(ApiError::app_not_found()),
        Err(CommandError::Conflict(m)) => Err(ApiError::invalid(m)),
        Err(e) => Err(e.into()),
    }
}

/// `DELETE /addon-attachments/{id}`.
pub async fn delete(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: Uuid = id.parse().map_err(|_| attachment_not_found())?;
    let allowed = read(&ctx, |s| {
        s.attachments
            .get(&id)
            .is_some_and(|t| access::allows(s, &caller, Action::ChangeApp, t.app))
    })
    .await?;
    if !allowed {
        return Err(attachment_not_found());
    }
    let out = super::write(
        &ctx,
        Command::DetachAddon {
            attachment: id,
            release_id: Uuid::new_v4(),
            actor: caller.actor(),
        },
    )
    .await?;
    answer(&ctx, &caller, out, "Detach")
}
