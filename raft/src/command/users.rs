//! Users (design §13): creating and removing them, and their passwords.

use uuid::Uuid;

use super::{CommandError, CommandOutput, CommandResult};
use crate::model::{normalize_email, State, Token, User};

/// Adds a user, and their first token if one is given. Emails are unique.
pub(super) fn create(state: &mut State, user: &User, token: Option<&Token>) -> CommandResult {
    let email = normalize_email(&user.email).map_err(CommandError::Invalid)?;
    if email != user.email {
        return Err(CommandError::Invalid(format!(
            "email {:?} must be given lowercase and trimmed",
            user.email
        )));
    }
    if state.users.values().any(|u| u.email == email) {
        return Err(CommandError::Conflict(format!(
            "a user with email {email} already exists"
        )));
    }
    if state.users.contains_key(&user.id) {
        return Err(CommandError::Conflict(format!(
            "user id {} exists",
            user.id
        )));
    }
    if let Some(t) = token {
        if t.user_id != user.id {
            return Err(CommandError::Invalid(
                "the token is for another user".into(),
            ));
        }
        if state.tokens.contains_key(&t.sha256) {
            return Err(CommandError::Conflict("token exists".into()));
        }
    }
    state.users.insert(user.id, user.clone());
    if let Some(t) = token {
        state.tokens.insert(t.sha256.clone(), t.clone());
    }
    Ok(CommandOutput::Done)
}

/// Removes a user, their tokens and their collaborations. Refused while they own apps
/// (destroy those first) and for the last admin.
pub(super) fn remove(state: &mut State, id: Uuid) -> CommandResult {
    let user = state
        .users
        .get(&id)
        .ok_or_else(|| CommandError::NotFound(format!("user {id} not found")))?;
    let owned: Vec<&str> = state
        .apps
        .values()
        .filter(|a| a.owner == id)
        .map(|a| a.name.as_str())
        .collect();
    if !owned.is_empty() {
        return Err(CommandError::Conflict(format!(
            "{} owns {}; destroy those apps first (hctl apps:destroy)",
            user.email,
            owned.join(", ")
        )));
    }
    if user.admin && state.users.values().filter(|u| u.admin).count() == 1 {
        return Err(CommandError::Conflict(format!(
            "{} is the last admin; make another admin first (hctl users:create EMAIL --admin)",
            user.email
        )));
    }
    state.users.remove(&id);
    state.tokens.retain(|_, t| t.user_id != id);
    for app in state.apps.values_mut() {
        app.collaborators.retain(|c| c.user != id);
    }
    Ok(CommandOutput::Done)
}

/// Sets (`Some`) or clears (`None`) a user's password hash.
pub(super) fn set_password(
    state: &mut State,
    id: Uuid,
    password_hash: Option<&str>,
) -> CommandResult {
    let user = state
        .users
        .get_mut(&id)
        .ok_or_else(|| CommandError::NotFound(format!("user {id} not found")))?;
    user.password_hash = password_hash.map(str::to_string);
    Ok(CommandOutput::Done)
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use crate::command::fixtures::{actor, create as create_app, token, user};
    use crate::command::{Command, CommandError};
    use crate::model::{Collaborator, State};

    #[test]
    fn users_have_unique_lowercase_emails() {
        let mut s = State::default();
        let a = user(1, "a@x.org", false);
        Command::CreateUser {
            user: a.clone(),
            token: Some(token(a.id, "first")),
        }
        .apply(&mut s)
        .unwrap();
        assert_eq!(s.tokens.len(), 1);
        let before = s.clone();
        for (u, what) in [
            (user(2, "a@x.org", false), "a taken email"),
            (user(3, "A@x.org", false), "an uppercase email"),
            (user(4, "nobody", false), "an invalid email"),
            (user(1, "b@x.org", false), "a taken id"),
        ] {
            let r = Command::CreateUser {
                user: u,
                token: None,
            }
            .apply(&mut s);
            assert!(
                matches!(r, Err(CommandError::Conflict(_) | CommandError::Invalid(_))),
                "{what}: {r:?}"
            );
            assert_eq!(s, before, "{what} changed the state");
        }
        let other = token(Uuid::from_u128(99), "other");
        let r = Command::CreateUser {
            user: user(5, "c@x.org", false),
            token: Some(other),
        }
        .apply(&mut s);
        assert!(matches!(r, Err(CommandError::Invalid(_))), "{r:?}");
        assert_eq!(s.find_user("A@X.ORG").map(|u| u.id), Some(a.id));
        assert_eq!(s.find_user(&a.id.to_string()).map(|u| u.id), Some(a.id));
    }

    #[test]
    fn removing_a_user_takes_their_tokens_and_collaborations_but_not_owned_apps() {
        let mut s = State::default();
        let app = create_app(&mut s, "shared"); // owned by the fixtures' admin
        let b = user(7, "b@x.org", false);
        Command::CreateUser {
            user: b.clone(),
            token: Some(token(b.id, "b")),
        }
        .apply(&mut s)
        .unwrap();
        Command::AddCollaborator {
            app,
            collaborator: Collaborator {
                id: Uuid::from_u128(70),
                user: b.id,
                created_at: actor(1).at,
            },
        }
        .apply(&mut s)
        .unwrap();
        Command::RemoveUser { user: b.id }.apply(&mut s).unwrap();
        assert!(s.users.get(&b.id).is_none());
        assert!(s.tokens.values().all(|t| t.user_id != b.id));
        assert!(s.apps[&app].collaborators.is_empty());
        // The owner of an app, and the last admin, stay.
        let owner = s.apps[&app].owner;
        let before = s.clone();
        let r = Command::RemoveUser { user: owner }.apply(&mut s);
        assert!(
            matches!(r, Err(CommandError::Conflict(ref m)) if m.contains("shared")),
            "{r:?}"
        );
        Command::DeleteApp { app }.apply(&mut s).unwrap();
        let r = Command::RemoveUser { user: owner }.apply(&mut s);
        assert!(
            matches!(r, Err(CommandError::Conflict(ref m)) if m.contains("last admin")),
            "{r:?}"
        );
        assert_eq!(s.users.len(), before.users.len());
    }

    #[test]
    fn passwords_are_set_and_cleared() {
        let mut s = State::default();
        let a = user(1, "a@x.org", false);
        Command::CreateUser {
            user: a.clone(),
            token: None,
        }
        .apply(&mut s)
        .unwrap();
        Command::SetPassword {
            user: a.id,
            password_hash: Some("$argon2id$x".into()),
        }
        .apply(&mut s)
        .unwrap();
        assert_eq!(s.users[&a.id].password_hash.as_deref(), Some("$argon2id$x"));
        Command::SetPassword {
            user: a.id,
            password_hash: None,
        }
        .apply(&mut s)
        .unwrap();
        assert_eq!(s.users[&a.id].password_hash, None);
        let r = Command::SetPassword {
            user: Uuid::from_u128(42),
            password_hash: None,
        }
        .apply(&mut s);
        assert!(matches!(r, Err(CommandError::NotFound(_))));
    }
}
