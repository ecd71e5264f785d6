//! `DIR/cluster.json`: everything needed to operate a running cluster from another
//! process (the `testcluster` CLI, a test that reopens it with `TestCluster::load`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Where nodes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Netns when root with iproute2, else loopback.
    Auto,
    /// One network namespace per node on a bridge: nodes are separate hosts.
    Netns,
    /// All nodes on 127.0.0.1 with distinct ports; no partitions.
    Loopback,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Auto => "auto",
            Mode::Netns => "netns",
            Mode::Loopback => "loopback",
        })
    }
}

/// One node as `cluster.json` records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Raft node id (a u64 as a string, as the API renders it); empty until known.
    pub id: String,
    /// Node name given to `havend init/join --name`.
    pub name: String,
    /// API base URL reachable from the host, e.g. `http://10.77.0.10:7400`.
    pub api: String,
    /// Peer (QUIC) address `host:port`.
    pub peer: String,
    /// Router base URL reachable from the host.
    pub router: String,
    /// Pid of the node's `havend`, which leads its own process group; 0 before start.
    pub pid: i32,
    /// The node's network namespace in netns mode.
    pub netns: Option<String>,
    /// The node's `--data-dir`.
    pub data_dir: PathBuf,
    /// Where the node's stdout and stderr go.
    pub log: PathBuf,
}

/// The contents of `DIR/cluster.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterFile {
    /// Admin API token printed by `havend init`.
    pub token: String,
    /// Join token printed by `havend init`.
    pub join_token: String,
    /// Netns or loopback (never auto).
    pub mode: Mode,
    /// Bridge index K in netns mode (bridge `hvbrK`, addresses `10.77.K.0/24`).
    pub bridge: Option<u8>,
    /// The `havend` binary the nodes run (restarts use it too).
    pub havend: PathBuf,
    /// Extra environment given to every `havend` (restarts get it too).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Indexes of nodes currently cut off by `partition`.
    #[serde(default)]
    pub partitioned: Vec<usize>,
    /// The nodes, in index order.
    pub nodes: Vec<NodeInfo>,
}

impl ClusterFile {
    /// Path of the cluster file in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("cluster.json")
    }

    /// Reads `dir/cluster.json`.
    pub fn read(dir: &Path) -> Result<ClusterFile> {
        let path = Self::path(dir);
        let text = fs::read_to_string(&path).with_context(|| {
            format!(
                "read {}; start a cluster there with `testcluster up --dir {}`",
                path.display(),
                dir.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "parse {}; remove the directory and start again",
                path.display()
            )
        })
    }

    /// Writes `dir/cluster.json` atomically (a reader never sees half a file).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = Self::path(dir);
        let tmp = dir.join(".cluster.json.tmp");
        fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("write {}", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("write {}", path.display()))
    }
}

/// Reads the `node_id` of `havend init --json` output: a JSON number (or a string).
pub(crate) fn parse_init_output(stdout: &[u8]) -> Result<(String, String, String)> {
    let text = String::from_utf8_lossy(stdout);
    // The JSON is one line; anything before it would be a stray print, not ours to parse.
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(line)
        .with_context(|| format!("parse `havend init --json` output {:?}", text.trim()))?;
    let node_id = match &v["node_id"] {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.clone(),
        _ => anyhow::bail!("`havend init --json` printed no node_id: {line}"),
    };
    let field = |k: &str| {
        v[k].as_str()
            .map(str::to_string)
            .with_context(|| format!("`havend init --json` printed no {k}: {line}"))
    };
    Ok((node_id, field("admin_token")?, field("join_token")?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    fn sample() -> ClusterFile {
        ClusterFile {
            token: "hvn_t".into(),
            join_token: "HVNJ1.j".into(),
            mode: Mode::Netns,
            bridge: Some(3),
            havend: "/bin/havend".into(),
            env: BTreeMap::from([("HAVEN_LOG".to_string(), "debug".to_string())]),
            partitioned: vec![1],
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
        }
    }

    #[test]
    fn cluster_file_round_trips_through_disk() {
        let dir = std::env::temp_dir().join(format!("tc-file-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let f = sample();
        f.write(&dir).unwrap();
        let text = fs::read_to_string(ClusterFile::path(&dir)).unwrap();
        assert!(text.contains("\"mode\": \"netns\""), "{text}");
        assert_eq!(ClusterFile::read(&dir).unwrap(), f);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn older_files_without_env_or_partitions_load() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v.as_object_mut().unwrap().remove("env");
        v.as_object_mut().unwrap().remove("partitioned");
        let f: ClusterFile = serde_json::from_value(v).unwrap();
        assert!(f.env.is_empty() && f.partitioned.is_empty());
    }

    #[test]
    fn missing_file_says_how_to_start_one() {
        let err = ClusterFile::read(Path::new("/nonexistent/tc")).unwrap_err();
        assert!(format!("{err:#}").contains("testcluster up --dir /nonexistent/tc"));
    }

    #[test]
    fn init_output_parses() {
        let ok = br#"{"node_id": 123, "admin_token": "hvn_a", "join_token": "HVNJ1.b"}"#;
        assert_eq!(
            parse_init_output(ok).unwrap(),
            ("123".into(), "hvn_a".into(), "HVNJ1.b".into())
        );
        let stringly =
            b"note\n{\"node_id\": \"9\", \"admin_token\": \"a\", \"join_token\": \"b\"}\n";
        assert_eq!(parse_init_output(stringly).unwrap().0, "9");
        assert!(parse_init_output(br#"{"node_id": 1, "admin_token": "a"}"#).is_err());
        assert!(parse_init_output(b"").is_err());
        assert!(parse_init_output(br#"{"admin_token": "a", "join_token": "b"}"#).is_err());
    }
}
