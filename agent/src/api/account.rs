//! `GET /account`: the caller; `PUT /account/password`: their password.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use haven_api as w;
use haven_raft::command::Command;
use haven_raft::model;

use super::apps::time;
use super::body::JsonBody;
use super::{allow, credentials, read, write, Action, ApiContext, ApiError, Caller};

/// Model → wire for a user's account.
pub fn to_wire(user: &model::User) -> w::Account {
    w::Account {
        id: user.id.to_string(),
        email: user.email.clone(),
        name: None,
        allow_tracking: false,
        beta: false,
        verified: false,
        federated: false,
        two_factor_authentication: false,
        last_login: None,
        suspended_at: None,
        delinquent_at: None,
        sms_number: None,
        country_of_residence: None,
        default_organization: None,
        default_team: None,
        identity_provider: None,
        created_at: time(user.created_at),
        updated_at: time(user.created_at),
    }
}

/// `GET /account`.
pub async fn info(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    allow(&caller, Action::Own)?;
    // The user may have been removed (with their tokens) after the token was checked:
    // the token is no longer valid, as a request a moment later would be told.
    let user = read(&ctx, |s| s.users.get(&caller.user_id).map(to_wire))
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    Ok(Json(user).into_response())
}

/// `PUT /account/password {"password": "..."}` (Haven-only): sets the caller's password,
/// with which `hctl login` (and `POST /oauth/authorizations` with Basic email:password)
/// gets a token. Answers the account.
pub async fn set_password(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<w::PasswordUpdate>,
) -> Result<Response, ApiError> {
    allow(&caller, Action::Own)?;
    credentials::check_password(&body.password).map_err(ApiError::invalid)?;
    let password = body.password;
    let hash = tokio::task::spawn_blocking(move || credentials::hash_password(&password))
        .await
        .map_err(|e| ApiError::internal(format!("hash the password: {e}")))?
        .map_err(ApiError::internal)?;
    write(
        &ctx,
        Command::SetPassword {
            user: caller.user_id,
            password_hash: Some(hash),
        },
    )
    .await?;
    info(State(ctx), Extension(caller)).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use uuid::Uuid;

    #[test]
    fn account_to_wire() {
        let u = model::User {
            id: Uuid::from_u128(3),
            email: "a@b.c".into(),
            created_at: DateTime::from_timestamp(0, 0).unwrap(),
            admin: false,
            password_hash: None,
        };
        let a = to_wire(&u);
        assert_eq!(a.id, Uuid::from_u128(3).to_string());
        assert_eq!(a.email, "a@b.c");
        assert_eq!(a.name, None);
        assert!(!a.beta && !a.verified && !a.two_factor_authentication && !a.allow_tracking);
        assert_eq!(a.created_at, "1970-01-01T00:00:00Z");
    }
}
