//! Dyno network isolation (issue 15 item 3): every container dyno and build gets a
//! network namespace of its own with an address from this node's subnet, behind the
//! node's bridge and the `inet haven` nftables table (see [`rules`] for what a dyno may
//! reach).
//!
//! The manager hands out addresses ([`addrs`]), tells the runtime to plumb them
//! ([`crate::runtime::DynoNet`]), and keeps the table in step with what runs here and
//! with the replicated state (nodes, add-ons, attachments): a dyno of an app with add-ons
//! gets its rules before its process starts, a web dyno its DNAT entry before it is
//! registered with the routers; anything else (attachments changing, dynos gone) is
//! applied by the loop within moments. Each change loads the whole table with
//! `nft -f`, in one transaction.
//!
//! Off (dynos on the host's network) with `[dynos] network = "host"`, in Process mode,
//! and, with a warning, where the bridge, the table or a trial namespace cannot be made.

mod addrs;
pub mod rules;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use haven_raft::HavenRaft;
use tokio::io::AsyncWriteExt;
use tokio::sync::{watch, Notify};
use tracing::{info, warn};
use uuid::Uuid;

use crate::config::{DynoTuning, NetworkMode};
use crate::runtime::{DynoNet, Mode, Runtime};
use addrs::{Allocator, Subnet};

/// The node's bridge.
pub const BRIDGE: &str = "haven0";

/// One dyno (or build) with an address here.
#[derive(Debug, Clone)]
struct Entry {
    address: Ipv4Addr,
    /// Its app (`None`: a build, which reaches no add-on).
    app: Option<Uuid>,
    /// A web dyno's `$PORT`, once it is exposed to the other nodes' routers.
    web_port: Option<u16>,
}

struct On {
    subnet: Subnet,
    nft: String,
    model: Mutex<(Allocator, HashMap<String, Entry>)>,
    /// The ruleset loaded last (`None`: unknown, load the next one whatever it is);
    /// held while `nft` runs, so loads never interleave.
    applied: tokio::sync::Mutex<Option<String>>,
    dirty: Notify,
}

struct Inner {
    raft: HavenRaft,
    on: Option<On>,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct Network {
    inner: Arc<Inner>,
}

impl Network {
    /// Dynos on the host's network.
    pub fn host(raft: HavenRaft) -> Network {
        Network {
            inner: Arc::new(Inner { raft, on: None }),
        }
    }

    /// Sets the node up for isolated dynos if `tuning` asks for it and the host allows:
    /// the bridge, forwarding, the table; keeps the addresses of the dynos a previous
    /// agent left running. Otherwise one line says why dynos share the host's network.
    pub async fn start(tuning: &DynoTuning, runtime: &Runtime, raft: HavenRaft) -> Network {
        if tuning.network == NetworkMode::Host {
            info!("dynos share the host's network ([dynos] network = \"host\")");
            return Network::host(raft);
        }
        if runtime.mode() != Mode::Container {
            warn!("dyno network isolation needs container dynos; dynos share the host's network");
            return Network::host(raft);
        }
        match setup(tuning, runtime, &raft).await {
            Ok(on) => {
                info!(subnet = %on.subnet, bridge = BRIDGE, "dynos have network namespaces of their own");
                Network {
                    inner: Arc::new(Inner { raft, on: Some(on) }),
                }
            }
            Err(why) => {
                warn!(reason = %why, "dyno network isolation is unavailable on this host; dynos share the host's network");
                Network::host(raft)
            }
        }
    }

    /// An address for dyno (or build) `id` of `app`, and the rules of its app's add-ons
    /// loaded before this returns (a dyno may connect to its database at once). `None`:
    /// the host's network.
    pub async fn attach(&self, id: &str, app: Option<Uuid>) -> Result<Option<DynoNet>, String> {
        let Some(on) = &self.inner.on else {
            return Ok(None);
        };
        let address = {
            let mut m = lock(&on.model);
            if let Some(e) = m.1.get(id) {
                e.address
            } else {
                let a = m.0.allocate().ok_or_else(|| {
                    format!("no free address left in the dyno subnet {}", on.subnet)
                })?;
                m.1.insert(
                    id.to_string(),
                    Entry {
                        address: a,
                        app,
                        web_port: None,
                    },
                );
                a
            }
        };
        let has_addons = app.is_some_and(|app| {
            self.inner
                .raft
                .with_state(|s| !rules::endpoints(s, app).is_empty())
        });
        if has_addons {
            self.apply().await?;
        }
        Ok(Some(DynoNet {
            address,
            gateway: on.subnet.gateway(),
            bridge: BRIDGE.to_string(),
            veth: on.subnet.veth_name(address),
        }))
    }

    /// The address of dyno `id` (one this agent attached, or a previous agent's that it
    /// adopts), setting its app; `None` on the host's network.
    pub fn adopt(&self, id: &str, app: Uuid) -> Option<Ipv4Addr> {
        let on = self.inner.on.as_ref()?;
        let mut m = lock(&on.model);
        let e = m.1.get_mut(id)?;
        e.app = Some(app);
        let a = e.address;
        drop(m);
        on.dirty.notify_one();
        Some(a)
    }

    /// Makes web dyno `id` reachable from the other nodes at this node's address and
    /// `port` (loaded before this returns). Returns the address this node's own router
    /// dials it at (`None`: the host's network, `127.0.0.1`).
    pub async fn expose(&self, id: &str, port: u16) -> Result<Option<Ipv4Addr>, String> {
        let Some(on) = &self.inner.on else {
            return Ok(None);
        };
        let address = {
            let mut m = lock(&on.model);
            let Some(e) = m.1.get_mut(id) else {
                return Ok(None);
            };
            e.web_port = Some(port);
            e.address
        };
        self.apply().await?;
        Ok(Some(address))
    }

    /// Dyno (or build) `id` is gone: its address is free, its rules go (soon).
    pub fn release(&self, id: &str) {
        let Some(on) = &self.inner.on else {
            return;
        };
        let mut m = lock(&on.model);
        if let Some(e) = m.1.remove(id) {
            m.0.free(e.address);
            drop(m);
            on.dirty.notify_one();
        }
    }

    /// Keeps the table in step: after releases and adoptions, and whenever the
    /// replicated state changes (at most every 100 ms), until shutdown.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let Some(on) = &self.inner.on else {
            return;
        };
        let mut changes = self.inner.raft.changes();
        let mut ticker = tokio::time::interval(Duration::from_secs(2));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = changes.next() => {}
                _ = on.dirty.notified() => {}
                _ = shutdown.changed() => return,
            }
            let began = tokio::time::Instant::now();
            if let Err(e) = self.apply().await {
                warn!(error = %e, "cannot update the dyno firewall");
            }
            tokio::time::sleep_until(began + Duration::from_millis(100)).await;
        }
    }

    /// Loads the table as it should be now, unless it is loaded already.
    async fn apply(&self) -> Result<(), String> {
        let Some(on) = &self.inner.on else {
            return Ok(());
        };
        let mut applied = on.applied.lock().await;
        let text = render(on, &self.inner.raft);
        if applied.as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        *applied = None;
        load(&on.nft, &text).await?;
        *applied = Some(text);
        Ok(())
    }
}

/// The table for what runs here now.
fn render(on: &On, raft: &HavenRaft) -> String {
    let entries: Vec<Entry> = lock(&on.model).1.values().cloned().collect();
    let input = raft.with_state(|s| {
        let mut input = rules::Input {
            nodes: rules::node_addresses(s),
            routers: rules::routers(s),
            ..Default::default()
        };
        for e in &entries {
            if let Some(app) = e.app {
                for (a, p) in rules::endpoints(s, app) {
                    input.allow.insert((e.address, a, p));
                }
            }
            if let Some(p) = e.web_port {
                input.web.insert(p, e.address);
            }
        }
        input
    });
    rules::render(BRIDGE, &on.subnet, &input)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `nft` binary (Debian's `nftables` package).
fn find_nft() -> Option<String> {
    ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| p.to_string())
}

async fn setup(tuning: &DynoTuning, runtime: &Runtime, raft: &HavenRaft) -> Result<On, String> {
    let subnet: Subnet = tuning
        .subnet
        .parse()
        .map_err(|e| format!("[dynos] subnet: {e}"))?;
    let nft = find_nft().ok_or("no nft binary (install Debian's nftables package)")?;
    runtime.probe_network()?;
    crate::runtime::setup_bridge(BRIDGE, subnet.gateway(), subnet.prefix())
        .map_err(|e| format!("set up the bridge {BRIDGE}: {e}"))?;
    let mut alloc = Allocator::new(subnet);
    let mut dynos = HashMap::new();
    for (id, address) in runtime.recorded_addresses() {
        if !alloc.claim(address) {
            continue;
        }
        let (app, web_port) = raft.with_state(|s| {
            let d = uuid::Uuid::parse_str(&id)
                .ok()
                .and_then(|u| s.dynos.get(&u));
            (d.map(|d| d.app), d.and_then(|d| d.port))
        });
        dynos.insert(
            id,
            Entry {
                address,
                app,
                web_port,
            },
        );
    }
    let on = On {
        subnet,
        nft,
        model: Mutex::new((alloc, dynos)),
        applied: tokio::sync::Mutex::new(None),
        dirty: Notify::new(),
    };
    // Loaded now, so that a host where nft fails falls back before any dyno starts.
    let text = render(&on, raft);
    load(&on.nft, &text).await?;
    *on.applied.lock().await = Some(text);
    Ok(on)
}

async fn load(nft: &str, text: &str) -> Result<(), String> {
    let mut child = tokio::process::Command::new(nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("run {nft}: {e}"))?;
    if let Some(mut w) = child.stdin.take() {
        w.write_all(text.as_bytes())
            .await
            .map_err(|e| format!("write to nft: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("run {nft}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft -f failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
