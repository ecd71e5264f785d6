//! Stack images: importing one (`hctl stacks:import`) and recording who holds it.

use chrono::{DateTime, Utc};

use super::{CommandError, CommandOutput, CommandResult};
use crate::catalog::STACKS;
use crate::model::{stack_image_key, NodeId, StackImage, StackImageKind, State};

fn valid_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Makes `sha256` the stack's image of `kind` (replacing an earlier one), held by `node`.
#[allow(clippy::too_many_arguments)]
pub(super) fn set_image(
    state: &mut State,
    stack: &str,
    kind: StackImageKind,
    sha256: &str,
    bytes: u64,
    unpacked_bytes: u64,
    os: &str,
    node: NodeId,
    at: DateTime<Utc>,
) -> CommandResult {
    if !STACKS.contains(&stack) {
        return Err(CommandError::Invalid(format!(
            "unknown stack {stack:?}: Haven's stacks are {}",
            STACKS.join(", ")
        )));
    }
    if !valid_sha256(sha256) {
        return Err(CommandError::Invalid(format!(
            "bad image digest {sha256:?}: 64 lowercase hex digits expected"
        )));
    }
    let image = StackImage {
        stack: stack.to_string(),
        kind,
        sha256: sha256.to_string(),
        bytes,
        unpacked_bytes,
        os: os.to_string(),
        holders: [node].into_iter().collect(),
        created_at: at,
    };
    state
        .stack_images
        .insert(stack_image_key(stack, kind), image);
    Ok(CommandOutput::Done)
}

/// More nodes hold the stack image `sha256` (under any stack or kind).
pub(super) fn add_holders(state: &mut State, sha256: &str, nodes: &[NodeId]) -> CommandResult {
    let mut found = false;
    for image in state.stack_images.values_mut() {
        if image.sha256 == sha256 {
            image.holders.extend(nodes.iter().copied());
            found = true;
        }
    }
    if found {
        Ok(CommandOutput::Done)
    } else {
        Err(CommandError::NotFound(format!(
            "no stack image {sha256} is imported"
        )))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::command::Command;

    fn sha(c: char) -> String {
        c.to_string().repeat(64)
    }

    fn import(state: &mut State, stack: &str, kind: StackImageKind, sha: &str) -> CommandResult {
        Command::SetStackImage {
            stack: stack.into(),
            kind,
            sha256: sha.into(),
            bytes: 10,
            unpacked_bytes: 30,
            os: "Debian GNU/Linux 13 (trixie)".into(),
            node: 1,
            at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        }
        .apply(state)
    }

    #[test]
    fn an_import_replaces_the_stacks_image_of_that_kind_and_holders_grow() {
        let mut s = State::default();
        import(&mut s, "heroku-24", StackImageKind::Run, &sha('a')).unwrap();
        import(&mut s, "heroku-24", StackImageKind::Build, &sha('b')).unwrap();
        import(&mut s, "heroku-24", StackImageKind::Run, &sha('c')).unwrap();
        assert_eq!(s.stack_images.len(), 2);
        assert_eq!(s.stack_images["heroku-24/run"].sha256, sha('c'));
        Command::AddStackImageHolders {
            sha256: sha('c'),
            nodes: vec![2, 3],
        }
        .apply(&mut s)
        .unwrap();
        let holders: Vec<_> = s.stack_images["heroku-24/run"]
            .holders
            .iter()
            .copied()
            .collect();
        assert_eq!(holders, vec![1, 2, 3]);
        assert_eq!(s.stack_images["heroku-24/build"].holders.len(), 1);
    }

    #[test]
    fn unknown_stacks_bad_digests_and_unknown_images_are_refused() {
        let mut s = State::default();
        let e = import(&mut s, "haven-1", StackImageKind::Run, &sha('a')).unwrap_err();
        assert!(e.to_string().contains("unknown stack"), "{e}");
        let e = import(&mut s, "heroku-24", StackImageKind::Run, "ABC").unwrap_err();
        assert!(e.to_string().contains("bad image digest"), "{e}");
        let e = Command::AddStackImageHolders {
            sha256: sha('d'),
            nodes: vec![2],
        }
        .apply(&mut s)
        .unwrap_err();
        assert!(matches!(e, CommandError::NotFound(_)), "{e}");
        assert!(s.stack_images.is_empty());
    }
}
