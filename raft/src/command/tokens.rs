//! API tokens: adding and revoking them.

use uuid::Uuid;

use super::{CommandError, CommandOutput, CommandResult};
use crate::model::{State, Token};

/// Adds an API token; a token is stored once.
pub(super) fn add(state: &mut State, token: &Token) -> CommandResult {
    if state.tokens.contains_key(&token.sha256) {
        return Err(CommandError::Conflict("token exists".into()));
    }
    state.tokens.insert(token.sha256.clone(), token.clone());
    Ok(CommandOutput::Done)
}

/// Revokes (removes) token `id` of `user`; answers the revoked token. Another user's token
/// is "not found", so that ids reveal nothing.
pub(super) fn revoke(state: &mut State, user: Uuid, id: Uuid) -> CommandResult {
    let key = state
        .tokens
        .iter()
        .find(|(_, t)| t.id == id && t.user_id == user)
        .map(|(k, _)| k.clone())
        .ok_or_else(|| CommandError::NotFound(format!("authorization {id} not found")))?;
    let token = state
        .tokens
        .remove(&key)
        .ok_or_else(|| CommandError::NotFound(format!("authorization {id} not found")))?;
    Ok(CommandOutput::Token(Box::new(token)))
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use crate::command::fixtures::token;
    use crate::command::{Command, CommandError, CommandOutput};
    use crate::model::State;

    #[test]
    fn a_token_is_revoked_only_by_its_user() {
        let mut s = State::default();
        let (alice, bob) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let t = token(alice, "a");
        Command::AddToken { token: t.clone() }
            .apply(&mut s)
            .unwrap();
        let before = s.clone();
        let by_bob = Command::RevokeToken {
            user: bob,
            token: t.id,
        }
        .apply(&mut s);
        assert!(matches!(by_bob, Err(CommandError::NotFound(_))));
        assert_eq!(s, before);
        let out = Command::RevokeToken {
            user: alice,
            token: t.id,
        }
        .apply(&mut s)
        .unwrap();
        assert!(matches!(out, CommandOutput::Token(ref x) if x.id == t.id));
        assert!(s.tokens.is_empty());
        let again = Command::RevokeToken {
            user: alice,
            token: t.id,
        }
        .apply(&mut s);
        assert!(matches!(again, Err(CommandError::NotFound(_))));
    }
}
