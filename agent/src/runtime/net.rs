//! A dyno's own network namespace: a veth pair from the node's bridge into it, one
//! address (a /32, the bridge's address as its gateway), nothing else. What a dyno may
//! reach through the bridge is the firewall's business ([`crate::network`]); this file
//! only plumbs.
//!
//! The agent makes the bridge ([`setup_bridge`]); the init (`haven-init`, crate
//! `init/`) does the rest after `unshare(CLONE_NEWNET)` and before it forks, with a
//! netlink socket it opened in the host namespace beforehand.

use std::io;
use std::net::Ipv4Addr;
use std::process::Stdio;

use haven_init::netlink::Netlink;
pub use haven_init::DynoNet;

use super::InitExe;

/// Creates the bridge (unless it exists) with `gateway/prefix`, up, and turns on IPv4
/// forwarding. Idempotent.
pub fn setup_bridge(bridge: &str, gateway: Ipv4Addr, prefix: u8) -> io::Result<()> {
    let mut nl = Netlink::open()?;
    let index = nl.ensure_bridge(bridge)?;
    nl.add_addr(index, gateway, prefix)?;
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
}

/// Runs the init's `--probe-net` (a fresh, single-threaded process): can this host give
/// a dyno its own network namespace?
pub fn probe(init: &InitExe) -> Result<(), String> {
    let out = init
        .command(&["--probe-net"])
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run {} --probe-net: {e}", init.display()))?;
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
