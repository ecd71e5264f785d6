//! Network-namespace hosts: a bridge per cluster, a namespace and veth per node, and
//! partitions made of blackhole routes (no iptables needed).

use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Runs `ip ARGS...`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<()> {
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
    Ok(())
}

/// Runs `ip ARGS...` inside namespace `ns`.
pub fn ip_in(ns: &str, args: &[&str]) -> Result<()> {
    let mut full = vec!["netns", "exec", ns, "ip"];
    full.extend_from_slice(args);
    ip(&full)
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

pub fn bridge_name(k: u8) -> String {
    format!("hvbr{k}")
}
pub fn ns_name(k: u8, i: usize) -> String {
    format!("hv{k}-n{i}")
}
fn veth_name(k: u8, i: usize) -> String {
    format!("hv{k}-v{i}")
}
pub fn host_addr(k: u8) -> String {
    format!("10.77.{k}.1")
}
pub fn node_addr(k: u8, i: usize) -> String {
    format!("10.77.{k}.{}", 10 + i)
}

/// Creates a bridge with the first free index; `ip link add` fails when the name is taken,
/// so concurrent test processes never share one.
pub fn create_bridge() -> Result<u8> {
    for k in 0..250u8 {
        if ip(&["link", "add", &bridge_name(k), "type", "bridge"]).is_ok() {
            let br = bridge_name(k);
            ip(&["addr", "add", &format!("{}/24", host_addr(k)), "dev", &br])?;
            ip(&["link", "set", &br, "up"])?;
            return Ok(k);
        }
    }
    bail!("no free bridge index: run `testcluster gc` to remove leftovers")
}

/// Creates node `i`'s namespace on bridge `k`.
pub fn create_host(k: u8, i: usize) -> Result<String> {
    let ns = ns_name(k, i);
    let veth = veth_name(k, i);
    let _ = ip(&["netns", "del", &ns]);
    ip(&["netns", "add", &ns])?;
    ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
    ip(&["link", "set", &veth, "master", &bridge_name(k)])?;
    ip(&["link", "set", &veth, "up"])?;
    ip_in(&ns, &["addr", "add", &format!("{}/24", node_addr(k, i)), "dev", "eth0"])?;
    ip_in(&ns, &["link", "set", "eth0", "up"])?;
    ip_in(&ns, &["link", "set", "lo", "up"])?;
    ip_in(&ns, &["route", "add", "default", "via", &host_addr(k)])?;
    Ok(ns)
}

/// Cuts node `i` off from the other `n - 1` nodes (both ways); the host still reaches it.
pub fn partition(k: u8, i: usize, n: usize) -> Result<()> {
    for j in (0..n).filter(|j| *j != i) {
        let _ = ip_in(&ns_name(k, i), &["route", "add", "blackhole", &format!("{}/32", node_addr(k, j))]);
        let _ = ip_in(&ns_name(k, j), &["route", "add", "blackhole", &format!("{}/32", node_addr(k, i))]);
    }
    Ok(())
}

/// Removes the routes of [`partition`].
pub fn heal(k: u8, i: usize, n: usize) -> Result<()> {
    for j in (0..n).filter(|j| *j != i) {
        let _ = ip_in(&ns_name(k, i), &["route", "del", "blackhole", &format!("{}/32", node_addr(k, j))]);
        let _ = ip_in(&ns_name(k, j), &["route", "del", "blackhole", &format!("{}/32", node_addr(k, i))]);
    }
    Ok(())
}

/// Removes bridge `k` and namespaces of its `n` nodes (their veths go with them).
pub fn destroy(k: u8, n: usize) {
    for i in 0..n {
        let _ = ip(&["netns", "del", &ns_name(k, i)]);
    }
    let _ = ip(&["link", "del", &bridge_name(k)]);
}

/// Removes every `hvbr*` bridge and `hv*-n*` namespace: leftovers of crashed runs.
pub fn gc() -> Result<usize> {
    let mut removed = 0;
    let out = Command::new("ip").args(["netns", "list"]).output()?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if name.starts_with("hv") && name.contains("-n") && ip(&["netns", "del", name]).is_ok() {
            removed += 1;
        }
    }
    let out = Command::new("ip").args(["-br", "link"]).output()?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("").split('@').next().unwrap_or("");
        if name.starts_with("hvbr") && ip(&["link", "del", name]).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_linux_interface_limits() {
        assert!(bridge_name(249).len() <= 15);
        assert!(veth_name(249, 99).len() <= 15);
        assert_eq!(node_addr(3, 2), "10.77.3.12");
    }
}
