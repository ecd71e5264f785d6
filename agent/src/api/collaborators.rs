//! Who may use an app: `GET/POST /apps/{app}/collaborators`,
//! `GET/DELETE /apps/{app}/collaborators/{email-or-id}`.
//!
//! The list holds the owner (role `owner`) and the collaborators (role `collaborator`), as
//! Heroku lists a personal app's access. Collaborators may add and remove others, as on
//! Heroku; nobody removes the owner.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use haven_api as w;
use haven_raft::command::Command;
use haven_raft::model;
use uuid::Uuid;

use super::apps::{name_id, time};
use super::body::JsonBody;
use super::{app_id, with_app, write, Action, ApiContext, ApiError, Caller};

fn entry(
    state: &model::State,
    a: &model::App,
    id: String,
    user: Uuid,
    role: &str,
    at: chrono::DateTime<Utc>,
) -> w::Collaborator {
    let email = state
        .users
        .get(&user)
        .map(|u| u.email.clone())
        .unwrap_or_default();
    w::Collaborator {
        id,
        app: w::AppRef {
            id: a.id.to_string(),
            name: a.name.clone(),
        },
        user: w::CollaboratorUser {
            id: user.to_string(),
            email,
            federated: false,
        },
        role: Some(role.to_string()),
        permissions: Vec::new(),
        created_at: time(at),
        updated_at: time(at),
    }
}

/// Model → wire: the owner first, then the collaborators in the order they were added.
pub fn to_wire(state: &model::State, a: &model::App) -> Vec<w::Collaborator> {
    let owner_id = name_id("owner", &format!("{}:{}", a.id, a.owner));
    let mut list = vec![entry(state, a, owner_id, a.owner, "owner", a.created_at)];
    list.extend(a.collaborators.iter().map(|c| {
        entry(
            state,
            a,
            c.id.to_string(),
            c.user,
            "collaborator",
            c.created_at,
        )
    }));
    list
}

/// The entry `key` (email, user id or collaborator id) of `list`.
fn find<'a>(list: &'a [w::Collaborator], key: &str) -> Option<&'a w::Collaborator> {
    list.iter()
        .find(|c| c.id == key || c.user.id == key || c.user.email.eq_ignore_ascii_case(key.trim()))
}

fn not_found() -> ApiError {
    ApiError::not_found("Couldn't find that collaborator.")
}

/// `GET /apps/{app}/collaborators`.
pub async fn list(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let list = with_app(&ctx, &caller, Action::ViewApp, &key, to_wire).await?;
    Ok(Json(list).into_response())
}

/// `GET /apps/{app}/collaborators/{email-or-id}`.
pub async fn info(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, who)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let found = with_app(&ctx, &caller, Action::ViewApp, &key, |s, a| {
        find(&to_wire(s, a), &who).cloned()
    })
    .await?
    .ok_or_else(not_found)?;
    Ok(Json(found).into_response())
}

/// `POST /apps/{app}/collaborators {"user": EMAIL-OR-ID}` → 201. The user must exist
/// (Haven sends no invitations: an admin makes users with `hctl users:create`).
pub async fn create(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    JsonBody(body): JsonBody<w::CollaboratorCreate>,
) -> Result<Response, ApiError> {
    // The user may have been made through another node a moment ago: past the barrier.
    let (app, user) = with_app(&ctx, &caller, Action::ChangeApp, &key, |s, a| {
        (a.id, s.find_user(&body.user).map(|u| u.id))
    })
    .await?;
    let user = user.ok_or_else(|| {
        ApiError::not_found(format!(
            "Couldn't find that user: {} has no account here; an admin can make one with hctl users:create",
            body.user.trim()
        ))
    })?;
    let collaborator = model::Collaborator {
        id: Uuid::new_v4(),
        user,
        created_at: Utc::now(),
    };
    let id = collaborator.id.to_string();
    write(&ctx, Command::AddCollaborator { app, collaborator }).await?;
    let made = with_app(&ctx, &caller, Action::ViewApp, &key, |s, a| {
        to_wire(s, a).into_iter().find(|c| c.id == id)
    })
    .await?
    .ok_or_else(not_found)?;
    Ok((StatusCode::CREATED, Json(made)).into_response())
}

/// `DELETE /apps/{app}/collaborators/{email-or-id}` → the removed collaborator.
pub async fn delete(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, who)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let app = app_id(&ctx, &caller, Action::ChangeApp, &key).await?;
    let found = with_app(&ctx, &caller, Action::ChangeApp, &key, |s, a| {
        find(&to_wire(s, a), &who).cloned()
    })
    .await?
    .ok_or_else(not_found)?;
    if found.role.as_deref() == Some("owner") {
        return Err(ApiError::invalid(
            "the owner cannot be removed from their app; destroy the app instead",
        ));
    }
    let user: Uuid = found
        .user
        .id
        .parse()
        .map_err(|_| ApiError::internal("a collaborator's user id is not a uuid"))?;
    write(&ctx, Command::RemoveCollaborator { app, user }).await?;
    Ok(Json(found).into_response())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_comes_first_and_entries_are_found_by_email_or_id() {
        let mut s = model::State::default();
        let at = chrono::DateTime::from_timestamp(0, 0).unwrap();
        for (n, email) in [(1u128, "owner@x.org"), (2, "dev@x.org")] {
            let u = model::User {
                id: Uuid::from_u128(n),
                email: email.into(),
                created_at: at,
                admin: false,
                password_hash: None,
            };
            s.users.insert(u.id, u);
        }
        let a = model::App {
            id: Uuid::from_u128(10),
            name: "shared".into(),
            stack: "heroku-24".into(),
            buildpacks: Vec::new(),
            maintenance: false,
            domains: Vec::new(),
            drains: Vec::new(),
            created_at: at,
            updated_at: at,
            released_at: None,
            config: Default::default(),
            releases: Vec::new(),
            formation: Default::default(),
            owner: Uuid::from_u128(1),
            collaborators: vec![model::Collaborator {
                id: Uuid::from_u128(20),
                user: Uuid::from_u128(2),
                created_at: at,
            }],
        };
        let list = to_wire(&s, &a);
        let roles: Vec<(&str, Option<&str>)> = list
            .iter()
            .map(|c| (c.user.email.as_str(), c.role.as_deref()))
            .collect();
        assert_eq!(
            roles,
            [
                ("owner@x.org", Some("owner")),
                ("dev@x.org", Some("collaborator"))
            ]
        );
        assert_eq!(list, to_wire(&s, &a), "ids are stable");
        for key in [
            "DEV@x.org",
            &Uuid::from_u128(2).to_string(),
            &Uuid::from_u128(20).to_string(),
        ] {
            assert_eq!(
                find(&list, key).map(|c| c.user.email.as_str()),
                Some("dev@x.org"),
                "{key}"
            );
        }
        assert!(find(&list, "nobody@x.org").is_none());
    }
}
