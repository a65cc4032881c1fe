//! Property tests of every parser that reads untrusted input: packets and
//! NFLOG datagrams from the kernel (what an attacker's packets become), DNS
//! replies (what a PTR record's owner writes), set-element dumps, and the
//! admin's config and ignore files. For each: arbitrary input never panics
//! and errors are errors of the right kind; where there is an encoder, what
//! it writes parses back to what went in. fuzz/ runs the same parsers under
//! libFuzzer for longer; these run in the normal suite, no root needed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use proptest::prelude::*;

use nftsentry::cidr::Cidr;
use nftsentry::config::{self, Config, Mode, PortSet, Proto};
use nftsentry::detect::packet::{self, Probe, TcpFlags, Transport};
use nftsentry::error::Kind;
use nftsentry::kernel::nflog::{NflogStats, parse_datagram};

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

// ------------------------------------------------------------ packets ---

/// What the test's packet encoder writes, and what decode must find.
#[derive(Debug, Clone)]
struct Spec {
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    /// None = UDP.
    tcp_flags: Option<u8>,
    /// IPv4: option words (0-10); IPv6: extension headers (0-4).
    extras: usize,
    /// Bytes kept after the fields decode needs (a capture cut short).
    tail: usize,
}

fn spec() -> impl Strategy<Value = Spec> {
    let v4 = (any::<u32>(), any::<u32>(), 0..=10usize).prop_map(|(s, d, o)| {
        (
            IpAddr::V4(Ipv4Addr::from(s)),
            IpAddr::V4(Ipv4Addr::from(d)),
            o,
        )
    });
    let v6 = (any::<u128>(), any::<u128>(), 0..=4usize).prop_map(|(s, d, e)| {
        (
            IpAddr::V6(Ipv6Addr::from(s)),
            IpAddr::V6(Ipv6Addr::from(d)),
            e,
        )
    });
    (
        prop_oneof![v4, v6],
        any::<u16>(),
        any::<u16>(),
        prop::option::of(any::<u8>()),
        0..40usize,
    )
        .prop_map(|((src, dst, extras), sport, dport, tcp_flags, tail)| Spec {
            src,
            dst,
            sport,
            dport,
            tcp_flags,
            extras,
            tail,
        })
}

/// The packet, and how many of its bytes decode needs (up to the TCP flags
/// or the UDP ports).
fn encode(s: &Spec) -> (Vec<u8>, usize) {
    let mut l4 = Vec::new();
    l4.extend(s.sport.to_be_bytes());
    l4.extend(s.dport.to_be_bytes());
    match s.tcp_flags {
        Some(f) => {
            l4.extend([0u8; 8]);
            l4.push(5 << 4);
            l4.push(f);
            l4.extend([0u8; 6]);
        }
        None => l4.extend([0, 8, 0, 0]),
    }
    let proto = if s.tcp_flags.is_some() { 6 } else { 17 };
    let mut p = match (s.src, s.dst) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let ihl = 5 + s.extras;
            let mut h = vec![0u8; ihl * 4];
            h[0] = 0x40 | ihl as u8;
            h[2..4].copy_from_slice(&((ihl * 4 + l4.len()) as u16).to_be_bytes());
            h[8] = 64;
            h[9] = proto;
            h[12..16].copy_from_slice(&a.octets());
            h[16..20].copy_from_slice(&b.octets());
            h[20..].fill(1); // NOP options
            h
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mut h = vec![0u8; 40];
            h[0] = 0x60;
            h[7] = 64;
            h[8..24].copy_from_slice(&a.octets());
            h[24..40].copy_from_slice(&b.octets());
            // A chain of destination-options headers (60), the last one
            // naming the transport protocol.
            let mut next_at = 6;
            for _ in 0..s.extras {
                h[next_at] = 60;
                next_at = h.len();
                h.extend([0u8; 8]);
            }
            h[next_at] = proto;
            h
        }
        _ => unreachable!("one family per packet"),
    };
    let need = p.len() + if s.tcp_flags.is_some() { 14 } else { 4 };
    p.extend(l4);
    // A capture cut anywhere after what decode needs.
    p.truncate(need + s.tail);
    (p, need)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn packet_decode_never_panics(data in bytes(300)) {
        let _ = packet::decode(&data);
    }

    #[test]
    fn packet_decode_reads_back_what_was_encoded(s in spec()) {
        let (p, need) = encode(&s);
        let got: Probe = packet::decode(&p).map_err(|e| TestCaseError::fail(format!("{e}: {p:?}")))?;
        prop_assert_eq!(got.src, s.src);
        prop_assert_eq!(got.dst, s.dst);
        prop_assert_eq!((got.sport, got.dport), (s.sport, s.dport));
        prop_assert_eq!(got.ip_options, s.extras > 0);
        match s.tcp_flags {
            Some(f) => prop_assert_eq!(got.transport, Transport::Tcp(TcpFlags(f))),
            None => prop_assert_eq!(got.transport, Transport::Udp),
        }
        // One byte short of the transport fields is an error, not a guess.
        prop_assert!(packet::decode(&p[..need - 1]).is_err());
    }

    #[test]
    fn packet_decode_of_mutated_packets_never_panics(
        s in spec(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>()
    ) {
        let (mut p, _) = encode(&s);
        for (at, x) in flips {
            let i = at % p.len();
            p[i] ^= x;
        }
        let n = cut % (p.len() + 1);
        let _ = packet::decode(&p[..n]);
    }
}

// -------------------------------------------------------------- NFLOG ---

#[derive(Debug, Clone, PartialEq)]
struct Logged {
    family: u8,
    hw_protocol: u16,
    payload: Vec<u8>,
    prefix: Option<Vec<u8>>,
    seq: Option<u32>,
    ifindex_in: Option<u32>,
}

fn logged() -> impl Strategy<Value = Logged> {
    (
        prop_oneof![Just(2u8), Just(10u8)],
        any::<u16>(),
        bytes(200),
        prop::option::of(prop::collection::vec(1u8..=255, 0..60)),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u32>()),
    )
        .prop_map(
            |(family, hw_protocol, payload, prefix, seq, ifindex_in)| Logged {
                family,
                hw_protocol,
                payload,
                prefix,
                seq,
                ifindex_in,
            },
        )
}

fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut v = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
    v.extend(kind.to_ne_bytes());
    v.extend(value);
    v.resize(v.len().next_multiple_of(4), 0);
    v
}

fn nlmsg(kind: u16, body: &[u8]) -> Vec<u8> {
    let mut v = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
    v.extend(kind.to_ne_bytes());
    v.extend([0u8; 10]);
    v.extend(body);
    v.resize(v.len().next_multiple_of(4), 0);
    v
}

/// NFULNL_MSG_PACKET as nfnetlink_log.c builds it (attribute numbers from
/// include/uapi/linux/netfilter/nfnetlink_log.h, written out here so the
/// test does not share the parser's constants).
fn nflog_message(l: &Logged) -> Vec<u8> {
    let mut b = vec![l.family, 0, 0x1d, 0x6b];
    let mut hdr = l.hw_protocol.to_be_bytes().to_vec();
    hdr.extend([1, 0]);
    b.extend(nla(1, &hdr)); // NFULA_PACKET_HDR
    if let Some(i) = l.ifindex_in {
        b.extend(nla(4, &i.to_be_bytes())); // NFULA_IFINDEX_INDEV
    }
    b.extend(nla(3, &[0; 16])); // NFULA_TIMESTAMP, not read
    if let Some(p) = &l.prefix {
        let mut z = p.clone();
        z.push(0);
        b.extend(nla(10, &z)); // NFULA_PREFIX
    }
    if let Some(s) = l.seq {
        b.extend(nla(12, &s.to_be_bytes())); // NFULA_SEQ
    }
    b.extend(nla(9, &l.payload)); // NFULA_PAYLOAD
    nlmsg(4 << 8, &b)
}

fn parse_all(d: &[u8]) -> (Vec<Logged>, NflogStats) {
    let mut out = Vec::new();
    let mut st = NflogStats::default();
    parse_datagram(
        d,
        |p| {
            out.push(Logged {
                family: p.family,
                hw_protocol: p.hw_protocol,
                payload: p.payload.to_vec(),
                prefix: p.prefix.map(<[u8]>::to_vec),
                seq: p.seq,
                ifindex_in: p.ifindex_in,
            })
        },
        &mut st,
    );
    (out, st)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn nflog_datagrams_read_back(msgs in prop::collection::vec(logged(), 0..8)) {
        let d: Vec<u8> = msgs.iter().flat_map(nflog_message).collect();
        let (got, st) = parse_all(&d);
        prop_assert_eq!(&got, &msgs);
        prop_assert_eq!(st, NflogStats { packets: msgs.len() as u64, ..Default::default() });
    }

    #[test]
    fn nflog_garbage_never_panics(d in bytes(600)) {
        let (got, st) = parse_all(&d);
        prop_assert_eq!(st.packets, got.len() as u64);
    }

    #[test]
    fn nflog_cut_datagrams_keep_the_whole_messages(msgs in prop::collection::vec(logged(), 1..5), cut in any::<usize>()) {
        let parts: Vec<Vec<u8>> = msgs.iter().map(nflog_message).collect();
        let d: Vec<u8> = parts.concat();
        let n = cut % (d.len() + 1);
        let (got, st) = parse_all(&d[..n]);
        // Every message wholly inside the cut, in order; the cut one counted.
        let mut end = 0;
        let whole = parts.iter().take_while(|p| { end += p.len(); end <= n }).count();
        prop_assert_eq!(&got[..], &msgs[..whole]);
        let boundary = parts.iter().scan(0, |s, p| { *s += p.len(); Some(*s) }).any(|e| e == n);
        prop_assert_eq!(st.malformed, u64::from(n != 0 && !boundary));
    }
}

// ---------------------------------------------------- set-element dumps ---

fn element() -> impl Strategy<Value = nftsentry::kernel::nft::Element> {
    (
        prop_oneof![Just(4usize), Just(16usize), Just(2usize)],
        any::<[u8; 16]>(),
        prop::option::of(1u64..=u32::MAX as u64 * 1000),
        prop::option::of(1u64..=u32::MAX as u64 * 1000),
        any::<bool>(),
        prop::option::of(any::<(u64, u64)>()),
    )
        .prop_map(|(w, key, t, x, end, c)| nftsentry::kernel::nft::Element {
            key: key[..w].to_vec(),
            timeout: t.map(Duration::from_millis),
            expiration: x.map(Duration::from_millis),
            interval_end: end,
            counter: c,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// What Batch encodes for the kernel is what the dump parser reads
    /// (the kernel answers a dump with the same attribute layout).
    #[test]
    fn batch_elements_read_back_through_the_dump_parser(elems in prop::collection::vec(element(), 1..50)) {
        use netlink_packet_core::Emitable;
        use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage};
        use nftsentry::kernel::nft::{Batch, FAMILY, ListedElement, parse_element_dump};
        let mut b = Batch::new();
        b.add_elements(FAMILY, "nftsentry", "blocked4", None, &elems);
        let mut got = Vec::new();
        for q in b.messages() {
            let m = NetfilterMessage::new(NetfilterHeader::new(q.family, 0, 0), q.message.clone());
            let mut buf = vec![0u8; m.buffer_len()];
            m.emit(&mut buf);
            parse_element_dump(&buf, &mut got).map_err(TestCaseError::fail)?;
        }
        let want: Vec<ListedElement> = elems
            .iter()
            .map(|e| ListedElement {
                key: e.key.clone(),
                interval_end: e.interval_end,
                timeout: e.timeout,
                expiration: e.expiration,
                counter: e.counter,
            })
            .collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn element_dump_garbage_never_panics(d in bytes(400)) {
        let mut out = Vec::new();
        let _ = nftsentry::kernel::nft::parse_element_dump(&d, &mut out);
    }
}

// ------------------------------------------------------------------ DNS ---

fn label() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_-]{1,20}"
}

fn wire(name: &str) -> Vec<u8> {
    let mut w = Vec::new();
    for l in name.split('.') {
        w.push(l.len() as u8);
        w.extend(l.as_bytes());
    }
    w.push(0);
    w
}

/// A reply to (id, qname) with one PTR record whose owner is a pointer to
/// the question, and whose question is written in `qcase` letter case.
fn ptr_reply(id: u16, qname: &str, target: &str) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend([0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    m.extend(wire(qname));
    m.extend([0, 12, 0, 1]);
    let rdata = wire(target);
    m.extend([0xc0, 12, 0, 12, 0, 1, 0, 0, 1, 44]);
    m.extend((rdata.len() as u16).to_be_bytes());
    m.extend(rdata);
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn ptr_replies_read_back(ip in any::<IpAddr>(), id in any::<u16>(), labels in prop::collection::vec(label(), 1..6), upper in any::<bool>()) {
        use nftsentry::service::resolve::{parse_ptr_response, ptr_name};
        let q = ptr_name(ip);
        let name = labels.join(".");
        prop_assume!(name.len() <= 200);
        // 0x20 randomisation: a server may echo the question in another case.
        let asked = if upper { q.to_ascii_uppercase() } else { q.clone() };
        let reply = ptr_reply(id, &asked, &name);
        prop_assert_eq!(parse_ptr_response(&reply, id, &q), Ok(Some(name.clone())));
        // Another id is not an answer to this query.
        prop_assert!(parse_ptr_response(&reply, id.wrapping_add(1), &q).is_err());
        // Every cut reply is refused or has no name, never a panic.
        for n in 0..reply.len() {
            let r = parse_ptr_response(&reply[..n], id, &q);
            prop_assert!(!matches!(r, Ok(Some(_))), "cut at {} gave {:?}", n, r);
        }
    }

    #[test]
    fn dns_garbage_never_panics(d in bytes(300), id in any::<u16>()) {
        let _ = nftsentry::service::resolve::parse_ptr_response(&d, id, "7.100.51.198.in-addr.arpa");
    }
}

// -------------------------------------------------------- config files ---

fn duration_secs() -> impl Strategy<Value = Duration> {
    (1u64..=365 * 86_400).prop_map(Duration::from_secs)
}

fn portset() -> impl Strategy<Value = PortSet> {
    prop::collection::vec((1u16..=65535, 0u16..300), 0..12).prop_map(|v| {
        PortSet::from_ranges(v.into_iter().map(|(a, len)| (a, a.saturating_add(len))))
    })
}

fn mode() -> impl Strategy<Value = (Mode, &'static str)> {
    prop_oneof![
        Just((Mode::OFF, "\"off\"")),
        Just((Mode::STEALTH, "\"stealth\"")),
        Just((Mode::ADVANCED, "\"advanced\"")),
        Just((Mode::CONNECT, "\"connect\"")),
        Just((
            Mode::combine(&["advanced", "connect"]).unwrap(),
            "[\"connect\", \"advanced\"]"
        )),
    ]
}

/// Config values, the text that writes them, and the line of each key.
#[derive(Debug, Clone)]
struct Written {
    text: String,
    /// (line, key, a value of the wrong type for it)
    lines: Vec<(usize, String, &'static str)>,
    want: Config,
}

#[allow(clippy::too_many_arguments)]
fn written() -> impl Strategy<Value = Written> {
    (
        "[a-zA-Z][a-zA-Z0-9_-]{0,30}",
        -300i32..=300,
        any::<u16>(),
        "[ !#-\\[\\]-~]{0,40}",
        (duration_secs(), duration_secs()),
        (
            1u32..=config::SET_SIZE_MAX,
            any::<u32>(),
            1usize..=config::MAX_TRACKED_SOURCES_MAX,
        ),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        (mode(), portset(), 1u16..=65535, portset()),
        (mode(), portset(), any::<bool>()),
    )
        .prop_map(
            |(
                table,
                prio,
                group,
                prefix,
                (ban, window),
                (size, trigger, tracked),
                (keep, local, resolve, handshake),
                ((tm, tmode), tports, tadv, texcl),
                ((um, umode), uports, uarray),
            )| {
                let mut want = Config {
                    source: "test.toml".into(),
                    table: table.clone(),
                    chain_priority: prio,
                    nflog_group: group,
                    log_prefix: prefix.clone(),
                    ban_time: ban,
                    scan_window: window,
                    set_size: size,
                    scan_trigger: trigger,
                    max_tracked_sources: tracked,
                    keep_table_on_exit: keep,
                    ignore_local: local,
                    resolve_host: resolve,
                    ban_requires_handshake: handshake,
                    ignore_file: None,
                    ..Config::default()
                };
                want.tcp.mode = tm;
                want.tcp.ports = tports.clone();
                want.tcp.advanced_ports = tadv;
                want.tcp.advanced_exclude = texcl.clone();
                want.udp.mode = um;
                want.udp.ports = uports.clone();
                let dur = |d: Duration| format!("\"{}\"", config::format_duration(d));
                let ports = |p: &PortSet, array: bool| {
                    if array {
                        let items: Vec<String> = p
                            .ranges()
                            .iter()
                            .map(|&(a, b)| {
                                if a == b {
                                    a.to_string()
                                } else {
                                    format!("\"{a}-{b}\"")
                                }
                            })
                            .collect();
                        format!("[{}]", items.join(", "))
                    } else {
                        format!("\"{p}\"")
                    }
                };
                // (key as written, value, wrong-typed value)
                let top: Vec<(&str, String, &'static str)> = vec![
                    ("table", format!("\"{table}\""), "5"),
                    ("chain_priority", prio.to_string(), "\"-10\""),
                    ("nflog_group", group.to_string(), "true"),
                    ("log_prefix", format!("\"{prefix}\""), "[1]"),
                    ("ban_time", dur(ban), "3600"),
                    ("scan_window", dur(window), "1.5"),
                    ("set_size", size.to_string(), "\"big\""),
                    ("scan_trigger", trigger.to_string(), "-1"),
                    ("max_tracked_sources", tracked.to_string(), "0"),
                    ("keep_table_on_exit", keep.to_string(), "\"1\""),
                    ("ignore_local", local.to_string(), "1"),
                    ("resolve_host", resolve.to_string(), "\"yes\""),
                    ("ban_requires_handshake", handshake.to_string(), "{}"),
                    ("ignore_file", "\"\"".into(), "\"relative/path\""),
                ];
                let tcp: Vec<(&str, String, &'static str)> = vec![
                    ("mode", tmode.into(), "\"sideways\""),
                    ("ports", ports(&tports, false), "\"1,70000\""),
                    ("advanced_ports", tadv.to_string(), "65536"),
                    ("advanced_exclude", ports(&texcl, true), "[0]"),
                ];
                let udp: Vec<(&str, String, &'static str)> = vec![
                    ("mode", umode.into(), "[\"stealth\", \"advanced\"]"),
                    ("ports", ports(&uports, uarray), "\"5-2\""),
                ];
                let mut text = String::from("# generated\n\n");
                let mut lines = Vec::new();
                let mut line = 3;
                for (section, keys) in [("", top), ("tcp", tcp), ("udp", udp)] {
                    if !section.is_empty() {
                        text.push_str(&format!("\n[{section}]\n"));
                        line += 2;
                    }
                    for (k, v, bad) in keys {
                        text.push_str(&format!("{k} = {v}\n"));
                        let path = if section.is_empty() {
                            k.to_string()
                        } else {
                            format!("{section}.{k}")
                        };
                        lines.push((line, path, bad));
                        line += 1;
                    }
                }
                Written { text, lines, want }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn config_text_reads_back(w in written()) {
        let got = Config::parse(&w.text, "test.toml").map_err(|e| TestCaseError::fail(format!("{e}\n{}", w.text)))?;
        prop_assert_eq!(got, w.want);
    }

    /// A wrong value on any line is reported with that line and key, as a
    /// config error (exit 78).
    #[test]
    fn a_bad_value_is_reported_at_its_line(w in written(), pick in any::<prop::sample::Index>()) {
        let (line, key, bad) = pick.get(&w.lines).clone();
        let text: String = w
            .text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i + 1 == line {
                    format!("{} = {bad}\n", l.split(" = ").next().unwrap())
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        let e = Config::parse(&text, "test.toml").expect_err(&text);
        prop_assert_eq!(e.kind, Kind::Config);
        let at = format!("test.toml:{line}: key `{key}`: ");
        prop_assert!(e.message.starts_with(&at), "{} does not start with {}\n{}", e.message, at, text);
    }

    #[test]
    fn config_garbage_never_panics(text in "\\PC{0,300}") {
        if let Err(e) = Config::parse(&text, "g.toml") {
            prop_assert_eq!(e.kind, Kind::Config);
            prop_assert!(e.message.starts_with("g.toml:"), "{}", e.message);
        }
    }

    #[test]
    fn config_shaped_garbage_never_panics(
        keys in prop::collection::vec(
            (prop::sample::select(config::TOP_KEYS.iter().chain(config::PROTOCOL_KEYS).copied().collect::<Vec<_>>()),
             "[\\[\\]{}\"'0-9a-z,.=: -]{0,30}"),
            0..10),
    ) {
        let text: String = keys.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        if let Err(e) = Config::parse(&text, "g.toml") {
            prop_assert_eq!(e.kind, Kind::Config);
            prop_assert!(e.message.starts_with("g.toml:"), "{}", e.message);
        }
    }

    #[test]
    fn portset_list_form_reads_back(p in portset()) {
        prop_assert_eq!(PortSet::parse(&p.to_string()), Ok(p.clone()));
        prop_assert_eq!(PortSet::parse_for(&p.to_string(), Proto::Udp), Ok(p.clone()));
        let n: usize = p.iter().count();
        prop_assert_eq!(n, p.len());
    }

    #[test]
    fn port_lists_never_panic(s in "[0-9a-z:, -]{0,40}") {
        for proto in [Proto::Tcp, Proto::Udp] {
            if let Ok(p) = PortSet::parse_for(&s, proto) {
                prop_assert!(!p.contains(0));
                prop_assert_eq!(PortSet::parse(&p.to_string()), Ok(p.clone()));
            }
        }
    }

    #[test]
    fn durations_read_back(ms in any::<u64>()) {
        let d = Duration::from_millis(ms);
        prop_assert_eq!(config::parse_duration(&config::format_duration(d)), Ok(d));
    }

    #[test]
    fn durations_never_panic(s in "[0-9a-z ]{0,30}") {
        let _ = config::parse_duration(&s);
    }
}

// ------------------------------------------------------------ ignore file ---

fn cidr() -> impl Strategy<Value = Cidr> {
    prop_oneof![
        (any::<u32>(), 0u8..=32)
            .prop_map(|(a, p)| Cidr::new(IpAddr::V4(Ipv4Addr::from(a)), p).unwrap()),
        (any::<u128>(), 0u8..=128)
            .prop_map(|(a, p)| Cidr::new(IpAddr::V6(Ipv6Addr::from(a)), p).unwrap()),
    ]
}

/// How one entry is written: plain, with a trailing comment, indented, with
/// a CR (a file from Windows); interleaved comment and blank lines.
fn decorated(c: &Cidr, style: u8) -> String {
    match style % 5 {
        0 => format!("{c}\n"),
        1 => format!("{c} # note\n"),
        2 => format!("\t {c}\t\r\n"),
        3 => format!("# a comment\n\n{c}#tight\n"),
        _ => format!("{}/{}\n", c.addr(), c.prefix()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn ignore_files_read_back(entries in prop::collection::vec((cidr(), any::<u8>()), 0..20)) {
        let text: String = entries.iter().map(|(c, s)| decorated(c, *s)).collect();
        let got = config::ignore::parse(&text, "ignore").map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let want: Vec<Cidr> = entries.iter().map(|(c, _)| *c).collect();
        prop_assert_eq!(got, want);
    }

    /// A garbage line among good ones is reported with its own line number.
    #[test]
    fn a_garbage_line_is_reported_at_its_line(
        entries in prop::collection::vec(cidr(), 0..10),
        at in any::<prop::sample::Index>(),
        junk in "[a-z0-9./:]{1,20}",
    ) {
        prop_assume!(junk.split('/').next().unwrap().parse::<IpAddr>().is_err());
        let mut lines: Vec<String> = entries.iter().map(|c| c.to_string()).collect();
        let i = at.index(lines.len() + 1);
        lines.insert(i, junk.clone());
        let e = config::ignore::parse(&lines.join("\n"), "ign").unwrap_err();
        prop_assert_eq!(e.kind, Kind::Config);
        prop_assert!(e.message.starts_with(&format!("ign:{}: ", i + 1)), "{}", e.message);
    }

    #[test]
    fn ignore_garbage_never_panics(text in "\\PC{0,200}") {
        if let Err(e) = config::ignore::parse(&text, "ign") {
            prop_assert_eq!(e.kind, Kind::Config);
        }
    }
}

// ------------------------------------------------------ hosts.deny edits ---

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Adding a line and removing it gives back the file byte for byte, and
    /// a line is never added twice, whatever the file held.
    #[test]
    fn hosts_deny_add_then_remove_is_the_identity(
        content in prop::collection::vec(prop_oneof![Just(b'\n'), Just(b' '), Just(b'\t'), Just(b'\x0b'), any::<u8>()], 0..200),
        line in "[!-~][ -~\u{a0}\u{b}\u{c}]{0,30}",
    ) {
        use nftsentry::respond::actions::hosts_deny::{with_line, without_line};
        prop_assume!(!line.contains(['\n', '\r']));
        if let Some(added) = with_line(&content, &line) {
            prop_assert_eq!(with_line(&added, &line), None);
            prop_assert_eq!(without_line(&added, &line), Some(content.clone()));
        }
    }
}

// ---------------------------------------------------------- state file ---

fn entry() -> impl Strategy<Value = nftsentry::journal::state::Entry> {
    use nftsentry::config::RouteMode;
    use nftsentry::journal::state::{Applied, Entry};
    (
        any::<IpAddr>(),
        "[a-z_-]{1,12}",
        prop::option::of(prop_oneof![Just(Proto::Tcp), Just(Proto::Udp)]),
        any::<u16>(),
        (any::<u32>(), any::<u32>(), any::<u64>(), 1u32..100),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        prop::option::of(prop_oneof![
            Just(RouteMode::Blackhole),
            Just(RouteMode::Unreachable),
            Just(RouteMode::Prohibit)
        ]),
        any::<bool>(),
        prop::option::of("[a-z]{1,8}"),
    )
        .prop_map(
            |(
                addr,
                scan,
                proto,
                port,
                (banned, len, length, repeat),
                (set, kill_route, command),
                route,
                hosts_deny,
                mode,
            )| Entry {
                addr: nftsentry::cidr::Cidr::host(addr),
                scan,
                proto,
                mode: mode.unwrap_or_default(),
                port,
                banned_at: u64::from(banned),
                expires_at: u64::from(banned) + u64::from(len),
                length,
                repeat,
                evidence: nftsentry::strength::Strength::Forgeable,
                applied: Applied {
                    set,
                    route,
                    kill_route,
                    hosts_deny,
                    command,
                },
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn state_files_read_back(entries in prop::collection::vec(entry(), 0..20)) {
        use nftsentry::journal::state::{parse, render};
        let text = render(entries.iter());
        let (got, problems) = parse(text.as_bytes(), "state");
        // A repeated address is the journal's way, not a problem.
        prop_assert!(problems.is_empty(), "{:?}", problems);
        // A later line for the same address wins, as in the file.
        let mut want = std::collections::BTreeMap::new();
        for e in &entries {
            want.insert(e.addr, e.clone());
        }
        prop_assert_eq!(got, want);
    }

    /// A state file cut at any byte keeps every whole line, reports the cut
    /// one, and never panics.
    #[test]
    fn state_files_cut_anywhere(entries in prop::collection::vec(entry(), 1..8), cut in any::<prop::sample::Index>()) {
        use nftsentry::journal::state::{parse, render};
        let text = render(entries.iter());
        let n = cut.index(text.len() + 1);
        let (got, problems) = parse(&text.as_bytes()[..n], "state");
        let whole = text[..n].matches('\n').count();
        let header = nftsentry::journal::state::HEADER.matches('\n').count();
        let lines = whole.saturating_sub(header);
        let kept: std::collections::BTreeSet<nftsentry::cidr::Cidr> = entries[..lines].iter().map(|e| e.addr).collect();
        prop_assert_eq!(got.keys().copied().collect::<std::collections::BTreeSet<_>>(), kept);
        let cut_in_a_line = n > nftsentry::journal::state::HEADER.len() && !text[..n].ends_with('\n');
        prop_assert_eq!(problems.len(), usize::from(cut_in_a_line), "{:?}", problems);
    }

    /// A journal of `ban` and `end` records for a few addresses, in any
    /// order: what it leaves is what applying them in order leaves, with
    /// nothing reported.
    #[test]
    fn state_journals_read_back_as_their_net_result(
        records in prop::collection::vec((0usize..4, prop::option::of(entry())), 0..30)
    ) {
        use nftsentry::journal::state::{parse, render, render_end_into, render_entry};
        let pool: [Cidr; 4] = [
            "192.0.2.2".parse().unwrap(),
            "198.51.100.0/24".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
            "2001:db8:1:2::/64".parse().unwrap(),
        ];
        let mut text = render([]);
        let mut want = std::collections::BTreeMap::new();
        for (i, e) in records {
            match e {
                Some(mut e) => {
                    e.addr = pool[i];
                    text.push_str(&render_entry(&e));
                    want.insert(e.addr, e);
                }
                None => {
                    render_end_into(&mut text, &pool[i]);
                    want.remove(&pool[i]);
                }
            }
        }
        let (got, problems) = parse(text.as_bytes(), "state");
        prop_assert!(problems.is_empty(), "{:?}", problems);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn state_garbage_never_panics(d in bytes(400)) {
        let _ = nftsentry::journal::state::parse(&d, "state");
    }
}

// ----------------------------------------------------- portsentry import ---

/// A portsentry.conf line: a PortSentry key with a value, quoted or not,
/// or something else.
fn portsentry_line() -> impl Strategy<Value = String> {
    let key = prop::sample::select(nftsentry::cli::import::KEYS.to_vec());
    let value = prop_oneof![
        "[0-9,]{0,40}",
        "[0-9]{1,6}",
        Just("/sbin/route add -host $TARGET$ reject".to_string()),
        Just("/sbin/iptables -I INPUT -s $TARGET$ -j DROP".to_string()),
        Just("ALL: $TARGET$".to_string()),
        "[ -~]{0,40}",
    ];
    prop_oneof![
        (key.clone(), value.clone()).prop_map(|(k, v)| format!("{k}=\"{v}\"")),
        (key.clone(), value).prop_map(|(k, v)| format!("{k} = {v}")),
        "#[ -~]{0,30}",
        "[ -~]{0,30}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the old files say, the config the importer writes passes
    /// the config parser (its promise: `nftsentry check` accepts it).
    #[test]
    fn imported_configs_parse(
        lines in prop::collection::vec(portsentry_line(), 0..25),
        tcp_mode in prop::option::of(prop::sample::select(vec!["tcp", "stcp", "atcp", "\"atcp\"", "bogus"])),
        ignore in prop::collection::vec(prop_oneof![cidr().prop_map(|c| c.to_string()), "[ -~]{0,20}"], 0..6),
    ) {
        use nftsentry::cli::import::{DebianDefault, IgnoreImport, PortsentryConf, convert};
        let conf = PortsentryConf::parse(lines.join("\n").as_bytes(), "portsentry.conf");
        let default = tcp_mode
            .and_then(|m| DebianDefault::parse(&format!("TCP_MODE={m}\nUDP_MODE=sudp\n"), "default").ok());
        let ignore = IgnoreImport::parse(&ignore.join("\n"), "portsentry.ignore");
        for write in [None, Some(std::path::Path::new("/etc/nftsentry/ignore"))] {
            let out = convert(&conf, default.as_ref(), Some(&ignore), write, &[]);
            if let Err(e) = Config::parse(&out.toml, "imported.toml") {
                return Err(TestCaseError::fail(format!("{e}\n{}", out.toml)));
            }
        }
        prop_assert!(config::ignore::parse(&ignore.file_text(), "ignore").is_ok());
    }
}
