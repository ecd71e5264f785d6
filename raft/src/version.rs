//! The version fields a rolling upgrade is checked against: the on-disk format of a node's
//! store and the peer protocol nodes speak. The checks are pure; the store records its
//! format in `meta` (`storage/mod.rs`), and the agent's peer transport exchanges the
//! protocol when it sets up a connection and when a node joins (`agent/src/version.rs`).
//!
//! A binary reads the formats `MIN_FORMAT..=FORMAT` (an older one is rewritten as `FORMAT`
//! when opened) and speaks the protocols `MIN_PROTOCOL..=PROTOCOL`. Two nodes work
//! together when their protocol ranges overlap. Stores and peers from before these fields
//! existed (up to commit 6985af4) carry no version: they are format 1 and protocol 1.
//!
//! Bump `FORMAT` when what a store holds changes shape (the log's or snapshot's bincode,
//! the `meta`, `sm` or history keys) and `PROTOCOL` when what travels between nodes does (a
//! new `Command` variant or field, a service method, a stream kind's payload); raise the
//! minimums only when the old shape is no longer read or spoken.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The on-disk format this binary writes. 2: snapshot heads start with a magic and carry
/// the stack images beside the state (format-1 heads are still read).
pub const FORMAT: u32 = 2;
/// The oldest on-disk format this binary still opens.
pub const MIN_FORMAT: u32 = 1;
/// The format of a store that records none (written before format versions).
pub const UNRECORDED_FORMAT: u32 = 1;

/// The peer protocol this binary prefers (the newest it speaks). 2: the stack image
/// commands, and snapshots with format-2 heads (a protocol-1 node cannot install one).
pub const PROTOCOL: u32 = 2;
/// The oldest peer protocol this binary still speaks.
pub const MIN_PROTOCOL: u32 = 1;

/// A range of peer protocols a node speaks, `min..=max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protocols {
    pub min: u32,
    pub max: u32,
}

impl Protocols {
    /// What this binary speaks.
    pub const THIS: Protocols = Protocols {
        min: MIN_PROTOCOL,
        max: PROTOCOL,
    };
    /// What a peer that announces nothing speaks (a node from before protocol versions).
    pub const UNANNOUNCED: Protocols = Protocols { min: 1, max: 1 };
}

impl fmt::Display for Protocols {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.max)
        } else {
            write!(f, "{} to {}", self.min, self.max)
        }
    }
}

/// Why two nodes cannot talk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// The peer needs a protocol newer than any this node speaks.
    PeerTooNew { local: Protocols, peer: Protocols },
    /// The peer speaks only protocols older than this node still speaks.
    PeerTooOld { local: Protocols, peer: Protocols },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::PeerTooNew { local, peer } => write!(
                f,
                "the peer speaks peer protocol {peer}, newer than this node accepts \
                 (protocol {local})"
            ),
            Mismatch::PeerTooOld { local, peer } => write!(
                f,
                "the peer speaks peer protocol {peer}, older than this node still supports \
                 (protocol {local})"
            ),
        }
    }
}

/// The protocol two nodes speak to each other: the newest both speak.
pub fn check_protocols(local: Protocols, peer: Protocols) -> Result<u32, Mismatch> {
    if peer.min > local.max {
        return Err(Mismatch::PeerTooNew { local, peer });
    }
    if peer.max < local.min {
        return Err(Mismatch::PeerTooOld { local, peer });
    }
    Ok(local.max.min(peer.max))
}

/// What opening a store with a recorded format does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatCheck {
    /// The store is in this binary's format.
    Current,
    /// The store is in an older format this binary reads: it is rewritten as [`FORMAT`]
    /// (only the recorded number changes: older snapshot heads are read as they are).
    Upgrade { from: u32 },
}

/// Checks the format a store records (`None`: none recorded) against the formats this
/// binary reads, `min..=max`. The error says what to do, for the operator.
pub fn check_format(recorded: Option<u32>, min: u32, max: u32) -> Result<FormatCheck, String> {
    let found = recorded.unwrap_or(UNRECORDED_FORMAT);
    if found > max {
        return Err(format!(
            "its on-disk format is {found}, newer than this havend reads (format {}): a newer \
             havend ran on it; start that havend (or a newer one) again, an on-disk format is \
             never downgraded",
            Range(min, max)
        ));
    }
    if found < min {
        return Err(format!(
            "its on-disk format is {found}, older than this havend still reads (format {}): \
             upgrade through a havend release that reads format {found} first",
            Range(min, max)
        ));
    }
    Ok(if found == max && recorded.is_some() {
        FormatCheck::Current
    } else {
        FormatCheck::Upgrade { from: found }
    })
}

struct Range(u32, u32);

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Protocols {
            min: self.0,
            max: self.1,
        }
        .fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(min: u32, max: u32) -> Protocols {
        Protocols { min, max }
    }

    #[test]
    fn overlapping_protocol_ranges_speak_the_newest_common_one() {
        let cases = [
            // (local, peer, agreed)
            (p(1, 1), p(1, 1), Some(1)),
            (p(1, 2), p(1, 1), Some(1)),
            (p(1, 1), p(1, 2), Some(1)),
            (p(2, 3), p(1, 2), Some(2)),
            (p(2, 3), p(3, 5), Some(3)),
            (p(2, 4), p(2, 4), Some(4)),
        ];
        for (local, peer, want) in cases {
            assert_eq!(
                check_protocols(local, peer).ok(),
                want,
                "{local:?} {peer:?}"
            );
            // Symmetric: both sides agree on the same protocol.
            assert_eq!(
                check_protocols(peer, local).ok(),
                want,
                "{peer:?} {local:?}"
            );
        }
    }

    #[test]
    fn disjoint_protocol_ranges_are_refused_with_the_direction() {
        let local = p(2, 3);
        let new = check_protocols(local, p(4, 5)).unwrap_err();
        assert_eq!(
            new,
            Mismatch::PeerTooNew {
                local,
                peer: p(4, 5)
            }
        );
        assert_eq!(
            new.to_string(),
            "the peer speaks peer protocol 4 to 5, newer than this node accepts (protocol 2 to 3)"
        );
        let old = check_protocols(local, Protocols::UNANNOUNCED).unwrap_err();
        assert_eq!(
            old.to_string(),
            "the peer speaks peer protocol 1, older than this node still supports \
             (protocol 2 to 3)"
        );
        // Seen from the other side, the same pair is refused the other way round.
        assert!(matches!(
            check_protocols(p(4, 5), local),
            Err(Mismatch::PeerTooOld { .. })
        ));
        assert!(matches!(
            check_protocols(Protocols::UNANNOUNCED, local),
            Err(Mismatch::PeerTooNew { .. })
        ));
    }

    #[test]
    fn this_binary_speaks_with_nodes_from_before_protocol_versions() {
        assert_eq!(
            check_protocols(Protocols::THIS, Protocols::UNANNOUNCED),
            Ok(1)
        );
        assert!(MIN_PROTOCOL <= PROTOCOL && MIN_FORMAT <= FORMAT);
    }

    #[test]
    fn formats_are_opened_upgraded_or_refused() {
        assert_eq!(check_format(Some(1), 1, 1), Ok(FormatCheck::Current));
        // A store from before format versions is format 1, and gets the number recorded.
        assert_eq!(
            check_format(None, 1, 1),
            Ok(FormatCheck::Upgrade { from: 1 })
        );
        assert_eq!(check_format(None, 1, FORMAT), check_format(None, 1, 1));
        assert_eq!(
            check_format(Some(2), 1, 3),
            Ok(FormatCheck::Upgrade { from: 2 })
        );
        assert_eq!(check_format(Some(3), 1, 3), Ok(FormatCheck::Current));
        let newer = check_format(Some(2), 1, 1).unwrap_err();
        assert!(
            newer.starts_with("its on-disk format is 2, newer than this havend reads (format 1)"),
            "{newer}"
        );
        let older = check_format(None, 2, 3).unwrap_err();
        assert!(
            older.starts_with(
                "its on-disk format is 1, older than this havend still reads (format 2 to 3)"
            ),
            "{older}"
        );
    }
}
