//! Users, for admins (Haven-only, under `/cluster`): `GET/POST /cluster/users`,
//! `GET/DELETE /cluster/users/{email-or-id}`.
//!
//! A new user gets a first token, or with `password` a generated password; either is
//! shown once, in the answer. Removing a user is a Raft write that takes their tokens
//! with them, so every node refuses those at once.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use haven_api as w;
use haven_raft::command::Command;
use haven_raft::model::{self, normalize_email};
use uuid::Uuid;

use super::apps::time;
use super::authorizations::new_token;
use super::body::JsonBody;
use super::{allow, credentials, read, write, Action, ApiContext, ApiError, Caller};

/// Model → wire.
pub fn to_wire(state: &model::State, u: &model::User) -> w::ClusterUser {
    w::ClusterUser {
        id: u.id.to_string(),
        email: u.email.clone(),
        admin: u.admin,
        password: u.password_hash.is_some(),
        apps: state.apps.values().filter(|a| a.owner == u.id).count() as u32,
        created_at: time(u.created_at),
    }
}

fn user_not_found() -> ApiError {
    ApiError::not_found("Couldn't find that user.")
}

/// `GET /cluster/users`: every user, by email.
pub async fn list(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    allow(&caller, Action::Cluster)?;
    let mut users = read(&ctx, |s| {
        s.users.values().map(|u| to_wire(s, u)).collect::<Vec<_>>()
    })
    .await?;
    users.sort_by(|a, b| a.email.cmp(&b.email));
    Ok(Json(users).into_response())
}

/// `GET /cluster/users/{email-or-id}`.
pub async fn info(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    allow(&caller, Action::Cluster)?;
    let user = read(&ctx, |s| s.find_user(&key).map(|u| to_wire(s, u)))
        .await?
        .ok_or_else(user_not_found)?;
    Ok(Json(user).into_response())
}

/// `POST /cluster/users {email, admin?, password?}` → 201 with the first token (or the
/// generated password).
pub async fn create(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<w::ClusterUserCreate>,
) -> Result<Response, ApiError> {
    allow(&caller, Action::Cluster)?;
    let email = normalize_email(&body.email).map_err(ApiError::invalid)?;
    let now = Utc::now();
    let id = Uuid::new_v4();
    let (password, password_hash) = if body.password {
        let password = credentials::new_password();
        let p = password.clone();
        let hash = tokio::task::spawn_blocking(move || credentials::hash_password(&p))
            .await
            .map_err(|e| ApiError::internal(format!("hash the password: {e}")))?
            .map_err(ApiError::internal)?;
        (Some(password), Some(hash))
    } else {
        (None, None)
    };
    let first = if body.password {
        None
    } else {
        Some(new_token(
            id,
            &email,
            format!("first token of {email}, made by {}", caller.email),
            None,
            now,
        )?)
    };
    let user = model::User {
        id,
        email,
        created_at: now,
        admin: body.admin,
        password_hash,
    };
    let (token, secret) = match first {
        Some((t, s)) => (Some(t), Some(s)),
        None => (None, None),
    };
    write(
        &ctx,
        Command::CreateUser {
            user: user.clone(),
            token,
        },
    )
    .await?;
    let wire = ctx.raft.with_state(|s| to_wire(s, &user));
    Ok((
        StatusCode::CREATED,
        Json(w::ClusterUserCreated {
            user: wire,
            token: secret,
            password,
        }),
    )
        .into_response())
}

/// `DELETE /cluster/users/{email-or-id}` → the removed user. Their tokens go with them.
pub async fn delete(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    allow(&caller, Action::Cluster)?;
    let (id, wire) = read(&ctx, |s| s.find_user(&key).map(|u| (u.id, to_wire(s, u))))
        .await?
        .ok_or_else(user_not_found)?;
    write(&ctx, Command::RemoveUser { user: id }).await?;
    Ok(Json(wire).into_response())
}
