//! Tables of probes in, verdicts out: no sockets, no root.

use super::*;
use crate::config::Mode;
use crate::detect::packet::TcpFlags;
use std::cell::RefCell;

const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;

/// An IPv4 TCP packet from `src` to port `dport` with `flags`, with
/// `opts` bytes of IP options.
fn tcp4(src: [u8; 4], dport: u16, flags: u8, opts: usize) -> Vec<u8> {
    let ihl = 5 + opts / 4;
    let mut p = vec![0u8; ihl * 4];
    p[0] = 0x40 | ihl as u8;
    p[2..4].copy_from_slice(&((ihl * 4 + 20) as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&[192, 0, 2, 1]);
    for b in p[20..].iter_mut() {
        *b = 1;
    }
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    p.extend_from_slice(&t);
    p
}

/// The ledger as detection sees it: bans by address.
#[derive(Default)]
struct FakeBans(RefCell<HashMap<Cidr, BanInForce>>);

impl FakeBans {
    fn ban(&self, ip: &str, age_secs: u64, in_kernel: bool, upgradable: bool) {
        self.0.borrow_mut().insert(
            ip.parse().unwrap(),
            BanInForce {
                age: Duration::from_secs(age_secs),
                in_kernel,
                upgradable,
            },
        );
    }
}

impl Bans for FakeBans {
    fn ban_on(&self, net: Cidr, _proto: Proto, _now: Instant) -> Option<BanInForce> {
        self.0.borrow().get(&net).copied()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn detector(edit: impl FnOnce(&mut Config), ignore: &[&str]) -> Detector {
    let mut cfg = Config::default();
    edit(&mut cfg);
    let ignores = ignore
        .iter()
        .map(|n| Ignored {
            net: n.parse().unwrap(),
            why: "ignore file f".into(),
        })
        .collect();
    Detector::new(&cfg, ignores)
}

fn alert(src: &str, port: u16, act: Act) -> Verdict {
    Verdict::Probe {
        src: ip(src),
        lines: vec![HostLine::Alert(ScanType::TcpSynNormal, port)].into(),
        act,
    }
}

fn ban(src: &str, port: u16, mode: &'static str) -> Act {
    ban_on(src, port, mode, Strength::Forgeable)
}

/// What a ban of `src` may escalate to, with nothing ignored near it.
fn wider(src: &str) -> Vec<Cidr> {
    let h = Cidr::host(ip(src));
    if h.is_ipv4() {
        vec![h.widen(24)]
    } else {
        vec![h.widen(56), h.widen(48)]
    }
}

/// The evidence of a ban of `src`: IPv4 by address, IPv6 by its /64.
fn ev(src: &str, scan: ScanType, port: u16, mode: &'static str, strength: Strength) -> Evidence {
    let wanted = if ip(src).is_ipv4() { 32 } else { 64 };
    Evidence {
        addr: ip(src),
        net: Cidr::host(ip(src)).widen(wanted),
        wanted,
        escalate: wider(src),
        scan,
        port,
        mode,
        strength,
    }
}

fn ban_on(src: &str, port: u16, mode: &'static str, strength: Strength) -> Act {
    Act::Ban(Evidence {
        addr: ip(src),
        net: Cidr::host(ip(src)).widen(if ip(src).is_ipv4() { 32 } else { 64 }),
        wanted: if ip(src).is_ipv4() { 32 } else { 64 },
        escalate: wider(src),
        scan: ScanType::TcpSynNormal,
        port,
        mode,
        strength,
    })
}

#[test]
fn probes_in_verdicts_out() {
    let t0 = Instant::now();
    let bans = FakeBans::default();
    let a = [198, 51, 100, 7];
    // scan_trigger 2: the second probe bans.
    let mut d = detector(|c| c.scan_trigger = 2, &["192.0.2.0/24"]);
    let table: Vec<(Vec<u8>, Verdict)> = vec![
        (tcp4(a, 1, SYN, 0), alert("198.51.100.7", 1, Act::Nothing)),
        (
            tcp4(a, 11, SYN, 0),
            // Two ports: more than one forgeable probe.
            alert(
                "198.51.100.7",
                11,
                ban_on("198.51.100.7", 11, "stcp", Strength::Ports),
            ),
        ),
        // ACK: not a probe.
        (tcp4(a, 1, ACK | SYN, 0), Verdict::Nothing),
        // Garbage: undecodable.
        (vec![0x45, 0, 0], Verdict::Nothing),
        // Options set: the IP options line comes first.
        (
            tcp4([198, 51, 100, 8], 1, SYN, 4),
            Verdict::Probe {
                src: ip("198.51.100.8"),
                lines: vec![
                    HostLine::IpOptions(ScanType::TcpSynNormal, 1),
                    HostLine::Alert(ScanType::TcpSynNormal, 1),
                ]
                .into(),
                act: Act::Nothing,
            },
        ),
    ];
    for (i, (pkt, want)) in table.into_iter().enumerate() {
        assert_eq!(d.on_packet(&pkt, t0, &bans), want, "row {i}");
    }
    assert_eq!(d.counts.not_probes, 1);
    assert_eq!(d.counts.undecodable, 1);
    assert_eq!(d.counts.by_scan(), vec![("syn", 3)]);
}

#[test]
fn ignored_sources_say_so_once_a_minute_and_never_ban() {
    let t0 = Instant::now();
    let bans = FakeBans::default();
    let mut d = detector(|_| {}, &["192.0.2.0/24"]);
    let pkt = tcp4([192, 0, 2, 9], 1, SYN, 0);
    let Verdict::Ignored(lines) = d.on_packet(&pkt, t0, &bans) else {
        panic!("not ignored")
    };
    assert_eq!(
        lines,
        [
            "attackalert: Host: 192.0.2.9 found in ignore list (ignore file f), aborting actions: TCP SYN/Normal scan to TCP port: 1"
        ]
    );
    assert_eq!(d.on_packet(&pkt, t0, &bans), Verdict::Ignored(vec![]));
    let later = t0 + Duration::from_secs(61);
    let Verdict::Ignored(lines) = d.on_packet(&pkt, later, &bans) else {
        panic!("not ignored")
    };
    assert!(
        lines[0].ends_with("(1 more probes from this host not logged since its last line)"),
        "{lines:?}"
    );
    assert_eq!(d.counts.ignored, 3);
    // A visitor from an ignored source gets no banner and no ban.
    assert!(matches!(
        d.on_visit(ip("192.0.2.9"), Proto::Tcp, 1, later, &bans),
        Verdict::Ignored(_)
    ));
}

#[test]
fn a_banned_source_is_already_blocked_once_until_its_ban_is_gone() {
    let t0 = Instant::now();
    let bans = FakeBans::default();
    let mut d = detector(|_| {}, &[]);
    let pkt = tcp4([198, 51, 100, 7], 1, SYN, 0);
    let late = |lines: Vec<HostLine>| Verdict::Probe {
        src: ip("198.51.100.7"),
        lines: lines.into(),
        act: Act::Nothing,
    };
    // Banned a second ago in the kernel: a probe that was in flight.
    bans.ban("198.51.100.7", 1, true, false);
    assert_eq!(
        d.on_packet(&pkt, t0, &bans),
        late(vec![HostLine::AlreadyBlocked])
    );
    assert_eq!(d.on_packet(&pkt, t0, &bans), late(vec![]));
    // Banned longer than IN_FLIGHT and still probing: the kernel lost
    // the element, the probe counts and bans again.
    bans.ban("198.51.100.7", 3, true, false);
    assert_eq!(
        d.on_packet(&pkt, t0, &bans),
        alert("198.51.100.7", 1, ban("198.51.100.7", 1, "stcp"))
    );
    // A command-only ban meets a protocol in block mode: upgraded.
    bans.ban("198.51.100.7", 0, false, true);
    assert_eq!(
        d.on_packet(&pkt, t0, &bans),
        alert("198.51.100.7", 1, ban("198.51.100.7", 1, "stcp"))
    );
    // A command-only ban that cannot be upgraded: already blocked, once.
    bans.ban("198.51.100.7", 60, false, false);
    assert_eq!(
        d.on_packet(&pkt, t0, &bans),
        late(vec![HostLine::AlreadyBlocked])
    );
    // The ban ended: the next probe is a new one.
    bans.0.borrow_mut().clear();
    d.released(Cidr::host(ip("198.51.100.7")));
    assert_eq!(
        d.on_packet(&pkt, t0, &bans),
        alert("198.51.100.7", 1, ban("198.51.100.7", 1, "stcp"))
    );
}

#[test]
fn handshake_required_withholds_forgeable_probes_and_bans_connects() {
    let t0 = Instant::now();
    let bans = FakeBans::default();
    let mut d = detector(
        |c| {
            c.ban_requires_handshake = true;
            c.tcp.mode = Mode::ADVANCED;
        },
        &[],
    );
    let pkt = tcp4([198, 51, 100, 7], 1, SYN, 0);
    let withheld = |first| Verdict::Probe {
        src: ip("198.51.100.7"),
        lines: vec![HostLine::Alert(ScanType::TcpSynNormal, 1)].into(),
        act: Act::Withhold { first },
    };
    assert_eq!(d.on_packet(&pkt, t0, &bans), withheld(true));
    assert_eq!(d.on_packet(&pkt, t0, &bans), withheld(false));
    assert_eq!(d.counts.withheld, 1);
    assert_eq!(
        d.on_visit(ip("198.51.100.7"), Proto::Tcp, 143, t0, &bans),
        Verdict::Probe {
            src: ip("198.51.100.7"),
            lines: vec![HostLine::Alert(ScanType::TcpConnect, 143)].into(),
            act: Act::Ban(ev(
                "198.51.100.7",
                ScanType::TcpConnect,
                143,
                "tcp",
                Strength::Handshake
            )),
        }
    );
}

/// An IPv6 TCP packet from `src` to port `dport` with `flags`.
fn tcp6(src: &str, dport: u16, flags: u8) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&20u16.to_be_bytes());
    p[6] = 6;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.parse::<std::net::Ipv6Addr>().unwrap().octets());
    p[24..40].copy_from_slice(
        &"2001:db8:1::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    p.extend_from_slice(&t);
    p
}

#[test]
fn an_ipv4_mapped_source_on_the_wire_is_forged_and_not_acted_on() {
    let t0 = Instant::now();
    let bans = FakeBans::default();
    let mut d = detector(|_| {}, &[]);
    let pkt = tcp6("::ffff:198.51.100.7", 1, SYN);
    assert_eq!(d.on_packet(&pkt, t0, &bans), Verdict::Nothing);
    assert_eq!(d.counts.bogus, 1);
    assert_eq!(d.counts.total_probes(), 0);
    // A real IPv6 source is a probe.
    assert!(matches!(
        d.on_packet(&tcp6("2001:db8:2::7", 1, SYN), t0, &bans),
        Verdict::Probe {
            act: Act::Ban(_),
            ..
        }
    ));
}

/// What a verdict bans, if it bans.
fn banned_net(v: &Verdict) -> Option<(Cidr, u8)> {
    match v {
        Verdict::Probe {
            act: Act::Ban(e), ..
        } => Some((e.net, e.wanted)),
        _ => None,
    }
}

#[test]
fn an_ipv6_scanner_rotating_inside_its_64_is_one_source() {
    let t0 = Instant::now();
    let bans = FakeBans::default();
    let mut d = detector(|c| c.scan_trigger = 3, &[]);
    // Three probes from three addresses of one /64: the third bans the /64.
    let v1 = d.on_packet(&tcp6("2001:db8:5:6::1", 1, SYN), t0, &bans);
    let v2 = d.on_packet(&tcp6("2001:db8:5:6::2", 1, SYN), t0, &bans);
    assert_eq!(banned_net(&v1), None);
    assert_eq!(banned_net(&v2), None);
    let v3 = d.on_packet(&tcp6("2001:db8:5:6:ffff::3", 11, SYN), t0, &bans);
    let (net, wanted) = banned_net(&v3).expect("the third probe of the /64 bans");
    assert_eq!(net.to_string(), "2001:db8:5:6::/64");
    assert_eq!(wanted, 64);
    // The source named in the lines is the address that probed.
    assert!(matches!(v3, Verdict::Probe { src, .. } if src == ip("2001:db8:5:6:ffff::3")));
    // The ledger says the /64 is banned: any address of it is late.
    d.banned(net);
    bans.0.borrow_mut().insert(
        net,
        BanInForce {
            age: Duration::ZERO,
            in_kernel: true,
            upgradable: false,
        },
    );
    assert_eq!(
        d.on_packet(&tcp6("2001:db8:5:6::99", 1, SYN), t0, &bans),
        Verdict::Probe {
            src: ip("2001:db8:5:6::99"),
            lines: vec![HostLine::AlreadyBlocked].into(),
            act: Act::Nothing,
        }
    );
    // Another /64 counts on its own; IPv4 stays by address.
    assert_eq!(
        banned_net(&d.on_packet(&tcp6("2001:db8:5:7::1", 1, SYN), t0, &bans)),
        None
    );
    assert_eq!(d.top(10).len(), 1);
    assert_eq!(d.top(10)[0].0.to_string(), "2001:db8:5:7::/64");
    // ban_prefix6 = 128: single addresses again.
    let mut d = detector(|c| c.ban_prefix6 = 128, &[]);
    let v = d.on_packet(&tcp6("2001:db8:5:6::1", 1, SYN), t0, &bans);
    assert_eq!(banned_net(&v).unwrap().0.to_string(), "2001:db8:5:6::1");
}

#[test]
fn escalation_never_offers_a_prefix_over_an_ignored_address() {
    let d = detector(|_| {}, &["198.18.5.53", "2001:db8:5:7700::1"]);
    let net = |s: &str| s.parse::<Cidr>().unwrap();
    assert_eq!(
        d.escalation_nets(&net("198.18.4.1")),
        [net("198.18.4.0/24")]
    );
    assert!(d.escalation_nets(&net("198.18.5.1")).is_empty());
    assert_eq!(
        d.escalation_nets(&net("2001:db8:6::/64")),
        [net("2001:db8:6::/56"), net("2001:db8:6::/48")]
    );
    // The /56 is clean, the /48 holds the ignored address.
    assert_eq!(
        d.escalation_nets(&net("2001:db8:5:1::/64")),
        [net("2001:db8:5::/56")]
    );
    assert!(d.escalation_nets(&net("2001:db8:5:7700::/64")).is_empty());
    assert!(d.escalation_nets(&net("2001:db8:5::/48")).is_empty());
}

#[test]
fn a_64_that_holds_an_ignored_address_bans_single_addresses() {
    let t0 = Instant::now();
    let bans = FakeBans::default();
    let mut d = detector(|_| {}, &["2001:db8:5:6::53"]);
    let v = d.on_packet(&tcp6("2001:db8:5:6:8000::1", 1, SYN), t0, &bans);
    let (net, wanted) = banned_net(&v).unwrap();
    assert_eq!(net.to_string(), "2001:db8:5:6:8000::1");
    assert_eq!(wanted, 64);
    assert!(!d.covers_ignored(&net));
    let v = d.on_packet(&tcp6("2001:db8:5:6::52", 1, SYN), t0, &bans);
    assert_eq!(banned_net(&v).unwrap().0.to_string(), "2001:db8:5:6::52");
    // The ignored address itself is ignored.
    assert!(matches!(
        d.on_packet(&tcp6("2001:db8:5:6::53", 1, SYN), t0, &bans),
        Verdict::Ignored(_)
    ));
}

#[test]
fn the_storm_guard_needs_two_ports_while_a_flood_lasts() {
    let t0 = Instant::now();
    let bans = FakeBans::default();
    let mut d = detector(
        |c| {
            c.storm_threshold = 5;
            c.storm_hold = Duration::from_secs(60);
        },
        &[],
    );
    let acts: Vec<Act> = (1..=7u8)
        .map(
            |i| match d.on_packet(&tcp4([198, 18, 0, i], 1, SYN, 0), t0, &bans) {
                Verdict::Probe { act, .. } => act,
                v => panic!("{v:?}"),
            },
        )
        .collect();
    assert!(
        acts[..5].iter().all(|a| matches!(a, Act::Ban(_))),
        "{acts:?}"
    );
    assert!(acts[5..].iter().all(|a| *a == Act::Nothing), "{acts:?}");
    // `why` tells a held source from a banned one.
    use crate::detect::story::Decision;
    let last = |d: &Detector, i: u8| d.story(&IpAddr::from([198, 18, 0, i])).map(|s| s.last);
    assert_eq!(last(&d, 1), Some(Decision::Banned));
    assert_eq!(last(&d, 7), Some(Decision::StormHeld));
    let s7 = d.story(&IpAddr::from([198, 18, 0, 7])).unwrap();
    assert_eq!(s7.notes.len(), 1);
    assert_eq!(
        (s7.notes[0].port, s7.notes[0].strength),
        (1, Strength::Forgeable)
    );
    let lines = d.tick(t0);
    assert!(
        lines[0].contains("storm guard on: 5 bans on forgeable evidence"),
        "{lines:?}"
    );
    assert!(d.storm().is_some());
    // A source that probes a second port is banned all the same.
    let v = d.on_packet(&tcp4([198, 18, 0, 6], 11, SYN, 0), t0, &bans);
    assert!(
        matches!(&v, Verdict::Probe { act: Act::Ban(e), .. } if e.strength == Strength::Ports),
        "{v:?}"
    );
    // Over: one probe bans again.
    let later = t0 + Duration::from_secs(75);
    assert!(d.tick(later)[0].contains("storm guard off"));
    assert!(matches!(
        d.on_packet(&tcp4([198, 18, 0, 9], 1, SYN, 0), later, &bans),
        Verdict::Probe {
            act: Act::Ban(_),
            ..
        }
    ));
}

#[test]
fn forgeable_log_withholds_one_protocol_only() {
    let t0 = Instant::now();
    let bans = FakeBans::default();
    let mut d = detector(|c| c.udp.forgeable = crate::config::Forgeable::Log, &[]);
    assert!(matches!(
        d.on_packet(&tcp4([198, 51, 100, 7], 1, SYN, 0), t0, &bans),
        Verdict::Probe {
            act: Act::Ban(_),
            ..
        }
    ));
    assert!(matches!(
        d.on_visit(ip("198.51.100.8"), Proto::Udp, 7, t0, &bans),
        Verdict::Probe {
            act: Act::Withhold { first: true },
            ..
        }
    ));
}

#[test]
fn a_live_peer_is_spared_on_forgeable_evidence_only() {
    let t0 = Instant::now();
    let bans = FakeBans::default();
    let mut d = detector(|c| c.scan_trigger = 2, &[]);
    let a = [198, 51, 100, 7];
    let act = |v: Verdict| match v {
        Verdict::Probe { act, .. } => act,
        v => panic!("{v:?}"),
    };
    // Two ports from a live peer: forgeable all the same, not banned,
    // said once.
    assert_eq!(
        act(d.on_packet_from(&tcp4(a, 1, SYN, 0), true, t0, &bans)),
        Act::Nothing
    );
    assert_eq!(
        act(d.on_packet_from(&tcp4(a, 11, SYN, 0), true, t0, &bans)),
        Act::Spare {
            first: true,
            strength: Strength::Ports
        }
    );
    assert_eq!(
        act(d.on_packet_from(&tcp4(a, 15, SYN, 0), true, t0, &bans)),
        Act::Spare {
            first: false,
            strength: Strength::Ports
        }
    );
    assert_eq!(d.counts.spared, 1);
    // A handshake with a connect-mode port still bans it.
    assert!(matches!(
        act(d.on_visit(ip("198.51.100.7"), Proto::Tcp, 143, t0, &bans)),
        Act::Ban(Evidence {
            strength: Strength::Handshake,
            ..
        })
    ));
    // The same probes from a source that is not live ban it.
    let b = [198, 51, 100, 8];
    d.on_packet_from(&tcp4(b, 1, SYN, 0), false, t0, &bans);
    assert!(matches!(
        act(d.on_packet_from(&tcp4(b, 11, SYN, 0), false, t0, &bans)),
        Act::Ban(_)
    ));
    // protect_live_peers = false: a live peer is banned like anyone.
    let mut d = detector(|c| c.protect_live_peers = false, &[]);
    assert!(matches!(
        act(d.on_packet_from(&tcp4(a, 1, SYN, 0), true, t0, &bans)),
        Act::Ban(_)
    ));
}

#[test]
fn modes_name_the_mode_that_saw_the_probe() {
    assert_eq!(mode_name(ScanType::TcpFin, false), "stcp");
    assert_eq!(mode_name(ScanType::TcpFin, true), "atcp");
    assert_eq!(mode_name(ScanType::Udp, false), "sudp");
    assert_eq!(mode_name(ScanType::Udp, true), "audp");
    assert_eq!(mode_name(ScanType::TcpConnect, true), "tcp");
    assert_eq!(mode_name(ScanType::UdpConnect, false), "udp");
    let mut cfg = Config::default();
    cfg.tcp.mode = Mode::ADVANCED;
    assert_eq!(mode_of_key(&cfg, "syn"), "atcp");
    assert_eq!(mode_of_key(&cfg, "udp"), "sudp");
    assert_eq!(mode_of_key(&cfg, "manual"), "manual");
}

/// Counts this thread's allocations, for `a_probe_allocates_nothing`.
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    thread_local! {
        pub static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    }

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
            unsafe { System.alloc(l) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            unsafe { System.dealloc(p, l) }
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
            unsafe { System.realloc(p, l, new) }
        }
    }

    #[global_allocator]
    static ALLOC: Counting = Counting;

    pub fn count() -> u64 {
        ALLOCATIONS.with(|c| c.get())
    }
}

/// Once the tracker and the stories are full, a probe allocates nothing:
/// known sources and new ones (each evicting one, and turning the
/// stories' generations), IPv4 with IP options, IPv6, and a banned
/// source's late probe. On 5407402 each verdict's lines were a Vec, and
/// each new source's story another.
#[test]
fn a_probe_allocates_nothing() {
    let t0 = Instant::now();
    let bans = FakeBans::default();
    bans.ban("198.51.100.7", 1, true, false);
    let mut d = detector(
        |c| {
            c.max_tracked_sources = 1000;
            c.scan_trigger = 1_000_000;
        },
        &[],
    );
    let mut v4 = tcp4([198, 18, 0, 0], 1, SYN, 4);
    let mut v6 = tcp6("2001:db8:7::1", 2, SYN);
    let late = tcp4([198, 51, 100, 7], 1, SYN, 0);
    let mut probe = |d: &mut Detector, i: u32| {
        let src = (0xC612_0000u32 + i % 3000).to_be_bytes();
        v4[12..16].copy_from_slice(&src);
        v6[8 + 4..8 + 8].copy_from_slice(&(i % 1500).to_be_bytes());
        let a = d.on_packet(&v4, t0, &bans);
        let b = d.on_packet(&v6, t0, &bans);
        let c = d.on_packet(&late, t0, &bans);
        (a, b, c)
    };
    // Warm: every table and both generations at their size.
    for i in 0..20_000 {
        probe(&mut d, i);
    }
    let before = counting::count();
    for i in 0..20_000u32 {
        let (a, b, c) = probe(&mut d, i.wrapping_mul(7919));
        assert!(matches!(a, Verdict::Probe { lines, .. } if lines.len() == 2));
        assert!(matches!(b, Verdict::Probe { lines, .. } if lines.len() == 1));
        assert!(matches!(
            c,
            Verdict::Probe {
                act: Act::Nothing,
                ..
            }
        ));
    }
    assert_eq!(
        counting::count() - before,
        0,
        "allocations in 60,000 probes"
    );
}

/// `why` of a source seen before a flood: its story outlives the 65,536
/// sources that follow it, and after twice as many it is gone while the
/// tracker still counts it (so `why` says "counting", not "never seen").
/// Its two ports, 79 and 111, are two (evidence "ports"): on 5407402 they
/// were one (a bitmap modulo 32), and the evidence "forgeable".
#[test]
fn stories_outlive_a_flood_and_the_tracker_still_counts() {
    use crate::detect::story::{Decision, GENERATION};
    let t0 = Instant::now();
    let bans = FakeBans::default();
    let mut d = detector(
        |c| {
            c.max_tracked_sources = 1_000_000;
            c.scan_trigger = 100;
        },
        &[],
    );
    let a = ip("198.51.100.9");
    d.on_packet(&tcp4([198, 51, 100, 9], 79, SYN, 0), t0, &bans);
    d.on_packet(&tcp4([198, 51, 100, 9], 111, SYN, 0), t0, &bans);
    let story = d.story(&a).unwrap();
    assert_eq!(story.last, Decision::Counted);
    assert_eq!(
        story
            .notes
            .iter()
            .map(|n| (n.port, n.strength))
            .collect::<Vec<_>>(),
        [(79, Strength::Forgeable), (111, Strength::Ports)]
    );
    let mut pkt = tcp4([198, 18, 0, 0], 1, SYN, 0);
    let mut flood = |d: &mut Detector, from: u32, n: u32| {
        for i in from..from + n {
            pkt[12..16].copy_from_slice(&(0xC612_0000u32 + i).to_be_bytes());
            d.on_packet(&pkt, t0, &bans);
        }
    };
    let g = GENERATION as u32;
    flood(&mut d, 0, g);
    assert_eq!(d.story(&a), Some(story));
    flood(&mut d, g, 2 * g);
    assert_eq!(d.story(&a), None);
    assert!(d.stories() <= 2 * GENERATION);
    assert_eq!(d.progress(a, t0).map(|p| p.count), Some(2));
    assert_eq!(d.tracked(), 3 * GENERATION + 1);
}
