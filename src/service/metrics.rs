//! metrics: the daemon's counts in Prometheus' text exposition format
//! (version 0.0.4), and the small HTTP server of `metrics_listen`.
//!
//! The loop fills in `Figures` (`Daemon::figures`) and publishes their text
//! once a second (`Publisher`); the server's thread only copies the last
//! text out, so a scraper never reaches the loop and the loop never waits
//! for a scraper. `nftsentry metrics` asks the loop for the same text
//! through the control socket.
//!
//! Labels are bounded: protocol, scan type, reason, origin, family, kind.
//! Never an address or a port.
//!
//! The server: GET (or HEAD) /metrics only, 404 for another path, 405 for
//! another method, 400 for what is not HTTP; at most `MAX_CLIENTS` served at
//! once (more are closed at once), a request of at most `MAX_REQUEST` bytes
//! read within `REQUEST_DEADLINE`, the answer written within
//! `WRITE_DEADLINE`, then the connection is closed.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::detect::ScanType;
use crate::error::{Error, Result};

/// Clients served at once; a further one is closed as soon as accepted.
pub const MAX_CLIENTS: usize = 8;
/// The most of a request read (request line and headers).
pub const MAX_REQUEST: usize = 4096;
/// The whole request must arrive within this.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// The answer must be taken within this.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(5);
/// How often the loop publishes new figures for the server.
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);
/// Content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Everything the exposition shows, filled in by the daemon.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    pub version: &'static str,
    /// Seconds since 1970 at start.
    pub start_time: u64,
    /// Probes by `ScanType::index`.
    pub probes: [u64; ScanType::KINDS],
    /// Bans made on detection by `ScanType::index`.
    pub bans_detected: [u64; ScanType::KINDS],
    /// Bans asked for through the control socket (`block`).
    pub bans_manual: u64,
    pub ban_failures: u64,
    /// Sources not banned for lack of a handshake.
    pub withheld: u64,
    pub bans_v4: u64,
    pub bans_v6: u64,
    /// Prefix bans in force (blocked4_net; blocked6_prefix and
    /// blocked6_net), IPv4 and IPv6.
    pub prefix_bans: [u64; 2],
    /// `[crowdsec]`: its figures, when enabled.
    pub fleet: Option<FleetFigures>,
    pub evictions: u64,
    pub storm_active: bool,
    /// Bans the storm guard holds back while on.
    pub storm_held: u64,
    pub nflog_packets: u64,
    pub events_lost: u64,
    pub overruns: u64,
    pub not_probes: u64,
    pub ignored: u64,
    pub undecodable: u64,
    pub forged: u64,
    pub tracked_sources: u64,
    pub max_tracked_sources: u64,
    /// Dropped from banned sources, (packets, bytes), IPv4 and IPv6.
    pub dropped_v4: (u64, u64),
    pub dropped_v6: (u64, u64),
    pub reloads: u64,
    pub table_restores: u64,
    /// `events_file` lines dropped because its writer fell behind.
    pub events_dropped: u64,
}

/// What the fleet side counted (`[crowdsec]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetFigures {
    /// Fleet decisions enforced here, IPv4 and IPv6.
    pub decisions: [u64; 2],
    pub reachable: bool,
    pub queued: u64,
    pub pushed: u64,
    /// Alerts dropped because the queue was full.
    pub dropped: u64,
    pub vetoed: u64,
    pub push_errors: u64,
    pub pull_errors: u64,
    pub set_errors: u64,
}

impl FleetFigures {
    fn write(&self, o: &mut Out) {
        o.one(
            "nftsentry_fleet_lapi_up",
            "gauge",
            "1 while the CrowdSec Local API answered the last request.",
            u64::from(self.reachable),
        );
        o.one(
            "nftsentry_fleet_alerts_queued",
            "gauge",
            "Alerts waiting to be pushed to the Local API.",
            self.queued,
        );
        o.one(
            "nftsentry_fleet_alerts_pushed_total",
            "counter",
            "Alerts (local bans) pushed to the Local API.",
            self.pushed,
        );
        o.one(
            "nftsentry_fleet_alerts_dropped_total",
            "counter",
            "Alerts dropped because the push queue was full.",
            self.dropped,
        );
        o.one(
            "nftsentry_fleet_decisions_vetoed_total",
            "counter",
            "Fleet decisions not enforced: they cover an address of the ignore list.",
            self.vetoed,
        );
        o.family(
            "nftsentry_fleet_errors_total",
            "counter",
            "Failed pushes and pulls, and fleet set updates the kernel refused.",
        );
        for (op, n) in [
            ("push", self.push_errors),
            ("pull", self.pull_errors),
            ("set", self.set_errors),
        ] {
            o.sample("nftsentry_fleet_errors_total", &[("op", op)], n);
        }
    }
}

/// One metric family being written: HELP and TYPE once, then its samples.
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    /// A sample; `labels` are (name, value) with values from a fixed set
    /// (no escaping needed, checked in the tests).
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// "tcp" or "udp" for a scan type key's protocol.
fn proto_of(index: usize) -> &'static str {
    match ScanType::from_key(ScanType::KEYS[index]).map(|s| s.protocol()) {
        Some("UDP") => "udp",
        _ => "tcp",
    }
}

impl Figures {
    /// The text exposition: every family with HELP and TYPE, counters
    /// ending in `_total`, every label value from a fixed set. Long: one
    /// block per metric family, in the order METRICS in nftsentry(8) lists
    /// them.
    pub fn exposition(&self) -> String {
        let mut o = Out(String::with_capacity(4096));
        o.family(
            "nftsentry_build_info",
            "gauge",
            "nftsentry's version; always 1.",
        );
        o.sample("nftsentry_build_info", &[("version", self.version)], 1);
        o.one(
            "nftsentry_start_time_seconds",
            "gauge",
            "When the daemon started, in seconds since 1970.",
            self.start_time,
        );
        o.family(
            "nftsentry_probes_total",
            "counter",
            "Probes seen, by protocol and scan type.",
        );
        for (i, key) in ScanType::KEYS.iter().enumerate() {
            o.sample(
                "nftsentry_probes_total",
                &[("proto", proto_of(i)), ("scan_type", key)],
                self.probes[i],
            );
        }
        o.family(
            "nftsentry_packets_discarded_total",
            "counter",
            "NFLOG packets that were not probes, by reason.",
        );
        for (reason, n) in [
            ("ignored_source", self.ignored),
            ("not_probe", self.not_probes),
            ("undecodable", self.undecodable),
            ("forged", self.forged),
        ] {
            o.sample(
                "nftsentry_packets_discarded_total",
                &[("reason", reason)],
                n,
            );
        }
        o.family(
            "nftsentry_bans_total",
            "counter",
            "Bans made since start (renewals included), by reason (scan type, or manual) and origin (detection, or control for `nftsentry block`).",
        );
        for (i, key) in ScanType::KEYS.iter().enumerate() {
            o.sample(
                "nftsentry_bans_total",
                &[("reason", key), ("origin", "detection")],
                self.bans_detected[i],
            );
        }
        o.sample(
            "nftsentry_bans_total",
            &[("reason", "manual"), ("origin", "control")],
            self.bans_manual,
        );
        o.one(
            "nftsentry_ban_failures_total",
            "counter",
            "Bans whose kernel element could not be added.",
            self.ban_failures,
        );
        o.one(
            "nftsentry_bans_withheld_total",
            "counter",
            "Sources not banned because ban_requires_handshake is set and they completed no TCP handshake.",
            self.withheld,
        );
        o.family(
            "nftsentry_active_bans",
            "gauge",
            "Bans in force in the kernel sets, by address family and kind.",
        );
        o.sample(
            "nftsentry_active_bans",
            &[("family", "ipv4"), ("kind", "address")],
            self.bans_v4,
        );
        o.sample(
            "nftsentry_active_bans",
            &[("family", "ipv6"), ("kind", "address")],
            self.bans_v6,
        );
        for (i, family) in ["ipv4", "ipv6"].into_iter().enumerate() {
            o.sample(
                "nftsentry_active_bans",
                &[("family", family), ("kind", "prefix")],
                self.prefix_bans[i],
            );
        }
        if let Some(f) = &self.fleet {
            for (i, family) in ["ipv4", "ipv6"].into_iter().enumerate() {
                o.sample(
                    "nftsentry_active_bans",
                    &[("family", family), ("kind", "fleet")],
                    f.decisions[i],
                );
            }
        }
        o.one(
            "nftsentry_evictions_total",
            "counter",
            "Bans given up in a full set for a ban on stronger evidence.",
            self.evictions,
        );
        o.one(
            "nftsentry_storm_guard_active",
            "gauge",
            "1 while the storm guard holds back bans on forgeable evidence, else 0.",
            u64::from(self.storm_active),
        );
        o.one(
            "nftsentry_storm_guard_held_bans",
            "gauge",
            "Bans the storm guard has held back since it came on (0 while off).",
            self.storm_held,
        );
        o.one(
            "nftsentry_nflog_packets_total",
            "counter",
            "Packets received from the NFLOG group.",
            self.nflog_packets,
        );
        o.one(
            "nftsentry_nflog_events_lost_total",
            "counter",
            "NFLOG events lost (sequence numbers that never arrived).",
            self.events_lost,
        );
        o.one(
            "nftsentry_nflog_overruns_total",
            "counter",
            "Times the NFLOG receive buffer overflowed.",
            self.overruns,
        );
        o.one(
            "nftsentry_tracked_sources",
            "gauge",
            "Sources the detector is counting probes of.",
            self.tracked_sources,
        );
        o.one(
            "nftsentry_tracked_sources_max",
            "gauge",
            "max_tracked_sources: the most sources tracked at once.",
            self.max_tracked_sources,
        );
        o.family(
            "nftsentry_dropped_packets_total",
            "counter",
            "Packets dropped from banned sources, by address family.",
        );
        o.sample(
            "nftsentry_dropped_packets_total",
            &[("family", "ipv4")],
            self.dropped_v4.0,
        );
        o.sample(
            "nftsentry_dropped_packets_total",
            &[("family", "ipv6")],
            self.dropped_v6.0,
        );
        o.family(
            "nftsentry_dropped_bytes_total",
            "counter",
            "Bytes dropped from banned sources (IP header included), by address family.",
        );
        o.sample(
            "nftsentry_dropped_bytes_total",
            &[("family", "ipv4")],
            self.dropped_v4.1,
        );
        o.sample(
            "nftsentry_dropped_bytes_total",
            &[("family", "ipv6")],
            self.dropped_v6.1,
        );
        o.one(
            "nftsentry_reloads_total",
            "counter",
            "Configuration reloads.",
            self.reloads,
        );
        o.one(
            "nftsentry_events_dropped_total",
            "counter",
            "events_file lines dropped because its writer fell behind.",
            self.events_dropped,
        );
        o.one(
            "nftsentry_table_restores_total",
            "counter",
            "Times the table was put back after someone else changed or deleted it.",
            self.table_restores,
        );
        if let Some(f) = &self.fleet {
            f.write(&mut o);
        }
        o.0
    }
}

/// The loop's side: the last text, and when to publish the next.
pub struct Publisher {
    text: Arc<Mutex<String>>,
    next: Instant,
    addr: SocketAddr,
}

impl Publisher {
    /// Whether new figures are due.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// The time until they are.
    pub fn next_due(&self, now: Instant) -> Duration {
        self.next.saturating_duration_since(now)
    }

    pub fn publish(&mut self, text: String, now: Instant) {
        if let Ok(mut t) = self.text.lock() {
            *t = text;
        }
        self.next = now + PUBLISH_INTERVAL;
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// The endpoint's socket, bound at start (before the privilege drop, so a
/// port below 1024 works and a taken port stops the start), served by a
/// thread started after it.
pub struct MetricsServer {
    listener: TcpListener,
    addr: SocketAddr,
}

impl MetricsServer {
    pub fn bind(addr: SocketAddr) -> Result<MetricsServer> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| Error::other(format!("metrics_listen {addr}: cannot listen: {e}")))?;
        let addr = listener.local_addr().unwrap_or(addr);
        Ok(MetricsServer { listener, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts the server's thread; the loop publishes through the
    /// returned `Publisher`. Call only after the privilege drop: the
    /// thread inherits the dropped capabilities.
    pub fn start(self, first: String) -> Result<Publisher> {
        let text = Arc::new(Mutex::new(first));
        let shared = Arc::clone(&text);
        let listener = self.listener;
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || serve(listener, shared))
            .map_err(|e| Error::other(format!("metrics_listen: cannot start its thread: {e}")))?;
        Ok(Publisher {
            text,
            next: Instant::now() + PUBLISH_INTERVAL,
            addr: self.addr,
        })
    }
}

/// The accept loop: one short-lived thread per client, at most
/// `MAX_CLIENTS` at once.
fn serve(listener: TcpListener, text: Arc<Mutex<String>>) {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(_) => {
                // EMFILE and the like: do not spin.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if active.load(Ordering::Acquire) >= MAX_CLIENTS {
            drop(stream);
            continue;
        }
        active.fetch_add(1, Ordering::AcqRel);
        let (text, done) = (Arc::clone(&text), Arc::clone(&active));
        let spawned = std::thread::Builder::new()
            .name("metrics-client".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = handle(stream, &text);
                done.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Asked {
    /// GET /metrics (`head`: HEAD, headers only).
    Metrics {
        head: bool,
    },
    NotFound,
    MethodNotAllowed,
    BadRequest,
    TooLarge,
}

/// The request's head as read so far: `None` while it is incomplete.
pub fn parse_request(buf: &[u8]) -> Option<Asked> {
    let end = find(buf, b"\r\n\r\n").or_else(|| find(buf, b"\n\n"));
    if end.is_none() {
        return (buf.len() >= MAX_REQUEST).then_some(Asked::TooLarge);
    }
    let line_end = find(buf, b"\n").unwrap_or(buf.len());
    let line = std::str::from_utf8(&buf[..line_end]).ok()?;
    let line = line.trim_end_matches('\r');
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = parts.as_slice() else {
        return Some(Asked::BadRequest);
    };
    if !version.starts_with("HTTP/1.") || target.is_empty() {
        return Some(Asked::BadRequest);
    }
    let path = target.split('?').next().unwrap_or("");
    let head = match *method {
        "GET" => false,
        "HEAD" => true,
        m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => {
            return Some(Asked::MethodNotAllowed);
        }
        _ => return Some(Asked::BadRequest),
    };
    Some(if path == "/metrics" {
        Asked::Metrics { head }
    } else {
        Asked::NotFound
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One client: read its request within the deadline, answer, close.
fn handle(mut s: TcpStream, text: &Mutex<String>) -> std::io::Result<()> {
    let start = Instant::now();
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let asked = loop {
        let left = REQUEST_DEADLINE.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Ok(());
        }
        s.set_read_timeout(Some(left))?;
        let n = match s.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Ok(()),
        };
        let room = MAX_REQUEST - buf.len();
        buf.extend_from_slice(&chunk[..n.min(room)]);
        if let Some(a) = parse_request(&buf) {
            break a;
        }
        if buf.len() >= MAX_REQUEST {
            break Asked::TooLarge;
        }
    };
    let reply = match asked {
        Asked::Metrics { head } => {
            let body = text.lock().map(|t| t.clone()).unwrap_or_default();
            response("200 OK", CONTENT_TYPE, &body, head, "")
        }
        Asked::NotFound => response(
            "404 Not Found",
            "text/plain",
            "not found: the metrics are at /metrics\n",
            false,
            "",
        ),
        Asked::MethodNotAllowed => response(
            "405 Method Not Allowed",
            "text/plain",
            "only GET and HEAD\n",
            false,
            "Allow: GET, HEAD\r\n",
        ),
        Asked::BadRequest => response("400 Bad Request", "text/plain", "bad request\n", false, ""),
        Asked::TooLarge => response(
            "431 Request Header Fields Too Large",
            "text/plain",
            "request too large\n",
            false,
            "",
        ),
    };
    s.set_write_timeout(Some(WRITE_DEADLINE))?;
    // One write deadline for the whole answer, however slowly it is read.
    let mut sent = 0;
    while sent < reply.len() {
        if start.elapsed() > REQUEST_DEADLINE + WRITE_DEADLINE {
            return Ok(());
        }
        match s.write(&reply[sent..]) {
            Ok(0) => return Ok(()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Ok(()),
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
    Ok(())
}

fn response(status: &str, ctype: &str, body: &str, head: bool, extra: &str) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        r.extend_from_slice(body.as_bytes());
    }
    r
}

impl crate::service::event_loop::Daemon {
    /// The figures now: counters kept by the loop, the sets' sizes and
    /// the drop rules' counters from the kernel (three short requests).
    pub fn figures(&mut self) -> Figures {
        use crate::table::sets::OurSet;
        let core = &mut self.core;
        let table = core.cfg.table.clone();
        let mut count = |set: OurSet| {
            core.nft
                .set_info(&table, set.name())
                .ok()
                .and_then(|i| i.count)
                .map_or(0, u64::from)
        };
        let bans_v4 = count(OurSet::Blocked4);
        let bans_v6 = count(OurSet::Blocked6);
        // An interval counts once, by its start.
        let prefix_bans = [
            count(OurSet::Blocked4Net),
            count(OurSet::Blocked6Prefix) + count(OurSet::Blocked6Net),
        ];
        let fleet = core.fleet.as_ref().map(|f| {
            let mut decisions = [0u64; 2];
            for h in f.held.by_id.values() {
                decisions[usize::from(!h.net.is_ipv4())] += 1;
            }
            FleetFigures {
                decisions,
                reachable: f.status.reachable,
                queued: f.status.queued as u64,
                pushed: f.status.pushed,
                dropped: f.status.dropped,
                vetoed: f.vetoed,
                push_errors: f.status.push_errors,
                pull_errors: f.status.pull_errors,
                set_errors: f.set_errors,
            }
        });
        let rules = crate::table::bans::dropped_by_rules(&mut core.nft, &table).unwrap_or_default();
        let add = |i: usize| {
            (
                self.dropped_before[i].0 + rules[i].0,
                self.dropped_before[i].1 + rules[i].1,
            )
        };
        let st = self.io.nflog.stats();
        let c = &core.detector.counts;
        let storm = core.detector.storm();
        Figures {
            version: env!("CARGO_PKG_VERSION"),
            start_time: self.started_unix,
            probes: c.probes,
            bans_detected: core.bans_by_scan,
            bans_manual: self.bans_manual,
            ban_failures: core.ban_errors,
            withheld: c.withheld,
            bans_v4,
            bans_v6,
            prefix_bans,
            fleet,
            evictions: core.ledger.evictions(),
            storm_active: storm.is_some(),
            storm_held: storm.map_or(0, |s| s.held),
            nflog_packets: st.packets,
            events_lost: st.seq_gaps,
            overruns: st.overruns,
            not_probes: c.not_probes,
            ignored: c.ignored,
            undecodable: c.undecodable,
            forged: c.bogus,
            tracked_sources: core.detector.tracked() as u64,
            max_tracked_sources: core.cfg.max_tracked_sources as u64,
            dropped_v4: add(0),
            dropped_v6: add(1),
            reloads: self.reloads,
            table_restores: self.table_restores,
            events_dropped: core.events.as_ref().map_or(0, |e| e.dropped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        let p = |s: &str| parse_request(s.as_bytes());
        assert_eq!(
            p("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(Asked::Metrics { head: false })
        );
        assert_eq!(
            p("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Some(Asked::Metrics { head: true })
        );
        assert_eq!(p("GET / HTTP/1.1\r\n\r\n"), Some(Asked::NotFound));
        assert_eq!(
            p("POST /metrics HTTP/1.1\r\n\r\n"),
            Some(Asked::MethodNotAllowed)
        );
        assert_eq!(p("GET /metrics\r\n\r\n"), Some(Asked::BadRequest));
        assert_eq!(p("\x16\x03\x01 \x00\r\n\r\n"), Some(Asked::BadRequest));
        assert_eq!(p("GET /metrics HTTP/1.1\r\nHost: x"), None);
        assert_eq!(
            parse_request(&vec![b'a'; MAX_REQUEST]),
            Some(Asked::TooLarge)
        );
    }

    #[test]
    fn exposition_is_well_formed() {
        let mut f = Figures {
            version: "1.2.3",
            ..Figures::default()
        };
        f.probes[0] = 5;
        f.probes[5] = 2;
        f.bans_detected[0] = 1;
        f.dropped_v4 = (3, 180);
        f.prefix_bans = [0, 2];
        assert!(!f.exposition().contains("kind=\"fleet\""));
        assert!(!f.exposition().contains("nftsentry_fleet_"));
        f.fleet = Some(FleetFigures {
            decisions: [4, 0],
            pushed: 7,
            pull_errors: 1,
            ..FleetFigures::default()
        });
        let t = f.exposition();
        assert!(t.contains("nftsentry_active_bans{family=\"ipv6\",kind=\"prefix\"} 2\n"));
        assert!(t.contains("nftsentry_active_bans{family=\"ipv4\",kind=\"fleet\"} 4\n"));
        assert!(t.contains("nftsentry_fleet_alerts_pushed_total 7\n"));
        assert!(t.contains("nftsentry_fleet_errors_total{op=\"pull\"} 1\n"));
        assert!(t.contains("nftsentry_probes_total{proto=\"tcp\",scan_type=\"syn\"} 5\n"));
        assert!(t.contains("nftsentry_probes_total{proto=\"udp\",scan_type=\"udp\"} 2\n"));
        assert!(t.contains("nftsentry_probes_total{proto=\"udp\",scan_type=\"connect_udp\"} 0\n"));
        assert!(t.contains("nftsentry_bans_total{reason=\"syn\",origin=\"detection\"} 1\n"));
        assert!(t.contains("nftsentry_dropped_bytes_total{family=\"ipv4\"} 180\n"));
        assert!(t.contains("nftsentry_build_info{version=\"1.2.3\"} 1\n"));
        // Every sample belongs to the family declared just before it, each
        // family declared once, counters end in _total.
        let mut declared = std::collections::HashSet::new();
        let mut current = String::new();
        for line in t.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(declared.insert(name.to_string()), "{name} twice");
                assert_eq!(kind == "counter", name.ends_with("_total"), "{name}");
                current = name.to_string();
            } else if !line.starts_with("# HELP ") {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, current, "{line}");
                let labels = line.split_once('{').map(|(_, l)| l).unwrap_or("");
                assert!(!labels.contains('\\') && !labels.contains('\n'));
            }
        }
    }
}
