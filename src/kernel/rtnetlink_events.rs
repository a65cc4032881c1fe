//! rtnetlink_events: the NETLINK_ROUTE event groups of addresses, routes
//! and nexthop objects (RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR,
//! RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE, RTNLGRP_NEXTHOP), as `ip monitor`
//! reads them, decoded into what was added or removed: an address of the
//! host, or a gateway. Joining the groups needs no capability.
//!
//! The events only say where to look: a lost event (the receive buffer
//! overflowed) or one that does not decode is reported as such, and the
//! caller dumps everything again (`rtnetlink_dump`). Reading is bounded per
//! call, so a flood of events cannot hold the caller's loop.
//!
//! Knows nothing of why the addresses are wanted.

use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::error::{Error, Result};
use crate::kernel::netlink;
use crate::kernel::rtnetlink_dump::{
    RTM_DELADDR, RTM_DELNEXTHOP, RTM_DELROUTE, RTM_NEWADDR, RTM_NEWNEXTHOP, RTM_NEWROUTE,
    parse_address, parse_nexthop, parse_route,
};

// include/uapi/linux/rtnetlink.h: the legacy group bits, and the group
// number of nexthop objects (above 32, so joined with a socket option).
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;
const RTMGRP_IPV6_ROUTE: u32 = 0x400;
const RTNLGRP_NEXTHOP: u32 = 32;

/// Datagrams read per `drain`: what is left stays readable for the next
/// turn of the caller's loop.
pub const DATAGRAMS_PER_DRAIN: usize = 256;
/// The receive buffer asked for (the kernel caps it at rmem_max): room
/// for thousands of events between two turns of the loop.
const RCVBUF: i32 = 1 << 20;

/// One thing an event says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// An address of the host was added (or changed: a lifetime, a flag)
    /// or removed.
    Address { added: bool, addr: IpAddr },
    /// A route or a nexthop object with this gateway was added (or
    /// replaced) or removed.
    Gateway { added: bool, addr: IpAddr },
    /// Events were lost (receive buffer overrun) or one did not decode:
    /// anything may have changed.
    Unknown,
}

pub struct RouteEvents {
    sock: Socket,
    buf: Vec<u8>,
}

impl RouteEvents {
    /// Joins the address, route and nexthop groups of the calling thread's
    /// network namespace. A kernel without nexthop objects (Linux < 5.3)
    /// has no such group: routes and addresses are still followed.
    pub fn open() -> Result<RouteEvents> {
        let ctx = |e: std::io::Error, what: &str| Error::io(format!("route events: {what}"), &e);
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| ctx(e, "netlink socket"))?;
        let groups =
            RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE;
        sock.bind(&SocketAddr::new(0, groups))
            .map_err(|e| ctx(e, "join the address and route groups"))?;
        let _ = sock.add_membership(RTNLGRP_NEXTHOP);
        // Not fatal: a smaller buffer overflows sooner, which only means
        // one more full look.
        let _ = sock.set_rx_buf_sz(RCVBUF);
        sock.set_non_blocking(true)
            .map_err(|e| ctx(e, "non-blocking"))?;
        Ok(RouteEvents {
            sock,
            buf: vec![0u8; 1 << 16],
        })
    }

    /// Reads the pending events, at most `DATAGRAMS_PER_DRAIN` datagrams,
    /// and passes what each says to `each`. Returns how many datagrams
    /// were read (0: nothing was pending).
    pub fn drain(&mut self, mut each: impl FnMut(Change)) -> usize {
        let mut read = 0;
        while read < DATAGRAMS_PER_DRAIN {
            match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => {
                    read += 1;
                    // A datagram larger than the buffer is cut (the kernel
                    // sends one message per event, far smaller).
                    let n = n.min(self.buf.len());
                    decode(&self.buf[..n], &mut each);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // ENOBUFS: events were dropped.
                Err(_) => {
                    read += 1;
                    each(Change::Unknown);
                }
            }
        }
        read
    }
}

/// What the messages of one event datagram say.
pub fn decode(datagram: &[u8], each: &mut impl FnMut(Change)) {
    for m in netlink::messages(datagram) {
        let Ok(m) = m else {
            each(Change::Unknown);
            return;
        };
        let added = matches!(m.kind, RTM_NEWADDR | RTM_NEWROUTE | RTM_NEWNEXTHOP);
        match m.kind {
            RTM_NEWADDR | RTM_DELADDR => match parse_address(m.payload) {
                Ok(Some(a)) => each(Change::Address {
                    added,
                    addr: a.addr,
                }),
                Ok(None) => {}
                Err(_) => each(Change::Unknown),
            },
            RTM_NEWROUTE | RTM_DELROUTE => match parse_route(m.payload) {
                Ok(Some(r)) => {
                    for addr in r.gateways {
                        each(Change::Gateway { added, addr });
                    }
                }
                Ok(None) => {}
                Err(_) => each(Change::Unknown),
            },
            RTM_NEWNEXTHOP | RTM_DELNEXTHOP => match parse_nexthop(m.payload) {
                Ok(Some(addr)) => each(Change::Gateway { added, addr }),
                Ok(None) => {}
                Err(_) => each(Change::Unknown),
            },
            _ => {}
        }
    }
}

impl AsFd for RouteEvents {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor lives as long as the socket we borrow.
        unsafe { BorrowedFd::borrow_raw(self.sock.as_raw_fd()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nlmsg(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut m = ((16 + payload.len()) as u32).to_ne_bytes().to_vec();
        m.extend(kind.to_ne_bytes());
        m.extend([0u8; 10]);
        m.extend(payload);
        m.resize(m.len().next_multiple_of(4), 0);
        m
    }

    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        a.extend(kind.to_ne_bytes());
        a.extend(value);
        a.resize(a.len().next_multiple_of(4), 0);
        a
    }

    fn changes(d: &[u8]) -> Vec<Change> {
        let mut v = Vec::new();
        decode(d, &mut |c| v.push(c));
        v
    }

    #[test]
    fn decodes_address_route_and_nexthop_events() {
        let mut addr = vec![10u8, 64, 0, 0, 2, 0, 0, 0];
        addr.extend(nla(
            1,
            &"2001:db8::9"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        ));
        let mut route = vec![2u8, 0, 0, 0, 100, 3, 0, 1, 0, 0, 0, 0];
        route.extend(nla(5, &[192, 0, 2, 9]));
        // A blackhole route (a ban's): no gateway, nothing to say.
        let blackhole = vec![2u8, 32, 0, 0, 254, 110, 0, 6, 0, 0, 0, 0];
        let mut nh = vec![2u8, 0, 3, 0, 0, 0, 0, 0];
        nh.extend(nla(6, &[192, 0, 2, 77]));
        let mut d = nlmsg(RTM_NEWADDR, &addr);
        d.extend(nlmsg(RTM_DELADDR, &addr));
        d.extend(nlmsg(RTM_NEWROUTE, &route));
        d.extend(nlmsg(RTM_NEWROUTE, &blackhole));
        d.extend(nlmsg(RTM_DELROUTE, &route));
        d.extend(nlmsg(RTM_NEWNEXTHOP, &nh));
        d.extend(nlmsg(RTM_NEWLINK, &[0; 16]));
        let a: IpAddr = "2001:db8::9".parse().unwrap();
        let g: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(
            changes(&d),
            vec![
                Change::Address {
                    added: true,
                    addr: a
                },
                Change::Address {
                    added: false,
                    addr: a
                },
                Change::Gateway {
                    added: true,
                    addr: g
                },
                Change::Gateway {
                    added: false,
                    addr: g
                },
                Change::Gateway {
                    added: true,
                    addr: "192.0.2.77".parse().unwrap()
                },
            ]
        );
    }

    const RTM_NEWLINK: u16 = 16;

    #[test]
    fn what_does_not_decode_is_unknown_never_a_panic() {
        assert_eq!(
            changes(&nlmsg(RTM_NEWADDR, &[10, 64])),
            vec![Change::Unknown]
        );
        assert_eq!(
            changes(&nlmsg(RTM_NEWROUTE, &[2; 5])),
            vec![Change::Unknown]
        );
        assert_eq!(changes(&[1, 2, 3]), vec![Change::Unknown]);
        let mut route = vec![2u8, 0, 0, 0, 100, 3, 0, 1, 0, 0, 0, 0];
        route.extend(nla(5, &[192, 0, 2, 9]));
        let d = nlmsg(RTM_NEWROUTE, &route);
        for n in 0..=d.len() {
            let _ = changes(&d[..n]);
        }
    }
}
