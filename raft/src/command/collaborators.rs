//! Collaborators: the users an app's owner shares it with (design §13).

use uuid::Uuid;

use super::apps::app_mut;
use super::{CommandError, CommandOutput, CommandResult};
use crate::model::{Collaborator, State};

/// Shares an app with a user. The owner and existing collaborators are refused.
pub(super) fn add(state: &mut State, app: Uuid, collaborator: &Collaborator) -> CommandResult {
    let email = state
        .users
        .get(&collaborator.user)
        .map(|u| u.email.clone())
        .ok_or_else(|| CommandError::NotFound(format!("user {} not found", collaborator.user)))?;
    let a = app_mut(state, &app)?;
    if a.owner == collaborator.user {
        return Err(CommandError::Conflict(format!(
            "{email} owns {} already",
            a.name
        )));
    }
    if a.collaborators.iter().any(|c| c.user == collaborator.user) {
        return Err(CommandError::Conflict(format!(
            "{email} is already a collaborator on {}",
            a.name
        )));
    }
    if a.collaborators.iter().any(|c| c.id == collaborator.id) {
        return Err(CommandError::Conflict(format!(
            "collaborator id {} exists",
            collaborator.id
        )));
    }
    a.collaborators.push(collaborator.clone());
    Ok(CommandOutput::App(Box::new(a.summary())))
}

/// Stops sharing an app with a user.
pub(super) fn remove(state: &mut State, app: Uuid, user: Uuid) -> CommandResult {
    let a = app_mut(state, &app)?;
    let before = a.collaborators.len();
    a.collaborators.retain(|c| c.user != user);
    if a.collaborators.len() == before {
        return Err(CommandError::NotFound(
            "Couldn't find that collaborator.".into(),
        ));
    }
    Ok(CommandOutput::App(Box::new(a.summary())))
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use crate::command::fixtures::{actor, create, user};
    use crate::command::{Command, CommandError};
    use crate::model::{Collaborator, State};

    fn collab(id: u128, user: Uuid) -> Collaborator {
        Collaborator {
            id: Uuid::from_u128(id),
            user,
            created_at: actor(1).at,
        }
    }

    #[test]
    fn collaborators_are_added_once_and_removed() {
        let mut s = State::default();
        let app = create(&mut s, "shared");
        let b = user(7, "b@x.org", false);
        Command::CreateUser {
            user: b.clone(),
            token: None,
        }
        .apply(&mut s)
        .unwrap();
        let add = |id| Command::AddCollaborator {
            app,
            collaborator: collab(id, b.id),
        };
        add(1).apply(&mut s).unwrap();
        assert!(s.apps[&app].is_member(b.id));
        let before = s.clone();
        assert!(matches!(
            add(2).apply(&mut s),
            Err(CommandError::Conflict(_))
        ));
        let owner = s.apps[&app].owner;
        let r = Command::AddCollaborator {
            app,
            collaborator: collab(3, owner),
        }
        .apply(&mut s);
        assert!(matches!(r, Err(CommandError::Conflict(_))), "{r:?}");
        let r = Command::AddCollaborator {
            app,
            collaborator: collab(4, Uuid::from_u128(404)),
        }
        .apply(&mut s);
        assert!(matches!(r, Err(CommandError::NotFound(_))), "{r:?}");
        assert_eq!(s, before);
        Command::RemoveCollaborator { app, user: b.id }
            .apply(&mut s)
            .unwrap();
        assert!(!s.apps[&app].is_member(b.id));
        let r = Command::RemoveCollaborator { app, user: b.id }.apply(&mut s);
        assert!(matches!(r, Err(CommandError::NotFound(_))));
    }
}
