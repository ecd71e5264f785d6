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
    /// Taken by the daily schedule (kept [`SCHEDULED_RETAINED`] per database), not by hand.
    pub scheduled: bool,
}

/// Scheduled backups kept per database; older ones are dropped as new ones complete.
pub const SCHEDULED_RETAINED: usize = 7;

/// A daily backup of one database at a UTC time of day.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupSchedule {
    pub addon: Uuid,
    pub app: Uuid,
    pub hour: u8,
    pub minute: u8,
    pub created_at: DateTime<Utc>,
}

impl BackupSchedule {
    /// The latest time of day of the schedule at or before `now`.
    pub fn slot(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let today = now
            .date_naive()
            .and_hms_opt(u32::from(self.hour), u32::from(self.minute), 0)
            .map(|t| t.and_utc())
            .unwrap_or(now);
        if today <= now {
            today
        } else {
            today - chrono::Duration::days(1)
        }
    }

    /// The slot due at `now`, if it is not before the schedule was made (to the minute).
    pub fn due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        use chrono::Timelike;
        let slot = self.slot(now);
        let made = self
            .created_at
            .with_second(0)
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(self.created_at);
        (slot >= made).then_some(slot)
    }

    /// `02:00 UTC`.
    pub fn at_text(&self) -> String {
        format!("{:02}:{:02} UTC", self.hour, self.minute)
    }
}

/// Parses a schedule's time of day: `HH:MM`, optionally followed by `UTC` (or `Z`,
/// `Etc/UTC`, `+00:00`). Other time zones are refused with a message.
pub fn parse_schedule_time(text: &str) -> Result<(u8, u8), String> {
    let mut parts = text.split_whitespace();
    let time = parts.next().unwrap_or("");
    let zone = parts.collect::<Vec<_>>().join(" ");
    if !matches!(
        zone.as_str(),
        "" | "UTC" | "utc" | "Z" | "Etc/UTC" | "+00:00" | "GMT"
    ) {
        return Err(format!(
            "time zone {zone:?} is not supported: give the time in UTC, such as '02:00 UTC'"
        ));
    }
    let bad = || format!("{text:?} is not a time of day; use HH:MM such as '02:00 UTC'");
    let (h, m) = time.split_once(':').ok_or_else(bad)?;
    let h: u8 = h.parse().map_err(|_| bad())?;
    let m: u8 = m.parse().map_err(|_| bad())?;
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok((h, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn slots_are_the_latest_time_of_day_not_before_the_schedule() {
        let s = BackupSchedule {
            addon: Uuid::nil(),
            app: Uuid::nil(),
            hour: 2,
            minute: 0,
            created_at: at("2026-01-10T12:00:00Z"),
        };
        assert_eq!(
            s.slot(at("2026-01-11T03:00:00Z")),
            at("2026-01-11T02:00:00Z")
        );
        assert_eq!(
            s.slot(at("2026-01-11T01:00:00Z")),
            at("2026-01-10T02:00:00Z")
        );
        // The 10th's 02:00 came before the schedule: nothing is due until the 11th.
        assert_eq!(s.due(at("2026-01-10T13:00:00Z")), None);
        assert_eq!(
            s.due(at("2026-01-11T02:00:01Z")),
            Some(at("2026-01-11T02:00:00Z"))
        );
        // Made during its own minute: due at once.
        let now = BackupSchedule {
            hour: 12,
            minute: 0,
            created_at: at("2026-01-10T12:00:40Z"),
            ..s
        };
        assert_eq!(
            now.due(at("2026-01-10T12:00:41Z")),
            Some(at("2026-01-10T12:00:00Z"))
        );
    }

    #[test]
    fn schedule_times_are_utc_hours_and_minutes() {
        assert_eq!(parse_schedule_time("02:00 UTC"), Ok((2, 0)));
        assert_eq!(parse_schedule_time("23:59"), Ok((23, 59)));
        assert!(parse_schedule_time("24:00").is_err());
        assert!(parse_schedule_time("2am").is_err());
        let err = parse_schedule_time("02:00 America/New_York").unwrap_err();
        assert!(err.contains("UTC"), "{err}");
    }
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
