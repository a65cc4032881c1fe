//! nflog::datagram: decoding of the nfnetlink_log datagrams down to the raw
//! packet bytes, borrowed from the receive buffer, and the ack that answers
//! a config request.
//!
//! Pure byte handling: knows nothing of the socket, and never panics on what
//! the kernel (or a fuzzer) sends.

use nix::libc;

use super::NflogStats;
use crate::kernel::netlink::{self, NLMSG_ERROR, NLMSG_OVERRUN};

/// One logged packet, borrowed from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NflogPacket<'a> {
    /// nfgenmsg family: AF_INET = 2, AF_INET6 = 10.
    pub family: u8,
    /// Ethertype of the packet (0x0800, 0x86dd), host order.
    pub hw_protocol: u16,
    /// The packet from its network header on, at most `copy_range` bytes.
    /// Empty if the kernel sent no payload attribute.
    pub payload: &'a [u8],
    /// The rule's log prefix without its NUL.
    pub prefix: Option<&'a [u8]>,
    /// Per-group sequence number (NFULA_SEQ).
    pub seq: Option<u32>,
    /// Input interface index.
    pub ifindex_in: Option<u32>,
}

// Netlink and nfnetlink_log numbering (include/uapi/linux/netlink.h,
// netfilter/nfnetlink.h, netfilter/nfnetlink_log.h).
pub(super) const NFNL_SUBSYS_ULOG: u16 = libc::NFNL_SUBSYS_ULOG as u16;
pub(super) const NFULNL_MSG_PACKET: u16 = libc::NFULNL_MSG_PACKET as u16;
const NFGENMSG_LEN: usize = 4;
// Attribute numbers from libc (the uapi header's enum): NFULA_SEQ is 12, not
// 13 as some notes have it; counting the enum by hand is how that happens.
pub(super) const NFULA_PACKET_HDR: u16 = libc::NFULA_PACKET_HDR as u16;
const NFULA_IFINDEX_INDEV: u16 = libc::NFULA_IFINDEX_INDEV as u16;
pub(super) const NFULA_PAYLOAD: u16 = libc::NFULA_PAYLOAD as u16;
const NFULA_PREFIX: u16 = libc::NFULA_PREFIX as u16;
pub(super) const NFULA_SEQ: u16 = libc::NFULA_SEQ as u16;

/// The errno of the NLMSG_ERROR answering (`portid`, `seq`) in a datagram.
pub(super) fn find_ack(d: &[u8], portid: u32, seq: u32) -> Option<i32> {
    netlink::messages(d)
        .map_while(|m| m.ok())
        .find(|m| m.kind == NLMSG_ERROR && m.seq == seq && (m.port == portid || m.port == 0))
        .and_then(|m| m.status())
        .map(|err| -err)
}

/// Decodes one datagram from the NFLOG socket: every netlink message in it,
/// calling `on_packet` for each packet message. Never panics: a message that
/// does not parse is counted in `stats.malformed` and skipped (a broken
/// netlink header ends the datagram, since nothing after it can be framed).
/// Counts `stats.packets`; acks, NLMSG_DONE and other types are ignored.
///
/// Hand-written rather than netlink-packet-netfilter's parser: that one
/// builds a `Vec<PacketNla>` per message and copies the payload and prefix
/// into a `Vec` and a `CString` each (three or more allocations per packet, in
/// the flood path), and it rejects a whole message for one odd attribute. The
/// five attributes we need are a few lines of bounds-checked TLV walking over
/// the receive buffer, and the callback borrows from it.
pub fn parse_datagram(
    buf: &[u8],
    mut on_packet: impl FnMut(&NflogPacket<'_>),
    stats: &mut NflogStats,
) {
    for m in netlink::messages(buf) {
        let Ok(m) = m else {
            // A broken header ends this datagram.
            stats.malformed += 1;
            return;
        };
        match m.kind {
            t if t == (NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_PACKET) => {
                match parse_packet(m.payload) {
                    Some(p) => {
                        stats.packets += 1;
                        on_packet(&p);
                    }
                    None => stats.malformed += 1,
                }
            }
            NLMSG_OVERRUN => stats.overruns += 1,
            _ => {}
        }
    }
}

/// nfgenmsg + attributes of one NFULNL_MSG_PACKET. None if malformed.
pub(super) fn parse_packet(body: &[u8]) -> Option<NflogPacket<'_>> {
    if body.len() < NFGENMSG_LEN {
        return None;
    }
    let mut p = NflogPacket {
        family: body[0],
        hw_protocol: 0,
        payload: &[],
        prefix: None,
        seq: None,
        ifindex_in: None,
    };
    let mut have_hdr = false;
    // The attributes, as `netlink::attrs` walks them (a length that does
    // not fit, or 1 to 3 stray bytes at the end, make the message
    // malformed), without its `Result<_, String>` per attribute: this runs
    // for every packet of a flood.
    let mut rest = &body[NFGENMSG_LEN..];
    while !rest.is_empty() {
        let &[l0, l1, k0, k1, ..] = rest else {
            return None;
        };
        let len = usize::from(u16::from_ne_bytes([l0, l1]));
        let kind = u16::from_ne_bytes([k0, k1]) & 0x3fff;
        if len < 4 || len > rest.len() {
            return None;
        }
        let value = &rest[4..len];
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
        match kind {
            NFULA_PACKET_HDR => {
                // struct nfulnl_msg_packet_hdr { __be16 hw_protocol; u8 hook; u8 pad; }
                p.hw_protocol = be_u16(value)?;
                have_hdr = true;
            }
            NFULA_IFINDEX_INDEV => p.ifindex_in = Some(be_u32(value)?),
            NFULA_PAYLOAD => p.payload = value,
            NFULA_PREFIX => {
                let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
                p.prefix = Some(&value[..end]);
            }
            NFULA_SEQ => p.seq = Some(be_u32(value)?),
            _ => {}
        }
    }
    have_hdr.then_some(p)
}

fn be_u16(b: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(..2)?.try_into().ok()?))
}

fn be_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}
