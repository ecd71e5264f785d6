//! Helpers shared by the command tests of several areas.

use chrono::DateTime;
use uuid::Uuid;

use super::{Actor, Command};
use crate::model::State;

/// The admin, `secs` seconds after a fixed instant.
pub fn actor(secs: i64) -> Actor {
    Actor {
        email: "admin@haven.local".into(),
        at: DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap(),
    }
}

/// Creates app `name` in `state`; returns its id.
pub fn create(state: &mut State, name: &str) -> Uuid {
    let id = Uuid::new_v4();
    Command::CreateApp {
        id,
        name: name.into(),
        stack: "heroku-24".into(),
        release_id: Uuid::new_v4(),
        actor: actor(0),
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
