//! Probe→ban latency: single TCP SYN probes from distinct spoofed sources
//! (198.18.0.0/15) against a running daemon, each timed from the moment the
//! attacker sends it to the moment the kernel announces the new element of
//! blocked4 (nftables monitor group), both on one monotonic clock.
//!
//! Run as root: `cargo bench --bench probe_latency [-- PROBES]` (10,000 by
//! default, 2 ms apart: about 20 s). Prints p50, p99, max and the five
//! slowest probes with their index and send time since the first.
//! Everything happens between two namespaces this program makes and removes.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const NFNLGRP_NFTABLES: u32 = 7;
const NFT_MSG_NEWSETELEM: u16 = (10 << 8) | 12;

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 TCP SYN from `src` to 192.0.2.1:1, checksums included.
fn syn(src: Ipv4Addr) -> Vec<u8> {
    let dst: Ipv4Addr = VICTIM4.parse().unwrap();
    let mut p = vec![0u8; 40];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&1u16.to_be_bytes());
    p[32] = 5 << 4;
    p[33] = 0x02; // SYN
    p[34..36].copy_from_slice(&1024u16.to_be_bytes());
    let mut pseudo = Vec::with_capacity(32);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 6, 0, 20]);
    pseudo.extend_from_slice(&p[20..]);
    let c = checksum(&pseudo);
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let probes: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let mut pair = Pair::new("lat");
    // Spoofed sources route back to the attacker namespace, never further.
    pair.victim
        .ip(&["route", "add", "198.18.0.0/15", "via", ATTACKER4]);
    let dir = TempDir::new("lat");
    // The storm guard is off: the probes come from forged one-probe sources.
    let cfg = dir.file(
        "nftsentry.toml",
        &format!(
            "ignore_file = \"\"\n{}ban_time = \"1h\"\nset_size = 1000000\nstorm_threshold = 0\n[tcp]\nports = \"1\"\n[udp]\nports = \"\"\n",
            private_files(&dir.path)
        ),
    );
    let log = dir.path.join("log");
    start_daemon(&mut pair.victim, &cfg, &log);

    // The monitor: every element the kernel adds to a set, with its arrival time.
    let (tx, rx) = mpsc::channel::<(u32, Instant)>();
    let (ready_tx, ready_rx) = mpsc::channel();
    let victim_path = format!("/var/run/netns/{}", pair.victim.name);
    let monitor = std::thread::spawn(move || {
        let f = std::fs::File::open(&victim_path).unwrap();
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let mut s = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_NETFILTER).unwrap();
        s.bind_auto().unwrap();
        s.add_membership(NFNLGRP_NFTABLES).unwrap();
        s.set_rx_buf_sz(8 << 20).unwrap();
        let tv = nix::sys::time::TimeVal::new(0, 200_000);
        nix::sys::socket::setsockopt(
            &unsafe { std::os::fd::BorrowedFd::borrow_raw(s.as_raw_fd()) },
            nix::sys::socket::sockopt::ReceiveTimeout,
            &tv,
        )
        .unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut idle = 0;
        while idle < 15 {
            let n = match s.recv(&mut &mut buf[..], 0) {
                Ok(n) => n,
                Err(_) => {
                    idle += 1;
                    continue;
                }
            };
            let now = Instant::now();
            idle = 0;
            let mut off = 0;
            while off + 16 <= n {
                let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
                let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
                if len < 16 || off + len > n {
                    break;
                }
                if kind == NFT_MSG_NEWSETELEM {
                    let mut elems = Vec::new();
                    if nftsentry::kernel::nft::parse_element_dump(
                        &buf[off + 16..off + len],
                        &mut elems,
                    )
                    .is_ok()
                    {
                        for e in elems.iter().filter(|e| e.key.len() == 4) {
                            let _ =
                                tx.send((u32::from_be_bytes(e.key[..].try_into().unwrap()), now));
                        }
                    }
                }
                off += (len + 3) & !3;
            }
        }
    });
    ready_rx.recv().unwrap();

    // The attacker: one SYN per source, 2 ms apart, from a raw socket.
    let sent = pair.attacker.enter(move || {
        use nix::sys::socket::*;
        let fd = socket(
            AddressFamily::Inet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::Raw,
        )
        .unwrap();
        let dst = SockaddrIn::new(192, 0, 2, 1, 0);
        let mut sent = Vec::with_capacity(probes);
        for i in 0..probes as u32 {
            let src = Ipv4Addr::from(0xc612_0001u32 + i);
            let pkt = syn(src);
            let t = Instant::now();
            sendto(fd.as_raw_fd(), &pkt, &dst, MsgFlags::empty()).unwrap();
            sent.push((u32::from(src), t));
            std::thread::sleep(Duration::from_millis(2));
        }
        sent
    });
    monitor.join().unwrap();
    let seen: HashMap<u32, Instant> = rx.try_iter().collect();
    // (latency, probe index, send time since the first probe), so an
    // outlier can be set beside what else happened then.
    let first = sent.first().map(|s| s.1);
    let mut probes_seen: Vec<(Duration, usize, Duration)> = sent
        .iter()
        .enumerate()
        .filter_map(|(i, (k, t))| {
            let at = t.duration_since(first.unwrap());
            seen.get(k).map(|s| (s.duration_since(*t), i, at))
        })
        .collect();
    probes_seen.sort_unstable();
    let lat: Vec<Duration> = probes_seen.iter().map(|p| p.0).collect();
    println!("probes sent: {probes}, bans seen: {}", lat.len());
    if lat.is_empty() {
        eprintln!(
            "no bans seen; daemon log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::process::exit(1);
    }
    println!(
        "probe->ban latency: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3
    );
    let slowest: Vec<String> = probes_seen
        .iter()
        .rev()
        .take(5)
        .map(|(l, i, at)| {
            format!(
                "#{i} at {:.3} s: {:.3} ms",
                at.as_secs_f64(),
                l.as_secs_f64() * 1e3
            )
        })
        .collect();
    println!("slowest: {}", slowest.join(", "));
}
