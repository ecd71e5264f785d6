//! Postgres backups (`pg:backups`): dumps of an add-on's database, stored as blobs by
//! sha256 on min(3, up nodes) like slugs, numbered per app (`b001`) as on Heroku.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::NodeId;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum BackupStatus {
    Running,
    Completed,
    /// Why it failed, for `pg:backups:info`.
    Failed(String),
}

impl BackupStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            BackupStatus::Running => "Running",
            BackupStatus::Completed => "Completed",
            BackupStatus::Failed(_) => "Failed",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Backup {
    pub id: Uuid,
    /// Per app, from 1: shown as `b001`. Chosen when the backup starts.
    pub number: u32,
    pub app: Uuid,
    pub addon: Uuid,
    /// The add-on's name when the backup started (it outlives a rename or destroy).
    pub addon_name: String,
    /// The node that captures it.
    pub node: NodeId,
    pub status: BackupStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Bytes of the dump (`pg_dump -Fc`).
    pub size: u64,
    pub sha256: Option<String>,
    /// Nodes that hold the dump's bytes.
    pub holders: Vec<NodeId>,
}

impl Backup {
    /// `b001`.
    pub fn label(&self) -> String {
        format!("b{:03}", self.number)
    }
}

/// What a finished capture reports.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum BackupResult {
    Completed {
        sha256: String,
        size: u64,
        holders: Vec<NodeId>,
    },
    Failed(String),
}
