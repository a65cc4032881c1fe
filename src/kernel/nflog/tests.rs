//! Tests of the NFLOG socket's parts that need no kernel: datagram decoding
//! (batches, truncation, bad attributes, garbage), sequence gaps, the
//! holder's line and the ack, the adaptive switch and the buffer sizes.
//! tests/nflog.rs has the real socket.

use super::adaptive::Adaptive;
use super::datagram::{
    NFNL_SUBSYS_ULOG, NFULA_PACKET_HDR, NFULA_PAYLOAD, NFULA_SEQ, NFULNL_MSG_PACKET,
};
use super::holder::parse_holder;
use super::*;
use crate::kernel::netlink::{NLMSG_DONE, NLMSG_ERROR, NLMSG_HDRLEN, NLMSG_NOOP};

const NLA_HDRLEN: usize = 4;

/// One netlink message with the given type and body, padded.
fn nlmsg(ty: u16, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
    v.extend_from_slice(&ty.to_ne_bytes());
    v.extend_from_slice(&0u16.to_ne_bytes());
    v.extend_from_slice(&0u32.to_ne_bytes());
    v.extend_from_slice(&0u32.to_ne_bytes());
    v.extend_from_slice(body);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v
}

fn nla(ty: u16, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&((NLA_HDRLEN + value.len()) as u16).to_ne_bytes());
    v.extend_from_slice(&ty.to_ne_bytes());
    v.extend_from_slice(value);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v
}

const PACKET: u16 = NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_PACKET;

/// Attribute numbers written out as nfnetlink_log.h's enum has them, so
/// the test does not share a mistake with the constants.
fn packet_body(seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![2, 0, 0x1d, 0x6b]; // AF_INET, v0, group 7531
    b.extend(nla(1, &[0x08, 0x00, 1, 0])); // NFULA_PACKET_HDR
    b.extend(nla(10, b"nftsentry\0")); // NFULA_PREFIX
    b.extend(nla(4, &7u32.to_be_bytes())); // NFULA_IFINDEX_INDEV
    b.extend(nla(3, &[0; 16])); // NFULA_TIMESTAMP, ignored
    b.extend(nla(13, &[0, 0, 0, 99])); // NFULA_SEQ_GLOBAL, ignored
    b.extend(nla(12 | 0x4000, &seq.to_be_bytes())); // NFULA_SEQ, byte-order flag masked
    b.extend(nla(9, payload)); // NFULA_PAYLOAD
    b
}

/// (family, hw_protocol, payload, prefix, seq, ifindex_in), owned.
type Owned = (u8, u16, Vec<u8>, Option<Vec<u8>>, Option<u32>, Option<u32>);

fn owned(p: &NflogPacket<'_>) -> Owned {
    (
        p.family,
        p.hw_protocol,
        p.payload.to_vec(),
        p.prefix.map(<[u8]>::to_vec),
        p.seq,
        p.ifindex_in,
    )
}

fn collect(buf: &[u8], stats: &mut NflogStats) -> Vec<Owned> {
    let mut out = Vec::new();
    parse_datagram(buf, |p| out.push(owned(p)), stats);
    out
}

#[test]
fn parses_a_batch_with_done() {
    let mut d = nlmsg(PACKET, &packet_body(5, &[0x45, 1, 2]));
    d.extend(nlmsg(PACKET, &packet_body(6, &[0x60; 40])));
    d.extend(nlmsg(NLMSG_DONE, &[0, 0, 0, 0]));
    let mut st = NflogStats::default();
    let got = collect(&d, &mut st);
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0],
        (
            2,
            0x0800,
            vec![0x45, 1, 2],
            Some(b"nftsentry".to_vec()),
            Some(5),
            Some(7)
        )
    );
    assert_eq!(got[1].2, vec![0x60; 40]);
    assert_eq!(got[1].4, Some(6));
    assert_eq!(
        st,
        NflogStats {
            packets: 2,
            ..Default::default()
        }
    );
}

#[test]
fn every_truncation_is_counted_never_panics() {
    let mut d = nlmsg(PACKET, &packet_body(1, &[0x45; 60]));
    d.extend(nlmsg(PACKET, &packet_body(2, &[0x45; 60])));
    let one = d.len() / 2;
    for cut in 0..d.len() {
        let mut st = NflogStats::default();
        let got = collect(&d[..cut], &mut st);
        let whole = if cut >= 2 * one {
            2
        } else if cut >= one {
            1
        } else {
            0
        };
        assert_eq!(got.len(), whole, "cut {cut}");
        let broken = u64::from(cut != 0 && cut != one);
        assert_eq!(st.malformed, broken, "cut {cut}");
        assert_eq!(st.packets, whole as u64);
    }
}

#[test]
fn bad_attributes_make_one_message_malformed_not_the_next() {
    // nlmsg length fine, but an attribute claims more than the message has.
    let mut body = vec![2, 0, 0, 1];
    body.extend(nla(NFULA_PACKET_HDR, &[0x08, 0, 1, 0]));
    body.extend_from_slice(&200u16.to_ne_bytes());
    body.extend_from_slice(&NFULA_PAYLOAD.to_ne_bytes());
    let mut d = nlmsg(PACKET, &body);
    d.extend(nlmsg(PACKET, &packet_body(9, &[0x45])));
    let mut st = NflogStats::default();
    let got = collect(&d, &mut st);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].4, Some(9));
    assert_eq!((st.packets, st.malformed), (1, 1));

    // No packet header; a short seq; an attribute length below 4.
    for body in [
        {
            let mut b = vec![2, 0, 0, 1];
            b.extend(nla(NFULA_PAYLOAD, &[1]));
            b
        },
        {
            let mut b = vec![2, 0, 0, 1];
            b.extend(nla(NFULA_PACKET_HDR, &[8, 0, 0, 0]));
            b.extend(nla(NFULA_SEQ, &[1, 2]));
            b
        },
        {
            let mut b = vec![2, 0, 0, 1];
            b.extend_from_slice(&[2, 0, 1, 0]);
            b
        },
        vec![2, 0],
    ] {
        let mut st = NflogStats::default();
        assert!(collect(&nlmsg(PACKET, &body), &mut st).is_empty());
        assert_eq!(st.malformed, 1, "{body:?}");
    }
}

#[test]
fn broken_netlink_headers_end_the_datagram() {
    for d in [
        vec![0u8; 16], // nlmsg_len 0
        {
            let mut v = nlmsg(PACKET, &packet_body(1, &[1]));
            v[0] = 255;
            v[1] = 255;
            v
        }, // too long
        vec![1, 2, 3],
    ] {
        let mut st = NflogStats::default();
        assert!(collect(&d, &mut st).is_empty());
        assert_eq!(st.malformed, 1);
    }
    // Acks, NOOP and foreign types are not packets and not errors.
    let mut d = nlmsg(NLMSG_ERROR, &[0; 20]);
    d.extend(nlmsg(NLMSG_NOOP, &[]));
    d.extend(nlmsg(0x0101, &[1, 2, 3, 4]));
    let mut st = NflogStats::default();
    assert!(collect(&d, &mut st).is_empty());
    assert_eq!(st, NflogStats::default());
}

#[test]
fn garbage_never_panics() {
    // A deterministic xorshift stream, with lengths patched in now and
    // then so the walker gets past the first header.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let len = (next() % 300) as usize;
        let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if len >= 20 && next() % 2 == 0 {
            d[..4].copy_from_slice(&(len as u32).to_ne_bytes());
            d[4..6].copy_from_slice(&PACKET.to_ne_bytes());
        }
        let mut st = NflogStats::default();
        let mut n = 0;
        parse_datagram(
            &d,
            |p| {
                n += 1;
                assert!(p.payload.len() <= d.len());
            },
            &mut st,
        );
        assert_eq!(st.packets, n);
    }
}

#[test]
fn sequence_gaps() {
    assert_eq!(seq_gap(0, 0), 0);
    assert_eq!(seq_gap(5, 9), 4);
    assert_eq!(seq_gap(u32::MAX, 1), 2); // across the wrap
    assert_eq!(seq_gap(100, 3), 0); // backwards: resync
}

#[test]
fn holder_lines_and_ack() {
    let t = " 7531   4242     0 2   128      1  1\n    9 -12345 0 2 128 1 1\n";
    assert_eq!(parse_holder(t, 7531), Some(4242));
    assert_eq!(parse_holder(t, 1), None);
    let mut ack = nlmsg(NLMSG_ERROR, &(-libc::EPERM).to_ne_bytes());
    ack[8..12].copy_from_slice(&1u32.to_ne_bytes());
    assert_eq!(find_ack(&ack, 77, 1), Some(libc::EPERM));
    assert_eq!(find_ack(&ack, 77, 2), None);
    assert_eq!(find_ack(&ack[..10], 77, 1), None);
}

#[test]
fn adaptive_enters_on_a_flood_and_leaves_when_it_ends() {
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let mut a = Adaptive::new(64, 1 << 16, t0);
    // Light traffic: 3,600 packets/s stays immediate.
    for w in 0..10 {
        for k in 0..4 {
            assert_eq!(a.observe(90, ms(w * 100 + k * 25)), None);
        }
    }
    // A flood: 500 packets within a window switches at once.
    let t = 1000;
    assert_eq!(a.observe(0, ms(t)), None); // closes the light window
    assert_eq!(a.observe(300, ms(t + 1)), None);
    assert_eq!(a.observe(250, ms(t + 2)), Some(true));
    // While it lasts (batches of 64 every few ms) it stays batching.
    for k in 1..100 {
        assert_eq!(a.observe(64, ms(t + 2 + k * 2)), None);
    }
    // 2,000/s: between the thresholds, still batching (hysteresis).
    for k in 0..20 {
        assert_eq!(a.observe(20, ms(t + 300 + k * 10)), None);
    }
    // Silence, then a lone probe (flushed by the timer): immediate again.
    assert_eq!(a.observe(1, ms(t + 5000)), Some(false));
    assert_eq!(a.observe(1, ms(t + 6000)), None);
    assert_eq!(a.switches, 2);
}

#[test]
fn batch_buffer_fits_the_batch_within_kernel_limits() {
    assert_eq!(batch_nlbufsiz(128, 64), 64 * (128 + 256));
    assert_eq!(batch_nlbufsiz(0, 64), NLBUFSIZ_MAX);
    assert_eq!(batch_nlbufsiz(10, 2), NLBUFSIZ_MIN);
    assert_eq!(batch_nlbufsiz(u16::MAX, u32::MAX), NLBUFSIZ_MAX);
    assert!((4096..=8192).contains(&immediate_nlbufsiz()));
}

/// `parse_packet`'s own attribute walk accepts and rejects what the walk
/// over `netlink::attrs` it replaced did (the old loop, kept here), for
/// every cut of a packet's body and for bodies with one byte changed.
#[test]
fn the_attribute_walk_is_netlink_attrs() {
    use super::datagram::parse_packet;
    use crate::kernel::netlink;
    fn old(body: &[u8]) -> Option<NflogPacket<'_>> {
        if body.len() < 4 {
            return None;
        }
        let mut p = NflogPacket {
            family: body[0],
            ..NflogPacket::default()
        };
        let mut have_hdr = false;
        for a in netlink::attrs(&body[4..]) {
            let (kind, value) = a.ok()?;
            match kind {
                1 => {
                    p.hw_protocol = u16::from_be_bytes(value.get(..2)?.try_into().ok()?);
                    have_hdr = true;
                }
                4 => p.ifindex_in = Some(u32::from_be_bytes(value.get(..4)?.try_into().ok()?)),
                9 => p.payload = value,
                10 => {
                    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
                    p.prefix = Some(&value[..end]);
                }
                12 => p.seq = Some(u32::from_be_bytes(value.get(..4)?.try_into().ok()?)),
                _ => {}
            }
        }
        have_hdr.then_some(p)
    }
    let body = packet_body(77, &[0x45, 0, 0, 40, 1, 2, 3]);
    for n in 0..=body.len() {
        assert_eq!(parse_packet(&body[..n]), old(&body[..n]), "cut at {n}");
    }
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..5_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut b = body.clone();
        let at = (x % b.len() as u64) as usize;
        b[at] = (x >> 32) as u8;
        let n = ((x >> 40) % (b.len() as u64 + 1)) as usize;
        assert_eq!(parse_packet(&b[..n]), old(&b[..n]), "{b:?} cut at {n}");
    }
    assert!(parse_packet(&body).is_some());
}
