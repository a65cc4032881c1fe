//! The NFLOG socket: subscribes to one nfnetlink_log group, configures how the
//! kernel copies and batches logged packets, and hands each one to a callback
//! without copying it.
//!
//! Owns: the NETLINK_NETFILTER socket and its buffers, the group binding,
//! the copy range, qthreshold and flush timeout, sequence-gap and ENOBUFS
//! accounting. Its parts: decoding of the nfnetlink_log datagrams down to
//! the raw packet bytes (`datagram`), when to batch (`adaptive`), and
//! telling who holds a group we cannot get (`holder`).
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

mod adaptive;
mod datagram;
mod holder;

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

use crate::error::Error;
use adaptive::Adaptive;
use datagram::find_ack;
use holder::bind_error;

pub use datagram::{NflogPacket, parse_datagram};

/// How to bind the group and how the kernel should batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NflogConfig {
    /// NFLOG group the tripwire rules log to.
    pub group: u16,
    /// Bytes of each packet copied to us (from the network header), at most:
    /// the kernel copies min(packet, copy_range). 0 means the kernel's
    /// maximum (65531). See `COPY_RANGE` for the default.
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

/// The default copy range: a whole Ethernet frame's IP packet (MTU 1500).
///
/// What user space must read is the header chain up to the transport
/// header's ports and flags. An IPv4 header with options is at most 60
/// bytes; an IPv6 chain has no limit of its own, but the kernel reassembles
/// fragments before the input hook and drops a first fragment whose chain
/// does not reach the transport header (RFC 8200 section 4.5), so the chain
/// of any packet that reaches a tripwire arrived in one frame: 1500 bytes
/// cover it on Ethernet, Wi-Fi and the internet, fragmented or not (the old
/// 128 did not cover a 96-byte Destination Options header). Only a link
/// with a larger MTU (jumbo frames) carries a longer chain; such a probe is
/// undecodable and logged as such, with its source.
///
/// The kernel copies min(packet, copy range): a probe (a 40- to 80-byte
/// SYN, a small datagram) costs the same whatever the range; only a packet
/// over 128 bytes costs more, up to 1500 bytes copied instead of 128.
/// Measured (benches/nflog.rs, 200,000 UDP datagrams over veth, 2 shared
/// cores, against the old 128): 4-byte datagrams, no difference beyond the
/// noise (receiver 0.12-0.33 µs/packet batched, 1.6-2.2 immediate, either
/// range); 1400-byte datagrams, receiver +0.1-0.3 µs/packet, the sender
/// (which runs the logging softirq) 10-20% slower, and a stalled reader's
/// 32 MiB buffer holds 29,000 such packets instead of 52,000 (80,000 small
/// ones, as before). No loss at the default 32 MiB buffer.
pub const COPY_RANGE: u16 = 1500;

impl Default for NflogConfig {
    /// Every packet at once while quiet, batches of 256 with a 10 ms flush
    /// under a flood. Measured (`tests/nflog.rs`, `measure_*`: UDP over veth
    /// between two namespaces, 2 shared cores): a static kernel qthreshold of
    /// 1 delivers a lone probe in p50 0.08 ms / p99 0.16 ms, a static 64 with
    /// a 1 cs flush in p50 10.8 / p99 12 ms (the flush timer). Under a 200k
    /// UDP flood qthreshold 1 costs the reader ~3 µs per packet (a wakeup and
    /// a recv each) against ~0.3 µs batched, and the side that logs (the
    /// softirq) slows the sender to ~110k/s against ~150k/s. No static
    /// setting gives both; switching by rate gives p99 0.14 ms for a lone
    /// probe and 0.32 µs per packet under the flood, and the first probe after
    /// a flood waits one flush timeout (~9 ms). Batches of 256 rather than
    /// 64 once the per-probe work got cheaper (issue 19): the wakeup per
    /// batch (poll, schedule) was 13% of the daemon's CPU in the no-ban
    /// flood; `benches/compare --quick --only flood-nobans`, two runs each
    /// in one session: 500k and 453k probes per CPU-second at 64, 553k and
    /// 590k at 256. The nlbufsiz is then its maximum, 128 KiB.
    fn default() -> NflogConfig {
        NflogConfig {
            group: 7531,
            copy_range: COPY_RANGE,
            qthreshold: 256,
            flush_timeout_cs: 1,
            rcvbuf: 32 << 20,
        }
    }
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

#[cfg(test)]
mod tests;
