//! The node's firewall as one nftables table, `inet haven`, rendered from what the node
//! runs and what the replicated state says (pure, so it is unit-tested; the manager loads
//! it with `nft -f`, which replaces the table in one transaction).
//!
//! What a packet from a dyno (in through the bridge) may do:
//! - answer a connection made to it (the router's, the boot check's): `ct state
//!   established,related`;
//! - reach an add-on endpoint (member `host:port`) of an add-on attached to its own app,
//!   on this node or another: the `allow` set of (dyno address, endpoint address, port);
//! - reach the routers (every node's router address and port), as the outside world
//!   reaches apps;
//! - reach the outside world (masqueraded to the node's address);
//! - nothing else: no address of this node (its API and peer ports, add-on
//!   servers of other apps, `127.0.0.1` is the dyno's own), no other dyno (directly or
//!   through the node's address and a web port), no other node's address.
//!
//! Web dynos are reached by this node's router at their own address, and by the other
//! nodes' routers at this node's address and the dyno's `$PORT`, which the `web` map
//! forwards (DNAT) to the dyno.
//!
//! A dyno cannot take another's address: it has no `CAP_NET_ADMIN`/`CAP_NET_RAW` in its
//! namespace, so its packets carry its own source address.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::Ipv4Addr;

use haven_raft::model::State;
use uuid::Uuid;

use super::addrs::Subnet;

/// The table's name (family `inet`).
pub const TABLE: &str = "haven";

/// What the table is made from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Input {
    /// Every node's address: not reachable from dynos.
    pub nodes: BTreeSet<Ipv4Addr>,
    /// Every node's router (address, port): reachable from every dyno.
    pub routers: BTreeSet<(Ipv4Addr, u16)>,
    /// (dyno address, endpoint address, port) a dyno may connect to.
    pub allow: BTreeSet<(Ipv4Addr, Ipv4Addr, u16)>,
    /// Web port on this node's addresses → the dyno listening on it.
    pub web: BTreeMap<u16, Ipv4Addr>,
}

/// The add-on endpoints app `app` may reach: every member of every add-on attached to
/// it (the primary moves at a failover), as IPv4 address and port.
pub fn endpoints(s: &State, app: Uuid) -> Vec<(Ipv4Addr, u16)> {
    let mut out: Vec<(Ipv4Addr, u16)> = s
        .attachments
        .values()
        .filter(|t| t.app == app)
        .filter_map(|t| s.addons.get(&t.addon))
        .flat_map(|a| a.members.iter())
        .filter_map(|m| Some((m.host.parse().ok()?, m.port)))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The IPv4 addresses the state names for nodes (peer, API and router addresses).
pub fn node_addresses(s: &State) -> BTreeSet<Ipv4Addr> {
    s.nodes
        .values()
        .flat_map(|n| [&n.peer_addr, &n.api_url, &n.router_url])
        .filter_map(|a| host_of(a)?.parse().ok())
        .collect()
}

/// Every node's router, as IPv4 address and port.
pub fn routers(s: &State) -> BTreeSet<(Ipv4Addr, u16)> {
    s.nodes
        .values()
        .filter_map(|n| {
            let (host, port) = host_port(&n.router_url)?;
            Some((host.parse().ok()?, port.parse().ok()?))
        })
        .collect()
}

/// The host of `host:port` or `scheme://host:port/...`.
fn host_of(addr: &str) -> Option<&str> {
    host_port(addr).map(|(h, _)| h)
}

fn host_port(addr: &str) -> Option<(&str, &str)> {
    let rest = addr.split_once("://").map_or(addr, |(_, r)| r);
    let hostport = rest.split('/').next()?;
    hostport.rsplit_once(':')
}

/// The whole ruleset file: the table is created if missing, deleted and made again in
/// the same transaction.
pub fn render(bridge: &str, subnet: &Subnet, input: &Input) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "table inet {TABLE} {{}}");
    let _ = writeln!(t, "delete table inet {TABLE}");
    let _ = writeln!(t, "table inet {TABLE} {{");
    set(
        &mut t,
        "nodes",
        "ipv4_addr",
        input.nodes.iter().map(|a| a.to_string()),
    );
    set(
        &mut t,
        "allow",
        "ipv4_addr . ipv4_addr . inet_service",
        input
            .allow
            .iter()
            .map(|(d, a, p)| format!("{d} . {a} . {p}")),
    );
    set(
        &mut t,
        "routers",
        "ipv4_addr . inet_service",
        input.routers.iter().map(|(a, p)| format!("{a} . {p}")),
    );
    let _ = writeln!(t, "  map web {{\n    type inet_service : ipv4_addr");
    elements(&mut t, input.web.iter().map(|(p, a)| format!("{p} : {a}")));
    let _ = writeln!(t, "  }}");
    let _ = write!(
        t,
        r#"  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    fib daddr type local dnat ip to tcp dport map @web
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {subnet} oifname != "{bridge}" masquerade
  }}
  chain input {{
    type filter hook input priority filter; policy accept;
    iifname "{bridge}" jump dyno_in
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname "{bridge}" jump dyno_out
    oifname "{bridge}" ct state established,related accept
    oifname "{bridge}" ct status dnat accept
    oifname "{bridge}" drop
  }}
  chain dyno_in {{
    ct state established,related accept
    ip saddr . ip daddr . tcp dport @allow accept
    ip daddr . tcp dport @routers accept
    reject with icmpx type admin-prohibited
  }}
  chain dyno_out {{
    ct state established,related accept
    ip saddr . ip daddr . tcp dport @allow accept
    ip daddr . tcp dport @routers accept
    ip saddr != {subnet} drop
    oifname "{bridge}" reject with icmpx type admin-prohibited
    ip daddr @nodes reject with icmpx type admin-prohibited
    meta nfproto ipv6 drop
    accept
  }}
}}
"#
    );
    t
}

fn set(t: &mut String, name: &str, ty: &str, items: impl Iterator<Item = String>) {
    let _ = writeln!(t, "  set {name} {{\n    type {ty}");
    elements(t, items);
    let _ = writeln!(t, "  }}");
}

fn elements(t: &mut String, items: impl Iterator<Item = String>) {
    let items: Vec<String> = items.collect();
    if !items.is_empty() {
        let _ = writeln!(t, "    elements = {{ {} }}", items.join(", "));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_read_from_peer_and_api_addresses() {
        assert_eq!(host_of("10.77.0.10:7401"), Some("10.77.0.10"));
        assert_eq!(host_of("http://10.77.0.10:7400"), Some("10.77.0.10"));
        assert_eq!(host_of("https://node-a:7400/x"), Some("node-a"));
        assert_eq!(host_of("nohost"), None);
    }

    #[test]
    fn the_table_holds_the_nodes_the_endpoints_and_the_web_ports() {
        let subnet: Subnet = "10.213.0.0/16".parse().unwrap();
        let d = Ipv4Addr::new(10, 213, 0, 2);
        let node = Ipv4Addr::new(10, 77, 0, 11);
        let input = Input {
            nodes: [node, Ipv4Addr::new(10, 77, 0, 10)].into(),
            routers: [(node, 7480)].into(),
            allow: [(d, node, 5432)].into(),
            web: [(30001, d)].into(),
        };
        let t = render("haven0", &subnet, &input);
        assert!(
            t.starts_with("table inet haven {}\ndelete table inet haven\n"),
            "{t}"
        );
        assert!(t.contains("elements = { 10.77.0.10, 10.77.0.11 }"), "{t}");
        assert!(
            t.contains("elements = { 10.213.0.2 . 10.77.0.11 . 5432 }"),
            "{t}"
        );
        assert!(t.contains("elements = { 30001 : 10.213.0.2 }"), "{t}");
        assert!(t.contains("elements = { 10.77.0.11 . 7480 }"), "{t}");
        assert!(t.contains(r#"ip saddr 10.213.0.0/16 oifname != "haven0" masquerade"#));
        // The endpoint check comes before anything that refuses.
        let allow = t.find("@allow accept").unwrap();
        assert!(allow < t.find("ip daddr @nodes reject").unwrap());
        // Empty sets have no elements line (nft refuses `{ }`).
        let empty = render("haven0", &subnet, &Input::default());
        assert!(!empty.contains("elements"), "{empty}");
    }
}
