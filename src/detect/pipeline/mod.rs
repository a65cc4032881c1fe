//! pipeline: detection as one pure step. A packet from NFLOG (or a visitor
//! of a connect-mode port) goes in, a `Verdict` comes out: what to log and
//! whether to ban. It decodes and names the probe, checks the ignore list,
//! asks the ledger (through `Bans`) whether the source is banned, counts
//! the source against the trigger, and decides. No sockets, no files, no
//! clock of its own: the service applies the verdict, and the tests feed
//! tables of probes and read the verdicts back, without root.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::cidr::Cidr;
use crate::config::{Config, Proto};

use super::classify::{ScanType, classify};
use super::evidence::{Evidence, Strength, strength_of};
use super::ignore::{IgnoreList, Ignored, why};
use super::packet;
use super::storm::{Storm, StormState};
use super::tracker::{Outcome, Tracker};
use crate::logging::Gate;

/// After this long, a probe from a source banned in the kernel set means
/// the ban is gone (lifted, flushed, expired early): the kernel would have
/// dropped it. Probes queued in NFLOG before the ban arrive well within.
pub const IN_FLIGHT: Duration = Duration::from_secs(2);

/// A ban in force, as the ledger sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BanInForce {
    /// Since when it is in force.
    pub age: Duration,
    /// It has a kernel set element (else it was only a command).
    pub in_kernel: bool,
    /// A probe on this protocol would make it stronger (a command-only ban
    /// meets a protocol in block mode).
    pub upgradable: bool,
}

/// What detection asks of the ledger.
pub trait Bans {
    /// The ban in force on `net` (itself, or a wider ban that covers it),
    /// if any, for a probe on `proto`.
    fn ban_on(&self, net: Cidr, proto: Proto, now: Instant) -> Option<BanInForce>;
}

/// A log line that names a host, written once its name is known (with
/// `resolve_host`, after a reverse lookup).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostLine {
    /// `attackalert: <scan> from host: <name>/<ip> to <proto> port: <port>`.
    Alert(ScanType, u16),
    /// The IP options line PortSentry wrote before the alert.
    IpOptions(ScanType, u16),
    /// `attackalert: Host: <name>/<ip> is already blocked Ignoring`.
    AlreadyBlocked,
}

/// The lines of one probe, in order, held in place (a probe allocates
/// nothing): at most two, the IP options line and the alert, or the
/// "already blocked" line. `for l in lines` and `for l in &lines` walk
/// them; it derefs to a slice.
#[derive(Clone, Copy)]
pub struct HostLines {
    lines: [HostLine; HostLines::MAX],
    len: u8,
}

impl HostLines {
    pub const MAX: usize = 2;

    pub const fn new() -> HostLines {
        HostLines {
            lines: [HostLine::AlreadyBlocked; HostLines::MAX],
            len: 0,
        }
    }

    /// Adds `line` (at most `MAX`: more is a bug, and panics).
    pub fn push(&mut self, line: HostLine) {
        self.lines[usize::from(self.len)] = line;
        self.len += 1;
    }

    pub fn as_slice(&self) -> &[HostLine] {
        &self.lines[..usize::from(self.len)]
    }
}

impl Default for HostLines {
    fn default() -> HostLines {
        HostLines::new()
    }
}

impl std::ops::Deref for HostLines {
    type Target = [HostLine];
    fn deref(&self) -> &[HostLine] {
        self.as_slice()
    }
}

impl PartialEq for HostLines {
    fn eq(&self, other: &HostLines) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for HostLines {}

impl std::fmt::Debug for HostLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl IntoIterator for HostLines {
    type Item = HostLine;
    type IntoIter = std::iter::Take<std::array::IntoIter<HostLine, { HostLines::MAX }>>;
    fn into_iter(self) -> Self::IntoIter {
        self.lines.into_iter().take(usize::from(self.len))
    }
}

impl<'a> IntoIterator for &'a HostLines {
    type Item = &'a HostLine;
    type IntoIter = std::slice::Iter<'a, HostLine>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

#[cfg(test)]
impl From<Vec<HostLine>> for HostLines {
    fn from(v: Vec<HostLine>) -> HostLines {
        let mut l = HostLines::new();
        for x in v {
            l.push(x);
        }
        l
    }
}

/// What a probe means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not a probe, or not a packet we could read: counted, nothing else.
    Nothing,
    /// From an ignored source: these lines (at most a few a minute) and
    /// nothing else.
    Ignored(Vec<String>),
    /// A probe: its lines (in order), then what to do.
    Probe {
        src: IpAddr,
        lines: HostLines,
        act: Act,
    },
}

/// What to do after the lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Act {
    /// Below the trigger, or the source is banned already.
    Nothing,
    /// Ban the source.
    Ban(Evidence),
    /// The trigger is reached without a handshake while
    /// `ban_requires_handshake` holds: not banned, said once per source.
    Withhold { first: bool },
    /// The trigger is reached by a live peer (an established TCP
    /// connection to this host) on evidence that could be forged: not
    /// banned, said once per source.
    Spare { first: bool, strength: Strength },
}

/// Probe counts since start, for `status` and the statistics line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Per scan type, indexed by `ScanType::index`.
    pub probes: [u64; ScanType::KINDS],
    pub not_probes: u64,
    pub ignored: u64,
    pub undecodable: u64,
    /// Sources not banned for lack of a handshake.
    pub withheld: u64,
    /// Live peers not banned on forgeable evidence (`protect_live_peers`):
    /// sources, each counted once while remembered.
    pub spared: u64,
    /// Packets from IPv4-mapped IPv6 addresses (bogus on the wire).
    pub bogus: u64,
}

impl Counts {
    /// (scan type key, count) for the types seen, sorted by key.
    pub fn by_scan(&self) -> Vec<(&'static str, u64)> {
        let mut v: Vec<(&'static str, u64)> = ScanType::KEYS
            .iter()
            .zip(self.probes)
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (*k, n))
            .collect();
        v.sort_unstable();
        v
    }

    pub fn total_probes(&self) -> u64 {
        self.probes.iter().sum()
    }
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
struct IgnoredLines {
    /// Per source: when its last line was written, probes since not logged.
    sources: HashMap<IpAddr, (Instant, u64)>,
    window_start: Option<Instant>,
    window_lines: u32,
    window_dropped: u64,
}

impl IgnoredLines {
    /// The lines to write for a probe from ignored `src` now, given the
    /// line itself (`what`, without counts).
    fn lines(&mut self, src: IpAddr, now: Instant, what: impl FnOnce() -> String) -> Vec<String> {
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

/// At most three lines a minute about undecodable packets.
const UNDECODABLE_LINE_INTERVAL: Duration = Duration::from_secs(20);

/// A set of sources bounded like the tracker: emptied when full, so a
/// spoofed flood cannot grow it (a few lines said twice, at worst).
struct Bounded {
    set: HashSet<IpAddr>,
    max: usize,
}

impl Bounded {
    fn new(max: usize) -> Bounded {
        Bounded {
            set: HashSet::new(),
            max: max.max(1),
        }
    }

    /// True if `ip` was not in it.
    fn insert(&mut self, ip: IpAddr) -> bool {
        if self.set.len() >= self.max && !self.set.contains(&ip) {
            self.set.clear();
        }
        self.set.insert(ip)
    }

    fn remove(&mut self, ip: &IpAddr) {
        self.set.remove(ip);
    }
}

/// What a probe carried besides its addresses and port.
#[derive(Clone, Copy, Debug, Default)]
struct Marks {
    /// The IP header had options (PortSentry's extra line).
    ip_options: bool,
    /// A tripwire rule for live peers logged it.
    live: bool,
}

/// The settings detection reads from the config.
struct Settings {
    /// Per protocol (TCP, UDP): forgeable evidence only logs (`forgeable`
    /// = "log", or `ban_requires_handshake`).
    log_forgeable: [bool; 2],
    /// Per protocol (TCP, UDP): advanced tripwires, for $MODE$.
    advanced: [bool; 2],
    /// `ban_prefix6`: an IPv6 source is counted and banned by this prefix.
    prefix6: u8,
    /// `protect_live_peers`.
    protect_live: bool,
}

impl Settings {
    fn of(cfg: &Config) -> Settings {
        use crate::config::{Forgeable, Tripwires};
        let log = |p: &crate::config::Protocol| {
            cfg.ban_requires_handshake || p.forgeable == Forgeable::Log
        };
        Settings {
            log_forgeable: [log(&cfg.tcp), log(&cfg.udp)],
            advanced: [
                cfg.tcp.mode.tripwires == Tripwires::Advanced,
                cfg.udp.mode.tripwires == Tripwires::Advanced,
            ],
            prefix6: cfg.ban_prefix6,
            protect_live: cfg.protect_live_peers,
        }
    }
}

fn proto_index(p: Proto) -> usize {
    match p {
        Proto::Tcp => 0,
        Proto::Udp => 1,
    }
}

/// $MODE$ for a detection: PortSentry's name of the mode that saw it (its
/// -tcp/-stcp/-atcp and -udp/-sudp/-audp command line switches).
pub fn mode_name(scan: ScanType, advanced: bool) -> &'static str {
    match (scan, scan.proto(), advanced) {
        (ScanType::TcpConnect, _, _) => "tcp",
        (ScanType::UdpConnect, _, _) => "udp",
        (_, Proto::Tcp, false) => "stcp",
        (_, Proto::Tcp, true) => "atcp",
        (_, Proto::Udp, false) => "sudp",
        (_, Proto::Udp, true) => "audp",
    }
}

/// $MODE$ of a ban made by a scan of type `key` under `cfg` (a state file
/// of the first release did not record it; "manual" for no scan).
pub fn mode_of_key(cfg: &Config, key: &str) -> &'static str {
    match ScanType::from_key(key) {
        Some(scan) => mode_name(scan, Settings::of(cfg).advanced[proto_index(scan.proto())]),
        None => "manual",
    }
}

/// Everything a probe passes through.
pub struct Detector {
    tracker: Tracker,
    ignore: IgnoreList,
    /// The ignore list with the reason for each entry, for log lines.
    ignored_by: Vec<Ignored>,
    ignored_lines: IgnoredLines,
    /// Lines about undecodable packets: one per `UNDECODABLE_LINE_INTERVAL`.
    undecodable_lines: crate::logging::Gate,
    /// Sources that reached the trigger without a handshake: said once each.
    withheld: Bounded,
    /// Live peers that reached the trigger on forgeable evidence: said
    /// once each.
    spared: Bounded,
    /// Banned sources whose late probe was said ("already blocked"): once
    /// per ban.
    late: Bounded,
    settings: Settings,
    /// The guard against floods of forged probes.
    storm: Storm,
    /// Lines of bogus packets: a few a minute.
    bogus_lines: Gate,
    pub counts: Counts,
    /// What happened to each source lately, for `why`.
    stories: super::story::Stories,
}

impl Detector {
    pub fn new(cfg: &Config, ignores: Vec<Ignored>) -> Detector {
        Detector {
            tracker: Tracker::new(cfg.max_tracked_sources, cfg.scan_trigger, cfg.scan_window),
            ignore: IgnoreList::new(super::ignore::networks(&ignores)),
            ignored_by: ignores,
            ignored_lines: IgnoredLines::default(),
            undecodable_lines: crate::logging::Gate::new(UNDECODABLE_LINE_INTERVAL),
            withheld: Bounded::new(cfg.max_tracked_sources),
            spared: Bounded::new(cfg.max_tracked_sources),
            late: Bounded::new(cfg.max_tracked_sources),
            settings: Settings::of(cfg),
            storm: Storm::new(cfg.storm_threshold, cfg.storm_hold),
            bogus_lines: Gate::new(Duration::from_secs(60)),
            counts: Counts::default(),
            stories: super::story::Stories::new(cfg.max_tracked_sources),
        }
    }

    /// New settings and ignore list (reload); counts in progress are kept.
    pub fn reconfigure(&mut self, cfg: &Config, ignores: Vec<Ignored>) {
        self.ignore = IgnoreList::new(super::ignore::networks(&ignores));
        self.ignored_by = ignores;
        self.tracker.set_params(cfg.scan_trigger, cfg.scan_window);
        self.settings = Settings::of(cfg);
        self.storm.set(cfg.storm_threshold, cfg.storm_hold);
        self.stories.set_max(cfg.max_tracked_sources);
    }

    /// Why `addr` is ignored (the first entry holding it), if it is.
    pub fn ignored_because(&self, addr: &IpAddr) -> Option<&str> {
        if self.ignore.contains(addr) {
            Some(why(&self.ignored_by, addr).unwrap_or("ignore list"))
        } else {
            None
        }
    }

    /// The last probes and decision about `addr` (about what it is
    /// counted as, `net_of`), if remembered.
    pub fn story(&self, addr: &IpAddr) -> Option<super::story::Story> {
        self.stories.get(&Self::key(&self.net_of(*addr)))
    }

    /// `addr`'s count towards the trigger now (its `net_of`'s), if it is
    /// tracked.
    pub fn progress(&self, addr: IpAddr, now: Instant) -> Option<super::tracker::Progress> {
        self.tracker.progress(Self::key(&self.net_of(addr)), now)
    }

    /// Sources with a story (`why`), for the memory figure.
    pub fn stories(&self) -> usize {
        self.stories.len()
    }

    /// Heap bytes of the per-source state at its allocated capacity: the
    /// tracker (`Tracker::heap_bytes`) and the stories
    /// (`Stories::heap_bytes`), the two that grow with a flood of sources
    /// (the once-per-source sets of withheld, spared and late sources are
    /// not counted: they hold only sources at the trigger).
    pub fn heap_bytes(&self) -> usize {
        self.tracker.heap_bytes() + self.stories.heap_bytes()
    }

    /// The storm guard's state, for `status`.
    pub fn storm(&self) -> Option<StormState> {
        self.storm.state()
    }

    /// Keeps the storm guard's clock running (the loop's timer); returns
    /// lines to log (the guard went on or off).
    pub fn tick(&mut self, now: Instant) -> Vec<String> {
        self.storm.tick(now);
        self.storm.take_lines()
    }

    /// Is `addr` on the ignore list?
    pub fn is_ignored(&self, addr: &IpAddr) -> bool {
        self.ignore.contains(addr)
    }

    /// Does `net` hold an address of the ignore list?
    pub fn covers_ignored(&self, net: &Cidr) -> bool {
        self.ignore.overlaps(net)
    }

    /// What a source is counted and banned as: an IPv4 address itself, an
    /// IPv6 address by its `ban_prefix6` prefix, or by itself when that
    /// prefix holds an ignored address. Every address of one such prefix
    /// maps to the same prefix, so a scanner rotating its address inside
    /// it is one source.
    pub fn net_of(&self, src: IpAddr) -> Cidr {
        match src {
            IpAddr::V4(_) => Cidr::host(src),
            IpAddr::V6(_) => self.ignore.ban_net(src, self.settings.prefix6),
        }
    }

    /// The prefixes a ban of `net` may escalate to: an IPv4 address's /24,
    /// an IPv6 ban's /56 and /48 (those at least as long as `net` only),
    /// narrowest first, none that holds an ignored address.
    pub fn escalation_nets(&self, net: &Cidr) -> Vec<Cidr> {
        let steps: &[u8] = if net.is_ipv4() { &[24] } else { &[56, 48] };
        steps
            .iter()
            .filter(|p| **p < net.prefix())
            .map(|p| net.widen(*p))
            .take_while(|w| !self.ignore.overlaps(w))
            .collect()
    }

    /// The tracker's key of a network: its first address. A prefix's
    /// first address is never banned by itself (it is inside the prefix,
    /// which holds no ignored address), so no two networks share a key.
    fn key(net: &Cidr) -> IpAddr {
        net.addr()
    }

    /// Sources tracked now, and the `n` with the most probes.
    pub fn tracked(&self) -> usize {
        self.tracker.len()
    }

    pub fn top(&self, n: usize) -> Vec<(Cidr, u32)> {
        self.tracker
            .top(n)
            .into_iter()
            .map(|(a, c)| (self.net_of(a), c))
            .collect()
    }

    /// `net` is banned now: its count is over.
    pub fn banned(&mut self, net: Cidr) {
        self.tracker.forget(Self::key(&net));
        self.withheld.remove(&Self::key(&net));
        self.spared.remove(&Self::key(&net));
    }

    /// The ban of `net` ended or was lifted: its next probe counts afresh.
    pub fn released(&mut self, net: Cidr) {
        self.tracker.forget(Self::key(&net));
        self.late.remove(&Self::key(&net));
        self.stories.forget(&Self::key(&net));
    }

    /// A packet logged by a tripwire rule.
    pub fn on_packet(&mut self, payload: &[u8], now: Instant, bans: &dyn Bans) -> Verdict {
        self.on_packet_from(payload, false, now, bans)
    }

    /// A packet logged by a tripwire rule; `live`: by the rule for live
    /// peers (its source has an established TCP connection to this host).
    /// Long: the steps a probe passes through, in order, each with its
    /// line; read top to bottom it is the DATA FLOW of nftsentry(8).
    pub fn on_packet_from(
        &mut self,
        payload: &[u8],
        live: bool,
        now: Instant,
        bans: &dyn Bans,
    ) -> Verdict {
        let probe = match packet::decode(payload) {
            Ok(p) if p.group_addressed() => {
                self.counts.not_probes += 1;
                log_debug!(
                    "not a probe: {:?} to {}, a group address",
                    p.transport,
                    p.dst
                );
                return Verdict::Nothing;
            }
            Ok(p) => p,
            Err(error) => {
                // A tripwire logged it: say so, at most a few lines a minute.
                self.counts.undecodable += 1;
                if let Some(held) = self.undecodable_lines.admit(now) {
                    let what = packet::Undecodable {
                        packet: payload,
                        error: &error,
                    };
                    let more = if held > 0 {
                        format!(" ({held} more since the last such line)")
                    } else {
                        String::new()
                    };
                    log_notice!(
                        "attackalert: undecodable packet on a tripwire {what}; not acted on{more}"
                    );
                }
                return Verdict::Nothing;
            }
        };
        // On the wire an IPv4-mapped IPv6 source (::ffff:a.b.c.d) is no
        // host's address: such a packet is forged, and banning it as its
        // IPv4 host would ban that host on a lie (and never drop the packet,
        // which the IPv6 set does not hold).
        if let IpAddr::V6(v6) = probe.src {
            if v6.to_ipv4_mapped().is_some() {
                self.counts.bogus += 1;
                if let Some(more) = self.bogus_lines.admit(now) {
                    log_notice!(
                        "attackalert: packet from IPv4-mapped address {} to port {} is forged (no host sends that); not acted on{}",
                        probe.src,
                        probe.dport,
                        if more > 0 {
                            format!(" ({more} more such packets since the last line)")
                        } else {
                            String::new()
                        }
                    );
                }
                return Verdict::Nothing;
            }
        }
        let src = probe.src;
        let scan = classify(probe.transport);
        if self.ignore.contains(&src) {
            // The kernel never drops an ignored source, but its probes reach
            // the tripwires so that they are seen here, and logged.
            self.counts.ignored += 1;
            return match scan {
                Some(scan) => self.ignored(src, scan, probe.dport, now),
                None => {
                    log_debug!(
                        "not a probe: {:?} from ignored source {src} to port {}",
                        probe.transport,
                        probe.dport
                    );
                    Verdict::Nothing
                }
            };
        }
        let Some(scan) = scan else {
            self.counts.not_probes += 1;
            log_debug!(
                "not a probe: {:?} from {src}:{} to port {}",
                probe.transport,
                probe.sport,
                probe.dport
            );
            return Verdict::Nothing;
        };
        let marks = Marks {
            ip_options: probe.ip_options,
            live,
        };
        self.detected(src, scan, probe.dport, marks, now, bans)
    }

    /// A visitor of a connect-mode port.
    pub fn on_visit(
        &mut self,
        src: IpAddr,
        proto: Proto,
        port: u16,
        now: Instant,
        bans: &dyn Bans,
    ) -> Verdict {
        self.on_visit_from(src, proto, port, false, now, bans)
    }

    /// A visitor of a connect-mode port; `live`: its source is a live peer
    /// (what matters for a UDP datagram, whose source may be forged).
    pub fn on_visit_from(
        &mut self,
        src: IpAddr,
        proto: Proto,
        port: u16,
        live: bool,
        now: Instant,
        bans: &dyn Bans,
    ) -> Verdict {
        let src = crate::cidr::canonical(src);
        let scan = match proto {
            Proto::Tcp => ScanType::TcpConnect,
            Proto::Udp => ScanType::UdpConnect,
        };
        if self.ignore.contains(&src) {
            self.counts.ignored += 1;
            return self.ignored(src, scan, port, now);
        }
        let marks = Marks {
            ip_options: false,
            live,
        };
        self.detected(src, scan, port, marks, now, bans)
    }

    /// A probe or visit from an ignored source: nothing is done, and the log
    /// says so (rate-limited), naming why the source is ignored. PortSentry
    /// 2.0 logs "attackalert: Host: %s found in ignore file %s, aborting
    /// actions"; 1.2 logged nothing unless built with DEBUG.
    fn ignored(&mut self, src: IpAddr, scan: ScanType, port: u16, now: Instant) -> Verdict {
        let reason = why(&self.ignored_by, &src).unwrap_or("ignore list");
        Verdict::Ignored(self.ignored_lines.lines(src, now, || {
            format!(
                "attackalert: Host: {src} found in ignore list ({reason}), aborting actions: {scan} to {} port: {port}",
                scan.protocol()
            )
        }))
    }

    /// A probe or visit from a source that is not ignored: lines, count,
    /// and a ban at the trigger.
    fn detected(
        &mut self,
        src: IpAddr,
        scan: ScanType,
        port: u16,
        marks: Marks,
        now: Instant,
        bans: &dyn Bans,
    ) -> Verdict {
        let Marks { ip_options, live } = marks;
        self.counts.probes[scan.index()] += 1;
        let net = self.net_of(src);
        let key = Self::key(&net);
        if let Some(ban) = bans.ban_on(net, scan.proto(), now) {
            let lost = ban.in_kernel && ban.age > IN_FLIGHT;
            if !lost && !ban.upgradable {
                let mut lines = HostLines::new();
                if self.late.insert(key) {
                    lines.push(HostLine::AlreadyBlocked);
                }
                return Verdict::Probe {
                    src,
                    lines,
                    act: Act::Nothing,
                };
            }
            // The kernel no longer has it (lifted or expired early), or the
            // ban so far was only a command: a trigger renews the ban.
            self.late.remove(&key);
        }
        let mut lines = HostLines::new();
        if ip_options {
            lines.push(HostLine::IpOptions(scan, port));
        }
        lines.push(HostLine::Alert(scan, port));
        let (outcome, ports) = self.tracker.record_port(key, port, now);
        let act = match outcome {
            Outcome::Counted { .. } => Act::Nothing,
            Outcome::Trigger => self.decide((src, net), scan, port, ports, live, now),
        };
        use super::story::{Decision, Note};
        let decided = match &act {
            Act::Nothing if outcome == Outcome::Trigger => Decision::StormHeld,
            Act::Nothing => Decision::Counted,
            Act::Withhold { .. } => Decision::Withheld,
            Act::Spare { .. } => Decision::Spared,
            Act::Ban(_) => Decision::Banned,
        };
        let note = Note {
            at: now,
            port,
            scan,
            strength: strength_of(scan, ports),
        };
        // By what it is counted as: a rotating IPv6 scanner has one story.
        self.stories.note(key, note, decided);
        Verdict::Probe { src, lines, act }
    }

    /// A source at the trigger (`src`, and `net`, what a ban of it covers):
    /// banned, or not, by what its evidence proves.
    fn decide(
        &mut self,
        (src, net): (IpAddr, Cidr),
        scan: ScanType,
        port: u16,
        ports: u32,
        live: bool,
        now: Instant,
    ) -> Act {
        let strength = strength_of(scan, ports);
        let proto = proto_index(scan.proto());
        // Only a completed TCP handshake proves the source address.
        if !strength.proves_source() && self.settings.log_forgeable[proto] {
            let first = self.withheld.insert(Self::key(&net));
            if first {
                self.counts.withheld += 1;
            }
            return Act::Withhold { first };
        }
        // A host this one is talking to (the admin's session, the
        // monitoring, the load balancer) is not cut off by probes that
        // anyone could send in its name.
        if live && self.settings.protect_live && !strength.proves_source() {
            let first = self.spared.insert(src);
            if first {
                self.counts.spared += 1;
            }
            return Act::Spare { first, strength };
        }
        if strength == Strength::Forgeable && !self.storm.allows(now) {
            return Act::Nothing;
        }
        let wanted = match src {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => self.settings.prefix6,
        };
        Act::Ban(Evidence {
            addr: src,
            net,
            wanted,
            escalate: self.escalation_nets(&net),
            scan,
            port,
            mode: mode_name(scan, self.settings.advanced[proto]),
            strength,
        })
    }
}

#[cfg(test)]
mod tests;
