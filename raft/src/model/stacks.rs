//! Stack images (issue 15): the root filesystems builds and dynos run on, one run image and
//! one build image per stack (`heroku-24/run`, `heroku-24/build`). An image is a zstd tar
//! in every node's slug store, named by its sha256; the state records which sha256 a
//! stack's image is and which nodes hold it. Every node fetches and unpacks it once.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::NodeId;

/// Which of a stack's two images: the smaller run image of dynos, or the build image
/// (the run image with compilers and headers) of builds, as on Heroku.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StackImageKind {
    Run,
    Build,
}

impl StackImageKind {
    pub const ALL: [StackImageKind; 2] = [StackImageKind::Run, StackImageKind::Build];

    pub fn as_str(self) -> &'static str {
        match self {
            StackImageKind::Run => "run",
            StackImageKind::Build => "build",
        }
    }

    pub fn parse(s: &str) -> Option<StackImageKind> {
        match s {
            "run" => Some(StackImageKind::Run),
            "build" => Some(StackImageKind::Build),
            _ => None,
        }
    }
}

/// One imported image of a stack.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StackImage {
    /// The stack's name (one of [`crate::catalog::STACKS`]).
    pub stack: String,
    pub kind: StackImageKind,
    /// sha256 (hex) of the compressed image: its name in every node's slug store.
    pub sha256: String,
    /// Compressed bytes.
    pub bytes: u64,
    /// Bytes once unpacked.
    pub unpacked_bytes: u64,
    /// `PRETTY_NAME` of the image's `/etc/os-release`.
    pub os: String,
    /// Nodes that hold the compressed image.
    pub holders: BTreeSet<NodeId>,
    pub created_at: DateTime<Utc>,
}

/// The key of a stack's image in [`super::State::stack_images`]: `heroku-24/run`.
pub fn stack_image_key(stack: &str, kind: StackImageKind) -> String {
    format!("{stack}/{}", kind.as_str())
}
