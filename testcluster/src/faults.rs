//! The faults a test injects into a running cluster: kills (of a node, or of its agent
//! alone), SIGSTOP/SIGCONT, a graceful stop for an upgrade, and network partitions
//! (netns mode). See the crate docs for what each one models.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::{dynos, netns, pid_alive, wait_until, TestCluster};

impl TestCluster {
    pub(crate) fn signal(&mut self, i: usize, sig: Signal) -> Result<()> {
        self.check_index(i)?;
        let pid = self.file.nodes[i].pid;
        if !self.alive(i) {
            bail!("node {i} is not running; start it with restart");
        }
        killpg(Pid::from_raw(pid), sig)
            .map_err(|e| anyhow!("send {sig} to node {i} (process group {pid}): {e}"))
    }

    /// SIGKILL of the node and everything it started (its process group, and its dynos,
    /// which outlive the agent: see [`dynos`]); waits until they are gone. Dynos left by
    /// an agent killed with [`TestCluster::kill_agent`] die too.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        self.check_index(i)?;
        if self.alive(i) {
            self.kill_agent(i)?;
        }
        let left = dynos::kill_all(&self.file.nodes[i].data_dir);
        if !left.is_empty() {
            bail!("dynos of node {i} (pids {left:?}) survived SIGKILL for 10 s");
        }
        Ok(())
    }

    /// SIGKILL of node `i`'s agent (its process group) but not of its dynos, which run on
    /// as after a crash of `havend` alone; [`TestCluster::restart`] starts the agent
    /// again, which adopts them. Waits until the agent is gone.
    pub fn kill_agent(&mut self, i: usize) -> Result<()> {
        self.check_index(i)?;
        if !self.alive(i) {
            return Ok(());
        }
        self.signal(i, Signal::SIGKILL)?;
        if let Some(mut c) = self.children.remove(&i) {
            let _ = c.wait();
        }
        let pid = self.file.nodes[i].pid;
        if !wait_until(Duration::from_secs(10), || !pid_alive(pid)) {
            bail!("node {i} (pid {pid}) survived SIGKILL for 10 s; is it stuck in the kernel (D state)?");
        }
        Ok(())
    }

    /// Stops node `i`'s agent as for an upgrade (SIGUSR2 to `havend`): it exits leaving
    /// its dynos running. Waits until it has exited (at most `timeout`).
    pub fn stop_agent_for_upgrade(&mut self, i: usize, timeout: Duration) -> Result<()> {
        self.check_index(i)?;
        let pid = self.file.nodes[i].pid;
        if !self.alive(i) {
            bail!("node {i} is not running");
        }
        nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGUSR2)
            .map_err(|e| anyhow!("send SIGUSR2 to node {i} (pid {pid}): {e}"))?;
        if !wait_until(timeout, || !self.alive(i)) {
            bail!("node {i} (pid {pid}) did not exit within {timeout:?} of SIGUSR2");
        }
        if let Some(mut c) = self.children.remove(&i) {
            let _ = c.wait();
        }
        Ok(())
    }

    /// Upgrades node `i`'s agent to `havend`: stops it as for an upgrade (its dynos keep
    /// running), makes `havend` the binary every later start runs, and starts the node
    /// again from its data dir (not awaited; the new agent adopts the dynos).
    pub fn upgrade_agent(&mut self, i: usize, havend: &Path, timeout: Duration) -> Result<()> {
        if !havend.is_file() {
            bail!("{} does not exist", havend.display());
        }
        let havend = std::fs::canonicalize(havend)?;
        self.stop_agent_for_upgrade(i, timeout)?;
        self.file.havend = havend;
        self.restart(i)
    }

    /// SIGSTOP to the node's process group: the node freezes like a hung host.
    pub fn stop(&mut self, i: usize) -> Result<()> {
        self.signal(i, Signal::SIGSTOP)?;
        // Dynos outlive their agent in their own process groups: a frozen host freezes
        // them too.
        dynos::signal_all(&self.file.nodes[i].data_dir, Signal::SIGSTOP);
        Ok(())
    }

    /// SIGCONT after [`TestCluster::stop`] (to the agent and its dynos).
    pub fn cont(&mut self, i: usize) -> Result<()> {
        dynos::signal_all(&self.file.nodes[i].data_dir, Signal::SIGCONT);
        self.signal(i, Signal::SIGCONT)
    }

    pub(crate) fn bridge(&self) -> Result<u8> {
        self.file.bridge.ok_or_else(|| {
            anyhow!("partitions need netns mode; start the cluster as root with iproute2 installed (mode is {})", self.file.mode)
        })
    }

    /// Node `i` can reach no other node and none can reach it; the host still reaches
    /// its API, so a test can watch it fail to commit. Netns mode only.
    pub fn partition(&mut self, i: usize) -> Result<()> {
        self.check_index(i)?;
        netns::partition(self.bridge()?, i, self.len())?;
        if !self.file.partitioned.contains(&i) {
            self.file.partitioned.push(i);
        }
        self.save()
    }

    /// The nodes of `group` lose every link to the nodes outside it (they still reach
    /// each other); undone by [`TestCluster::heal_all`]. Netns mode only.
    pub fn partition_group(&mut self, group: &[usize]) -> Result<()> {
        for i in group {
            self.check_index(*i)?;
        }
        netns::partition_group(self.bridge()?, group, self.len())?;
        for i in group {
            if !self.file.partitioned.contains(i) {
                self.file.partitioned.push(*i);
            }
        }
        self.save()
    }

    /// Packets from node `from` to node `to` are dropped, the other way they flow;
    /// undone by [`TestCluster::heal_all`]. Netns mode only.
    pub fn cut_one_way(&mut self, from: usize, to: usize) -> Result<()> {
        self.check_index(from)?;
        self.check_index(to)?;
        if from == to {
            bail!("a one-way cut needs two different nodes");
        }
        netns::cut_one_way(self.bridge()?, from, to)?;
        if !self.file.partitioned.contains(&from) {
            self.file.partitioned.push(from);
        }
        self.save()
    }

    /// Undoes [`TestCluster::partition`] of node `i`.
    pub fn heal(&mut self, i: usize) -> Result<()> {
        self.check_index(i)?;
        netns::heal(self.bridge()?, i, self.len())?;
        self.file.partitioned.retain(|p| *p != i);
        // A node still partitioned shares routes with the healed one: put them back.
        let k = self.bridge()?;
        for p in self.file.partitioned.clone() {
            netns::partition(k, p, self.len())?;
        }
        self.save()
    }

    /// Heals every partition.
    pub fn heal_all(&mut self) -> Result<()> {
        let k = self.bridge()?;
        for i in 0..self.len() {
            netns::heal(k, i, self.len())?;
        }
        self.file.partitioned.clear();
        self.save()
    }
}
