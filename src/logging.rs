//! Log lines: PortSentry's `attackalert:` / `adminalert:` lines and our own,
//! to stderr (foreground), to the journal through its native protocol
//! (under systemd: the unchanged line in MESSAGE, with PRIORITY, a
//! MESSAGE_ID per kind of line and NFTSENTRY_* fields read back from the
//! line, `journal_fields`), or to syslog (ident `nftsentry`, facility
//! daemon) through /dev/log.
//!
//! Knows nothing of what the lines mean beyond their text: the fields are
//! parsed from the lines as PortSentry wrote them.

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
/// The journal's native socket, when running under systemd.
static NATIVE: Mutex<Option<UnixDatagram>> = Mutex::new(None);
static NATIVE_ON: AtomicBool = AtomicBool::new(false);

/// The journal's socket; NFTSENTRY_JOURNAL_SOCKET names another (tests).
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

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
    // Under systemd, the native protocol when its socket answers; the
    // stderr stream (with <N> prefixes) otherwise.
    if target == Target::Stderr && JOURNAL.load(Ordering::Relaxed) {
        let path =
            std::env::var_os("NFTSENTRY_JOURNAL_SOCKET").unwrap_or_else(|| JOURNAL_SOCKET.into());
        let sock = UnixDatagram::unbound()
            .ok()
            .filter(|s| s.connect(&path).is_ok());
        NATIVE_ON.store(sock.is_some(), Ordering::Relaxed);
        *NATIVE.lock().unwrap_or_else(|e| e.into_inner()) = sock;
    }
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
    if NATIVE_ON.load(Ordering::Relaxed) {
        let guard = NATIVE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sock) = guard.as_ref() {
            if sock.send(&native_message(level, line)).is_ok() {
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

/// MESSAGE_IDs, one per kind of line (`journalctl MESSAGE_ID=...`).
pub const MESSAGE_IDS: [(&str, &str); 7] = [
    ("probe", "0c9e3a4d167d4b8aabb70bdd0c676279"),
    ("ban", "44a23dc3c33f4542a0096aaacce411f7"),
    ("unban", "7992b435fa344406bba95c4e28b9dc42"),
    ("ignored", "e2be67582ea54194aebe4840ce19105b"),
    ("error", "1579b7f5cbf447d5bdcb042e557957b3"),
    ("start", "d9d4e870abf04bd4b0fae6ad23e75b8c"),
    ("stop", "1d1b8e65d84e4384b7e251a2bdea42a5"),
];

fn message_id(kind: &str) -> &'static str {
    MESSAGE_IDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, id)| *id)
        .unwrap_or("")
}

/// The fields of a line beside its MESSAGE: its kind (for MESSAGE_ID) and
/// NFTSENTRY_SOURCE, _PORT, _PROTOCOL, _SCAN_TYPE, _ACTION, _BAN_LENGTH as
/// far as the line says them.
pub fn journal_fields(
    level: Level,
    line: &str,
) -> (Option<&'static str>, Vec<(&'static str, String)>) {
    let mut f: Vec<(&'static str, String)> = Vec::new();
    // "NAME/ADDR" (PortSentry's "host: name/addr") is the address.
    let host = |w: &str| {
        let w = w.trim_end_matches([',', ':']);
        w.rsplit('/').next().unwrap_or(w).to_string()
    };
    let after = |pat: &str| line.split_once(pat).map(|(_, r)| r);
    let first_word = |r: &str| r.split_whitespace().next().unwrap_or("").to_string();
    let port_proto = |f: &mut Vec<(&'static str, String)>| {
        for proto in ["TCP", "UDP"] {
            if let Some(r) = after(&format!("to {proto} port: ")) {
                f.push(("NFTSENTRY_PROTOCOL", proto.to_string()));
                f.push(("NFTSENTRY_PORT", first_word(r)));
            }
        }
    };
    let kind = if let Some(r) = after(" from host: ") {
        let scan = line
            .split_once("attackalert: ")
            .map(|(_, r)| r)
            .unwrap_or(line)
            .split(" from host: ")
            .next()
            .unwrap_or("");
        f.push(("NFTSENTRY_SOURCE", host(&first_word(r))));
        f.push(("NFTSENTRY_SCAN_TYPE", scan.to_string()));
        port_proto(&mut f);
        Some("probe")
    } else if let Some(r) =
        after("attackalert: Host ").filter(|r| r.contains(" has been blocked via "))
    {
        f.push(("NFTSENTRY_SOURCE", first_word(r)));
        if let Some(how) = after(" has been blocked via ") {
            let action = ["nftables set", "wrappers", "dropped route", "route"]
                .into_iter()
                .find(|a| how.starts_with(a))
                .unwrap_or("other");
            f.push(("NFTSENTRY_ACTION", action.to_string()));
        }
        if let Some(len) = line
            .rsplit_once(" for ")
            .map(|(_, l)| l)
            .filter(|l| !l.contains(' '))
        {
            f.push(("NFTSENTRY_BAN_LENGTH", len.to_string()));
        }
        Some("ban")
    } else if let Some(r) = after("External command run for host: ") {
        f.push(("NFTSENTRY_SOURCE", first_word(r)));
        f.push(("NFTSENTRY_ACTION", "command".into()));
        Some("ban")
    } else if let Some(r) =
        after("attackalert: Host: ").filter(|r| r.contains(" found in ignore list"))
    {
        f.push(("NFTSENTRY_SOURCE", first_word(r)));
        port_proto(&mut f);
        Some("ignored")
    } else if let Some(r) = after("attackalert: Host: ") {
        // "is already blocked Ignoring": a probe of a banned source.
        f.push(("NFTSENTRY_SOURCE", host(&first_word(r))));
        Some("probe")
    } else if let Some(r) = after("ban of ").filter(|r| r.contains(" expired")) {
        f.push(("NFTSENTRY_SOURCE", first_word(r)));
        Some("unban")
    } else if level <= Level::Error || line.contains("ERROR") {
        Some("error")
    } else if line.starts_with("adminalert: nftsentry ") && line.contains(" started") {
        Some("start")
    } else if line.starts_with("adminalert: nftsentry stopping") {
        Some("stop")
    } else {
        None
    };
    (kind, f)
}

/// One datagram of the native protocol: `KEY=value` lines, or for a value
/// with a newline `KEY`, newline, its length (64-bit little endian), the
/// value and a newline.
pub fn native_message(level: Level, line: &str) -> Vec<u8> {
    let (kind, fields) = journal_fields(level, line);
    let mut out = Vec::with_capacity(line.len() + 200);
    let mut put = |k: &str, v: &str| {
        out.extend_from_slice(k.as_bytes());
        if v.contains('\n') {
            out.push(b'\n');
            out.extend_from_slice(&(v.len() as u64).to_le_bytes());
        } else {
            out.push(b'=');
        }
        out.extend_from_slice(v.as_bytes());
        out.push(b'\n');
    };
    put("MESSAGE", line);
    put("PRIORITY", &(level as u8).to_string());
    put("SYSLOG_IDENTIFIER", "nftsentry");
    put("SYSLOG_FACILITY", "3");
    if let Some(k) = kind {
        put("MESSAGE_ID", message_id(k));
        put("NFTSENTRY_KIND", k);
    }
    for (k, v) in &fields {
        put(k, v);
    }
    out
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

#[cfg(test)]
mod journal_tests {
    use super::*;

    fn fields(line: &str) -> (Option<&'static str>, Vec<(&'static str, String)>) {
        journal_fields(Level::Notice, line)
    }

    #[test]
    fn lines_give_their_fields() {
        let (k, f) = fields(
            "attackalert: TCP SYN/Normal scan from host: scanner.example/198.51.100.7 to TCP port: 1",
        );
        assert_eq!(k, Some("probe"));
        assert!(
            f.contains(&("NFTSENTRY_SOURCE", "198.51.100.7".into())),
            "{f:?}"
        );
        assert!(f.contains(&("NFTSENTRY_PORT", "1".into())));
        assert!(f.contains(&("NFTSENTRY_PROTOCOL", "TCP".into())));
        assert!(f.contains(&("NFTSENTRY_SCAN_TYPE", "TCP SYN/Normal scan".into())));
        let (k, f) = fields(
            "attackalert: Host 2001:db8::7 has been blocked via nftables set blocked6 in table inet nftsentry for 1d",
        );
        assert_eq!(k, Some("ban"));
        assert!(f.contains(&("NFTSENTRY_SOURCE", "2001:db8::7".into())));
        assert!(f.contains(&("NFTSENTRY_ACTION", "nftables set".into())));
        assert!(f.contains(&("NFTSENTRY_BAN_LENGTH", "1d".into())));
        let (k, f) = fields("ban of 192.0.2.9 expired; it dropped 3 packets (252 bytes)");
        assert_eq!(k, Some("unban"));
        assert!(f.contains(&("NFTSENTRY_SOURCE", "192.0.2.9".into())));
        let (k, _) = fields(
            "attackalert: Host: 192.0.2.53 found in ignore list (resolver), aborting actions: UDP scan to UDP port: 9",
        );
        assert_eq!(k, Some("ignored"));
        assert_eq!(
            fields("adminalert: nftsentry 0.1.0 started: table").0,
            Some("start")
        );
        assert_eq!(
            fields("adminalert: nftsentry stopping; table inet x removed").0,
            Some("stop")
        );
        assert_eq!(
            journal_fields(Level::Error, "adminalert: ERROR: x").0,
            Some("error")
        );
        assert_eq!(fields("adminalert: something else").0, None);
    }

    #[test]
    fn native_datagrams_frame_newlines() {
        let m = native_message(Level::Warning, "two\nlines");
        assert!(m.starts_with(b"MESSAGE\n\x09\0\0\0\0\0\0\0two\nlines\nPRIORITY=4\n"));
        let m =
            String::from_utf8(native_message(Level::Notice, "ban of 192.0.2.9 expired")).unwrap();
        assert!(
            m.contains("MESSAGE_ID=7992b435fa344406bba95c4e28b9dc42\n"),
            "{m}"
        );
        assert!(m.contains("NFTSENTRY_SOURCE=192.0.2.9\n"), "{m}");
    }
}
