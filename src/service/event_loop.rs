//! event_loop: the daemon's one poll(2) loop over signals (signalfd), the
//! NFLOG socket, connect-mode sockets, the control socket, the nftables
//! event group (without the owner flag), the resolver's sockets and a timer
//! (ban expiry, commands, state file, watchdog). Nothing in it blocks:
//! commands run as children that the loop reaps, the state file is written
//! by a thread.
//!
//! Per probe (`Core`): detection gives a verdict (`detect::Detector`), the
//! loop applies it: lines through `names`, a ban through the ledger, whose
//! actions act on the table through this loop's netlink socket.

use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;

use crate::cidr::Cidr;
use crate::config::{Config, Proto};
use crate::detect::{Act, Detector, Evidence, Verdict};
use crate::error::{Error, Result};
use crate::kernel::nflog::NflogSocket;
use crate::kernel::nft::NftSocket;
use crate::kernel::nft_events::NftEvents;
use crate::logging::{self, Gate};
use crate::respond::{BanResult, Ledger};
use crate::service::connect::ConnectSockets;
use crate::service::control::ControlServer;
use crate::service::fleet::FleetSide;
use crate::service::names::{Line, Names};
use crate::service::status::LastBan;
use crate::service::systemd::{self, Notifier};
use crate::table::bans::{BanQueue, KernelBans, QueuedBans};
use crate::table::ruleset::Ruleset;

/// How often lost NFLOG events and failed bans are reported, at most.
const REPORT_INTERVAL: Duration = Duration::from_secs(60);
/// How long after an nftables event the table is checked: events come in
/// bursts (a whole `nft -f`), one check after the burst is enough.
const CHECK_DELAY: Duration = Duration::from_millis(100);
/// Bans queued before they are sent even if the drain goes on: a few
/// netlink messages' worth.
const BURST_BANS: usize = 1024;
/// Bans `status` lists.
const LAST_BANS: usize = 10;

/// Everything the loop polls besides what `Core` owns.
pub struct Io {
    pub signals: SignalFd,
    pub nflog: NflogSocket,
    pub connect: ConnectSockets,
    pub control: Option<ControlServer>,
    pub nft_events: Option<NftEvents>,
}

/// What a probe passes through: detection, the ledger, the lines that name
/// hosts, and the netlink socket that owns the table.
pub struct Core {
    pub cfg: Config,
    pub nft: NftSocket,
    pub detector: Detector,
    pub ledger: Ledger,
    pub names: Names,
    /// Bans made since start, and those that failed.
    pub bans: u64,
    pub ban_errors: u64,
    /// Bans made on detection, by `ScanType::index`.
    pub bans_by_scan: [u64; crate::detect::ScanType::KINDS],
    ban_error_lines: Gate,
    /// The most recent bans, newest last, for `status`.
    pub last_bans: VecDeque<LastBan>,
    /// `[crowdsec]`: the fleet thread and the decisions held.
    pub fleet: Option<FleetSide>,
    /// The probes that led to each ban in force (`why`), by the ban's
    /// network: as many entries as bans, each at most
    /// `detect::story::NOTES` probes.
    pub ban_notes: std::collections::HashMap<Cidr, Vec<crate::detect::story::Note>>,
    /// `events_file`: its writer, started after the privilege drop.
    pub events: Option<crate::journal::events::EventsFile>,
    /// Kernel set additions of this burst, and the bans waiting on them.
    queue: BanQueue,
    queued_bans: Vec<QueuedBan>,
}

/// A ban whose element waits in the burst's queue.
struct QueuedBan {
    ev: Evidence,
    length: Duration,
    history: Option<crate::respond::ledger::HistoryDue>,
}

/// Seconds since 1970 with milliseconds, for `events_file`.
fn event_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_millis() as f64) / 1000.0)
        .unwrap_or(0.0)
}

impl Core {
    pub fn new(
        cfg: Config,
        nft: NftSocket,
        detector: Detector,
        ledger: Ledger,
        names: Names,
    ) -> Core {
        Core {
            cfg,
            nft,
            detector,
            ledger,
            names,
            bans: 0,
            ban_errors: 0,
            bans_by_scan: [0; crate::detect::ScanType::KINDS],
            ban_error_lines: Gate::new(REPORT_INTERVAL),
            last_bans: VecDeque::new(),
            fleet: None,
            ban_notes: std::collections::HashMap::new(),
            events: None,
            queue: BanQueue::default(),
            queued_bans: Vec::new(),
        }
    }

    /// A packet of a tripwire rule, with the rule's log prefix.
    pub fn on_packet(&mut self, payload: &[u8], prefix: Option<&[u8]>, now: Instant) {
        let live = self.is_live_peer(prefix);
        let v = self
            .detector
            .on_packet_from(payload, live, now, &self.ledger);
        self.apply(v, now);
    }

    /// The packet came through a tripwire rule for live peers: its prefix
    /// is `log_prefix` and `LIVE_PEER_SUFFIX` (no allocation per packet).
    fn is_live_peer(&self, prefix: Option<&[u8]>) -> bool {
        let suffix = crate::config::LIVE_PEER_SUFFIX.as_bytes();
        let ours = self.cfg.log_prefix.as_bytes();
        self.cfg.protect_live_peers
            && prefix.is_some_and(|p| {
                p.len() == ours.len() + suffix.len() && p.starts_with(ours) && p.ends_with(suffix)
            })
    }

    /// A connect-mode visitor. Returns whether it gets the banner: not
    /// when its source is ignored (PortSentry sent it only to offenders).
    pub fn on_visit(
        &mut self,
        src: std::net::IpAddr,
        proto: Proto,
        port: u16,
        now: Instant,
    ) -> bool {
        // A datagram's source may be forged: ask the kernel's live sets
        // (one lookup per datagram to a connect-mode UDP port; a TCP
        // visitor completed a handshake and needs none).
        let live = proto == Proto::Udp && self.cfg.protect_live_peers && self.live_in_kernel(src);
        let v = self
            .detector
            .on_visit_from(src, proto, port, live, now, &self.ledger);
        self.apply(v, now)
    }

    /// `src` is in the live-peer set of its family now.
    fn live_in_kernel(&mut self, src: std::net::IpAddr) -> bool {
        use crate::table::sets::OurSet;
        let (set, key) = match crate::cidr::canonical(src) {
            std::net::IpAddr::V4(a) => (OurSet::Live4, a.octets().to_vec()),
            std::net::IpAddr::V6(a) => (OurSet::Live6, a.octets().to_vec()),
        };
        matches!(
            self.nft.get_element(&self.cfg.table, set.name(), &key),
            Ok(Some(_))
        )
    }

    /// Carries a verdict out; true for a probe (not an ignored source).
    fn apply(&mut self, v: Verdict, now: Instant) -> bool {
        match v {
            Verdict::Nothing => false,
            Verdict::Ignored(lines) => {
                for l in lines {
                    logging::notice(&l);
                }
                false
            }
            Verdict::Probe { src, lines, act } => {
                if let Some(events) = self.events.as_mut() {
                    let action = match &act {
                        Act::Ban(_) => "ban",
                        Act::Withhold { .. } => "withheld",
                        Act::Spare { .. } => "spared",
                        Act::Nothing => "none",
                    };
                    for l in &lines {
                        if let crate::detect::HostLine::Alert(scan, port) = l {
                            events.emit(
                                serde_json::json!({
                                    "time": event_time(),
                                    "event": "probe",
                                    "source": src,
                                    "port": port,
                                    "protocol": scan.proto().as_str(),
                                    "scan_type": scan.key(),
                                    "action": action,
                                })
                                .to_string(),
                            );
                        }
                    }
                }
                for l in lines {
                    self.names.line(src, Line::Log(l), now);
                }
                match act {
                    Act::Nothing | Act::Withhold { first: false } => {}
                    Act::Withhold { first: true } => log_notice!(
                        "attackalert: Host {src} not blocked: ban_requires_handshake is set and it completed no TCP handshake"
                    ),
                    Act::Spare { first: false, .. } => {}
                    Act::Spare {
                        first: true,
                        strength,
                    } => log_notice!(
                        "attackalert: Host {src} not blocked: it has an established TCP connection to this host (a live peer), and the evidence ({}) could be forged; a completed handshake with a connect-mode port still bans it",
                        strength.as_str()
                    ),
                    Act::Ban(ev) => self.ban(&ev, now),
                }
                true
            }
        }
    }

    /// A detection's ban. With the kernel set as the only action the
    /// element waits in `queue` for the end of the burst (`end_burst`), and
    /// what follows a ban (lines, counts, the fleet) waits with it.
    fn ban(&mut self, ev: &Evidence, now: Instant) {
        let queued = self.ledger.queues_bans();
        let result = if queued {
            let mut sets = QueuedBans {
                nft: &mut self.nft,
                table: &self.cfg.table,
                prefix6: self.cfg.ban_prefix6,
                queue: &mut self.queue,
            };
            self.ledger.ban(&mut sets, ev, now)
        } else {
            let mut sets = KernelBans {
                nft: &mut self.nft,
                table: &self.cfg.table,
                prefix6: self.cfg.ban_prefix6,
            };
            self.ledger.ban(&mut sets, ev, now)
        };
        match result {
            BanResult::LogOnly => {}
            BanResult::Banned {
                history,
                set_error: None,
                length,
            } if queued => {
                self.queued_bans.push(QueuedBan {
                    ev: ev.clone(),
                    length,
                    history,
                });
                // A long drain does not hold its first bans back for long.
                if self.queued_bans.len() >= BURST_BANS {
                    self.end_burst(now);
                }
            }
            BanResult::Banned {
                history,
                set_error,
                length,
            } => {
                self.banned(ev, length, history, now);
                if let Some(e) = set_error {
                    self.ban_error(ev.addr, e, now);
                }
            }
            BanResult::Failed { set_error } => {
                if let Some(e) = set_error {
                    self.ban_error(ev.addr, e, now);
                }
            }
        }
    }

    /// The end of a burst: the queued bans go to the kernel in one
    /// transaction; those it took are told, those it refused undone.
    pub fn end_burst(&mut self, now: Instant) {
        if self.queue.is_empty() && self.queued_bans.is_empty() {
            return;
        }
        self.queue
            .send(&mut self.nft, &self.cfg.table, self.cfg.ban_prefix6);
        let refused = self.queue.take_refused();
        let mut done = std::mem::take(&mut self.queued_bans);
        for (net, e) in refused {
            let mut sets = KernelBans {
                nft: &mut self.nft,
                table: &self.cfg.table,
                prefix6: self.cfg.ban_prefix6,
            };
            self.ledger.refused(&mut sets, net, now);
            match done.iter().position(|q| q.ev.net == net) {
                Some(i) => {
                    let q = done.remove(i);
                    self.ban_error(q.ev.addr, e, now);
                }
                // An escalation's prefix.
                None => log_error!("attackalert: ERROR: could not block {net}: {e}"),
            }
        }
        self.forget_released();
        for q in done {
            crate::respond::actions::kernel_set::log_blocked(
                &q.ev.net,
                self.cfg.ban_prefix6,
                &self.cfg.table,
                q.length,
            );
            self.banned(&q.ev, q.length, q.history, now);
        }
    }

    /// What follows a ban in force: counts, the fleet, `events_file`,
    /// `status`, `why`'s notes, the history line.
    fn banned(
        &mut self,
        ev: &Evidence,
        length: Duration,
        history: Option<crate::respond::ledger::HistoryDue>,
        now: Instant,
    ) {
        self.bans += 1;
        if let Some(f) = &self.fleet {
            f.banned(ev, length);
        }
        self.ban_event(&ev.addr, "detection", Some(ev), length);
        self.bans_by_scan[ev.scan.index()] += 1;
        if self.last_bans.len() == LAST_BANS {
            self.last_bans.pop_front();
        }
        self.last_bans.push_back(LastBan {
            at: crate::service::status::now_secs(),
            addr: ev.net,
            scan: ev.scan.name(),
            port: ev.port,
        });
        if let Some(story) = self.detector.story(&ev.addr) {
            self.ban_notes.insert(ev.net, story.notes.clone());
        }
        self.detector.banned(ev.net);
        if ev.net.prefix() > ev.wanted {
            log_notice!(
                "attackalert: Host {} banned by its address alone, not by its prefix {}, which holds an ignored address",
                ev.addr,
                ev.net.widen(ev.wanted)
            );
        }
        if let Some(h) = history {
            self.names.line(ev.addr, Line::History(h), now);
        }
    }

    /// A failed kernel-set step. A full set fails every ban of a flood: one
    /// line a minute.
    fn ban_error(&mut self, src: std::net::IpAddr, e: Error, now: Instant) {
        self.ban_errors += 1;
        let suffix = match self.ban_error_lines.admit(now) {
            None => return,
            Some(0) => String::new(),
            Some(more) => format!(" ({more} more ban failures since the last report)"),
        };
        log_error!("attackalert: ERROR: could not block host {src}: {e}{suffix}");
    }

    /// Ends bans that are due (the ledger undoes their actions), times out
    /// commands, writes the state file; returns the time to the next of
    /// these.
    pub fn expire(&mut self, now: Instant) -> Option<Duration> {
        let mut sets = KernelBans {
            nft: &mut self.nft,
            table: &self.cfg.table,
            prefix6: self.cfg.ban_prefix6,
        };
        let next = self.ledger.tick(&mut sets, now);
        self.forget_released();
        next
    }

    /// Lifted or ended bans: a new probe from these counts afresh.
    pub fn forget_released(&mut self) {
        for ip in self.ledger.released() {
            self.detector.released(ip);
            self.ban_notes.remove(&ip);
            if let Some(events) = self.events.as_mut() {
                events.emit(
                    serde_json::json!({"time": event_time(), "event": "unban", "source": ip})
                        .to_string(),
                );
            }
        }
    }

    /// The `events_file` line of a ban.
    pub fn ban_event(
        &mut self,
        addr: &dyn std::fmt::Display,
        origin: &str,
        ev: Option<&Evidence>,
        length: Duration,
    ) {
        let Some(events) = self.events.as_mut() else {
            return;
        };
        let mut j = serde_json::json!({
            "time": event_time(),
            "event": "ban",
            "source": addr.to_string(),
            "origin": origin,
            "length": length.as_secs(),
        });
        if let Some(ev) = ev {
            j["scan_type"] = ev.scan.key().into();
            j["port"] = ev.port.into();
            j["protocol"] = ev.scan.proto().as_str().into();
            j["evidence"] = ev.strength.as_str().into();
        }
        events.emit(j.to_string());
    }

    /// STATUS= for the service manager.
    pub fn status_text(&self) -> String {
        systemd::status_text(
            self.ledger.active_bans(),
            self.detector.counts.total_probes(),
            self.bans,
            self.ban_errors,
        )
    }
}

/// The running daemon: its descriptors, its probe path and the table it
/// installed.
pub struct Daemon {
    pub io: Io,
    pub core: Core,
    pub ruleset: Ruleset,
    /// sd_notify: READY, STATUS, WATCHDOG, RELOADING, STOPPING.
    pub notifier: Notifier,
    pub started: Instant,
    /// The same in seconds since 1970.
    pub started_unix: u64,
    /// When to compare the kernel with what the table should hold, after
    /// nftables events (no owner flag).
    check_at: Option<Instant>,
    pub reloads: u64,
    pub table_restores: u64,
    /// The watch over local addresses, gateways and resolvers
    /// (`ignore_local`), set up by `follow_neighbours`.
    pub neighbours: Option<crate::service::neighbours::Neighbours>,
    lost_reported: u64,
    lost_lines: Gate,
    /// When the live chain turns to the next period (`protect_live_peers`).
    live_period_at: Instant,
    live_period_errors: Gate,
    /// The metrics endpoint's side in the loop (`metrics_listen`).
    pub metrics: Option<crate::service::metrics::Publisher>,
    /// Bans asked for through the control socket.
    pub bans_manual: u64,
    /// Dropped by the rules of tables replaced since start (reloads), IPv4
    /// and IPv6: the counters of the table in force start from zero.
    pub dropped_before: [(u64, u64); 2],
}

/// What the loop saw ready in one poll.
#[derive(Default)]
struct Ready {
    signals: bool,
    nflog: bool,
    nft_events: bool,
    control: bool,
    visitors: Vec<usize>,
    neighbours: bool,
    fleet: bool,
}

impl Daemon {
    pub fn new(io: Io, core: Core, ruleset: Ruleset, notifier: Notifier) -> Daemon {
        Daemon {
            io,
            core,
            ruleset,
            notifier,
            started: Instant::now(),
            started_unix: crate::service::status::now_secs(),
            check_at: None,
            reloads: 0,
            table_restores: 0,
            neighbours: None,
            lost_reported: 0,
            lost_lines: Gate::new(REPORT_INTERVAL),
            live_period_at: Instant::now() + crate::table::ruleset::LIVE_PERIOD,
            live_period_errors: Gate::new(REPORT_INTERVAL),
            metrics: None,
            bans_manual: 0,
            dropped_before: [(0, 0); 2],
        }
    }

    /// READY=1 with the first STATUS=.
    pub fn ready(&mut self) {
        let status = self.core.status_text();
        self.notifier.ready(&status, Instant::now());
    }

    /// After the loop: STOPPING=1, lines and state written, the statistics
    /// line, the table removed unless it is to be kept.
    pub fn stop(mut self) {
        self.notifier.stopping();
        let nflog_stats = self.io.nflog.stats();
        let core = &mut self.core;
        core.names.release_all();
        core.ledger.shutdown();
        logging::notice(&crate::service::run::statistics_line(&nflog_stats, core));
        // The configuration as it is now (a reload may have changed it).
        let table = core.cfg.table.clone();
        if core.cfg.keep_table_on_exit {
            log_notice!("adminalert: nftsentry stopping; table inet {table} kept with its bans");
        } else {
            match core.nft.delete_table(&table) {
                Ok(_) => log_notice!("adminalert: nftsentry stopping; table inet {table} removed"),
                Err(e) => log_error!("adminalert: ERROR: removing table inet {table}: {e}"),
            }
        }
    }

    fn poll(&mut self, timeout: PollTimeout) -> Result<Option<Ready>> {
        let io = &self.io;
        let mut fds = vec![
            PollFd::new(io.signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(io.nflog.as_fd(), PollFlags::POLLIN),
        ];
        let events_at = fds.len();
        if let Some(m) = &io.nft_events {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
        }
        let control_at = fds.len();
        if let Some(c) = &io.control {
            // POLLOUT for clients whose answer is not all written yet.
            fds.extend(
                c.fds()
                    .into_iter()
                    .map(|(fd, events)| PollFd::new(fd, events)),
            );
        }
        let connect_at = fds.len();
        fds.extend(
            io.connect
                .fds()
                .map(|fd| PollFd::new(fd, PollFlags::POLLIN)),
        );
        fds.extend(
            self.core
                .names
                .fds()
                .into_iter()
                .map(|fd| PollFd::new(fd, PollFlags::POLLIN)),
        );
        let fleet_at = fds.len();
        if let Some(f) = &self.core.fleet {
            fds.push(PollFd::new(f.fleet.fd(), PollFlags::POLLIN));
        }
        let neighbours_at = fds.len();
        if let Some(n) = &self.neighbours {
            fds.extend(n.fds().map(|fd| PollFd::new(fd, PollFlags::POLLIN)));
        }
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => return Ok(None),
            Err(e) => return Err(Error::other(format!("poll: {e}"))),
        }
        let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
        Ok(Some(Ready {
            signals: ready(&fds[0]),
            nflog: ready(&fds[1]),
            nft_events: io.nft_events.is_some() && ready(&fds[events_at]),
            control: fds[control_at..connect_at].iter().any(ready),
            visitors: (0..io.connect.len())
                .filter(|&i| ready(&fds[connect_at + i]))
                .collect(),
            neighbours: fds[neighbours_at..].iter().any(ready),
            fleet: fds[fleet_at..neighbours_at].iter().any(ready),
        }))
    }

    /// The time until the next timer is due, as poll's timeout.
    fn timeout(&mut self, now: Instant) -> PollTimeout {
        // The storm guard's lines (on, off) when they are due.
        for line in self.core.detector.tick(now) {
            logging::log(logging::Level::Warning, &line);
        }
        let core = &self.core;
        self.notifier.tick(now, || core.status_text());
        if self.metrics.as_ref().is_some_and(|m| m.due(now)) {
            let text = self.figures().exposition();
            if let Some(m) = self.metrics.as_mut() {
                m.publish(text, now);
            }
        }
        let next = [
            self.metrics.as_ref().map(|m| m.next_due(now)),
            self.notifier.next_due(now),
            self.core.expire(now),
            self.core.names.tick(now),
            self.check_at.map(|t| t.saturating_duration_since(now)),
            self.live_period(now),
            self.io.control.as_ref().and_then(|c| c.next_deadline(now)),
            self.neighbours.as_ref().and_then(|n| n.next_due(now)),
        ]
        .into_iter()
        .flatten()
        .min();
        match next {
            Some(d) => PollTimeout::try_from(d.as_millis().min(60_000) as i32 + 1)
                .unwrap_or(PollTimeout::MAX),
            None => PollTimeout::from(60_000u16),
        }
    }

    /// Until SIGTERM or SIGINT.
    pub fn event_loop(&mut self) -> Result<()> {
        loop {
            // Timers (a flood's bans end together) write their lines
            // together too, before the poll.
            let timeout = {
                let _burst = logging::Burst::start();
                let t = self.timeout(Instant::now());
                self.core.names.end_burst();
                t
            };
            let Some(ready) = self.poll(timeout)? else {
                continue;
            };
            // The lines of what this turn handles are written together when
            // it ends, before the next poll (an early return drops it too).
            let burst = logging::Burst::start();
            if !ready.visitors.is_empty() {
                let banner = self.core.cfg.port_banner.clone().into_bytes();
                for i in ready.visitors {
                    let now = Instant::now();
                    let core = &mut self.core;
                    self.io
                        .connect
                        .serve(i, &banner, |v| core.on_visit(v.src, v.proto, v.port, now));
                    core.end_burst(now);
                }
            }
            if ready.nflog {
                let now = Instant::now();
                let core = &mut self.core;
                let drained = self
                    .io
                    .nflog
                    .drain(|pkt| core.on_packet(pkt.payload, pkt.prefix, now));
                // The bans of what was read, even if the read then failed.
                core.end_burst(now);
                drained?;
            }
            self.watch_table(ready.nft_events);
            self.neighbours_turn(ready.neighbours);
            if ready.fleet {
                self.fleet_turn();
            }
            let overdue = self
                .io
                .control
                .as_ref()
                .is_some_and(|c| c.next_deadline(Instant::now()) == Some(Duration::ZERO));
            if ready.control || overdue {
                self.serve_control();
            }
            if ready.signals && self.signals() {
                self.core.names.end_burst();
                return Ok(());
            }
            self.report_losses();
            self.core.names.end_burst();
            drop(burst);
        }
    }

    /// Reads the signals that arrived; true for SIGTERM or SIGINT.
    fn signals(&mut self) -> bool {
        while let Ok(Some(info)) = self.io.signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => return true,
                Ok(Signal::SIGHUP) => {
                    let _ = self.reload();
                }
                Ok(Signal::SIGCHLD) => self.core.ledger.on_child_exit(Instant::now()),
                _ => {}
            }
        }
        false
    }

    /// After nftables events (no owner flag): the table is checked once
    /// the burst is over, and put back if someone changed it.
    fn watch_table(&mut self, events: bool) {
        if events
            && self.io.nft_events.as_mut().is_some_and(|m| m.drain())
            && self.check_at.is_none()
        {
            self.check_at = Some(Instant::now() + CHECK_DELAY);
        }
        if self.check_at.is_some_and(|t| t <= Instant::now()) {
            self.check_at = None;
            let ledger = &self.core.ledger;
            let should = || {
                ledger
                    .kernel_bans()
                    .iter()
                    .map(|r| (r.addr, r.timeout, r.remaining))
                    .collect()
            };
            if crate::table::watch::check(
                &mut self.core.nft,
                &mut self.ruleset,
                ledger.kernel_ban_count(),
                should,
            ) == crate::table::watch::Checked::Restored
            {
                self.table_restores += 1;
                // The fleet's decisions go back in too.
                self.fleet_rewrite();
            }
        }
    }

    /// What the fleet thread sent: decisions into the table, its status.
    fn fleet_turn(&mut self) {
        let core = &mut self.core;
        if let Some(f) = &mut core.fleet {
            let ledger = &core.ledger;
            f.turn(&mut core.nft, &self.ruleset, &|a| {
                ledger.covering_ban(&crate::cidr::Cidr::host(a)).is_some()
            });
        }
    }

    /// The fleet's sets written again from what is held (after the table
    /// was put back or replaced).
    pub fn fleet_rewrite(&mut self) {
        let core = &mut self.core;
        if let Some(f) = &mut core.fleet {
            let ledger = &core.ledger;
            f.write_sets(&mut core.nft, &self.ruleset, &|a| {
                ledger.covering_ban(&crate::cidr::Cidr::host(a)).is_some()
            });
        }
    }

    /// Turns the live chain to the next period when it is due (one small
    /// transaction a minute, whatever the traffic); returns the time to
    /// the next turn.
    fn live_period(&mut self, now: Instant) -> Option<Duration> {
        self.ruleset.live_mark?;
        if now >= self.live_period_at {
            self.live_period_at = now + crate::table::ruleset::LIVE_PERIOD;
            if let Some(batch) = self.ruleset.next_live_period() {
                if let Err(e) = self.core.nft.commit(&batch) {
                    // The kernel keeps the chain it had: so does the ruleset.
                    self.ruleset.live_phase = !self.ruleset.live_phase;
                    if self.live_period_errors.admit(now).is_some() {
                        log_error!(
                            "adminalert: ERROR: turning the live-peer chain of table inet {} to the next period: {e}",
                            self.ruleset.table
                        );
                    }
                }
            }
        }
        Some(self.live_period_at.saturating_duration_since(now))
    }

    /// NFLOG events lost (sequence numbers that never arrived), at most
    /// one line a minute.
    fn report_losses(&mut self) {
        let st = self.io.nflog.stats();
        if st.seq_gaps > self.lost_reported && self.lost_lines.admit(Instant::now()).is_some() {
            log_warning!(
                "adminalert: NFLOG events lost: {} receive-buffer overruns, {} sequence gaps since start",
                st.overruns,
                st.seq_gaps
            );
            self.lost_reported = st.seq_gaps;
        }
    }
}
