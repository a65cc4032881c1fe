//! Decoding of a packet as NFLOG delivers it (NFULA_PAYLOAD: the bytes from
//! the network header on) into the few fields detection needs: addresses,
//! ports, TCP flags, and whether IP options or IPv6 extension headers were
//! present (PortSentry logs the former as a detection-avoidance technique).
//!
//! The capture is cut at the copy range, so the IP length fields routinely
//! claim more bytes than we hold: only the bytes actually read are required.
//! Every access is bounds-checked; malformed input is an error, never a panic.
//! Nothing here allocates.
//!
//! An IPv6 header chain is walked to its end however many headers it has
//! (Linux delivers a chain of any length): the walk is bounded by the bytes
//! held, since every extension header is at least 8 bytes long. A chain cut
//! by the copy range is `Truncated`; the kernel reassembles fragments before
//! the input hook and drops a first fragment whose chain does not reach the
//! transport header (RFC 8200 section 4.5), so a chain never spans more
//! than the first fragment: one link MTU.
//!
//! Knows nothing of sockets, NFLOG attributes, nftables or what a scan is.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The TCP flags byte (offset 13 of the TCP header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;

    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    pub fn psh(self) -> bool {
        self.0 & Self::PSH != 0
    }
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
    pub fn urg(self) -> bool {
        self.0 & Self::URG != 0
    }
    pub fn ece(self) -> bool {
        self.0 & Self::ECE != 0
    }
    pub fn cwr(self) -> bool {
        self.0 & Self::CWR != 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp(TcpFlags),
    Udp,
}

/// What one logged packet tells us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub transport: Transport,
    /// IPv4 header longer than 20 bytes, or any IPv6 extension header.
    pub ip_options: bool,
}

impl Probe {
    /// Sent to a broadcast or multicast address (255.255.255.255, 224.0.0.0/4,
    /// ff00::/8): it reaches every host of a segment or group and probes none
    /// of them (a Wake-on-LAN packet to UDP 9, service discovery). The
    /// tripwire rules match only packets addressed to this host; this is the
    /// second line. A subnet's broadcast address is known only to the
    /// routing tables, so only the kernel's rule can tell it.
    pub fn group_addressed(&self) -> bool {
        match self.dst {
            IpAddr::V4(d) => d.is_broadcast() || d.is_multicast(),
            IpAddr::V6(d) => d.is_multicast(),
        }
    }
}

/// Why a packet could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the part named by `what` needs; `need` counts from
    /// the start of the network header.
    Truncated {
        need: usize,
        have: usize,
        what: &'static str,
    },
    /// The IP version nibble is neither 4 nor 6.
    BadVersion(u8),
    /// IPv4 IHL below 5 (the value, in 32-bit words).
    BadHeaderLength(u8),
    /// IPv4 total length shorter than its own header.
    BadTotalLength { total: u16, header: usize },
    /// A later fragment: it carries no transport header.
    NotFirstFragment,
    /// Neither TCP nor UDP (the protocol / next-header number).
    UnsupportedProtocol(u8),
    /// IPv6 "no next header" (59) before any transport header.
    NoNextHeader,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated { need, have, what } => {
                write!(
                    f,
                    "truncated packet: {what} needs {need} bytes, have {have}"
                )
            }
            DecodeError::BadVersion(v) => write!(f, "IP version {v} is neither 4 nor 6"),
            DecodeError::BadHeaderLength(ihl) => {
                write!(
                    f,
                    "illegal IPv4 header length {ihl} (in 32-bit words, minimum 5)"
                )
            }
            DecodeError::BadTotalLength { total, header } => {
                write!(
                    f,
                    "IPv4 total length {total} is shorter than its {header}-byte header"
                )
            }
            DecodeError::NotFirstFragment => {
                write!(f, "not the first fragment: no transport header")
            }
            DecodeError::UnsupportedProtocol(p) => {
                write!(f, "protocol {p} is neither TCP nor UDP")
            }
            DecodeError::NoNextHeader => {
                write!(f, "IPv6 packet has no transport header (next header 59)")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AH: u8 = 51;
const IPV6_NO_NEXT: u8 = 59;
const IPV6_DEST_OPTS: u8 = 60;

/// TCP: ports (4 bytes) through the flags byte at offset 13.
const TCP_NEED: usize = 14;
/// UDP: the two ports.
const UDP_NEED: usize = 4;

/// Decode one packet starting at its network header.
pub fn decode(packet: &[u8]) -> Result<Probe, DecodeError> {
    let first = *packet.first().ok_or(DecodeError::Truncated {
        need: 1,
        have: 0,
        what: "IP version",
    })?;
    match first >> 4 {
        4 => decode_v4(packet),
        6 => decode_v6(packet),
        v => Err(DecodeError::BadVersion(v)),
    }
}

fn need(packet: &[u8], need: usize, what: &'static str) -> Result<(), DecodeError> {
    if packet.len() < need {
        Err(DecodeError::Truncated {
            need,
            have: packet.len(),
            what,
        })
    } else {
        Ok(())
    }
}

/// Big-endian u16 at `at`; callers have checked the length.
fn be16(packet: &[u8], at: usize) -> Option<u16> {
    let b = packet.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn decode_v4(packet: &[u8]) -> Result<Probe, DecodeError> {
    need(packet, 20, "IPv4 header")?;
    let ihl = packet[0] & 0x0f;
    if ihl < 5 {
        return Err(DecodeError::BadHeaderLength(ihl));
    }
    let header = ihl as usize * 4;
    need(packet, header, "IPv4 header with options")?;
    let total = be16(packet, 2).unwrap_or(0);
    if (total as usize) < header {
        return Err(DecodeError::BadTotalLength { total, header });
    }
    // Fragment offset is the low 13 bits of bytes 6-7; the MF flag alone
    // (first fragment) still carries the transport header.
    if be16(packet, 6).unwrap_or(0) & 0x1fff != 0 {
        return Err(DecodeError::NotFirstFragment);
    }
    let proto = packet[9];
    let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    transport(
        packet,
        header,
        proto,
        IpAddr::V4(src),
        IpAddr::V4(dst),
        ihl > 5,
    )
}

fn addr16(packet: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    if let Some(b) = packet.get(at..at + 16) {
        a.copy_from_slice(b);
    }
    Ipv6Addr::from(a)
}

fn decode_v6(packet: &[u8]) -> Result<Probe, DecodeError> {
    need(packet, 40, "IPv6 header")?;
    let src = IpAddr::V6(addr16(packet, 8));
    let dst = IpAddr::V6(addr16(packet, 24));
    let mut next = packet[6];
    let mut off = 40usize;
    // No limit on the number of headers: a limit would be a way past
    // detection (Linux accepts the chain), and each pass reads at least two
    // bytes at `off` and moves `off` on by at least 8, so the loop ends
    // within packet.len() / 8 passes.
    loop {
        match next {
            PROTO_TCP | PROTO_UDP => {
                return transport(packet, off, next, src, dst, off > 40);
            }
            IPV6_NO_NEXT => return Err(DecodeError::NoNextHeader),
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS | IPV6_AH | IPV6_FRAGMENT => {
                let len = match next {
                    IPV6_FRAGMENT => {
                        // Fixed 8 bytes; offset in the high 13 bits of bytes 2-3.
                        need(packet, off + 4, "IPv6 fragment header")?;
                        if be16(packet, off + 2).unwrap_or(0) >> 3 != 0 {
                            return Err(DecodeError::NotFirstFragment);
                        }
                        8
                    }
                    IPV6_AH => {
                        // RFC 4302: payload length in 4-byte units, minus 2.
                        need(packet, off + 2, "IPv6 authentication header")?;
                        (packet[off + 1] as usize + 2) * 4
                    }
                    _ => {
                        // RFC 8200: length in 8-byte units, not counting the first 8.
                        need(packet, off + 2, "IPv6 extension header")?;
                        (packet[off + 1] as usize + 1) * 8
                    }
                };
                next = packet[off];
                off += len;
            }
            other => return Err(DecodeError::UnsupportedProtocol(other)),
        }
    }
}

fn transport(
    packet: &[u8],
    off: usize,
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    ip_options: bool,
) -> Result<Probe, DecodeError> {
    let transport = match proto {
        PROTO_TCP => {
            need(packet, off + TCP_NEED, "TCP header (ports and flags)")?;
            Transport::Tcp(TcpFlags(packet[off + 13]))
        }
        PROTO_UDP => {
            need(packet, off + UDP_NEED, "UDP header (ports)")?;
            Transport::Udp
        }
        other => return Err(DecodeError::UnsupportedProtocol(other)),
    };
    Ok(Probe {
        src,
        dst,
        sport: be16(packet, off).unwrap_or(0),
        dport: be16(packet, off + 2).unwrap_or(0),
        transport,
        ip_options,
    })
}

/// A packet that did not decode, for the log line: `from SRC to DST: ERROR`
/// when its IP header is whole (its source is known even when the header
/// chain was cut), else the error alone.
pub struct Undecodable<'a> {
    pub packet: &'a [u8],
    pub error: &'a DecodeError,
}

impl fmt::Display for Undecodable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.packet;
        let addrs = match p.first().map(|b| b >> 4) {
            Some(4) if p.len() >= 20 => Some((
                IpAddr::V4(Ipv4Addr::new(p[12], p[13], p[14], p[15])),
                IpAddr::V4(Ipv4Addr::new(p[16], p[17], p[18], p[19])),
            )),
            Some(6) if p.len() >= 40 => Some((IpAddr::V6(addr16(p, 8)), IpAddr::V6(addr16(p, 24)))),
            _ => None,
        };
        match addrs {
            Some((src, dst)) => write!(f, "from {src} to {dst}: {}", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

#[cfg(test)]
mod tests;
