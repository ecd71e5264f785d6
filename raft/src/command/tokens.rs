//! API tokens.

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
