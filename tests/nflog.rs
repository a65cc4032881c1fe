//! The NFLOG socket against the real kernel: a victim namespace with a table
//! `inet nflogtest` whose rules `log group G` TCP and UDP to port 9, probes
//! from an attacker namespace, v4 and v6.
//!
//! The latency and flood measurements are in benches/nflog.rs.
mod common;
use common::*;

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nftsentry::error::Kind;
use nftsentry::kernel::nflog::{NflogConfig, NflogSocket, NflogStats};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

const GROUP: u16 = 7531;

/// Victim and attacker with the test table in the victim.
fn setup(tag: &str) -> Pair {
    let p = Pair::new(tag);
    p.victim.nft(&["add", "table", "inet", "nflogtest"]);
    p.victim.nft(&[
        "add chain inet nflogtest input { type filter hook input priority 0; policy accept; }",
    ]);
    for proto in ["tcp", "udp"] {
        p.victim.nft(&[&format!(
            "add rule inet nflogtest input {proto} dport 9 counter log prefix \"nflogtest\" group {GROUP}"
        )]);
    }
    p
}

fn open_in(ns: &Netns, cfg: NflogConfig) -> NflogSocket {
    ns.enter(move || NflogSocket::open(&cfg))
        .unwrap_or_else(|e| panic!("open: {e}"))
}

/// A UDP socket living in the attacker namespace, usable from any thread.
fn udp_in(ns: &Netns, v6: bool) -> UdpSocket {
    ns.enter(move || UdpSocket::bind(if v6 { "[::]:0" } else { "0.0.0.0:0" }).unwrap())
}

fn victim(v6: bool) -> SocketAddr {
    if v6 {
        format!("[{VICTIM6}]:9").parse().unwrap()
    } else {
        format!("{VICTIM4}:9").parse().unwrap()
    }
}

#[derive(Debug, Clone)]
struct Got {
    family: u8,
    hw_protocol: u16,
    payload: Vec<u8>,
    prefix: Option<Vec<u8>>,
    seq: Option<u32>,
    ifindex_in: Option<u32>,
}

/// Drains (with poll) until `want` packets arrived or `timeout` passed.
fn collect(sock: &mut NflogSocket, want: usize, timeout: Duration) -> Vec<Got> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        wait_readable(sock, left);
        sock.drain(|p| {
            out.push(Got {
                family: p.family,
                hw_protocol: p.hw_protocol,
                payload: p.payload.to_vec(),
                prefix: p.prefix.map(<[u8]>::to_vec),
                seq: p.seq,
                ifindex_in: p.ifindex_in,
            })
        })
        .expect("drain");
    }
    out
}

fn wait_readable(sock: &NflogSocket, timeout: Duration) -> bool {
    let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    poll(&mut fds, PollTimeout::from(ms)).expect("poll") > 0
}

/// (protocol, source address bytes, destination port, TCP flags) decoded by
/// hand from the copied network header.
fn decode(p: &[u8]) -> (u8, Vec<u8>, u16, Option<u8>) {
    let (proto, src, l4) = match p[0] >> 4 {
        4 => (p[9], p[12..16].to_vec(), usize::from(p[0] & 0xf) * 4),
        6 => (p[6], p[8..24].to_vec(), 40),
        v => panic!("IP version {v}"),
    };
    let dport = u16::from_be_bytes([p[l4 + 2], p[l4 + 3]]);
    let flags = (proto == 6).then(|| p[l4 + 13]);
    (proto, src, dport, flags)
}

fn ifindex(ns: &Netns, dev: &str) -> u32 {
    let out = String::from_utf8(ns.ip(&["-o", "link", "show", dev]).stdout).unwrap();
    out.split(':').next().unwrap().trim().parse().unwrap()
}

/// Packets the rule for `proto` ("tcp"/"udp") counted, i.e. that it logged.
fn rule_count(ns: &Netns, proto: &str) -> u64 {
    let list = ns.nft(&["list", "chain", "inet", "nflogtest", "input"]);
    let line = list
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with(&format!("{proto} dport 9 counter"))
        })
        .unwrap_or_else(|| panic!("no {proto} rule in {list}"));
    let w: Vec<&str> = line.split_whitespace().collect();
    let i = w.iter().position(|&x| x == "packets").unwrap();
    w[i + 1].parse().unwrap()
}

#[test]
fn tcp_and_udp_probes_arrive_over_v4_and_v6() {
    let p = setup("nfl-probe");
    let mut sock = open_in(
        &p.victim,
        NflogConfig {
            group: GROUP,
            ..Default::default()
        },
    );
    let eth0 = ifindex(&p.victim, "eth0");
    let att4: Vec<u8> = ATTACKER4
        .parse::<std::net::Ipv4Addr>()
        .unwrap()
        .octets()
        .to_vec();
    let att6: Vec<u8> = ATTACKER6
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets()
        .to_vec();

    for v6 in [false, true] {
        // TCP SYN from a real client; nothing listens, the RST ends it.
        let target = if v6 { VICTIM6 } else { VICTIM4 };
        // nc exits non-zero (the port is closed), which is the point.
        p.attacker
            .cmd("nc")
            .args(["-z", "-w1", target, "9"])
            .output()
            .unwrap();
        let got = collect(&mut sock, 1, Duration::from_secs(5));
        assert_eq!(got.len(), 1, "no TCP packet for v6={v6}");
        let g = &got[0];
        let (proto, src, dport, flags) = decode(&g.payload);
        assert_eq!((proto, dport), (6, 9));
        assert_eq!(src, if v6 { att6.clone() } else { att4.clone() });
        assert_eq!(flags.unwrap() & 0x3f, 0x02, "a bare SYN");
        assert_eq!(g.family, if v6 { 10 } else { 2 });
        assert_eq!(g.hw_protocol, if v6 { 0x86dd } else { 0x0800 });
        assert_eq!(g.prefix.as_deref(), Some(&b"nflogtest"[..]));
        assert_eq!(g.ifindex_in, Some(eth0));

        // UDP with a 1000-byte datagram: all of it comes up, within the
        // copy range (1500 since issue 15; 128 cut it).
        let udp = udp_in(&p.attacker, v6);
        udp.send_to(&[0x5a; 1000], victim(v6)).unwrap();
        let got = collect(&mut sock, 1, Duration::from_secs(5));
        assert_eq!(got.len(), 1, "no UDP packet for v6={v6}");
        let g = &got[0];
        let (proto, src, dport, _) = decode(&g.payload);
        assert_eq!((proto, dport), (17, 9));
        assert_eq!(src, if v6 { att6.clone() } else { att4.clone() });
        assert_eq!(
            g.payload.len(),
            1000 + if v6 { 48 } else { 28 },
            "copy range"
        );
        assert_eq!(*g.payload.last().unwrap(), 0x5a);
    }
    let st = sock.stats();
    assert_eq!(
        st,
        NflogStats {
            packets: 4,
            ..Default::default()
        }
    );
}

#[test]
fn sequence_numbers_count_from_zero() {
    let p = setup("nfl-seq");
    let mut sock = open_in(
        &p.victim,
        NflogConfig {
            group: GROUP,
            ..Default::default()
        },
    );
    let udp = udp_in(&p.attacker, false);
    for _ in 0..5 {
        udp.send_to(b"x", victim(false)).unwrap();
    }
    let got = collect(&mut sock, 5, Duration::from_secs(5));
    let seqs: Vec<Option<u32>> = got.iter().map(|g| g.seq).collect();
    assert_eq!(seqs, (0..5).map(Some).collect::<Vec<_>>());
    assert_eq!(sock.stats().seq_gaps, 0);
}

#[test]
fn lone_probe_is_delivered_at_once() {
    let p = setup("nfl-lone");
    let mut sock = open_in(
        &p.victim,
        NflogConfig {
            group: GROUP,
            ..Default::default()
        },
    );
    let udp = udp_in(&p.attacker, false);
    // Warm up neighbour resolution so the first figure is not ARP.
    udp.send_to(b"warm", victim(false)).unwrap();
    assert_eq!(collect(&mut sock, 1, Duration::from_secs(5)).len(), 1);
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(20));
        let t0 = Instant::now();
        udp.send_to(b"probe", victim(false)).unwrap();
        assert_eq!(collect(&mut sock, 1, Duration::from_secs(2)).len(), 1);
        worst = worst.max(t0.elapsed());
    }
    // The kernel's defaults would hold it for up to 1 s; the bound is generous.
    assert!(
        worst < Duration::from_millis(500),
        "slowest lone probe took {worst:?}"
    );
}

#[test]
fn second_socket_is_told_who_holds_the_group_and_drop_frees_it() {
    let p = setup("nfl-busy");
    let first = open_in(
        &p.victim,
        NflogConfig {
            group: GROUP,
            ..Default::default()
        },
    );
    let holder = first.portid();
    let err = p
        .victim
        .enter(|| {
            NflogSocket::open(&NflogConfig {
                group: GROUP,
                ..Default::default()
            })
        })
        .err()
        .expect("a second socket must not bind a taken group");
    eprintln!("second socket: {err}");
    assert_eq!(err.kind, Kind::Other, "{err}");
    let m = &err.message;
    assert!(m.contains(&format!("NFLOG group {GROUP}")), "{m}");
    assert!(m.contains("already bound"), "{m}");
    assert!(m.contains(&format!("netlink port id {holder}")), "{m}");
    assert!(m.contains(&format!("(pid {})", std::process::id())), "{m}");
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
    assert!(m.contains(&format!("process {}", comm.trim())), "{m}");

    // Another group is free meanwhile.
    let other = open_in(
        &p.victim,
        NflogConfig {
            group: GROUP + 1,
            ..Default::default()
        },
    );
    drop(other);

    // After drop the group binds again at once, and delivers.
    drop(first);
    let mut again = open_in(
        &p.victim,
        NflogConfig {
            group: GROUP,
            ..Default::default()
        },
    );
    udp_in(&p.attacker, false)
        .send_to(b"x", victim(false))
        .unwrap();
    assert_eq!(collect(&mut again, 1, Duration::from_secs(5)).len(), 1);
}

#[test]
fn without_cap_net_admin_the_error_says_so() {
    let p = setup("nfl-priv");
    let err = p
        .victim
        .enter(|| {
            // Capabilities are per thread: only this one loses it.
            caps::drop(
                None,
                caps::CapSet::Effective,
                caps::Capability::CAP_NET_ADMIN,
            )
            .unwrap();
            NflogSocket::open(&NflogConfig {
                group: GROUP,
                ..Default::default()
            })
        })
        .err()
        .expect("open must fail without CAP_NET_ADMIN");
    eprintln!("without CAP_NET_ADMIN: {err}");
    assert_eq!(err.kind, Kind::Privilege, "{err}");
    assert_eq!(err.kind.exit_code(), 77);
    assert!(err.message.contains("CAP_NET_ADMIN"), "{err}");
    assert!(err.message.contains(&GROUP.to_string()), "{err}");
}

#[test]
fn binding_leaves_the_default_logger_alone() {
    // We never send PF_UNBIND/PF_BIND; they would rebind the namespace's
    // default logger for the family. Delivery without them is shown by the
    // other tests; here: the settings stay as they were.
    let p = setup("nfl-pf");
    let read = |ns: &Netns| {
        ns.enter(|| {
            ["2", "10"].map(|pf| {
                std::fs::read_to_string(format!("/proc/sys/net/netfilter/nf_log/{pf}")).unwrap()
            })
        })
    };
    let before = read(&p.victim);
    let sock = open_in(
        &p.victim,
        NflogConfig {
            group: GROUP,
            ..Default::default()
        },
    );
    assert_eq!(read(&p.victim), before);
    drop(sock);
    assert_eq!(read(&p.victim), before);
}

#[test]
fn large_receive_buffer_is_granted() {
    let p = setup("nfl-rcvbuf");
    let sock = open_in(
        &p.victim,
        NflogConfig {
            group: GROUP,
            rcvbuf: 32 << 20,
            ..Default::default()
        },
    );
    // The kernel reports twice the requested size (bookkeeping overhead).
    assert_eq!(sock.rcvbuf(), 64 << 20);
}

/// A UDP datagram (IPv4, no options) whose data starts with "tail".
fn tail_marker(p: &[u8]) -> bool {
    p.len() >= 32 && &p[28..32] == b"tail"
}

/// Drains until a tail marker arrives (sending one every 50 ms), so every
/// packet logged before it is either received or seen as a sequence gap.
fn drain_through_tail(sock: &mut NflogSocket, udp: &UdpSocket) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = false;
    while !seen {
        assert!(
            Instant::now() < deadline,
            "tail marker never arrived: {:?}",
            sock.stats()
        );
        udp.send_to(b"tail", victim(false)).unwrap();
        let until = Instant::now() + Duration::from_millis(50);
        while !seen && Instant::now() < until {
            wait_readable(sock, Duration::from_millis(10));
            sock.drain(|pk| seen |= tail_marker(pk.payload)).unwrap();
        }
    }
    // Tail packets sent after the one we saw may still be on their way.
    std::thread::sleep(Duration::from_millis(100));
    sock.drain(|_| {}).unwrap();
}

#[test]
fn burst_of_20k_is_accounted_for() {
    let p = setup("nfl-burst");
    let mut sock = open_in(
        &p.victim,
        NflogConfig {
            group: GROUP,
            ..Default::default()
        },
    );
    let udp = udp_in(&p.attacker, false);
    let sender = {
        let udp = udp.try_clone().unwrap();
        std::thread::spawn(move || {
            for i in 0u32..20_000 {
                let _ = udp.send_to(&i.to_be_bytes(), victim(false));
            }
        })
    };
    let mut delivered = 0;
    let mut batched = false;
    while !sender.is_finished() {
        wait_readable(&sock, Duration::from_millis(50));
        delivered += sock.drain(|_| {}).unwrap();
        batched |= sock.batching();
    }
    sender.join().unwrap();
    drain_through_tail(&mut sock, &udp);
    let st = sock.stats();
    let logged = rule_count(&p.victim, "udp");
    eprintln!(
        "burst: {st:?}, rule logged {logged}, mode switches {}",
        sock.mode_switches()
    );
    assert!(logged >= 20_000, "the rule logged {logged}");
    assert_eq!(st.packets + st.seq_gaps, logged, "{st:?}");
    assert!(delivered as u64 <= st.packets);
    assert_eq!(st.malformed, 0);
    assert!(st.overruns == 0 || st.seq_gaps > 0, "{st:?}");
    assert!(batched, "a flood of 20k must switch the kernel to batching");

    // The flood is over: the next probe (perhaps held by one flush timeout)
    // switches delivery back to immediate.
    std::thread::sleep(Duration::from_millis(300));
    udp.send_to(b"after", victim(false)).unwrap();
    assert_eq!(collect(&mut sock, 1, Duration::from_secs(2)).len(), 1);
    assert!(!sock.batching(), "still batching after the flood");
    assert_eq!(sock.mode_switches() % 2, 0);
}

#[test]
fn overrun_is_counted_and_reading_goes_on() {
    let p = setup("nfl-overrun");
    // A tiny buffer and nobody reading during the burst: the kernel must drop.
    let mut sock = open_in(
        &p.victim,
        NflogConfig {
            group: GROUP,
            rcvbuf: 4096,
            ..Default::default()
        },
    );
    let udp = udp_in(&p.attacker, false);
    for i in 0u32..2_000 {
        let _ = udp.send_to(&i.to_be_bytes(), victim(false));
    }
    std::thread::sleep(Duration::from_millis(200));
    drain_through_tail(&mut sock, &udp);
    let st = sock.stats();
    let logged = rule_count(&p.victim, "udp");
    eprintln!("overrun: {st:?}, rule logged {logged}");
    assert!(st.overruns >= 1, "{st:?}");
    assert!(st.seq_gaps > 0, "{st:?}");
    assert!(st.packets >= 1, "{st:?}");
    assert_eq!(st.packets + st.seq_gaps, logged, "{st:?}");
    // And the socket still works for the next lone probe.
    let before = st.packets;
    udp.send_to(b"after", victim(false)).unwrap();
    let got = collect(&mut sock, 1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    assert_eq!(sock.stats().packets, before + 1);
}

/// The kernel fact behind not sending PF_UNBIND/PF_BIND (module header):
/// PF_UNBIND for AF_INET clears the namespace's default IPv4 logger. (That
/// `log group` rules deliver without PF_BIND, the other tests show.)
#[test]
#[ignore]
fn kernel_fact_pf_unbind_clears_the_default_logger() {
    use netlink_packet_netfilter::NetfilterProtoFamily;
    use netlink_packet_netfilter::nflog::{ConfigCmd, ConfigNla, config_request};
    let p = setup("nfl-kpf");
    let (before, after) = p.victim.enter(|| {
        let read = || std::fs::read_to_string("/proc/sys/net/netfilter/nf_log/2").unwrap();
        let before = read();
        let mut s = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_NETFILTER).unwrap();
        s.bind_auto().unwrap();
        let m = config_request(
            NetfilterProtoFamily::IPv4,
            0,
            vec![ConfigNla::Cmd(ConfigCmd::PfUnbind)],
        );
        let mut out = vec![0; m.buffer_len()];
        m.serialize(&mut out);
        s.send(&out, 0).unwrap();
        let mut buf = vec![0u8; 4096];
        s.recv(&mut &mut buf[..], 0).unwrap(); // the ack
        (before, read())
    });
    eprintln!(
        "nf_log/2 before PF_UNBIND: {}, after: {}",
        before.trim(),
        after.trim()
    );
    assert_ne!(before.trim(), "NONE");
    assert_eq!(after.trim(), "NONE");
}
