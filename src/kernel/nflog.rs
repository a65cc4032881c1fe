//! The NFLOG socket: subscribes to one nfnetlink_log group, configures how the
//! kernel copies and batches logged packets, and hands each one to a callback
//! without copying it.
//!
//! Owns: the NETLINK_NETFILTER socket and its buffers, the group binding (and
//! telling who holds a group we cannot get), the copy range, qthreshold and
//! flush timeout, sequence-gap and ENOBUFS accounting, and decoding of the
//! nfnetlink_log datagrams down to the raw packet bytes.
//! Knows nothing of nftables (which rule logged the packet) nor of what the
//! payload means: `packet` decodes it.
//!
//! Kernel behaviour this relies on (net/netfilter/nfnetlink_log.c, 6.x):
//! - A packet is queued in a per-group skb; the skb goes to user space when it
//!   holds `qthreshold` messages, when the next one would not fit in
//!   `nlbufsiz`, or when the flush timer (`flushtimeout` in 1/100 s, armed by
//!   the first queued packet) fires. A `log` rule's own `queue-threshold` can
//!   only lower the instance's; nftsentry's rules never set it, so the
//!   settings here decide alone. They change while the socket is open:
//!   immediate delivery while quiet, batches under a flood (`Adaptive`).
//! - Only the socket (netlink port id) that created a group's instance may
//!   configure it: another socket gets EPERM, the same one EBUSY. EPERM is also
//!   what a socket without CAP_NET_ADMIN gets, so the two are told apart by
//!   looking the group up in /proc/net/netfilter/nfnetlink_log.
//! - NFULNL_CFG_CMD_PF_BIND / PF_UNBIND are not sent. libnetfilter_log sends
//!   them because old kernels needed nfnetlink_log bound as the family's
//!   logger. Today they are not no-ops: they set the network namespace's
//!   *default* logger (/proc/sys/net/netfilter/nf_log/<pf>), which only
//!   loggers without an explicit type use. A `log group N` expression carries
//!   type NF_LOG_TYPE_ULOG and reaches nfnetlink_log through the global logger
//!   table whatever that setting is, so PF_UNBIND would only take the default
//!   logger away from whoever else relies on it (tests check both halves).

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use netlink_packet_netfilter::NetfilterProtoFamily;
use netlink_packet_netfilter::nflog::{
    ConfigCmd, ConfigFlags, ConfigMode, ConfigNla, Timeout, config_request,
};
use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};
use nix::libc;
use nix::sys::socket::{getsockopt, setsockopt, sockopt};

use crate::error::{Error, Kind};
use crate::kernel::netlink::{self, NLMSG_ERROR, NLMSG_OVERRUN};

/// How to bind the group and how the kernel should batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NflogConfig {
    /// NFLOG group the tripwire rules log to.
    pub group: u16,
    /// Bytes of each packet copied to us (from the network header). 128 covers
    /// an IPv4 header with options plus TCP, or IPv6 with a few extension
    /// headers plus TCP. 0 means the kernel's maximum (65531).
    pub copy_range: u16,
    /// Messages the kernel queues before it sends them *under a flood*. While
    /// traffic is light the socket asks for every packet at once (kernel
    /// qthreshold 1) and switches to this value when packets arrive faster
    /// than 5,000/s, back below 1,000/s (see `Adaptive`). 1 = never batch.
    pub qthreshold: u32,
    /// Flush timer for a partly filled batch, in 1/100 s: the most a packet
    /// waits while batching. Only used when `qthreshold` > 1.
    pub flush_timeout_cs: u32,
    /// Socket receive buffer in bytes (SO_RCVBUFFORCE, else SO_RCVBUF capped by
    /// net.core.rmem_max).
    pub rcvbuf: usize,
}

impl Default for NflogConfig {
    /// Every packet at once while quiet, batches of 64 with a 10 ms flush
    /// under a flood. Measured (`tests/nflog.rs`, `measure_*`: UDP over veth
    /// between two namespaces, 2 shared cores): a static kernel qthreshold of
    /// 1 delivers a lone probe in p50 0.08 ms / p99 0.16 ms, a static 64 with
    /// a 1 cs flush in p50 10.8 / p99 12 ms (the flush timer). Under a 200k
    /// UDP flood qthreshold 1 costs the reader ~3 µs per packet (a wakeup and
    /// a recv each) against ~0.3 µs batched, and the side that logs (the
    /// softirq) slows the sender to ~110k/s against ~150k/s. No static
    /// setting gives both; switching by rate gives p99 0.14 ms for a lone
    /// probe and 0.32 µs per packet under the flood, and the first probe after
    /// a flood waits one flush timeout (~9 ms).
    fn default() -> NflogConfig {
        NflogConfig {
            group: 7531,
            copy_range: 128,
            qthreshold: 64,
            flush_timeout_cs: 1,
            rcvbuf: 32 << 20,
        }
    }
}

/// One logged packet, borrowed from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Counters since the socket was opened. The caller logs them once per
/// interval; nothing here logs.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct NflogStats {
    /// Packets handed to the callback.
    pub packets: u64,
    /// ENOBUFS occurrences: the receive buffer overflowed and the kernel
    /// dropped at least one datagram (how many it cannot tell us).
    pub overruns: u64,
    /// Sequence numbers skipped: events lost (the kernel numbers every packet
    /// it logs for the group, so this counts the ones that never arrived).
    pub seq_gaps: u64,
    /// Messages or datagrams that did not parse, skipped.
    pub malformed: u64,
}

// Netlink and nfnetlink_log numbering (include/uapi/linux/netlink.h,
// netfilter/nfnetlink.h, netfilter/nfnetlink_log.h).
const NFNL_SUBSYS_ULOG: u16 = libc::NFNL_SUBSYS_ULOG as u16;
const NFULNL_MSG_PACKET: u16 = libc::NFULNL_MSG_PACKET as u16;
const NFGENMSG_LEN: usize = 4;
// Attribute numbers from libc (the uapi header's enum): NFULA_SEQ is 12, not
// 13 as some notes have it; counting the enum by hand is how that happens.
const NFULA_PACKET_HDR: u16 = libc::NFULA_PACKET_HDR as u16;
const NFULA_IFINDEX_INDEV: u16 = libc::NFULA_IFINDEX_INDEV as u16;
const NFULA_PAYLOAD: u16 = libc::NFULA_PAYLOAD as u16;
const NFULA_PREFIX: u16 = libc::NFULA_PREFIX as u16;
const NFULA_SEQ: u16 = libc::NFULA_SEQ as u16;

/// Bounds for NFULA_CFG_NLBUFSIZ: the kernel ignores values below
/// NLMSG_GOODSIZE (a page or 8 KiB, whichever is smaller, minus the skb
/// overhead; 8 KiB is always above it) or above 128 KiB.
const NLBUFSIZ_MIN: u32 = 8192;
const NLBUFSIZ_MAX: u32 = 131_072;

/// Receive buffer: the largest datagram the kernel can build is one nlbufsiz
/// skb (128 KiB) or one message with a full 64 KiB payload, whichever is
/// larger; this holds either, so a recv never truncates.
const RECV_BUF: usize = 192 * 1024;

/// Datagrams one `drain` reads at most, so a flood that outruns us cannot
/// keep the event loop from its timers and signals; poll(2) reports the
/// socket readable again at once.
const DRAIN_BUDGET: usize = 4096;

/// Switch to batching when this many packets arrive within one `WINDOW`
/// (5,000 packets/s): at qthreshold 1 that rate costs the reader ~1.5% of a
/// CPU, so staying immediate below it is cheap.
const FLOOD_ENTER_PACKETS: u64 = 500;
/// Back to immediate delivery when a window of at least `WINDOW` averaged
/// fewer than this many packets per second (hysteresis against flapping).
const FLOOD_LEAVE_PPS: f64 = 1000.0;
const WINDOW: Duration = Duration::from_millis(100);

/// The kernel instance's delivery mode, switched by packet rate: qthreshold
/// 1 while quiet (a lone probe leaves the kernel at once), the configured
/// batch under a flood (one wakeup and one recv per batch, and fewer skbs for
/// the kernel to build). The first probe after a flood may wait for one
/// flush timeout (10 ms) before the drain that sees the rate has dropped.
struct Adaptive {
    batch: u32,
    batch_nlbufsiz: u32,
    batching: bool,
    window_start: Instant,
    window_packets: u64,
    switches: u64,
}

impl Adaptive {
    fn new(batch: u32, batch_nlbufsiz: u32, now: Instant) -> Adaptive {
        Adaptive {
            batch,
            batch_nlbufsiz,
            batching: false,
            window_start: now,
            window_packets: 0,
            switches: 0,
        }
    }

    /// Counts `packets` delivered by a drain at `now`; returns the new mode
    /// (true = batching) when it changes. Entering needs `FLOOD_ENTER_PACKETS`
    /// in one window, so it reacts within the window; leaving is judged over
    /// a whole window. While batching with no traffic, no drain runs: the
    /// next packet comes with the flush timer and the drain that delivers it
    /// sees a long window with a low rate.
    fn observe(&mut self, packets: u64, now: Instant) -> Option<bool> {
        self.window_packets += packets;
        let elapsed = now.saturating_duration_since(self.window_start);
        let want = if self.batching {
            elapsed < WINDOW
                || self.window_packets as f64 >= FLOOD_LEAVE_PPS * elapsed.as_secs_f64()
        } else {
            self.window_packets >= FLOOD_ENTER_PACKETS
        };
        if elapsed >= WINDOW || want != self.batching {
            self.window_start = now;
            self.window_packets = 0;
        }
        if want == self.batching {
            return None;
        }
        self.batching = want;
        self.switches += 1;
        Some(want)
    }
}

/// An open, bound NFLOG socket, non-blocking.
pub struct NflogSocket {
    sock: Socket,
    group: u16,
    portid: u32,
    rcvbuf: usize,
    buf: Vec<u8>,
    /// Datagrams that arrived while `open` waited for its ack.
    pending: Vec<Vec<u8>>,
    /// The NFULA_SEQ expected next. Our bind created the instance, so the
    /// kernel starts at 0.
    next_seq: u32,
    stats: NflogStats,
    /// None when `qthreshold` <= 1: always immediate.
    adaptive: Option<Adaptive>,
}

impl NflogSocket {
    /// Opens a socket, binds `cfg.group` and configures it. EPERM from a
    /// socket that lacks CAP_NET_ADMIN gives `Kind::Privilege`; a group held
    /// by another socket gives `Kind::Other` naming the holder.
    pub fn open(cfg: &NflogConfig) -> Result<NflogSocket, Error> {
        let group = cfg.group;
        let ctx =
            |e: io::Error, what: &str| Error::other(format!("NFLOG group {group}: {what}: {e}"));
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(|e| ctx(e, "netlink socket"))?;
        let addr = sock
            .bind_auto()
            .map_err(|e| ctx(e, "bind netlink socket"))?;
        let portid = addr.port_number();
        let rcvbuf = set_rcvbuf(&sock, cfg.rcvbuf).map_err(|e| ctx(e, "receive buffer"))?;
        sock.set_non_blocking(true)
            .map_err(|e| ctx(e, "non-blocking"))?;

        let mut s = NflogSocket {
            sock,
            group,
            portid,
            rcvbuf,
            buf: vec![0; RECV_BUF],
            pending: Vec::new(),
            next_seq: 0,
            stats: NflogStats::default(),
            adaptive: (cfg.qthreshold > 1).then(|| {
                Adaptive::new(
                    cfg.qthreshold,
                    batch_nlbufsiz(cfg.copy_range, cfg.qthreshold),
                    Instant::now(),
                )
            }),
        };
        // One message: the bind and every setting, so no packet is ever
        // queued with the kernel's defaults (copy 64 KiB, flush after 1 s).
        // It starts immediate: qthreshold 1, and the kernel's default
        // nlbufsiz (NLMSG_GOODSIZE, just under a page), the cheapest for
        // one-packet skbs.
        let nlas = vec![
            ConfigNla::Cmd(ConfigCmd::Bind),
            ConfigNla::Mode(ConfigMode::new_packet(u32::from(cfg.copy_range))),
            ConfigNla::QThresh(1),
            ConfigNla::Timeout(Timeout::new(cfg.flush_timeout_cs)),
            ConfigNla::Flags(ConfigFlags::SEQ),
        ];
        match s.request(nlas, true) {
            Ok(()) => Ok(s),
            Err(errno) => Err(bind_error(group, portid, errno)),
        }
    }

    /// Reads until EAGAIN (or `DRAIN_BUDGET` datagrams) and calls `on_packet`
    /// for every packet. Returns how many packets it delivered. ENOBUFS,
    /// sequence gaps and malformed messages are counted in `stats`, not
    /// returned: the socket keeps working after all of them.
    pub fn drain(&mut self, mut on_packet: impl FnMut(&NflogPacket<'_>)) -> Result<usize, Error> {
        let before = self.stats.packets;
        let mut next_seq = self.next_seq;
        let mut gaps = 0u64;
        let mut deliver = |p: &NflogPacket<'_>| {
            if let Some(seq) = p.seq {
                gaps += seq_gap(next_seq, seq);
                next_seq = seq.wrapping_add(1);
            }
            on_packet(p);
        };
        for d in std::mem::take(&mut self.pending) {
            parse_datagram(&d, &mut deliver, &mut self.stats);
        }
        let mut result = Ok(());
        for _ in 0..DRAIN_BUDGET {
            let mut chunk: &mut [u8] = &mut self.buf[..];
            match self.sock.recv(&mut chunk, libc::MSG_TRUNC) {
                // MSG_TRUNC returns the datagram's real length: a longer one
                // lost its tail, whose message the parser counts as malformed.
                Ok(n) => {
                    let n = n.min(self.buf.len());
                    parse_datagram(&self.buf[..n], &mut deliver, &mut self.stats);
                }
                Err(e) => match e.raw_os_error() {
                    Some(libc::EAGAIN) => break,
                    Some(libc::EINTR) => continue,
                    Some(libc::ENOBUFS) => self.stats.overruns += 1,
                    _ => {
                        result = Err(Error::other(format!(
                            "NFLOG group {}: receive: {e}",
                            self.group
                        )));
                        break;
                    }
                },
            }
        }
        self.next_seq = next_seq;
        self.stats.seq_gaps += gaps;
        let delivered = self.stats.packets - before;
        self.adapt(delivered);
        result.map(|()| delivered as usize)
    }

    /// Counts packets per `WINDOW` and switches the kernel between immediate
    /// and batched delivery. A failed switch leaves the mode as it was (the
    /// kernel's error reply, if any, is skipped by the parser).
    fn adapt(&mut self, packets: u64) {
        let Some(a) = self.adaptive.as_mut() else {
            return;
        };
        let Some(batching) = a.observe(packets, Instant::now()) else {
            return;
        };
        let nlas = if batching {
            vec![
                ConfigNla::NlBufSiz(a.batch_nlbufsiz),
                ConfigNla::QThresh(a.batch),
            ]
        } else {
            vec![
                ConfigNla::QThresh(1),
                ConfigNla::NlBufSiz(immediate_nlbufsiz()),
            ]
        };
        let _ = self.request(nlas, false);
    }

    /// Whether the kernel is currently batching (a flood is on).
    pub fn batching(&self) -> bool {
        self.adaptive.as_ref().is_some_and(|a| a.batching)
    }

    /// How many times the delivery mode changed since `open`.
    pub fn mode_switches(&self) -> u64 {
        self.adaptive.as_ref().map_or(0, |a| a.switches)
    }

    pub fn stats(&self) -> NflogStats {
        self.stats
    }

    pub fn group(&self) -> u16 {
        self.group
    }

    /// The socket's netlink port id (what /proc/net/netfilter/nfnetlink_log
    /// lists as the group's holder).
    pub fn portid(&self) -> u32 {
        self.portid
    }

    /// The receive buffer the kernel granted (its doubled figure, as
    /// getsockopt reports it): less than asked when CAP_NET_ADMIN is missing
    /// and net.core.rmem_max is small.
    pub fn rcvbuf(&self) -> usize {
        self.rcvbuf
    }

    /// Sends one config message for our group; with `ack`, waits up to 2 s for
    /// the kernel's answer and returns its errno.
    fn request(&mut self, nlas: Vec<ConfigNla>, ack: bool) -> Result<(), i32> {
        const SEQ: u32 = 1;
        let mut msg = config_request(NetfilterProtoFamily::Unspec, self.group, nlas);
        msg.header.sequence_number = SEQ;
        if !ack {
            msg.header.flags &= !netlink_packet_core::NLM_F_ACK;
        }
        let mut out = vec![0; msg.buffer_len()];
        msg.serialize(&mut out);
        self.sock
            .send(&out, 0)
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        if !ack {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let mut chunk: &mut [u8] = &mut self.buf[..];
            match self.sock.recv(&mut chunk, 0) {
                Ok(n) => {
                    let d = &self.buf[..n.min(self.buf.len())];
                    if let Some(errno) = find_ack(d, self.portid, SEQ) {
                        // A packet logged between the bind and the ack shares
                        // no datagram with it: acks are sent on their own.
                        return if errno == 0 { Ok(()) } else { Err(errno) };
                    }
                    self.pending.push(d.to_vec());
                }
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(libc::ETIMEDOUT);
                    }
                    let mut fds = [nix::poll::PollFd::new(
                        self.sock.as_fd(),
                        nix::poll::PollFlags::POLLIN,
                    )];
                    let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
                    let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => self.stats.overruns += 1,
                Err(e) => return Err(e.raw_os_error().unwrap_or(libc::EIO)),
            }
        }
    }
}

impl AsRawFd for NflogSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl AsFd for NflogSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl Drop for NflogSocket {
    /// Unbinds explicitly: closing the socket also destroys the instance, but
    /// only once every copy of the fd is closed (a forked child may hold one),
    /// and a restart must be able to bind the group at once. No ack is awaited.
    fn drop(&mut self) {
        let _ = self.request(vec![ConfigNla::Cmd(ConfigCmd::Unbind)], false);
    }
}

/// SO_RCVBUFFORCE (ignores net.core.rmem_max, needs CAP_NET_ADMIN), else
/// SO_RCVBUF. Returns what the kernel granted.
fn set_rcvbuf(sock: &Socket, want: usize) -> io::Result<usize> {
    let want = want.min(i32::MAX as usize / 2);
    if setsockopt(sock, sockopt::RcvBufForce, &want).is_err() {
        setsockopt(sock, sockopt::RcvBuf, &want).map_err(io::Error::from)?;
    }
    getsockopt(sock, sockopt::RcvBuf).map_err(io::Error::from)
}

/// NFULA_CFG_NLBUFSIZ while batching: room for `qthreshold` messages of
/// `copy_range` bytes plus ~250 bytes of attributes each.
/// NFULA_CFG_NLBUFSIZ while immediate: the kernel allocates max(nlbufsiz,
/// message) for every packet, so the smallest it accepts is the cheapest.
/// Measured with 200k packets at qthreshold 1: the default (~3.7 KiB) and 4
/// KiB let the sender reach ~115k packets/s, 24 KiB ~105k, 128 KiB ~90k.
/// min(page, 8 KiB) is the smallest round value at or above NLMSG_GOODSIZE.
fn immediate_nlbufsiz() -> u32 {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096);
    u32::try_from(page).unwrap_or(4096).clamp(4096, 8192)
}

fn batch_nlbufsiz(copy_range: u16, qthreshold: u32) -> u32 {
    let range = if copy_range == 0 {
        65535
    } else {
        u32::from(copy_range)
    };
    (range + 256)
        .saturating_mul(qthreshold)
        .clamp(NLBUFSIZ_MIN, NLBUFSIZ_MAX)
}

/// Events lost between the expected sequence number and the one received. A
/// number behind the expected one (the instance was recreated) resyncs
/// without counting.
fn seq_gap(expected: u32, got: u32) -> u64 {
    let d = got.wrapping_sub(expected);
    if d < 1 << 31 { u64::from(d) } else { 0 }
}

/// The errno of the NLMSG_ERROR answering (`portid`, `seq`) in a datagram.
fn find_ack(d: &[u8], portid: u32, seq: u32) -> Option<i32> {
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
fn parse_packet(body: &[u8]) -> Option<NflogPacket<'_>> {
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
    for a in netlink::attrs(&body[NFGENMSG_LEN..]) {
        let (kind, value) = a.ok()?;
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

/// Maps a failed bind to the error the admin needs. The kernel answers EPERM
/// both without CAP_NET_ADMIN (checked first, by nfnetlink) and when another
/// socket holds the group; our own capability set and the group's line in
/// /proc/net/netfilter/nfnetlink_log tell which.
fn bind_error(group: u16, portid: u32, errno: i32) -> Error {
    let os = io::Error::from_raw_os_error(errno);
    let privileged = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_NET_ADMIN,
    )
    .unwrap_or(true);
    if errno == libc::EPERM && !privileged {
        return Error::new(
            Kind::Privilege,
            format!("binding NFLOG group {group}: {os}: CAP_NET_ADMIN is needed (run as root)"),
        );
    }
    if errno == libc::EPERM || errno == libc::EBUSY {
        let holder = match group_holder(group).filter(|&h| h != portid) {
            Some(h) => describe_portid(h),
            None => "not visible in /proc/net/netfilter/nfnetlink_log".to_string(),
        };
        return Error::other(format!(
            "NFLOG group {group} is already bound by another socket ({holder}); only one \
             socket may listen on a group: stop that process or choose another nflog_group"
        ));
    }
    if errno == libc::ETIMEDOUT {
        return Error::other(format!(
            "binding NFLOG group {group}: the kernel did not answer"
        ));
    }
    Error::other(format!("binding NFLOG group {group}: {os}"))
}

/// The netns of the calling thread (the daemon may have entered one with
/// setns, which /proc/self/net would not reflect).
fn proc_net(file: &str) -> Option<String> {
    fs::read_to_string(format!("/proc/thread-self/net/{file}"))
        .or_else(|_| fs::read_to_string(format!("/proc/self/net/{file}")))
        .ok()
}

/// Port id holding `group`, from "group portid qlen mode range timeout use".
fn group_holder(group: u16) -> Option<u32> {
    parse_holder(&proc_net("netfilter/nfnetlink_log")?, group)
}

fn parse_holder(table: &str, group: u16) -> Option<u32> {
    table.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let g: u16 = f.next()?.parse().ok()?;
        let port: u32 = f.next()?.parse().ok()?;
        (g == group).then_some(port)
    })
}

/// "netlink port id N, process NAME (pid P)" as far as /proc lets us see:
/// the port id's socket inode from /proc/net/netlink, then the process with
/// that socket open; else the process whose pid equals the port id (the
/// kernel gives a process's first netlink socket its pid).
fn describe_portid(portid: u32) -> String {
    let pid = socket_inode(portid)
        .and_then(pid_with_socket)
        .or_else(|| fs::metadata(format!("/proc/{portid}")).ok().map(|_| portid));
    match pid {
        Some(pid) => {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let comm = comm.trim();
            let comm = if comm.is_empty() { "?" } else { comm };
            format!("netlink port id {portid}, process {comm} (pid {pid})")
        }
        None => format!("netlink port id {portid}, process not found"),
    }
}

/// /proc/net/netlink: "sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode".
fn socket_inode(portid: u32) -> Option<u64> {
    proc_net("netlink")?.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let proto: i64 = f.get(1)?.parse().ok()?;
        let port: u32 = f.get(2)?.parse().ok()?;
        (proto == NETLINK_NETFILTER as i64 && port == portid).then(|| f.last()?.parse().ok())?
    })
}

fn pid_with_socket(inode: u64) -> Option<u32> {
    let want = format!("socket:[{inode}]");
    for proc_entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = proc_entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == want.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::netlink::{NLMSG_DONE, NLMSG_HDRLEN, NLMSG_NOOP};
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

    fn collect(buf: &[u8], stats: &mut NflogStats) -> Vec<Owned> {
        let mut out = Vec::new();
        parse_datagram(
            buf,
            |p| {
                out.push((
                    p.family,
                    p.hw_protocol,
                    p.payload.to_vec(),
                    p.prefix.map(<[u8]>::to_vec),
                    p.seq,
                    p.ifindex_in,
                ))
            },
            stats,
        );
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
}
