//! Packets with a source address of the test's choosing (spoofed), sent
//! from raw sockets opened inside a namespace: what an attacker sends to get
//! someone else banned. Only between the test's own namespaces; the sources
//! are the victim's own, gateway, resolver and ignore-file addresses, and
//! 198.18.0.0/15 for floods (which the victim routes back to the attacker).
use super::Netns;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};

pub const SYN: u8 = 0x02;
pub const FIN: u8 = 0x01;

/// What a probe is, at the transport layer.
#[derive(Clone, Copy, Debug)]
pub enum L4 {
    Tcp { flags: u8 },
    Udp,
}

fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    let mut odd: Option<u8> = None;
    for c in chunks {
        for &b in *c {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The TCP (20 bytes) or UDP (8 bytes) header, checksum zero.
fn transport(l4: L4, sport: u16, dport: u16) -> (u8, Vec<u8>) {
    let mut h = Vec::with_capacity(20);
    h.extend(sport.to_be_bytes());
    h.extend(dport.to_be_bytes());
    match l4 {
        L4::Tcp { flags } => {
            h.extend(0x1000_0000u32.to_be_bytes()); // sequence number
            h.extend([0u8; 4]);
            h.push(5 << 4);
            h.push(flags);
            h.extend(1024u16.to_be_bytes());
            h.extend([0u8; 4]);
            (6, h)
        }
        L4::Udp => {
            h.extend(8u16.to_be_bytes());
            h.extend([0u8; 2]);
            (17, h)
        }
    }
}

/// A whole IPv4 or IPv6 packet from `src` to `dst`, checksums included.
pub fn packet(src: IpAddr, dst: IpAddr, l4: L4, sport: u16, dport: u16) -> Vec<u8> {
    let (proto, mut t) = transport(l4, sport, dport);
    let len = t.len() as u16;
    let sum_at = if proto == 6 { 16 } else { 6 };
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let pseudo = [
                &s.octets()[..],
                &d.octets(),
                &[0, proto],
                &len.to_be_bytes(),
            ]
            .concat();
            let c = checksum(&[&pseudo, &t]);
            t[sum_at..sum_at + 2].copy_from_slice(&c.to_be_bytes());
            let mut p = vec![0x45, 0];
            p.extend((20 + len).to_be_bytes());
            p.extend([0, 1, 0x40, 0, 64, proto, 0, 0]);
            p.extend(s.octets());
            p.extend(d.octets());
            let c = checksum(&[&p]);
            p[10..12].copy_from_slice(&c.to_be_bytes());
            p.extend(t);
            p
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let pseudo = [
                &s.octets()[..],
                &d.octets(),
                &u32::from(len).to_be_bytes(),
                &[0, 0, 0, proto],
            ]
            .concat();
            let c = checksum(&[&pseudo, &t]);
            t[sum_at..sum_at + 2].copy_from_slice(&c.to_be_bytes());
            let mut p = vec![0x60, 0, 0, 0];
            p.extend(len.to_be_bytes());
            p.extend([proto, 64]);
            p.extend(s.octets());
            p.extend(d.octets());
            p.extend(t);
            p
        }
        _ => panic!("{src} and {dst} are of different families"),
    }
}

/// Raw sockets (IPPROTO_RAW: the packet carries its own IP header) opened
/// inside a namespace; they stay in it whichever thread sends.
pub struct Spoofer {
    v4: OwnedFd,
    v6: OwnedFd,
}

impl Spoofer {
    pub fn open(ns: &Netns) -> Spoofer {
        ns.enter(|| {
            use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};
            let raw = |family| {
                socket(
                    family,
                    SockType::Raw,
                    SockFlag::SOCK_CLOEXEC,
                    SockProtocol::Raw,
                )
                .expect("raw socket (needs CAP_NET_RAW)")
            };
            Spoofer {
                v4: raw(AddressFamily::Inet),
                v6: raw(AddressFamily::Inet6),
            }
        })
    }

    /// Sends one packet built by `packet`; false if the kernel refused it
    /// (e.g. ENOBUFS while the device queue is full).
    pub fn send(&self, pkt: &[u8]) -> bool {
        use nix::sys::socket::{MsgFlags, SockaddrIn, SockaddrIn6, sendto};
        let sent = if pkt[0] >> 4 == 4 {
            let d = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
            sendto(
                self.v4.as_raw_fd(),
                pkt,
                &SockaddrIn::from(std::net::SocketAddrV4::new(d, 0)),
                MsgFlags::empty(),
            )
        } else {
            let d = Ipv6Addr::from(<[u8; 16]>::try_from(&pkt[24..40]).unwrap());
            sendto(
                self.v6.as_raw_fd(),
                pkt,
                &SockaddrIn6::from(std::net::SocketAddrV6::new(d, 0, 0, 0)),
                MsgFlags::empty(),
            )
        };
        sent.is_ok()
    }

    /// Sends until the kernel takes it (a full device queue is transient).
    pub fn send_sure(&self, pkt: &[u8]) {
        for _ in 0..1000 {
            if self.send(pkt) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        panic!("the kernel refused a packet 1000 times");
    }
}

/// Lets spoofed packets from the victim's own addresses reach its input
/// hook (where nftsentry's tripwires are): IPv4 drops them as martians
/// unless accept_local (and, for 127/8, route_localnet) is set, and
/// rp_filter must not drop them either. IPv6 lets them in as it is.
pub fn accept_own_sources(victim: &Netns, dev: &str) {
    victim.sh(&format!(
        "sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.{dev}.rp_filter=0 \
         net.ipv4.conf.{dev}.accept_local=1 net.ipv4.conf.{dev}.route_localnet=1"
    ));
}

/// Permanent neighbour entries on the attacker for the victim's addresses
/// (`VICTIM4`, `VICTIM6` on eth0). Spoofed packets cannot resolve them
/// themselves early on: IPv6 sends a neighbour solicitation from the
/// packet's source only if that address is the sender's own, else from its
/// link-local address, which is still tentative for a second after the link
/// comes up; until then the packets wait and are dropped.
pub fn pin_victim_neighbours(pair: &super::Pair) {
    let out = pair.victim.ip(&["-o", "link", "show", "dev", "eth0"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let mac = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("victim's MAC address")
        .to_string();
    for addr in [super::VICTIM4, super::VICTIM6] {
        pair.attacker.ip(&[
            "neigh",
            "replace",
            addr,
            "lladdr",
            &mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ]);
    }
}

/// For floods from 198.18.0.0/15: the victim routes the range back to the
/// attacker (whose forwarding is off, so nothing goes further), drops its own
/// RSTs to it, and keeps those flows out of conntrack (a million spoofed
/// SYNs would fill the conntrack table every namespace shares).
pub fn route_spoofed_range_back(pair: &super::Pair) {
    pair.victim
        .ip(&["route", "add", "198.18.0.0/15", "via", super::ATTACKER4]);
    pair.attacker.sh("sysctl -qw net.ipv4.ip_forward=0");
    pair.victim.nft(&["add table ip floodraw { \
        chain pre { type filter hook prerouting priority raw; ip saddr 198.18.0.0/15 notrack; }; \
        chain out { type filter hook output priority raw; ip daddr 198.18.0.0/15 drop; }; }"]);
}
