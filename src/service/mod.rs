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
//! What a ban does beyond the detection (actions, history and state files,
//! expiry, restore at start) is `respond`'s: the daemon hands it triggers,
//! ticks its timer and tells it when a child exits (SIGCHLD).
//!
//! Knows nothing of packet formats or netlink encodings.

pub mod connect;
pub mod control;
pub mod privileges;
pub mod resolve;
pub mod status;
pub mod systemd;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::cli::commands;
use crate::config::{Config, Proto};
use crate::detect::packet;
use crate::detect::{self, IgnoreList, Outcome, ScanType, Tracker};
use crate::error::{Error, Kind, Result};
use crate::host::ignores::Ignored;
use crate::kernel::nflog::{NflogConfig, NflogPacket, NflogSocket};
use crate::kernel::nft::NftSocket;
use crate::kernel::nft_events::NftEvents;
use crate::logging;
use crate::service::connect::{ConnectSockets, Visit};
use crate::service::control::{ControlServer, Reply, Request};
use crate::table::bans;

use crate::respond::{BanResult, HistoryDue, Responder, Trigger};
use crate::service::resolve::{Lookup, Resolver};
use crate::service::status::{LastBan, ProtoStatus, Snapshot};
use crate::service::systemd::Notifier;
use crate::table::ruleset::Ruleset;
use crate::table::sets::OurSet;
use netlink_packet_netfilter::nftables::TableFlags;

/// After this long, a probe from a source we banned means the ban is gone:
/// the kernel would have dropped it. Queued NFLOG events arrive well within.
const IN_FLIGHT: Duration = Duration::from_secs(2);

/// How often lost NFLOG events are reported, at most.
const LOSS_REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// The ignore list (with reasons) and ruleset for `cfg` on this host right
/// now.
pub fn build_ruleset(cfg: &Config) -> Result<(Ruleset, Vec<Ignored>)> {
    let ignores = crate::host::ignores::collect_labelled(cfg)?;
    Ok((
        Ruleset::from_config(cfg, &crate::host::ignores::networks(&ignores)),
        ignores,
    ))
}

/// Lines that say a probe from an ignored source was not acted on: one per
/// source per `IGNORED_LINE_INTERVAL` (with a count of the probes between),
/// and at most `IGNORED_LINES_MAX` per interval in all, so probes spoofed
/// from many ignored addresses cannot flood the log.
const IGNORED_LINE_INTERVAL: Duration = Duration::from_secs(60);
const IGNORED_LINES_MAX: u32 = 100;
/// Sources remembered for the per-source limit; the map is emptied when
/// full (a few more lines, never unbounded memory).
const IGNORED_SOURCES_MAX: usize = 4096;

#[derive(Default)]
struct IgnoredLog {
    /// Per source: when its last line was written, probes since not logged.
    sources: HashMap<IpAddr, (Instant, u64)>,
    window_start: Option<Instant>,
    window_lines: u32,
    window_dropped: u64,
}

impl IgnoredLog {
    /// The line to write for a probe from ignored `src` now, if any, given
    /// the line itself (`what`, without counts).
    fn line(&mut self, src: IpAddr, now: Instant, what: impl FnOnce() -> String) -> Vec<String> {
        let mut out = Vec::new();
        let start = *self.window_start.get_or_insert(now);
        if now.duration_since(start) >= IGNORED_LINE_INTERVAL {
            if self.window_dropped > 0 {
                out.push(format!(
                    "attackalert: {} more probes from ignored hosts not logged (at most {IGNORED_LINES_MAX} such lines a minute)",
                    self.window_dropped
                ));
            }
            self.window_start = Some(now);
            self.window_lines = 0;
            self.window_dropped = 0;
        }
        let since = match self.sources.get_mut(&src) {
            Some((last, n)) if now.duration_since(*last) < IGNORED_LINE_INTERVAL => {
                *n += 1;
                return out;
            }
            Some((_, n)) => *n,
            None => 0,
        };
        if self.window_lines >= IGNORED_LINES_MAX {
            self.window_dropped += 1;
            return out;
        }
        if self.sources.len() >= IGNORED_SOURCES_MAX {
            self.sources.clear();
        }
        self.sources.insert(src, (now, 0));
        self.window_lines += 1;
        let mut line = what();
        if since > 0 {
            line.push_str(&format!(
                " ({since} more probes from this host not logged since its last line)"
            ));
        }
        out.push(line);
        out
    }
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
    /// Sources not banned for lack of a handshake.
    pub withheld: u64,
}

/// A log line that names a host, held back until its name is known.
#[derive(Clone, Copy, Debug)]
enum HostLine {
    Alert(ScanType, u16),
    IpOptions(ScanType, u16),
    AlreadyBlocked,
    /// Not a log line: the ban's line in the history file.
    History(HistoryDue),
}

impl HostLine {
    fn render(self, name: &str, ip: IpAddr) -> String {
        match self {
            HostLine::Alert(scan, port) => detect::alert_line(scan, name, ip, port),
            HostLine::IpOptions(scan, port) => detect::ip_options_line(scan, name, ip, port),
            HostLine::AlreadyBlocked => detect::already_blocked_line(name, ip),
            HostLine::History(h) => {
                crate::journal::history::line_at(h.epoch, name, ip, h.port, h.protocol)
            }
        }
    }
}

/// Lines held back per source at most; a source that keeps probing while its
/// name is looked up gets the first lines, and a count of the rest.
const MAX_HELD_LINES: usize = 16;

/// How long a reverse lookup may take before the address is logged as is.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The detection state: everything a probe passes through.
pub struct Sentry {
    cfg: Config,
    nft: NftSocket,
    ignore: IgnoreList,
    /// The ignore list with the reason for each entry, for log lines.
    ignored_by: Vec<Ignored>,
    ignored_log: IgnoredLog,
    tracker: Tracker,
    /// Bans: actions, expiry, history and state files.
    respond: Responder,
    /// Reverse DNS for `resolve_host`; lines wait for it, bans never do.
    resolver: Option<Resolver>,
    held: HashMap<IpAddr, (Vec<HostLine>, u64)>,
    /// Sources that reached the trigger without a handshake while
    /// `ban_requires_handshake` holds: logged once each.
    withheld: HashSet<IpAddr>,
    last_ban_error: Option<Instant>,
    ban_errors_logged: u64,
    /// The most recent bans, newest last, for `status`.
    last_bans: VecDeque<LastBan>,
    pub stats: Stats,
}

/// Bans `status` lists.
const LAST_BANS: usize = 10;

impl Sentry {
    pub fn new(
        cfg: Config,
        nft: NftSocket,
        ignores: Vec<Ignored>,
        resolver: Option<Resolver>,
    ) -> Sentry {
        let tracker = Tracker::new(cfg.max_tracked_sources, cfg.scan_trigger, cfg.scan_window);
        let respond = Responder::new(&cfg);
        Sentry {
            respond,
            resolver,
            held: HashMap::new(),
            withheld: HashSet::new(),
            last_ban_error: None,
            ban_errors_logged: 0,
            last_bans: VecDeque::new(),
            ignore: IgnoreList::new(crate::host::ignores::networks(&ignores)),
            ignored_by: ignores,
            ignored_log: IgnoredLog::default(),
            tracker,
            nft,
            cfg,
            stats: Stats::default(),
        }
    }

    /// Logs a line naming `ip` as PortSentry's `<name>/<ip>`: at once with
    /// the address as name, or, with `resolve_host`, when the name is known.
    fn host_line(&mut self, ip: IpAddr, line: HostLine, now: Instant) {
        let Some(resolver) = self.resolver.as_mut() else {
            return self.emit(line, &ip.to_string(), ip);
        };
        if let Some((lines, dropped)) = self.held.get_mut(&ip) {
            if lines.len() < MAX_HELD_LINES {
                lines.push(line);
            } else {
                *dropped += 1;
            }
            return;
        }
        match resolver.lookup(ip, now) {
            Some(Lookup::Found(name)) => self.emit(line, &name, ip),
            Some(Lookup::NotFound) => self.emit(line, &ip.to_string(), ip),
            None => {
                self.held.insert(ip, (vec![line], 0));
            }
        }
    }

    /// A line whose host name is known: to the log, or to the history file.
    fn emit(&mut self, line: HostLine, name: &str, ip: IpAddr) {
        match line {
            HostLine::History(h) => self.respond.write_history(name, ip, &h),
            _ => logging::notice(&line.render(name, ip)),
        }
    }

    /// Logs the lines that waited for these lookups.
    fn release(&mut self, answers: Vec<(IpAddr, Option<String>)>) {
        for (ip, name) in answers {
            let Some((lines, dropped)) = self.held.remove(&ip) else {
                continue;
            };
            let name = name.unwrap_or_else(|| ip.to_string());
            for line in lines {
                self.emit(line, &name, ip);
            }
            if dropped > 0 {
                logging::notice(&format!(
                    "attackalert: {dropped} more lines for host: {name}/{ip} not logged while its name was looked up"
                ));
            }
        }
    }

    /// Reads DNS answers and times out lookups; returns the time to the next
    /// lookup deadline.
    pub fn resolve_tick(&mut self, now: Instant) -> Option<Duration> {
        let resolver = self.resolver.as_mut()?;
        let mut done = resolver.poll_answers(now);
        let (timed_out, next) = resolver.tick(now);
        done.extend(timed_out);
        self.release(done);
        next
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
        let scan = detect::classify(probe.transport);
        if self.ignore.contains(&src) {
            // The kernel never drops an ignored source, but its probes reach
            // the tripwires so that they are seen here, and logged.
            self.stats.ignored += 1;
            match scan {
                Some(scan) => self.ignored(src, scan, probe.dport, now),
                None => logging::debug(&format!(
                    "not a probe: {:?} from ignored source {src} to port {}",
                    probe.transport, probe.dport
                )),
            }
            return;
        }
        let Some(scan) = scan else {
            self.stats.not_probes += 1;
            logging::debug(&format!(
                "not a probe: {:?} from {src}:{} to port {}",
                probe.transport, probe.sport, probe.dport
            ));
            return;
        };
        self.detected(src, scan, probe.dport, probe.ip_options, now);
    }

    /// A connect-mode visitor. Returns whether it gets the banner: not
    /// when its source is ignored (PortSentry sent it only to offenders).
    pub fn on_visit(&mut self, visit: &Visit, now: Instant) -> bool {
        let src = bans::canonical(visit.src);
        let scan = match visit.proto {
            Proto::Tcp => ScanType::TcpConnect,
            Proto::Udp => ScanType::UdpConnect,
        };
        if self.ignore.contains(&src) {
            self.stats.ignored += 1;
            self.ignored(src, scan, visit.port, now);
            return false;
        }
        self.detected(src, scan, visit.port, false, now);
        true
    }

    /// A probe or visit from an ignored source: nothing is done, and the log
    /// says so (rate-limited), naming why the source is ignored. PortSentry
    /// 2.0 logs "attackalert: Host: %s found in ignore file %s, aborting
    /// actions"; 1.2 logged nothing unless built with DEBUG.
    fn ignored(&mut self, src: IpAddr, scan: ScanType, port: u16, now: Instant) {
        let why = crate::host::ignores::why(&self.ignored_by, &src).unwrap_or("ignore list");
        let lines = self.ignored_log.line(src, now, || {
            format!(
                "attackalert: Host: {src} found in ignore list ({why}), aborting actions: {scan} to {} port: {port}",
                scan.protocol()
            )
        });
        for l in lines {
            logging::notice(&l);
        }
    }

    /// A probe or visit from a source that is not ignored: log, count, and
    /// ban at the trigger.
    fn detected(&mut self, src: IpAddr, scan: ScanType, port: u16, ip_options: bool, now: Instant) {
        if self.respond.kernel_ban_older_than(src, now, IN_FLIGHT)
            || self.respond.upgrades(src, proto_of(scan))
        {
            // The kernel no longer has it (lifted or expired early), or the
            // ban so far was only a command: a trigger renews the ban.
            self.tracker.forget(src);
        }
        *self.stats.probes.entry(scan.key()).or_default() += 1;
        let outcome = self.tracker.record(src, now);
        match outcome {
            Outcome::AlreadyBlocked { first } => {
                if first {
                    self.host_line(src, HostLine::AlreadyBlocked, now);
                }
                return;
            }
            Outcome::Counted { .. } | Outcome::Trigger => {}
        }
        if ip_options {
            self.host_line(src, HostLine::IpOptions(scan, port), now);
        }
        self.host_line(src, HostLine::Alert(scan, port), now);
        if let Outcome::Trigger = outcome {
            // Only a completed TCP handshake proves the source address.
            if self.cfg.ban_requires_handshake && scan != ScanType::TcpConnect {
                self.withhold(src);
                return;
            }
            self.ban(src, scan, port, now);
        }
    }

    fn withhold(&mut self, src: IpAddr) {
        // Bounded like the tracker: a spoofed flood must not grow it.
        if self.withheld.len() >= self.cfg.max_tracked_sources {
            self.withheld.clear();
        }
        if self.withheld.insert(src) {
            self.stats.withheld += 1;
            logging::notice(&format!(
                "attackalert: Host {src} not blocked: ban_requires_handshake is set and it completed no TCP handshake"
            ));
        }
    }

    fn ban(&mut self, src: IpAddr, scan: ScanType, port: u16, now: Instant) {
        let proto = proto_of(scan);
        let trigger = Trigger {
            addr: src,
            scan,
            proto,
            port,
            mode: detection_mode(&self.cfg, scan).to_string(),
        };
        let nft = &mut self.nft;
        let table = self.cfg.table.as_str();
        let result = self.respond.ban(&trigger, now, &mut |addr, timeout| {
            bans::add(nft, table, addr, timeout, None)
        });
        let set_error = match result {
            BanResult::LogOnly => None,
            BanResult::Banned {
                history, set_error, ..
            } => {
                self.stats.bans += 1;
                if self.last_bans.len() == LAST_BANS {
                    self.last_bans.pop_front();
                }
                self.last_bans.push_back(LastBan {
                    at: crate::service::status::now_secs(),
                    addr: src,
                    scan: scan.name(),
                    port,
                });
                self.withheld.remove(&src);
                self.tracker.mark_blocked(src, now);
                if let Some(h) = history {
                    self.host_line(src, HostLine::History(h), now);
                }
                set_error
            }
            BanResult::Failed { set_error } => set_error,
        };
        if let Some(e) = set_error {
            self.ban_error(src, e, now);
        }
    }

    /// Bans in force, for STATUS= and status.
    pub fn active_bans(&self) -> usize {
        self.respond.active_bans()
    }

    /// A failed kernel-set step. A full set fails every ban of a flood: one
    /// line a minute.
    fn ban_error(&mut self, src: IpAddr, e: Error, now: Instant) {
        self.stats.ban_errors += 1;
        let due = self
            .last_ban_error
            .is_none_or(|t| now.duration_since(t) >= LOSS_REPORT_INTERVAL);
        if due {
            let more = self.stats.ban_errors - self.ban_errors_logged - 1;
            let suffix = if more > 0 {
                format!(" ({more} more ban failures since the last report)")
            } else {
                String::new()
            };
            logging::error(&format!(
                "attackalert: ERROR: could not block host {src}: {e}{suffix}"
            ));
            self.last_ban_error = Some(now);
            self.ban_errors_logged = self.stats.ban_errors;
        }
    }

    /// Ends bans that are due (and undoes their actions), times out
    /// commands, writes the state file; returns the time to the next of
    /// these.
    pub fn expire(&mut self, now: Instant) -> Option<Duration> {
        let next = self.respond.tick(now);
        for ip in self.respond.released() {
            self.tracker.forget(ip);
        }
        next
    }
}

fn proto_of(scan: ScanType) -> Proto {
    if scan.protocol() == "UDP" {
        Proto::Udp
    } else {
        Proto::Tcp
    }
}

/// $MODE$ for a detection: PortSentry's name of the mode that saw it (its
/// -tcp/-stcp/-atcp and -udp/-sudp/-audp command line switches).
fn detection_mode(cfg: &Config, scan: ScanType) -> &'static str {
    use crate::config::Tripwires;
    match scan {
        ScanType::TcpConnect => return "tcp",
        ScanType::UdpConnect => return "udp",
        _ => {}
    }
    let proto = proto_of(scan);
    let advanced = cfg.protocol(proto).mode.tripwires == Tripwires::Advanced;
    match (proto, advanced) {
        (Proto::Tcp, false) => "stcp",
        (Proto::Tcp, true) => "atcp",
        (Proto::Udp, false) => "sudp",
        (Proto::Udp, true) => "audp",
    }
}

/// Binds connect-mode sockets for `cfg` and logs what it could and could not.
fn bind_connect(cfg: &Config) -> ConnectSockets {
    let (connect, warnings) =
        ConnectSockets::bind(&cfg.tcp.connect_ports(), &cfg.udp.connect_ports());
    for w in &warnings {
        logging::warning(&format!("adminalert: WARNING: {w}"));
    }
    for (proto, p) in [(Proto::Tcp, &cfg.tcp), (Proto::Udp, &cfg.udp)] {
        if p.connect_ports().is_empty() {
            continue;
        }
        let bound = connect.ports(proto);
        let name = proto.as_str().to_ascii_uppercase();
        if bound.is_empty() {
            logging::error(&format!(
                "adminalert: ERROR: could not listen on any {name} port: connect mode for {name} is not working"
            ));
        } else {
            logging::notice(&format!(
                "adminalert: connect mode listening on {name} ports {}",
                port_list(&bound)
            ));
        }
    }
    connect
}

/// Installs `ruleset` with `bans` in one transaction. A kernel without the
/// `persist` (Linux < 6.9) or `owner` (< 5.12) table flag refuses it with
/// EOPNOTSUPP: the flag is dropped, said once, and the install retried.
fn install(
    nft: &mut NftSocket,
    ruleset: &mut Ruleset,
    bans: &[(IpAddr, Duration, Duration)],
) -> Result<()> {
    let mut races = 0;
    loop {
        let exists = nft.table_exists(&ruleset.table)?;
        let mut batch = ruleset.replace_batch(exists);
        bans::add_to_batch(&mut batch, &ruleset.table, bans.iter().copied());
        let err = match nft.commit(&batch) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if err.kind == Kind::NotSupported && ruleset.flags.contains(TableFlags::Persisent) {
            ruleset.flags.remove(TableFlags::Persisent);
            logging::warning(
                "adminalert: WARNING: this kernel has no `persist` table flag (Linux 6.9): the table goes with the daemon if it is killed; its bans come back from the state file at the next start",
            );
            continue;
        }
        if err.kind == Kind::NotSupported && ruleset.flags.contains(TableFlags::Owner) {
            ruleset.flags = TableFlags::empty();
            logging::warning(
                "adminalert: WARNING: this kernel has no `owner` table flag (Linux 5.12): the table is a plain one, watched and put back if someone deletes it",
            );
            continue;
        }
        // Someone created or deleted the table between our look and the
        // transaction: look again.
        let raced = matches!(err.kind, Kind::NotFound | Kind::Exists);
        if raced && races < 3 {
            races += 1;
            continue;
        }
        if exists && err.kind == Kind::Permission {
            return Err(Error::other(format!(
                "table inet {} exists and belongs to another running program (another nftsentry with the same `table`?): {err}",
                ruleset.table
            )));
        }
        return Err(err);
    }
}

fn flags_text(f: TableFlags) -> String {
    let mut v = Vec::new();
    if f.contains(TableFlags::Owner) {
        v.push("owner");
    }
    if f.contains(TableFlags::Persisent) {
        v.push("persist");
    }
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

pub fn run(cfg: Config) -> Result<()> {
    // Both first: the plan looks the `user` up (a typo fails before anything
    // is touched), the notifier takes NOTIFY_SOCKET out of the environment
    // (sound only while there is one thread; the daemon never starts one).
    let plan = privileges::Plan::for_config(&cfg)?;
    let notifier = Notifier::from_env(Instant::now());
    // Become `user` now, capabilities kept for the setup, so that the files
    // made while setting up (state file and lock, history) are its own.
    privileges::become_user(&plan)?;
    let (mut ruleset, ignores) = build_ruleset(&cfg)?;
    // Before anything changes: the table's name must be free, or a table
    // nftsentry left behind, and no other nftsentry may be using it.
    let mut nft = NftSocket::open()?;
    let claim = claim_table(&mut nft, &cfg.table)?;

    // Signals are blocked and read from a descriptor, so the loop sees them
    // in order with everything else and nothing runs in a handler.
    let mut mask = SigSet::empty();
    // SIGCHLD: external commands ended; the loop reaps them.
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGCHLD,
    ] {
        mask.add(s);
    }
    mask.thread_block()
        .map_err(|e| Error::other(format!("blocking signals: {e}")))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| Error::other(format!("signalfd: {e}")))?;

    // NFLOG first: if the group is taken we stop before touching nftables.
    let nflog = NflogSocket::open(&NflogConfig {
        group: cfg.nflog_group,
        ..NflogConfig::default()
    })?;
    // The control socket too: a second instance on the same socket stops
    // here, before it replaces the first one's table.
    let control = match &cfg.control_socket {
        Some(path) => Some(ControlServer::bind(path)?),
        None => None,
    };
    // Connect-mode sockets before the table: in advanced mode their ports
    // are tripwires until a socket holds them.
    let connect = bind_connect(&cfg);
    for w in handshake_warnings(&cfg) {
        logging::warning(&format!("adminalert: WARNING: {w}"));
    }
    // Bans come back in the transaction that installs the table: those of
    // the state file, and those of a table that survived (we were killed,
    // or it was kept), listed before it is replaced, so no ban has a gap.
    let mut respond = Responder::new(&cfg);
    let survived = if claim.leftover {
        logging::notice(&format!(
            "adminalert: table inet {} was left by an earlier nftsentry; replacing it",
            cfg.table
        ));
        match bans::list(&mut nft, &cfg.table) {
            Ok(list) => Some(list),
            Err(e) => {
                logging::warning(&format!(
                    "adminalert: the bans of the table inet {} left in the kernel cannot be read ({e}); they are not carried over",
                    cfg.table
                ));
                None
            }
        }
    } else {
        None
    };
    let restored = respond.restore(survived, Instant::now())?;
    let restored: Vec<_> = restored
        .iter()
        .map(|r| (r.addr, r.timeout, r.remaining))
        .collect();
    install(&mut nft, &mut ruleset, &restored)?;
    if cfg.keep_table_on_exit
        && ruleset.flags.contains(TableFlags::Owner)
        && !ruleset.flags.contains(TableFlags::Persisent)
    {
        logging::warning(
            "adminalert: WARNING: keep_table_on_exit is set, but an owned table without the persist flag goes with the daemon; set table_owner = false to keep it",
        );
    }
    // Without the owner flag anyone may delete the table: watch for it.
    let monitor = if ruleset.flags.contains(TableFlags::Owner) {
        None
    } else {
        Some(NftEvents::open()?)
    };
    // Routes and hosts.deny lines of restored bans, before we say we run.
    respond.after_install(Instant::now());
    logging::notice(&format!(
        "adminalert: nftsentry {} started: table inet {} installed (TCP mode {}, UDP mode {}, {} ignored networks, {} TCP and {} UDP ports watched, NFLOG group {})",
        env!("CARGO_PKG_VERSION"),
        cfg.table,
        cfg.tcp.mode,
        cfg.udp.mode,
        crate::host::ignores::networks(&ignores).len(),
        count_ports(&ruleset.watch_tcp),
        count_ports(&ruleset.watch_udp),
        cfg.nflog_group
    ));

    // Set up: sockets open and bound, table in. Keep only what the loop
    // needs; a failure leaves no table behind (unless told to keep it).
    if let Err(e) = drop_privileges(&plan, &cfg) {
        if !cfg.keep_table_on_exit {
            let _ = nft.delete_table(&cfg.table);
        }
        return Err(e);
    }
    // Threads only now: capabilities were dropped for this one thread, and
    // a new thread inherits the dropped sets.
    respond.start_writer();

    let table = cfg.table.clone();
    let resolver = make_resolver(&cfg)?;
    let mut sentry = Sentry::new(cfg, nft, ignores, resolver);
    sentry.respond = respond;
    let mut daemon = Daemon {
        io: Io {
            signals,
            nflog,
            connect,
            control,
            monitor,
        },
        sentry,
        ruleset,
        notifier,
        started: Instant::now(),
        check_at: None,
        reloads: 0,
        table_restores: 0,
    };
    // The table is in and we are hardened: systemd may order other units
    // after us now.
    let status = systemd::status_text(daemon.sentry.active_bans(), &daemon.sentry.stats);
    daemon.notifier.ready(&status, Instant::now());
    let result = daemon.event_loop();
    daemon.notifier.stopping();
    let nflog_stats = daemon.io.nflog.stats();
    let mut sentry = daemon.sentry;
    // Lines still waiting for a host name (history lines among them) are
    // written with the address as the name rather than lost.
    let waiting: Vec<(IpAddr, Option<String>)> = sentry.held.keys().map(|ip| (*ip, None)).collect();
    sentry.release(waiting);
    sentry.respond.shutdown();
    logging::notice(&statistics_line(&nflog_stats, &sentry.stats));

    // The configuration as it is now (a reload may have changed it).
    if sentry.cfg.keep_table_on_exit {
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

/// Held while the daemon runs: the name `nftsentry/table/inet/TABLE` in the
/// abstract unix socket namespace, which the kernel keeps per network
/// namespace (as it keeps nftables tables) and frees when the process ends,
/// however it ends. A second daemon for the same table finds the name taken.
pub struct TableClaim {
    _socket: std::os::fd::OwnedFd,
    /// A table nftsentry left behind is there; `run` replaces it.
    pub leftover: bool,
}

fn claim_name(table: &str) -> String {
    format!("nftsentry/table/inet/{table}")
}

/// Refuses to go on when another nftsentry runs with `table` in this network
/// namespace, or when a table of that name exists that nftsentry did not
/// create (it lacks `ruleset::TABLE_COMMENT`): replacing either would take
/// another daemon's bans, or someone's ruleset, away. A table nftsentry left
/// (killed, or `keep_table_on_exit`) is fine: `run` replaces it.
pub fn claim_table(nft: &mut NftSocket, table: &str) -> Result<TableClaim> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, bind, listen, socket};
    let name = claim_name(table);
    let addr = UnixAddr::new_abstract(name.as_bytes())
        .map_err(|e| Error::other(format!("socket name @{name}: {e}")))?;
    let sock = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| Error::other(format!("unix socket: {e}")))?;
    match bind(std::os::fd::AsRawFd::as_raw_fd(&sock), &addr) {
        Ok(()) => {}
        Err(nix::errno::Errno::EADDRINUSE) => {
            let who = match claim_holder(&addr) {
                Some(pid) => format!("pid {pid}"),
                None => "its pid could not be read".to_string(),
            };
            return Err(Error::other(format!(
                "table inet {table} is in use by another nftsentry in this network namespace ({who}); \
                 stop it first, or give this one another `table` (and `nflog_group`)"
            )));
        }
        Err(e) => return Err(Error::other(format!("binding @{name}: {e}"))),
    }
    // Lets `claim_holder` of a refused start read our pid.
    listen(
        &sock,
        nix::sys::socket::Backlog::new(8).unwrap_or(nix::sys::socket::Backlog::MAXCONN),
    )
    .map_err(|e| Error::other(format!("listen on @{name}: {e}")))?;
    if let Some(info) = nft.table_info(table)? {
        if info.comment.as_deref() != Some(crate::table::ruleset::TABLE_COMMENT) {
            let found = match info.comment {
                Some(c) => format!("its comment is {c:?}"),
                None => "it has no comment".to_string(),
            };
            return Err(Error::other(format!(
                "table inet {table} exists and was not created by nftsentry ({found}, not \"{}\"); \
                 it is left as it is. Set `table` to another name, or, if it is yours to drop, \
                 remove it with `nft delete table inet {table}`",
                crate::table::ruleset::TABLE_COMMENT
            )));
        }
        return Ok(TableClaim {
            _socket: sock,
            leftover: true,
        });
    }
    Ok(TableClaim {
        _socket: sock,
        leftover: false,
    })
}

/// The pid of the process listening on `addr`, from its credentials.
fn claim_holder(addr: &nix::sys::socket::UnixAddr) -> Option<i32> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, connect, getsockopt, socket, sockopt,
    };
    let s = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .ok()?;
    connect(std::os::fd::AsRawFd::as_raw_fd(&s), addr).ok()?;
    getsockopt(&s, sockopt::PeerCredentials)
        .ok()
        .map(|c| c.pid())
}

/// The counters since start, logged when the daemon stops (until the
/// control socket's `status` shows them while it runs). Lost events are the
/// NFLOG sequence numbers that never arrived: the kernel numbers every
/// packet it logs for the group, so this is exact, overruns included.
pub fn statistics_line(nflog: &crate::kernel::nflog::NflogStats, s: &Stats) -> String {
    let mut probes: Vec<(&str, u64)> = s.probes.iter().map(|(k, v)| (*k, *v)).collect();
    probes.sort_unstable();
    let probes = if probes.is_empty() {
        "none".to_string()
    } else {
        probes
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "adminalert: statistics since start: {} NFLOG packets received, {} lost (sequence gaps), \
         {} receive-buffer overruns, {} malformed; probes: {probes}; {} from ignored sources, \
         {} not probes, {} undecodable; {} bans, {} failed bans",
        nflog.packets,
        nflog.seq_gaps,
        nflog.overruns,
        nflog.malformed,
        s.ignored,
        s.not_probes,
        s.undecodable,
        s.bans,
        s.ban_errors
    )
}

fn make_resolver(cfg: &Config) -> Result<Option<Resolver>> {
    if !cfg.resolve_host {
        return Ok(None);
    }
    Ok(Some(Resolver::from_resolv_conf(
        Path::new(crate::host::ignores::RESOLV_CONF),
        RESOLVE_TIMEOUT,
        4096,
    )?))
}

/// Gives up privileges (privileges.rs) and logs what is kept; fails when
/// a file an action writes is out of reach now, and warns about files a
/// reload would read but can no longer.
fn drop_privileges(plan: &privileges::Plan, cfg: &Config) -> Result<()> {
    use privileges::Write;
    let dropped = privileges::drop_privileges(plan)?;
    logging::notice(&format!(
        "adminalert: privileges dropped: {}",
        dropped.describe()
    ));
    let mut written = Vec::new();
    if let Some(p) = &cfg.state_file {
        written.push(("state_file", p.clone(), Write::Replace));
        written.push((
            "state_file lock",
            crate::journal::state::lock_path(p),
            Write::Append,
        ));
    }
    if let Some(p) = &cfg.history_file {
        written.push(("history_file", p.clone(), Write::Append));
    }
    if let Some(p) = &cfg.hosts_deny {
        written.push(("hosts_deny", p.clone(), Write::Replace));
    }
    for (what, path, how) in written {
        privileges::check_writable(what, &path, how)?;
    }
    if !cfg.kill_route.is_empty() {
        logging::warning(
            "adminalert: WARNING: kill_route runs without capabilities (see PRIVILEGES in nftsentry(8)): a command that changes routes or firewall rules fails with \"Operation not permitted\"; `route` adds the route itself",
        );
    }
    let config = (cfg.source != crate::config::BUILTIN_SOURCE)
        .then(|| ("config file", std::path::PathBuf::from(&cfg.source)));
    let ignore = cfg.ignore_file.clone().map(|p| ("ignore_file", p));
    for (what, path) in config.into_iter().chain(ignore) {
        if let Err(e) = privileges::check_readable(what, &path) {
            logging::warning(&format!("adminalert: WARNING: {e}"));
        }
    }
    Ok(())
}

/// What `check` and start-up say about `ban_requires_handshake`.
pub fn handshake_warnings(cfg: &Config) -> Vec<String> {
    if cfg.ban_requires_handshake && !cfg.tcp.mode.connect {
        vec!["ban_requires_handshake is set but [tcp] has no connect mode: no source will ever be banned".to_string()]
    } else {
        Vec::new()
    }
}

/// "1,11,100-200".
pub fn port_list(p: &crate::config::PortSet) -> String {
    p.ranges()
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn count_ports(r: &[(u16, u16)]) -> u32 {
    r.iter().map(|&(s, e)| (e - s) as u32 + 1).sum()
}

/// Everything the loop polls besides the detection state.
struct Io {
    signals: SignalFd,
    nflog: NflogSocket,
    connect: ConnectSockets,
    control: Option<ControlServer>,
    monitor: Option<NftEvents>,
}

/// The running daemon: its descriptors, its detection state and the table
/// it installed.
struct Daemon {
    io: Io,
    sentry: Sentry,
    ruleset: Ruleset,
    /// sd_notify: READY, STATUS, WATCHDOG, RELOADING, STOPPING.
    notifier: Notifier,
    started: Instant,
    /// When to compare the kernel with what the table should hold, after
    /// nftables events (no owner flag).
    check_at: Option<Instant>,
    reloads: u64,
    table_restores: u64,
}

/// How long after an nftables event the table is checked: events come in
/// bursts (a whole `nft -f`), one check after the burst is enough.
const CHECK_DELAY: Duration = Duration::from_millis(100);

/// What the loop saw ready in one poll.
#[derive(Default)]
struct Ready {
    signals: bool,
    nflog: bool,
    monitor: bool,
    control: bool,
    visitors: Vec<usize>,
}

impl Daemon {
    fn poll(&mut self, timeout: PollTimeout) -> Result<Option<Ready>> {
        let io = &self.io;
        let mut fds = vec![
            PollFd::new(io.signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(io.nflog.as_fd(), PollFlags::POLLIN),
        ];
        let monitor_at = fds.len();
        if let Some(m) = &io.monitor {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
        }
        let control_at = fds.len();
        if let Some(c) = &io.control {
            fds.extend(
                c.fds()
                    .into_iter()
                    .map(|fd| PollFd::new(fd, PollFlags::POLLIN)),
            );
        }
        let connect_at = fds.len();
        fds.extend(
            io.connect
                .fds()
                .map(|fd| PollFd::new(fd, PollFlags::POLLIN)),
        );
        if let Some(r) = self.sentry.resolver.as_ref() {
            fds.extend(
                r.fds()
                    .into_iter()
                    .map(|fd| PollFd::new(fd, PollFlags::POLLIN)),
            );
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
            monitor: io.monitor.is_some() && ready(&fds[monitor_at]),
            control: fds[control_at..connect_at].iter().any(ready),
            visitors: (0..io.connect.len())
                .filter(|&i| ready(&fds[connect_at + i]))
                .collect(),
        }))
    }

    fn event_loop(&mut self) -> Result<()> {
        let mut last_loss_report: Option<Instant> = None;
        let mut reported_lost = 0u64;
        loop {
            let now = Instant::now();
            let sentry = &self.sentry;
            self.notifier.tick(now, || {
                systemd::status_text(sentry.active_bans(), &sentry.stats)
            });
            let next = [
                self.notifier.next_due(now),
                self.sentry.expire(now),
                self.sentry.resolve_tick(now),
                self.check_at.map(|t| t.saturating_duration_since(now)),
                self.io.control.as_ref().and_then(|c| c.next_deadline(now)),
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout = match next {
                Some(d) => PollTimeout::try_from(d.as_millis().min(60_000) as i32 + 1)
                    .unwrap_or(PollTimeout::MAX),
                None => PollTimeout::from(60_000u16),
            };
            let Some(ready) = self.poll(timeout)? else {
                continue;
            };
            if !ready.visitors.is_empty() {
                let banner = self.sentry.cfg.port_banner.clone().into_bytes();
                for i in ready.visitors {
                    let now = Instant::now();
                    let sentry = &mut self.sentry;
                    self.io
                        .connect
                        .serve(i, &banner, |v| sentry.on_visit(v, now));
                }
            }
            if ready.nflog {
                let now = Instant::now();
                let sentry = &mut self.sentry;
                self.io.nflog.drain(|pkt| sentry.on_packet(pkt, now))?;
            }
            if ready.monitor
                && self.io.monitor.as_mut().is_some_and(|m| m.drain())
                && self.check_at.is_none()
            {
                self.check_at = Some(Instant::now() + CHECK_DELAY);
            }
            if self.check_at.is_some_and(|t| t <= Instant::now()) {
                self.check_at = None;
                self.check_table();
            }
            let overdue = self
                .io
                .control
                .as_ref()
                .is_some_and(|c| c.next_deadline(Instant::now()) == Some(Duration::ZERO));
            if ready.control || overdue {
                self.serve_control();
            }
            if ready.signals {
                while let Ok(Some(info)) = self.io.signals.read_signal() {
                    match Signal::try_from(info.ssi_signo as i32) {
                        Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => return Ok(()),
                        Ok(Signal::SIGHUP) => {
                            let _ = self.reload();
                        }
                        Ok(Signal::SIGCHLD) => self.sentry.respond.on_child_exit(Instant::now()),
                        _ => {}
                    }
                }
            }
            let st = self.io.nflog.stats();
            let lost = st.overruns + st.seq_gaps;
            let due = last_loss_report.is_none_or(|t| t.elapsed() >= LOSS_REPORT_INTERVAL);
            if lost > reported_lost && due {
                logging::warning(&format!(
                    "adminalert: NFLOG events lost: {} receive-buffer overruns, {} sequence gaps since start",
                    st.overruns, st.seq_gaps
                ));
                reported_lost = lost;
                last_loss_report = Some(Instant::now());
            }
        }
    }

    /// Answers the control socket's clients (never blocks on one).
    fn serve_control(&mut self) {
        let Some(mut control) = self.io.control.take() else {
            return;
        };
        control.serve(Instant::now(), |req| self.command(req));
        self.io.control = Some(control);
        // Lifted bans: a new probe from these counts afresh.
        for ip in self.sentry.respond.released() {
            self.sentry.tracker.forget(ip);
        }
    }

    /// One control-socket request.
    fn command(&mut self, req: &Request) -> Reply {
        let json = req.args.iter().any(|a| a == "--json");
        let result = match (req.command.as_str(), req.args.as_slice()) {
            ("status", _) => {
                let snap = self.snapshot();
                Ok(if json { snap.json() } else { snap.text() })
            }
            ("list", _) => {
                let s = &mut self.sentry;
                commands::list(&s.cfg, &mut s.nft, json)
            }
            ("block", [addr, secs]) => match (addr.parse::<IpAddr>(), secs.parse::<u64>()) {
                (Ok(addr), Ok(secs)) => {
                    let s = &mut self.sentry;
                    // Ours first, so the command line's writer sees it.
                    s.respond.flush();
                    let r = commands::block(
                        &s.cfg,
                        &mut s.nft,
                        addr,
                        Duration::from_secs(secs),
                        &s.ignore,
                    );
                    s.respond.take_over();
                    r
                }
                _ => Err(Error::usage(format!("block: bad arguments {addr} {secs}"))),
            },
            ("unblock", [addr]) => match addr.parse::<IpAddr>() {
                Ok(addr) => {
                    let s = &mut self.sentry;
                    let addr = bans::canonical(addr);
                    s.respond.flush();
                    let r = commands::unblock(&s.cfg, &mut s.nft, addr);
                    if r.is_ok() {
                        s.respond.take_over();
                        s.respond.lifted(Some(&[addr]));
                    }
                    r
                }
                Err(_) => Err(Error::usage(format!("unblock: `{addr}` is not an address"))),
            },
            ("flush", []) => {
                let s = &mut self.sentry;
                s.respond.flush();
                let r = commands::flush(&s.cfg, &mut s.nft);
                if r.is_ok() {
                    s.respond.take_over();
                    s.respond.lifted(None);
                }
                r
            }
            ("reload", []) => self.reload(),
            (cmd, _) => Err(Error::usage(format!("unknown control command `{cmd}`"))),
        };
        match result {
            Ok(text) => Reply::ok(text),
            Err(e) => Reply::error(&e),
        }
    }

    fn snapshot(&mut self) -> Snapshot {
        let s = &mut self.sentry;
        let count = |nft: &mut NftSocket, set| {
            nft.set_info(&s.cfg.table, set)
                .ok()
                .and_then(|i| i.count)
                .unwrap_or(0)
        };
        let bans_v4 = count(&mut s.nft, OurSet::Blocked4.name());
        let bans_v6 = count(&mut s.nft, OurSet::Blocked6.name());
        let st = self.io.nflog.stats();
        let mut probes: Vec<(String, u64)> = s
            .stats
            .probes
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        probes.sort();
        let protocols = [(Proto::Tcp, &s.cfg.tcp), (Proto::Udp, &s.cfg.udp)]
            .into_iter()
            .map(|(proto, p)| ProtoStatus {
                name: proto.as_str(),
                mode: p.mode.to_string(),
                tripwire_ports: p.tripwire_ports().len(),
                listening_ports: self.io.connect.ports(proto).len(),
                block_mode: p.block_mode.to_string(),
            })
            .collect();
        Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            pid: std::process::id(),
            uptime: self.started.elapsed(),
            config: s.cfg.source.clone(),
            table: s.cfg.table.clone(),
            table_flags: flags_text(self.ruleset.flags),
            nflog_group: s.cfg.nflog_group,
            protocols,
            bans_v4,
            bans_v6,
            bans_since_start: s.stats.bans,
            ban_errors: s.stats.ban_errors,
            withheld: s.stats.withheld,
            probes,
            not_probes: s.stats.not_probes,
            ignored: s.stats.ignored,
            undecodable: s.stats.undecodable,
            lost_overruns: st.overruns,
            lost_seq_gaps: st.seq_gaps,
            tracked_sources: s.tracker.len(),
            top_sources: s.tracker.top(10),
            last_bans: s.last_bans.iter().rev().cloned().collect(),
            reloads: self.reloads,
            table_restores: self.table_restores,
        }
    }

    /// Re-reads the config and the ignore file and replaces the table in
    /// one transaction, every ban carried over with the time it has left.
    /// Anything wrong (a bad config, a kernel refusal) leaves the running
    /// table and settings exactly as they were.
    fn reload(&mut self) -> Result<String> {
        self.notifier.reloading();
        let result = self.try_reload();
        // The outcome is in the log before the manager hears that the
        // reload is over.
        match &result {
            Ok(msg) => logging::notice(&format!("adminalert: {}", msg.trim_end())),
            Err(e) => logging::error(&format!(
                "adminalert: ERROR: reload refused, the running table and settings are unchanged: {e}"
            )),
        }
        let status = systemd::status_text(self.sentry.active_bans(), &self.sentry.stats);
        self.notifier.ready(&status, Instant::now());
        result
    }

    fn try_reload(&mut self) -> Result<String> {
        let old = &self.sentry.cfg;
        let new = if old.source == crate::config::BUILTIN_SOURCE {
            Config::default()
        } else {
            Config::load(Some(Path::new(&old.source)))?
        };
        for (key, same) in [
            ("table", new.table == old.table),
            ("state_file", new.state_file == old.state_file),
            ("nflog_group", new.nflog_group == old.nflog_group),
            ("control_socket", new.control_socket == old.control_socket),
            ("user", new.user == old.user),
        ] {
            if !same {
                return Err(Error::config(format!(
                    "{}: key `{key}` changed: that takes a restart (systemctl restart nftsentry)",
                    new.source
                )));
            }
        }
        // Files an action writes must be writable with what we kept.
        use privileges::Write;
        if new.history_file != old.history_file {
            if let Some(p) = &new.history_file {
                privileges::check_writable("history_file", p, Write::Append)?;
            }
        }
        if new.hosts_deny != old.hosts_deny {
            if let Some(p) = &new.hosts_deny {
                privileges::check_writable("hosts_deny", p, Write::Replace)?;
            }
        }
        let (mut ruleset, ignores) = build_ruleset(&new)?;
        // Keep the flags the kernel took at start, unless owner was turned
        // off (turning it on takes a restart: the kernel's support is known
        // only from the start's install).
        ruleset.flags = if new.table_owner {
            self.ruleset.flags
        } else {
            TableFlags::empty()
        };
        let s = &mut self.sentry;
        let kernel: Vec<(IpAddr, Duration, Duration)> = bans::list(&mut s.nft, &new.table)?
            .into_iter()
            .filter_map(|b| {
                let left = b.expires_in?;
                Some((b.addr, b.timeout.unwrap_or(left), left))
            })
            .collect();
        install(&mut s.nft, &mut ruleset, &kernel)?;
        // The table is in: apply the rest, which cannot fail.
        let connect_changed = new.tcp.connect_ports() != s.cfg.tcp.connect_ports()
            || new.udp.connect_ports() != s.cfg.udp.connect_ports();
        if connect_changed {
            self.io.connect = ConnectSockets::default();
            self.io.connect = bind_connect(&new);
        }
        if new.resolve_host != s.cfg.resolve_host {
            s.resolver = make_resolver(&new).unwrap_or_else(|e| {
                logging::warning(&format!("adminalert: WARNING: resolve_host: {e}"));
                None
            });
        }
        s.ignore = IgnoreList::new(crate::host::ignores::networks(&ignores));
        let networks = crate::host::ignores::networks(&ignores).len();
        s.ignored_by = ignores;
        s.tracker.set_params(new.scan_trigger, new.scan_window);
        s.respond.reconfigure(&new);
        let monitor_needed = !ruleset.flags.contains(TableFlags::Owner);
        if monitor_needed && self.io.monitor.is_none() {
            self.io.monitor = Some(NftEvents::open()?);
        } else if !monitor_needed {
            self.io.monitor = None;
        }
        let msg = format!(
            "configuration reloaded from {}: table inet {} replaced with {} bans carried over (TCP mode {}, UDP mode {}, {} ignored networks, {} TCP and {} UDP ports watched)\n",
            new.source,
            new.table,
            kernel.len(),
            new.tcp.mode,
            new.udp.mode,
            networks,
            count_ports(&ruleset.watch_tcp),
            count_ports(&ruleset.watch_udp)
        );
        s.cfg = new;
        self.ruleset = ruleset;
        self.reloads += 1;
        Ok(msg)
    }

    /// After nftables events (no owner flag): puts the table back with
    /// every ban if someone deleted it, and the bans back if someone
    /// flushed a set.
    fn check_table(&mut self) {
        let s = &mut self.sentry;
        let table = s.cfg.table.clone();
        let should = s.respond.kernel_bans();
        let present = match s.nft.table_exists(&table) {
            Ok(p) => p,
            Err(e) => {
                logging::error(&format!(
                    "adminalert: ERROR: checking table inet {table}: {e}"
                ));
                return;
            }
        };
        let missing_sets = OurSet::ALL
            .iter()
            .any(|set| s.nft.set_info(&table, set.name()).is_err());
        let what = if !present {
            "was deleted"
        } else if missing_sets {
            "lost a set"
        } else {
            // The table is there: are the bans?
            let mut have = 0u64;
            for set in OurSet::BLOCKED {
                have += s
                    .nft
                    .set_info(&table, set.name())
                    .ok()
                    .and_then(|i| i.count)
                    .map_or(0, u64::from);
            }
            if have >= should.len() as u64 {
                return;
            }
            let list: Vec<_> = should
                .iter()
                .map(|r| (r.addr, r.timeout, r.remaining))
                .collect();
            let mut b = crate::kernel::nft::Batch::new();
            bans::add_to_batch(&mut b, &table, list.iter().copied());
            match s.nft.commit(&b) {
                Ok(()) => {
                    self.table_restores += 1;
                    logging::warning(&format!(
                        "adminalert: WARNING: bans were removed from table inet {table} by another program; {} bans put back",
                        list.len()
                    ));
                }
                Err(e) => logging::error(&format!(
                    "adminalert: ERROR: putting the bans of table inet {table} back: {e}"
                )),
            }
            return;
        };
        let list: Vec<_> = should
            .iter()
            .map(|r| (r.addr, r.timeout, r.remaining))
            .collect();
        match install(&mut s.nft, &mut self.ruleset, &list) {
            Ok(()) => {
                self.table_restores += 1;
                logging::warning(&format!(
                    "adminalert: WARNING: table inet {table} {what} (nft flush ruleset, a firewall restart?); put back with {} bans",
                    list.len()
                ));
            }
            Err(e) => logging::error(&format!(
                "adminalert: ERROR: table inet {table} {what} and could not be put back: {e}"
            )),
        }
    }
}
