//! testcluster: start N `havend` agents as separate hosts and inject faults.
//!
//! As root with iproute2 each node gets its own network namespace and address on a bridge
//! (`10.77.K.10+I`, see [`netns`]); otherwise all nodes share loopback on distinct ports.
//! The cluster is described by `DIR/cluster.json` ([`ClusterFile`]), so that the CLI
//! (`testcluster kill --dir DIR --node 1`) and the Rust API (used by tests and benchmarks)
//! work on the same running cluster.
//!
//! Faults are named operations: [`TestCluster::kill`] (SIGKILL of the node's process
//! group and of its dynos: the agent and everything it started, as a host's death),
//! [`TestCluster::kill_agent`] (SIGKILL of `havend` only: its dynos run on, for the
//! restarted agent to adopt), [`TestCluster::stop_agent_for_upgrade`] (SIGUSR2: a
//! graceful stop that leaves the dynos running), [`TestCluster::stop`] /
//! [`TestCluster::cont`], [`TestCluster::restart`], [`TestCluster::partition`] /
//! [`TestCluster::heal`] (netns mode only; blackhole routes, no iptables).
//!
//! A crashed test can leave bridges `hvbr*` and namespaces `hv*-n*` behind (with their
//! `havend` processes); `testcluster down --dir DIR` removes one cluster's, and
//! `testcluster gc` removes all of them.

pub mod chaos;
mod cluster_file;
pub mod dynos;
mod faults;
pub mod netns;

use std::collections::HashMap;
use std::fs;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::Signal;
use serde_json::Value;

pub use cluster_file::{ClusterFile, Mode, NodeInfo};

const API_PORT: u16 = 7400;
const PEER_PORT: u16 = 7401;
const ROUTER_PORT: u16 = 7480;
/// How long a node may take to become a member with a leader.
const FORM_TIMEOUT: Duration = Duration::from_secs(60);
/// Status probes are short: a stopped or partitioned node must not stall a poll loop.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// Lines of a failed node's log quoted in the error.
const LOG_TAIL_LINES: usize = 15;

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct Options {
    /// Number of nodes (at least 1).
    pub nodes: usize,
    /// Where `cluster.json`, each node's data dir and log go.
    pub dir: PathBuf,
    /// The `havend` binary; default from [`find_binary`].
    pub havend: Option<PathBuf>,
    /// Netns, loopback, or auto (netns when possible).
    pub mode: Mode,
    /// TOML written to a file given to `init`/`join` as `--config` (e.g. a `[raft]` table).
    pub config_toml: Option<String>,
    /// Extra environment for every `havend` (kept in `cluster.json` for restarts).
    pub env: Vec<(String, String)>,
    /// Reach the nodes' API and router over `https://` (trusting the cluster CA), as for
    /// nodes whose config turns plain HTTP off.
    pub https: bool,
    /// Make node 0 with `havend restore --from FILE` (a cluster from a backup) instead of
    /// `havend init`; the others join it.
    pub restore_from: Option<PathBuf>,
}

impl Options {
    /// `nodes` nodes in `dir`, everything else default.
    pub fn new(nodes: usize, dir: impl Into<PathBuf>) -> Options {
        Options {
            nodes,
            dir: dir.into(),
            havend: None,
            mode: Mode::Auto,
            config_toml: None,
            env: Vec::new(),
            https: false,
            restore_from: None,
        }
    }
}

/// A running cluster.
pub struct TestCluster {
    dir: PathBuf,
    /// What `cluster.json` holds; public so tests can read addresses and tokens.
    pub file: ClusterFile,
    /// Nodes this process started: reaped here so that they do not linger as zombies.
    children: HashMap<usize, Child>,
    keep: bool,
    http: reqwest::blocking::Client,
    quick: reqwest::blocking::Client,
}

/// Finds a workspace binary: `explicit`, else env `env`, else `name` next to the current
/// executable or in one of its parent dirs (tests run from `target/debug/deps/`).
pub fn find_binary(name: &str, explicit: Option<&Path>, env: &str) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if !p.is_file() {
            bail!(
                "{} does not exist; build it with `cargo build --bins`",
                p.display()
            );
        }
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!(
                "{env}={} does not exist; unset it or build with `cargo build --bins`",
                p.display()
            );
        }
        return Ok(p);
    }
    let exe = std::env::current_exe().context("find the current executable")?;
    for dir in exe.ancestors().skip(1).take(3) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "cannot find {name} near {}; run `cargo build --bins` or set {env}",
        exe.display()
    )
}

/// Distinct free loopback ports. Every port is held (TCP and UDP bound) until the pool is
/// dropped, so two calls never return the same port; drop it just before the nodes bind.
struct PortPool {
    held: Vec<(TcpListener, UdpSocket)>,
}

impl PortPool {
    fn new() -> PortPool {
        PortPool { held: Vec::new() }
    }

    fn take(&mut self) -> Result<u16> {
        // The kernel may hand out a port free for TCP but taken for UDP: retry a few times.
        for _ in 0..20 {
            let tcp = TcpListener::bind("127.0.0.1:0").context("bind a loopback port")?;
            let port = tcp.local_addr()?.port();
            if let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)) {
                self.held.push((tcp, udp));
                return Ok(port);
            }
        }
        bail!("found no loopback port free for both tcp and udp")
    }
}

/// Polls `cond` every 50 ms until it is true (returns true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `pid` runs, or is still exiting and may hold its sockets.
///
/// Looks at /proc rather than kill(0), which succeeds on zombies. A zombie main thread is
/// not enough either: after SIGKILL it can turn zombie while its other threads still tear
/// down (holding the ports a restart needs), so those are counted in /proc/PID/task.
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let zombie = stat
        .rsplit_once(')')
        .is_none_or(|(_, rest)| rest.trim_start().starts_with('Z'));
    if !zombie {
        return true;
    }
    fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|d| d.count() > 1)
}

/// The last `n` lines of `path`, indented, for error messages.
fn log_tail(path: &Path, n: usize) -> String {
    let Ok(text) = fs::read_to_string(path) else {
        return String::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..]
        .iter()
        .map(|l| format!("\n    {l}"))
        .collect()
}

/// The leader id reported by more than half of a cluster of `size` nodes, if any.
/// Each report is one node's view (`None`: it answered no leader or did not answer).
fn majority_leader(reports: &[Option<String>], size: usize) -> Option<String> {
    let mut votes: HashMap<&str, usize> = HashMap::new();
    for r in reports.iter().flatten() {
        *votes.entry(r.as_str()).or_default() += 1;
    }
    votes
        .into_iter()
        .find(|(_, n)| *n > size / 2)
        .map(|(id, _)| id.to_string())
}

/// Whether a `/cluster/status` body shows a leader and lists its own node as a member.
fn is_member(s: &Value) -> bool {
    let Some(me) = s["node_id"].as_str() else {
        return false;
    };
    let listed = |k: &str| {
        s[k].as_array()
            .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(me)))
    };
    !s["leader"].is_null() && (listed("voters") || listed("learners"))
}

/// The clients of the nodes' APIs; they trust the cluster CA `ca` (a PEM file) if given.
fn http_clients(
    ca: Option<&Path>,
) -> Result<(reqwest::blocking::Client, reqwest::blocking::Client)> {
    let root = match ca {
        Some(p) => Some(reqwest::Certificate::from_pem(
            &fs::read(p).with_context(|| format!("read {}", p.display()))?,
        )?),
        None => None,
    };
    let build = |timeout: Duration| {
        let mut b = reqwest::blocking::Client::builder().timeout(timeout);
        if let Some(r) = &root {
            b = b.add_root_certificate(r.clone());
        }
        b.build()
    };
    Ok((build(Duration::from_secs(15))?, build(STATUS_TIMEOUT)?))
}

impl ClusterFile {
    /// The cluster CA's PEM file when the nodes are reached over HTTPS.
    fn https_ca(&self) -> Option<PathBuf> {
        let first = self.nodes.first()?;
        first
            .api
            .starts_with("https://")
            .then(|| first.data_dir.join("ca.pem"))
    }
}

impl TestCluster {
    /// Starts a cluster: node 0 with `init` then `run`, the others with `join` through
    /// node 0, one at a time, each awaited until it is a member that sees a leader.
    pub fn start(opts: Options) -> Result<TestCluster> {
        if opts.nodes == 0 {
            bail!("a cluster needs at least one node");
        }
        let havend = find_binary("havend", opts.havend.as_deref(), "HAVEND_BIN")?;
        // Restarts may come from another working directory (the CLI).
        let havend = fs::canonicalize(&havend).unwrap_or(havend);
        let mode = match opts.mode {
            Mode::Auto if netns::available() => Mode::Netns,
            Mode::Auto => Mode::Loopback,
            Mode::Netns if !netns::available() => {
                bail!("netns mode needs root and iproute2; use --mode loopback")
            }
            m => m,
        };
        if mode == Mode::Netns && opts.nodes > netns::MAX_NODES {
            bail!("a netns cluster holds at most {} nodes", netns::MAX_NODES);
        }
        fs::create_dir_all(&opts.dir).with_context(|| format!("create {}", opts.dir.display()))?;
        let dir = fs::canonicalize(&opts.dir).unwrap_or(opts.dir.clone());
        let (http, quick) = http_clients(None)?;
        let bridge = match mode {
            Mode::Netns => Some(netns::create_bridge()?),
            _ => None,
        };
        let mut tc = TestCluster {
            dir,
            file: ClusterFile {
                token: String::new(),
                join_token: String::new(),
                mode,
                bridge,
                havend,
                env: opts.env.iter().cloned().collect(),
                partitioned: Vec::new(),
                nodes: Vec::new(),
            },
            children: HashMap::new(),
            keep: false,
            http,
            quick,
        };
        // From here on, an error drops `tc`, whose Drop tears down what was made.
        let mut ports = PortPool::new();
        for i in 0..opts.nodes {
            let mut info = tc.plan_node(i, &mut ports)?;
            if opts.https {
                info.api = info.api.replacen("http://", "https://", 1);
                info.router = info.router.replacen("http://", "https://", 1);
            }
            tc.file.nodes.push(info);
        }
        // Written before anything runs so that `testcluster down --dir` can clean up after
        // a crash of this process.
        tc.save()?;
        drop(ports);
        tc.init_first(&opts)?;
        if let Some(ca) = tc.file.https_ca() {
            (tc.http, tc.quick) = http_clients(Some(&ca))?;
        }
        tc.spawn(0, &["run".into(), "--data-dir".into(), tc.data_dir_arg(0)])?;
        tc.save()?;
        tc.wait_member(0)?;
        for i in 1..opts.nodes {
            let mut args = vec![
                "join".to_string(),
                "--token".into(),
                tc.file.join_token.clone(),
            ];
            args.extend(tc.node_flags(i));
            if let Some(cfg) = tc.config_file(i, &opts)? {
                args.push("--config".into());
                args.push(cfg);
            }
            args.push(tc.file.nodes[0].peer.clone());
            tc.spawn(i, &args)?;
            tc.save()?;
            tc.wait_member(i)?;
        }
        for i in 0..opts.nodes {
            tc.refresh_id(i)?;
        }
        tc.save()?;
        Ok(tc)
    }

    /// Reopens a running cluster from `DIR/cluster.json`. The result keeps the cluster
    /// running when dropped (it did not start it); call [`TestCluster::down`] to stop it.
    pub fn load(dir: &Path) -> Result<TestCluster> {
        let file = ClusterFile::read(dir)?;
        let (http, quick) = http_clients(file.https_ca().as_deref())?;
        Ok(TestCluster {
            dir: dir.to_path_buf(),
            file,
            children: HashMap::new(),
            keep: true,
            http,
            quick,
        })
    }

    /// Reads `cluster.json` again, after another process (the `testcluster` CLI) changed
    /// the cluster, e.g. restarted a node; children of this process that exited are reaped.
    pub fn reload(&mut self) -> Result<()> {
        self.file = ClusterFile::read(&self.dir)?;
        self.children
            .retain(|_, c| !matches!(c.try_wait(), Ok(Some(_)) | Err(_)));
        Ok(())
    }

    /// Leaves the cluster running when this value is dropped.
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// Writes `cluster.json`.
    pub fn save(&self) -> Result<()> {
        self.file.write(&self.dir)
    }

    fn plan_node(&self, i: usize, ports: &mut PortPool) -> Result<NodeInfo> {
        let node_dir = self.dir.join(format!("node{i}"));
        let data_dir = node_dir.join("data");
        // `init`/`join` refuse a data dir that holds a node: this is a fresh cluster.
        if data_dir.exists() {
            fs::remove_dir_all(&data_dir)
                .with_context(|| format!("remove old {}", data_dir.display()))?;
        }
        fs::create_dir_all(&node_dir).with_context(|| format!("create {}", node_dir.display()))?;
        let log = node_dir.join("havend.log");
        // A fresh log per cluster; restarts append to it.
        let _ = fs::remove_file(&log);
        let (host, api, peer, router, netns) = match self.file.bridge {
            Some(k) => {
                let ns = netns::create_host(k, i)?;
                (
                    netns::node_addr(k, i),
                    API_PORT,
                    PEER_PORT,
                    ROUTER_PORT,
                    Some(ns),
                )
            }
            None => (
                "127.0.0.1".to_string(),
                ports.take()?,
                ports.take()?,
                ports.take()?,
                None,
            ),
        };
        Ok(NodeInfo {
            id: String::new(),
            name: format!("node-{i}"),
            api: format!("http://{host}:{api}"),
            peer: format!("{host}:{peer}"),
            router: format!("http://{host}:{router}"),
            pid: 0,
            netns,
            data_dir,
            log,
        })
    }

    fn data_dir_arg(&self, i: usize) -> String {
        self.file.nodes[i].data_dir.display().to_string()
    }

    /// `--data-dir .. --name .. --*-listen .. --advertise-host ..` of node `i`: in a
    /// namespace it listens on every address, on loopback only on 127.0.0.1.
    fn node_flags(&self, i: usize) -> Vec<String> {
        let n = &self.file.nodes[i];
        let bind = if n.netns.is_some() {
            "0.0.0.0"
        } else {
            "127.0.0.1"
        };
        let port = |url: &str| url.rsplit(':').next().unwrap_or("0").to_string();
        let host = n
            .peer
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or_default();
        vec![
            "--data-dir".into(),
            self.data_dir_arg(i),
            "--name".into(),
            n.name.clone(),
            "--api-listen".into(),
            format!("{bind}:{}", port(&n.api)),
            "--peer-listen".into(),
            format!("{bind}:{}", port(&n.peer)),
            "--router-listen".into(),
            format!("{bind}:{}", port(&n.router)),
            "--advertise-host".into(),
            host,
        ]
    }

    fn config_file(&self, i: usize, opts: &Options) -> Result<Option<String>> {
        let Some(toml) = &opts.config_toml else {
            return Ok(None);
        };
        let path = self.dir.join(format!("node{i}")).join("havend-extra.toml");
        fs::write(&path, toml).with_context(|| format!("write {}", path.display()))?;
        Ok(Some(path.display().to_string()))
    }

    /// A command running `havend` as node `i` (inside its namespace in netns mode).
    fn havend_command(&self, i: usize) -> Command {
        let mut cmd = match &self.file.nodes[i].netns {
            Some(ns) => netns::exec_in(ns, &self.file.havend),
            None => Command::new(&self.file.havend),
        };
        cmd.env(
            "HAVEN_LOG",
            std::env::var("HAVEN_LOG").unwrap_or_else(|_| "info".into()),
        );
        cmd.envs(&self.file.env);
        cmd
    }

    fn init_first(&mut self, opts: &Options) -> Result<()> {
        let mut cmd = self.havend_command(0);
        match &opts.restore_from {
            Some(file) => cmd
                .args(["restore", "--json", "--from"])
                .arg(file)
                .args(self.node_flags(0)),
            None => cmd.args(["init", "--json"]).args(self.node_flags(0)),
        };
        if let Some(cfg) = self.config_file(0, opts)? {
            cmd.args(["--config", &cfg]);
        }
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {}", self.file.havend.display()))?;
        // Keep init's diagnostics with the node's log.
        let _ = fs::write(&self.file.nodes[0].log, &out.stderr);
        if !out.status.success() {
            bail!(
                "havend init/restore failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let (id, token, join_token) = cluster_file::parse_init_output(&out.stdout)?;
        self.file.nodes[0].id = id;
        self.file.token = token;
        self.file.join_token = join_token;
        Ok(())
    }

    /// Starts `havend ARGS` for node `i` as the leader of its own session and process
    /// group, output appended to its log, stdin null: it outlives this process.
    fn spawn(&mut self, i: usize, args: &[String]) -> Result<()> {
        let log_path = self.file.nodes[i].log.clone();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("open {}", log_path.display()))?;
        let mut cmd = self.havend_command(i);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent; it
        // makes the node lead its own process group so that kill/stop reach everything it
        // starts, and detaches it from our terminal.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()
                    .map(|_| ())
                    .map_err(std::io::Error::from)
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("start node {i} ({})", self.file.havend.display()))?;
        self.file.nodes[i].pid = child.id() as i32;
        self.children.insert(i, child);
        Ok(())
    }

    /// `GET /cluster/status` of node `i` with a short timeout.
    pub fn status(&self, i: usize) -> Result<Value> {
        let url = format!("{}/cluster/status", self.api(i));
        let resp = self
            .quick
            .get(&url)
            .bearer_auth(&self.file.token)
            .header("Accept", "application/vnd.heroku+json; version=3")
            .send()
            .with_context(|| format!("request {url}"))?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .with_context(|| format!("parse the answer of {url}"))?;
        if !status.is_success() {
            bail!("GET {url}: {status} {body}");
        }
        Ok(body)
    }

    /// Waits until node `i` reports a leader and lists itself as a member; fails early,
    /// quoting its log, when its process exits.
    fn wait_member(&mut self, i: usize) -> Result<()> {
        let mut exited = false;
        let ok = wait_until(FORM_TIMEOUT, || {
            if !self.alive(i) {
                exited = true;
                return true;
            }
            self.status(i).is_ok_and(|s| is_member(&s))
        });
        let n = &self.file.nodes[i];
        let tail = log_tail(&n.log, LOG_TAIL_LINES);
        if exited {
            bail!(
                "node {i} ({}) exited before joining the cluster; see {}{tail}",
                n.name,
                n.log.display()
            );
        }
        if !ok {
            bail!(
                "node {i} ({}) did not join the cluster within {FORM_TIMEOUT:?}; see {}{tail}",
                n.api,
                n.log.display()
            );
        }
        Ok(())
    }

    fn refresh_id(&mut self, i: usize) -> Result<()> {
        let s = self.status(i)?;
        let id = s["node_id"]
            .as_str()
            .ok_or_else(|| anyhow!("node {i} reported no node_id: {s}"))?;
        self.file.nodes[i].id = id.to_string();
        Ok(())
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.file.nodes.len()
    }
    /// Whether the cluster has no nodes (never true for a started one).
    pub fn is_empty(&self) -> bool {
        self.file.nodes.is_empty()
    }
    /// The admin API token.
    pub fn token(&self) -> &str {
        &self.file.token
    }
    /// API base URL of node `i`, reachable from the host.
    pub fn api(&self, i: usize) -> &str {
        &self.file.nodes[i].api
    }
    /// Router base URL of node `i`, reachable from the host.
    pub fn router(&self, i: usize) -> &str {
        &self.file.nodes[i].router
    }
    /// Raft node id of node `i` (as the API renders it).
    pub fn node_id(&self, i: usize) -> &str {
        &self.file.nodes[i].id
    }
    /// Index of the node with Raft id `id`.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.file.nodes.iter().position(|n| n.id == id)
    }
    /// Node `i`'s network namespace (netns mode), where `127.0.0.1` reaches its ports.
    pub fn netns(&self, i: usize) -> Option<&str> {
        self.file.nodes.get(i).and_then(|n| n.netns.as_deref())
    }
    /// Node `i`'s data dir (`havend --data-dir`).
    pub fn data_dir(&self, i: usize) -> Option<&Path> {
        self.file.nodes.get(i).map(|n| n.data_dir.as_path())
    }
    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The host's own address on the cluster's bridge (netns mode): outside every node,
    /// as the internet is.
    pub fn bridge_host(&self) -> Option<String> {
        self.file.bridge.map(netns::host_addr)
    }
    /// Whether nodes run in network namespaces (so partitions work).
    pub fn is_netns(&self) -> bool {
        self.file.bridge.is_some()
    }

    /// Whether node `i`'s process runs (stopped counts as running).
    pub fn alive(&mut self, i: usize) -> bool {
        if let Some(child) = self.children.get_mut(&i) {
            if let Ok(Some(_)) = child.try_wait() {
                self.children.remove(&i);
                return false;
            }
        }
        pid_alive(self.file.nodes[i].pid)
    }

    fn check_index(&self, i: usize) -> Result<()> {
        if i >= self.len() {
            bail!(
                "node {i} does not exist; the cluster has nodes 0 to {}",
                self.len().saturating_sub(1)
            );
        }
        Ok(())
    }

    /// `(dyno id, pid)` of node `i`'s running dynos (see [`dynos::running`]).
    pub fn dyno_pids(&self, i: usize) -> Vec<(String, i32)> {
        self.file
            .nodes
            .get(i)
            .map(|n| dynos::running(&n.data_dir))
            .unwrap_or_default()
    }

    /// Starts node `i` again with `havend run` from its data dir, in the same namespace
    /// and addresses (killing it and its dynos first if it runs or is stopped; after
    /// [`TestCluster::kill_agent`] the new agent adopts the dynos left running). Does not
    /// wait; use [`TestCluster::wait_ready`].
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.check_index(i)?;
        if self.alive(i) {
            // SIGKILL ends a stopped process too; CONT only spares a stray stopped child.
            let _ = self.signal(i, Signal::SIGCONT);
            self.kill(i)?;
        }
        self.spawn(
            i,
            &["run".into(), "--data-dir".into(), self.data_dir_arg(i)],
        )?;
        self.save()
    }

    /// Waits until node `i` answers and reports a leader.
    pub fn wait_ready(&mut self, i: usize, timeout: Duration) -> Result<()> {
        if wait_until(timeout, || {
            self.status(i).is_ok_and(|s| !s["leader"].is_null())
        }) {
            Ok(())
        } else {
            let log = &self.file.nodes[i].log;
            bail!(
                "node {i} not ready within {timeout:?}; see {}{}",
                log.display(),
                log_tail(log, LOG_TAIL_LINES)
            )
        }
    }

    /// Kills every node (stopped ones too) and their dynos, removes the namespaces,
    /// veths and bridge, and `cluster.json`; node logs and data dirs stay for inspection.
    pub fn down(&mut self) {
        for i in 0..self.len() {
            if self.alive(i) {
                let _ = self.signal(i, Signal::SIGCONT);
            }
            let _ = self.kill(i);
        }
        if let Some(k) = self.file.bridge {
            netns::destroy(k, self.len());
        }
        let _ = fs::remove_file(ClusterFile::path(&self.dir));
        self.keep = true;
    }

    /// GET `path` on node `i` with the admin token; a non-2xx answer is an error carrying
    /// status and body.
    pub fn get_json(&self, i: usize, path: &str) -> Result<Value> {
        self.call_json(i, reqwest::Method::GET, path, None)
    }

    /// POST `body` to `path` on node `i`; like [`TestCluster::get_json`].
    pub fn post_json(&self, i: usize, path: &str, body: &Value) -> Result<Value> {
        self.call_json(i, reqwest::Method::POST, path, Some(body))
    }

    fn call_json(
        &self,
        i: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let (status, v) = self.request(i, method.clone(), path, body)?;
        if status.is_success() {
            Ok(v)
        } else {
            Err(anyhow!("{method} {path} on node {i}: {status} {v}"))
        }
    }

    /// Any request on node `i` with the admin token; returns status and JSON body (a body
    /// that is not JSON comes back as a JSON string, an empty one as null).
    pub fn request(
        &self,
        i: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(reqwest::StatusCode, Value)> {
        let url = format!("{}{}", self.api(i), path);
        let mut req = self
            .http
            .request(method, &url)
            .bearer_auth(&self.file.token)
            .header("Accept", "application/vnd.heroku+json; version=3");
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().with_context(|| format!("request {url}"))?;
        let status = resp.status();
        let text = resp
            .text()
            .with_context(|| format!("read the answer of {url}"))?;
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, v))
    }

    /// The node that a majority of the cluster reports as leader and that itself answers
    /// as leader; `None` while there is no such node (election, lost quorum).
    ///
    /// A majority of all nodes rather than of the live ones: fewer cannot elect a leader,
    /// so their agreement is stale.
    pub fn leader_index(&mut self) -> Option<usize> {
        let mut reports = Vec::new();
        for i in 0..self.len() {
            if !self.alive(i) {
                continue;
            }
            reports.push(
                self.status(i)
                    .ok()
                    .and_then(|s| s["leader"].as_str().map(str::to_string)),
            );
        }
        let id = majority_leader(&reports, self.len())?;
        let idx = self.index_of(&id)?;
        let confirmed = self.alive(idx)
            && self
                .status(idx)
                .is_ok_and(|s| s["leader"].as_str() == Some(id.as_str()));
        confirmed.then_some(idx)
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if !self.keep {
            self.down();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dead_pids_are_not_alive() {
        assert!(pid_alive(std::process::id() as i32));
        assert!(!pid_alive(i32::MAX));
        assert!(!pid_alive(0));
        assert!(!pid_alive(-1));
    }

    #[test]
    fn port_pool_hands_out_distinct_ports() {
        let mut pool = PortPool::new();
        let ports: Vec<u16> = (0..12).map(|_| pool.take().unwrap()).collect();
        let mut sorted = ports.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ports.len(), "{ports:?}");
    }

    #[test]
    fn majority_leader_needs_more_than_half_of_the_cluster() {
        let s = |x: &str| Some(x.to_string());
        assert_eq!(majority_leader(&[s("1"), s("1"), s("1")], 3), s("1"));
        assert_eq!(majority_leader(&[s("1"), s("1")], 3), s("1"));
        // The partitioned old leader still names itself; the majority has moved on.
        assert_eq!(majority_leader(&[s("1"), s("2"), s("2")], 3), s("2"));
        assert_eq!(majority_leader(&[s("1"), None, s("2")], 3), None);
        assert_eq!(majority_leader(&[s("1")], 3), None);
        assert_eq!(majority_leader(&[s("1"), s("1")], 4), None);
        assert_eq!(majority_leader(&[s("1"), s("1"), s("1")], 5), s("1"));
        assert_eq!(majority_leader(&[], 1), None);
        assert_eq!(majority_leader(&[s("7")], 1), s("7"));
    }

    #[test]
    fn membership_needs_a_leader_and_self_listed() {
        let base = json!({"node_id": "5", "leader": "1", "voters": ["1", "5"], "learners": []});
        assert!(is_member(&base));
        let learner = json!({"node_id": "5", "leader": "1", "voters": ["1"], "learners": ["5"]});
        assert!(is_member(&learner));
        let no_leader =
            json!({"node_id": "5", "leader": null, "voters": ["1", "5"], "learners": []});
        assert!(!is_member(&no_leader));
        let not_listed = json!({"node_id": "5", "leader": "1", "voters": ["1"], "learners": []});
        assert!(!is_member(&not_listed));
        assert!(!is_member(&json!({"leader": "1"})));
    }

    #[test]
    fn missing_binary_error_says_how_to_build() {
        let err = find_binary("no-such-binary-xyz", None, "NO_SUCH_BINARY_XYZ_BIN").unwrap_err();
        assert!(format!("{err}").contains("cargo build --bins"), "{err}");
        let err = find_binary("x", Some(Path::new("/nonexistent/havend")), "X").unwrap_err();
        assert!(format!("{err}").contains("/nonexistent/havend"), "{err}");
    }

    #[test]
    fn log_tail_quotes_the_last_lines() {
        let path = std::env::temp_dir().join(format!("tc-tail-{}.log", std::process::id()));
        fs::write(
            &path,
            (1..=20).map(|n| format!("line {n}\n")).collect::<String>(),
        )
        .unwrap();
        let tail = log_tail(&path, 3);
        assert_eq!(tail, "\n    line 18\n    line 19\n    line 20");
        fs::remove_file(&path).unwrap();
        assert_eq!(log_tail(&path, 3), "");
    }
}
