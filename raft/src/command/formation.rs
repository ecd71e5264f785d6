//! Formation: quantities and sizes of process types, set by users and by deploys.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::apps::app_mut;
use super::{Actor, CommandError, CommandOutput, CommandResult};
use crate::model::{
    normalize_size, validate_process_type, App, Formation, State, DEFAULT_SIZE, MAX_QUANTITY,
};

/// A change of quantity in a formation update.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum QuantityChange {
    Set(u32),
    /// `+1`, `-2`: relative to the current quantity (0 for a new type).
    Add(i64),
}

impl QuantityChange {
    /// Parses `3`, `"3"`, `"+1"`, `"-1"`.
    pub fn parse(text: &str) -> Result<QuantityChange, String> {
        let t = text.trim();
        let bad = || format!("quantity {text:?} is invalid: use a number such as 2, or +1 / -1");
        if let Some(rest) = t.strip_prefix('+') {
            rest.parse::<i64>()
                .map(QuantityChange::Add)
                .map_err(|_| bad())
        } else if t.starts_with('-') {
            t.parse::<i64>().map(QuantityChange::Add).map_err(|_| bad())
        } else {
            t.parse::<u32>().map(QuantityChange::Set).map_err(|_| bad())
        }
    }
}

/// One process type's change in a
/// [`Command::UpdateFormation`](super::Command::UpdateFormation).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FormationChange {
    pub process_type: String,
    pub quantity: Option<QuantityChange>,
    pub size: Option<String>,
    /// Id for the formation if this change creates it.
    pub new_id: Uuid,
}

/// Sets quantities and sizes of process types; a change of a new type creates it.
pub(super) fn update(
    state: &mut State,
    app: Uuid,
    changes: &[FormationChange],
    actor: &Actor,
) -> CommandResult {
    let a = app_mut(state, &app)?;
    let mut formation = a.formation.clone();
    let mut types = Vec::new();
    for change in changes {
        validate_process_type(&change.process_type).map_err(CommandError::Invalid)?;
        let entry = formation
            .entry(change.process_type.clone())
            .or_insert_with(|| Formation {
                id: change.new_id,
                process_type: change.process_type.clone(),
                quantity: 0,
                size: DEFAULT_SIZE.into(),
                command: String::new(),
                created_at: actor.at,
                updated_at: actor.at,
            });
        if let Some(q) = change.quantity {
            let new = match q {
                QuantityChange::Set(n) => i64::from(n),
                QuantityChange::Add(d) => i64::from(entry.quantity).saturating_add(d),
            };
            if !(0..=i64::from(MAX_QUANTITY)).contains(&new) {
                return Err(CommandError::Invalid(format!(
                    "quantity of {} would be {new}: it must be between 0 and {MAX_QUANTITY}",
                    change.process_type
                )));
            }
            entry.quantity = new as u32;
        }
        if let Some(size) = &change.size {
            entry.size = normalize_size(size).map_err(CommandError::Invalid)?;
        }
        entry.updated_at = actor.at;
        types.push(change.process_type.clone());
    }
    a.formation = formation;
    a.updated_at = actor.at;
    Ok(CommandOutput::Formation {
        app: Box::new(a.summary()),
        types,
    })
}

/// After a deploy, the formation holds exactly the slug's process types, with their
/// commands. A new `web` type starts at quantity 1 (as on Heroku's first deploy), other new
/// types at 0; existing quantities and sizes are kept. New formation ids derive from the
/// release id so that apply stays deterministic.
pub(super) fn set_formation_types(
    app: &mut App,
    types: &BTreeMap<String, String>,
    release_id: Uuid,
    at: DateTime<Utc>,
) {
    let keep: BTreeSet<&String> = types.keys().collect();
    app.formation.retain(|t, _| keep.contains(t));
    for (i, (t, command)) in types.iter().enumerate() {
        // The release phase runs once per release; it is never a long-running formation.
        if t == "release" {
            continue;
        }
        let entry = app.formation.entry(t.clone()).or_insert_with(|| Formation {
            id: derived_id(release_id, i as u64),
            process_type: t.clone(),
            quantity: u32::from(t == "web"),
            size: DEFAULT_SIZE.into(),
            command: String::new(),
            created_at: at,
            updated_at: at,
        });
        if entry.command != *command {
            entry.command = command.clone();
            entry.updated_at = at;
        }
    }
}

/// A deterministic id derived from another (for records a command creates in bulk).
fn derived_id(base: Uuid, n: u64) -> Uuid {
    let mut bytes = *base.as_bytes();
    for (i, b) in (n + 1).to_be_bytes().iter().enumerate() {
        bytes[8 + i] ^= b;
    }
    // Keep it a valid v4-looking uuid.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Uuid::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::{FormationChange, QuantityChange};
    use crate::command::fixtures::{actor, create};
    use crate::command::Command;
    use crate::model::State;

    #[test]
    fn formation_quantities_absolute_and_relative() {
        let mut s = State::default();
        let id = create(&mut s, "my-app");
        let change = |t: &str, q: Option<QuantityChange>, size: Option<&str>| FormationChange {
            process_type: t.into(),
            quantity: q,
            size: size.map(str::to_string),
            new_id: Uuid::new_v4(),
        };
        let cases: Vec<(Vec<FormationChange>, Result<(u32, &str), ()>)> = vec![
            (
                vec![change("web", Some(QuantityChange::Set(2)), None)],
                Ok((2, "standard-1x")),
            ),
            (
                vec![change("web", Some(QuantityChange::Add(1)), None)],
                Ok((3, "standard-1x")),
            ),
            (
                vec![change(
                    "web",
                    Some(QuantityChange::Add(-1)),
                    Some("Standard-2X"),
                )],
                Ok((2, "standard-2x")),
            ),
            (
                vec![change("web", Some(QuantityChange::Add(-5)), None)],
                Err(()),
            ),
            (
                vec![change("web", Some(QuantityChange::Set(101)), None)],
                Err(()),
            ),
            (vec![change("web", None, Some("giant"))], Err(())),
            (
                vec![change("we b", Some(QuantityChange::Set(1)), None)],
                Err(()),
            ),
        ];
        for (changes, want) in cases {
            let before = s.clone();
            let got = Command::UpdateFormation {
                app: id,
                changes: changes.clone(),
                actor: actor(3),
            }
            .apply(&mut s);
            match want {
                Ok((q, size)) => {
                    got.unwrap();
                    let f = &s.apps[&id].formation["web"];
                    assert_eq!((f.quantity, f.size.as_str()), (q, size), "{changes:?}");
                }
                Err(()) => {
                    assert!(got.is_err(), "{changes:?}");
                    assert_eq!(s, before);
                }
            }
        }
    }

    #[test]
    fn quantity_parsing() {
        assert_eq!(QuantityChange::parse("3"), Ok(QuantityChange::Set(3)));
        assert_eq!(QuantityChange::parse("+1"), Ok(QuantityChange::Add(1)));
        assert_eq!(QuantityChange::parse("-2"), Ok(QuantityChange::Add(-2)));
        assert!(QuantityChange::parse("x").is_err());
        assert!(QuantityChange::parse("").is_err());
    }
}
