//! Network-namespace hosts: a bridge per cluster, a namespace and veth per node, and
//! partitions made of blackhole routes (no iptables needed).
//!
//! Cluster `K` owns bridge `hvbrK` (host side `10.77.K.1/24`); its node `I` lives in
//! namespace `hvK-nI` with `eth0` at `10.77.K.(10+I)/24`, linked to the bridge by the veth
//! `hvK-vI`. Everything here shells out to iproute2 so that the names above are all the
//! state there is: `gc` can find and remove leftovers of a crashed run by name alone.

use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Highest node index a bridge holds: addresses run from `.10` to `.254`.
pub const MAX_NODES: usize = 245;

/// Runs `ip ARGS...`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<()> {
    ip_output(args).map(|_| ())
}

/// Runs `ip ARGS...` and returns its stdout, failing with its stderr.
fn ip_output(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("run ip (install iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ip ARGS...` inside namespace `ns`.
pub fn ip_in(ns: &str, args: &[&str]) -> Result<()> {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    ip(&full)
}

/// A command that runs `program` inside namespace `ns` (`ip netns exec` execs it in
/// place, so the child's pid is the program's own).
pub fn exec_in(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(program);
    c
}

/// Whether this process can make namespaces (root with iproute2).
pub fn available() -> bool {
    nix::unistd::Uid::effective().is_root()
        && Command::new("ip")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
}

/// Bridge of cluster `k`.
pub fn bridge_name(k: u8) -> String {
    format!("hvbr{k}")
}

/// Namespace of node `i` of cluster `k`.
pub fn ns_name(k: u8, i: usize) -> String {
    format!("hv{k}-n{i}")
}

fn veth_name(k: u8, i: usize) -> String {
    format!("hv{k}-v{i}")
}

/// The host's address on bridge `k`.
pub fn host_addr(k: u8) -> String {
    format!("10.77.{k}.1")
}

/// Node `i`'s address on bridge `k`.
pub fn node_addr(k: u8, i: usize) -> String {
    format!("10.77.{k}.{}", 10 + i)
}

/// Whether `name` is a bridge this module makes (`hvbr` and digits).
pub fn is_our_bridge(name: &str) -> bool {
    name.strip_prefix("hvbr")
        .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `name` is a namespace (`hvK-nI`) or veth (`hvK-vI`) this module makes.
pub fn is_our_node_link(name: &str, kind: char) -> bool {
    let Some(rest) = name.strip_prefix("hv") else {
        return false;
    };
    let Some((k, i)) = rest.split_once('-') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(k) && i.strip_prefix(kind).is_some_and(digits)
}

/// Creates a bridge with the first free index; `ip link add` fails when the name is taken,
/// so concurrent test processes never share one.
pub fn create_bridge() -> Result<u8> {
    for k in 0..250u8 {
        let br = bridge_name(k);
        if ip(&["link", "add", &br, "type", "bridge"]).is_err() {
            continue;
        }
        let setup = ip(&["addr", "add", &format!("{}/24", host_addr(k)), "dev", &br])
            .and_then(|_| ip(&["link", "set", &br, "up"]));
        if let Err(e) = setup {
            let _ = ip(&["link", "del", &br]);
            return Err(e);
        }
        return Ok(k);
    }
    bail!("no free bridge index in hvbr0 to hvbr249; run `testcluster gc` to remove leftovers")
}

/// Creates node `i`'s namespace on bridge `k` and returns its name.
pub fn create_host(k: u8, i: usize) -> Result<String> {
    if i >= MAX_NODES {
        bail!("a netns cluster holds at most {MAX_NODES} nodes");
    }
    let ns = ns_name(k, i);
    let veth = veth_name(k, i);
    // We own bridge k, so a namespace or veth of that name is a leftover of a crashed run
    // or of a cluster that held index k a moment ago and is still being torn down.
    remove_host(&ns);
    let _ = ip(&["link", "del", &veth]);
    ip(&["netns", "add", &ns])?;
    ip(&[
        "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
    ])?;
    ip(&["link", "set", &veth, "master", &bridge_name(k)])?;
    ip(&["link", "set", &veth, "up"])?;
    ip_in(
        &ns,
        &[
            "addr",
            "add",
            &format!("{}/24", node_addr(k, i)),
            "dev",
            "eth0",
        ],
    )?;
    ip_in(&ns, &["link", "set", "eth0", "up"])?;
    ip_in(&ns, &["link", "set", "lo", "up"])?;
    ip_in(&ns, &["route", "add", "default", "via", &host_addr(k)])?;
    Ok(ns)
}

/// Adds (or with `add == false` removes) a blackhole route to `addr` in `ns`; adding one
/// that exists or removing one that does not is fine, so partition and heal are idempotent.
fn blackhole(ns: &str, addr: &str, add: bool) -> Result<()> {
    let target = format!("{addr}/32");
    let verb = if add { "add" } else { "del" };
    match ip_in(ns, &["route", verb, "blackhole", &target]) {
        Ok(()) => Ok(()),
        Err(e) => {
            let msg = e.to_string();
            let benign = if add {
                "File exists"
            } else {
                "No such process"
            };
            if msg.contains(benign) {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}

/// Cuts node `i` off from the other `n - 1` nodes (both ways); the host still reaches it
/// because only the nodes' /32 addresses are blackholed, not the bridge's.
pub fn partition(k: u8, i: usize, n: usize) -> Result<()> {
    for j in (0..n).filter(|j| *j != i) {
        blackhole(&ns_name(k, i), &node_addr(k, j), true)?;
        blackhole(&ns_name(k, j), &node_addr(k, i), true)?;
    }
    Ok(())
}

/// Cuts the nodes of `group` off from every node outside it (both ways); members still
/// reach each other.
pub fn partition_group(k: u8, group: &[usize], n: usize) -> Result<()> {
    for i in group {
        for j in (0..n).filter(|j| !group.contains(j)) {
            blackhole(&ns_name(k, *i), &node_addr(k, j), true)?;
            blackhole(&ns_name(k, j), &node_addr(k, *i), true)?;
        }
    }
    Ok(())
}

/// Drops what node `from` sends to node `to`; `to` still reaches `from`, though replies
/// are lost. Undone by [`heal`] of either node.
pub fn cut_one_way(k: u8, from: usize, to: usize) -> Result<()> {
    blackhole(&ns_name(k, from), &node_addr(k, to), true)
}

/// Removes the routes of [`partition`].
pub fn heal(k: u8, i: usize, n: usize) -> Result<()> {
    for j in (0..n).filter(|j| *j != i) {
        blackhole(&ns_name(k, i), &node_addr(k, j), false)?;
        blackhole(&ns_name(k, j), &node_addr(k, i), false)?;
    }
    Ok(())
}

/// SIGKILLs every process in namespace `ns`: a namespace with processes in it outlives
/// `ip netns del` together with its veth, so they must go first.
fn kill_all_in(ns: &str) {
    if let Ok(out) = ip_output(&["netns", "pids", ns]) {
        for pid in out.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Kills what runs in `ns` and deletes it (its `eth0` and so the veth go with it).
///
/// Deletion can fail for a moment after the kill: a process that has not finished dying,
/// or a dyno's fresh mount namespace, still holds the namespace's bind mount. It is
/// retried until the namespace is gone (at most 5 s).
fn remove_host(ns: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        kill_all_in(ns);
        let _ = ip(&["netns", "del", ns]);
        let gone = list_namespaces().map_or(true, |names| !names.iter().any(|n| n == ns));
        if gone || std::time::Instant::now() > deadline {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Removes bridge `k` and the namespaces of its `n` nodes, killing anything left in them.
pub fn destroy(k: u8, n: usize) {
    for i in 0..n {
        remove_host(&ns_name(k, i));
        // Normally gone with the namespace; a leftover would keep the index busy.
        let _ = ip(&["link", "del", &veth_name(k, i)]);
    }
    let _ = ip(&["link", "del", &bridge_name(k)]);
}

/// Names of all namespaces (`ip netns list` prints `NAME (id: N)`).
pub fn list_namespaces() -> Result<Vec<String>> {
    Ok(ip_output(&["netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect())
}

/// Names of all links in the host namespace (`ip -br link` prints `NAME@PEER STATE ...`).
pub fn list_links() -> Result<Vec<String>> {
    Ok(ip_output(&["-br", "link"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect())
}

/// Removes every `hv*-n*` namespace (killing its processes), stray `hv*-v*` veth and
/// `hvbr*` bridge: leftovers of crashed runs. Returns how many it removed.
///
/// It does not know which clusters are still in use: run it only when no cluster runs.
pub fn gc() -> Result<usize> {
    let mut removed = 0;
    for ns in list_namespaces()? {
        if is_our_node_link(&ns, 'n') {
            kill_all_in(&ns);
            if ip(&["netns", "del", &ns]).is_ok() {
                removed += 1;
            }
        }
    }
    for link in list_links()? {
        if (is_our_bridge(&link) || is_our_node_link(&link, 'v'))
            && ip(&["link", "del", &link]).is_ok()
        {
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn names_fit_linux_interface_limits() {
        // IFNAMSIZ is 16 with the NUL.
        assert!(bridge_name(249).len() <= 15);
        assert!(veth_name(249, MAX_NODES - 1).len() <= 15);
        assert_eq!(node_addr(3, 2), "10.77.3.12");
        assert_eq!(node_addr(3, MAX_NODES - 1), "10.77.3.254");
        assert_eq!(host_addr(7), "10.77.7.1");
    }

    #[test]
    fn gc_recognizes_only_its_own_names() {
        for (name, bridge, ns, veth) in [
            ("hvbr0", true, false, false),
            ("hvbr249", true, false, false),
            ("hvbr", false, false, false),
            ("hvbrx", false, false, false),
            ("hv3-n0", false, true, false),
            ("hv12-n7", false, true, false),
            ("hv3-v0", false, false, true),
            ("hv-n0", false, false, false),
            ("hv3-n", false, false, false),
            ("hv3-nx", false, false, false),
            ("eth0", false, false, false),
            ("hvx-n1", false, false, false),
        ] {
            assert_eq!(is_our_bridge(name), bridge, "{name}");
            assert_eq!(is_our_node_link(name, 'n'), ns, "{name}");
            assert_eq!(is_our_node_link(name, 'v'), veth, "{name}");
        }
    }
}
