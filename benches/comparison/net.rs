//! Packets and the network between the namespaces: the pair, the arrival
//! counter, forged SYNs, the flood senders, the ban monitor and a bulk TCP
//! transfer.

use crate::common::*;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// First spoofed source: 198.18.0.1. The /15 holds 131,072 addresses.
pub const SPOOF_BASE: u32 = 0xC612_0001;
pub const SPOOF_COUNT: u32 = 131_070;
/// Filler set elements and iptables rules for the drop-path rows: 240/4 is
/// reserved, and no packet is ever sent from or to these.
pub const FILLER_BASE: u32 = 0xF000_0000;
/// The watched port probes go to (in both daemons' lists).
pub const PROBE_PORT: u16 = 1;

pub fn filler(i: u32) -> u32 {
    FILLER_BASE + i
}

pub fn src_distinct(i: u64) -> u32 {
    SPOOF_BASE + (i % u64::from(SPOOF_COUNT)) as u32
}

/// Runs `f` on a new thread inside `ns` and returns its handle (Netns::enter
/// waits for the result; this does not).
pub fn spawn_in<R: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> R + Send + 'static,
) -> JoinHandle<R> {
    let path = format!("/var/run/netns/{}", ns.name);
    std::thread::spawn(move || {
        let file = File::open(&path).expect("open netns");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
}

/// Victim and attacker; the victim routes the spoofed range back to the
/// attacker, whose forwarding is off, so replies to it end there.
pub fn pair(tag: &str) -> Pair {
    let p = Pair::new(tag);
    p.victim
        .ip(&["route", "add", "198.18.0.0/15", "via", ATTACKER4]);
    p.attacker.sh("sysctl -qw net.ipv4.ip_forward=0");
    // Arrivals from the spoofed range, counted before anything can drop them.
    p.victim.nft(&["add", "table", "ip", "benchcount"]);
    p.victim.nft(&[
        "add chain ip benchcount c { type filter hook prerouting priority -400; policy accept; }",
    ]);
    p.victim.nft(&[
        "add",
        "rule",
        "ip",
        "benchcount",
        "c",
        "ip",
        "saddr",
        "198.18.0.0/15",
        "counter",
    ]);
    p
}

/// Packets from the spoofed range that reached the victim so far.
pub fn arrived(p: &Pair) -> u64 {
    let out = p.victim.nft(&["list", "chain", "ip", "benchcount", "c"]);
    let w: Vec<&str> = out.split_whitespace().collect();
    w.iter()
        .position(|&x| x == "packets")
        .and_then(|i| w.get(i + 1)?.parse().ok())
        .unwrap_or(0)
}

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

/// An IPv4 TCP SYN from `src` to 192.0.2.1:PROBE_PORT, checksums included.
pub fn syn(src: u32) -> [u8; 40] {
    let mut p = [0u8; 40];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&src.to_be_bytes());
    p[16..20].copy_from_slice(&[192, 0, 2, 1]);
    let c = checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&PROBE_PORT.to_be_bytes());
    p[32] = 5 << 4;
    p[33] = 0x02;
    p[34..36].copy_from_slice(&1024u16.to_be_bytes());
    let mut pseudo = [0u8; 32];
    pseudo[..8].copy_from_slice(&p[12..20]);
    pseudo[8..12].copy_from_slice(&[0, 6, 0, 20]);
    pseudo[12..].copy_from_slice(&p[20..]);
    let c = checksum(&pseudo);
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}

pub fn raw_socket_fd() -> OwnedFd {
    use nix::sys::socket::*;
    socket(
        AddressFamily::Inet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Raw,
    )
    .expect("raw socket")
}

/// The packets of a flood, built before it starts: the i-th packet sent
/// is `ring[i % ring.len()]`.
pub type Ring = Arc<Vec<[u8; 40]>>;

/// SYNs from the first `n` (at most SPOOF_COUNT) distinct spoofed sources:
/// with `src_distinct` cycling, the packets of a flood of any length.
pub fn distinct_ring(n: u64) -> Ring {
    Arc::new(
        (0..n.min(u64::from(SPOOF_COUNT)))
            .map(|i| syn(src_distinct(i)))
            .collect(),
    )
}

/// What a flood sent.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    pub sent: u64,
    /// From the start until the last sender stopped.
    pub time: Duration,
    pub senders: usize,
}

impl Sent {
    /// The offered rate: packets sent over the send time.
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.time.as_secs_f64().max(1e-9)
    }
}

/// Messages per sendmmsg(2).
const BATCH: usize = 64;

/// A flood from the attacker: `senders` threads, each with its own raw
/// socket, together send packets 0..n of `ring` (sender k the k-th of each
/// `senders`), in sendmmsg(2) batches, as fast as they go and for at most
/// `limit`. Over veth the victim's receive path runs in the sender's
/// thread, so several senders are what lets the offered load exceed what
/// one core pushes through both stacks.
pub fn flood(p: &Pair, ring: &Ring, n: u64, limit: Duration, senders: usize) -> Sent {
    let senders = senders.max(1);
    let go = Arc::new(Barrier::new(senders + 1));
    let threads: Vec<JoinHandle<(u64, Instant)>> = (0..senders)
        .map(|k| {
            let ring = ring.clone();
            let go = go.clone();
            spawn_in(&p.attacker, move || {
                let fd = raw_socket_fd();
                go.wait();
                let deadline = Instant::now() + limit;
                let sent = send_share(&fd, &ring, k as u64, senders as u64, n, deadline);
                (sent, Instant::now())
            })
        })
        .collect();
    go.wait();
    let start = Instant::now();
    let mut sent = 0;
    let mut end = start;
    for t in threads {
        let (s, e) = t.join().expect("sender thread");
        sent += s;
        end = end.max(e);
    }
    Sent {
        sent,
        time: end.saturating_duration_since(start),
        senders,
    }
}

/// One sender's share: packets first, first + step, ... below `n`.
fn send_share(
    fd: &OwnedFd,
    ring: &[[u8; 40]],
    first: u64,
    step: u64,
    n: u64,
    deadline: Instant,
) -> u64 {
    use nix::libc;
    // SAFETY (for the zeroed values): plain C structs, all-zero is valid.
    let mut dst: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    dst.sin_family = libc::AF_INET as libc::sa_family_t;
    dst.sin_addr.s_addr = u32::from_ne_bytes([192, 0, 2, 1]);
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; BATCH];
    let mut hdr: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    let len = ring.len() as u64;
    let mut next = first;
    let mut sent = 0u64;
    while next < n && Instant::now() < deadline {
        let mut k = 0;
        let mut i = next;
        while k < BATCH && i < n {
            iov[k] = libc::iovec {
                iov_base: ring[(i % len) as usize].as_ptr() as *mut libc::c_void,
                iov_len: 40,
            };
            let h = &mut hdr[k].msg_hdr;
            h.msg_name = &mut dst as *mut libc::sockaddr_in as *mut libc::c_void;
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &mut iov[k];
            h.msg_iovlen = 1;
            k += 1;
            i += step;
        }
        // SAFETY: `hdr[..k]` point at `iov[..k]` and `dst`, which live
        // through the call; the packets are read only.
        let r = unsafe { libc::sendmmsg(fd.as_raw_fd(), hdr.as_mut_ptr(), k as u32, 0) };
        if r > 0 {
            sent += r as u64;
            next += r as u64 * step;
        } else {
            // ENOBUFS and the like: let the stack drain.
            std::thread::yield_now();
        }
    }
    sent
}

// ------------------------------------------------------------- monitors ---

#[derive(Clone, Copy)]
pub enum Watch {
    /// nftables: new elements of any set (NFNLGRP_NFTABLES).
    SetElements,
    /// rtnetlink: new IPv4 routes (RTNLGRP_IPV4_ROUTE), as KILL_ROUTE adds.
    Routes,
}

/// Reports every new ban (IPv4 key) in the victim with its arrival time.
pub struct Monitor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    rx: mpsc::Receiver<(u32, Instant)>,
}

impl Monitor {
    pub fn start(ns: &Netns, watch: Watch) -> Monitor {
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = spawn_in(ns, move || {
            let (proto, group) = match watch {
                Watch::SetElements => (netlink_sys::protocols::NETLINK_NETFILTER, 7),
                Watch::Routes => (netlink_sys::protocols::NETLINK_ROUTE, 7),
            };
            let mut s = netlink_sys::Socket::new(proto).unwrap();
            s.bind_auto().unwrap();
            s.add_membership(group).unwrap();
            s.set_rx_buf_sz(8 << 20).unwrap();
            let tv = nix::sys::time::TimeVal::new(0, 100_000);
            nix::sys::socket::setsockopt(
                &unsafe { std::os::fd::BorrowedFd::borrow_raw(s.as_raw_fd()) },
                nix::sys::socket::sockopt::ReceiveTimeout,
                &tv,
            )
            .unwrap();
            ready_tx.send(()).unwrap();
            let mut buf = vec![0u8; 1 << 16];
            while !stop2.load(Ordering::Relaxed) {
                let Ok(n) = s.recv(&mut &mut buf[..], 0) else {
                    continue;
                };
                let now = Instant::now();
                for (kind, payload) in nl_messages(&buf[..n]) {
                    for key in match watch {
                        Watch::SetElements => new_elements(kind, payload),
                        Watch::Routes => new_route(kind, payload).into_iter().collect(),
                    } {
                        let _ = tx.send((key, now));
                    }
                }
            }
        });
        ready_rx.recv().unwrap();
        Monitor {
            stop,
            thread: Some(thread),
            rx,
        }
    }

    /// Waits for `key` to appear; other keys are dropped.
    pub fn wait_for(&self, key: u32, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.rx.recv_timeout(left) {
                Ok((k, t)) if k == key => return Some(t),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// (message type, payload after the 16-byte header) of each netlink message.
fn nl_messages(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        if len < 16 || off + len > buf.len() {
            break;
        }
        out.push((kind, &buf[off + 16..off + len]));
        off += (len + 3) & !3;
    }
    out
}

fn new_elements(kind: u16, payload: &[u8]) -> Vec<u32> {
    const NFT_MSG_NEWSETELEM: u16 = (10 << 8) | 12;
    if kind != NFT_MSG_NEWSETELEM {
        return Vec::new();
    }
    let mut elems = Vec::new();
    if nftsentry::kernel::nft::parse_element_dump(payload, &mut elems).is_err() {
        return Vec::new();
    }
    elems
        .iter()
        .filter(|e| e.key.len() == 4)
        .map(|e| u32::from_be_bytes(e.key[..].try_into().unwrap()))
        .collect()
}

/// The destination of an RTM_NEWROUTE for a /32 (rtmsg, then RTA_DST).
fn new_route(kind: u16, payload: &[u8]) -> Option<u32> {
    const RTM_NEWROUTE: u16 = 24;
    const RTA_DST: u16 = 1;
    if kind != RTM_NEWROUTE || payload.len() < 12 || payload[0] != 2 || payload[1] != 32 {
        return None;
    }
    let mut off = 12;
    while off + 4 <= payload.len() {
        let len = u16::from_ne_bytes([payload[off], payload[off + 1]]) as usize;
        let ty = u16::from_ne_bytes([payload[off + 2], payload[off + 3]]);
        if len < 4 || off + len > payload.len() {
            return None;
        }
        if ty == RTA_DST && len == 8 {
            return Some(u32::from_be_bytes(
                payload[off + 4..off + 8].try_into().unwrap(),
            ));
        }
        off += (len + 3) & !3;
    }
    None
}

// ----------------------------------------------------------------- bulk ---

/// A listener on 192.0.2.1:80 in the victim, bound before any daemon
/// starts (as a real service would be).
pub fn open_port(p: &Pair) -> TcpListener {
    p.victim
        .enter(|| TcpListener::bind("192.0.2.1:80").expect("bind :80"))
}

/// One bulk TCP transfer from the attacker to `listener`, in 128 KiB
/// writes, running until `finish` or for at most `limit`.
pub struct Bulk {
    stop: Arc<AtomicBool>,
    client: JoinHandle<()>,
    server: JoinHandle<u64>,
    started: Instant,
}

impl Bulk {
    pub fn start(p: &Pair, listener: TcpListener, limit: Duration) -> Bulk {
        let server = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 1 << 17];
            let mut total = 0u64;
            while let Ok(n) = c.read(&mut buf) {
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            total
        });
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let started = Instant::now();
        let client = spawn_in(&p.attacker, move || {
            let mut s = TcpStream::connect("192.0.2.1:80").unwrap();
            let buf = vec![0x5au8; 1 << 17];
            while started.elapsed() < limit && !stop2.load(Ordering::Relaxed) {
                if s.write_all(&buf).is_err() {
                    break;
                }
            }
            let _ = s.shutdown(std::net::Shutdown::Write);
        });
        Bulk {
            stop,
            client,
            server,
            started,
        }
    }

    /// Waits for the transfer's end (`stop`: ends it now); returns the
    /// bytes moved and for how long.
    pub fn finish(self, stop: bool) -> (u64, Duration) {
        if stop {
            self.stop.store(true, Ordering::Relaxed);
        }
        self.client.join().unwrap();
        let took = self.started.elapsed();
        (self.server.join().unwrap(), took)
    }
}
