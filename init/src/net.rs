//! The init's half of a dyno's network: after `unshare(CLONE_NEWNET)` and before the
//! fork, a veth pair from the node's bridge into the new namespace, one address (a /32,
//! the bridge's address as its gateway), `lo` up, nothing else. The host end is created
//! through a netlink socket opened in the host's namespace beforehand ([`HostSide`]).
//! The pair goes away by itself when the dyno's namespace does (its last process
//! exited), so there is nothing to clean up. The agent makes the bridge
//! (`agent/src/runtime/net.rs`).

use std::io;

use crate::netlink::{link_index, Netlink};
use crate::spec::DynoNet;

/// The host's end, opened by the init while still in the host's network namespace.
pub struct HostSide {
    nl: Netlink,
    bridge: u32,
}

impl HostSide {
    pub fn open(net: &DynoNet) -> io::Result<HostSide> {
        HostSide::open_bridge(&net.bridge)
    }

    /// The host side for a dyno on bridge `bridge`.
    pub fn open_bridge(bridge: &str) -> io::Result<HostSide> {
        let index = link_index(bridge)
            .ok_or_else(|| io::Error::other(format!("the bridge {bridge} does not exist")))?;
        Ok(HostSide {
            nl: Netlink::open()?,
            bridge: index,
        })
    }
}

/// IPv6 off in the calling process's (new) network namespace: called by the init right
/// after the unshare, before it forks PID 1 (which then changes the mount namespace's
/// root, and with it this process's `/proc`).
pub fn disable_ipv6() {
    for f in ["all", "default"] {
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{f}/disable_ipv6"), "1");
    }
}

/// Called by the init once it is in its new network namespace (and after
/// [`disable_ipv6`]): the veth pair (host end on the bridge, `eth0` here), the address,
/// the routes, `lo`. Uses no path, so it may run while PID 1 changes the root.
pub fn join(net: &DynoNet, host: HostSide) -> io::Result<()> {
    add_veth(&net.veth, host)?;
    configure(net)
}

/// The veth pair: `veth` on the bridge in the host's namespace, `eth0` (down, no
/// address yet) in the calling process's.
pub fn add_veth(veth: &str, mut host: HostSide) -> io::Result<()> {
    let me = std::process::id() as i32;
    match host.nl.add_veth(veth, "eth0", me, host.bridge) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            // Left by a dyno whose namespace the kernel has not torn down yet.
            let _ = host.nl.del_link(veth);
            host.nl.add_veth(veth, "eth0", me, host.bridge)
        }
        other => other,
    }
    .map_err(|e| io::Error::new(e.kind(), format!("create the veth pair {veth}: {e}")))
}

/// Inside the dyno's namespace, `eth0` already there: `lo` and `eth0` up, the dyno's
/// address, the route to the gateway and the default route through it.
pub fn configure(net: &DynoNet) -> io::Result<()> {
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

/// `haven-init --probe-net`: can this host give a dyno its own network namespace? Exit 0
/// if `unshare(CLONE_NEWNET)` and netlink inside work.
pub fn probe_net() -> i32 {
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
