//! Applying a schedule to a running cluster: each fault, its healing, and the window
//! after it during which its effects (a dyno on the faulted node unreachable until the
//! others notice) may show as router errors.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::apps::{self, Hctl};
use super::schedule::{Event, Fault};
use super::workload::{NodeHealth, Shared};
use crate::TestCluster;

/// How long after a fault healed its effects may still show: the down-detection bound
/// (2 s of silence) plus the time to move routes and dynos.
pub const AFTERMATH: Duration = Duration::from_secs(5);
/// How long a restarted or healed node may take to answer with a leader again.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// A span of the run during which router errors are excused.
#[derive(Debug, Clone)]
pub struct Window {
    pub start: Duration,
    pub end: Duration,
    pub what: String,
}

/// A deploy made during a fault.
pub struct Deploy {
    pub app: String,
    pub what: String,
    handle: JoinHandle<Result<()>>,
}

impl Deploy {
    /// Waits for the deploy; its outcome as text.
    pub fn finish(self) -> (String, String, Result<(), String>) {
        let r = match self.handle.join() {
            Ok(r) => r.map_err(|e| format!("{e:#}")),
            Err(_) => Err("the deploy thread panicked".into()),
        };
        (self.app, self.what, r)
    }
}

pub struct Injector<'a> {
    pub tc: &'a mut TestCluster,
    pub shared: Arc<Shared>,
    pub hctl: Hctl,
    pub src: PathBuf,
    pub apps: Vec<String>,
    pub windows: Vec<Window>,
    pub deploys: Vec<Deploy>,
    rng: ChaCha8Rng,
}

impl<'a> Injector<'a> {
    pub fn new(
        tc: &'a mut TestCluster,
        shared: Arc<Shared>,
        hctl: Hctl,
        src: PathBuf,
        apps: Vec<String>,
        seed: u64,
    ) -> Injector<'a> {
        Injector {
            tc,
            shared,
            hctl,
            src,
            apps,
            windows: Vec::new(),
            deploys: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5000),
        }
    }

    /// Applies one fault and heals it: returns once every node is ready again.
    pub fn apply(&mut self, ev: &Event) -> Result<()> {
        let start = self.shared.now();
        match &ev.fault {
            Fault::Kill { node, down_for } => self.kill_restart(*node, *down_for)?,
            Fault::KillLeader { down_for } => {
                let leader = self.leader()?;
                self.kill_restart(leader, *down_for)?;
            }
            Fault::KillAgent { node, down_for } => {
                self.shared.set(*node, NodeHealth::AgentDown);
                self.tc.kill_agent(*node)?;
                pause(*down_for);
                self.restart(*node)?;
            }
            Fault::Stop { node, pause: p } => {
                self.shared.set(*node, NodeHealth::Stopped);
                self.tc.stop(*node)?;
                pause(*p);
                self.tc.cont(*node)?;
                self.ready(*node)?;
            }
            Fault::Partition { group, lasts } => {
                for i in group {
                    self.shared.set(*i, NodeHealth::Cut);
                }
                self.tc.partition_group(group)?;
                pause(*lasts);
                self.tc.heal_all()?;
                for i in group {
                    self.ready(*i)?;
                }
            }
            Fault::OneWay { from, to, lasts } => {
                self.shared.set(*from, NodeHealth::Cut);
                self.shared.set(*to, NodeHealth::Cut);
                self.tc.cut_one_way(*from, *to)?;
                pause(*lasts);
                self.tc.heal_all()?;
                self.ready(*from)?;
                self.ready(*to)?;
            }
            Fault::DeployLeaderKill {
                app,
                after,
                down_for,
            } => {
                let leader = self.leader()?;
                let through = (0..self.tc.len())
                    .find(|i| *i != leader)
                    .ok_or_else(|| anyhow!("a deploy through a follower needs two nodes"))?;
                let through = self.random_other(leader).unwrap_or(through);
                self.deploy(*app, through, &ev.fault);
                pause(*after);
                self.kill_restart(leader, *down_for)?;
            }
            Fault::KillDuringBuild {
                app,
                node,
                after,
                down_for,
            } => {
                self.deploy(*app, *node, &ev.fault);
                pause(*after);
                self.kill_restart(*node, *down_for)?;
            }
        }
        let end = self.shared.now() + AFTERMATH;
        self.windows.push(Window {
            start,
            end,
            what: ev.fault.to_string(),
        });
        Ok(())
    }

    fn random_other(&mut self, not: usize) -> Option<usize> {
        let others: Vec<usize> = (0..self.tc.len()).filter(|i| *i != not).collect();
        (!others.is_empty()).then(|| others[self.rng.gen_range(0..others.len())])
    }

    fn deploy(&mut self, app: usize, node: usize, fault: &Fault) {
        let Some(name) = self.apps.get(app).cloned() else {
            return;
        };
        let (hctl, src, n) = (self.hctl.clone(), self.src.clone(), name.clone());
        let handle = std::thread::spawn(move || apps::deploy(&hctl, node, &n, &src));
        self.deploys.push(Deploy {
            app: name,
            what: fault.to_string(),
            handle,
        });
    }

    fn leader(&mut self) -> Result<usize> {
        let mut found = None;
        crate::wait_until(Duration::from_secs(30), || {
            found = self.tc.leader_index();
            found.is_some()
        });
        found.ok_or_else(|| anyhow!("no leader within 30 s"))
    }

    fn kill_restart(&mut self, node: usize, down_for: Duration) -> Result<()> {
        self.shared.set(node, NodeHealth::Down);
        self.tc.kill(node)?;
        pause(down_for);
        self.restart(node)
    }

    fn restart(&mut self, node: usize) -> Result<()> {
        self.tc.restart(node)?;
        self.ready(node)
    }

    /// Waits until `node` answers with a leader, then counts it as up.
    fn ready(&mut self, node: usize) -> Result<()> {
        self.tc
            .wait_ready(node, READY_TIMEOUT)
            .with_context(|| format!("node {node} after a fault"))?;
        self.shared.set(node, NodeHealth::Up);
        Ok(())
    }
}

/// How long a fault lasts: part of the schedule, not a wait for a condition.
fn pause(d: Duration) {
    std::thread::sleep(d);
}
