//! Tests of the packet decoder: hand-built IPv4 and IPv6 packets (options,
//! fragments, extension headers, bad lengths), every truncation, and
//! pseudo-random input.

use super::*;

// --- hand-built packets -------------------------------------------------

/// IPv4 header (with `opts` bytes of options, a multiple of 4) + transport.
fn v4(proto: u8, opts: usize, frag: u16, l4: &[u8]) -> Vec<u8> {
    let ihl = 5 + opts / 4;
    let mut p = vec![0u8; ihl * 4];
    p[0] = 0x40 | ihl as u8;
    let total = (ihl * 4 + l4.len()) as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[6..8].copy_from_slice(&frag.to_be_bytes());
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&[192, 0, 2, 2]);
    p[16..20].copy_from_slice(&[192, 0, 2, 1]);
    for b in p[20..].iter_mut() {
        *b = 1; // NOP options
    }
    p.extend_from_slice(l4);
    p
}

/// Full 20-byte TCP header.
fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t
}

fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&8u16.to_be_bytes());
    u
}

/// IPv6 header, then the given extension headers (raw bytes each), then l4.
fn v6(next: u8, exts: &[Vec<u8>], l4: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    let plen: usize = exts.iter().map(|e| e.len()).sum::<usize>() + l4.len();
    p[4..6].copy_from_slice(&(plen as u16).to_be_bytes());
    p[6] = next;
    p[7] = 64;
    let src: Ipv6Addr = "2001:db8:1::2".parse().unwrap();
    let dst: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    for e in exts {
        p.extend_from_slice(e);
    }
    p.extend_from_slice(l4);
    p
}

/// Generic 8-byte-unit extension header of `units` extra 8-byte blocks.
fn ext(next: u8, units: u8) -> Vec<u8> {
    let mut e = vec![0u8; (units as usize + 1) * 8];
    e[0] = next;
    e[1] = units;
    e
}

fn frag_hdr(next: u8, offset_units: u16, more: bool) -> Vec<u8> {
    let mut e = vec![0u8; 8];
    e[0] = next;
    let v = (offset_units << 3) | more as u16;
    e[2..4].copy_from_slice(&v.to_be_bytes());
    e
}

/// AH with `len_field` (4-byte units minus 2).
fn ah(next: u8, len_field: u8) -> Vec<u8> {
    let mut e = vec![0u8; (len_field as usize + 2) * 4];
    e[0] = next;
    e[1] = len_field;
    e
}

// --- IPv4 -----------------------------------------------------------------

#[test]
fn v4_tcp_syn() {
    let p = v4(6, 0, 0, &tcp(40000, 22, TcpFlags::SYN));
    let probe = decode(&p).unwrap();
    assert_eq!(probe.src, "192.0.2.2".parse::<IpAddr>().unwrap());
    assert_eq!(probe.dst, "192.0.2.1".parse::<IpAddr>().unwrap());
    assert_eq!((probe.sport, probe.dport), (40000, 22));
    assert_eq!(probe.transport, Transport::Tcp(TcpFlags(TcpFlags::SYN)));
    assert!(!probe.ip_options);
}

#[test]
fn v4_udp() {
    let p = v4(17, 0, 0, &udp(5353, 31337));
    let probe = decode(&p).unwrap();
    assert_eq!((probe.sport, probe.dport), (5353, 31337));
    assert_eq!(probe.transport, Transport::Udp);
}

#[test]
fn v4_options_flagged_and_skipped() {
    let p = v4(6, 8, 0, &tcp(1, 1080, TcpFlags::FIN));
    let probe = decode(&p).unwrap();
    assert!(probe.ip_options);
    assert_eq!(probe.dport, 1080);
    assert_eq!(probe.transport, Transport::Tcp(TcpFlags(TcpFlags::FIN)));
    // Maximal IHL 15: 40 bytes of options.
    let p = v4(17, 40, 0, &udp(7, 9));
    let probe = decode(&p).unwrap();
    assert!(probe.ip_options);
    assert_eq!(probe.dport, 9);
}

#[test]
fn v4_capture_cut_below_total_length_is_fine() {
    // Total length claims 1500 bytes, we hold only what a 128-byte copy
    // range would give, or even just the 14 TCP bytes we need.
    let mut p = v4(6, 0, 0, &tcp(1, 2, TcpFlags::SYN));
    p[2..4].copy_from_slice(&1500u16.to_be_bytes());
    p.resize(20 + 14, 0);
    assert_eq!(decode(&p).unwrap().dport, 2);
    let mut p = v4(17, 0, 0, &udp(1, 53));
    p[2..4].copy_from_slice(&1500u16.to_be_bytes());
    p.truncate(24);
    assert_eq!(decode(&p).unwrap().dport, 53);
}

#[test]
fn v4_truncations() {
    let p = v4(6, 0, 0, &tcp(1, 2, TcpFlags::SYN));
    assert_eq!(
        decode(&p[..19]),
        Err(DecodeError::Truncated {
            need: 20,
            have: 19,
            what: "IPv4 header"
        })
    );
    assert_eq!(
        decode(&p[..33]),
        Err(DecodeError::Truncated {
            need: 34,
            have: 33,
            what: "TCP header (ports and flags)"
        })
    );
    let p = v4(17, 0, 0, &udp(1, 2));
    assert!(matches!(
        decode(&p[..23]),
        Err(DecodeError::Truncated { need: 24, .. })
    ));
    // Options announced but cut off.
    let p = v4(6, 12, 0, &tcp(1, 2, 0));
    assert!(matches!(
        decode(&p[..25]),
        Err(DecodeError::Truncated {
            need: 32,
            what: "IPv4 header with options",
            ..
        })
    ));
    assert_eq!(
        decode(&[]),
        Err(DecodeError::Truncated {
            need: 1,
            have: 0,
            what: "IP version"
        })
    );
}

#[test]
fn v4_bad_header_length() {
    for ihl in 0..5u8 {
        let mut p = v4(6, 0, 0, &tcp(1, 2, 0));
        p[0] = 0x40 | ihl;
        assert_eq!(decode(&p), Err(DecodeError::BadHeaderLength(ihl)));
    }
}

#[test]
fn v4_bad_total_length() {
    let mut p = v4(6, 4, 0, &tcp(1, 2, 0));
    p[2..4].copy_from_slice(&20u16.to_be_bytes());
    assert_eq!(
        decode(&p),
        Err(DecodeError::BadTotalLength {
            total: 20,
            header: 24
        })
    );
}

#[test]
fn v4_fragments() {
    // MF set, offset 0: first fragment, decodes.
    let p = v4(6, 0, 0x2000, &tcp(1, 2, TcpFlags::SYN));
    assert!(decode(&p).is_ok());
    // DF set: fine.
    let p = v4(6, 0, 0x4000, &tcp(1, 2, TcpFlags::SYN));
    assert!(decode(&p).is_ok());
    // Any nonzero offset, with or without MF.
    for frag in [0x0001u16, 0x2001, 0x1fff, 0x0100] {
        let p = v4(6, 0, frag, &tcp(1, 2, TcpFlags::SYN));
        assert_eq!(decode(&p), Err(DecodeError::NotFirstFragment), "{frag:#x}");
    }
}

#[test]
fn v4_other_protocols() {
    for proto in [1u8, 2, 41, 47, 50, 58, 132, 255] {
        let p = v4(proto, 0, 0, &[0u8; 20]);
        assert_eq!(decode(&p), Err(DecodeError::UnsupportedProtocol(proto)));
    }
}

#[test]
fn bad_versions() {
    for v in [0u8, 1, 5, 7, 15] {
        let mut p = v4(6, 0, 0, &tcp(1, 2, 0));
        p[0] = (v << 4) | 5;
        assert_eq!(decode(&p), Err(DecodeError::BadVersion(v)));
    }
}

// --- IPv6 -----------------------------------------------------------------

#[test]
fn v6_tcp_and_udp() {
    let p = v6(
        6,
        &[],
        &tcp(50000, 443, TcpFlags::FIN | TcpFlags::PSH | TcpFlags::URG),
    );
    let probe = decode(&p).unwrap();
    assert_eq!(probe.src, "2001:db8:1::2".parse::<IpAddr>().unwrap());
    assert_eq!(probe.dst, "2001:db8:1::1".parse::<IpAddr>().unwrap());
    assert_eq!((probe.sport, probe.dport), (50000, 443));
    assert_eq!(probe.transport, Transport::Tcp(TcpFlags(0x29)));
    assert!(!probe.ip_options);
    let p = v6(17, &[], &udp(1, 161));
    let probe = decode(&p).unwrap();
    assert_eq!(probe.transport, Transport::Udp);
    assert_eq!(probe.dport, 161);
}

#[test]
fn v6_extension_chain() {
    // hop-by-hop -> routing -> fragment (first) -> AH -> dest opts -> TCP
    let exts = [
        ext(43, 0),
        ext(44, 1),
        frag_hdr(51, 0, true),
        ah(60, 4),
        ext(6, 2),
    ];
    let p = v6(0, &exts, &tcp(1, 8080, TcpFlags::SYN));
    let probe = decode(&p).unwrap();
    assert!(probe.ip_options);
    assert_eq!(probe.dport, 8080);
    assert_eq!(probe.transport, Transport::Tcp(TcpFlags(TcpFlags::SYN)));
    // Each kind alone.
    for (first, e) in [
        (0u8, ext(17, 0)),
        (43, ext(17, 3)),
        (60, ext(17, 0)),
        (44, frag_hdr(17, 0, false)),
        (51, ah(17, 1)),
    ] {
        let p = v6(first, &[e], &udp(9, 4444));
        let probe = decode(&p).unwrap_or_else(|e| panic!("{first}: {e}"));
        assert!(probe.ip_options, "{first}");
        assert_eq!(probe.dport, 4444);
    }
}

#[test]
fn v6_later_fragment() {
    let p = v6(44, &[frag_hdr(6, 1, true)], &tcp(1, 2, 0));
    assert_eq!(decode(&p), Err(DecodeError::NotFirstFragment));
    let p = v6(0, &[ext(44, 0), frag_hdr(17, 8191, false)], &udp(1, 2));
    assert_eq!(decode(&p), Err(DecodeError::NotFirstFragment));
}

#[test]
fn v6_no_next_header_and_unsupported() {
    let p = v6(59, &[], &[]);
    assert_eq!(decode(&p), Err(DecodeError::NoNextHeader));
    let p = v6(60, &[ext(59, 0)], &[]);
    assert_eq!(decode(&p), Err(DecodeError::NoNextHeader));
    let p = v6(58, &[], &[128, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(decode(&p), Err(DecodeError::UnsupportedProtocol(58)));
    // ESP hides what follows.
    let p = v6(0, &[ext(50, 0)], &[0u8; 16]);
    assert_eq!(decode(&p), Err(DecodeError::UnsupportedProtocol(50)));
}

#[test]
fn v6_extension_chains_of_any_length_are_walked() {
    // Linux delivers a chain of many destination options headers; a limit
    // on their number was a way past detection (undecodable, not a probe).
    for n in [8usize, 9, 20, 150] {
        let mut exts: Vec<Vec<u8>> = (0..n).map(|_| ext(60, 0)).collect();
        *exts.last_mut().unwrap() = ext(6, 0);
        let p = v6(60, &exts, &tcp(40000, 1, TcpFlags::SYN));
        let probe = decode(&p).unwrap_or_else(|e| panic!("{n} headers: {e}"));
        assert_eq!(probe.dport, 1, "{n}");
        assert!(probe.ip_options);
        // Every cut short of the flags byte is an error, never a guess.
        for cut in [41, 40 + 8 * n, 40 + 8 * n + 13] {
            assert!(
                matches!(decode(&p[..cut]), Err(DecodeError::Truncated { .. })),
                "{n} headers cut at {cut}"
            );
        }
    }
}

#[test]
fn a_96_byte_destination_options_header_needs_more_than_128_bytes() {
    // The probe of issue 15: TCP at offset 136, past a 128-byte copy.
    let p = v6(60, &[ext(6, 11)], &tcp(40000, 1, TcpFlags::SYN));
    assert_eq!(p.len(), 40 + 96 + 20);
    assert!(matches!(
        decode(&p[..128]),
        Err(DecodeError::Truncated {
            need: 150,
            have: 128,
            what: "TCP header (ports and flags)"
        })
    ));
    let probe = decode(&p).unwrap();
    assert_eq!(probe.transport, Transport::Tcp(TcpFlags(TcpFlags::SYN)));
    assert_eq!(probe.dport, 1);
}

#[test]
fn group_addressed_destinations() {
    let with_dst = |dst: IpAddr| {
        let mut p = match dst {
            IpAddr::V4(_) => v4(17, 0, 0, &udp(40000, 9)),
            IpAddr::V6(_) => v6(17, &[], &udp(40000, 9)),
        };
        match dst {
            IpAddr::V4(d) => p[16..20].copy_from_slice(&d.octets()),
            IpAddr::V6(d) => p[24..40].copy_from_slice(&d.octets()),
        }
        decode(&p).unwrap()
    };
    for d in [
        "255.255.255.255",
        "224.0.0.1",
        "239.255.255.250",
        "ff02::1",
        "ff05::1:3",
    ] {
        assert!(with_dst(d.parse().unwrap()).group_addressed(), "{d}");
    }
    // A subnet's broadcast address looks like any other: the kernel's
    // `fib daddr type local` tells it.
    for d in ["192.0.2.1", "192.0.2.255", "2001:db8:1::1", "fe80::1"] {
        assert!(!with_dst(d.parse().unwrap()).group_addressed(), "{d}");
    }
}

#[test]
fn undecodable_names_the_addresses_when_it_can() {
    let p = v6(60, &[ext(6, 11)], &tcp(40000, 1, TcpFlags::SYN));
    let e = decode(&p[..128]).unwrap_err();
    assert_eq!(
        Undecodable {
            packet: &p[..128],
            error: &e
        }
        .to_string(),
        "from 2001:db8:1::2 to 2001:db8:1::1: truncated packet: TCP header (ports and flags) needs 150 bytes, have 128"
    );
    let p = v4(6, 0, 0, &tcp(1, 2, 0));
    let e = decode(&p[..30]).unwrap_err();
    assert!(
        Undecodable {
            packet: &p[..30],
            error: &e
        }
        .to_string()
        .starts_with("from 192.0.2.2 to 192.0.2.1: truncated packet")
    );
    let e = decode(&[0x45, 0, 0]).unwrap_err();
    assert_eq!(
        Undecodable {
            packet: &[0x45, 0, 0],
            error: &e
        }
        .to_string(),
        e.to_string()
    );
}

#[test]
fn v6_truncations() {
    let p = v6(6, &[], &tcp(1, 2, 0));
    assert!(matches!(
        decode(&p[..39]),
        Err(DecodeError::Truncated { need: 40, .. })
    ));
    assert!(matches!(
        decode(&p[..53]),
        Err(DecodeError::Truncated { need: 54, .. })
    ));
    assert!(decode(&p[..54]).is_ok());
    // Extension header announced but missing.
    let p = v6(0, &[ext(6, 0)], &tcp(1, 2, 0));
    assert!(matches!(
        decode(&p[..41]),
        Err(DecodeError::Truncated {
            need: 42,
            what: "IPv6 extension header",
            ..
        })
    ));
    // A long hop-by-hop pushes TCP past a 128-byte capture.
    let p = v6(0, &[ext(6, 20)], &tcp(1, 2, 0));
    assert!(matches!(
        decode(&p[..128]),
        Err(DecodeError::Truncated {
            need: 222,
            have: 128,
            ..
        })
    ));
    let p = v6(44, &[frag_hdr(6, 0, true)], &tcp(1, 2, 0));
    assert!(matches!(
        decode(&p[..43]),
        Err(DecodeError::Truncated {
            what: "IPv6 fragment header",
            ..
        })
    ));
    let p = v6(51, &[ah(6, 1)], &tcp(1, 2, 0));
    assert!(matches!(
        decode(&p[..41]),
        Err(DecodeError::Truncated {
            what: "IPv6 authentication header",
            ..
        })
    ));
}

#[test]
fn flags_accessors() {
    let f = TcpFlags(0xff);
    assert!(f.fin() && f.syn() && f.rst() && f.psh() && f.ack() && f.urg() && f.ece() && f.cwr());
    let f = TcpFlags(0);
    assert!(
        !(f.fin() || f.syn() || f.rst() || f.psh() || f.ack() || f.urg() || f.ece() || f.cwr())
    );
    assert!(TcpFlags(0x12).syn() && TcpFlags(0x12).ack() && !TcpFlags(0x12).fin());
}

#[test]
fn errors_display() {
    let e = DecodeError::Truncated {
        need: 34,
        have: 20,
        what: "TCP header (ports and flags)",
    };
    assert_eq!(
        e.to_string(),
        "truncated packet: TCP header (ports and flags) needs 34 bytes, have 20"
    );
    assert_eq!(
        DecodeError::UnsupportedProtocol(1).to_string(),
        "protocol 1 is neither TCP nor UDP"
    );
}

// --- robustness -----------------------------------------------------------

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn samples() -> Vec<Vec<u8>> {
    vec![
        v4(6, 0, 0, &tcp(1, 2, TcpFlags::SYN)),
        v4(17, 0, 0, &udp(1, 2)),
        v4(6, 40, 0, &tcp(1, 2, 0)),
        v4(6, 0, 0x2000, &tcp(1, 2, 0)),
        v6(6, &[], &tcp(1, 2, 0x29)),
        v6(17, &[], &udp(1, 2)),
        v6(
            0,
            &[
                ext(43, 0),
                ext(44, 1),
                frag_hdr(51, 0, true),
                ah(60, 4),
                ext(6, 2),
            ],
            &tcp(1, 2, 2),
        ),
        v6(44, &[frag_hdr(17, 0, true)], &udp(1, 2)),
    ]
}

/// Smallest packet that can decode: IPv4 header + UDP ports.
const MIN_OK: usize = 24;

fn check(p: &[u8]) {
    // Must return, never panic; an Ok needs at least the minimum bytes
    // and reports the version the first nibble announced.
    if let Ok(probe) = decode(p) {
        assert!(p.len() >= MIN_OK, "decoded {} bytes: {p:?}", p.len());
        assert_eq!(probe.src.is_ipv4(), p[0] >> 4 == 4);
    }
}

#[test]
fn every_prefix_of_valid_packets() {
    for p in samples() {
        assert!(decode(&p).is_ok());
        for n in 0..p.len() {
            check(&p[..n]);
        }
    }
}

#[test]
fn pseudo_random_input_never_panics() {
    let samples = samples();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut buf = [0u8; 256];
    let mut decoded = 0usize;
    for case in 0..100_000 {
        let len = match case % 3 {
            // Pure noise, first nibble free.
            0 => {
                let len = rng.below(buf.len() + 1);
                for b in buf[..len].iter_mut() {
                    *b = rng.next() as u8;
                }
                len
            }
            // Noise behind a plausible version nibble.
            1 => {
                let len = rng.below(buf.len() + 1);
                for b in buf[..len].iter_mut() {
                    *b = rng.next() as u8;
                }
                if len > 0 {
                    buf[0] = (buf[0] & 0x0f) | if rng.next() & 1 == 0 { 0x40 } else { 0x60 };
                }
                len
            }
            // A valid packet with a few bytes flipped and a random cut.
            _ => {
                let s = &samples[rng.below(samples.len())];
                buf[..s.len()].copy_from_slice(s);
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(s.len());
                    buf[at] ^= 1 << rng.below(8);
                }
                rng.below(s.len() + 1)
            }
        };
        if decode(&buf[..len]).is_ok() {
            decoded += 1;
        }
        check(&buf[..len]);
    }
    // The mutated-valid third must sometimes still decode, or the test
    // would only ever exercise the early error paths.
    assert!(decoded > 1_000, "only {decoded} cases decoded");
}
