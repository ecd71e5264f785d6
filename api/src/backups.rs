//! Postgres backups (`/apps/{app}/pg-backups`, Haven's own resource: Heroku serves
//! `pg:backups` from its data API, not the Platform API).

use serde::{Deserialize, Serialize};

use crate::{AppRef, NamedRef};

/// One backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PgBackup {
    pub id: String,
    /// `b001`.
    pub name: String,
    pub num: u32,
    pub app: AppRef,
    /// The database it is of (the add-on's name when it started).
    pub addon: NamedRef,
    /// `Running`, `Completed` or `Failed`.
    pub status: String,
    pub succeeded: bool,
    /// Why it failed.
    pub error: Option<String>,
    pub created_at: String,
    pub finished_at: Option<String>,
    /// Bytes of the dump.
    pub size: u64,
    /// `SHA256:…` of the dump.
    pub checksum: Option<String>,
    /// How many nodes hold the dump.
    pub copies: usize,
    /// Taken by the daily schedule rather than by hand.
    pub scheduled: bool,
}

/// A daily backup schedule of one database.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PgBackupSchedule {
    pub addon: NamedRef,
    pub app: AppRef,
    /// `02:00 UTC`.
    pub at: String,
    /// Scheduled backups kept.
    pub retain: usize,
    pub created_at: String,
}

/// `POST /apps/{app}/pg-backup-schedules` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PgBackupScheduleCreate {
    #[serde(default)]
    pub database: Option<String>,
    /// `HH:MM` in UTC, optionally followed by `UTC`.
    pub at: String,
}

/// `POST /apps/{app}/pg-backups` and `.../actions/restore` body: the database, as an
/// add-on name or attachment (`DATABASE`, `HEROKU_POSTGRESQL_JADE_URL`); default
/// `DATABASE`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PgBackupTarget {
    #[serde(default)]
    pub database: Option<String>,
}
