//! Helpers shared by the command tests of several areas.

use chrono::DateTime;
use uuid::Uuid;

use super::{Actor, Command};
use crate::model::{State, Token, User};

/// The id of the fixtures' admin, who creates the apps of [`create`].
pub const ADMIN: Uuid = Uuid::from_u128(0xad);

/// A user with id `n`.
pub fn user(n: u128, email: &str, admin: bool) -> User {
    User {
        id: Uuid::from_u128(n),
        email: email.into(),
        created_at: actor(0).at,
        admin,
        password_hash: None,
    }
}

/// A token of `user` whose secret is `name`.
pub fn token(user: Uuid, name: &str) -> Token {
    Token {
        id: Uuid::new_v4(),
        sha256: format!("sha256-of-{name}"),
        user_email: format!("{name}@x.org"),
        user_id: user,
        description: name.into(),
        created_at: actor(0).at,
        expires_at: None,
    }
}

/// The admin, `secs` seconds after a fixed instant.
pub fn actor(secs: i64) -> Actor {
    Actor {
        email: "admin@haven.local".into(),
        at: DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap(),
    }
}

/// Creates app `name` in `state`, owned by the admin [`ADMIN`] (made if missing); returns
/// its id.
pub fn create(state: &mut State, name: &str) -> Uuid {
    state
        .users
        .entry(ADMIN)
        .or_insert_with(|| user(ADMIN.as_u128(), "admin@haven.local", true));
    let id = Uuid::new_v4();
    Command::CreateApp {
        id,
        name: name.into(),
        stack: "heroku-24".into(),
        release_id: Uuid::new_v4(),
        actor: actor(0),
        owner: ADMIN,
    }
    .apply(state)
    .unwrap();
    id
}

/// A config change of `app`: `Some` sets, `None` unsets.
pub fn set(app: Uuid, pairs: &[(&str, Option<&str>)]) -> Command {
    Command::SetConfig {
        app,
        changes: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect(),
        release_id: Uuid::new_v4(),
        actor: actor(1),
    }
}

/// A slug record `id` of `app`, held by node 1.
pub fn slug(id: Uuid, app: Uuid) -> crate::model::Slug {
    crate::model::Slug {
        id,
        app,
        sha256: "a".repeat(64),
        size: 1,
        process_types: Default::default(),
        holders: [1].into_iter().collect(),
        commit: None,
        stack: "heroku-24".into(),
        buildpack_provided_description: None,
        created_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
    }
}
