//! Daily backups: on the leader, a loop starts the scheduled backup of every Postgres
//! add-on whose time of day (UTC) has come and whose slot has no scheduled backup yet.
//! The slot check is repeated when the backup is recorded (`StartBackup`), so a second
//! leader, or a second round, never takes the same slot twice; retention is applied when
//! a scheduled backup completes.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use haven_raft::model::{AddonState, NodeId};
use haven_raft::HavenRaft;
use tokio::sync::watch;
use tracing::{debug, info};
use uuid::Uuid;

use super::backups::{BackupError, Backups};

/// How often the leader looks for due schedules.
const TICK: Duration = Duration::from_secs(10);

pub async fn run(
    me: NodeId,
    raft: HavenRaft,
    backups: Backups,
    mut shutdown: watch::Receiver<bool>,
) {
    let running: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        if raft.status().leader != Some(me) {
            continue;
        }
        let now = Utc::now();
        let due: Vec<(Uuid, haven_raft::model::Addon)> = raft.with_state(|s| {
            s.backup_schedules
                .values()
                .filter_map(|sch| {
                    let slot = sch.due(now)?;
                    let taken = s
                        .backups
                        .values()
                        .any(|b| b.addon == sch.addon && b.scheduled && b.started_at >= slot);
                    let addon = s
                        .addons
                        .get(&sch.addon)
                        .filter(|a| a.state == AddonState::Provisioned)?;
                    (!taken).then(|| (sch.app, addon.clone()))
                })
                .collect()
        });
        for (app, addon) in due {
            let fresh = running
                .lock()
                .map(|mut r| r.insert(addon.id))
                .unwrap_or(false);
            if !fresh {
                continue;
            }
            let (backups, running) = (backups.clone(), running.clone());
            tokio::spawn(async move {
                info!(addon = %addon.name, "starting a scheduled backup");
                match backups.capture(app, &addon, true).await {
                    Ok(_) => {}
                    Err(BackupError::Rejected(e)) => {
                        debug!(error = %e, "scheduled backup not taken")
                    }
                    Err(e) => debug!(error = ?e, "scheduled backup failed"),
                }
                if let Ok(mut r) = running.lock() {
                    r.remove(&addon.id);
                }
            });
        }
    }
}
