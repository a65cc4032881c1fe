//! names: log lines that name a host as PortSentry did (`<name>/<ip>`), and
//! the history line of a ban. Without `resolve_host` the name is the
//! address and a line goes out at once; with it, the lines wait for the
//! reverse lookup (never the ban itself), at most `MAX_HELD_LINES` per
//! source and `RESOLVE_TIMEOUT` long.
//!
//! Bursts: while a `logging::Burst` is open on the loop's thread, log lines
//! wait in logging's buffer and history lines here, and `Names::end_burst`
//! appends the burst's history lines with one open and one write(2) (the
//! file is opened again for each burst, so logrotate's rename is followed).
//! Outside a burst a history line is appended at once, as are those still
//! waiting; `tick` and `release_all` write any left waiting too. Lines are
//! made in buffers kept from line to line, not a String each.
//!
//! Knows nothing of why a line is written.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::detect::HostLine;
use crate::error::Result;
use crate::journal::history;
use crate::logging::{self, Gate};
use crate::respond::HistoryDue;
use crate::service::resolve::{Lookup, Resolver};

/// Lines held back per source at most; a source that keeps probing while its
/// name is looked up gets the first lines, and a count of the rest.
const MAX_HELD_LINES: usize = 16;
/// How long a reverse lookup may take before the address is logged as is.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
/// History file errors are logged at most this often.
const ERROR_REPORT_INTERVAL: Duration = Duration::from_secs(60);
/// A burst's history lines are appended early past this many bytes.
const HISTORY_FLUSH_BYTES: usize = 64 * 1024;

/// A line that names a host.
#[derive(Clone, Copy, Debug)]
pub enum Line {
    /// To the log.
    Log(HostLine),
    /// The ban's line in the history file.
    History(HistoryDue),
}

pub struct Names {
    /// Reverse DNS for `resolve_host`; lines wait for it, bans never do.
    resolver: Option<Resolver>,
    held: HashMap<IpAddr, (Vec<Line>, u64)>,
    history: Option<PathBuf>,
    history_errors: Gate,
    /// History lines of the burst, not yet appended.
    history_pending: String,
    /// The last ban second's local time (a burst's bans share it).
    history_time: Option<(i64, history::LocalTime)>,
    /// Buffers kept from line to line: the line, the address as text.
    text: String,
    addr: String,
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

impl Names {
    pub fn new(cfg: &Config) -> Result<Names> {
        Ok(Names {
            resolver: make_resolver(cfg)?,
            held: HashMap::new(),
            history: cfg.history_file.clone(),
            history_errors: Gate::new(ERROR_REPORT_INTERVAL),
            history_pending: String::new(),
            history_time: None,
            text: String::new(),
            addr: String::new(),
        })
    }

    /// New settings (reload): the history file, and the resolver when
    /// `resolve_host` changed (a failure to set it up is a warning).
    pub fn reconfigure(&mut self, old: &Config, new: &Config) {
        // Lines due before the reload go where the file was then.
        self.end_burst();
        self.history = new.history_file.clone();
        if new.resolve_host != old.resolve_host {
            self.resolver = make_resolver(new).unwrap_or_else(|e| {
                log_warning!("adminalert: WARNING: resolve_host: {e}");
                None
            });
        }
    }

    /// The resolver's sockets, for poll.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.resolver.as_ref().map(|r| r.fds()).unwrap_or_default()
    }

    /// Writes `line` about `ip`: at once with the address as name, or, with
    /// `resolve_host`, when the name is known. A history line waits for
    /// `end_burst` while a `logging::Burst` is open on this thread.
    pub fn line(&mut self, ip: IpAddr, line: Line, now: Instant) {
        let Some(resolver) = self.resolver.as_mut() else {
            return self.emit(line, None, ip);
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
            Some(Lookup::Found(name)) => self.emit(line, Some(&name), ip),
            Some(Lookup::NotFound) => self.emit(line, None, ip),
            None => {
                self.held.insert(ip, (vec![line], 0));
            }
        }
    }

    /// At the end of a burst of work (the loop calls it before the
    /// `logging::Burst` around that work ends): appends the history lines
    /// the burst made, with one open and one write(2). Also done by `tick`,
    /// `release_all` and the next history line outside a burst, so a line
    /// is never left waiting long.
    pub fn end_burst(&mut self) {
        if self.history_pending.is_empty() {
            return;
        }
        let Some(path) = &self.history else {
            self.history_pending.clear();
            return;
        };
        if let Err(e) = history::append(path, &self.history_pending) {
            if self.history_errors.admit(Instant::now()).is_some() {
                log_error!(
                    "adminalert: ERROR: cannot write history file {}: {e}",
                    path.display()
                );
            }
        }
        self.history_pending.clear();
        if self.history_pending.capacity() > 2 * HISTORY_FLUSH_BYTES {
            self.history_pending = String::new();
        }
    }

    /// Writes `line` with `name` (None: the address) for `ip`.
    fn emit(&mut self, line: Line, name: Option<&str>, ip: IpAddr) {
        let mut addr = std::mem::take(&mut self.addr);
        addr.clear();
        logging::push_ip(&mut addr, ip);
        let name = name.unwrap_or(&addr);
        match line {
            Line::Log(l) => {
                let mut text = std::mem::take(&mut self.text);
                text.clear();
                render_into(&mut text, l, name, &addr);
                logging::notice(&text);
                self.text = text;
            }
            Line::History(h) => self.write_history(name, &addr, &h),
        }
        self.addr = addr;
    }

    fn write_history(&mut self, name: &str, addr: &str, h: &HistoryDue) {
        if self.history.is_none() {
            return;
        }
        let t = match self.history_time {
            Some((epoch, t)) if epoch == h.epoch => t,
            _ => {
                // localtime_r fails only for years beyond i32; UTC is a
                // fair fallback.
                let t = history::local_time(h.epoch).unwrap_or_else(|| history::utc(h.epoch));
                self.history_time = Some((h.epoch, t));
                t
            }
        };
        history::push_line(
            &mut self.history_pending,
            h.epoch,
            &t,
            name,
            addr,
            h.port,
            h.protocol,
        );
        if !logging::burst_open() || self.history_pending.len() >= HISTORY_FLUSH_BYTES {
            self.end_burst();
        }
    }

    /// Writes the lines that waited for these lookups.
    fn release(&mut self, answers: Vec<(IpAddr, Option<String>)>) {
        for (ip, name) in answers {
            let Some((lines, dropped)) = self.held.remove(&ip) else {
                continue;
            };
            for line in lines {
                self.emit(line, name.as_deref(), ip);
            }
            if dropped > 0 {
                let name = name.unwrap_or_else(|| ip.to_string());
                log_notice!(
                    "attackalert: {dropped} more lines for host: {name}/{ip} not logged while its name was looked up"
                );
            }
        }
    }

    /// Reads DNS answers and times out lookups, appends the history lines
    /// still waiting for a burst's end; returns the time to the next lookup
    /// deadline.
    pub fn tick(&mut self, now: Instant) -> Option<Duration> {
        let next = self.resolver.as_mut().map(|resolver| {
            let mut done = resolver.poll_answers(now);
            let (timed_out, next) = resolver.tick(now);
            done.extend(timed_out);
            (done, next)
        });
        let next = next.and_then(|(done, next)| {
            self.release(done);
            next
        });
        self.end_burst();
        next
    }

    /// At exit: lines still waiting for a name (history lines among them)
    /// are written with the address as the name rather than lost.
    pub fn release_all(&mut self) {
        let waiting: Vec<(IpAddr, Option<String>)> =
            self.held.keys().map(|ip| (*ip, None)).collect();
        self.release(waiting);
        self.end_burst();
    }
}

impl Drop for Names {
    /// History lines still waiting are appended, not lost.
    fn drop(&mut self) {
        self.end_burst();
    }
}

/// The text of a host line.
pub fn render(line: HostLine, name: &str, ip: IpAddr) -> String {
    let mut addr = String::new();
    logging::push_ip(&mut addr, ip);
    let mut out = String::new();
    render_into(&mut out, line, name, &addr);
    out
}

/// Appends the text of a host line to `out`, `addr` being the address as
/// text: the words of `detect::alert_line`, `ip_options_line` and
/// `already_blocked_line` (a test holds them equal), without a String or
/// the formatting machinery per line.
pub fn render_into(out: &mut String, line: HostLine, name: &str, addr: &str) {
    use std::fmt::Write as _;
    let host = |out: &mut String| {
        out.push_str(name);
        out.push('/');
        out.push_str(addr);
    };
    match line {
        HostLine::Alert(scan, port) => {
            out.push_str("attackalert: ");
            match scan.fixed_name() {
                Some(name) => out.push_str(name),
                None => {
                    let _ = write!(out, "{scan}");
                }
            }
            out.push_str(" from host: ");
            host(out);
            out.push_str(" to ");
            out.push_str(scan.protocol());
            out.push_str(" port: ");
            logging::push_decimal(out, port.into());
        }
        HostLine::IpOptions(scan, port) => {
            out.push_str("attackalert: Packet from host: ");
            host(out);
            out.push_str(" to ");
            out.push_str(scan.protocol());
            out.push_str(" port: ");
            logging::push_decimal(out, port.into());
            out.push_str(" has IP options set (detection avoidance technique).");
        }
        HostLine::AlreadyBlocked => {
            out.push_str("attackalert: Host: ");
            host(out);
            out.push_str(" is already blocked Ignoring");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{ScanType, packet::TcpFlags};

    /// A directory of this test's, removed at the end even on failure.
    struct Dir(PathBuf);
    impl Dir {
        fn new(name: &str) -> Dir {
            let d =
                std::env::temp_dir().join(format!("nftsentry-names-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn names(history: &Path) -> Names {
        let cfg = Config {
            resolve_host: false,
            history_file: Some(history.to_path_buf()),
            ..Config::default()
        };
        Names::new(&cfg).unwrap()
    }

    fn ban(port: u16) -> Line {
        Line::History(HistoryDue {
            epoch: 1_700_000_000 + i64::from(port),
            port,
            protocol: "TCP",
        })
    }

    fn expected(ip: IpAddr, port: u16) -> String {
        history::line_at(
            1_700_000_000 + i64::from(port),
            &ip.to_string(),
            ip,
            port,
            "TCP",
        )
    }

    #[test]
    fn rendered_lines_are_detects_words() {
        let scans = [
            ScanType::TcpSynNormal,
            ScanType::TcpFin,
            ScanType::TcpNull,
            ScanType::TcpXmas,
            ScanType::TcpUnknown(TcpFlags(TcpFlags::SYN | TcpFlags::URG | TcpFlags::PSH)),
            ScanType::Udp,
            ScanType::TcpConnect,
            ScanType::UdpConnect,
        ];
        let mut out = String::new();
        for ip in ["198.18.0.1", "2001:db8::7", "0.0.0.0"] {
            let ip: IpAddr = ip.parse().unwrap();
            for name in [ip.to_string(), "scanner.example".to_string()] {
                for scan in scans {
                    for port in [0, 1, 65535] {
                        let cases = [
                            (
                                HostLine::Alert(scan, port),
                                crate::detect::alert_line(scan, &name, ip, port),
                            ),
                            (
                                HostLine::IpOptions(scan, port),
                                crate::detect::ip_options_line(scan, &name, ip, port),
                            ),
                            (
                                HostLine::AlreadyBlocked,
                                crate::detect::already_blocked_line(&name, ip),
                            ),
                        ];
                        for (line, want) in cases {
                            assert_eq!(render(line, &name, ip), want);
                            // Into a buffer already used: only the line.
                            out.clear();
                            out.push_str("old text");
                            out.clear();
                            render_into(&mut out, line, &name, &ip.to_string());
                            assert_eq!(out, want);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_bursts_history_lines_are_appended_together_at_its_end() {
        let dir = Dir::new("burst");
        let path = dir.0.join("history");
        let mut n = names(&path);
        let now = Instant::now();
        let ip: IpAddr = "198.18.0.9".parse().unwrap();
        let ip6: IpAddr = "2001:db8::9".parse().unwrap();
        {
            let _b = logging::Burst::start();
            n.line(ip, ban(1), now);
            n.line(ip6, ban(2), now);
            n.line(ip, ban(3), now);
            assert!(!path.exists(), "nothing written before the burst ends");
            // logrotate renames the file in the middle of the burst: the
            // burst's lines go to the file in place when it ends.
            std::fs::write(&path, "old\n").unwrap();
            std::fs::rename(&path, dir.0.join("history.1")).unwrap();
            n.end_burst();
        }
        let want = [expected(ip, 1), expected(ip6, 2), expected(ip, 3)].concat();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), want);
        assert_eq!(
            std::fs::read_to_string(dir.0.join("history.1")).unwrap(),
            "old\n"
        );
        // Outside a burst a line is appended at once.
        n.line(ip, ban(4), now);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            want.clone() + &expected(ip, 4)
        );
        // A burst the loop forgot to end is written by the next tick.
        {
            let _b = logging::Burst::start();
            n.line(ip, ban(5), now);
            n.tick(now);
            assert!(
                std::fs::read_to_string(&path)
                    .unwrap()
                    .ends_with(&expected(ip, 5))
            );
        }
    }

    #[test]
    fn a_refused_history_file_is_reported_once_per_burst_as_before() {
        let dir = Dir::new("refused");
        let path = dir.0.join("history");
        let target = dir.0.join("elsewhere");
        std::fs::write(&target, "").unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let mut n = names(&path);
        let now = Instant::now();
        let ip: IpAddr = "198.18.0.9".parse().unwrap();
        let _b = logging::Burst::start();
        let _ = logging::take_held();
        for port in 1..=3 {
            n.line(ip, ban(port), now);
        }
        n.end_burst();
        let held = logging::take_held();
        let prefix = format!(
            "adminalert: ERROR: cannot write history file {}: refused",
            path.display()
        );
        assert_eq!(held.lines().count(), 1, "{held}");
        assert!(held.starts_with(&prefix), "{held}");
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "",
            "not written through"
        );
        // The gate holds the next failures back, as it did per line.
        n.line(ip, ban(4), now);
        n.end_burst();
        assert_eq!(logging::take_held(), "");
    }

    #[test]
    fn alert_lines_go_to_the_log_in_order_with_the_address_as_name() {
        let dir = Dir::new("alerts");
        let mut n = names(&dir.0.join("history"));
        let now = Instant::now();
        let _b = logging::Burst::start();
        let _ = logging::take_held();
        let mut want = String::new();
        for i in 0..100u16 {
            let ip = IpAddr::from([198, 18, 1, i as u8]);
            n.line(ip, Line::Log(HostLine::Alert(ScanType::TcpFin, i)), now);
            want += &crate::detect::alert_line(ScanType::TcpFin, &ip.to_string(), ip, i);
            want.push('\n');
        }
        assert_eq!(logging::take_held(), want);
    }
}
