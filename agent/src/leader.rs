//! The leader's control loops (design §4).
//!
//! - **Node status** (from [`crate::liveness`]): the leader commits only transitions: a node silent past
//!   `node_timeout_ms` is marked down, a down node heard from again is marked up.
//! - **Scheduling**: on every tick the leader hands the replicated state to the pure
//!   scheduler (`haven-scheduler`) and commits its plan (dynos to start and stop, and
//!   what cannot be placed) when the plan changes anything. Plans are idempotent, so a new
//!   leader simply resumes from the replicated state.
//! - **Add-ons**: add-on members reserve memory on their nodes, taken off what the
//!   scheduler may give dynos; members of a deprovisioned add-on whose node is down are
//!   reported gone on its behalf; an HA add-on whose primary's node is marked down fails
//!   over to its synced standby (`FailoverAddon`, right after the node transition).
//! - **Release phase**: a pending release whose slug has a `release` process type gets a
//!   one-off `release` dyno; its exit status decides the release.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::Utc;
use haven_raft::command::{Command, DynoTarget};
use haven_raft::model::{self, Dyno, DynoState, NodeId, NodeStatus, ReleaseStatus, State};
use haven_raft::HavenRaft;
use haven_scheduler as sched;
use tokio::sync::watch;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::config::DynoTuning;
use crate::events::Events;
use crate::liveness::Liveness;

/// The scheduler's view of the replicated state.
pub fn scheduler_input(s: &State) -> sched::Input {
    let mut held: BTreeMap<NodeId, BTreeSet<String>> = BTreeMap::new();
    for slug in s.slugs.values() {
        for h in &slug.holders {
            held.entry(*h).or_default().insert(slug.sha256.clone());
        }
    }
    // Memory add-on members reserve is not the dynos'.
    let addons = crate::addons::placement::addon_memory_by_node(s);
    let nodes = s
        .nodes
        .values()
        .map(|n| sched::NodeView {
            id: n.id,
            name: n.name.clone(),
            memory_mb: n
                .memory_mb
                .saturating_sub(addons.get(&n.id).copied().unwrap_or(0)),
            status: match (n.status, n.draining) {
                (NodeStatus::Down, _) => sched::NodeStatus::Down,
                (NodeStatus::Up, true) => sched::NodeStatus::Draining,
                (NodeStatus::Up, false) => sched::NodeStatus::Up,
            },
            labels: n.labels.clone(),
            slugs: held.remove(&n.id).unwrap_or_default(),
        })
        .collect();
    let mut formations = Vec::new();
    for app in s.apps.values() {
        let Some(current) = app.current_release() else {
            continue;
        };
        let slug = s.release_slug(current);
        for f in app.formation.values() {
            formations.push(sched::FormationView {
                app: app.id.to_string(),
                process_type: f.process_type.clone(),
                quantity: f.quantity,
                size: f.size.clone(),
                release: current.version,
                slug: slug.map(|sl| sl.sha256.clone()),
            });
        }
    }
    let dynos = s
        .dynos
        .values()
        .map(|d| sched::DynoView {
            id: d.id.to_string(),
            app: d.app.to_string(),
            process_type: d.process_type.clone(),
            index: d.index,
            release: d.release,
            size: d.size.clone(),
            node: d.node,
            state: match d.state {
                DynoState::Starting => sched::DynoState::Starting,
                DynoState::Up => sched::DynoState::Up,
                DynoState::Crashed => sched::DynoState::Crashed,
                DynoState::Down => sched::DynoState::Down,
            },
            stopping: !d.run,
            one_off: d.one_off,
        })
        .collect();
    sched::Input {
        nodes,
        formations,
        dynos,
    }
}

/// Turns a plan into the command that records it; `None` when it changes nothing.
pub fn plan_command(s: &State, plan: &sched::Plan) -> Option<Command> {
    let now = Utc::now();
    let mut starts = Vec::new();
    let mut stops = Vec::new();
    for change in &plan.changes {
        match change {
            sched::Change::Start {
                app,
                process_type,
                index,
                release,
                size,
                node,
                ..
            } => {
                let Some(a) = app.parse().ok().and_then(|id: Uuid| s.apps.get(&id)) else {
                    continue;
                };
                let command = a
                    .formation
                    .get(process_type)
                    .map(|f| f.command.clone())
                    .unwrap_or_default();
                starts.push(Dyno::placed(
                    Uuid::new_v4(),
                    a.id,
                    process_type,
                    *index,
                    *release,
                    size,
                    *node,
                    command,
                    now,
                ));
            }
            sched::Change::Stop { dyno, .. } => {
                if let Ok(id) = dyno.parse() {
                    stops.push(id);
                }
            }
        }
    }
    let unplaced: Vec<model::Unplaced> = plan
        .unplaced
        .iter()
        .filter_map(|u| {
            Some(model::Unplaced {
                app: u.app.parse().ok()?,
                process_type: u.process_type.clone(),
                index: u.index,
                reason: u.reason.clone(),
            })
        })
        .collect();
    if starts.is_empty() && stops.is_empty() && unplaced == s.unplaced {
        return None;
    }
    Some(Command::ApplyPlan {
        starts,
        stops,
        unplaced,
    })
}

/// Release-phase work for the leader: one-off `release` dynos to start for pending
/// releases, decisions on those that ended, and finished one-offs to clear.
fn release_phase(s: &State, now: chrono::DateTime<Utc>) -> Vec<Command> {
    let mut out = Vec::new();
    for app in s.apps.values() {
        let Some(pending) = app
            .releases
            .last()
            .filter(|r| r.status == ReleaseStatus::Pending)
        else {
            continue;
        };
        let Some(slug) = s.release_slug(pending) else {
            continue;
        };
        let Some(command) = slug.process_types.get("release") else {
            continue;
        };
        let phase = s.dynos.values().find(|d| {
            d.app == app.id
                && d.one_off
                && d.process_type == "release"
                && d.release == pending.version
        });
        match phase {
            None => {
                // Prefer an up node that holds the slug.
                let node = s
                    .nodes
                    .values()
                    .filter(|n| n.status == NodeStatus::Up && !n.draining)
                    .max_by_key(|n| (slug.holders.contains(&n.id), std::cmp::Reverse(n.id)));
                if let Some(node) = node {
                    let dyno = Dyno {
                        one_off: true,
                        ..Dyno::placed(
                            Uuid::new_v4(),
                            app.id,
                            "release",
                            1,
                            pending.version,
                            model::DEFAULT_SIZE,
                            node.id,
                            command.clone(),
                            now,
                        )
                    };
                    out.push(Command::CreateOneOff { dyno });
                }
            }
            Some(d) if d.run => {
                let lost = s
                    .nodes
                    .get(&d.node)
                    .is_none_or(|n| n.status == NodeStatus::Down);
                if let Some(code) = d
                    .exit_code
                    .filter(|_| d.state != DynoState::Starting && d.state != DynoState::Up)
                {
                    out.push(Command::SetReleaseStatus {
                        app: app.id,
                        version: pending.version,
                        status: if code == 0 {
                            ReleaseStatus::Succeeded
                        } else {
                            ReleaseStatus::Failed
                        },
                    });
                } else if lost {
                    out.push(Command::SetReleaseStatus {
                        app: app.id,
                        version: pending.version,
                        status: ReleaseStatus::Failed,
                    });
                } else {
                    continue;
                }
                out.push(Command::StopDynos {
                    app: app.id,
                    target: DynoTarget::Dyno(d.id.to_string()),
                });
            }
            Some(_) => {}
        }
    }
    // Detached one-offs that ended (other than release phases handled above) are cleared.
    for d in s.dynos.values() {
        if d.one_off
            && d.run
            && d.process_type != "release"
            && d.exit_code.is_some()
            && d.state == DynoState::Down
            && !d.attach
        {
            out.push(Command::StopDynos {
                app: d.app,
                target: DynoTarget::Dyno(d.id.to_string()),
            });
        }
    }
    out
}

/// What a command of the leader's loop does, in words, for the platform events (one
/// line per event).
fn describe(s: &State, cmd: &Command) -> String {
    let addon = |id: &Uuid| {
        s.addons
            .get(id)
            .map_or_else(|| id.to_string(), |a| a.name.clone())
    };
    let node = |id: &NodeId| {
        s.nodes
            .get(id)
            .map_or_else(|| id.to_string(), |n| n.name.clone())
    };
    let app = |id: &Uuid| {
        s.apps
            .get(id)
            .map_or_else(|| id.to_string(), |a| a.name.clone())
    };
    match cmd {
        Command::DesyncStandby { addon: a, .. } => format!(
            "took a standby of {} out of sync: its server stopped answering or streaming",
            addon(a)
        ),
        Command::ReplaceStandby { addon: a, new, .. } => format!(
            "placed a new standby of {} on {}: the old one's node stayed down",
            addon(a),
            node(&new.node)
        ),
        Command::FailoverAddon { addon: a, to, .. } => {
            let on = s
                .addons
                .get(a)
                .and_then(|x| x.members.iter().find(|m| m.id == *to))
                .map_or_else(String::new, |m| format!(" on {}", node(&m.node)));
            format!(
                "failed {} over to its standby{on}: the primary's node is down",
                addon(a)
            )
        }
        Command::ApplyPlan {
            starts,
            stops,
            unplaced,
        } => {
            let mut lines = Vec::new();
            if !starts.is_empty() || !stops.is_empty() {
                let mut placed: BTreeMap<String, usize> = BTreeMap::new();
                for d in starts {
                    *placed.entry(node(&d.node)).or_default() += 1;
                }
                let onto: Vec<String> = placed.iter().map(|(n, c)| format!("{c} on {n}")).collect();
                lines.push(format!(
                    "placed {} dynos ({}) and stopped {}",
                    starts.len(),
                    onto.join(", "),
                    stops.len()
                ));
            }
            for u in unplaced.iter().filter(|u| !s.unplaced.contains(u)) {
                lines.push(format!(
                    "could not place {}.{} of {}: {}",
                    u.process_type,
                    u.index,
                    app(&u.app),
                    u.reason
                ));
            }
            lines.join("\n")
        }
        _ => String::new(),
    }
}

/// Least time between two rounds of the leader's loop when applied writes wake it.
const PLAN_GAP: Duration = Duration::from_millis(50);

/// The leader's loop: runs on every node, acts while this node leads.
pub async fn control_loop(
    me: NodeId,
    raft: HavenRaft,
    liveness: Liveness,
    tuning: DynoTuning,
    events: Events,
    keeper: crate::slugkeeper::Keeper,
    mut shutdown: watch::Receiver<bool>,
) {
    let timeout = Duration::from_millis(tuning.node_timeout_ms.max(100));
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A formation change is planned as soon as it is applied, not at the next tick; under a
    // stream of writes, at most one plan per PLAN_GAP.
    let mut changes = raft.changes();
    let mut leading_since: Option<Instant> = None;
    // Since when each synced standby has looked broken (leader's memory only).
    let mut broken_standbys = std::collections::HashMap::new();
    // Since when each node marked down has been down, and since when each up node outside
    // the Raft membership has been seen so (this leader's memory only).
    let mut down_since: std::collections::HashMap<NodeId, Instant> = Default::default();
    let mut outside_since: std::collections::HashMap<NodeId, Instant> = Default::default();
    let mut last_round: Option<Instant> = None;
    loop {
        if let Some(t) = last_round {
            tokio::time::sleep_until((t + PLAN_GAP).into()).await;
        }
        tokio::select! {
            _ = ticker.tick() => {}
            _ = changes.next() => {}
            _ = shutdown.changed() => return,
        }
        last_round = Some(Instant::now());
        if raft.status().leader != Some(me) {
            leading_since = None;
            continue;
        }
        if leading_since.is_none() {
            events.record(
                "raft",
                format!("became the Raft leader (term {})", raft.status().term),
            );
        }
        let since = *leading_since.get_or_insert_with(Instant::now);
        let now = Instant::now();
        // Liveness transitions. A node counts as heard from at least when this node
        // became leader, so that a new leader gives every node one timeout to be heard.
        let nodes: Vec<(NodeId, String, NodeStatus)> = raft.with_state(|s| {
            s.nodes
                .values()
                .map(|n| (n.id, n.name.clone(), n.status))
                .collect()
        });
        for (id, name, status) in nodes {
            let heard = liveness.last_seen(id);
            let alive = id == me || heard.is_some_and(|t| now.duration_since(t) < timeout);
            let grace = now.duration_since(since) < timeout;
            let next = match status {
                NodeStatus::Up if !alive && !grace => Some(NodeStatus::Down),
                NodeStatus::Down if alive => Some(NodeStatus::Up),
                _ => None,
            };
            if let Some(next) = next {
                info!(node = %name, status = next.as_str(), "node status changed");
                match raft
                    .write(Command::SetNodeStatus {
                        node_id: id,
                        status: next,
                    })
                    .await
                {
                    Ok(Ok(_)) => events.record(
                        "node",
                        match next {
                            NodeStatus::Down => format!(
                                "marked {name} down: not heard from for {} ms",
                                timeout.as_millis()
                            ),
                            NodeStatus::Up => format!("marked {name} up: heard from again"),
                        },
                    ),
                    Ok(Err(e)) => debug!(error = %e, "node status refused"),
                    Err(e) => warn!(error = %e, "could not record a node's status"),
                }
            }
        }
        crate::autopilot::round(
            &raft,
            me,
            &events,
            Duration::from_secs(tuning.voter_replace_after_secs),
            &mut down_since,
            &mut outside_since,
        )
        .await;
        // Slugs whose holders died are copied again.
        keeper.round(
            &down_since,
            Duration::from_secs(tuning.voter_replace_after_secs),
        );
        // Synced standbys whose server is broken on an up node leave sync (then their
        // primary commits alone), and HA add-ons whose primary's node is down fail over.
        let desyncs =
            raft.with_state(|s| crate::addons::broken_standbys(s, &mut broken_standbys, now));
        for cmd in desyncs {
            let what = raft.with_state(|s| describe(s, &cmd));
            match raft.write(cmd).await {
                Ok(Ok(_)) => events.record("addon", what),
                Ok(Err(e)) => debug!(error = %e, "standby desync refused"),
                Err(e) => warn!(error = %e, "could not record a standby desync"),
            }
        }
        let replace_after = Duration::from_secs(tuning.standby_replace_after_secs);
        let replacements = raft.with_state(|s| {
            // A node this leader never heard from counts from when it began to lead.
            let heard = |n| Some(liveness.last_seen(n).map_or(since, |t| t.max(since)));
            crate::addons::replacements(s, heard, now, replace_after)
        });
        for cmd in replacements {
            let what = raft.with_state(|s| describe(s, &cmd));
            match raft.write(cmd).await {
                Ok(Ok(_)) => events.record("addon", what),
                Ok(Err(e)) => debug!(error = %e, "standby replacement refused"),
                Err(e) => warn!(error = %e, "could not record a standby replacement"),
            }
        }
        for cmd in raft.with_state(crate::addons::failovers) {
            let what = raft.with_state(|s| describe(s, &cmd));
            match raft.write(cmd).await {
                Ok(Ok(_)) => events.record("addon", what),
                Ok(Err(e)) => debug!(error = %e, "add-on failover refused"),
                Err(e) => warn!(error = %e, "could not record an add-on failover"),
            }
        }
        let plan = raft.with_state(|s| {
            let p = sched::plan(&scheduler_input(s));
            plan_command(s, &p)
        });
        if let Some(cmd) = plan {
            let what = raft.with_state(|s| describe(s, &cmd));
            match raft.write(cmd).await {
                Ok(Ok(_)) => {
                    for line in what.lines() {
                        events.record("scheduler", line);
                    }
                }
                Ok(Err(e)) => warn!(error = %e, "the scheduler's plan was refused"),
                Err(e) => debug!(error = %e, "could not record the scheduler's plan"),
            }
        }
        // Members of deprovisioned add-ons on down nodes: gone (their data is removed
        // as an orphan when the node returns).
        for cmd in raft.with_state(crate::addons::lost_members) {
            if let Ok(Err(e)) = raft.write(cmd).await {
                debug!(error = %e, "add-on member removal refused");
            }
        }
        let phase = raft.with_state(|s| release_phase(s, Utc::now()));
        for cmd in phase {
            if let Ok(Err(e)) = raft.write(cmd).await {
                debug!(error = %e, "release phase step refused");
            }
        }
    }
}
