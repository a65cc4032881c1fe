//! rtnetlink_dump: what NETLINK_ROUTE dumps tell of the calling thread's
//! network namespace: every interface address (with the interface's name)
//! and the gateways of the main table's default routes. The dump requests,
//! their replies walked message by message (an interrupted dump is run
//! again), and the link, address and route messages decoded as far as
//! needed.
//!
//! Knows nothing of why the addresses are wanted: `host::localnet` makes
//! them the host's neighbourhood.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::kernel::netlink;
use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN,
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator, Parseable,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteNextHop, RouteVia,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::error::{Error, Result};

/// A failure below the public API, as text; `dump` adds what was being dumped.
type Parsed<T> = std::result::Result<T, String>;

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
            let msg =
                AddressMessage::parse(payload).map_err(|e| format!("bad address message: {e}"))?;
            Ok(local_address(&msg).map(|ip| {
                let name = names
                    .get(&msg.header.index)
                    .cloned()
                    .or_else(|| label(&msg));
                (name.unwrap_or_else(|| msg.header.index.to_string()), ip)
            }))
        },
    )
}

/// The gateways of the main table's IPv4 and IPv6 default routes: RTA_GATEWAY,
/// RTA_VIA (an IPv4 route through an IPv6 neighbour), and the gateway of each
/// nexthop of a multipath route. Each address once, in dump order.
pub fn default_gateways() -> Result<Vec<IpAddr>> {
    let mut nl = RouteSocket::open()?;
    let per_route = nl.dump(
        RouteNetlinkMessage::GetRoute(RouteMessage::default()),
        "routes",
        |kind, payload| {
            if kind != RTM_NEWROUTE {
                return Ok(None);
            }
            // Look at the fixed header first: only default routes of the main
            // table are decoded, so an exotic route elsewhere cannot fail us.
            let header =
                RouteHeader::parse(payload).map_err(|e| format!("bad route header: {e}"))?;
            let family_ok = matches!(
                header.address_family,
                AddressFamily::Inet | AddressFamily::Inet6
            );
            if !family_ok || header.destination_prefix_length != 0 {
                return Ok(None);
            }
            let msg =
                RouteMessage::parse(payload).map_err(|e| format!("bad route message: {e}"))?;
            if route_table(&msg) != u32::from(RouteHeader::RT_TABLE_MAIN) {
                return Ok(None);
            }
            let mut gateways = Vec::new();
            collect_gateways(&msg.attributes, &mut gateways);
            Ok(Some(gateways))
        },
    )?;
    let mut all: Vec<IpAddr> = Vec::new();
    for ip in per_route.into_iter().flatten() {
        if !all.contains(&ip) {
            all.push(ip);
        }
    }
    Ok(all)
}

// Message types of the replies (include/uapi/linux/rtnetlink.h); the crate
// keeps its constants private.
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const IFLA_IFNAME: u16 = 3;
// struct ifinfomsg: family, pad, type (u16), index (i32), flags, change.
const IFINFOMSG_LEN: usize = 16;

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

/// The host's own address in an RTM_NEWADDR message. IFA_LOCAL is the local
/// end when present (IPv4 always, IPv6 on point-to-point links, where
/// IFA_ADDRESS is then the peer); otherwise IFA_ADDRESS is ours.
fn local_address(msg: &AddressMessage) -> Option<IpAddr> {
    let mut address = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(ip) => return Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    address
}

fn label(msg: &AddressMessage) -> Option<String> {
    msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Label(l) => Some(l.clone()),
        _ => None,
    })
}

/// RTA_TABLE holds the full table id; the header's byte only fits ids below 256.
fn route_table(msg: &RouteMessage) -> u32 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table))
}

fn collect_gateways(attributes: &[RouteAttribute], out: &mut Vec<IpAddr>) {
    for attr in attributes {
        match attr {
            RouteAttribute::Gateway(RouteAddress::Inet(a)) => out.push(IpAddr::V4(*a)),
            RouteAttribute::Gateway(RouteAddress::Inet6(a)) => out.push(IpAddr::V6(*a)),
            RouteAttribute::Via(RouteVia::Inet(a)) => out.push(IpAddr::V4(*a)),
            RouteAttribute::Via(RouteVia::Inet6(a)) => out.push(IpAddr::V6(*a)),
            RouteAttribute::MultiPath(hops) => {
                for RouteNextHop { attributes, .. } in hops {
                    collect_gateways(attributes, out);
                }
            }
            _ => {}
        }
    }
}

/// A NETLINK_ROUTE socket connected to the kernel, for dump requests.
struct RouteSocket {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
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
        mut each: impl FnMut(u16, &[u8]) -> Parsed<Option<T>>,
    ) -> Result<Vec<T>> {
        for _ in 0..DUMP_ATTEMPTS {
            let mut items = Vec::new();
            let complete = self
                .dump_once(request.clone(), &mut |kind, payload| {
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
        request: RouteNetlinkMessage,
        each: &mut dyn FnMut(u16, &[u8]) -> Parsed<()>,
    ) -> Parsed<bool> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        header.sequence_number = seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(request));
        msg.finalize();
        let mut out = vec![0; msg.buffer_len()];
        msg.serialize(&mut out);
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
mod tests {
    use super::*;
    use netlink_packet_core::NLM_F_MULTIPART;

    #[test]
    fn link_name_rejects_short_and_bad_messages() {
        assert!(link_name(&[0; 8]).is_err());
        // ifinfomsg for index 7, then IFLA_IFNAME "eth7\0" (nla len 9, padded to 12).
        let mut msg = vec![0u8; IFINFOMSG_LEN];
        msg[4..8].copy_from_slice(&7u32.to_ne_bytes());
        msg.extend_from_slice(&9u16.to_ne_bytes());
        msg.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
        msg.extend_from_slice(b"eth7\0\0\0\0");
        assert_eq!(link_name(&msg).unwrap(), Some((7, "eth7".to_string())));
        // An attribute claiming more bytes than there are.
        let mut bad = msg[..IFINFOMSG_LEN].to_vec();
        bad.extend_from_slice(&200u16.to_ne_bytes());
        bad.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
        assert!(link_name(&bad).is_err());
    }

    /// One netlink message: header (length, type, flags, seq, port) and
    /// payload, padded to 4 bytes.
    fn nlmsg(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&(16 + payload.len() as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    /// The (type, payload) pairs a walk passed on.
    type Seen = Vec<(u16, Vec<u8>)>;

    /// Walks `data` as the reply to dump 7; returns what `walk_datagram`
    /// said, the interrupted flag, and the messages seen.
    fn walk(data: &[u8]) -> (Parsed<bool>, bool, Seen) {
        let mut seen = Vec::new();
        let mut interrupted = false;
        let r = walk_datagram(data, 7, &mut interrupted, &mut |k, p| {
            seen.push((k, p.to_vec()));
            Ok(())
        });
        (r, interrupted, seen)
    }

    #[test]
    fn walk_multipart_until_done() {
        // A first datagram without DONE: more to come.
        let mut first = nlmsg(RTM_NEWADDR, NLM_F_MULTIPART, 7, &[1, 2, 3]);
        first.extend(nlmsg(RTM_NEWADDR, NLM_F_MULTIPART, 7, &[4; 8]));
        let (r, intr, seen) = walk(&first);
        assert_eq!(r, Ok(false));
        assert!(!intr);
        assert_eq!(
            seen,
            vec![(RTM_NEWADDR, vec![1, 2, 3]), (RTM_NEWADDR, vec![4; 8])]
        );
        // The last one: a message, then DONE; what follows DONE is not read.
        let mut last = nlmsg(RTM_NEWROUTE, NLM_F_MULTIPART, 7, &[5]);
        last.extend(nlmsg(NLMSG_DONE, NLM_F_MULTIPART, 7, &0i32.to_ne_bytes()));
        last.extend(nlmsg(RTM_NEWROUTE, NLM_F_MULTIPART, 7, &[6]));
        let (r, _, seen) = walk(&last);
        assert_eq!(r, Ok(true));
        assert_eq!(seen, vec![(RTM_NEWROUTE, vec![5])]);
    }

    #[test]
    fn walk_skips_other_requests_and_noop() {
        let mut d = nlmsg(RTM_NEWADDR, NLM_F_MULTIPART, 6, &[9]);
        d.extend(nlmsg(NLMSG_DONE, NLM_F_MULTIPART, 6, &0i32.to_ne_bytes()));
        d.extend(nlmsg(NLMSG_NOOP, 0, 7, &[]));
        d.extend(nlmsg(RTM_NEWADDR, NLM_F_MULTIPART, 7, &[1]));
        let (r, _, seen) = walk(&d);
        assert_eq!(r, Ok(false));
        assert_eq!(seen, vec![(RTM_NEWADDR, vec![1])]);
    }

    #[test]
    fn walk_flags_interrupted_dump() {
        let mut d = nlmsg(RTM_NEWADDR, NLM_F_MULTIPART | NLM_F_DUMP_INTR, 7, &[1]);
        d.extend(nlmsg(
            NLMSG_DONE,
            NLM_F_MULTIPART | NLM_F_DUMP_INTR,
            7,
            &0i32.to_ne_bytes(),
        ));
        let (r, intr, _) = walk(&d);
        assert_eq!(r, Ok(true));
        assert!(intr);
    }

    #[test]
    fn walk_reports_errors() {
        // NLMSG_ERROR with -EPERM (and the request's header after the code).
        let mut payload = (-1i32).to_ne_bytes().to_vec();
        payload.extend_from_slice(&[0; 16]);
        let (r, _, _) = walk(&nlmsg(NLMSG_ERROR, 0, 7, &payload));
        assert_eq!(r, Err(std::io::Error::from_raw_os_error(1).to_string()));
        // Code 0 is an acknowledgement.
        let mut ack = (0i32).to_ne_bytes().to_vec();
        ack.extend_from_slice(&[0; 16]);
        assert_eq!(walk(&nlmsg(NLMSG_ERROR, 0, 7, &ack)).0, Ok(false));
        // A dump that failed part-way: the errno is in DONE (-EMSGSIZE).
        let (r, _, _) = walk(&nlmsg(
            NLMSG_DONE,
            NLM_F_MULTIPART,
            7,
            &(-90i32).to_ne_bytes(),
        ));
        assert_eq!(r, Err(std::io::Error::from_raw_os_error(90).to_string()));
        assert!(walk(&nlmsg(NLMSG_OVERRUN, 0, 7, &[])).0.is_err());
        // An error message too short to hold its code.
        assert!(walk(&nlmsg(NLMSG_ERROR, 0, 7, &[0, 0])).0.is_err());
        // The callback's error stops the walk.
        let d = nlmsg(RTM_NEWADDR, 0, 7, &[1]);
        let r = walk_datagram(&d, 7, &mut false, &mut |_, _| Err("no".into()));
        assert_eq!(r, Err("no".to_string()));
    }

    #[test]
    fn walk_rejects_malformed_datagrams() {
        let good = nlmsg(RTM_NEWADDR, 0, 7, &[1, 2, 3, 4]);
        // Shorter than a header, cut in the middle, length below the header size.
        assert!(walk(&good[..10]).0.is_err());
        assert!(walk(&good[..18]).0.is_err());
        let mut small = good.clone();
        small[..4].copy_from_slice(&8u32.to_ne_bytes());
        assert!(walk(&small).0.is_err());
        // Every prefix of a valid datagram either parses or errs, never panics.
        let mut d = good.clone();
        d.extend(nlmsg(NLMSG_DONE, 0, 7, &0i32.to_ne_bytes()));
        for n in 0..=d.len() {
            let _ = walk(&d[..n]);
        }
    }
}
