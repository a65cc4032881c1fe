//! systemd: the sd_notify(3) protocol, spoken directly (no libsystemd): one
//! AF_UNIX datagram per message to $NOTIFY_SOCKET, a file system path or,
//! with a leading '@', an abstract name. READY=1 once the table is in,
//! STATUS= lines as the counters change (at most one a second), WATCHDOG=1
//! at half of $WATCHDOG_USEC, RELOADING=1 (with MONOTONIC_USEC, which
//! systemd 253 and later match to the reload) then READY=1 around a reload,
//! EXTEND_TIMEOUT_USEC during a long restore, STOPPING=1 on the way out. Without $NOTIFY_SOCKET every call does
//! nothing.
//!
//! The socket is connected when the notifier is made, before privileges
//! are dropped: write permission on a path socket is checked at connect(2),
//! so a daemon that switched to another user still reaches a socket only
//! root may write to.
//!
//! Knows nothing of what the daemon does: it is handed the status text.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr, connect, send, sendto, socket,
};

/// STATUS= lines go out at most this often; a change within it waits.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// The address in $NOTIFY_SOCKET: an absolute path, or `@name` for an
/// abstract socket.
pub fn parse_address(s: &OsStr) -> Result<UnixAddr, String> {
    let bytes = s.as_bytes();
    let addr = match bytes.first() {
        Some(b'/') => UnixAddr::new(s),
        Some(b'@') => UnixAddr::new_abstract(&bytes[1..]),
        _ => {
            return Err(format!(
                "NOTIFY_SOCKET={s:?} is not supported: only an absolute path or an @abstract name"
            ));
        }
    };
    addr.map_err(|e| format!("NOTIFY_SOCKET={s:?}: {}", e.desc()))
}

/// The watchdog interval: half of $WATCHDOG_USEC, unless $WATCHDOG_PID
/// names another process (the watchdog is then not ours to feed).
pub fn watchdog_interval(
    usec: Option<&OsStr>,
    pid: Option<&OsStr>,
    our_pid: u32,
) -> Result<Option<Duration>, String> {
    let Some(usec) = usec else {
        return Ok(None);
    };
    if let Some(pid) = pid {
        match pid.to_str().and_then(|p| p.parse::<u32>().ok()) {
            Some(p) if p == our_pid => {}
            Some(_) => return Ok(None),
            None => return Err(format!("WATCHDOG_PID={pid:?} is not a process id")),
        }
    }
    match usec.to_str().and_then(|u| u.parse::<u64>().ok()) {
        Some(u) if u > 0 => Ok(Some(Duration::from_micros(u) / 2)),
        _ => Err(format!(
            "WATCHDOG_USEC={usec:?} is not a positive number of microseconds"
        )),
    }
}

/// The STATUS= text: what `systemctl status` shows under the unit.
pub fn status_text(active_bans: usize, probes: u64, bans: u64, ban_errors: u64) -> String {
    let mut s = format!("{active_bans} bans active, {probes} probes seen, {bans} bans since start");
    if ban_errors > 0 {
        s.push_str(&format!(", {ban_errors} bans failed"));
    }
    s
}

/// CLOCK_MONOTONIC in microseconds, as MONOTONIC_USEC= wants it.
pub fn monotonic_usec() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(t) => t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000,
        Err(_) => 0,
    }
}

struct Target {
    fd: OwnedFd,
    addr: UnixAddr,
    connected: bool,
}

/// The daemon's side of sd_notify.
pub struct Notifier {
    target: Option<Target>,
    watchdog: Option<(Duration, Instant)>,
    last_status: Option<String>,
    /// When the status text was last made (and sent if it had changed).
    status_checked: Option<Instant>,
    /// Something happened since: check again once STATUS_INTERVAL passed.
    pending: bool,
    errors: u64,
}

impl Notifier {
    /// A notifier that sends nothing (no $NOTIFY_SOCKET).
    pub fn disabled() -> Notifier {
        Notifier {
            target: None,
            watchdog: None,
            last_status: None,
            status_checked: None,
            pending: false,
            errors: 0,
        }
    }

    /// A notifier for the socket at `address` (as $NOTIFY_SOCKET spells it),
    /// feeding a watchdog every `watchdog` if given.
    pub fn new(
        address: &OsStr,
        watchdog: Option<Duration>,
        now: Instant,
    ) -> Result<Notifier, String> {
        let addr = parse_address(address)?;
        let fd = socket(
            AddressFamily::Unix,
            SockType::Datagram,
            // Non-blocking: a full queue at the manager must not stop the loop.
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(|e| format!("NOTIFY_SOCKET: socket: {}", e.desc()))?;
        // Nobody listening yet is not fatal: each send tries the address.
        let connected = connect(fd.as_raw_fd(), &addr).is_ok();
        Ok(Notifier {
            target: Some(Target {
                fd,
                addr,
                connected,
            }),
            watchdog: watchdog.map(|d| (d, now + d)),
            ..Notifier::disabled()
        })
    }

    /// From $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID, which are then
    /// removed from the environment so that programs the daemon runs cannot
    /// speak for it (as sd_notify's unset_environment). Changing the
    /// environment is only sound while no other thread exists: call it at
    /// the start of `run`. Problems are logged and leave it disabled.
    pub fn from_env(now: Instant) -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET");
        let usec = std::env::var_os("WATCHDOG_USEC");
        let pid = std::env::var_os("WATCHDOG_PID");
        for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            // SAFETY: the daemon has one thread here (see above); nothing
            // reads the environment concurrently.
            unsafe { std::env::remove_var(name) };
        }
        let Some(socket) = socket else {
            return Notifier::disabled();
        };
        let watchdog = match watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id())
        {
            Ok(w) => w,
            Err(e) => {
                log_warning!("adminalert: WARNING: {e}; no watchdog");
                None
            }
        };
        match Notifier::new(&socket, watchdog, now) {
            Ok(n) => n,
            Err(e) => {
                log_warning!("adminalert: WARNING: {e}; the service manager will not be notified");
                Notifier::disabled()
            }
        }
    }

    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The watchdog interval in use (half of WATCHDOG_USEC).
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog.map(|(d, _)| d)
    }

    /// Messages that could not be sent.
    pub fn errors(&self) -> u64 {
        self.errors
    }

    fn send(&mut self, message: &str) {
        let Some(t) = self.target.as_mut() else {
            return;
        };
        // What the manager is told comes after the lines that led to it
        // (a burst may still hold them): `READY=1` after "reloaded".
        crate::logging::flush();
        let data = message.as_bytes();
        let fd = t.fd.as_raw_fd();
        let mut result = if t.connected {
            send(fd, data, MsgFlags::empty())
        } else {
            sendto(fd, data, &t.addr, MsgFlags::empty())
        };
        if t.connected && matches!(result, Err(Errno::ECONNREFUSED | Errno::ENOTCONN)) {
            // The manager made a new socket at the same address.
            t.connected = connect(fd, &t.addr).is_ok();
            result = if t.connected {
                send(fd, data, MsgFlags::empty())
            } else {
                sendto(fd, data, &t.addr, MsgFlags::empty())
            };
        }
        if let Err(e) = result {
            self.errors += 1;
            if self.errors == 1 {
                log_warning!(
                    "adminalert: WARNING: cannot notify the service manager: {}",
                    e.desc()
                );
            }
        }
    }

    /// Startup (or a reload) is complete.
    pub fn ready(&mut self, status: &str, now: Instant) {
        if !self.enabled() {
            return;
        }
        self.send(&format!("READY=1\nSTATUS={status}"));
        self.last_status = Some(status.to_string());
        self.status_checked = Some(now);
        self.pending = false;
    }

    /// A reload begins; `ready` ends it.
    pub fn reloading(&mut self) {
        if !self.enabled() {
            return;
        }
        self.send(&format!(
            "RELOADING=1\nSTATUS=reloading the configuration\nMONOTONIC_USEC={}",
            monotonic_usec()
        ));
    }

    /// Asks for `more` time to finish starting (a long restore), past the
    /// unit's start timeout.
    pub fn extend_timeout(&mut self, more: Duration) {
        if !self.enabled() {
            return;
        }
        self.send(&format!(
            "EXTEND_TIMEOUT_USEC={}\nSTATUS=restoring bans",
            more.as_micros()
        ));
    }

    pub fn stopping(&mut self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }

    /// Feeds the watchdog when due, and sends the status if it changed.
    /// Call it on every turn of the loop: `status` is called at most once
    /// per STATUS_INTERVAL (counting bans is not free with many), and a turn
    /// within it asks `next_due` to come back when it has passed.
    pub fn tick(&mut self, now: Instant, status: impl FnOnce() -> String) {
        if !self.enabled() {
            return;
        }
        if let Some((interval, due)) = self.watchdog {
            if now >= due {
                self.send("WATCHDOG=1");
                self.watchdog = Some((interval, now + interval));
            }
        }
        let due = self
            .status_checked
            .is_none_or(|t| now.duration_since(t) >= STATUS_INTERVAL);
        if !due {
            self.pending = true;
            return;
        }
        self.status_checked = Some(now);
        self.pending = false;
        let text = status();
        if self.last_status.as_deref() != Some(text.as_str()) {
            self.send(&format!("STATUS={text}"));
            self.last_status = Some(text);
        }
    }

    /// Time until `tick` has something to do: the watchdog, or a status
    /// change held back. For the loop's poll timeout.
    pub fn next_due(&self, now: Instant) -> Option<Duration> {
        self.target.as_ref()?;
        let watchdog = self
            .watchdog
            .map(|(_, due)| due.saturating_duration_since(now));
        let status = match (self.pending, self.status_checked) {
            (true, Some(t)) => Some((t + STATUS_INTERVAL).saturating_duration_since(now)),
            _ => None,
        };
        [watchdog, status].into_iter().flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    static COUNTER: AtomicU32 = AtomicU32::new(0);

    /// A fake manager: a datagram socket at a fresh path (removed on drop).
    struct Manager {
        sock: UnixDatagram,
        dir: PathBuf,
        address: String,
    }

    impl Manager {
        fn at_path() -> Manager {
            let n = COUNTER.fetch_add(1, Ordering::SeqCst);
            let dir =
                std::env::temp_dir().join(format!("nftsentry-notify-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("notify");
            let sock = UnixDatagram::bind(&path).unwrap();
            Manager::with(sock, dir, path.display().to_string())
        }

        fn abstract_name() -> Manager {
            let n = COUNTER.fetch_add(1, Ordering::SeqCst);
            let name = format!("nftsentry-notify-test-{}-{n}", std::process::id());
            let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            let sock = UnixDatagram::bind_addr(&addr).unwrap();
            Manager::with(sock, PathBuf::new(), format!("@{name}"))
        }

        fn with(sock: UnixDatagram, dir: PathBuf, address: String) -> Manager {
            sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            Manager { sock, dir, address }
        }

        fn notifier(&self, watchdog: Option<Duration>, now: Instant) -> Notifier {
            Notifier::new(OsStr::new(&self.address), watchdog, now).unwrap()
        }

        fn recv(&self) -> String {
            let mut buf = [0u8; 4096];
            let n = self.sock.recv(&mut buf).expect("no message");
            String::from_utf8(buf[..n].to_vec()).unwrap()
        }

        /// Nothing more was sent.
        fn silent(&self) -> bool {
            self.sock.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 4096];
            let r = self.sock.recv(&mut buf);
            self.sock.set_nonblocking(false).unwrap();
            r.is_err()
        }
    }

    impl Drop for Manager {
        fn drop(&mut self) {
            if !self.dir.as_os_str().is_empty() {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
        }
    }

    #[test]
    fn ready_status_and_stopping_reach_a_path_socket() {
        let m = Manager::at_path();
        let t0 = Instant::now();
        let mut n = m.notifier(None, t0);
        assert!(n.enabled() && n.watchdog().is_none());
        assert_eq!(n.next_due(t0), None);
        n.ready("0 bans active", t0);
        assert_eq!(m.recv(), "READY=1\nSTATUS=0 bans active");
        // Unchanged: nothing sent.
        n.tick(t0 + Duration::from_secs(5), || "0 bans active".into());
        assert!(m.silent());
        // Within a second of the last check: not even looked at, and the
        // loop is told when to come back.
        let t1 = t0 + Duration::from_secs(10);
        n.tick(t1, || "1 bans active".into());
        assert_eq!(m.recv(), "STATUS=1 bans active");
        let t2 = t1 + Duration::from_millis(300);
        n.tick(t2, || panic!("status made twice within a second"));
        assert!(m.silent());
        assert_eq!(n.next_due(t2), Some(Duration::from_millis(700)));
        n.tick(t2 + Duration::from_millis(700), || "3 bans active".into());
        assert_eq!(m.recv(), "STATUS=3 bans active");
        assert_eq!(n.next_due(t2 + Duration::from_millis(700)), None);
        n.stopping();
        assert_eq!(m.recv(), "STOPPING=1\nSTATUS=stopping");
        assert_eq!(n.errors(), 0);
    }

    #[test]
    fn abstract_names_start_with_an_at() {
        let m = Manager::abstract_name();
        let mut n = m.notifier(None, Instant::now());
        n.ready("up", Instant::now());
        assert_eq!(m.recv(), "READY=1\nSTATUS=up");
    }

    #[test]
    fn watchdog_is_fed_at_its_interval() {
        let m = Manager::at_path();
        let t0 = Instant::now();
        let mut n = m.notifier(Some(Duration::from_secs(10)), t0);
        n.ready("s", t0);
        assert_eq!(m.recv(), "READY=1\nSTATUS=s");
        assert_eq!(
            n.next_due(t0 + Duration::from_secs(4)),
            Some(Duration::from_secs(6))
        );
        n.tick(t0 + Duration::from_secs(9), || "s".into());
        assert!(m.silent());
        let t1 = t0 + Duration::from_secs(10);
        n.tick(t1, || "s".into());
        assert_eq!(m.recv(), "WATCHDOG=1");
        assert_eq!(n.next_due(t1), Some(Duration::from_secs(10)));
    }

    #[test]
    fn reloading_carries_the_monotonic_time() {
        let m = Manager::at_path();
        let mut n = m.notifier(None, Instant::now());
        let before = monotonic_usec();
        n.reloading();
        let after = monotonic_usec();
        let msg = m.recv();
        let mut lines = msg.lines();
        assert_eq!(lines.next(), Some("RELOADING=1"));
        assert_eq!(lines.next(), Some("STATUS=reloading the configuration"));
        let usec: u64 = lines
            .next()
            .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{msg}"));
        assert!(before <= usec && usec <= after, "{before} {usec} {after}");
        n.ready("reloaded", Instant::now());
        assert_eq!(m.recv(), "READY=1\nSTATUS=reloaded");
    }

    #[test]
    fn a_socket_made_again_at_the_same_path_is_found() {
        let mut m = Manager::at_path();
        let mut n = m.notifier(None, Instant::now());
        let path = m.dir.join("notify");
        std::fs::remove_file(&path).unwrap();
        m.sock = UnixDatagram::bind(&path).unwrap();
        // The old socket is closed here, but a child that another test is
        // spawning holds it between fork and exec: until it execs, a send
        // still lands in the old one. Try a few times; without reconnecting
        // every try would fail with ECONNREFUSED and count an error.
        m.sock
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut got = None;
        for _ in 0..25 {
            n.ready("again", Instant::now());
            let mut buf = [0u8; 4096];
            if let Ok(len) = m.sock.recv(&mut buf) {
                got = Some(String::from_utf8(buf[..len].to_vec()).unwrap());
                break;
            }
        }
        assert_eq!(got.as_deref(), Some("READY=1\nSTATUS=again"));
        assert_eq!(n.errors(), 0);
    }

    #[test]
    fn a_missing_manager_is_counted_not_fatal() {
        let m = Manager::at_path();
        let mut n = m.notifier(None, Instant::now());
        drop(m);
        n.ready("x", Instant::now());
        n.stopping();
        assert_eq!(n.errors(), 2);
    }

    #[test]
    fn disabled_sends_nothing_and_never_wakes_the_loop() {
        let mut n = Notifier::disabled();
        let now = Instant::now();
        n.ready("x", now);
        n.tick(now, || panic!("status computed without a manager"));
        assert_eq!(n.next_due(now), None);
        assert_eq!(n.errors(), 0);
    }

    #[test]
    fn addresses() {
        assert!(parse_address(OsStr::new("/run/systemd/notify")).is_ok());
        let a = parse_address(OsStr::new("@abc")).unwrap();
        assert_eq!(a.as_abstract(), Some(&b"abc"[..]));
        for bad in ["", "run/notify", "vsock:2:1234"] {
            let e = parse_address(OsStr::new(bad)).unwrap_err();
            assert!(
                e.contains("only an absolute path or an @abstract name"),
                "{e}"
            );
        }
        let long = format!("/{}", "x".repeat(200));
        assert!(parse_address(OsStr::new(&long)).is_err());
    }

    #[test]
    fn watchdog_settings() {
        let os = |s: &'static str| Some(OsStr::new(s));
        assert_eq!(watchdog_interval(None, None, 7), Ok(None));
        assert_eq!(
            watchdog_interval(os("30000000"), None, 7),
            Ok(Some(Duration::from_secs(15)))
        );
        assert_eq!(
            watchdog_interval(os("30000000"), os("7"), 7),
            Ok(Some(Duration::from_secs(15)))
        );
        // Another process's watchdog.
        assert_eq!(watchdog_interval(os("30000000"), os("8"), 7), Ok(None));
        assert!(watchdog_interval(os("0"), None, 7).is_err());
        assert!(watchdog_interval(os("soon"), None, 7).is_err());
        assert!(watchdog_interval(os("1000"), os("x"), 7).is_err());
    }

    #[test]
    fn status_names_bans_and_probes() {
        assert_eq!(
            status_text(0, 0, 0, 0),
            "0 bans active, 0 probes seen, 0 bans since start"
        );
        assert_eq!(
            status_text(2, 7, 3, 0),
            "2 bans active, 7 probes seen, 3 bans since start"
        );
        assert_eq!(
            status_text(2, 7, 3, 4),
            "2 bans active, 7 probes seen, 3 bans since start, 4 bans failed"
        );
    }
}
