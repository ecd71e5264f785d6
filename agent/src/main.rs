//! `havend`: the Haven agent. `init` makes a new cluster's first node, `join` adds a node
//! to a cluster, `restore` makes a new cluster's first node from a backup, `run` starts a
//! node from its data dir.

mod addons;
mod api;
mod autopilot;
mod backup;
mod builder;
mod config;
mod dashboard;
mod drains;
mod dynos;
mod events;
mod git;
mod https;
mod join;
mod leader;
mod leave;
mod liveness;
mod logs;
mod metrics;
mod network;
mod node;
mod peer;
mod peer_server;
mod repos;
mod restore;
mod retention;
mod router;
mod runtime;
mod slugcache;
mod slugkeeper;
mod slugs;
mod stacks;
#[cfg(test)]
mod testkit;
mod tls;
mod version;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use clap::{Args, Parser, Subcommand, ValueEnum};
use haven_raft::command::Command;
use haven_raft::model::{Cluster, Token, User};
use rand::Rng;
use serde::Deserialize;
use serde_json::json;
use tracing::{error, info};
use uuid::Uuid;

use config::{DataDir, NodeConfig, RaftTuning};
use join::JoinToken;

#[derive(Parser)]
#[command(name = "havend", version, about = "The Haven agent: one per host")]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "HAVEN_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log filter (tracing syntax, e.g. `info` or `haven_agent=debug`).
    #[arg(long, global = true, default_value = "info", env = "HAVEN_LOG")]
    log_level: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a new cluster with this host as its first node, then exit (start it with `run`).
    Init {
        #[command(flatten)]
        node: NodeFlags,
        /// Apps answer at APP.DOMAIN on the router.
        #[arg(long)]
        domain: Option<String>,
        /// The cluster's name.
        #[arg(long, default_value = "haven")]
        cluster_name: String,
        /// Email of the admin user.
        #[arg(long, default_value = "admin@haven.local")]
        admin_email: String,
        /// Print the result as one JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Join an existing cluster through one of its nodes, then run.
    Join {
        /// The join token printed by `havend init`.
        #[arg(long, env = "HAVEN_JOIN_TOKEN", hide_env_values = true)]
        token: String,
        #[command(flatten)]
        node: NodeFlags,
        /// `host:port` of a member's peer (QUIC, UDP) address.
        peer: String,
    },
    /// Create a new one-node cluster from a backup (`hctl cluster:backup FILE`), then exit
    /// (start it with `run`; other nodes then join it).
    Restore {
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
        #[command(flatten)]
        node: NodeFlags,
        /// Print the result as one JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Run the node whose data dir was created by `init`, `join` or `restore`.
    ///
    /// SIGTERM (or ^C) stops the node and its dynos. SIGUSR2 stops the node for an
    /// upgrade: its dynos keep running and serving, and the next `havend run` adopts them.
    Run {
        /// The node's data dir.
        #[arg(long, env = "HAVEN_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Take this node out of its cluster for good (run on its host, while `havend run`
    /// runs): its dynos move, it leaves Raft and its identity is refused from then on.
    Leave {
        /// The node's data dir.
        #[arg(long, env = "HAVEN_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// The pre-receive hook of app repositories (run by git during a push).
    #[command(hide = true)]
    GitHook,
    /// Runs a build inside the build sandbox (started by the builder).
    #[command(hide = true)]
    BuildExec { request: PathBuf },
    /// Internal: the init of a container dyno (started by the runtime).
    #[command(hide = true)]
    DynoInit {
        /// The spec file written by the runtime (read, then deleted).
        #[arg(long, required_unless_present_any = ["probe", "probe_net"])]
        spec: Option<PathBuf>,
        /// Only check that this host can run container dynos, using DIR as scratch.
        #[arg(long, value_name = "DIR")]
        probe: Option<PathBuf>,
        /// Only check that a dyno can have a network namespace of its own.
        #[arg(long)]
        probe_net: bool,
    },
    /// Debug: run one dyno attached to this terminal and exit with its status.
    #[command(hide = true)]
    DynoRun(runtime::DynoRunArgs),
    /// Build a stack's run and build images (NAME-run.tar.zst, NAME-build.tar.zst) from
    /// Debian packages with mmdebstrap.
    #[command(name = "stack:build")]
    StackBuild(stacks::build::BuildArgs),
}

#[derive(Args)]
struct NodeFlags {
    /// Where the node keeps its state (created; must not hold a node yet).
    #[arg(long, env = "HAVEN_DATA_DIR")]
    data_dir: PathBuf,
    /// Optional TOML file with defaults for the flags below (and a [raft] section).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Node name (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// HTTP API listen address (TCP).
    #[arg(long)]
    api_listen: Option<String>,
    /// Peer listen address (QUIC over UDP).
    #[arg(long)]
    peer_listen: Option<String>,
    /// HTTP router listen address (TCP).
    #[arg(long)]
    router_listen: Option<String>,
    /// Host or IP other nodes and clients reach this node at.
    #[arg(long)]
    advertise_host: Option<String>,
}

/// The optional config file of `init` and `join`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    name: Option<String>,
    api_listen: Option<String>,
    peer_listen: Option<String>,
    router_listen: Option<String>,
    advertise_host: Option<String>,
    domain: Option<String>,
    raft: Option<RaftTuning>,
    builds: Option<config::BuildTuning>,
    dynos: Option<config::DynoTuning>,
    router: Option<config::RouterTuning>,
    tls: Option<config::TlsSettings>,
}

impl NodeFlags {
    fn resolve(
        &self,
        cluster_id: &str,
        node_id: u64,
        default_host: &str,
    ) -> Result<(NodeConfig, ConfigFile)> {
        let file: ConfigFile = match &self.config {
            Some(p) => toml::from_str(
                &std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?,
            )
            .with_context(|| format!("parse {}", p.display()))?,
            None => ConfigFile::default(),
        };
        let pick = |flag: &Option<String>, file: &Option<String>, default: &str| {
            flag.clone()
                .or_else(|| file.clone())
                .unwrap_or_else(|| default.to_string())
        };
        let cfg = NodeConfig {
            node_id,
            name: pick(&self.name, &file.name, &hostname()),
            cluster_id: cluster_id.to_string(),
            api_listen: pick(
                &self.api_listen,
                &file.api_listen,
                config::DEFAULT_API_LISTEN,
            ),
            peer_listen: pick(
                &self.peer_listen,
                &file.peer_listen,
                config::DEFAULT_PEER_LISTEN,
            ),
            router_listen: pick(
                &self.router_listen,
                &file.router_listen,
                config::DEFAULT_ROUTER_LISTEN,
            ),
            advertise_host: pick(&self.advertise_host, &file.advertise_host, default_host),
            join_peer: None,
            raft: file.raft.clone().unwrap_or_default(),
            builds: file.builds.clone().unwrap_or_default(),
            dynos: file.dynos.clone().unwrap_or_default(),
            router: file.router.clone().unwrap_or_default(),
            tls: file.tls.clone().unwrap_or_default(),
        };
        if cfg.name.is_empty() || cfg.name.len() > 63 {
            anyhow::bail!("node name {:?} must be 1 to 63 characters", cfg.name);
        }
        cfg.validate()?;
        Ok((cfg, file))
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".into())
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill(&mut buf[..]);
    hex::encode(buf)
}

fn random_node_id() -> u64 {
    rand::thread_rng().gen_range(1..=u64::MAX / 2)
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn cmd_init(
    node: &NodeFlags,
    domain: Option<String>,
    cluster_name: &str,
    admin_email: &str,
    json_out: bool,
) -> Result<()> {
    let data = DataDir::new(&node.data_dir);
    let cluster_id = Uuid::new_v4();
    let node_id = random_node_id();
    let (cfg, file) = node.resolve(&cluster_id.to_string(), node_id, "127.0.0.1")?;
    let domain = domain.or(file.domain).unwrap_or_else(|| "localhost".into());
    data.create()?;
    let ca = tls::generate_ca()?;
    let node_cert = tls::issue_node_cert(&ca, node_id)?;
    let admin_token = format!("hvn_{}", random_hex(24));
    let join_secret = random_hex(24);
    let ca_fp = tls::pem_fingerprint(&ca.cert_pem)?;
    let now = Utc::now();
    let admin = User {
        id: Uuid::new_v4(),
        email: haven_raft::model::normalize_email(admin_email).map_err(anyhow::Error::msg)?,
        created_at: now,
        admin: true,
        password_hash: None,
    };
    let bootstrap = Command::Bootstrap {
        cluster: Cluster {
            id: cluster_id,
            name: cluster_name.to_string(),
            app_domain: domain,
            created_at: now,
            join_secret_sha256: join::secret_hash(&join_secret),
            ca_fingerprint: ca_fp.clone(),
        },
        node: node::node_record(&cfg)?,
        admin_token: Token {
            id: Uuid::new_v4(),
            sha256: join::secret_hash(&admin_token),
            user_email: admin.email.clone(),
            user_id: admin.id,
            description: "admin token made by havend init".into(),
            created_at: now,
            expires_at: None,
        },
        admin,
    };
    data.save_certs(&ca, &node_cert)?;
    config::write_private(&data.bootstrap_path(), &serde_json::to_vec(&bootstrap)?)?;
    data.save_config(&cfg)?;
    data.server_cert(&cfg, &ca)?;
    let ca_fp_shown = ca_fp.clone();
    let join_token = JoinToken {
        c: cluster_id.to_string(),
        f: ca_fp,
        s: join_secret,
    }
    .encode();
    let api_url = cfg.api_url()?;
    let https_url = cfg.https_api_url()?;
    if json_out {
        println!(
            "{}",
            json!({"cluster_id": cluster_id.to_string(), "node_id": node_id, "admin_token": admin_token, "join_token": join_token, "api_url": api_url, "https_api_url": https_url, "ca_fingerprint": ca_fp_shown, "peer_addr": cfg.peer_addr()?})
        );
    } else {
        let dir = data.root.display();
        println!("Initialized Haven cluster {cluster_name:?} ({cluster_id}) in {dir}");
        println!(
            "Node {} (id {node_id}), API {api_url}, peers {}",
            cfg.name,
            cfg.peer_addr()?
        );
        println!();
        println!("Admin API token (shown only once; keep it safe):");
        println!("  {admin_token}");
        println!("Join token for other nodes:");
        println!("  {join_token}");
        println!();
        println!("Start this node:  havend run --data-dir {dir}");
        println!(
            "Add a node:       havend join --token JOIN_TOKEN --data-dir DIR {}",
            cfg.peer_addr()?
        );
        println!("Log in:           hctl login --api {api_url}");
        println!("Log in over HTTPS: hctl login --api {https_url} --ca-fingerprint {ca_fp_shown}");
        println!("(the cluster CA's sha256 fingerprint is {ca_fp_shown}; git and other clients can trust {dir}/ca.pem)");
    }
    Ok(())
}

fn cmd_restore(from: &Path, node: &NodeFlags, json_out: bool) -> Result<()> {
    let data = DataDir::new(&node.data_dir);
    let node_id = random_node_id();
    let r = restore::prepare(from, &data, node_id, |cluster_id| {
        let (cfg, _) = node.resolve(cluster_id, node_id, "127.0.0.1")?;
        let record = node::node_record(&cfg)?;
        Ok((cfg, record))
    })?;
    let (api_url, https_url, peer) = (r.cfg.api_url()?, r.cfg.https_api_url()?, r.cfg.peer_addr()?);
    if json_out {
        println!(
            "{}",
            json!({"cluster_id": r.cluster_id, "node_id": r.node_id, "admin_token": r.admin_token, "join_token": r.join_token, "api_url": api_url, "https_api_url": https_url, "ca_fingerprint": r.ca_fingerprint, "peer_addr": peer, "restored": {"apps": r.apps, "releases": r.releases, "blobs": r.blobs, "missing_blobs": r.missing_blobs, "backup_created_at": r.backup_created_at}})
        );
        return Ok(());
    }
    let dir = data.root.display();
    println!(
        "Restored Haven cluster {:?} ({}) from the backup of {} in {dir}",
        r.cluster_name, r.cluster_id, r.backup_created_at
    );
    println!(
        "  {} apps, {} releases, {} slugs and backups{}",
        r.apps,
        r.releases,
        r.blobs,
        if r.missing_blobs > 0 {
            format!(
                " ({} named by releases are not in the file: redeploy those apps)",
                r.missing_blobs
            )
        } else {
            String::new()
        }
    );
    println!(
        "Node {} (id {}), API {api_url}, peers {peer}",
        r.cfg.name, r.node_id
    );
    println!();
    println!("Existing API tokens keep working. A new admin token (shown only once):");
    println!("  {}", r.admin_token);
    println!(
        "Join token for other nodes (the cluster has a new CA, {}):",
        r.ca_fingerprint
    );
    println!("  {}", r.join_token);
    println!();
    println!("Start this node:  havend run --data-dir {dir}");
    println!("Add a node:       havend join --token JOIN_TOKEN --data-dir DIR {peer}");
    Ok(())
}

/// The local address used to reach `peer`: a good default advertise host for a joiner.
fn local_addr_towards(peer: &str) -> Option<String> {
    let addr: std::net::SocketAddr = peer.parse().ok()?;
    let sock = std::net::UdpSocket::bind(if addr.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    })
    .ok()?;
    sock.connect(addr).ok()?;
    Some(sock.local_addr().ok()?.ip().to_string())
}

async fn cmd_join(token: &str, node: &NodeFlags, peer: &str) -> Result<node::Agent> {
    let token = JoinToken::decode(token)?;
    let node_id = random_node_id();
    let default_host = local_addr_towards(peer).unwrap_or_else(|| "127.0.0.1".into());
    let (mut cfg, _) = node.resolve(&token.c, node_id, &default_host)?;
    cfg.join_peer = Some(peer.to_string());
    let data = DataDir::new(&node.data_dir);
    data.create()?;
    let grant = match join::request_grant(&token, peer, node_id, &cfg.name).await {
        Ok(g) => g,
        Err(e) => {
            // Leave nothing behind so the same command can be retried.
            let _ = std::fs::remove_dir_all(&data.root);
            return Err(e);
        }
    };
    data.save_certs(
        &tls::CertKey {
            cert_pem: grant.ca_cert_pem,
            key_pem: grant.ca_key_pem,
        },
        &tls::CertKey {
            cert_pem: grant.node_cert_pem,
            key_pem: grant.node_key_pem,
        },
    )?;
    data.save_config(&cfg)?;
    info!(node_id, "received a node certificate; starting");
    let agent = node::Agent::start(&data).await?;
    agent
        .request_membership(peer, Duration::from_secs(120))
        .await?;
    info!(node_id, "joined the cluster");
    println!(
        "Joined cluster {} as node {} (id {node_id})",
        token.c, cfg.name
    );
    Ok(agent)
}

/// Waits for SIGTERM or an interrupt (stop, dynos too) or SIGUSR2 (stop for an upgrade,
/// leaving the dynos running for the next agent to adopt). Returns whether to keep dynos.
async fn wait_for_signal() -> bool {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut usr2) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::user_defined2()),
    ) {
        (Ok(t), Ok(u)) => (t, u),
        (Err(e), _) | (_, Err(e)) => {
            error!(error = %e, "cannot listen for SIGTERM and SIGUSR2");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => { info!("SIGTERM received"); false }
        _ = tokio::signal::ctrl_c() => { info!("interrupt received"); false }
        _ = usr2.recv() => { info!("SIGUSR2 received: stopping for an upgrade"); true }
    }
}

async fn run_until_signal(agent: node::Agent) {
    let left = agent.left.clone();
    let keep_dynos = tokio::select! {
        keep = wait_for_signal() => keep,
        _ = left.notified() => { info!("left the cluster: stopping"); false }
    };
    agent.shutdown(keep_dynos).await;
}

fn start_run(data_dir: &Path) -> Result<()> {
    let data = DataDir::new(data_dir);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let agent = node::Agent::start(&data).await?;
        run_until_signal(agent).await;
        Ok(())
    })
}

/// An exit status for a code that may be outside 0..=255 (shell conventions wrap).
fn exit_code(code: i32) -> ExitCode {
    ExitCode::from((code & 0xff) as u8)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::GitHook = cli.command {
        // Everything it prints reaches the pusher: no agent logging here.
        return ExitCode::from(git::run_hook().clamp(0, 255) as u8);
    }
    if let Cmd::BuildExec { request } = &cli.command {
        return ExitCode::from(builder::build_exec(request).clamp(0, 255) as u8);
    }
    // Before logging or any thread: dyno-init forks, which needs a single thread.
    if let Cmd::DynoInit {
        spec,
        probe,
        probe_net,
    } = &cli.command
    {
        return exit_code(match (probe, spec) {
            _ if *probe_net => runtime::dyno_init_probe_net(),
            (Some(dir), _) => runtime::dyno_init_probe(dir),
            (None, Some(spec)) => runtime::dyno_init(spec),
            (None, None) => 2,
        });
    }
    init_logging(cli.log_format, &cli.log_level);
    let command = match cli.command {
        Cmd::DynoRun(args) => {
            return match runtime::dyno_run(args) {
                Ok(code) => exit_code(code),
                Err(e) => {
                    eprintln!("havend dyno-run: {e:#}");
                    exit_code(125)
                }
            }
        }
        other => other,
    };
    let result = match &command {
        Cmd::Init {
            node,
            domain,
            cluster_name,
            admin_email,
            json,
        } => cmd_init(node, domain.clone(), cluster_name, admin_email, *json),
        Cmd::Restore { from, node, json } => cmd_restore(from, node, *json),
        Cmd::Run { data_dir } => start_run(data_dir),
        Cmd::Leave { data_dir } => leave::client(data_dir),
        Cmd::StackBuild(args) => stacks::build::run(args),
        Cmd::GitHook | Cmd::BuildExec { .. } => Ok(()),
        Cmd::Join { token, node, peer } => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| {
                rt.block_on(async {
                    let agent = cmd_join(token, node, peer).await?;
                    run_until_signal(agent).await;
                    Ok(())
                })
            }),
        Cmd::DynoInit { .. } | Cmd::DynoRun(_) => unreachable!("handled above"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("havend: {e:#}");
            ExitCode::FAILURE
        }
    }
}
