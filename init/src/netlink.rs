//! A minimal, synchronous rtnetlink client: the few requests a dyno's network needs
//! (a bridge, a veth pair with one end in another namespace, links up, an address, two
//! routes), each acknowledged before the next. No dependency beyond `libc`: the messages
//! are a handful of fixed headers and attributes, built and unit-tested here. It is used
//! by the agent (the bridge) and by the init (single-threaded, before its fork), so
//! it runs no threads and needs no async runtime.
//!
//! A netlink socket belongs to the network namespace that was current when it was
//! opened: the init opens one before `unshare(CLONE_NEWNET)` for the host side and
//! one after it for the dyno's side.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NLMSG_ERROR: u16 = 2;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_PID: u16 = 19;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;

const IFF_UP: u32 = 0x1;
const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_STATIC: u8 = 4;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;

/// Appends a netlink attribute (length, type, value, padding to 4 bytes).
fn attr(buf: &mut Vec<u8>, ty: u16, value: &[u8]) {
    let len = 4 + value.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(value);
    pad(buf);
}

fn pad(buf: &mut Vec<u8>) {
    while buf.len() % 4 != 0 {
        buf.push(0);
    }
}

/// A NUL-terminated string attribute.
fn attr_str(buf: &mut Vec<u8>, ty: u16, s: &str) {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    attr(buf, ty, &v);
}

/// A nested attribute: `f` appends the inner attributes.
fn nested(buf: &mut Vec<u8>, ty: u16, f: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    f(buf);
    let len = (buf.len() - start) as u16;
    buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    buf[start + 2..start + 4].copy_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
    pad(buf);
}

/// `struct ifinfomsg`.
fn ifinfomsg(buf: &mut Vec<u8>, index: i32, flags: u32, change: u32) {
    buf.push(AF_UNSPEC);
    buf.push(0);
    buf.extend_from_slice(&0u16.to_ne_bytes());
    buf.extend_from_slice(&index.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&change.to_ne_bytes());
}

/// The body of RTM_NEWLINK creating a veth pair: `name` here, `peer` in the network
/// namespace of process `peer_pid`; `name` is up and, with `master`, a port of it.
pub(crate) fn veth_body(name: &str, peer: &str, peer_pid: i32, master: Option<u32>) -> Vec<u8> {
    let mut b = Vec::new();
    ifinfomsg(&mut b, 0, IFF_UP, IFF_UP);
    attr_str(&mut b, IFLA_IFNAME, name);
    if let Some(m) = master {
        attr(&mut b, IFLA_MASTER, &m.to_ne_bytes());
    }
    nested(&mut b, IFLA_LINKINFO, |b| {
        attr_str(b, IFLA_INFO_KIND, "veth");
        nested(b, IFLA_INFO_DATA, |b| {
            nested(b, VETH_INFO_PEER, |b| {
                ifinfomsg(b, 0, 0, 0);
                attr_str(b, IFLA_IFNAME, peer);
                attr(b, IFLA_NET_NS_PID, &(peer_pid as u32).to_ne_bytes());
            });
        });
    });
    b
}

/// The body of RTM_NEWLINK creating bridge `name`, up.
pub(crate) fn bridge_body(name: &str) -> Vec<u8> {
    let mut b = Vec::new();
    ifinfomsg(&mut b, 0, IFF_UP, IFF_UP);
    attr_str(&mut b, IFLA_IFNAME, name);
    nested(&mut b, IFLA_LINKINFO, |b| {
        attr_str(b, IFLA_INFO_KIND, "bridge")
    });
    b
}

/// The body of RTM_NEWADDR: `addr/prefix` on link `index`.
pub(crate) fn addr_body(index: u32, addr: Ipv4Addr, prefix: u8) -> Vec<u8> {
    let mut b = vec![AF_INET, prefix, 0, RT_SCOPE_UNIVERSE];
    b.extend_from_slice(&index.to_ne_bytes());
    attr(&mut b, IFA_LOCAL, &addr.octets());
    attr(&mut b, IFA_ADDRESS, &addr.octets());
    b
}

/// The body of RTM_NEWROUTE: `dst` (`None`: the default route) out of link `oif`,
/// through `gateway` or else directly on the link.
pub(crate) fn route_body(
    dst: Option<(Ipv4Addr, u8)>,
    gateway: Option<Ipv4Addr>,
    oif: u32,
) -> Vec<u8> {
    let scope = if gateway.is_some() {
        RT_SCOPE_UNIVERSE
    } else {
        RT_SCOPE_LINK
    };
    let dst_len = dst.map_or(0, |(_, l)| l);
    let mut b = vec![
        AF_INET,
        dst_len,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_STATIC,
        scope,
        RTN_UNICAST,
    ];
    b.extend_from_slice(&0u32.to_ne_bytes());
    if let Some((d, _)) = dst {
        attr(&mut b, RTA_DST, &d.octets());
    }
    if let Some(g) = gateway {
        attr(&mut b, RTA_GATEWAY, &g.octets());
    }
    attr(&mut b, RTA_OIF, &oif.to_ne_bytes());
    b
}

/// The errno of an NLMSG_ERROR answer to request `seq` (0: an acknowledgement), or
/// `None` if `msg` holds no such answer.
pub(crate) fn ack_of(msg: &[u8], seq: u32) -> Option<i32> {
    let mut off = 0;
    while off + 16 <= msg.len() {
        let len = u32::from_ne_bytes(msg[off..off + 4].try_into().ok()?) as usize;
        let ty = u16::from_ne_bytes(msg[off + 4..off + 6].try_into().ok()?);
        let s = u32::from_ne_bytes(msg[off + 8..off + 12].try_into().ok()?);
        if len < 16 || off + len > msg.len() {
            return None;
        }
        if ty == NLMSG_ERROR && s == seq && len >= 20 {
            let err = i32::from_ne_bytes(msg[off + 16..off + 20].try_into().ok()?);
            return Some(-err);
        }
        off += (len + 3) & !3;
    }
    None
}

/// The index of link `name` in the calling thread's network namespace.
pub fn link_index(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated string; if_nametoindex only reads it.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// An rtnetlink socket in the network namespace current when it was opened.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        // SAFETY: plain socket(2); the result is checked and then owned.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Netlink { fd, seq: 0 })
    }

    /// Sends one request and waits for its acknowledgement.
    fn request(&mut self, ty: u16, flags: u16, body: &[u8]) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut msg = Vec::with_capacity(16 + body.len());
        msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&ty.to_ne_bytes());
        msg.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        // SAFETY: the kernel's address (all zeros but the family) and our own buffer.
        let sent = unsafe {
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            sa.nl_family = libc::AF_NETLINK as u16;
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; 8192];
        loop {
            // SAFETY: reads into our own buffer of the given length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            match ack_of(&buf[..n as usize], seq) {
                Some(0) => return Ok(()),
                Some(errno) => return Err(io::Error::from_raw_os_error(errno)),
                None => continue,
            }
        }
    }

    /// Creates bridge `name` (up) unless it exists.
    pub fn ensure_bridge(&mut self, name: &str) -> io::Result<u32> {
        if let Some(i) = link_index(name) {
            self.set_up(i)?;
            return Ok(i);
        }
        match self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &bridge_body(name)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
        link_index(name).ok_or_else(|| io::Error::other(format!("bridge {name} vanished")))
    }

    /// A veth pair: `name` in this socket's namespace (up, a port of `master`), `peer`
    /// in the network namespace of process `peer_pid`.
    pub fn add_veth(
        &mut self,
        name: &str,
        peer: &str,
        peer_pid: i32,
        master: u32,
    ) -> io::Result<()> {
        let body = veth_body(name, peer, peer_pid, Some(master));
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &body)
    }

    /// Deletes link `name` of this socket's namespace.
    pub fn del_link(&mut self, name: &str) -> io::Result<()> {
        let mut b = Vec::new();
        ifinfomsg(&mut b, 0, 0, 0);
        attr_str(&mut b, IFLA_IFNAME, name);
        self.request(RTM_DELLINK, 0, &b)
    }

    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        let mut b = Vec::new();
        ifinfomsg(&mut b, index as i32, IFF_UP, IFF_UP);
        self.request(RTM_NEWLINK, 0, &b)
    }

    /// Adds (or keeps) `addr/prefix` on link `index`.
    pub fn add_addr(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        self.request(
            RTM_NEWADDR,
            NLM_F_CREATE | NLM_F_REPLACE,
            &addr_body(index, addr, prefix),
        )
    }

    /// Adds a route (see [`route_body`]).
    pub fn add_route(
        &mut self,
        dst: Option<(Ipv4Addr, u8)>,
        gateway: Option<Ipv4Addr>,
        oif: u32,
    ) -> io::Result<()> {
        self.request(
            RTM_NEWROUTE,
            NLM_F_CREATE | NLM_F_EXCL,
            &route_body(dst, gateway, oif),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// (type, payload) of each top-level attribute after a fixed header of `skip` bytes.
    fn attrs(b: &[u8], skip: usize) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        let mut off = skip;
        while off + 4 <= b.len() {
            let len = u16::from_ne_bytes([b[off], b[off + 1]]) as usize;
            let ty = u16::from_ne_bytes([b[off + 2], b[off + 3]]) & !NLA_F_NESTED;
            out.push((ty, b[off + 4..off + len].to_vec()));
            off += (len + 3) & !3;
        }
        out
    }

    #[test]
    fn a_veth_request_names_both_ends_and_puts_the_peer_in_the_namespace_of_a_pid() {
        let b = veth_body("hd-0005", "eth0", 4242, Some(7));
        assert_eq!(b.len() % 4, 0);
        // ifinfomsg: up, with IFF_UP in the change mask.
        assert_eq!(&b[8..12], &IFF_UP.to_ne_bytes());
        let top = attrs(&b, 16);
        assert_eq!(top[0], (IFLA_IFNAME, b"hd-0005\0".to_vec()));
        assert_eq!(top[1], (IFLA_MASTER, 7u32.to_ne_bytes().to_vec()));
        assert_eq!(top[2].0, IFLA_LINKINFO);
        let info = attrs(&top[2].1, 0);
        assert_eq!(info[0], (IFLA_INFO_KIND, b"veth\0".to_vec()));
        let data = attrs(&info[1].1, 0);
        assert_eq!(data[0].0, VETH_INFO_PEER);
        let peer = attrs(&data[0].1, 16);
        assert_eq!(peer[0], (IFLA_IFNAME, b"eth0\0".to_vec()));
        assert_eq!(peer[1], (IFLA_NET_NS_PID, 4242u32.to_ne_bytes().to_vec()));
    }

    #[test]
    fn address_and_route_requests_carry_their_fields() {
        let a = addr_body(3, Ipv4Addr::new(10, 213, 0, 5), 32);
        assert_eq!(&a[..4], &[AF_INET, 32, 0, RT_SCOPE_UNIVERSE]);
        assert_eq!(&a[4..8], &3u32.to_ne_bytes());
        assert_eq!(attrs(&a, 8)[0], (IFA_LOCAL, vec![10, 213, 0, 5]));
        let gw = Ipv4Addr::new(10, 213, 0, 1);
        let link = route_body(Some((gw, 32)), None, 3);
        assert_eq!(link[1], 32);
        assert_eq!(link[6], RT_SCOPE_LINK);
        assert_eq!(attrs(&link, 12)[0], (RTA_DST, vec![10, 213, 0, 1]));
        let default = route_body(None, Some(gw), 3);
        assert_eq!(default[1], 0);
        assert_eq!(default[6], RT_SCOPE_UNIVERSE);
        let at = attrs(&default, 12);
        assert_eq!(at[0], (RTA_GATEWAY, vec![10, 213, 0, 1]));
        assert_eq!(at[1], (RTA_OIF, 3u32.to_ne_bytes().to_vec()));
    }

    #[test]
    fn acks_are_found_by_sequence_number_and_errors_read_as_errno() {
        let msg = |seq: u32, err: i32| {
            let mut m = Vec::new();
            m.extend_from_slice(&36u32.to_ne_bytes());
            m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            m.extend_from_slice(&0u16.to_ne_bytes());
            m.extend_from_slice(&seq.to_ne_bytes());
            m.extend_from_slice(&0u32.to_ne_bytes());
            m.extend_from_slice(&err.to_ne_bytes());
            m.extend_from_slice(&[0; 16]);
            m
        };
        assert_eq!(ack_of(&msg(5, 0), 5), Some(0));
        assert_eq!(ack_of(&msg(5, -17), 5), Some(17));
        assert_eq!(ack_of(&msg(4, 0), 5), None);
        let mut two = msg(4, 0);
        two.extend(msg(5, -1));
        assert_eq!(ack_of(&two, 5), Some(1));
        assert_eq!(ack_of(&[1, 2, 3], 5), None);
        assert_eq!(ack_of(&[0; 40], 5), None);
    }
}
