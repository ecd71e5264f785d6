//! testcluster: start N `havend` agents as separate hosts and inject faults.
//!
//! As root with iproute2 each node gets its own network namespace and address on a bridge
//! (`10.77.K.10+I`); otherwise all nodes share loopback on distinct ports. The cluster is
//! described by `DIR/cluster.json`, so that the CLI (`testcluster kill --dir DIR --node 1`)
//! and the Rust API (used by tests and benchmarks) work on the same running cluster.

pub mod netns;

use std::collections::HashMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use serde_json::Value;

const API_PORT: u16 = 7400;
const PEER_PORT: u16 = 7401;
const ROUTER_PORT: u16 = 7480;
const FORM_TIMEOUT: Duration = Duration::from_secs(60);

/// Where nodes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// netns when root with iproute2, else loopback.
    Auto,
    Netns,
    Loopback,
}

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct Options {
    pub nodes: usize,
    pub dir: PathBuf,
    pub havend: Option<PathBuf>,
    pub mode: Mode,
    /// Extra TOML appended to each node's `--config` file (e.g. a `[raft]` table).
    pub config_toml: Option<String>,
}

impl Options {
    pub fn new(nodes: usize, dir: impl Into<PathBuf>) -> Options {
        Options { nodes, dir: dir.into(), havend: None, mode: Mode::Auto, config_toml: None }
    }
}

/// One node as `cluster.json` records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: String,
    pub name: String,
    pub api: String,
    pub peer: String,
    pub router: String,
    pub pid: i32,
    pub netns: Option<String>,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

/// `DIR/cluster.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterFile {
    pub token: String,
    pub join_token: String,
    pub mode: Mode,
    /// Bridge index K in netns mode.
    pub bridge: Option<u8>,
    pub havend: PathBuf,
    pub nodes: Vec<NodeInfo>,
}

/// A running cluster.
pub struct TestCluster {
    dir: PathBuf,
    pub file: ClusterFile,
    children: HashMap<usize, Child>,
    keep: bool,
    http: reqwest::blocking::Client,
}

/// Finds the `havend` binary: explicit, `HAVEND_BIN`, or beside the current executable.
pub fn find_binary(name: &str, explicit: Option<&Path>, env: &str) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Ok(p) = std::env::var(env) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(3) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!("cannot find {name} near {}; run `cargo build --workspace --bins` or set {env}", exe.display())
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    // The peer port is UDP: make sure it is free too.
    std::net::UdpSocket::bind(("127.0.0.1", port)).context("probe udp port")?;
    Ok(port)
}

/// Polls `cond` until it is true or `timeout` passes.
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

fn pid_alive(pid: i32) -> bool {
    // A zombie has exited: look at /proc rather than kill(0).
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

impl TestCluster {
    /// Starts a cluster and waits until every node is a member with a leader.
    pub fn start(opts: Options) -> Result<TestCluster> {
        if opts.nodes == 0 {
            bail!("a cluster needs at least one node");
        }
        let havend = find_binary("havend", opts.havend.as_deref(), "HAVEND_BIN")?;
        let mode = match opts.mode {
            Mode::Auto if netns::available() => Mode::Netns,
            Mode::Auto => Mode::Loopback,
            Mode::Netns if !netns::available() => bail!("netns mode needs root and iproute2"),
            m => m,
        };
        fs::create_dir_all(&opts.dir)?;
        let bridge = match mode {
            Mode::Netns => Some(netns::create_bridge()?),
            _ => None,
        };
        let mut tc = TestCluster {
            dir: opts.dir.clone(),
            file: ClusterFile { token: String::new(), join_token: String::new(), mode, bridge, havend, nodes: Vec::new() },
            children: HashMap::new(),
            keep: false,
            http: reqwest::blocking::Client::builder().timeout(Duration::from_secs(15)).build()?,
        };
        // On any error below, Drop tears down what was made.
        for i in 0..opts.nodes {
            let info = tc.plan_node(i, &opts)?;
            tc.file.nodes.push(info);
        }
        tc.init_first(&opts)?;
        tc.spawn(0, &["run".into(), "--data-dir".into(), tc.data_dir_arg(0)])?;
        tc.wait_member(0)?;
        for i in 1..opts.nodes {
            let n = &tc.file.nodes[i];
            let (api, peer, router, host) = tc.listen_args(i);
            let mut args = vec![
                "join".to_string(),
                "--token".into(),
                tc.file.join_token.clone(),
                "--data-dir".into(),
                tc.data_dir_arg(i),
                "--name".into(),
                n.name.clone(),
                "--api-listen".into(),
                api,
                "--peer-listen".into(),
                peer,
                "--router-listen".into(),
                router,
                "--advertise-host".into(),
                host,
            ];
            if let Some(cfg) = tc.config_file(i, &opts)? {
                args.push("--config".into());
                args.push(cfg);
            }
            args.push(tc.file.nodes[0].peer.clone());
            tc.spawn(i, &args)?;
            tc.wait_member(i)?;
        }
        for i in 0..opts.nodes {
            tc.refresh_id(i)?;
        }
        tc.save()?;
        Ok(tc)
    }

    /// Reopens a running cluster from `DIR/cluster.json`.
    pub fn load(dir: &Path) -> Result<TestCluster> {
        let path = dir.join("cluster.json");
        let text = fs::read_to_string(&path).with_context(|| format!("read {}; start a cluster with `testcluster up`", path.display()))?;
        let file: ClusterFile = serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
        Ok(TestCluster {
            dir: dir.to_path_buf(),
            file,
            children: HashMap::new(),
            keep: true,
            http: reqwest::blocking::Client::builder().timeout(Duration::from_secs(15)).build()?,
        })
    }

    /// Leaves the cluster running when this value is dropped.
    pub fn keep(&mut self) {
        self.keep = true;
    }

    pub fn save(&self) -> Result<()> {
        let path = self.dir.join("cluster.json");
        fs::write(&path, serde_json::to_vec_pretty(&self.file)?).with_context(|| format!("write {}", path.display()))
    }

    fn plan_node(&self, i: usize, _opts: &Options) -> Result<NodeInfo> {
        let node_dir = self.dir.join(format!("node{i}"));
        fs::create_dir_all(&node_dir)?;
        let (host, api, peer, router, netns) = match self.file.bridge {
            Some(k) => {
                let ns = netns::create_host(k, i)?;
                let h = netns::node_addr(k, i);
                (h, API_PORT, PEER_PORT, ROUTER_PORT, Some(ns))
            }
            None => ("127.0.0.1".to_string(), free_port()?, free_port()?, free_port()?, None),
        };
        let data_dir = node_dir.join("data");
        if data_dir.exists() {
            fs::remove_dir_all(&data_dir)?;
        }
        Ok(NodeInfo {
            id: String::new(),
            name: format!("node-{i}"),
            api: format!("http://{host}:{api}"),
            peer: format!("{host}:{peer}"),
            router: format!("http://{host}:{router}"),
            pid: 0,
            netns,
            data_dir,
            log: node_dir.join("havend.log"),
        })
    }

    fn data_dir_arg(&self, i: usize) -> String {
        self.file.nodes[i].data_dir.display().to_string()
    }

    fn port_of(url: &str) -> String {
        url.rsplit(':').next().unwrap_or("0").to_string()
    }

    /// (api, peer, router listen addresses, advertise host) of node `i`.
    fn listen_args(&self, i: usize) -> (String, String, String, String) {
        let n = &self.file.nodes[i];
        let bind = if n.netns.is_some() { "0.0.0.0" } else { "127.0.0.1" };
        let host = n.peer.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or_default();
        (
            format!("{bind}:{}", Self::port_of(&n.api)),
            format!("{bind}:{}", Self::port_of(&n.peer)),
            format!("{bind}:{}", Self::port_of(&n.router)),
            host,
        )
    }

    fn config_file(&self, i: usize, opts: &Options) -> Result<Option<String>> {
        let Some(toml) = &opts.config_toml else { return Ok(None) };
        let path = self.dir.join(format!("node{i}")).join("havend-extra.toml");
        fs::write(&path, toml)?;
        Ok(Some(path.display().to_string()))
    }

    fn init_first(&mut self, opts: &Options) -> Result<()> {
        let (api, peer, router, host) = self.listen_args(0);
        let mut cmd = Command::new(&self.file.havend);
        cmd.args(["init", "--json", "--data-dir", &self.data_dir_arg(0), "--name", &self.file.nodes[0].name])
            .args(["--api-listen", &api, "--peer-listen", &peer, "--router-listen", &router, "--advertise-host", &host]);
        if let Some(cfg) = self.config_file(0, opts)? {
            cmd.args(["--config", &cfg]);
        }
        let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("run {}", self.file.havend.display()))?;
        if !out.status.success() {
            bail!("havend init failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let v: Value = serde_json::from_slice(&out.stdout).context("parse havend init --json output")?;
        self.file.token = v["admin_token"].as_str().unwrap_or_default().to_string();
        self.file.join_token = v["join_token"].as_str().unwrap_or_default().to_string();
        self.file.nodes[0].id = v["node_id"].to_string();
        Ok(())
    }

    /// Starts `havend ARGS` for node `i` in its own process group (and namespace).
    fn spawn(&mut self, i: usize, args: &[String]) -> Result<()> {
        let n = &self.file.nodes[i];
        let log = fs::OpenOptions::new().create(true).append(true).open(&n.log)?;
        let mut cmd = match &n.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.file.havend);
                c
            }
            None => Command::new(&self.file.havend),
        };
        cmd.args(args)
            .env("HAVEN_LOG", std::env::var("HAVEN_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: setsid is async-signal-safe; it makes the node lead its own process
        // group so that kill/stop reach everything it started.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from)
            });
        }
        let child = cmd.spawn().with_context(|| format!("start node {i}"))?;
        self.file.nodes[i].pid = child.id() as i32;
        self.children.insert(i, child);
        Ok(())
    }

    fn status_of(&self, i: usize) -> Option<Value> {
        self.get_json(i, "/cluster/status").ok()
    }

    /// Waits until node `i` reports a leader and lists itself as a member.
    fn wait_member(&mut self, i: usize) -> Result<()> {
        let ok = wait_until(FORM_TIMEOUT, || {
            if !self.alive(i) {
                return false;
            }
            self.status_of(i).is_some_and(|s| {
                let me = s["node_id"].as_str().unwrap_or("").to_string();
                let member = |k: &str| s[k].as_array().is_some_and(|a| a.iter().any(|v| v.as_str() == Some(me.as_str())));
                !s["leader"].is_null() && (member("voters") || member("learners"))
            })
        });
        if !ok {
            let n = &self.file.nodes[i];
            bail!("node {i} ({}) did not join the cluster within {:?}; see {}", n.api, FORM_TIMEOUT, n.log.display());
        }
        Ok(())
    }

    fn refresh_id(&mut self, i: usize) -> Result<()> {
        let s = self.get_json(i, "/cluster/status")?;
        self.file.nodes[i].id = s["node_id"].as_str().unwrap_or_default().to_string();
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.file.nodes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.file.nodes.is_empty()
    }
    pub fn token(&self) -> &str {
        &self.file.token
    }
    pub fn api(&self, i: usize) -> &str {
        &self.file.nodes[i].api
    }
    pub fn router(&self, i: usize) -> &str {
        &self.file.nodes[i].router
    }
    pub fn node_id(&self, i: usize) -> &str {
        &self.file.nodes[i].id
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn is_netns(&self) -> bool {
        self.file.bridge.is_some()
    }

    /// Whether node `i`'s process runs.
    pub fn alive(&mut self, i: usize) -> bool {
        if let Some(child) = self.children.get_mut(&i) {
            if let Ok(Some(_)) = child.try_wait() {
                self.children.remove(&i);
                return false;
            }
        }
        pid_alive(self.file.nodes[i].pid)
    }

    fn signal(&self, i: usize, sig: Signal) -> Result<()> {
        let pid = self.file.nodes[i].pid;
        if pid <= 0 {
            bail!("node {i} has no process");
        }
        killpg(Pid::from_raw(pid), sig).map_err(|e| anyhow!("signal {sig} to node {i} (pid {pid}): {e}"))
    }

    /// SIGKILL of the node and everything it started.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        if !self.alive(i) {
            return Ok(());
        }
        self.signal(i, Signal::SIGKILL)?;
        if let Some(mut c) = self.children.remove(&i) {
            let _ = c.wait();
        }
        if !wait_until(Duration::from_secs(10), || !pid_alive(self.file.nodes[i].pid)) {
            bail!("node {i} survived SIGKILL");
        }
        Ok(())
    }

    /// SIGSTOP: the node freezes (a hung host).
    pub fn stop(&mut self, i: usize) -> Result<()> {
        self.signal(i, Signal::SIGSTOP)
    }

    /// SIGCONT after [`TestCluster::stop`].
    pub fn cont(&mut self, i: usize) -> Result<()> {
        self.signal(i, Signal::SIGCONT)
    }

    /// Starts node `i` again from its data dir (killing it first if it runs).
    pub fn restart(&mut self, i: usize) -> Result<()> {
        if self.alive(i) {
            let _ = self.signal(i, Signal::SIGCONT);
            self.kill(i)?;
        }
        self.spawn(i, &["run".into(), "--data-dir".into(), self.data_dir_arg(i)])?;
        self.save()?;
        Ok(())
    }

    /// Waits until node `i` answers and reports a leader.
    pub fn wait_ready(&mut self, i: usize, timeout: Duration) -> Result<()> {
        if wait_until(timeout, || self.status_of(i).is_some_and(|s| !s["leader"].is_null())) {
            Ok(())
        } else {
            bail!("node {i} not ready within {timeout:?}; see {}", self.file.nodes[i].log.display())
        }
    }

    fn bridge(&self) -> Result<u8> {
        self.file.bridge.ok_or_else(|| anyhow!("partitions need netns mode (run as root with iproute2)"))
    }

    /// Node `i` can reach no other node and none can reach it; the host still can.
    pub fn partition(&mut self, i: usize) -> Result<()> {
        netns::partition(self.bridge()?, i, self.len())
    }

    pub fn heal(&mut self, i: usize) -> Result<()> {
        netns::heal(self.bridge()?, i, self.len())
    }

    pub fn heal_all(&mut self) -> Result<()> {
        for i in 0..self.len() {
            self.heal(i)?;
        }
        Ok(())
    }

    /// Stops every node and removes namespaces and the bridge.
    pub fn down(&mut self) {
        for i in 0..self.len() {
            let _ = self.signal(i, Signal::SIGCONT);
            let _ = self.kill(i);
        }
        if let Some(k) = self.file.bridge {
            netns::destroy(k, self.len());
        }
    }

    /// GET `path` on node `i` with the admin token; errors carry status and body.
    pub fn get_json(&self, i: usize, path: &str) -> Result<Value> {
        self.request(i, reqwest::Method::GET, path, None).and_then(|(status, v)| {
            if status.is_success() {
                Ok(v)
            } else {
                Err(anyhow!("GET {path} on node {i}: {status} {v}"))
            }
        })
    }

    /// Any request on node `i` with the admin token; returns status and JSON body.
    pub fn request(&self, i: usize, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<(reqwest::StatusCode, Value)> {
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
        let text = resp.text()?;
        let v = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Ok((status, v))
    }

    /// The node index every live node's status agrees is leader.
    pub fn leader_index(&mut self) -> Option<usize> {
        let mut leader_id = None;
        for i in 0..self.len() {
            if !self.alive(i) {
                continue;
            }
            let s = self.status_of(i)?;
            let l = s["leader"].as_str()?.to_string();
            match &leader_id {
                None => leader_id = Some(l),
                Some(x) if *x == l => {}
                Some(_) => return None,
            }
        }
        let id = leader_id?;
        self.file.nodes.iter().position(|n| n.id == id)
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
mod tests {
    use super::*;

    #[test]
    fn cluster_file_roundtrip() {
        let f = ClusterFile {
            token: "t".into(),
            join_token: "j".into(),
            mode: Mode::Netns,
            bridge: Some(3),
            havend: "/bin/havend".into(),
            nodes: vec![NodeInfo {
                id: "1".into(),
                name: "node-0".into(),
                api: "http://10.77.3.10:7400".into(),
                peer: "10.77.3.10:7401".into(),
                router: "http://10.77.3.10:7480".into(),
                pid: 42,
                netns: Some("hv3-n0".into()),
                data_dir: "/tmp/x".into(),
                log: "/tmp/x.log".into(),
            }],
        };
        let text = serde_json::to_string(&f).unwrap();
        let back: ClusterFile = serde_json::from_str(&text).unwrap();
        assert_eq!(back.nodes[0].api, f.nodes[0].api);
        assert!(text.contains("\"mode\":\"netns\""));
    }

    #[test]
    fn dead_pids_are_not_alive() {
        assert!(pid_alive(std::process::id() as i32));
        assert!(!pid_alive(i32::MAX));
    }
}
