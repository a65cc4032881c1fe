//! Log lines: PortSentry's `attackalert:` / `adminalert:` lines and our own,
//! to stderr (foreground, or systemd's journal) or to syslog (ident
//! `nftsentry`, facility daemon) through /dev/log.
//!
//! Knows nothing of what the lines mean.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

/// Where the lines go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Stderr,
    Syslog,
}

static TARGET_SYSLOG: AtomicBool = AtomicBool::new(false);
/// JOURNAL_STREAM, read once at `init`: a getenv per line was 8% of the
/// daemon's CPU under a flood (BENCHMARKS.md).
static JOURNAL: AtomicBool = AtomicBool::new(false);
static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static SYSLOG: Mutex<Option<UnixDatagram>> = Mutex::new(None);

const LOG_DAEMON: u8 = 3 << 3;

/// stderr when it is the journal (JOURNAL_STREAM set) or a terminal, else
/// syslog, as a daemon started by an old init script would expect.
pub fn auto_target() -> Target {
    use std::io::IsTerminal;
    if std::env::var_os("JOURNAL_STREAM").is_some() || std::io::stderr().is_terminal() {
        Target::Stderr
    } else {
        Target::Syslog
    }
}

pub fn init(target: Target, debug: bool) {
    JOURNAL.store(
        std::env::var_os("JOURNAL_STREAM").is_some(),
        Ordering::Relaxed,
    );
    TARGET_SYSLOG.store(target == Target::Syslog, Ordering::Relaxed);
    MAX_LEVEL.store(
        if debug { Level::Debug } else { Level::Info } as u8,
        Ordering::Relaxed,
    );
    if target == Target::Syslog {
        let sock = UnixDatagram::unbound()
            .ok()
            .filter(|s| s.connect("/dev/log").is_ok());
        if sock.is_none() {
            // No syslog daemon: fall back to stderr rather than lose the lines.
            TARGET_SYSLOG.store(false, Ordering::Relaxed);
        }
        *SYSLOG.lock().unwrap_or_else(|e| e.into_inner()) = sock;
    }
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

pub fn log(level: Level, line: &str) {
    if !enabled(level) {
        return;
    }
    if TARGET_SYSLOG.load(Ordering::Relaxed) {
        let guard = SYSLOG.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sock) = guard.as_ref() {
            let msg = format!(
                "<{}>nftsentry[{}]: {line}",
                LOG_DAEMON | level as u8,
                std::process::id()
            );
            if sock.send(msg.as_bytes()).is_ok() {
                return;
            }
        }
    }
    // The journal reads the priority from a <N> prefix on each stderr line.
    // One write(2) per line (stderr is unbuffered: writeln! made two, and
    // two writers could interleave between them).
    let mut buf = String::with_capacity(line.len() + 4);
    if JOURNAL.load(Ordering::Relaxed) {
        buf.push('<');
        buf.push(char::from(b'0' + level as u8));
        buf.push('>');
    }
    buf.push_str(line);
    buf.push('\n');
    let _ = std::io::stderr().lock().write_all(buf.as_bytes());
}

/// Writes the line `args` makes at `level`, formatting it only when the
/// level is on: `log_debug!` costs nothing in a flood with debug off.
pub fn log_args(level: Level, args: std::fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    match args.as_str() {
        Some(s) => log(level, s),
        None => log(level, &args.to_string()),
    }
}

/// `log_error!("...", args)`: `format!` arguments, formatted only when the
/// level is on (also `log_warning!`, `log_notice!`, `log_info!`,
/// `log_debug!`).
#[macro_export]
macro_rules! log_error {
    ($($arg:tt)+) => { $crate::logging::log_args($crate::logging::Level::Error, format_args!($($arg)+)) };
}
#[macro_export]
macro_rules! log_warning {
    ($($arg:tt)+) => { $crate::logging::log_args($crate::logging::Level::Warning, format_args!($($arg)+)) };
}
#[macro_export]
macro_rules! log_notice {
    ($($arg:tt)+) => { $crate::logging::log_args($crate::logging::Level::Notice, format_args!($($arg)+)) };
}
#[macro_export]
macro_rules! log_info {
    ($($arg:tt)+) => { $crate::logging::log_args($crate::logging::Level::Info, format_args!($($arg)+)) };
}
#[macro_export]
macro_rules! log_debug {
    ($($arg:tt)+) => { $crate::logging::log_args($crate::logging::Level::Debug, format_args!($($arg)+)) };
}

pub fn error(line: &str) {
    log(Level::Error, line)
}
pub fn warning(line: &str) {
    log(Level::Warning, line)
}
pub fn notice(line: &str) {
    log(Level::Notice, line)
}
pub fn info(line: &str) {
    log(Level::Info, line)
}
pub fn debug(line: &str) {
    log(Level::Debug, line)
}

/// Lets a line through at most once per interval and counts the ones held
/// back in between, so that a flood of the same failure (a full set, a
/// read-only file, a thousand spoofed sources) logs one line a minute with
/// a count, not a line per event.
#[derive(Debug)]
pub struct Gate {
    interval: std::time::Duration,
    last: Option<std::time::Instant>,
    held: u64,
}

impl Gate {
    pub fn new(interval: std::time::Duration) -> Gate {
        Gate {
            interval,
            last: None,
            held: 0,
        }
    }

    /// `Some(n)` when a line may go out now, `n` being how many were held
    /// back since the last one; `None` (and one more held back) otherwise.
    pub fn admit(&mut self, now: std::time::Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < self.interval)
        {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }

    /// Logs `line` at error level if the gate admits it now, with the count
    /// of those held back.
    pub fn error(&mut self, line: String) {
        match self.admit(std::time::Instant::now()) {
            None => {}
            Some(0) => error(&line),
            Some(more) => log_error!("{line} ({more} more such errors since the last report)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_gate_holds_back_a_flood_and_counts_it() {
        let t0 = Instant::now();
        let mut g = Gate::new(Duration::from_secs(60));
        assert_eq!(g.admit(t0), Some(0));
        for i in 1..=1000 {
            assert_eq!(g.admit(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(g.admit(t0 + Duration::from_secs(60)), Some(1000));
        assert_eq!(g.admit(t0 + Duration::from_secs(61)), None);
    }
}
