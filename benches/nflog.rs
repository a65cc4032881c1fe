//! NFLOG socket measurements against the real kernel (moved here from
//! tests/nflog.rs, where they were ignored tests): lone-probe latency per
//! delivery setting, a 200,000-datagram flood per setting (what arrived, what
//! was lost, receiver CPU), and how much a stalled reader's buffer absorbs.
//! Figures only: nothing here asserts a timing.
//!
//! Victim namespace with a table `inet nflogtest` whose rules `log group G`
//! TCP and UDP to port 9; datagrams from an attacker namespace. Run as root:
//! `cargo bench --bench nflog [-- latency|flood|stalled]`.

#[path = "../tests/common/mod.rs"]
mod common;
use common::*;

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nftsentry::kernel::nflog::{NflogConfig, NflogSocket};
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
fn udp_in(ns: &Netns) -> UdpSocket {
    ns.enter(|| UdpSocket::bind("0.0.0.0:0").unwrap())
}

fn victim() -> SocketAddr {
    format!("{VICTIM4}:9").parse().unwrap()
}

/// Drains (with poll) until `want` packets arrived or `timeout` passed;
/// returns how many arrived.
fn collect(sock: &mut NflogSocket, want: usize, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    let mut got = 0;
    while got < want {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        wait_readable(sock, left);
        got += sock.drain(|_| {}).expect("drain");
    }
    got
}

fn wait_readable(sock: &NflogSocket, timeout: Duration) -> bool {
    let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    poll(&mut fds, PollTimeout::from(ms)).expect("poll") > 0
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
        udp.send_to(b"tail", victim()).unwrap();
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

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Lone-probe latency: send one UDP datagram, poll until the NFLOG socket has
/// it; 1,000 probes 5 ms apart, per setting. qthreshold 1 is always
/// immediate; 64 is the adaptive default (immediate while quiet). The static
/// batch figures in the report came from commit 750af56, where qthreshold was
/// applied as is.
fn measure_lone_probe_latency() {
    for (qthreshold, flush) in [(1, 1), (64, 1)] {
        let p = setup("nfl-mlat");
        let cfg = NflogConfig {
            group: GROUP,
            qthreshold,
            flush_timeout_cs: flush,
            ..Default::default()
        };
        let mut sock = open_in(&p.victim, cfg);
        let udp = udp_in(&p.attacker);
        udp.send_to(b"warm", victim()).unwrap();
        assert_eq!(collect(&mut sock, 1, Duration::from_secs(5)), 1);
        let n = if flush >= 100 { 20 } else { 1000 };
        let mut lat = Vec::with_capacity(n);
        for _ in 0..n {
            std::thread::sleep(Duration::from_millis(5));
            let t0 = Instant::now();
            udp.send_to(b"probe", victim()).unwrap();
            let mut got = 0;
            while got == 0 {
                wait_readable(&sock, Duration::from_secs(3));
                got += sock.drain(|_| {}).unwrap();
            }
            lat.push(t0.elapsed());
        }
        lat.sort();
        println!(
            "qthreshold {qthreshold:3} flush {flush:3} cs: n={n} p50 {:?} p99 {:?} max {:?}",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat[n - 1]
        );
    }
}

fn thread_cpu() -> Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap();
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

/// Flood: a sender thread in the attacker namespace sends 200,000 UDP
/// datagrams as fast as it can; the receiver drains with poll. Reports what
/// the rule logged, what arrived, losses, and the receiver's CPU time.
fn measure_flood() {
    const N: u32 = 200_000;
    for (qthreshold, flush, rcvbuf) in [
        (1, 1, 32 << 20),
        (64, 1, 32 << 20),
        (1, 1, 1 << 20),
        (64, 1, 1 << 20),
    ] {
        let p = setup("nfl-mflood");
        let cfg = NflogConfig {
            group: GROUP,
            qthreshold,
            flush_timeout_cs: flush,
            rcvbuf,
            ..Default::default()
        };
        let mut sock = open_in(&p.victim, cfg);
        let udp = udp_in(&p.attacker);
        let start = Instant::now();
        let sender = {
            let udp = udp.try_clone().unwrap();
            std::thread::spawn(move || {
                for i in 0..N {
                    let _ = udp.send_to(&i.to_be_bytes(), victim());
                }
                start.elapsed()
            })
        };
        let cpu0 = thread_cpu();
        let mut wakeups = 0u64;
        while !sender.is_finished() {
            wait_readable(&sock, Duration::from_millis(50));
            wakeups += 1;
            sock.drain(|_| {}).unwrap();
        }
        let send_time = sender.join().unwrap();
        drain_through_tail(&mut sock, &udp);
        let cpu = thread_cpu() - cpu0;
        let st = sock.stats();
        let logged = rule_count(&p.victim, "udp");
        // The first probe after the flood (the kernel may still batch) and
        // the one after it.
        std::thread::sleep(Duration::from_millis(300));
        let mut after = Vec::new();
        for _ in 0..2 {
            let t0 = Instant::now();
            udp.send_to(b"after", victim()).unwrap();
            assert_eq!(collect(&mut sock, 1, Duration::from_secs(2)), 1);
            after.push(t0.elapsed());
            std::thread::sleep(Duration::from_millis(20));
        }
        println!(
            "qthreshold {qthreshold:2} flush {flush} rcvbuf {:2} MiB: sent {N} in {send_time:.2?} ({:.0}/s), \
             rule logged {logged}, received {}, gaps {}, overruns {}, receiver CPU {cpu:.2?} \
             ({:.2} µs/packet), poll wakeups {wakeups}, mode switches {}, probes after: {after:.2?}",
            rcvbuf >> 20,
            f64::from(N) / send_time.as_secs_f64(),
            st.packets,
            st.seq_gaps,
            st.overruns,
            cpu.as_secs_f64() * 1e6 / st.packets as f64,
            sock.mode_switches(),
        );
        assert_eq!(st.packets + st.seq_gaps, logged);
    }
}

/// How much a stalled reader can absorb: 100,000 datagrams sent while nobody
/// reads (immediate delivery, one skb per packet), then count what waited in
/// the 32 MiB buffer.
fn measure_stalled_reader_capacity() {
    let p = setup("nfl-mstall");
    let mut sock = open_in(
        &p.victim,
        NflogConfig {
            group: GROUP,
            ..Default::default()
        },
    );
    let udp = udp_in(&p.attacker);
    for i in 0u32..100_000 {
        let _ = udp.send_to(&i.to_be_bytes(), victim());
    }
    std::thread::sleep(Duration::from_millis(300));
    // Everything is queued already: drain until a call finds nothing.
    while sock.drain(|_| {}).unwrap() > 0 {}
    let queued = sock.stats().packets;
    drain_through_tail(&mut sock, &udp);
    let st = sock.stats();
    println!(
        "stalled reader, rcvbuf {} bytes granted: {queued} packets were waiting; {st:?}, rule logged {}",
        sock.rcvbuf(),
        rule_count(&p.victim, "udp")
    );
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| which.is_empty() || which.iter().any(|w| name.contains(w.as_str()));
    if wanted("latency") {
        measure_lone_probe_latency();
    }
    if wanted("flood") {
        measure_flood();
    }
    if wanted("stalled") {
        measure_stalled_reader_capacity();
    }
}
