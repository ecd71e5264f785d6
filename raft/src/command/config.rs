//! Config vars: setting and unsetting them makes the next release.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::apps::app_mut;
use super::releases::push_release;
use super::{Actor, CommandError, CommandOutput, CommandResult};
use crate::model::{validate_config_key, State};

/// Sets (`Some`) and unsets (`None`) config vars; makes the next release with the current
/// slug.
pub(super) fn set(
    state: &mut State,
    app: Uuid,
    changes: &BTreeMap<String, Option<String>>,
    release_id: Uuid,
    actor: &Actor,
) -> CommandResult {
    for key in changes.keys() {
        validate_config_key(key).map_err(CommandError::Invalid)?;
    }
    if changes.is_empty() {
        return Err(CommandError::Invalid("no config vars to change".into()));
    }
    let a = app_mut(state, &app)?;
    let config = a.config.changed(|config| {
        for (k, v) in changes {
            match v {
                Some(v) => {
                    config.insert(k.clone(), v.clone());
                }
                None => {
                    config.remove(k);
                }
            }
        }
    });
    let slug = a.current_release().and_then(|r| r.slug);
    a.config = config.clone();
    let version = push_release(
        a,
        release_id,
        slug,
        config,
        config_description(changes),
        actor,
    );
    Ok(CommandOutput::Release {
        app: Box::new(a.summary()),
        version,
    })
}

/// Heroku-style description of a config change.
pub fn config_description(changes: &BTreeMap<String, Option<String>>) -> String {
    let set: Vec<&str> = changes
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k.as_str())
        .collect();
    let unset: Vec<&str> = changes
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k.as_str())
        .collect();
    match (set.is_empty(), unset.is_empty()) {
        (false, true) => format!("Set {} config vars", set.join(", ")),
        (true, false) => format!("Remove {} config vars", unset.join(", ")),
        _ => format!(
            "Set {} and remove {} config vars",
            set.join(", "),
            unset.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::command::fixtures::{create, set};
    use crate::model::State;

    #[test]
    fn config_changes_make_releases_with_descriptions() {
        let mut s = State::default();
        let id = create(&mut s, "my-app");
        set(id, &[("FOO", Some("1")), ("BAR", Some("2"))])
            .apply(&mut s)
            .unwrap();
        set(id, &[("FOO", None)]).apply(&mut s).unwrap();
        set(id, &[("BAZ", Some("3")), ("BAR", None)])
            .apply(&mut s)
            .unwrap();
        let app = &s.apps[&id];
        let descs: Vec<&str> = app
            .releases
            .iter()
            .map(|r| r.description.as_str())
            .collect();
        assert_eq!(
            descs,
            [
                "Initial release",
                "Set BAR, FOO config vars",
                "Remove FOO config vars",
                "Set BAZ and remove BAR config vars"
            ]
        );
        assert_eq!(
            *app.config,
            BTreeMap::from([("BAZ".to_string(), "3".to_string())])
        );
        assert_eq!(app.releases[1].config.len(), 2);
    }
}
