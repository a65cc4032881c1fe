//! rtnetlink: host routes that cut a source off (blackhole, unreachable,
//! prohibit), added, deleted and listed through NETLINK_ROUTE
//! (netlink-packet-route over a synchronous netlink-sys socket), IPv4 and
//! IPv6, in the main table.
//!
//! Our routes carry their own protocol number (`RTPROT_NFTSENTRY`, shown by
//! `ip route` as `proto 110`): deletion names it, so the kernel only ever
//! removes a route that we added, and a listing asks the kernel for ours
//! alone (strict dump filtering) instead of the whole table.
//!
//! Knows nothing of bans, the config or of when a route is due.

use std::net::IpAddr;

use crate::cidr::Cidr;
use std::time::Duration;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::error::{Error, Kind, Result};
use crate::kernel::netlink::{self, NLMSG_DONE, NLMSG_ERROR};

/// The rtm_protocol of our routes. Unassigned in the kernel's list
/// (include/uapi/linux/rtnetlink.h) and iproute2's rt_protos.
pub const RTPROT_NFTSENTRY: u8 = 110;

const RTM_NEWROUTE: u16 = 24;
const RTA_DST: u16 = 1;
const RTA_TABLE: u16 = 15;
const RT_TABLE_MAIN: u8 = RouteHeader::RT_TABLE_MAIN;
/// struct rtmsg.
const RTMSG_LEN: usize = 12;
const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// What `add` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// The route was added now.
    New,
    /// Our route of that kind was there already (a restart, a repeat).
    Existing,
}

/// The kinds of route that drop what is sent to an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteKind {
    Blackhole,
    Unreachable,
    Prohibit,
}

impl RouteKind {
    /// As `ip route` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Blackhole => "blackhole",
            RouteKind::Unreachable => "unreachable",
            RouteKind::Prohibit => "prohibit",
        }
    }
}

/// `blackhole 192.0.2.2/32`, `blackhole 2001:db8::/64`, as `ip route`
/// writes it.
pub fn describe(kind: RouteKind, net: Cidr) -> String {
    format!("{} {}/{}", kind.as_str(), net.addr(), net.prefix())
}

fn route_type(kind: RouteKind) -> Option<RouteType> {
    match kind {
        RouteKind::Blackhole => Some(RouteType::BlackHole),
        RouteKind::Unreachable => Some(RouteType::Unreachable),
        RouteKind::Prohibit => Some(RouteType::Prohibit),
    }
}

fn kind_of(rtm_type: u8) -> Option<RouteKind> {
    // RTN_BLACKHOLE 6, RTN_UNREACHABLE 7, RTN_PROHIBIT 8.
    match rtm_type {
        6 => Some(RouteKind::Blackhole),
        7 => Some(RouteKind::Unreachable),
        8 => Some(RouteKind::Prohibit),
        _ => None,
    }
}

fn family(addr: &Cidr) -> AddressFamily {
    if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// A NETLINK_ROUTE socket for our route requests.
pub struct RouteSocket {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl RouteSocket {
    pub fn open() -> Result<RouteSocket> {
        let fail =
            |e: std::io::Error| Error::other(format!("cannot open a NETLINK_ROUTE socket: {e}"));
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(fail)?;
        socket.bind_auto().map_err(fail)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(fail)?;
        // Lets the kernel filter dumps by protocol and type (Linux 4.20+);
        // older kernels ignore the filter and `ours` filters again.
        let _ = socket.set_netlink_get_strict_chk(true);
        let timeout = nix::sys::time::TimeVal::new(RECV_TIMEOUT.as_secs() as _, 0);
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::ReceiveTimeout, &timeout)
            .map_err(|e| fail(e.into()))?;
        Ok(RouteSocket {
            socket,
            seq: 0,
            buf: Vec::with_capacity(16 * 1024),
        })
    }

    fn message(kind: RouteKind, net: Cidr, delete: bool) -> Option<RouteMessage> {
        let mut m = RouteMessage::default();
        m.header.address_family = family(&net);
        m.header.destination_prefix_length = net.prefix();
        m.header.table = RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Other(RTPROT_NFTSENTRY);
        // Deleting: scope "nowhere" matches any scope, as `ip route del` does.
        m.header.scope = if delete {
            RouteScope::NoWhere
        } else {
            RouteScope::Universe
        };
        m.header.kind = route_type(kind)?;
        m.attributes = vec![RouteAttribute::Destination(RouteAddress::from(net.addr()))];
        Some(m)
    }

    /// Adds our `kind` route to `addr`. A route there that is not ours (or
    /// is ours of another kind) is an error that says so.
    pub fn add(&mut self, kind: RouteKind, addr: Cidr) -> Result<Added> {
        let what = describe(kind, addr);
        let Some(m) = Self::message(kind, addr, false) else {
            return Err(Error::other(format!("route {what}: no route kind")));
        };
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        match self.request(RouteNetlinkMessage::NewRoute(m), flags) {
            Ok(()) => Ok(Added::New),
            Err(errno) if errno == nix::errno::Errno::EEXIST as i32 => {
                if self.ours(Some(kind))?.contains(&(kind, addr)) {
                    Ok(Added::Existing)
                } else {
                    Err(Error::other(format!(
                        "route {what}: a route to {addr} is already in the main table and nftsentry did not add it; left alone"
                    )))
                }
            }
            Err(errno) => Err(errno_error(&format!("adding route {what}"), errno)),
        }
    }

    /// Deletes our `kind` route to `addr`; Ok(false) if there is none.
    pub fn delete(&mut self, kind: RouteKind, addr: Cidr) -> Result<bool> {
        let what = describe(kind, addr);
        let Some(m) = Self::message(kind, addr, true) else {
            return Ok(false);
        };
        match self.request(RouteNetlinkMessage::DelRoute(m), NLM_F_REQUEST | NLM_F_ACK) {
            Ok(()) => Ok(true),
            Err(errno) if errno == nix::errno::Errno::ESRCH as i32 => Ok(false),
            Err(errno) => Err(errno_error(&format!("deleting route {what}"), errno)),
        }
    }

    /// Our host routes in the main table, IPv4 and IPv6, of `kind` or of
    /// any kind.
    pub fn ours(&mut self, kind: Option<RouteKind>) -> Result<Vec<(RouteKind, Cidr)>> {
        let mut out = Vec::new();
        for fam in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut m = RouteMessage::default();
            m.header.address_family = fam;
            m.header.table = RT_TABLE_MAIN;
            m.header.protocol = RouteProtocol::Other(RTPROT_NFTSENTRY);
            if let Some(t) = kind.and_then(route_type) {
                m.header.kind = t;
            }
            let list = self
                .dump(RouteNetlinkMessage::GetRoute(m))
                .map_err(|e| Error::other(format!("listing our routes: {e}")))?;
            out.extend(
                list.into_iter()
                    .filter(|(k, _)| kind.is_none_or(|want| want == *k)),
            );
        }
        Ok(out)
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> std::result::Result<u32, i32> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        nl.finalize();
        let mut out = vec![0; nl.buffer_len()];
        nl.serialize(&mut out);
        match self.socket.send(&out, 0) {
            Ok(_) => Ok(self.seq),
            Err(e) => Err(e.raw_os_error().unwrap_or(nix::libc::EIO)),
        }
    }

    /// Sends a request and waits for its acknowledgement: Ok, or the errno.
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> std::result::Result<(), i32> {
        let seq = self.send(msg, flags)?;
        loop {
            let len = self.recv()?;
            for m in netlink::messages(&self.buf[..len]) {
                let m = m.map_err(|_| nix::libc::EPROTO)?;
                if m.seq != seq || m.kind != NLMSG_ERROR {
                    continue;
                }
                let code = m.status().ok_or(nix::libc::EPROTO)?;
                return if code == 0 { Ok(()) } else { Err(-code) };
            }
        }
    }

    /// A dump of routes: (kind, destination) of each host route with our
    /// protocol number in the main table.
    fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
    ) -> std::result::Result<Vec<(RouteKind, Cidr)>, String> {
        let seq = self
            .send(msg, NLM_F_REQUEST | NLM_F_DUMP)
            .map_err(errno_text)?;
        let mut out = Vec::new();
        loop {
            let len = self.recv().map_err(errno_text)?;
            for m in netlink::messages(&self.buf[..len]) {
                let m = m?;
                if m.seq != seq {
                    continue;
                }
                match m.kind {
                    NLMSG_DONE => {
                        let code = m.status().unwrap_or(0);
                        return if code < 0 {
                            Err(errno_text(-code))
                        } else {
                            Ok(out)
                        };
                    }
                    NLMSG_ERROR => {
                        let code = m.status().ok_or("short error message")?;
                        if code != 0 {
                            return Err(errno_text(-code));
                        }
                    }
                    RTM_NEWROUTE => out.extend(parse_ours(m.payload)?),
                    _ => {}
                }
            }
        }
    }

    fn recv(&mut self) -> std::result::Result<usize, i32> {
        use nix::libc::{MSG_PEEK, MSG_TRUNC};
        loop {
            self.buf.clear();
            let size = match self.socket.recv(&mut self.buf, MSG_PEEK | MSG_TRUNC) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.raw_os_error().unwrap_or(nix::libc::EIO)),
            };
            if size > self.buf.capacity() {
                self.buf.reserve(size);
                continue;
            }
            self.buf.clear();
            match self.socket.recv(&mut self.buf, 0) {
                Ok(n) => return Ok(n.min(self.buf.len())),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.raw_os_error().unwrap_or(nix::libc::EIO)),
            }
        }
    }
}

/// One RTM_NEWROUTE payload: `Some` when it is a host route of ours in the
/// main table. Reads the header and two attributes only, so an exotic
/// route elsewhere cannot make the walk fail.
fn parse_ours(payload: &[u8]) -> std::result::Result<Option<(RouteKind, Cidr)>, String> {
    let h = payload
        .get(..RTMSG_LEN)
        .ok_or_else(|| format!("route message of {} bytes", payload.len()))?;
    let (fam, dst_len, table, proto, rtm_type) = (h[0], h[1], h[4], h[5], h[7]);
    if proto != RTPROT_NFTSENTRY {
        return Ok(None);
    }
    let Some(kind) = kind_of(rtm_type) else {
        return Ok(None);
    };
    let mut dst = None;
    let mut table = u32::from(table);
    for a in netlink::attrs(&payload[RTMSG_LEN..]) {
        let (t, v) = a?;
        match t {
            RTA_DST => dst = Some(v),
            RTA_TABLE if v.len() == 4 => table = u32::from_ne_bytes(v.try_into().unwrap()),
            _ => {}
        }
    }
    let addr = match (fam, dst) {
        (2, Some(v)) if v.len() == 4 => IpAddr::from(<[u8; 4]>::try_from(v).unwrap()),
        (10, Some(v)) if v.len() == 16 => IpAddr::from(<[u8; 16]>::try_from(v).unwrap()),
        _ => return Ok(None),
    };
    let Some(addr) = Cidr::new(addr, dst_len) else {
        return Ok(None);
    };
    if table != u32::from(RT_TABLE_MAIN) {
        return Ok(None);
    }
    Ok(Some((kind, addr)))
}

fn errno_text(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

fn errno_error(what: &str, errno: i32) -> Error {
    if errno == nix::libc::EPERM {
        return Error::new(
            Kind::Privilege,
            format!("{what}: {} (CAP_NET_ADMIN is needed)", errno_text(errno)),
        );
    }
    Error::from_errno(what, errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_as_ip_route_does() {
        assert_eq!(
            describe(RouteKind::Blackhole, "192.0.2.2".parse().unwrap()),
            "blackhole 192.0.2.2/32"
        );
        assert_eq!(
            describe(RouteKind::Prohibit, "2001:db8::2".parse().unwrap()),
            "prohibit 2001:db8::2/128"
        );
    }

    fn payload(fam: u8, len: u8, proto: u8, kind: u8, dst: &[u8]) -> Vec<u8> {
        let mut p = vec![fam, len, 0, 0, RT_TABLE_MAIN, proto, 0, kind, 0, 0, 0, 0];
        let alen = 4 + dst.len();
        p.extend_from_slice(&(alen as u16).to_ne_bytes());
        p.extend_from_slice(&RTA_DST.to_ne_bytes());
        p.extend_from_slice(dst);
        while p.len() % 4 != 0 {
            p.push(0);
        }
        p
    }

    #[test]
    fn parses_only_our_host_routes() {
        let ours = payload(2, 32, RTPROT_NFTSENTRY, 6, &[192, 0, 2, 2]);
        assert_eq!(
            parse_ours(&ours).unwrap(),
            Some((RouteKind::Blackhole, "192.0.2.2".parse().unwrap()))
        );
        let mut v6 = [0u8; 16];
        v6[0] = 0x20;
        v6[1] = 0x01;
        let p = payload(10, 128, RTPROT_NFTSENTRY, 8, &v6);
        assert_eq!(
            parse_ours(&p).unwrap(),
            Some((RouteKind::Prohibit, "2001::".parse().unwrap()))
        );
        // Someone else's, not a host route, not a reject type.
        assert_eq!(
            parse_ours(&payload(2, 32, 4, 6, &[1, 2, 3, 4])).unwrap(),
            None
        );
        assert_eq!(
            parse_ours(&payload(2, 24, RTPROT_NFTSENTRY, 6, &[1, 2, 3])).unwrap(),
            None
        );
        assert_eq!(
            parse_ours(&payload(2, 32, RTPROT_NFTSENTRY, 1, &[1, 2, 3, 4])).unwrap(),
            None
        );
        // Garbage is an error, never a panic.
        assert!(parse_ours(&[2, 32]).is_err());
        let mut bad = ours.clone();
        bad[12] = 200;
        assert!(parse_ours(&bad).is_err());
        for end in 0..ours.len() {
            let _ = parse_ours(&ours[..end]);
        }
    }
}
