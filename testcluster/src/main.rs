//! `testcluster`: start a local multi-node Haven cluster and inject faults.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use haven_testcluster::{netns, Mode, Options, TestCluster};

#[derive(Parser)]
#[command(name = "testcluster", about = "Start N havend agents as separate hosts and inject faults")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a cluster, write DIR/cluster.json and leave it running.
    Up {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        havend: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Mode::Auto)]
        mode: Mode,
    },
    /// Show every node: process, API URL, leader.
    Status {
        #[arg(long)]
        dir: PathBuf,
    },
    /// SIGKILL a node and everything it started.
    Kill(NodeArgs),
    /// SIGSTOP a node.
    Stop(NodeArgs),
    /// SIGCONT a stopped node.
    Cont(NodeArgs),
    /// Start a node again from its data dir.
    Restart(NodeArgs),
    /// Cut a node off from the others (netns mode).
    Partition(NodeArgs),
    /// Undo a partition.
    Heal(NodeArgs),
    /// Stop every node and remove namespaces and the bridge.
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Remove leftover bridges and namespaces of crashed runs.
    Gc,
}

#[derive(clap::Args)]
struct NodeArgs {
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    node: usize,
}

fn with_node(a: &NodeArgs, f: impl FnOnce(&mut TestCluster, usize) -> Result<()>) -> Result<()> {
    let mut tc = TestCluster::load(&a.dir)?;
    if a.node >= tc.len() {
        anyhow::bail!("node {} does not exist; the cluster has nodes 0 to {}", a.node, tc.len() - 1);
    }
    f(&mut tc, a.node)?;
    tc.save()
}

fn status(dir: &PathBuf) -> Result<()> {
    let mut tc = TestCluster::load(dir)?;
    println!("{:<5} {:<8} {:<7} {:<28} {:<8} {}", "node", "pid", "alive", "api", "leader", "log");
    for i in 0..tc.len() {
        let alive = tc.alive(i);
        let leader = tc
            .get_json(i, "/cluster/status")
            .ok()
            .map(|s| if s["leader"] == s["node_id"] { "leader" } else { "follower" })
            .unwrap_or("-");
        let n = &tc.file.nodes[i];
        println!("{:<5} {:<8} {:<7} {:<28} {:<8} {}", i, n.pid, alive, n.api, leader, n.log.display());
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Up { nodes, dir, havend, mode } => {
            let mut tc = TestCluster::start(Options { nodes, dir: dir.clone(), havend, mode, config_toml: None })?;
            tc.keep();
            println!("Started {nodes} nodes ({:?} mode); cluster file {}", tc.file.mode, dir.join("cluster.json").display());
            for (i, n) in tc.file.nodes.iter().enumerate() {
                println!("  node {i}: {}  api {}  router {}", n.name, n.api, n.router);
            }
            println!("Admin token: {}", tc.token());
            Ok(())
        }
        Cmd::Status { dir } => status(&dir),
        Cmd::Kill(a) => with_node(&a, |tc, i| tc.kill(i)),
        Cmd::Stop(a) => with_node(&a, |tc, i| tc.stop(i)),
        Cmd::Cont(a) => with_node(&a, |tc, i| tc.cont(i)),
        Cmd::Restart(a) => with_node(&a, |tc, i| tc.restart(i)),
        Cmd::Partition(a) => with_node(&a, |tc, i| tc.partition(i)),
        Cmd::Heal(a) => with_node(&a, |tc, i| tc.heal(i)),
        Cmd::Down { dir } => {
            let mut tc = TestCluster::load(&dir)?;
            tc.down();
            std::fs::remove_file(dir.join("cluster.json"))?;
            println!("Stopped the cluster in {}", dir.display());
            Ok(())
        }
        Cmd::Gc => {
            let n = netns::gc()?;
            println!("Removed {n} leftover bridges and namespaces");
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("testcluster: {e:#}");
            ExitCode::FAILURE
        }
    }
}
