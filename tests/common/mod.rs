//! Test hosts in network namespaces that each test makes for itself.
//!
//! Rules (DEVELOPERS.md): traffic only between namespaces a test made, or on
//! their loopback; addresses from 192.0.2.0/24, 198.51.100.0/24 and
//! 2001:db8::/32; names unique so tests run in parallel; everything removed on
//! drop, also when the test panics. These tests need root: they fail, never
//! skip, without it.
#![allow(dead_code)]

pub mod fleet;
pub mod scene;
pub mod spoof;

use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Panics (never skips) when not root: CI is root, so a skip would hide a failure.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root and network namespaces (CI runs as root); run it with sudo"
    );
}

/// Path of the binary under test.
pub fn nftsentry_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nftsentry"))
}

/// Runs a command and returns its output; panics with stderr if it failed.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One network namespace, deleted (with every process still in it) on drop.
pub struct Netns {
    pub name: String,
    children: Vec<Child>,
}

impl Netns {
    /// A fresh namespace with loopback up. `tag` names the test, for debugging.
    pub fn new(tag: &str) -> Netns {
        require_root();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("nfst-{tag}-{}-{n}", std::process::id());
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns {
            name,
            children: Vec::new(),
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS...`, checked.
    pub fn ip(&self, args: &[&str]) -> Output {
        run_ok(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// A command that runs inside the namespace (`ip netns exec`).
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `sh -c script` inside the namespace, checked.
    pub fn sh(&self, script: &str) -> Output {
        run_ok(self.cmd("sh").args(["-c", script]))
    }

    /// `nft ARGS` inside the namespace; returns stdout, panics on failure.
    pub fn nft(&self, args: &[&str]) -> String {
        String::from_utf8(run_ok(self.cmd("nft").args(args)).stdout).unwrap()
    }

    /// Starts a long-running process in the namespace; it is killed (by its
    /// PID) on drop.
    pub fn spawn(&mut self, cmd: &mut Command) -> u32 {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Takes back a child started with `spawn`, for a test that waits on it.
    pub fn take_child(&mut self, pid: u32) -> Child {
        let i = self
            .children
            .iter()
            .position(|c| c.id() == pid)
            .expect("not our child");
        self.children.remove(i)
    }

    /// Runs `f` on a new thread that has entered this namespace (setns is
    /// per thread), so sockets it opens live here.
    pub fn enter<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Anything else still inside was started by this test too (a child of
        // a shell we ran): end it by PID before the namespace goes.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
    }
}

/// A victim and an attacker joined by a veth pair:
/// victim 192.0.2.1/24 and 2001:db8:1::1/64, attacker 192.0.2.2 and 2001:db8:1::2.
pub struct Pair {
    pub victim: Netns,
    pub attacker: Netns,
}

pub const VICTIM4: &str = "192.0.2.1";
pub const ATTACKER4: &str = "192.0.2.2";
pub const VICTIM6: &str = "2001:db8:1::1";
pub const ATTACKER6: &str = "2001:db8:1::2";

impl Pair {
    pub fn new(tag: &str) -> Pair {
        let victim = Netns::new(&format!("{tag}v"));
        let attacker = Netns::new(&format!("{tag}a"));
        victim.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &attacker.name,
        ]);
        for (ns, v4, v6) in [
            (&victim, VICTIM4, VICTIM6),
            (&attacker, ATTACKER4, ATTACKER6),
        ] {
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", "eth0"]);
            ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", "eth0", "nodad"]);
            ns.ip(&["link", "set", "eth0", "up"]);
        }
        Pair { victim, attacker }
    }
}

/// Gives a namespace its own /etc/resolv.conf (bind-mounted by `ip netns
/// exec`), so resolver discovery does not depend on the host.
pub fn set_resolv_conf(ns: &Netns, content: &str) {
    let dir = format!("/etc/netns/{}", ns.name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(format!("{dir}/resolv.conf"), content).unwrap();
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Collapses every run of white space to one space, for comparing nft listings.
pub fn normalize_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A directory removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("nfst-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir { path }
    }

    /// Writes `name` in the directory and returns its path.
    pub fn file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path.join(name);
        std::fs::write(&p, content).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `nftsentry -c CONFIG ARGS...` inside `ns`.
pub fn nftsentry(ns: &Netns, config: &std::path::Path, args: &[&str]) -> Output {
    if config.exists() {
        assert_private_files(config);
    }
    let mut c = ns.cmd(nftsentry_bin());
    c.arg("-c").arg(config).args(args);
    c.output().unwrap()
}

/// Config lines that keep a test's state and history files in its own
/// directory: tests run in parallel, and none may write the host's
/// /var/lib/nftsentry.
pub fn private_files(dir: &std::path::Path) -> String {
    format!(
        "state_file = \"{}\"\nhistory_file = \"{}\"\ncontrol_socket = \"{}\"\n",
        dir.join("state").display(),
        dir.join("history").display(),
        dir.join("control").display()
    )
}

/// Panics unless the config at `config` sets its own state and history
/// files (see `private_files`).
pub fn assert_private_files(config: &std::path::Path) {
    let text = std::fs::read_to_string(config).unwrap();
    for key in ["state_file", "history_file", "control_socket"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(key)),
            "{} does not set {key}: a test daemon would write /var/lib/nftsentry (use common::private_files)",
            config.display()
        );
    }
}

/// Starts `nftsentry -c CONFIG run` in `ns` (stderr to `log`) and waits until
/// its table is in. Returns the daemon's PID.
pub fn start_daemon(ns: &mut Netns, config: &std::path::Path, log: &std::path::Path) -> u32 {
    assert_private_files(config);
    let table_present = |ns: &Netns| {
        ns.cmd("nft")
            .args(["list", "table", "inet", "nftsentry"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let mut c = ns.cmd(nftsentry_bin());
    c.arg("-c")
        .arg(config)
        .arg("run")
        .stderr(std::fs::File::create(log).unwrap());
    let pid = ns.spawn(&mut c);
    assert!(
        wait_until(Duration::from_secs(10), || table_present(ns)),
        "daemon did not install its table; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    pid
}

/// Sends `sig` to a process this test started.
pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
}

/// Is `addr` (an address or a prefix) covered by a ban in `ns`'s table:
/// its own, or its prefix's (read with `ban_prefix6` = 64)? False when the
/// table is not there.
pub fn ban_covers(ns: &Netns, addr: &str) -> bool {
    let want: nftsentry::cidr::Cidr = addr.parse().unwrap();
    ns.enter(move || {
        nftsentry::kernel::nft::NftSocket::open()
            .and_then(|mut s| nftsentry::table::bans::list(&mut s, "nftsentry", 64))
            .unwrap_or_default()
            .iter()
            .any(|b| b.addr.covers(&want))
    })
}
