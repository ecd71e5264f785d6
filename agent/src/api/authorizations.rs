//! API tokens as Heroku's OAuth authorizations: `GET/POST /oauth/authorizations`,
//! `GET/DELETE /oauth/authorizations/{id}`. Each user sees and revokes only their own.
//!
//! A token is shown once, in the answer that made it; the state keeps only its sha256.
//! `POST` is also the login call: it alone accepts Basic email:password (see `guard`).
//! Revoking is a Raft write, so every node refuses the token once it has applied it.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use haven_api as w;
use haven_raft::command::{Command, CommandOutput};
use haven_raft::model;
use uuid::Uuid;

use super::apps::time;
use super::body::OptionalJsonBody;
use super::{allow, credentials, read, token_hash, write, Action, ApiContext, ApiError, Caller};

/// Longest lifetime a token may be given: ten years, in seconds.
pub const MAX_EXPIRES_IN: i64 = 10 * 365 * 24 * 3600;

/// Model → wire. `secret` is the token itself, known only when it was just made.
pub fn to_wire(
    t: &model::Token,
    secret: Option<&str>,
    now: DateTime<Utc>,
) -> w::OAuthAuthorization {
    let expires_in = t.expires_at.map(|e| (e - now).num_seconds().max(0));
    w::OAuthAuthorization {
        id: t.id.to_string(),
        description: t.description.clone(),
        scope: vec!["global".into()],
        access_token: secret.map(|s| w::AccessToken {
            id: t.id.to_string(),
            token: s.to_string(),
            expires_in,
        }),
        client: None,
        grant: None,
        refresh_token: None,
        session: None,
        user: w::AuthorizationUser {
            id: t.user_id.to_string(),
            email: t.user_email.clone(),
            full_name: None,
        },
        expires_at: t.expires_at.map(time),
        created_at: time(t.created_at),
        updated_at: time(t.created_at),
    }
}

/// A new token of `caller`, with its secret. `expires_in` in seconds.
pub fn new_token(
    caller_id: Uuid,
    email: &str,
    description: String,
    expires_in: Option<i64>,
    now: DateTime<Utc>,
) -> Result<(model::Token, String), ApiError> {
    let expires_at = match expires_in {
        None => None,
        Some(s) if (1..=MAX_EXPIRES_IN).contains(&s) => Some(now + chrono::Duration::seconds(s)),
        Some(s) => {
            return Err(ApiError::invalid(format!(
                "expires_in {s} is invalid: give seconds between 1 and {MAX_EXPIRES_IN}, or leave it out for a token that lasts until revoked"
            )))
        }
    };
    let secret = credentials::new_token();
    let token = model::Token {
        id: Uuid::new_v4(),
        sha256: token_hash(&secret),
        user_email: email.to_string(),
        user_id: caller_id,
        description,
        created_at: now,
        expires_at,
    };
    Ok((token, secret))
}

/// `GET /oauth/authorizations`: the caller's tokens, oldest first.
pub async fn list(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    allow(&caller, Action::Own)?;
    let now = Utc::now();
    let list: Vec<w::OAuthAuthorization> = read(&ctx, |s| {
        s.user_tokens(caller.user_id)
            .into_iter()
            .map(|t| to_wire(t, None, now))
            .collect()
    })
    .await?;
    Ok(Json(list).into_response())
}

/// `GET /oauth/authorizations/{id}`.
pub async fn info(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    allow(&caller, Action::Own)?;
    let now = Utc::now();
    let found = read(&ctx, |s| {
        s.user_tokens(caller.user_id)
            .into_iter()
            .find(|t| t.id.to_string() == id)
            .map(|t| to_wire(t, None, now))
    })
    .await?
    .ok_or_else(not_found)?;
    Ok(Json(found).into_response())
}

fn not_found() -> ApiError {
    ApiError::not_found("Couldn't find that authorization.")
}

/// `POST /oauth/authorizations {description?, expires_in?}` → 201 with the token in
/// `access_token.token`, shown only here.
pub async fn create(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    OptionalJsonBody(body): OptionalJsonBody<w::AuthorizationCreate>,
) -> Result<Response, ApiError> {
    allow(&caller, Action::Own)?;
    if let Some(scope) = &body.scope {
        if scope.iter().any(|s| s != "global") {
            return Err(ApiError::invalid(
                "scope must be [\"global\"]: Haven tokens act for their user on everything",
            ));
        }
    }
    let now = Utc::now();
    let description = body
        .description
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "hctl authorization".into());
    if description.len() > 200 {
        return Err(ApiError::invalid(
            "description is too long: use at most 200 bytes",
        ));
    }
    let (token, secret) = new_token(
        caller.user_id,
        &caller.email,
        description,
        body.expires_in,
        now,
    )?;
    let wire = to_wire(&token, Some(&secret), now);
    write(&ctx, Command::AddToken { token }).await?;
    Ok((StatusCode::CREATED, Json(wire)).into_response())
}

/// `DELETE /oauth/authorizations/{id}` → the revoked authorization.
pub async fn delete(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    allow(&caller, Action::Own)?;
    let id: Uuid = id.parse().map_err(|_| not_found())?;
    let out = match write(
        &ctx,
        Command::RevokeToken {
            user: caller.user_id,
            token: id,
        },
    )
    .await
    {
        Err(e) if e.status == StatusCode::NOT_FOUND => return Err(not_found()),
        other => other?,
    };
    let CommandOutput::Token(t) = out else {
        return Err(ApiError::internal("the revocation returned no token"));
    };
    Ok(Json(to_wire(&t, None, Utc::now())).into_response())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expire_when_asked_and_only_within_bounds() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let (t, secret) =
            new_token(Uuid::from_u128(1), "a@x.org", "d".into(), Some(60), now).unwrap();
        assert_eq!(t.sha256, token_hash(&secret));
        assert_eq!(t.expires_at, Some(now + chrono::Duration::seconds(60)));
        assert!(!t.expired(now) && t.expired(now + chrono::Duration::seconds(60)));
        let (forever, _) = new_token(Uuid::from_u128(1), "a@x.org", "d".into(), None, now).unwrap();
        assert_eq!(forever.expires_at, None);
        for bad in [0, -5, MAX_EXPIRES_IN + 1] {
            let e =
                new_token(Uuid::from_u128(1), "a@x.org", "d".into(), Some(bad), now).unwrap_err();
            assert_eq!(e.status.as_u16(), 422, "{bad}");
        }
    }

    #[test]
    fn the_secret_shows_only_when_given() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let (t, secret) =
            new_token(Uuid::from_u128(1), "a@x.org", "d".into(), Some(30), now).unwrap();
        let made = to_wire(&t, Some(&secret), now);
        let access = made.access_token.unwrap();
        assert_eq!(
            (access.token.as_str(), access.expires_in),
            (secret.as_str(), Some(30))
        );
        let listed = to_wire(&t, None, now + chrono::Duration::seconds(10));
        assert!(listed.access_token.is_none());
        let json = serde_json::to_string(&listed).unwrap();
        assert!(
            !json.contains(&secret) && !json.contains(&t.sha256),
            "{json}"
        );
        assert_eq!(listed.scope, ["global"]);
    }
}
