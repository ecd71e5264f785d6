//! The seeded fault schedule: a pure function of the seed, the node count and the
//! duration, so that `--seed S` replays the same faults in the same order.
//!
//! Faults come one at a time (the next starts only after the previous one healed and
//! every node is ready again): at most a minority of the nodes is ever faulty, so the
//! cluster keeps a quorum and every fault's effect can be told apart from the next one's.

use std::fmt;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One fault. Node indexes are those of the test cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL of the node's process group (agent and dynos), restart after `down_for`.
    Kill { node: usize, down_for: Duration },
    /// SIGKILL of whichever node leads when the fault starts.
    KillLeader { down_for: Duration },
    /// SIGKILL of `havend` only (its dynos keep running), restart after `down_for`.
    KillAgent { node: usize, down_for: Duration },
    /// SIGSTOP, SIGCONT after `pause`.
    Stop { node: usize, pause: Duration },
    /// The nodes of `group` (one, or a minority) lose every link to the other nodes;
    /// members of the group still reach each other.
    Partition { group: Vec<usize>, lasts: Duration },
    /// Packets from `from` to `to` are dropped; the other direction still flows.
    OneWay {
        from: usize,
        to: usize,
        lasts: Duration,
    },
    /// A deploy of `app` through a follower, and the leader killed `after` it started.
    DeployLeaderKill {
        app: usize,
        after: Duration,
        down_for: Duration,
    },
    /// A deploy of `app` through `node`, killed `after` the build started.
    KillDuringBuild {
        app: usize,
        node: usize,
        after: Duration,
        down_for: Duration,
    },
}

/// A fault and when it is due, counted from the start of the fault phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub at: Duration,
    pub fault: Fault,
}

/// What a schedule is made for.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleSpec {
    pub seed: u64,
    pub nodes: usize,
    pub duration: Duration,
    pub apps: usize,
    /// Whether `havend`-only kills may be scheduled.
    pub agent_kills: bool,
    /// Whether partitions and one-way cuts may be scheduled (netns mode only).
    pub partitions: bool,
}

/// The schedule of `spec`: faults from 2 s on, each followed by a quiet gap of 1–4 s.
/// `at` is the earliest start; a fault waits for the previous one to heal.
pub fn schedule(spec: &ScheduleSpec) -> Vec<Event> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let n = spec.nodes;
    let mut events = Vec::new();
    if n == 0 {
        return events;
    }
    let mut t = Duration::from_secs(2);
    let ms = |rng: &mut ChaCha8Rng, lo: u64, hi: u64| Duration::from_millis(rng.gen_range(lo..=hi));
    while t < spec.duration {
        let node = rng.gen_range(0..n);
        // Kinds by weight; those the cluster cannot do are skipped by drawing again.
        let fault = loop {
            let kind = rng.gen_range(0..100u32);
            let f = match kind {
                0..=19 => Fault::Kill {
                    node,
                    down_for: ms(&mut rng, 500, 6000),
                },
                20..=29 => Fault::KillLeader {
                    down_for: ms(&mut rng, 500, 6000),
                },
                // Mostly back within the node timeout (2 s), so that the agent adopts
                // its dynos; sometimes later, so that they move and the orphans go.
                30..=41 if spec.agent_kills => Fault::KillAgent {
                    node,
                    down_for: ms(&mut rng, 200, 3000),
                },
                42..=55 => Fault::Stop {
                    node,
                    pause: ms(&mut rng, 500, 6000),
                },
                56..=71 if spec.partitions && n >= 3 => {
                    // One node, or a minority of several.
                    let size = if rng.gen_bool(0.5) { 1 } else { (n - 1) / 2 };
                    let mut group = vec![node];
                    while group.len() < size.max(1) {
                        let j = rng.gen_range(0..n);
                        if !group.contains(&j) {
                            group.push(j);
                        }
                    }
                    group.sort_unstable();
                    Fault::Partition {
                        group,
                        lasts: ms(&mut rng, 1000, 8000),
                    }
                }
                72..=79 if spec.partitions && n >= 2 => {
                    let to = (node + rng.gen_range(1..n)) % n;
                    Fault::OneWay {
                        from: node,
                        to,
                        lasts: ms(&mut rng, 1000, 6000),
                    }
                }
                80..=89 if spec.apps > 0 && n >= 2 => Fault::DeployLeaderKill {
                    app: rng.gen_range(0..spec.apps),
                    after: ms(&mut rng, 200, 4000),
                    down_for: ms(&mut rng, 500, 4000),
                },
                90..=99 if spec.apps > 0 => Fault::KillDuringBuild {
                    app: rng.gen_range(0..spec.apps),
                    node,
                    after: ms(&mut rng, 200, 3000),
                    down_for: ms(&mut rng, 500, 4000),
                },
                _ => continue,
            };
            break f;
        };
        let lasts = fault.nominal_length();
        events.push(Event { at: t, fault });
        t += lasts + ms(&mut rng, 1000, 4000);
    }
    events
}

impl Fault {
    /// How long the fault lasts by itself (restart and recovery come on top).
    pub fn nominal_length(&self) -> Duration {
        match self {
            Fault::Kill { down_for, .. }
            | Fault::KillLeader { down_for }
            | Fault::KillAgent { down_for, .. } => *down_for,
            Fault::Stop { pause, .. } => *pause,
            Fault::Partition { lasts, .. } | Fault::OneWay { lasts, .. } => *lasts,
            Fault::DeployLeaderKill {
                after, down_for, ..
            }
            | Fault::KillDuringBuild {
                after, down_for, ..
            } => *after + *down_for,
        }
    }
}

fn secs(d: &Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill { node, down_for } => {
                write!(f, "kill node {node}, restart after {}", secs(down_for))
            }
            Fault::KillLeader { down_for } => {
                write!(f, "kill the leader, restart after {}", secs(down_for))
            }
            Fault::KillAgent { node, down_for } => write!(
                f,
                "kill havend only on node {node}, restart after {}",
                secs(down_for)
            ),
            Fault::Stop { node, pause } => {
                write!(f, "SIGSTOP node {node}, SIGCONT after {}", secs(pause))
            }
            Fault::Partition { group, lasts } => {
                write!(f, "partition nodes {group:?} away for {}", secs(lasts))
            }
            Fault::OneWay { from, to, lasts } => {
                write!(
                    f,
                    "drop packets node {from} -> node {to} for {}",
                    secs(lasts)
                )
            }
            Fault::DeployLeaderKill {
                app,
                after,
                down_for,
            } => write!(
                f,
                "deploy app {app}, kill the leader {} in, restart after {}",
                secs(after),
                secs(down_for)
            ),
            Fault::KillDuringBuild {
                app,
                node,
                after,
                down_for,
            } => write!(
                f,
                "deploy app {app} through node {node}, kill node {node} {} in, restart after {}",
                secs(after),
                secs(down_for)
            ),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(seed: u64) -> ScheduleSpec {
        ScheduleSpec {
            seed,
            nodes: 5,
            duration: Duration::from_secs(300),
            apps: 2,
            agent_kills: true,
            partitions: true,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        assert_eq!(schedule(&spec(7)), schedule(&spec(7)));
        assert_ne!(schedule(&spec(7)), schedule(&spec(8)));
    }

    #[test]
    fn a_long_schedule_has_every_kind_of_fault_in_bounds() {
        let events = schedule(&spec(1));
        assert!(events.len() > 20, "{}", events.len());
        let kinds: std::collections::BTreeSet<&str> = events
            .iter()
            .map(|e| match &e.fault {
                Fault::Kill { .. } => "kill",
                Fault::KillLeader { .. } => "leader",
                Fault::KillAgent { .. } => "agent",
                Fault::Stop { .. } => "stop",
                Fault::Partition { .. } => "partition",
                Fault::OneWay { .. } => "oneway",
                Fault::DeployLeaderKill { .. } => "deploy",
                Fault::KillDuringBuild { .. } => "build",
            })
            .collect();
        assert_eq!(kinds.len(), 8, "{kinds:?}");
        for w in events.windows(2) {
            assert!(w[1].at >= w[0].at + w[0].fault.nominal_length());
        }
        for e in &events {
            if let Fault::Partition { group, .. } = &e.fault {
                assert!(!group.is_empty() && group.len() <= 2, "{group:?}");
                assert!(group.iter().all(|i| *i < 5));
            }
            if let Fault::OneWay { from, to, .. } = &e.fault {
                assert_ne!(from, to);
            }
        }
    }

    #[test]
    fn faults_the_cluster_cannot_do_are_left_out() {
        let s = ScheduleSpec {
            agent_kills: false,
            partitions: false,
            apps: 0,
            ..spec(3)
        };
        for e in schedule(&s) {
            assert!(matches!(
                e.fault,
                Fault::Kill { .. } | Fault::KillLeader { .. } | Fault::Stop { .. }
            ));
        }
    }
}
