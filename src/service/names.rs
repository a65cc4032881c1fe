//! names: log lines that name a host as PortSentry did (`<name>/<ip>`), and
//! the history line of a ban. Without `resolve_host` the name is the
//! address and a line goes out at once; with it, the lines wait for the
//! reverse lookup (never the ban itself), at most `MAX_HELD_LINES` per
//! source and `RESOLVE_TIMEOUT` long.
//!
//! Knows nothing of why a line is written.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::detect::{self, HostLine};
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
        })
    }

    /// New settings (reload): the history file, and the resolver when
    /// `resolve_host` changed (a failure to set it up is a warning).
    pub fn reconfigure(&mut self, old: &Config, new: &Config) {
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
    /// `resolve_host`, when the name is known.
    pub fn line(&mut self, ip: IpAddr, line: Line, now: Instant) {
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

    fn emit(&mut self, line: Line, name: &str, ip: IpAddr) {
        match line {
            Line::Log(l) => logging::notice(&render(l, name, ip)),
            Line::History(h) => self.write_history(name, ip, &h),
        }
    }

    fn write_history(&mut self, name: &str, ip: IpAddr, h: &HistoryDue) {
        let Some(path) = &self.history else {
            return;
        };
        let line = history::line_at(h.epoch, name, ip, h.port, h.protocol);
        if let Err(e) = history::append(path, &line) {
            if self.history_errors.admit(Instant::now()).is_some() {
                log_error!(
                    "adminalert: ERROR: cannot write history file {}: {e}",
                    path.display()
                );
            }
        }
    }

    /// Writes the lines that waited for these lookups.
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
                log_notice!(
                    "attackalert: {dropped} more lines for host: {name}/{ip} not logged while its name was looked up"
                );
            }
        }
    }

    /// Reads DNS answers and times out lookups; returns the time to the next
    /// lookup deadline.
    pub fn tick(&mut self, now: Instant) -> Option<Duration> {
        let resolver = self.resolver.as_mut()?;
        let mut done = resolver.poll_answers(now);
        let (timed_out, next) = resolver.tick(now);
        done.extend(timed_out);
        self.release(done);
        next
    }

    /// At exit: lines still waiting for a name (history lines among them)
    /// are written with the address as the name rather than lost.
    pub fn release_all(&mut self) {
        let waiting: Vec<(IpAddr, Option<String>)> =
            self.held.keys().map(|ip| (*ip, None)).collect();
        self.release(waiting);
    }
}

/// The text of a host line.
pub fn render(line: HostLine, name: &str, ip: IpAddr) -> String {
    match line {
        HostLine::Alert(scan, port) => detect::alert_line(scan, name, ip, port),
        HostLine::IpOptions(scan, port) => detect::ip_options_line(scan, name, ip, port),
        HostLine::AlreadyBlocked => detect::already_blocked_line(name, ip),
    }
}
