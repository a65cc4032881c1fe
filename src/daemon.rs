//! daemon: `nftsentry run`. Installs the table in one transaction, then runs
//! one poll(2) loop over signals (signalfd), the NFLOG socket and a timer
//! (ban expiry) until SIGTERM/SIGINT, and removes the table on the way out
//! unless configured to keep it.
//!
//! Per probe: decode → ignored? → classify → count per source → ban. The
//! kernel drops banned sources before the tripwire rule, so a probe from a
//! source we banned can only be one that was already queued when the ban went
//! in ("already blocked"), or a sign that the ban is gone (expired, or lifted
//! with `nftsentry unblock`): then it is a new probe.
//!
//! Knows nothing of packet formats or netlink encodings.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::bans;
use crate::cidr::Cidr;
use crate::config::Config;
use crate::detect::{self, IgnoreList, Outcome, Tracker};
use crate::error::{Error, Result};
use crate::logging;
use crate::nflog::{NflogConfig, NflogPacket, NflogSocket};
use crate::nft::NftSocket;
use crate::packet;
use crate::ruleset::{self, Ruleset};

/// After this long, a probe from a source we banned means the ban is gone:
/// the kernel would have dropped it. Queued NFLOG events arrive well within.
const IN_FLIGHT: Duration = Duration::from_secs(2);

/// How often lost NFLOG events are reported, at most.
const LOSS_REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// The ignore list and ruleset for `cfg` on this host right now.
pub fn build_ruleset(cfg: &Config) -> Result<(Ruleset, Vec<Cidr>)> {
    let ignores = crate::ignores::collect(cfg)?;
    Ok((Ruleset::from_config(cfg, &ignores), ignores))
}

/// Counters for the log and, later, `status`.
#[derive(Default, Debug)]
pub struct Stats {
    pub probes: HashMap<&'static str, u64>,
    pub not_probes: u64,
    pub ignored: u64,
    pub undecodable: u64,
    pub bans: u64,
    pub ban_errors: u64,
}

/// A ban this daemon made, as far as it knows.
struct ActiveBan {
    since: Instant,
    until: Instant,
}

/// The detection state: everything a probe passes through.
pub struct Sentry {
    cfg: Config,
    nft: NftSocket,
    ignore: IgnoreList,
    tracker: Tracker,
    active: HashMap<IpAddr, ActiveBan>,
    expiry: BinaryHeap<Reverse<(Instant, IpAddr)>>,
    pub stats: Stats,
}

impl Sentry {
    pub fn new(cfg: Config, nft: NftSocket, ignores: Vec<Cidr>) -> Sentry {
        let tracker = Tracker::new(cfg.max_tracked_sources, cfg.scan_trigger, cfg.scan_window);
        Sentry {
            ignore: IgnoreList::new(ignores),
            tracker,
            nft,
            cfg,
            active: HashMap::new(),
            expiry: BinaryHeap::new(),
            stats: Stats::default(),
        }
    }

    /// The host part of PortSentry's `<name>/<ip>`.
    fn host_name(&self, ip: IpAddr) -> String {
        ip.to_string()
    }

    pub fn on_packet(&mut self, pkt: &NflogPacket<'_>, now: Instant) {
        let probe = match packet::decode(pkt.payload) {
            Ok(p) => p,
            Err(e) => {
                self.stats.undecodable += 1;
                logging::debug(&format!("undecodable packet from NFLOG: {e}"));
                return;
            }
        };
        let src = bans::canonical(probe.src);
        if self.ignore.contains(&src) {
            // The kernel returns early for ignored sources; this is the
            // second check, for a list that changed under a running table.
            self.stats.ignored += 1;
            logging::debug(&format!("ignored source {src} probed port {}", probe.dport));
            return;
        }
        let Some(scan) = detect::classify(probe.transport) else {
            self.stats.not_probes += 1;
            logging::debug(&format!(
                "not a probe: {:?} from {src}:{} to port {}",
                probe.transport, probe.sport, probe.dport
            ));
            return;
        };
        if let Some(ban) = self.active.get(&src) {
            if now.duration_since(ban.since) > IN_FLIGHT {
                // The kernel no longer has it (lifted or expired early).
                self.active.remove(&src);
                self.tracker.forget(src);
            }
        }
        *self.stats.probes.entry(scan.key()).or_default() += 1;
        let name = self.host_name(src);
        let outcome = self.tracker.record(src, now);
        match outcome {
            Outcome::AlreadyBlocked { first } => {
                if first {
                    logging::notice(&detect::already_blocked_line(&name, src));
                }
                return;
            }
            Outcome::Counted { .. } | Outcome::Trigger => {}
        }
        if probe.ip_options {
            logging::notice(&detect::ip_options_line(scan, &name, src, probe.dport));
        }
        logging::notice(&detect::alert_line(scan, &name, src, probe.dport));
        if let Outcome::Trigger = outcome {
            self.ban(src, now);
        }
    }

    fn ban(&mut self, src: IpAddr, now: Instant) {
        let ban_time = self.cfg.ban_time;
        match bans::add(&mut self.nft, &self.cfg.table, src, ban_time, None) {
            Ok(()) => {
                self.stats.bans += 1;
                self.tracker.mark_blocked(src, now);
                self.active.insert(
                    src,
                    ActiveBan {
                        since: now,
                        until: now + ban_time,
                    },
                );
                self.expiry.push(Reverse((now + ban_time, src)));
                logging::notice(&format!(
                    "attackalert: Host {src} has been blocked via nftables set {} in table inet {} for {}",
                    bans::set_for(&src),
                    self.cfg.table,
                    ruleset::nft_duration(ban_time)
                ));
            }
            Err(e) => {
                self.stats.ban_errors += 1;
                logging::error(&format!(
                    "attackalert: ERROR: could not block host {src}: {e}"
                ));
            }
        }
    }

    /// Forgets bans the kernel has expired; returns the time to the next one.
    pub fn expire(&mut self, now: Instant) -> Option<Duration> {
        while let Some(Reverse((until, ip))) = self.expiry.peek().copied() {
            if until > now {
                return Some(until - now);
            }
            self.expiry.pop();
            // A re-ban pushed a later entry; only the current one counts.
            if self.active.get(&ip).is_some_and(|b| b.until <= now) {
                self.active.remove(&ip);
                self.tracker.forget(ip);
                logging::info(&format!("ban of {ip} expired"));
            }
        }
        None
    }
}

pub fn run(cfg: Config) -> Result<()> {
    let (ruleset, ignores) = build_ruleset(&cfg)?;

    // Signals are blocked and read from a descriptor, so the loop sees them
    // in order with everything else and nothing runs in a handler.
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(s);
    }
    mask.thread_block()
        .map_err(|e| Error::other(format!("blocking signals: {e}")))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| Error::other(format!("signalfd: {e}")))?;

    // NFLOG first: if the group is taken we stop before touching nftables.
    let mut nflog = NflogSocket::open(&NflogConfig {
        group: cfg.nflog_group,
        ..NflogConfig::default()
    })?;
    let mut nft = NftSocket::open()?;
    nft.commit(&ruleset.install_batch())?;
    logging::notice(&format!(
        "adminalert: nftsentry {} started: table inet {} installed ({} ignored networks, {} TCP and {} UDP ports watched, NFLOG group {})",
        env!("CARGO_PKG_VERSION"),
        cfg.table,
        ignores.len(),
        count_ports(&ruleset.watch_tcp),
        count_ports(&ruleset.watch_udp),
        cfg.nflog_group
    ));

    let table = cfg.table.clone();
    let keep = cfg.keep_table_on_exit;
    let mut sentry = Sentry::new(cfg, nft, ignores);
    let result = event_loop(&signals, &mut nflog, &mut sentry);

    if keep {
        logging::notice(&format!(
            "adminalert: nftsentry stopping; table inet {table} kept with its bans"
        ));
    } else {
        match sentry.nft.delete_table(&table) {
            Ok(_) => logging::notice(&format!(
                "adminalert: nftsentry stopping; table inet {table} removed"
            )),
            Err(e) => logging::error(&format!(
                "adminalert: ERROR: removing table inet {table}: {e}"
            )),
        }
    }
    result
}

fn count_ports(r: &[(u16, u16)]) -> u32 {
    r.iter().map(|&(s, e)| (e - s) as u32 + 1).sum()
}

fn event_loop(signals: &SignalFd, nflog: &mut NflogSocket, sentry: &mut Sentry) -> Result<()> {
    let mut last_loss_report = Instant::now();
    let mut reported_lost = 0u64;
    loop {
        let next_expiry = sentry.expire(Instant::now());
        let timeout = match next_expiry {
            Some(d) => PollTimeout::try_from(d.as_millis().min(60_000) as i32 + 1)
                .unwrap_or(PollTimeout::MAX),
            None => PollTimeout::from(60_000u16),
        };
        // SAFETY of the borrow: the descriptors outlive this poll call.
        let nflog_fd = unsafe { BorrowedFd::borrow_raw(nflog.as_raw_fd()) };
        let mut fds = [
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(nflog_fd, PollFlags::POLLIN),
        ];
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::other(format!("poll: {e}"))),
        }
        let nflog_ready = fds[1].revents().is_some_and(|r| !r.is_empty());
        let signal_ready = fds[0].revents().is_some_and(|r| !r.is_empty());
        if nflog_ready {
            let now = Instant::now();
            nflog.drain(|pkt| sentry.on_packet(pkt, now))?;
        }
        if signal_ready {
            while let Ok(Some(info)) = signals.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => return Ok(()),
                    Ok(Signal::SIGHUP) => logging::warning(
                        "adminalert: SIGHUP received; reload is not supported yet, keeping the running table",
                    ),
                    _ => {}
                }
            }
        }
        let st = nflog.stats();
        let lost = st.overruns + st.seq_gaps;
        if lost > reported_lost && last_loss_report.elapsed() >= LOSS_REPORT_INTERVAL {
            logging::warning(&format!(
                "adminalert: NFLOG events lost: {} receive-buffer overruns, {} sequence gaps since start",
                st.overruns, st.seq_gaps
            ));
            reported_lost = lost;
            last_loss_report = Instant::now();
        }
    }
}
