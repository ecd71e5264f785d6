//! The agent's data dir and its configuration.
//!
//! Layout of `DATA_DIR`:
//! - `havend.toml`: this node's identity and listen addresses ([`NodeConfig`]), written
//!   by `init`/`join`, so that a restart needs only `--data-dir`;
//! - `ca.pem`, `ca-key.pem`, `node.pem`, `node-key.pem`: the cluster CA and this node's
//!   certificate (keys mode 0600);
//! - `bootstrap.json`: the first command of a new cluster, present between `init` and
//!   the first run that commits it;
//! - `raft/`: the RocksDB store;
//! - `slugs/`: compressed slugs by sha256; `sources/`: uploaded build sources;
//!   `builds/`: build work dirs and outputs; `cache/`: build caches per app;
//!   `repos/`: bare git repositories per app.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::tls::CertKey;

/// Default listen addresses.
pub const DEFAULT_API_LISTEN: &str = "0.0.0.0:7400";
pub const DEFAULT_PEER_LISTEN: &str = "0.0.0.0:7401";
pub const DEFAULT_ROUTER_LISTEN: &str = "0.0.0.0:7480";

/// Timings of Raft, overridable in the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftTuning {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub snapshot_after: u64,
    pub keep_logs: u64,
    /// Releases of each app kept in memory; older ones are read from disk.
    pub releases_in_memory: usize,
    /// Release retention, applied by the leader: each app keeps its newest N releases
    /// (and what a dyno runs); older ones are removed. 0 keeps every release.
    pub retain_releases: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        let d = haven_raft::RaftSettings::default();
        RaftTuning {
            heartbeat_ms: d.heartbeat.as_millis() as u64,
            election_timeout_min_ms: d.election_timeout_min.as_millis() as u64,
            election_timeout_max_ms: d.election_timeout_max.as_millis() as u64,
            snapshot_after: d.snapshot_after,
            keep_logs: d.keep_logs,
            releases_in_memory: d.releases_in_memory,
            retain_releases: 0,
        }
    }
}

impl RaftTuning {
    pub fn settings(&self) -> Result<haven_raft::RaftSettings> {
        if self.heartbeat_ms == 0 || self.election_timeout_min_ms <= self.heartbeat_ms {
            bail!("raft timings: election_timeout_min_ms must exceed heartbeat_ms, which must be above 0");
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            bail!("raft timings: election_timeout_max_ms must exceed election_timeout_min_ms");
        }
        Ok(haven_raft::RaftSettings {
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            election_timeout_min: Duration::from_millis(self.election_timeout_min_ms),
            election_timeout_max: Duration::from_millis(self.election_timeout_max_ms),
            snapshot_after: self.snapshot_after.max(1),
            keep_logs: self.keep_logs,
            releases_in_memory: self.releases_in_memory.max(1),
            ..haven_raft::RaftSettings::default()
        })
    }
}

/// Limits of builds, overridable in the config file's `[builds]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BuildTuning {
    /// Largest compressed slug, MiB (Heroku: 1 GB).
    pub max_slug_mb: u64,
    /// Longest compile phase, seconds (Heroku: 25 minutes).
    pub compile_timeout_secs: u64,
    /// How often the leader asks each connected repository for its branch's newest
    /// commit, ms (a webhook call asks at once).
    pub repo_poll_ms: u64,
    /// A blob of the slug store that the state no longer names (a deleted app's slug, a
    /// deleted backup) is removed once this old, seconds.
    pub slug_gc_grace_secs: u64,
}

impl Default for BuildTuning {
    fn default() -> Self {
        BuildTuning {
            max_slug_mb: 1024,
            compile_timeout_secs: 25 * 60,
            repo_poll_ms: 60_000,
            slug_gc_grace_secs: 3600,
        }
    }
}

/// Dynos and liveness, overridable in the config file's `[dynos]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DynoTuning {
    /// How often agents tell the others they are alive.
    pub heartbeat_ms: u64,
    /// A node silent this long is marked down by the leader and its dynos move.
    pub node_timeout_ms: u64,
    /// A web dyno must accept connections on $PORT within this (else R10).
    pub boot_timeout_secs: u64,
    /// Between SIGTERM and SIGKILL when a dyno stops (else R12).
    pub stop_timeout_secs: u64,
    /// Host ports handed to dynos as $PORT.
    pub port_range_start: u16,
    pub port_range_end: u16,
    /// Disk budget of extracted slugs, MiB.
    pub slug_cache_mb: u64,
    /// Memory this node offers to dynos, MiB (default: the host's memory).
    pub memory_mb: Option<u64>,
    /// Longest wait between crash restarts, seconds.
    pub max_restart_backoff_secs: u64,
    /// `false` runs dynos as plain child processes even where containers are possible.
    pub containers: bool,
    /// An HA add-on's standby whose node has not been heard from this long is replaced by
    /// a new one on another node.
    pub standby_replace_after_secs: u64,
    /// How long a Raft voter may be down before the leader gives its seat to a live
    /// learner and removes it (the voter autopilot), seconds.
    pub voter_replace_after_secs: u64,
    /// `isolated` (the default): every container dyno and build has a network namespace
    /// of its own on the node's bridge; `host`: they share the host's network.
    pub network: NetworkMode,
    /// `image` (the default): builds and dynos run on their stack's imported image (`hctl
    /// stacks:import`), or on the host's root while a stack has none; `host`: always on
    /// the host's root (`/usr`, `/etc`, ... bound read-only).
    pub stack: crate::stacks::roots::StackMode,
    /// The addresses of this node's dynos (the bridge has the first one). Every node may
    /// use the same subnet: dyno addresses never leave their node.
    pub subnet: String,
}

/// Where dynos' network comes from (`[dynos] network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Isolated,
    Host,
}

impl Default for DynoTuning {
    fn default() -> Self {
        DynoTuning {
            heartbeat_ms: 500,
            node_timeout_ms: 2000,
            boot_timeout_secs: 60,
            stop_timeout_secs: 30,
            port_range_start: 30000,
            port_range_end: 39999,
            slug_cache_mb: 10 * 1024,
            memory_mb: None,
            max_restart_backoff_secs: 20 * 60,
            containers: true,
            standby_replace_after_secs: 300,
            voter_replace_after_secs: 300,
            network: NetworkMode::Isolated,
            stack: crate::stacks::roots::StackMode::Image,
            subnet: "10.213.0.0/16".into(),
        }
    }
}

/// The HTTP router, overridable in the config file's `[router]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterTuning {
    /// A connection to a dyno not made within this is a failed connect (quarantine, retry).
    pub connect_timeout_ms: u64,
    /// How long a dyno that refused a connection is left out.
    pub quarantine_ms: u64,
    /// Dynos tried per request.
    pub max_tries: u32,
    /// Time to the response's first byte (else H12).
    pub first_byte_timeout_ms: u64,
    /// Longest silence while a response body streams (else H15, the connection closes).
    pub idle_timeout_ms: u64,
    /// Longest wait for routers to confirm a withdrawn dyno before it is stopped anyway.
    pub withdraw_timeout_ms: u64,
    /// Longest a request waits for a dyno when none can take it but one is coming (the
    /// router is still syncing, or a web dyno is starting or moving); then H10/H14.
    pub hold_ms: u64,
    /// After start, the longest the router waits for its replica to catch up and for every
    /// up node's routes before it answers 404 or H14 for what it does not know.
    pub sync_grace_ms: u64,
    /// A node not heard from for this long is silent: its dynos are picked only when no
    /// other is left, and a GET/HEAD/OPTIONS waiting on one is sent to another dyno.
    pub silent_after_ms: u64,
}

impl Default for RouterTuning {
    fn default() -> Self {
        RouterTuning {
            connect_timeout_ms: 2000,
            quarantine_ms: 5000,
            max_tries: 10,
            first_byte_timeout_ms: 30_000,
            idle_timeout_ms: 55_000,
            withdraw_timeout_ms: 2000,
            hold_ms: 8000,
            sync_grace_ms: 10_000,
            silent_after_ms: 1500,
        }
    }
}

/// HTTPS on the API and router ports, in the config file's `[tls]` table. Both ports take
/// HTTPS always; the certificate is `api.pem`/`api-key.pem` in the data dir (issued from
/// the cluster CA for the node's names and addresses) unless the operator names their own.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// `false` refuses plain HTTP on the API and router ports (clients are told to use
    /// `https://`), and the node's URLs become `https://`.
    pub plain_http: bool,
    /// PEM files of the operator's own certificate chain and key for the API (and the
    /// router's names they cover).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            plain_http: true,
            cert_file: None,
            key_file: None,
        }
    }
}

/// This node's configuration, stored as `havend.toml` in the data dir.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub node_id: u64,
    pub name: String,
    pub cluster_id: String,
    pub api_listen: String,
    pub peer_listen: String,
    pub router_listen: String,
    /// Host or IP other nodes and clients use to reach this one.
    pub advertise_host: String,
    /// The peer a joining node asked to be added through; kept so that a node whose join
    /// was interrupted asks again when it starts.
    #[serde(default)]
    pub join_peer: Option<String>,
    #[serde(default)]
    pub raft: RaftTuning,
    #[serde(default)]
    pub builds: BuildTuning,
    #[serde(default)]
    pub dynos: DynoTuning,
    #[serde(default)]
    pub router: RouterTuning,
    #[serde(default)]
    pub tls: TlsSettings,
}

impl NodeConfig {
    fn port_of(listen: &str) -> Result<u16> {
        listen
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .with_context(|| format!("listen address {listen:?} has no port; use HOST:PORT"))
    }

    fn host_port(&self, listen: &str) -> Result<String> {
        let port = Self::port_of(listen)?;
        if self.advertise_host.contains(':') {
            Ok(format!("[{}]:{port}", self.advertise_host))
        } else {
            Ok(format!("{}:{port}", self.advertise_host))
        }
    }

    /// `host:port` other nodes dial for QUIC.
    pub fn peer_addr(&self) -> Result<String> {
        self.host_port(&self.peer_listen)
    }

    /// `http` while plain HTTP is on, else `https`: the scheme of the URLs this node
    /// hands out by default.
    fn scheme(&self) -> &'static str {
        if self.tls.plain_http {
            "http"
        } else {
            "https"
        }
    }

    pub fn api_url(&self) -> Result<String> {
        Ok(format!(
            "{}://{}",
            self.scheme(),
            self.host_port(&self.api_listen)?
        ))
    }

    /// The API's URL over HTTPS, whatever `plain_http` says.
    pub fn https_api_url(&self) -> Result<String> {
        Ok(format!("https://{}", self.host_port(&self.api_listen)?))
    }

    pub fn router_url(&self) -> Result<String> {
        Ok(format!(
            "{}://{}",
            self.scheme(),
            self.host_port(&self.router_listen)?
        ))
    }

    /// The names and addresses the node's own certificate covers: the advertised host,
    /// the node's name, the listen addresses when specific, and loopback.
    pub fn certificate_names(&self) -> Vec<String> {
        let mut names = vec![self.advertise_host.clone(), self.name.clone()];
        for listen in [&self.api_listen, &self.router_listen] {
            if let Ok(addr) = listen.parse::<std::net::SocketAddr>() {
                if !addr.ip().is_unspecified() {
                    names.push(addr.ip().to_string());
                }
            }
        }
        names.extend(["localhost".into(), "127.0.0.1".into(), "::1".into()]);
        let mut seen = std::collections::BTreeSet::new();
        names.retain(|n| !n.is_empty() && seen.insert(n.clone()));
        names
    }

    /// Checks the addresses parse.
    pub fn validate(&self) -> Result<()> {
        for (what, addr) in [
            ("api", &self.api_listen),
            ("peer", &self.peer_listen),
            ("router", &self.router_listen),
        ] {
            addr.parse::<std::net::SocketAddr>().with_context(|| {
                format!(
                    "{what} listen address {addr:?} is invalid; use IP:PORT such as 0.0.0.0:7400"
                )
            })?;
        }
        if self.advertise_host.is_empty() {
            bail!("advertise host is empty; pass --advertise-host with an address other nodes can reach");
        }
        self.raft.settings()?;
        Ok(())
    }
}

/// Paths inside a data dir.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    pub fn new(root: &Path) -> DataDir {
        DataDir {
            root: root.to_path_buf(),
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join("havend.toml")
    }
    pub fn bootstrap_path(&self) -> PathBuf {
        self.root.join("bootstrap.json")
    }
    pub fn raft_dir(&self) -> PathBuf {
        self.root.join("raft")
    }
    /// Compressed slugs this node holds, by sha256.
    pub fn slugs_dir(&self) -> PathBuf {
        self.root.join("slugs")
    }
    /// Uploaded build sources, by id.
    pub fn sources_dir(&self) -> PathBuf {
        self.root.join("sources")
    }
    /// Working dirs and output of builds, by id.
    pub fn builds_dir(&self) -> PathBuf {
        self.root.join("builds")
    }
    /// Build caches, by app id.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }
    /// Unpacked stack images, by sha256.
    pub fn stacks_dir(&self) -> PathBuf {
        self.root.join("stacks")
    }
    /// Extracted slugs, by sha256.
    pub fn slug_cache_dir(&self) -> PathBuf {
        self.root.join("slug-cache")
    }
    /// Per-dyno runtime dirs.
    pub fn dynos_dir(&self) -> PathBuf {
        self.root.join("dynos")
    }
    /// Add-on members' data dirs, by member id.
    pub fn addons_data_dir(&self) -> PathBuf {
        self.root.join("addons").join("data")
    }
    /// The process records of add-on servers (the add-ons' runtime state dir).
    pub fn addons_run_dir(&self) -> PathBuf {
        self.root.join("addons").join("run")
    }
    /// Bare git repositories, by app id.
    pub fn repos_dir(&self) -> PathBuf {
        self.root.join("repos")
    }

    /// Whether `init` or `join` already ran here.
    pub fn is_set_up(&self) -> bool {
        self.config_path().exists()
    }

    /// Creates the directory (mode 0700) for `init`/`join`, refusing one already set up or
    /// holding anything else (a failed join removes the directory again).
    pub fn create(&self) -> Result<()> {
        if self.is_set_up() {
            bail!(
                "{} already holds a havend node; start it with `havend run --data-dir {}` or choose another --data-dir",
                self.root.display(),
                self.root.display()
            );
        }
        if fs::read_dir(&self.root).is_ok_and(|mut entries| entries.next().is_some()) {
            bail!(
                "{} exists and is not empty; choose a new or empty --data-dir",
                self.root.display()
            );
        }
        fs::create_dir_all(&self.root)
            .with_context(|| format!("create data dir {}", self.root.display()))?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))?;
        Ok(())
    }

    pub fn load_config(&self) -> Result<NodeConfig> {
        let path = self.config_path();
        let text = fs::read_to_string(&path).with_context(|| {
            format!(
                "read {}; is {} a havend data dir? create one with `havend init` or `havend join`",
                path.display(),
                self.root.display()
            )
        })?;
        let cfg: NodeConfig =
            toml::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn save_config(&self, cfg: &NodeConfig) -> Result<()> {
        write_private(&self.config_path(), toml::to_string_pretty(cfg)?.as_bytes())
    }

    pub fn save_certs(&self, ca: &CertKey, node: &CertKey) -> Result<()> {
        write_private(&self.root.join("ca.pem"), ca.cert_pem.as_bytes())?;
        write_private(&self.root.join("ca-key.pem"), ca.key_pem.as_bytes())?;
        write_private(&self.root.join("node.pem"), node.cert_pem.as_bytes())?;
        write_private(&self.root.join("node-key.pem"), node.key_pem.as_bytes())?;
        Ok(())
    }

    /// The certificate chain (PEM, leaf then CA) and key the API and router serve: the
    /// operator's files when the config names them, else `api.pem`/`api-key.pem`, issued
    /// from the cluster CA for the node's names when missing.
    pub fn server_cert(&self, cfg: &NodeConfig, ca: &CertKey) -> Result<CertKey> {
        match (&cfg.tls.cert_file, &cfg.tls.key_file) {
            (Some(c), Some(k)) => {
                let read = |p: &Path| {
                    fs::read_to_string(p).with_context(|| format!("read {}", p.display()))
                };
                return Ok(CertKey {
                    cert_pem: read(c)?,
                    key_pem: read(k)?,
                });
            }
            (None, None) => {}
            _ => bail!("[tls] needs both cert_file and key_file, or neither"),
        }
        let (cert, key) = (self.root.join("api.pem"), self.root.join("api-key.pem"));
        if cert.exists() && key.exists() {
            return Ok(CertKey {
                cert_pem: fs::read_to_string(&cert)
                    .with_context(|| format!("read {}", cert.display()))?,
                key_pem: fs::read_to_string(&key)
                    .with_context(|| format!("read {}", key.display()))?,
            });
        }
        let issued = crate::tls::issue_server_cert(ca, &cfg.certificate_names())?;
        let chain = CertKey {
            cert_pem: format!("{}{}", issued.cert_pem, ca.cert_pem),
            key_pem: issued.key_pem,
        };
        write_private(&key, chain.key_pem.as_bytes())?;
        write_private(&cert, chain.cert_pem.as_bytes())?;
        Ok(chain)
    }

    /// Returns (CA, node) certificates and keys.
    pub fn load_certs(&self) -> Result<(CertKey, CertKey)> {
        let read = |name: &str| {
            let p = self.root.join(name);
            fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))
        };
        Ok((
            CertKey {
                cert_pem: read("ca.pem")?,
                key_pem: read("ca-key.pem")?,
            },
            CertKey {
                cert_pem: read("node.pem")?,
                key_pem: read("node-key.pem")?,
            },
        ))
    }
}

/// Writes a file readable only by its owner, atomically (temp file + rename + fsync).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("write {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
    Ok(())
}

/// Memory of this host in MiB, from /proc/meminfo.
pub fn host_memory_mb() -> u64 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

/// CPUs available to this process.
pub fn host_cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> NodeConfig {
        NodeConfig {
            node_id: 1,
            name: "n1".into(),
            cluster_id: "c".into(),
            api_listen: "0.0.0.0:7400".into(),
            peer_listen: "0.0.0.0:7401".into(),
            router_listen: "0.0.0.0:7480".into(),
            advertise_host: "10.77.0.11".into(),
            join_peer: None,
            raft: RaftTuning::default(),
            builds: BuildTuning::default(),
            dynos: DynoTuning::default(),
            router: RouterTuning::default(),
            tls: TlsSettings::default(),
        }
    }

    #[test]
    fn advertised_addresses() {
        let c = cfg();
        assert_eq!(c.peer_addr().unwrap(), "10.77.0.11:7401");
        assert_eq!(c.api_url().unwrap(), "http://10.77.0.11:7400");
        assert_eq!(c.router_url().unwrap(), "http://10.77.0.11:7480");
        let mut v6 = cfg();
        v6.advertise_host = "::1".into();
        assert_eq!(v6.peer_addr().unwrap(), "[::1]:7401");
    }

    #[test]
    fn validation_names_the_problem() {
        let mut c = cfg();
        c.api_listen = "nonsense".into();
        let err = format!("{:#}", c.validate().unwrap_err());
        assert!(err.contains("api listen address"), "{err}");
        let mut c = cfg();
        c.raft.election_timeout_min_ms = 10;
        assert!(c.validate().is_err());
    }

    #[test]
    fn releases_in_memory_reaches_the_raft_settings() {
        let t: RaftTuning = toml::from_str("releases_in_memory = 3").unwrap();
        assert_eq!(t.settings().unwrap().releases_in_memory, 3);
        assert_eq!(
            RaftTuning::default().settings().unwrap().releases_in_memory,
            10
        );
        let zero: RaftTuning = toml::from_str("releases_in_memory = 0").unwrap();
        assert_eq!(zero.settings().unwrap().releases_in_memory, 1);
    }

    #[test]
    fn config_roundtrip_and_private_files() {
        let dir = tempfile::tempdir().unwrap();
        let dd = DataDir::new(&dir.path().join("node"));
        dd.create().unwrap();
        dd.save_config(&cfg()).unwrap();
        assert_eq!(dd.load_config().unwrap().name, "n1");
        let mode = fs::metadata(dd.config_path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(dd.create().is_err(), "a set-up dir is refused");
        let other = DataDir::new(dir.path());
        assert!(other.create().is_err(), "a non-empty dir is refused");
    }
}
