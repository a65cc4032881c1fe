//! Running as a hardened service: the systemd unit's exposure and syntax,
//! and a real daemon in a victim namespace whose /proc status shows exactly
//! the capabilities and user it should keep, that tells a fake systemd
//! (a datagram socket given as NOTIFY_SOCKET) READY=1 only once its table is
//! in, then STATUS= lines, watchdog pings and STOPPING=1, and that still
//! bans while the programs it runs get no capability.
mod common;
use common::*;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/nftsentry.service");
const NET_ADMIN: u64 = 1 << 12;
const NET_BIND_SERVICE: u64 = 1 << 10;
const NOBODY: u32 = 65534;

/// The figure `systemd-analyze security` gives the unit ("→ Overall
/// exposure level for nftsentry.service: 1.7 OK").
fn exposure(output: &str) -> Option<f64> {
    let line = output
        .lines()
        .find(|l| l.contains("Overall exposure level for"))?;
    let (_, rest) = line.rsplit_once(": ")?;
    rest.split_whitespace().next()?.parse().ok()
}

#[test]
fn unit_exposure_is_at_most_2_0() {
    let out = run_ok(Command::new("systemd-analyze").args([
        "security",
        "--offline=true",
        "--no-pager",
        UNIT,
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    let figure = exposure(&text).unwrap_or_else(|| panic!("no exposure figure in:\n{text}"));
    println!("systemd-analyze security --offline=true config/nftsentry.service: exposure {figure}");
    assert!(figure <= 2.0, "exposure {figure} > 2.0:\n{text}");
    assert_eq!(
        exposure("→ Overall exposure level for x.service: 9.6 UNSAFE 😨"),
        Some(9.6)
    );
}

#[test]
fn unit_verifies_and_keeps_what_the_package_needs() {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    // tests/deb.rs (the package) relies on these two lines.
    assert!(unit.contains("\nExecStart=/usr/sbin/nftsentry run\n"));
    assert!(unit.contains("\nStateDirectory=nftsentry\n"));
    // `verify` looks for the programs the unit runs and the units it pulls
    // in: give it a root with the binary and systemd's own units, and no
    // other program (a minimal Debian has no /bin/kill: the unit reloads
    // through `nftsentry reload`).
    let root = TempDir::new("unitroot");
    for dir in ["usr/sbin", "etc/systemd/system", "usr/lib/systemd"] {
        std::fs::create_dir_all(root.path.join(dir)).unwrap();
    }
    std::fs::copy(nftsentry_bin(), root.path.join("usr/sbin/nftsentry")).unwrap();
    run_ok(
        Command::new("cp")
            .args(["-a", "/usr/lib/systemd/system"])
            .arg(root.path.join("usr/lib/systemd/")),
    );
    std::fs::copy(UNIT, root.path.join("etc/systemd/system/nftsentry.service")).unwrap();
    let out = run_ok(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(format!("--root={}", root.path.display()))
            .arg("nftsentry.service"),
    );
    // Unknown keys are only warnings: none may be printed.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.trim().is_empty(), "{stderr}");
}

/// The fake service manager's socket, at a path (abstract names belong to
/// one network namespace; the daemon runs in another).
struct Manager {
    sock: UnixDatagram,
    path: PathBuf,
}

impl Manager {
    fn new(dir: &Path) -> Manager {
        let path = dir.join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        Manager { sock, path }
    }

    fn recv(&self, timeout: Duration) -> Option<String> {
        self.sock.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4096];
        let n = self.sock.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Messages until one contains `want` (returned with the others).
    fn until(&self, want: &str, timeout: Duration) -> (Option<String>, Vec<String>) {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.recv(left) {
                Some(m) if m.contains(want) => return (Some(m), seen),
                Some(m) => seen.push(m),
                None => break,
            }
        }
        (None, seen)
    }
}

fn status_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap()
}

fn field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {status}"))
        .trim()
}

/// CapEff, CapPrm, CapInh, CapBnd, CapAmb.
fn sets(status: &str) -> [u64; 5] {
    ["CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"]
        .map(|n| u64::from_str_radix(field(status, n), 16).unwrap())
}

fn ids(status: &str, name: &str) -> Vec<u32> {
    field(status, name)
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect()
}

fn table_exists(ns: &Netns) -> bool {
    ns.cmd("nft")
        .args(["list", "table", "inet", "nftsentry"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn banned(ns: &Netns, addr: &str) -> bool {
    ns.nft(&["list", "set", "inet", "nftsentry", "blocked4"])
        .contains(addr)
}

/// A victim running nftsentry with NOTIFY_SOCKET (and WATCHDOG_USEC) set,
/// and an attacker.
struct Service {
    pair: Pair,
    /// Holds the config, log and socket until the test ends.
    _dir: TempDir,
    /// State, history and the command's output; owned by the daemon's user.
    var: PathBuf,
    log: PathBuf,
    manager: Manager,
    pid: u32,
}

impl Service {
    /// Starts the daemon with `extra` at the top of its config and `tables`
    /// after, without waiting for anything.
    fn start(tag: &str, owner: Option<u32>, extra: &str, tables: &str) -> Service {
        let mut pair = Pair::new(tag);
        let dir = TempDir::new(tag);
        let var = dir.path.join("var");
        std::fs::create_dir(&var).unwrap();
        if let Some(uid) = owner {
            std::os::unix::fs::chown(&var, Some(uid), Some(uid)).unwrap();
        }
        let ignore = dir.file("ignore", "# nothing\n");
        let cfg = dir.file(
            "nftsentry.toml",
            &format!(
                "ignore_file = \"{}\"\n{}command = [\"/bin/cp\", \"/proc/self/status\", \"{}/child-status\"]\n{extra}\n{tables}",
                ignore.display(),
                private_files(&var),
                var.display()
            ),
        );
        let manager = Manager::new(&dir.path);
        let log = dir.path.join("log");
        let mut c = pair.victim.cmd(nftsentry_bin());
        c.arg("-c")
            .arg(&cfg)
            .arg("run")
            .env("NOTIFY_SOCKET", &manager.path)
            // Pings every 0.2 s.
            .env("WATCHDOG_USEC", "400000")
            .env_remove("WATCHDOG_PID")
            .stderr(std::fs::File::create(&log).unwrap());
        let pid = pair.victim.spawn(&mut c);
        Service {
            pair,
            _dir: dir,
            var,
            log,
            manager,
            pid,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for READY=1; checks at that moment that the table is in and the
    /// privileges are already dropped, and that nothing came before it.
    fn ready(&self) -> String {
        let (ready, before) = self.manager.until("READY=1", Duration::from_secs(10));
        let ready = ready.unwrap_or_else(|| panic!("no READY=1; log:\n{}", self.log()));
        let status = status_of(self.pid);
        assert!(
            table_exists(&self.pair.victim),
            "READY=1 before the table was in"
        );
        assert!(before.is_empty(), "before READY=1: {before:?}");
        assert_eq!(field(&status, "Name"), "nftsentry");
        assert_eq!(
            ready,
            "READY=1\nSTATUS=0 bans active, 0 probes seen, 0 bans since start"
        );
        status
    }

    /// nmap -sS on a watched port; waits for the ban, the STATUS= line that
    /// counts it, and the command's output. Returns the command's status.
    fn probe_bans(&self) -> String {
        run_ok(self.pair.attacker.cmd("nmap").args([
            "-sS",
            "-T5",
            "--max-retries",
            "0",
            "-Pn",
            "-n",
            "-p",
            "1",
            VICTIM4,
        ]));
        assert!(
            wait_until(Duration::from_secs(5), || banned(
                &self.pair.victim,
                ATTACKER4
            )),
            "no ban; log:\n{}",
            self.log()
        );
        let (status, _) = self
            .manager
            .until("STATUS=1 bans active", Duration::from_secs(5));
        assert_eq!(
            status.as_deref(),
            Some("STATUS=1 bans active, 1 probes seen, 1 bans since start"),
            "log:\n{}",
            self.log()
        );
        let out = self.var.join("child-status");
        assert!(
            wait_until(Duration::from_secs(5), || out.exists()),
            "the command did not run; log:\n{}",
            self.log()
        );
        // cp writes the file as it reads: wait for the last line.
        assert!(wait_until(Duration::from_secs(2), || {
            std::fs::read_to_string(&out).is_ok_and(|s| s.contains("nonvoluntary_ctxt_switches"))
        }));
        std::fs::read_to_string(&out).unwrap()
    }

    /// SIGHUP after the drop: RELOADING=1 then READY=1, the reload logged,
    /// the ban carried over, the capabilities as they were.
    fn reload_still_works(&self) {
        let before = status_of(self.pid);
        signal(self.pid, nix::sys::signal::Signal::SIGHUP);
        let (reloading, _) = self.manager.until("RELOADING=1", Duration::from_secs(5));
        assert!(
            reloading
                .as_deref()
                .is_some_and(|m| m.contains("MONOTONIC_USEC=")),
            "{reloading:?}; log:\n{}",
            self.log()
        );
        let (ready, _) = self.manager.until("READY=1", Duration::from_secs(5));
        assert!(ready.is_some(), "no READY=1 after the reload");
        assert!(
            self.log()
                .contains("adminalert: configuration reloaded from"),
            "{}",
            self.log()
        );
        assert!(
            banned(&self.pair.victim, ATTACKER4),
            "the ban went with the reload"
        );
        assert_eq!(sets(&status_of(self.pid)), sets(&before));
    }

    /// Watchdog pings arrive, then SIGTERM brings STOPPING=1 and a clean
    /// exit without the table.
    fn stop(mut self) {
        let t0 = Instant::now();
        let (ping, _) = self.manager.until("WATCHDOG=1", Duration::from_secs(2));
        assert_eq!(ping.as_deref(), Some("WATCHDOG=1"));
        let (ping, _) = self.manager.until("WATCHDOG=1", Duration::from_secs(2));
        assert_eq!(ping.as_deref(), Some("WATCHDOG=1"));
        assert!(t0.elapsed() < Duration::from_secs(2));
        signal(self.pid, nix::sys::signal::Signal::SIGTERM);
        let (stopping, _) = self.manager.until("STOPPING=1", Duration::from_secs(5));
        assert_eq!(stopping.as_deref(), Some("STOPPING=1\nSTATUS=stopping"));
        let status = self.pair.victim.take_child(self.pid).wait().unwrap();
        assert!(status.success(), "{status}; log:\n{}", self.log());
        assert!(!table_exists(&self.pair.victim));
    }
}

#[test]
fn as_root_keeps_only_net_admin_and_programs_it_runs_get_nothing() {
    let s = Service::start(
        "svcroot",
        None,
        "",
        "[tcp]\nports = \"1,11\"\n[udp]\nports = \"7\"\n",
    );
    let own = s.ready();
    // Eff, Prm, Inh, Bnd, Amb.
    assert_eq!(sets(&own), [NET_ADMIN, NET_ADMIN, 0, 0, 0], "{own}");
    assert_eq!(ids(&own, "Uid"), [0; 4]);
    assert_eq!(field(&own, "NoNewPrivs"), "1");
    assert!(
        s.log().contains(
            "adminalert: privileges dropped: uid 0, gid 0, keeping cap_net_admin; bounding set emptied, securebits locked, no_new_privs"
        ),
        "{}",
        s.log()
    );
    let child = s.probe_bans();
    assert_eq!(sets(&child), [0; 5], "{child}");
    assert_eq!(ids(&child, "Uid"), [0; 4]);
    assert_eq!(field(&child, "NoNewPrivs"), "1");
    s.reload_still_works();
    s.stop();
}

#[test]
fn as_nobody_keeps_net_admin_and_net_bind_service_for_connect_mode() {
    let s = Service::start(
        "svcuser",
        Some(NOBODY),
        "user = \"nobody\"",
        "[tcp]\nports = \"1,11\"\n[udp]\nmode = \"connect\"\nports = \"7\"\n",
    );
    let own = s.ready();
    let both = NET_ADMIN | NET_BIND_SERVICE;
    assert_eq!(sets(&own), [both, both, 0, 0, 0], "{own}");
    assert_eq!(ids(&own, "Uid"), [NOBODY; 4]);
    assert_eq!(ids(&own, "Gid"), [NOBODY; 4]);
    assert_eq!(field(&own, "NoNewPrivs"), "1");
    // The state file made while setting up belongs to the user.
    use std::os::unix::fs::MetadataExt;
    let lock = s.var.join("state.lock");
    assert_eq!(std::fs::metadata(&lock).unwrap().uid(), NOBODY);
    let child = s.probe_bans();
    assert_eq!(sets(&child), [0; 5], "{child}");
    assert_eq!(ids(&child, "Uid"), [NOBODY; 4]);
    assert_eq!(field(&child, "NoNewPrivs"), "1");
    // Written after the drop, as the user.
    assert!(wait_until(Duration::from_secs(10), || s
        .var
        .join("state")
        .exists()));
    assert_eq!(
        std::fs::metadata(s.var.join("state")).unwrap().uid(),
        NOBODY
    );
    s.reload_still_works();
    s.stop();
}

#[test]
fn a_user_who_cannot_write_the_state_file_is_refused_before_ready() {
    // The state directory stays root's (0755): nobody cannot replace files
    // there once it has no CAP_DAC_OVERRIDE.
    let mut s = Service::start(
        "svcdeny",
        None,
        "user = \"nobody\"",
        "[tcp]\nports = \"1\"\n[udp]\nmode = \"off\"\n",
    );
    let status = s.pair.victim.take_child(s.pid).wait().unwrap();
    assert_eq!(status.code(), Some(77), "log:\n{}", s.log());
    let want = format!(
        "nftsentry: state_file {}: uid {NOBODY} (nobody) cannot write it: cannot create files in its directory {}: Permission denied",
        s.var.join("state").display(),
        s.var.display()
    );
    assert!(s.log().contains(&want), "want {want}\nlog:\n{}", s.log());
    assert_eq!(s.manager.recv(Duration::from_millis(200)), None);
    assert!(!table_exists(&s.pair.victim), "table left behind");
}
