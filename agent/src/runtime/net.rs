//! A dyno's own network namespace: a veth pair from the node's bridge into it, one
//! address (a /32, the bridge's address as its gateway), nothing else. What a dyno may
//! reach through the bridge is the firewall's business ([`crate::network`]); this file
//! only plumbs.
//!
//! The agent makes the bridge ([`setup_bridge`]); `dyno-init` does the rest in
//! [`join`], after `unshare(CLONE_NEWNET)` and before it forks, with a netlink socket it
//! opened in the host namespace beforehand ([`HostSide`]). The pair goes away by itself
//! when the dyno's namespace does (its last process exited), so there is nothing to clean
//! up.

use std::io;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;

use serde::{Deserialize, Serialize};

use super::netlink::{link_index, Netlink};

/// What the runtime needs to give a dyno its network: chosen by the agent's network
/// manager, which also knows what the address may reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynoNet {
    /// The dyno's address (a /32 on its `eth0`).
    pub address: Ipv4Addr,
    /// The bridge's address: the dyno's default route.
    pub gateway: Ipv4Addr,
    /// The node's bridge (`haven0`).
    pub bridge: String,
    /// The host end of the veth pair (unique on the node, ≤ 15 bytes).
    pub veth: String,
}

/// Creates the bridge (unless it exists) with `gateway/prefix`, up, and turns on IPv4
/// forwarding. Idempotent.
pub fn setup_bridge(bridge: &str, gateway: Ipv4Addr, prefix: u8) -> io::Result<()> {
    let mut nl = Netlink::open()?;
    let index = nl.ensure_bridge(bridge)?;
    nl.add_addr(index, gateway, prefix)?;
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
}

/// The host's end, opened by `dyno-init` while still in the host's network namespace.
pub struct HostSide {
    nl: Netlink,
    bridge: u32,
}

impl HostSide {
    pub fn open(net: &DynoNet) -> io::Result<HostSide> {
        let bridge = link_index(&net.bridge)
            .ok_or_else(|| io::Error::other(format!("the bridge {} does not exist", net.bridge)))?;
        Ok(HostSide {
            nl: Netlink::open()?,
            bridge,
        })
    }
}

/// Called by `dyno-init` once it is in its new network namespace: the veth pair (host
/// end on the bridge, `eth0` here), the address, the routes, `lo`. IPv6 is off inside.
pub fn join(net: &DynoNet, mut host: HostSide) -> io::Result<()> {
    for f in ["all", "default"] {
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{f}/disable_ipv6"), "1");
    }
    let me = std::process::id() as i32;
    match host.nl.add_veth(&net.veth, "eth0", me, host.bridge) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            // Left by a dyno whose namespace the kernel has not torn down yet.
            let _ = host.nl.del_link(&net.veth);
            host.nl.add_veth(&net.veth, "eth0", me, host.bridge)
        }
        other => other,
    }
    .map_err(|e| io::Error::new(e.kind(), format!("create the veth pair {}: {e}", net.veth)))?;
    let mut nl = Netlink::open()?;
    if let Some(lo) = link_index("lo") {
        nl.set_up(lo)?;
    }
    let eth0 = link_index("eth0").ok_or_else(|| io::Error::other("no eth0 in the dyno"))?;
    nl.add_addr(eth0, net.address, 32)?;
    nl.set_up(eth0)?;
    nl.add_route(Some((net.gateway, 32)), None, eth0)?;
    nl.add_route(None, Some(net.gateway), eth0)?;
    Ok(())
}

/// `havend dyno-init --probe-net`: can this host give a dyno its own network namespace?
/// Exit 0 if `unshare(CLONE_NEWNET)` and netlink inside work.
pub fn probe_child() -> i32 {
    let r: io::Result<()> = (|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
        let mut nl = Netlink::open()?;
        let lo = link_index("lo").ok_or_else(|| io::Error::other("no lo"))?;
        nl.set_up(lo)
    })();
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// Runs [`probe_child`] through `init_exe` (a fresh, single-threaded process).
pub fn probe(init_exe: &Path) -> Result<(), String> {
    let out = std::process::Command::new(init_exe)
        .args(["dyno-init", "--probe-net"])
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run {} dyno-init --probe-net: {e}", init_exe.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "network namespace probe failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
