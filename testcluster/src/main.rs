//! `testcluster`: start a local multi-node Haven cluster and inject faults.
//!
//! `up` starts the nodes and exits, leaving them running; the other commands find them
//! through `DIR/cluster.json` and update it (e.g. a restarted node's pid).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use haven_testcluster::{netns, pid_alive, ClusterFile, Mode, Options, TestCluster};

#[derive(Parser)]
#[command(
    name = "testcluster",
    about = "Start N havend agents as separate hosts and inject faults",
    after_help = "As root with iproute2 every node gets its own network namespace (hvK-nI) on a \
                  bridge (hvbrK, 10.77.K.0/24); otherwise nodes share 127.0.0.1 on distinct \
                  ports and partitions are unavailable. After a crash, `testcluster down --dir \
                  DIR` or `testcluster gc` removes leftover namespaces and bridges."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a cluster, write DIR/cluster.json and exit leaving it running.
    Up {
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Directory for cluster.json, data dirs and logs (DIR/nodeI/havend.log).
        #[arg(long)]
        dir: PathBuf,
        /// The havend binary (default: $HAVEND_BIN, or next to this binary).
        #[arg(long)]
        havend: Option<PathBuf>,
        /// Where nodes live.
        #[arg(long, value_enum, default_value_t = Mode::Auto)]
        mode: Mode,
        /// TOML file given to every node's init/join as --config (e.g. a [raft] table).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Extra environment for every havend, KEY=VALUE (repeatable).
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
    },
    /// Show every node: process, API URL, role as the node itself reports it.
    Status {
        #[arg(long)]
        dir: PathBuf,
    },
    /// SIGKILL a node and everything it started (its dynos too).
    Kill(NodeArgs),
    /// SIGKILL only a node's `havend`: its dynos keep running; `restart` adopts them.
    KillAgent(NodeArgs),
    /// SIGSTOP a node (it hangs like a frozen host).
    Stop(NodeArgs),
    /// SIGCONT a stopped node.
    Cont(NodeArgs),
    /// Start a node again from its data dir (killing it first if it runs).
    Restart(NodeArgs),
    /// Upgrade a node's agent: SIGUSR2 (its dynos keep running), then start it again on
    /// HAVEND, which later restarts of every node run too.
    Upgrade {
        #[command(flatten)]
        node: NodeArgs,
        /// The new havend binary.
        #[arg(long)]
        havend: PathBuf,
    },
    /// Cut a node off from the other nodes; the host still reaches it (netns mode).
    Partition(NodeArgs),
    /// Undo a partition.
    Heal(NodeArgs),
    /// Stop every node and remove the cluster's namespaces, veths and bridge.
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Start a fresh cluster, deploy apps under load, inject a seeded schedule of faults
    /// (kills incl. the leader's, SIGSTOP, partitions, one-way cuts, kills during deploys
    /// and builds), heal, and print a verdict; exits 1 when a check fails.
    Chaos {
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Length of the fault phase: 90s, 5m, 1h.
        #[arg(long, default_value = "2m", value_parser = haven_testcluster::chaos::parse_duration)]
        duration: std::time::Duration,
        /// Seed of the fault schedule (default: from the clock, printed); the same seed
        /// replays the same schedule.
        #[arg(long)]
        seed: Option<u64>,
        /// Apps deployed with web=2 and worker=1.
        #[arg(long, default_value_t = 2)]
        apps: usize,
        /// Directory for the cluster (default: a new one under /tmp).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Leave the cluster running afterwards.
        #[arg(long)]
        keep: bool,
        /// The havend binary (default: $HAVEND_BIN, or next to this binary).
        #[arg(long)]
        havend: Option<PathBuf>,
        /// Also write the verdict as JSON here (it always goes to DIR/verdict.json).
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Remove ALL hvbr* bridges and hv*-n* namespaces (and their processes): leftovers of
    /// crashed runs. Run it only when no test cluster should be running.
    Gc,
}

#[derive(clap::Args)]
struct NodeArgs {
    /// The cluster's directory.
    #[arg(long)]
    dir: PathBuf,
    /// Node index (0-based).
    #[arg(long)]
    node: usize,
}

fn with_node(a: &NodeArgs, f: impl FnOnce(&mut TestCluster, usize) -> Result<()>) -> Result<()> {
    let mut tc = TestCluster::load(&a.dir)?;
    f(&mut tc, a.node)?;
    tc.save()
}

/// `R` running, `T` stopped, ... from /proc; `None` when the process is gone.
fn process_state(pid: i32) -> Option<char> {
    if !pid_alive(pid) {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn status(dir: &Path) -> Result<()> {
    let tc = TestCluster::load(dir)?;
    println!(
        "{:<5} {:<8} {:<8} {:<8} {:<26} {:<12} {:<6} log",
        "node", "name", "pid", "process", "api", "role", "term"
    );
    for (i, n) in tc.file.nodes.iter().enumerate() {
        let process = match process_state(n.pid) {
            None => "dead",
            Some('T') | Some('t') => "stopped",
            Some(_) => "running",
        };
        let (role, term) = match tc.status(i) {
            Ok(s) => {
                let role = if s["leader"].is_null() {
                    "no leader"
                } else if s["leader"] == s["node_id"] {
                    "leader"
                } else {
                    "follower"
                };
                (role.to_string(), s["term"].to_string())
            }
            Err(_) => ("unreachable".to_string(), "-".to_string()),
        };
        let role = if tc.file.partitioned.contains(&i) {
            format!("{role}*")
        } else {
            role
        };
        println!(
            "{:<5} {:<8} {:<8} {:<8} {:<26} {:<12} {:<6} {}",
            i,
            n.name,
            n.pid,
            process,
            n.api,
            role,
            term,
            n.log.display()
        );
    }
    if !tc.file.partitioned.is_empty() {
        println!("* partitioned");
    }
    println!("mode {}, token {}", tc.file.mode, tc.token());
    Ok(())
}

fn up(
    nodes: usize,
    dir: PathBuf,
    havend: Option<PathBuf>,
    mode: Mode,
    config: Option<PathBuf>,
    env: Vec<String>,
) -> Result<()> {
    // Never start over a cluster that still runs: its nodes would keep the addresses.
    if let Ok(old) = ClusterFile::read(&dir) {
        if old.nodes.iter().any(|n| pid_alive(n.pid)) {
            bail!(
                "{} holds a running cluster; stop it with `testcluster down --dir {}`",
                dir.display(),
                dir.display()
            );
        }
    }
    let config_toml = match config {
        Some(p) => {
            Some(std::fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))?)
        }
        None => None,
    };
    let env = env
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("--env {kv:?} is not KEY=VALUE"))
        })
        .collect::<Result<Vec<_>>>()?;
    // Nodes that refuse plain HTTP are reached over HTTPS.
    let https = config_toml
        .as_deref()
        .is_some_and(|t| t.lines().any(|l| l.replace(' ', "") == "plain_http=false"));
    let mut tc = TestCluster::start(Options {
        nodes,
        dir: dir.clone(),
        havend,
        mode,
        config_toml,
        env,
        https,
        restore_from: None,
    })?;
    tc.keep();
    println!(
        "started {nodes} nodes ({} mode); cluster file {}",
        tc.file.mode,
        ClusterFile::path(tc.dir()).display()
    );
    println!(
        "{:<5} {:<8} {:<8} {:<26} {:<26} log",
        "node", "name", "pid", "api", "router"
    );
    for (i, n) in tc.file.nodes.iter().enumerate() {
        println!(
            "{:<5} {:<8} {:<8} {:<26} {:<26} {}",
            i,
            n.name,
            n.pid,
            n.api,
            n.router,
            n.log.display()
        );
    }
    println!("admin token: {}", tc.token());
    println!("stop it with: testcluster down --dir {}", dir.display());
    Ok(())
}

#[allow(clippy::too_many_arguments)] // one per command-line flag
fn chaos(
    nodes: usize,
    duration: std::time::Duration,
    seed: Option<u64>,
    apps: usize,
    dir: Option<PathBuf>,
    keep: bool,
    havend: Option<PathBuf>,
    json: Option<PathBuf>,
) -> Result<()> {
    use haven_testcluster::chaos;
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    let dir = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("haven-chaos-{seed}")),
    };
    if nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    eprintln!("chaos seed {seed} ({nodes} nodes, {}s)", duration.as_secs());
    let opts = chaos::ChaosOptions {
        nodes,
        duration,
        seed,
        apps,
        dir: dir.clone(),
        keep,
        havend,
        mode: Mode::Auto,
    };
    let report = chaos::run(&opts, &mut |line| eprintln!("{line}"))
        .with_context(|| format!("chaos run with seed {seed} (replay with --seed {seed})"))?;
    println!("{report}");
    let text = serde_json::to_string_pretty(&report.to_json())?;
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("verdict.json"), &text)?;
    if let Some(p) = json {
        std::fs::write(&p, &text).with_context(|| format!("write {}", p.display()))?;
    }
    if !report.passed() {
        bail!("the verdict is FAIL; replay with: {}", report.replay());
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Up {
            nodes,
            dir,
            havend,
            mode,
            config,
            env,
        } => up(nodes, dir, havend, mode, config, env),
        Cmd::Status { dir } => status(&dir),
        Cmd::Kill(a) => with_node(&a, |tc, i| tc.kill(i)),
        Cmd::KillAgent(a) => with_node(&a, |tc, i| tc.kill_agent(i)),
        Cmd::Stop(a) => with_node(&a, |tc, i| tc.stop(i)),
        Cmd::Cont(a) => with_node(&a, |tc, i| tc.cont(i)),
        Cmd::Restart(a) => with_node(&a, |tc, i| tc.restart(i)),
        Cmd::Upgrade { node, havend } => with_node(&node, |tc, i| {
            tc.upgrade_agent(i, &havend, std::time::Duration::from_secs(60))
        }),
        Cmd::Partition(a) => with_node(&a, |tc, i| tc.partition(i)),
        Cmd::Heal(a) => with_node(&a, |tc, i| tc.heal(i)),
        Cmd::Down { dir } => {
            if !ClusterFile::path(&dir).exists() {
                bail!(
                    "no cluster.json in {}, so nothing to stop; `testcluster gc` removes leftovers of crashed runs",
                    dir.display()
                );
            }
            let mut tc = TestCluster::load(&dir)?;
            tc.down();
            println!("stopped the cluster in {}", dir.display());
            Ok(())
        }
        Cmd::Chaos {
            nodes,
            duration,
            seed,
            apps,
            dir,
            keep,
            havend,
            json,
        } => chaos(nodes, duration, seed, apps, dir, keep, havend, json),
        Cmd::Gc => {
            if !netns::available() {
                bail!("gc needs root and iproute2 (only netns mode leaves anything behind)");
            }
            let n = netns::gc()?;
            println!("removed {n} leftover bridges, veths and namespaces");
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
