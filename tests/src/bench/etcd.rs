//! A 3-member etcd cluster (Debian's `etcd-server`: `/usr/bin/etcd`) on loopback ports,
//! data dirs in a temp dir, fsync on (etcd's default): the peer of Haven's Raft writes.
//! Killed and removed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// How long the members may take to elect a leader.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Cluster {
    children: Vec<Child>,
    clients: Vec<String>,
    dir: tempfile::TempDir,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Cluster {
    pub fn start() -> Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("haven-bench-etcd-")
            .tempdir()?;
        let ports: Vec<(u16, u16)> = (0..3)
            .map(|_| Ok((free_port()?, free_port()?)))
            .collect::<Result<_>>()?;
        let initial = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            children: Vec::new(),
            clients: ports
                .iter()
                .map(|(client, _)| format!("http://127.0.0.1:{client}"))
                .collect(),
            dir,
        };
        for (i, (client, peer)) in ports.iter().enumerate() {
            let log = std::fs::File::create(c.dir.path().join(format!("e{i}.log")))?;
            let child = Command::new("etcd")
                .args(["--name", &format!("e{i}")])
                .arg("--data-dir")
                .arg(c.dir.path().join(format!("e{i}")))
                .args([
                    "--listen-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                    "--advertise-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                    "--listen-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                    "--initial-cluster",
                    &initial,
                    "--initial-cluster-state",
                    "new",
                    "--initial-cluster-token",
                    "haven-bench",
                    "--log-level",
                    "warn",
                ])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("start etcd (apt-get install etcd-server)")?;
            c.children.push(child);
        }
        let ok = haven_testcluster::wait_until(FORM_TIMEOUT, || c.leader().is_ok());
        if !ok {
            let log = std::fs::read_to_string(c.dir.path().join("e0.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            bail!(
                "etcd elected no leader in {FORM_TIMEOUT:?}; e0.log ends:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(c)
    }

    /// The client URL of member `i`.
    pub fn client_url(&self, i: usize) -> String {
        self.clients[i].clone()
    }

    fn status(&self, i: usize) -> Result<Value> {
        let r = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?
            .post(format!("{}/v3/maintenance/status", self.clients[i]))
            .json(&serde_json::json!({}))
            .send()?;
        Ok(r.json()?)
    }

    /// The index of the member that leads.
    pub fn leader(&self) -> Result<usize> {
        for i in 0..self.clients.len() {
            let s = self.status(i)?;
            let me = s["header"]["member_id"].as_str().unwrap_or("");
            let leader = s["leader"].as_str().unwrap_or("-");
            if !me.is_empty() && me == leader {
                return Ok(i);
            }
        }
        Err(anyhow!("no member leads yet"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
