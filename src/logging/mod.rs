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

/// Writes `line` at `level`: at once, or at the end of the burst open on
/// this thread (`Burst`).
pub fn log(level: Level, line: &str) {
    if !enabled(level) {
        return;
    }
    let route = Route::now();
    let queued = PENDING
        .try_with(|p| {
            let Ok(mut p) = p.try_borrow_mut() else {
                return false;
            };
            p.log(level, line, route, &mut Real);
            true
        })
        .unwrap_or(false);
    if !queued {
        // This thread's buffer is gone (a thread-local destructor logs)
        // or busy: the line alone, as without a burst.
        let mut p = Pending::default();
        p.push(level, line, route);
        p.flush(&mut Real, route);
    }
}

/// Writes the line `args` makes at `level`, formatting it only when the
/// level is on: `log_debug!` costs nothing in a flood with debug off.
pub fn log_args(level: Level, args: std::fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    if let Some(s) = args.as_str() {
        return log(level, s);
    }
    // Formatted into a buffer this thread keeps, not a String per line.
    let done = SCRATCH
        .try_with(|s| {
            let Ok(mut s) = s.try_borrow_mut() else {
                return false;
            };
            s.clear();
            let _ = std::fmt::Write::write_fmt(&mut *s, args);
            log(level, &s);
            if s.capacity() > FLUSH_BYTES {
                *s = String::new();
            }
            true
        })
        .unwrap_or(false);
    if !done {
        log(level, &args.to_string());
    }
}

/// A burst of lines on this thread: from `Burst::start` until the value is
/// dropped (or `finish`ed), the lines this thread logs are kept, exactly
/// the bytes they would have been, and written together when it ends:
/// stderr in as few write(2)s as it takes, each at most `PIPE_BUF` bytes
/// and cut only between lines (a line longer than that alone, as before),
/// so that no other writer's line lands inside one of ours; the journal's
/// native datagrams and syslog's with sendmmsg(2), in order. A burst
/// writes early what it holds when that passes `FLUSH_BYTES` or
/// `FLUSH_DATAGRAMS`, so it never holds much memory or delays lines long.
///
/// A burst inside a burst changes nothing (the outer one writes). Other
/// threads' lines are not held. Lines are kept in order per target; a line
/// that its socket refuses falls back to stderr, as a single line does.
/// The event loop opens one around each batch of work that can log many
/// lines (an NFLOG read, a control request); it must end before the loop
/// waits in poll(2) or the process exits, or the lines wait with it
/// (a panic's unwinding ends it).
#[must_use = "a burst ends, and writes its lines, when it is dropped"]
pub struct Burst {
    /// It counts in this thread's depth (not when the buffer was busy).
    counted: bool,
    /// Not Send: a burst ends on the thread it began on.
    _here: std::marker::PhantomData<*const ()>,
}

impl Burst {
    pub fn start() -> Burst {
        let counted = PENDING
            .try_with(|p| p.try_borrow_mut().map(|mut p| p.depth += 1).is_ok())
            .unwrap_or(false);
        Burst {
            counted,
            _here: std::marker::PhantomData,
        }
    }

    /// Ends the burst: writes its lines (the same as dropping it).
    pub fn finish(self) {}
}

impl Drop for Burst {
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        let _ = PENDING.try_with(|p| {
            if let Ok(mut p) = p.try_borrow_mut() {
                p.depth = p.depth.saturating_sub(1);
                if p.depth == 0 {
                    p.flush(&mut Real, Route::now());
                    p.pid = None;
                }
            }
        });
    }
}

/// Whether a burst is open on this thread (lines wait for its end).
pub fn burst_open() -> bool {
    PENDING
        .try_with(|p| p.try_borrow().is_ok_and(|p| p.depth > 0))
        .unwrap_or(false)
}

/// Writes now what the burst open on this thread holds (the burst stays
/// open): before something that may block for long or end the process.
pub fn flush() {
    let _ = PENDING.try_with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            p.flush(&mut Real, Route::now());
        }
    });
}

/// The most bytes one write(2) to stderr takes from a burst: writes to a
/// pipe up to this size are atomic (pipe(7)), so another writer's line
/// never lands inside one of ours.
pub const PIPE_BUF: usize = 4096;
/// A burst writes what it holds once it passes this many bytes...
pub const FLUSH_BYTES: usize = 64 * 1024;
/// ... or this many datagrams (one sendmmsg(2)).
pub const FLUSH_DATAGRAMS: usize = 128;

thread_local! {
    static PENDING: std::cell::RefCell<Pending> = std::cell::RefCell::new(Pending::default());
    static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Where lines go now, read from the settings `init` made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Route {
    syslog: bool,
    native: bool,
    /// stderr is the journal's stream: a `<N>` prefix per line.
    prefix: bool,
}

impl Route {
    fn now() -> Route {
        Route {
            syslog: TARGET_SYSLOG.load(Ordering::Relaxed),
            native: NATIVE_ON.load(Ordering::Relaxed),
            prefix: JOURNAL.load(Ordering::Relaxed),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sink {
    Syslog,
    Native,
}

/// A datagram waiting in `Pending::datagrams`.
#[derive(Clone, Copy, Debug)]
struct Datagram {
    sink: Sink,
    level: Level,
    /// Where it ends in `Pending::datagrams`.
    end: usize,
    /// Where its line ends in `Pending::lines` (for a fallback to stderr).
    line_end: usize,
}

/// The lines of this thread's burst, as the bytes that will be written.
#[derive(Default)]
struct Pending {
    depth: usize,
    /// stderr's bytes, whole lines; `stderr_ends[i]` is where line i ends.
    stderr: Vec<u8>,
    stderr_ends: Vec<usize>,
    /// The datagrams end to end.
    datagrams: Vec<u8>,
    meta: Vec<Datagram>,
    /// Their lines, for a datagram its socket refuses.
    lines: String,
    /// The process id for syslog's lines, once per burst.
    pid: Option<u32>,
}

/// Where a burst's bytes go (tests give their own).
trait Outputs {
    fn stderr(&mut self, bytes: &[u8]);
    /// Sends `msgs` in order; `failed(i)` for each one not sent.
    fn send(&mut self, sink: Sink, msgs: &[&[u8]], failed: &mut dyn FnMut(usize));
}

/// stderr and the sockets `init` opened.
struct Real;

impl Outputs for Real {
    fn stderr(&mut self, bytes: &[u8]) {
        // stderr is unbuffered: one write(2) (unless the kernel takes part
        // of it, which a pipe does not below PIPE_BUF).
        let _ = std::io::stderr().lock().write_all(bytes);
    }

    fn send(&mut self, sink: Sink, msgs: &[&[u8]], failed: &mut dyn FnMut(usize)) {
        let lock = match sink {
            Sink::Syslog => &SYSLOG,
            Sink::Native => &NATIVE,
        };
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(sock) => send_all(sock, msgs, failed),
            None => (0..msgs.len()).for_each(failed),
        }
    }
}

/// Sends `msgs` on a connected datagram socket, in order, with as few
/// sendmmsg(2)s as it takes: one, unless the socket refuses one of them
/// (it is reported to `failed` and the rest sent after it).
fn send_all(sock: &UnixDatagram, msgs: &[&[u8]], failed: &mut dyn FnMut(usize)) {
    use nix::sys::socket::{MsgFlags, MultiHeaders, sendmmsg};
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;
    if let [one] = msgs {
        if sock.send(one).is_err() {
            failed(0);
        }
        return;
    }
    let mut headers = MultiHeaders::<()>::preallocate(msgs.len(), None);
    let addrs = vec![None; msgs.len()];
    let mut i = 0;
    while i < msgs.len() {
        let iovs: Vec<[IoSlice<'_>; 1]> = msgs[i..].iter().map(|m| [IoSlice::new(m)]).collect();
        let sent = sendmmsg(
            sock.as_raw_fd(),
            &mut headers,
            &iovs,
            &addrs[i..],
            [],
            MsgFlags::MSG_NOSIGNAL,
        )
        .map(|r| r.count());
        match sent {
            Ok(n) if n > 0 => i += n,
            Err(nix::errno::Errno::EINTR) => {}
            _ => {
                failed(i);
                i += 1;
            }
        }
    }
}

impl Drop for Pending {
    /// A thread that ends with lines held (its burst leaked) writes them.
    fn drop(&mut self) {
        if !self.stderr.is_empty() || !self.meta.is_empty() {
            self.flush(&mut Real, Route::now());
        }
    }
}

impl Pending {
    /// Holds the line, and writes what is held unless a burst is open and
    /// below its bounds.
    fn log(&mut self, level: Level, line: &str, route: Route, out: &mut dyn Outputs) {
        self.push(level, line, route);
        if self.depth == 0 || self.full() {
            self.flush(out, route);
        }
    }

    fn full(&self) -> bool {
        self.stderr.len() >= FLUSH_BYTES
            || self.datagrams.len() >= FLUSH_BYTES
            || self.meta.len() >= FLUSH_DATAGRAMS
    }

    /// The bytes of `line` for where `route` sends it.
    fn push(&mut self, level: Level, line: &str, route: Route) {
        let sink = if route.syslog {
            Sink::Syslog
        } else if route.native {
            Sink::Native
        } else {
            return self.push_stderr(level, line, route.prefix);
        };
        match sink {
            Sink::Syslog => {
                let pid = *self.pid.get_or_insert_with(std::process::id);
                let d = &mut self.datagrams;
                d.push(b'<');
                push_decimal_bytes(d, u64::from(LOG_DAEMON | level as u8));
                d.extend_from_slice(b">nftsentry[");
                push_decimal_bytes(d, u64::from(pid));
                d.extend_from_slice(b"]: ");
                d.extend_from_slice(line.as_bytes());
            }
            Sink::Native => native_message_into(level, line, &mut self.datagrams),
        }
        self.lines.push_str(line);
        self.meta.push(Datagram {
            sink,
            level,
            end: self.datagrams.len(),
            line_end: self.lines.len(),
        });
    }

    fn push_stderr(&mut self, level: Level, line: &str, prefix: bool) {
        // The journal reads the priority from a <N> prefix on each line.
        if prefix {
            self.stderr
                .extend_from_slice(&[b'<', b'0' + level as u8, b'>']);
        }
        self.stderr.extend_from_slice(line.as_bytes());
        self.stderr.push(b'\n');
        self.stderr_ends.push(self.stderr.len());
    }

    /// Writes everything held: the datagrams (a refused one falls back as
    /// a single line does), then stderr's lines.
    fn flush(&mut self, out: &mut dyn Outputs, route: Route) {
        if !self.meta.is_empty() {
            self.send_datagrams(out, route);
        }
        let mut chunk = 0;
        let mut at = 0;
        for &end in &self.stderr_ends {
            // Cut before this line if it would take the chunk past PIPE_BUF
            // (a longer line than that goes alone).
            if end - chunk > PIPE_BUF && at > chunk {
                out.stderr(&self.stderr[chunk..at]);
                chunk = at;
            }
            at = end;
        }
        if at > chunk {
            out.stderr(&self.stderr[chunk..at]);
        }
        self.stderr.clear();
        self.stderr_ends.clear();
        // A huge line once does not keep its memory for ever.
        if self.stderr.capacity() > 2 * FLUSH_BYTES {
            self.stderr = Vec::new();
        }
    }

    fn send_datagrams(&mut self, out: &mut dyn Outputs, route: Route) {
        let meta = std::mem::take(&mut self.meta);
        let datagrams = std::mem::take(&mut self.datagrams);
        let lines = std::mem::take(&mut self.lines);
        let mut refused: Vec<usize> = Vec::new();
        let mut msgs: Vec<&[u8]> = Vec::with_capacity(meta.len());
        let mut first = 0;
        while first < meta.len() {
            // A run of datagrams to one socket.
            let sink = meta[first].sink;
            let run = meta[first..]
                .iter()
                .position(|m| m.sink != sink)
                .map_or(meta.len(), |n| first + n);
            msgs.clear();
            let mut start = if first == 0 { 0 } else { meta[first - 1].end };
            for m in &meta[first..run] {
                msgs.push(&datagrams[start..m.end]);
                start = m.end;
            }
            out.send(sink, &msgs, &mut |i| refused.push(first + i));
            first = run;
        }
        drop(msgs);
        for i in refused {
            let m = meta[i];
            let line = &lines[if i == 0 { 0 } else { meta[i - 1].line_end }..m.line_end];
            // As a single line: syslog's refusal tries the journal, then
            // stderr.
            if m.sink == Sink::Syslog && route.native {
                let mut msg = Vec::new();
                native_message_into(m.level, line, &mut msg);
                let mut sent = true;
                out.send(Sink::Native, &[&msg], &mut |_| sent = false);
                if sent {
                    continue;
                }
            }
            self.push_stderr(m.level, line, route.prefix);
        }
        // Keep the buffers' memory for the next burst (within bounds).
        self.meta = meta;
        self.meta.clear();
        if datagrams.capacity() <= 2 * FLUSH_BYTES {
            self.datagrams = datagrams;
            self.datagrams.clear();
        }
        if lines.capacity() <= 2 * FLUSH_BYTES {
            self.lines = lines;
            self.lines.clear();
        }
    }
}

fn push_decimal_bytes(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends `n` in decimal, as `{n}` would, without the formatting
/// machinery (log lines are made by the hundred thousand in a flood).
pub fn push_decimal(out: &mut String, n: u64) {
    if n < 1000 {
        // An address's octet, a port's first digits: no buffer, no loop.
        return push_below_1000(out, n as u16);
    }
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits, each a char of one byte (no UTF-8 check of the run).
    for &d in &digits[i..] {
        out.push(char::from(d));
    }
}

/// `n` (below 1000) in decimal.
fn push_below_1000(out: &mut String, n: u16) {
    let digit = |d: u16| char::from(b'0' + d as u8);
    if n >= 100 {
        out.push(digit(n / 100));
    }
    if n >= 10 {
        out.push(digit(n / 10 % 10));
    }
    out.push(digit(n % 10));
}

/// Appends `ip` as `{ip}` would (IPv4 without the formatting machinery,
/// which was a tenth of the daemon's CPU in a flood of alert lines).
pub fn push_ip(out: &mut String, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(a) => {
            // Into a buffer, then one append (one UTF-8 check of at most
            // 15 ASCII bytes, one capacity check).
            let mut buf = [0u8; 15];
            let mut n = 0;
            for (i, o) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                if o >= 100 {
                    buf[n] = b'0' + o / 100;
                    n += 1;
                }
                if o >= 10 {
                    buf[n] = b'0' + o / 10 % 10;
                    n += 1;
                }
                buf[n] = b'0' + o % 10;
                n += 1;
            }
            out.push_str(std::str::from_utf8(&buf[..n]).unwrap_or_default());
        }
        std::net::IpAddr::V6(a) => {
            let _ = std::fmt::Write::write_fmt(out, format_args!("{a}"));
        }
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
    let f = fields_of(level, line);
    (
        f.kind,
        f.fields()
            .iter()
            .map(|(k, v)| (*k, v.to_string()))
            .collect(),
    )
}

/// A line's fields, borrowed from it (no allocation per line).
struct Fields<'a> {
    kind: Option<&'static str>,
    list: [(&'static str, &'a str); 8],
    n: usize,
}

impl<'a> Fields<'a> {
    fn push(&mut self, k: &'static str, v: &'a str) {
        if let Some(slot) = self.list.get_mut(self.n) {
            *slot = (k, v);
            self.n += 1;
        }
    }

    fn fields(&self) -> &[(&'static str, &'a str)] {
        &self.list[..self.n]
    }
}

fn fields_of<'a>(level: Level, line: &'a str) -> Fields<'a> {
    let mut f = Fields {
        kind: None,
        list: [("", ""); 8],
        n: 0,
    };
    // "NAME/ADDR" (PortSentry's "host: name/addr") is the address.
    fn host(w: &str) -> &str {
        let w = w.trim_end_matches([',', ':']);
        w.rsplit('/').next().unwrap_or(w)
    }
    fn first_word(r: &str) -> &str {
        r.split_whitespace().next().unwrap_or("")
    }
    let after = |pat: &str| line.split_once(pat).map(|(_, r)| r);
    let port_proto = |f: &mut Fields<'a>| {
        for (proto, pat) in [("TCP", "to TCP port: "), ("UDP", "to UDP port: ")] {
            if let Some(r) = line.split_once(pat).map(|(_, r)| r) {
                f.push("NFTSENTRY_PROTOCOL", proto);
                f.push("NFTSENTRY_PORT", r.split_whitespace().next().unwrap_or(""));
            }
        }
    };
    f.kind = if let Some(r) = after(" from host: ") {
        let scan = line
            .split_once("attackalert: ")
            .map(|(_, r)| r)
            .unwrap_or(line)
            .split(" from host: ")
            .next()
            .unwrap_or("");
        f.push("NFTSENTRY_SOURCE", host(first_word(r)));
        f.push("NFTSENTRY_SCAN_TYPE", scan);
        port_proto(&mut f);
        Some("probe")
    } else if let Some(r) =
        after("attackalert: Host ").filter(|r| r.contains(" has been blocked via "))
    {
        f.push("NFTSENTRY_SOURCE", first_word(r));
        if let Some(how) = after(" has been blocked via ") {
            let action = ["nftables set", "wrappers", "dropped route", "route"]
                .into_iter()
                .find(|a| how.starts_with(a))
                .unwrap_or("other");
            f.push("NFTSENTRY_ACTION", action);
        }
        if let Some(len) = line
            .rsplit_once(" for ")
            .map(|(_, l)| l)
            .filter(|l| !l.contains(' '))
        {
            f.push("NFTSENTRY_BAN_LENGTH", len);
        }
        Some("ban")
    } else if let Some(r) = after("External command run for host: ") {
        f.push("NFTSENTRY_SOURCE", first_word(r));
        f.push("NFTSENTRY_ACTION", "command");
        Some("ban")
    } else if let Some(r) =
        after("attackalert: Host: ").filter(|r| r.contains(" found in ignore list"))
    {
        f.push("NFTSENTRY_SOURCE", first_word(r));
        port_proto(&mut f);
        Some("ignored")
    } else if let Some(r) = after("attackalert: Host: ") {
        // "is already blocked Ignoring": a probe of a banned source.
        f.push("NFTSENTRY_SOURCE", host(first_word(r)));
        Some("probe")
    } else if let Some(r) = after("ban of ").filter(|r| r.contains(" expired")) {
        f.push("NFTSENTRY_SOURCE", first_word(r));
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
    f
}

/// One datagram of the native protocol: `KEY=value` lines, or for a value
/// with a newline `KEY`, newline, its length (64-bit little endian), the
/// value and a newline.
pub fn native_message(level: Level, line: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len() + 200);
    native_message_into(level, line, &mut out);
    out
}

/// `native_message`, appended to `out`.
pub fn native_message_into(level: Level, line: &str, out: &mut Vec<u8>) {
    let f = fields_of(level, line);
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
    let priority = [b'0' + level as u8];
    put("PRIORITY", std::str::from_utf8(&priority).unwrap_or("5"));
    put("SYSLOG_IDENTIFIER", "nftsentry");
    put("SYSLOG_FACILITY", "3");
    if let Some(k) = f.kind {
        put("MESSAGE_ID", message_id(k));
        put("NFTSENTRY_KIND", k);
    }
    for (k, v) in f.fields() {
        put(k, v);
    }
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

/// Tests: takes the stderr bytes this thread's burst holds, unwritten.
#[cfg(test)]
pub(crate) fn take_held() -> String {
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        p.stderr_ends.clear();
        String::from_utf8(std::mem::take(&mut p.stderr)).unwrap()
    })
}

#[cfg(test)]
mod tests;
