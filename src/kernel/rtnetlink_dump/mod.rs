//! rtnetlink_dump: what NETLINK_ROUTE dumps tell of the calling thread's
//! network namespace: every interface address (with the interface's name)
//! and the gateways of every route of every routing table, and of every
//! nexthop object. The dump requests, their replies walked message by
//! message (an interrupted dump is run again), and the address, route and
//! nexthop messages decoded as far as needed, by hand from their attributes,
//! so that no message the kernel (or anyone) sends can make a decode panic;
//! `rtnetlink_events` decodes the same messages when they come as events.
//!
//! Knows nothing of why the addresses are wanted: `host::localnet` makes
//! them the host's neighbourhood.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::kernel::netlink;
use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN,
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::route::RouteMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::error::{Error, Result};

/// A failure below the public API, as text; `dump` adds what was being dumped.
pub type Parsed<T> = std::result::Result<T, String>;

/// Every address configured on every interface of the calling thread's
/// network namespace (IPv4 and IPv6, link-local and loopback included), with
/// the interface's name. A point-to-point peer address is not ours and is
/// left out.
pub fn interface_addresses() -> Result<Vec<(String, IpAddr)>> {
    let mut nl = RouteSocket::open()?;
    let names: HashMap<u32, String> = nl
        .dump(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            "network interfaces",
            |kind, payload| {
                if kind == RTM_NEWLINK {
                    link_name(payload).map_err(|e| format!("bad link message: {e}"))
                } else {
                    Ok(None)
                }
            },
        )?
        .into_iter()
        .collect();
    nl.dump(
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        "interface addresses",
        |kind, payload| {
            if kind != RTM_NEWADDR {
                return Ok(None);
            }
            let Some(a) =
                parse_address(payload).map_err(|e| format!("bad address message: {e}"))?
            else {
                return Ok(None);
            };
            let name = names.get(&a.index).cloned().or(a.label);
            Ok(Some((name.unwrap_or_else(|| a.index.to_string()), a.addr)))
        },
    )
}

/// A gateway (next hop) of a route or of a nexthop object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gateway {
    pub addr: IpAddr,
    /// The routing table of the route (254 is `main`); `None` for a
    /// nexthop object (`ip nexthop`), which routes of any table may use.
    pub table: Option<u32>,
    /// The route is a default route (destination prefix length 0).
    pub default: bool,
}

/// The main routing table's id (RT_TABLE_MAIN).
pub const RT_TABLE_MAIN: u32 = 254;

/// The gateways of every IPv4 and IPv6 route of every routing table
/// (RTA_GATEWAY, RTA_VIA for an IPv4 route through an IPv6 neighbour, and
/// each next hop of a multipath route), then those of the nexthop objects.
/// Each address once: the main table's default routes first, then the
/// other routes in dump order, so the first origin is the plainest one.
pub fn route_gateways() -> Result<Vec<Gateway>> {
    let mut nl = RouteSocket::open()?;
    let routes = nl.dump(
        RouteNetlinkMessage::GetRoute(RouteMessage::default()),
        "routes",
        |kind, payload| {
            if kind != RTM_NEWROUTE {
                return Ok(None);
            }
            parse_route(payload).map_err(|e| format!("bad route message: {e}"))
        },
    )?;
    let nexthops = nexthop_gateways(&mut nl)?;
    let mut found: Vec<Gateway> = Vec::new();
    let main_default = |r: &Route| r.table == RT_TABLE_MAIN && r.default;
    let ordered = routes
        .iter()
        .filter(|r| main_default(r))
        .chain(routes.iter().filter(|r| !main_default(r)));
    for r in ordered {
        for &addr in &r.gateways {
            if !found.iter().any(|g| g.addr == addr) {
                found.push(Gateway {
                    addr,
                    table: Some(r.table),
                    default: r.default,
                });
            }
        }
    }
    for addr in nexthops {
        if !found.iter().any(|g| g.addr == addr) {
            found.push(Gateway {
                addr,
                table: None,
                default: false,
            });
        }
    }
    Ok(found)
}

/// The gateways of the nexthop objects (Linux 5.3). A kernel without them
/// refuses the dump: that is none.
fn nexthop_gateways(nl: &mut RouteSocket) -> Result<Vec<IpAddr>> {
    let mut request = vec![0u8; NHMSG_LEN];
    request[0] = 0; // AF_UNSPEC: both families
    let r = nl.dump_raw(
        RTM_GETNEXTHOP,
        &request,
        "nexthop objects",
        |kind, payload| {
            if kind != RTM_NEWNEXTHOP {
                return Ok(None);
            }
            parse_nexthop(payload).map_err(|e| format!("bad nexthop message: {e}"))
        },
    );
    match r {
        Ok(v) => Ok(v),
        Err(e) if unsupported(&e.to_string()) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// A dump refused because the kernel does not know the request.
fn unsupported(text: &str) -> bool {
    [-95, -22, -97, -93]
        .iter()
        .any(|&code| text.ends_with(&errno_text(code)))
}

// Message types (include/uapi/linux/rtnetlink.h); the crate keeps its
// constants private.
pub const RTM_NEWLINK: u16 = 16;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_DELADDR: u16 = 21;
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_DELROUTE: u16 = 25;
pub const RTM_NEWNEXTHOP: u16 = 104;
pub const RTM_DELNEXTHOP: u16 = 105;
pub const RTM_GETNEXTHOP: u16 = 106;
const IFLA_IFNAME: u16 = 3;
// struct ifinfomsg: family, pad, type (u16), index (i32), flags, change.
const IFINFOMSG_LEN: usize = 16;
// struct ifaddrmsg: family, prefixlen, flags, scope, index (u32).
const IFADDRMSG_LEN: usize = 8;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_LABEL: u16 = 3;
// struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope,
// type, flags (u32).
const RTMSG_LEN: usize = 12;
const RTA_GATEWAY: u16 = 5;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;
const RTA_VIA: u16 = 18;
// struct rtnexthop: len (u16), flags, hops, ifindex (i32); its attributes follow.
const RTNH_LEN: usize = 8;
// struct nhmsg: family, scope, protocol, resvd, flags (u32).
const NHMSG_LEN: usize = 8;
const NHA_GATEWAY: u16 = 6;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Index and name of an RTM_NEWLINK message. Only the name attribute is read:
/// a full decode of every link attribute is not needed and could only fail.
fn link_name(payload: &[u8]) -> Parsed<Option<(u32, String)>> {
    if payload.len() < IFINFOMSG_LEN {
        return Err(format!("{} bytes, shorter than ifinfomsg", payload.len()));
    }
    let index = u32::from_ne_bytes(payload[4..8].try_into().expect("4 bytes"));
    for nla in NlasIterator::new(&payload[IFINFOMSG_LEN..]) {
        let nla = nla.map_err(|e| e.to_string())?;
        if nla.kind() == IFLA_IFNAME {
            let value = nla.value();
            let name = value.split(|b| *b == 0).next().unwrap_or(value);
            return Ok(Some((index, String::from_utf8_lossy(name).into_owned())));
        }
    }
    Ok(None)
}

/// The host's own address of an address message (RTM_NEWADDR, RTM_DELADDR).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    pub addr: IpAddr,
    /// IFA_LABEL (IPv4's `eth0:1`), for an interface whose name is unknown.
    pub label: Option<String>,
}

/// The host's own address in an address message. IFA_LOCAL is the local
/// end when present (IPv4 always, IPv6 on point-to-point links, where
/// IFA_ADDRESS is then the peer); otherwise IFA_ADDRESS is ours. `None` for
/// a family other than IPv4 and IPv6, or a message with neither.
pub fn parse_address(payload: &[u8]) -> Parsed<Option<Address>> {
    if payload.len() < IFADDRMSG_LEN {
        return Err(format!("{} bytes, shorter than ifaddrmsg", payload.len()));
    }
    let family = payload[0];
    if family != AF_INET && family != AF_INET6 {
        return Ok(None);
    }
    let index = u32::from_ne_bytes(payload[4..8].try_into().expect("4 bytes"));
    let (mut local, mut address, mut label) = (None, None, None);
    for a in netlink::attrs(&payload[IFADDRMSG_LEN..]) {
        let (kind, value) = a?;
        match kind {
            IFA_LOCAL => local = ip_of(value),
            IFA_ADDRESS => address = ip_of(value),
            IFA_LABEL => {
                let name = value.split(|b| *b == 0).next().unwrap_or(value);
                label = Some(String::from_utf8_lossy(name).into_owned());
            }
            _ => {}
        }
    }
    Ok(local.or(address).map(|addr| Address { index, addr, label }))
}

/// What a route message says of its next hops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// RTA_TABLE (the full id), else the header's byte.
    pub table: u32,
    /// Destination prefix length 0.
    pub default: bool,
    /// RTA_GATEWAY, RTA_VIA and those of each next hop of RTA_MULTIPATH, in
    /// message order (repeats kept).
    pub gateways: Vec<IpAddr>,
}

/// The table and gateways of a route message (RTM_NEWROUTE, RTM_DELROUTE);
/// `None` for a family other than IPv4 and IPv6.
pub fn parse_route(payload: &[u8]) -> Parsed<Option<Route>> {
    if payload.len() < RTMSG_LEN {
        return Err(format!("{} bytes, shorter than rtmsg", payload.len()));
    }
    let family = payload[0];
    if family != AF_INET && family != AF_INET6 {
        return Ok(None);
    }
    let mut route = Route {
        table: u32::from(payload[4]),
        default: payload[1] == 0,
        gateways: Vec::new(),
    };
    for a in netlink::attrs(&payload[RTMSG_LEN..]) {
        let (kind, value) = a?;
        if kind == RTA_TABLE {
            if let Ok(b) = <[u8; 4]>::try_from(value) {
                route.table = u32::from_ne_bytes(b);
            }
        }
    }
    route_gateways_of(&payload[RTMSG_LEN..], &mut route.gateways, 0)?;
    Ok(Some(route))
}

/// The gateways in a route's (or a next hop's) attributes. Next hops do
/// not nest in the kernel's format; `depth` refuses a message that claims
/// they do.
fn route_gateways_of(attrs: &[u8], out: &mut Vec<IpAddr>, depth: u8) -> Parsed<()> {
    for a in netlink::attrs(attrs) {
        let (kind, value) = a?;
        match kind {
            RTA_GATEWAY => out.extend(ip_of(value)),
            RTA_VIA => out.extend(via(value)),
            RTA_MULTIPATH if depth == 0 => {
                let mut rest = value;
                while !rest.is_empty() {
                    if rest.len() < RTNH_LEN {
                        return Err(format!(
                            "{} stray bytes after the last next hop",
                            rest.len()
                        ));
                    }
                    let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
                    if len < RTNH_LEN || len > rest.len() {
                        return Err(format!("next hop of length {len} in {} bytes", rest.len()));
                    }
                    route_gateways_of(&rest[RTNH_LEN..len], out, depth + 1)?;
                    rest = &rest[len.next_multiple_of(4).min(rest.len())..];
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The gateway of a nexthop object message (RTM_NEWNEXTHOP,
/// RTM_DELNEXTHOP), if it has one (a group or a blackhole has none).
pub fn parse_nexthop(payload: &[u8]) -> Parsed<Option<IpAddr>> {
    if payload.len() < NHMSG_LEN {
        return Err(format!("{} bytes, shorter than nhmsg", payload.len()));
    }
    let mut gateway = None;
    for a in netlink::attrs(&payload[NHMSG_LEN..]) {
        let (kind, value) = a?;
        if kind == NHA_GATEWAY {
            gateway = ip_of(value);
        }
    }
    Ok(gateway)
}

/// An address attribute: 4 bytes IPv4, 16 bytes IPv6, anything else none.
fn ip_of(value: &[u8]) -> Option<IpAddr> {
    if let Ok(b) = <[u8; 4]>::try_from(value) {
        Some(IpAddr::V4(Ipv4Addr::from(b)))
    } else if let Ok(b) = <[u8; 16]>::try_from(value) {
        Some(IpAddr::V6(Ipv6Addr::from(b)))
    } else {
        None
    }
}

/// struct rtvia: the family (u16), then the address.
fn via(value: &[u8]) -> Option<IpAddr> {
    let family = u16::from_ne_bytes([*value.first()?, *value.get(1)?]);
    let addr = ip_of(&value[2..])?;
    match (family, addr) {
        (2, IpAddr::V4(_)) | (10, IpAddr::V6(_)) => Some(addr),
        _ => None,
    }
}

/// A NETLINK_ROUTE socket connected to the kernel, for dump requests.
struct RouteSocket {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

/// A dump request: one the crate can encode, or a message type and its
/// fixed header.
enum Request {
    Typed(RouteNetlinkMessage),
    Raw(u16, Vec<u8>),
}

impl Request {
    /// The request as a dump with sequence number `seq`.
    fn bytes(&self, seq: u32) -> Vec<u8> {
        match self {
            Request::Typed(m) => {
                let mut header = NetlinkHeader::default();
                header.flags = NLM_F_REQUEST | NLM_F_DUMP;
                header.sequence_number = seq;
                let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(m.clone()));
                msg.finalize();
                let mut out = vec![0; msg.buffer_len()];
                msg.serialize(&mut out);
                out
            }
            Request::Raw(kind, body) => {
                let len = (netlink::NLMSG_HDRLEN + body.len()) as u32;
                let mut out = Vec::with_capacity(len as usize);
                out.extend(len.to_ne_bytes());
                out.extend(kind.to_ne_bytes());
                out.extend((NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
                out.extend(seq.to_ne_bytes());
                out.extend(0u32.to_ne_bytes());
                out.extend(body);
                out
            }
        }
    }
}

/// A dump interrupted by a change (NLM_F_DUMP_INTR) is started again, this
/// many times at most.
const DUMP_ATTEMPTS: u32 = 5;
/// The kernel answers a dump at once; this only bounds a wait that should
/// never happen.
const RECV_TIMEOUT: Duration = Duration::from_secs(5);

impl RouteSocket {
    fn open() -> Result<RouteSocket> {
        let fail =
            |e: std::io::Error| Error::other(format!("cannot open a NETLINK_ROUTE socket: {e}"));
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(fail)?;
        socket.bind_auto().map_err(fail)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(fail)?;
        let timeout = nix::sys::time::TimeVal::new(RECV_TIMEOUT.as_secs() as _, 0);
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::ReceiveTimeout, &timeout)
            .map_err(|e| fail(e.into()))?;
        Ok(RouteSocket {
            socket,
            seq: 0,
            buf: Vec::with_capacity(32 * 1024),
        })
    }

    /// Sends `request` as a dump and passes each reply (message type,
    /// payload) to `each`, keeping what it returns. `what` names the dump in
    /// errors. An interrupted dump is run again from the start.
    fn dump<T>(
        &mut self,
        request: RouteNetlinkMessage,
        what: &str,
        each: impl FnMut(u16, &[u8]) -> Parsed<Option<T>>,
    ) -> Result<Vec<T>> {
        self.dump_with(&Request::Typed(request), what, each)
    }

    /// The same for a request the crate has no type for: its message type
    /// and its fixed header (`body`).
    fn dump_raw<T>(
        &mut self,
        kind: u16,
        body: &[u8],
        what: &str,
        each: impl FnMut(u16, &[u8]) -> Parsed<Option<T>>,
    ) -> Result<Vec<T>> {
        self.dump_with(&Request::Raw(kind, body.to_vec()), what, each)
    }

    fn dump_with<T>(
        &mut self,
        request: &Request,
        what: &str,
        mut each: impl FnMut(u16, &[u8]) -> Parsed<Option<T>>,
    ) -> Result<Vec<T>> {
        for _ in 0..DUMP_ATTEMPTS {
            let mut items = Vec::new();
            let complete = self
                .dump_once(request, &mut |kind, payload| {
                    if let Some(item) = each(kind, payload)? {
                        items.push(item);
                    }
                    Ok(())
                })
                .map_err(|e| Error::other(format!("netlink dump of {what} failed: {e}")))?;
            if complete {
                return Ok(items);
            }
        }
        Err(Error::other(format!(
            "netlink dump of {what} failed: interrupted by changes {DUMP_ATTEMPTS} times in a row"
        )))
    }

    /// One dump: true if it ran to NLMSG_DONE without NLM_F_DUMP_INTR.
    fn dump_once(
        &mut self,
        request: &Request,
        each: &mut dyn FnMut(u16, &[u8]) -> Parsed<()>,
    ) -> Parsed<bool> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let out = request.bytes(seq);
        self.socket
            .send(&out, 0)
            .map_err(|e| format!("send: {e}"))?;

        let mut interrupted = false;
        loop {
            let len = self.recv()?;
            if walk_datagram(&self.buf[..len], seq, &mut interrupted, each)? {
                return Ok(!interrupted);
            }
        }
    }

    /// Reads one datagram whole into `self.buf` and returns its length. A
    /// peek first learns its size, so a large message is never truncated.
    fn recv(&mut self) -> Parsed<usize> {
        use nix::libc::{MSG_PEEK, MSG_TRUNC};
        loop {
            self.buf.clear();
            let size = match self.socket.recv(&mut self.buf, MSG_PEEK | MSG_TRUNC) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Err(format!("no reply from the kernel within {RECV_TIMEOUT:?}"));
                }
                Err(e) => return Err(format!("receive: {e}")),
            };
            if size > self.buf.capacity() {
                self.buf.reserve(size);
                continue;
            }
            self.buf.clear();
            match self.socket.recv(&mut self.buf, 0) {
                Ok(n) => return Ok(n.min(self.buf.len())),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("receive: {e}")),
            }
        }
    }
}

/// Goes through the messages of one datagram of the reply to dump `seq`,
/// passing each data message to `each`. True once NLMSG_DONE is reached;
/// `interrupted` is set if any message carries NLM_F_DUMP_INTR. A netlink
/// error, an error in the DONE message, or a malformed message is an error.
fn walk_datagram(
    data: &[u8],
    seq: u32,
    interrupted: &mut bool,
    each: &mut dyn FnMut(u16, &[u8]) -> Parsed<()>,
) -> Parsed<bool> {
    for m in netlink::messages(data) {
        let m = m.map_err(|e| format!("bad reply: {e}"))?;
        // Replies to an earlier request on this socket are not ours.
        if m.seq != seq {
            continue;
        }
        if m.flags & NLM_F_DUMP_INTR != 0 {
            *interrupted = true;
        }
        match m.kind {
            NLMSG_DONE => {
                // The kernel reports a dump that failed part-way as a
                // negative errno in the DONE payload.
                let code = m.status().unwrap_or(0);
                if code < 0 {
                    return Err(errno_text(code));
                }
                return Ok(true);
            }
            NLMSG_ERROR => {
                let code = m.status().ok_or("bad error message: too short")?;
                // Code 0 is an acknowledgement, not an error.
                if code != 0 {
                    return Err(errno_text(code));
                }
            }
            NLMSG_OVERRUN => return Err("the kernel reported an overrun".into()),
            NLMSG_NOOP => {}
            kind => each(kind, m.payload)?,
        }
    }
    Ok(false)
}

/// The kernel's negative errno as the system's text for it.
fn errno_text(code: i32) -> String {
    std::io::Error::from_raw_os_error(code.checked_abs().unwrap_or(i32::MAX)).to_string()
}

#[cfg(test)]
mod tests;
