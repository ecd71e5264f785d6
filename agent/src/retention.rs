//! Release retention on the leader (`[raft] retain_releases`, issue 14 step 3): every
//! [`EVERY`], when this node leads, the compactions `haven_raft::retention::plan` asks
//! for are committed, one `CompactReleases` per app, and recorded as platform events.
//! 0 (the default) keeps every release, as Heroku does.

use std::time::Duration;

use haven_raft::command::Command;
use haven_raft::model::NodeId;
use haven_raft::HavenRaft;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::events::Events;

/// How often the leader looks for releases past retention.
pub const EVERY: Duration = Duration::from_secs(10);

pub async fn run(
    me: NodeId,
    raft: HavenRaft,
    keep: u64,
    events: Events,
    mut shutdown: watch::Receiver<bool>,
) {
    if keep == 0 {
        return;
    }
    let mut ticker = tokio::time::interval(EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        if raft.status().leader != Some(me) {
            continue;
        }
        let plan = match raft.retention_plan(keep) {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "release retention could not read the history");
                continue;
            }
        };
        for cmd in plan {
            let Command::CompactReleases { app, below, .. } = &cmd else {
                continue;
            };
            let (app, below) = (*app, *below);
            let name = raft.with_state(|s| s.apps.get(&app).map(|a| a.name.clone()));
            match raft.write(cmd).await {
                Ok(Ok(_)) => {
                    let name = name.unwrap_or_else(|| app.to_string());
                    info!(app = %name, below, "compacted old releases");
                    events.record(
                        "retention",
                        format!("removed releases of {name} older than v{below} (retain_releases = {keep})"),
                    );
                }
                Ok(Err(e)) => warn!(error = %e, "a release compaction was refused"),
                Err(e) => warn!(error = %e, "a release compaction failed"),
            }
        }
    }
}
