//! The node's dyno subnet and the addresses handed out from it (pure).
//!
//! The first address of the subnet is the bridge's (every dyno's gateway); dynos get the
//! others round-robin, so an address is reused as late as possible (the kernel tears a
//! dead dyno's namespace down asynchronously).

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 subnet such as `10.213.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    base: u32,
    prefix: u8,
}

impl FromStr for Subnet {
    type Err = String;
    fn from_str(s: &str) -> Result<Subnet, String> {
        let bad = || format!("{s:?} is not an IPv4 subnet such as 10.213.0.0/16");
        let (addr, prefix) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(8..=28).contains(&prefix) {
            return Err(format!("{s:?}: the prefix length must be between 8 and 28"));
        }
        let mask = u32::MAX << (32 - prefix);
        let base = u32::from(addr);
        if base & !mask != 0 {
            return Err(format!("{s:?} has host bits set"));
        }
        Ok(Subnet { base, prefix })
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

impl Subnet {
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The bridge's address: the subnet's first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    /// Addresses dynos may have: every host address but the gateway's and broadcast.
    fn span(&self) -> u32 {
        (1u32 << (32 - self.prefix)) - 3
    }

    /// The `n`th dyno address (`n < span`).
    fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 2 + n)
    }

    pub fn contains(&self, a: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(a) & mask == self.base
    }

    /// The host end of the veth of the dyno at `a`: `hd` and the address's offset in
    /// the subnet in hex (≤ 15 bytes, Linux's limit, for any prefix ≥ 8).
    pub fn veth_name(&self, a: Ipv4Addr) -> String {
        format!("hd{:x}", u32::from(a).wrapping_sub(self.base))
    }
}

/// Hands out dyno addresses round-robin, skipping those in use.
#[derive(Debug)]
pub struct Allocator {
    subnet: Subnet,
    next: u32,
    used: HashSet<Ipv4Addr>,
}

impl Allocator {
    pub fn new(subnet: Subnet) -> Allocator {
        Allocator {
            subnet,
            next: 0,
            used: HashSet::new(),
        }
    }

    /// A free address, or `None` when the subnet is full.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let span = self.subnet.span();
        for i in 0..span {
            let a = self.subnet.nth((self.next + i) % span);
            if self.used.insert(a) {
                self.next = (self.next + i + 1) % span;
                return Some(a);
            }
        }
        None
    }

    /// Marks `a` used (a dyno a previous agent started); false if it is not ours to give.
    pub fn claim(&mut self, a: Ipv4Addr) -> bool {
        let ours = self.subnet.contains(a) && a != self.subnet.gateway();
        ours && self.used.insert(a)
    }

    pub fn free(&mut self, a: Ipv4Addr) {
        self.used.remove(&a);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_refuse_what_is_not_one() {
        let s: Subnet = "10.213.0.0/16".parse().unwrap();
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 213, 0, 1));
        assert_eq!(s.to_string(), "10.213.0.0/16");
        assert!(s.contains(Ipv4Addr::new(10, 213, 255, 9)));
        assert!(!s.contains(Ipv4Addr::new(10, 214, 0, 9)));
        for bad in [
            "10.213.0.1/16",
            "10.213.0.0",
            "x/16",
            "10.0.0.0/30",
            "10.0.0.0/4",
            "10.0.0.0/x",
        ] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_go_round_robin_skip_the_used_and_run_out() {
        let s: Subnet = "192.168.7.0/28".parse().unwrap();
        let mut a = Allocator::new(s);
        assert!(a.claim(Ipv4Addr::new(192, 168, 7, 3)));
        assert!(!a.claim(Ipv4Addr::new(192, 168, 7, 3)), "claimed twice");
        assert!(!a.claim(Ipv4Addr::new(192, 168, 7, 1)), "the gateway");
        assert!(!a.claim(Ipv4Addr::new(10, 0, 0, 3)), "another subnet");
        let first = a.allocate().unwrap();
        assert_eq!(first, Ipv4Addr::new(192, 168, 7, 2));
        assert_eq!(a.allocate().unwrap(), Ipv4Addr::new(192, 168, 7, 4));
        a.free(first);
        // A freed address comes back only after the others.
        let rest: Vec<Ipv4Addr> = std::iter::from_fn(|| a.allocate()).collect();
        assert_eq!(rest.len(), 11);
        assert_eq!(rest.last(), Some(&first));
        assert!(!rest.contains(&Ipv4Addr::new(192, 168, 7, 15)), "broadcast");
        assert_eq!(a.allocate(), None);
    }

    #[test]
    fn veth_names_fit_in_ifnamsiz() {
        let s: Subnet = "10.0.0.0/8".parse().unwrap();
        assert_eq!(s.veth_name(Ipv4Addr::new(10, 0, 0, 2)), "hd2");
        assert!(s.veth_name(Ipv4Addr::new(10, 255, 255, 254)).len() <= 15);
    }
}
