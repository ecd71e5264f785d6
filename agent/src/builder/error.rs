//! Why a build could not start. The API maps these to its status codes
//! (`api/builds.rs`); the builder knows nothing about HTTP.

use haven_raft::command::CommandError;
use haven_raft::ClusterError;

/// A build that was not started: nothing was recorded and the source is removed where
/// it was checked.
#[derive(Debug)]
pub enum BuildError {
    /// The uploaded source cannot be read on this node.
    SourceUnreadable(String),
    /// The checksum names an algorithm other than SHA256.
    ChecksumUnsupported(String),
    /// The source hashes to something else than the checksum the client gave.
    ChecksumMismatch { actual: String, expected: String },
    /// The cluster refused the build (another build of the app runs, the app is gone).
    Refused(CommandError),
    /// The build could not be committed (no leader, a timeout).
    Cluster(ClusterError),
    /// This node could not prepare the build's files.
    Internal(String),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::SourceUnreadable(e) => write!(f, "source unreadable: {e}"),
            BuildError::ChecksumUnsupported(c) => {
                write!(f, "checksum {c:?} is not supported: use SHA256:<hex>")
            }
            BuildError::ChecksumMismatch { actual, expected } => write!(
                f,
                "source checksum mismatch: the blob hashes to {actual}, not {expected}"
            ),
            BuildError::Refused(e) => write!(f, "{e}"),
            BuildError::Cluster(e) => write!(f, "{e}"),
            BuildError::Internal(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for BuildError {}
