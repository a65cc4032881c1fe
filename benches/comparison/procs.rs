//! The processes a run starts and measures: nftsentry (this commit's build
//! or the baseline binary), PortSentry 1.2, perf; their CPU and memory.

use crate::common::*;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// An nftsentry binary a row runs: this commit's build or `--baseline`.
#[derive(Clone)]
pub struct Bin {
    pub path: PathBuf,
    /// "nftsentry" (this commit) or "baseline": names perf files and logs.
    pub who: &'static str,
}

impl Bin {
    pub fn this() -> Bin {
        Bin {
            path: nftsentry_bin(),
            who: "nftsentry",
        }
    }

    /// What `--version` prints.
    pub fn version(&self) -> String {
        Command::new(&self.path)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|e| format!("cannot run: {e}"))
    }
}

fn clk_tck() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64
}

/// CPU time of process `pid`, every thread of it, plus its reaped
/// children (cutime + cstime: PortSentry's KILL_ROUTE commands run as
/// children). /proc/PID/schedstat counts the main thread alone, so the
/// threads' schedstat (ns) are summed; /proc/PID/stat's utime + stime (in
/// clock ticks) also hold threads that have ended, so the larger of the
/// two counts.
pub fn cpu_of(pid: u32) -> Duration {
    let threads: u64 = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| {
            std::fs::read_to_string(t.path().join("schedstat"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" that ends the command name; utime, stime,
    // cutime, cstime are fields 14 to 17 of the whole line.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: &[usize]| -> Duration {
        let n: u64 = i
            .iter()
            .filter_map(|&i| f.get(i)?.parse::<u64>().ok())
            .sum();
        Duration::from_secs_f64(n as f64 / clk_tck())
    };
    Duration::from_nanos(threads).max(ticks(&[11, 12])) + ticks(&[13, 14])
}

/// CPU time of the main thread of `pid` alone (how this benchmark counted
/// before it summed the threads), for the notes.
pub fn main_thread_cpu(pid: u32) -> Duration {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

/// Resident set size of `pid` ("self" for this process) in MiB.
pub fn rss_mib(pid: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Waits until `pid` has used no CPU for 500 ms (at most `limit`); returns
/// when it last did (sampled every 10 ms, so to within 10 ms).
pub fn wait_idle(pid: u32, limit: Duration) -> Instant {
    wait_idle_progress(pid, limit, || 0).0
}

/// `wait_idle`, and also when `progress` (sampled at the same pace) last
/// grew: when the work was done, which housekeeping after it (the state
/// file written a while after a flood) does not stretch. (idle, done).
pub fn wait_idle_progress(
    pid: u32,
    limit: Duration,
    progress: impl FnMut() -> u64,
) -> (Instant, Instant) {
    wait_quiet_progress(pid, Duration::from_millis(500), limit, progress)
}

/// `wait_idle_progress` with `quiet` as the time without CPU that counts
/// as idle (longer than a throttled write's wait, to count that write).
pub fn wait_quiet_progress(
    pid: u32,
    quiet: Duration,
    limit: Duration,
    mut progress: impl FnMut() -> u64,
) -> (Instant, Instant) {
    let deadline = Instant::now() + limit;
    let mut last = cpu_of(pid);
    let mut last_busy = Instant::now();
    let mut seen = progress();
    let mut done = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        let p = progress();
        if p != seen {
            seen = p;
            done = Instant::now();
        }
        let now = cpu_of(pid);
        if now != last {
            last = now;
            last_busy = Instant::now();
        } else if last_busy.elapsed() >= quiet {
            break;
        }
    }
    (last_busy, done.min(last_busy))
}

/// The size of a file, 0 when missing: a log's progress.
pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Gone, or a zombie waiting for its parent.
pub fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z')),
    }
}

pub fn count(hay: &[u8], needle: &[u8]) -> u64 {
    hay.windows(needle.len()).filter(|w| *w == needle).count() as u64
}

/// A running `nftsentry run` in the victim.
pub struct Nftsentry {
    pub pid: u32,
    pub log: PathBuf,
    _dir: TempDir,
}

/// The storm guard is off: these rows measure how many bans the daemon can
/// make, from forged one-probe sources (PortSentry has no guard either).
pub fn nftsentry_config(scan_trigger: u32, extra_tcp: &str) -> String {
    format!(
        "ignore_file = \"\"\nban_time = \"1h\"\nset_size = 1048576\nmax_tracked_sources = 1000000\nstorm_threshold = 0\n\
         scan_trigger = {scan_trigger}\n[tcp]\nports = \"{}\"\n{extra_tcp}[udp]\nports = \"\"\n",
        crate::net::PROBE_PORT
    )
}

fn table_present(ns: &Netns) -> bool {
    ns.cmd("nft")
        .args(["list", "table", "inet", "nftsentry"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `bin` in `ns`, under NFTSENTRY_BENCH_WRAP when set (e.g. "valgrind
/// --tool=callgrind --callgrind-out-file=/tmp/cg.%p", or "perf record -e
/// cpu-clock --call-graph dwarf -o /tmp/restore.perf.data" for a restore;
/// the figures of a row then are the wrapper's: CPU and RSS of perf).
pub fn daemon_cmd(ns: &Netns, bin: &Bin) -> Command {
    match std::env::var("NFTSENTRY_BENCH_WRAP") {
        Ok(wrap) if !wrap.trim().is_empty() => {
            let mut words = wrap.split_whitespace();
            let mut c = ns.cmd(words.next().unwrap());
            c.args(words).arg(&bin.path);
            c
        }
        _ => ns.cmd(&bin.path),
    }
}

/// `bin -c cfg run` in `ns` (under NFTSENTRY_BENCH_WRAP when set), its
/// stderr to `log`: the daemon's PID.
pub fn spawn_daemon(ns: &mut Netns, bin: &Bin, cfg: &Path, log: &Path) -> u32 {
    let mut c = daemon_cmd(ns, bin);
    c.arg("-c")
        .arg(cfg)
        .arg("run")
        .stderr(File::create(log).unwrap());
    ns.spawn(&mut c)
}

/// Starts `bin run` in the victim with `config` (after its own state,
/// history and control socket lines) and waits until its table is in;
/// the error says why not (a baseline may refuse a newer config key).
/// Under NFTSENTRY_BENCH_WRAP when set (`daemon_cmd`).
pub fn start_nftsentry(p: &mut Pair, config: &str, bin: &Bin) -> Result<Nftsentry, String> {
    start_nftsentry_with(p, config, bin, None)
}

/// `start_nftsentry`, with `state` as its state file's text when given
/// (bans it restores at start).
pub fn start_nftsentry_with(
    p: &mut Pair,
    config: &str,
    bin: &Bin,
    state: Option<&str>,
) -> Result<Nftsentry, String> {
    let dir = TempDir::new("cmp-nft");
    let cfg = dir.file(
        "nftsentry.toml",
        &format!("{}{config}", private_files(&dir.path)),
    );
    if let Some(text) = state {
        dir.file("state", text);
    }
    let log = dir.path.join("log");
    let pid = spawn_daemon(&mut p.victim, bin, &cfg, &log);
    let d = Nftsentry {
        pid,
        log,
        _dir: dir,
    };
    if wait_until(Duration::from_secs(60), || {
        table_present(&p.victim) || exited(pid)
    }) && !exited(pid)
    {
        Ok(d)
    } else {
        Err(format!(
            "{} ({}) did not install its table; log:\n{}",
            bin.who,
            bin.path.display(),
            d.log_tail()
        ))
    }
}

impl Drop for Nftsentry {
    /// SIGTERM and wait, so the daemon exits its own way (and a profiler
    /// wrapped around it writes its data) before the namespace goes.
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        wait_until(Duration::from_secs(60), || exited(self.pid));
    }
}

impl Nftsentry {
    /// Probes the daemon decoded and reported (one alert line each).
    pub fn alerts(&self) -> u64 {
        let s = std::fs::read(&self.log).unwrap_or_default();
        count(&s, b"scan from host: ")
    }
    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }
}

/// Elements in `set` of our table in `ns` (0 when it cannot be read).
pub fn set_count(ns: &Netns, set: &'static str) -> u32 {
    ns.enter(move || {
        nftsentry::kernel::nft::NftSocket::open()
            .and_then(|mut s| s.set_info("nftsentry", set))
            .map(|i| i.count.unwrap_or(0))
    })
    .unwrap_or(0)
}

/// `perf record` (cpu-clock samples, kernel and user) attached to `pid`
/// into `file`, for `--profile DIR` runs; ended with SIGINT so it writes.
pub struct Perf(std::process::Child);

impl Perf {
    pub fn attach(pid: u32, file: Option<PathBuf>) -> Option<Perf> {
        let file = file?;
        let child = Command::new("perf")
            .args([
                "record",
                "-e",
                "cpu-clock",
                // DWARF unwinding: the release build has no frame pointers,
                // and -g alone loses the callers of libc and the kernel.
                "--call-graph",
                "dwarf,32768",
                "-p",
                &pid.to_string(),
                "-o",
            ])
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| eprintln!("--profile: cannot run perf: {e}"))
            .ok()?;
        // perf needs a moment to attach before the flood starts.
        std::thread::sleep(Duration::from_millis(500));
        Some(Perf(child))
    }
    pub fn finish(mut self) {
        signal(self.0.id(), nix::sys::signal::Signal::SIGINT);
        let _ = self.0.wait();
    }
}

/// Does this build's config accept `text`? (How rows that need features
/// built on other branches switch themselves on.)
pub fn config_accepted(text: &str) -> bool {
    let dir = TempDir::new("cmp-check");
    let cfg = dir.file("nftsentry.toml", text);
    Command::new(nftsentry_bin())
        .arg("-c")
        .arg(&cfg)
        .arg("check")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// PortSentry 1.2 daemonized in the victim namespace.
pub struct Portsentry {
    pub pid: u32,
    dir: TempDir,
}

pub fn start_portsentry(p: &Pair, bin: &Path, mode: &str, trigger: u32) -> Portsentry {
    use crate::net::PROBE_PORT;
    let dir = TempDir::new("cmp-ps");
    let d = dir.path.display().to_string();
    // Debian's portsentry.conf, trimmed to what these runs use; KILL_ROUTE is
    // Debian's default, and its effect (a reject route) is what we watch.
    let conf = format!(
        "TCP_PORTS=\"{PROBE_PORT},11,15,79,111,119,143,540,635,1080,1524,2000\"\n\
         UDP_PORTS=\"1,7,9,69,161,162,513,635,640,641,700\"\n\
         ADVANCED_PORTS_TCP=\"1024\"\nADVANCED_PORTS_UDP=\"1024\"\n\
         ADVANCED_EXCLUDE_TCP=\"113,139\"\nADVANCED_EXCLUDE_UDP=\"520,138,137,67\"\n\
         IGNORE_FILE=\"{d}/portsentry.ignore\"\nHISTORY_FILE=\"{d}/portsentry.history\"\n\
         BLOCKED_FILE=\"{d}/portsentry.blocked\"\nRESOLVE_HOST=\"0\"\n\
         BLOCK_UDP=\"1\"\nBLOCK_TCP=\"1\"\n\
         KILL_ROUTE=\"/sbin/route add -host $TARGET$ reject\"\n\
         SCAN_TRIGGER=\"{trigger}\"\n"
    );
    dir.file("portsentry.conf", &conf);
    // Debian's portsentry.ignore.static plus the victim's own address.
    dir.file("portsentry.ignore", "127.0.0.1/32\n0.0.0.0\n192.0.2.1\n");
    let script = format!(
        "set -e; mkdir -p {d}/ovl; mount -t tmpfs tmpfs {d}/ovl; mkdir {d}/ovl/up {d}/ovl/work; \
         mount -t overlay overlay -o lowerdir=/etc,upperdir={d}/ovl/up,workdir={d}/ovl/work /etc; \
         mkdir -p /etc/portsentry; cp {d}/portsentry.conf /etc/portsentry/portsentry.conf; \
         exec {} {mode}",
        bin.display()
    );
    // `ip netns exec` gives the shell its own mount namespace, so the
    // overlay is seen only by this shell and the daemon it becomes.
    run_ok(p.victim.cmd("sh").args(["-c", &script]));
    let mut pid = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            pid = ns_pids(&p.victim).into_iter().find(|&q| {
                std::fs::read_to_string(format!("/proc/{q}/comm"))
                    .is_ok_and(|c| c.trim() == "portsentry")
            });
            // Ready once its raw socket is open.
            pid.is_some_and(|q| raw_socket(q).is_some())
        }),
        "portsentry {mode} did not start in the victim namespace"
    );
    Portsentry {
        pid: pid.unwrap(),
        dir,
    }
}

impl Portsentry {
    /// Hosts it blocked (one history line each).
    pub fn history(&self) -> PathBuf {
        self.dir.path.join("portsentry.history")
    }
    pub fn blocked(&self) -> u64 {
        let s = std::fs::read(self.history()).unwrap_or_default();
        count(&s, b" Blocked")
    }
    pub fn stop(self) {
        signal(self.pid, nix::sys::signal::Signal::SIGTERM);
        wait_until(Duration::from_secs(5), || exited(self.pid));
    }
}

fn ns_pids(ns: &Netns) -> Vec<u32> {
    let out = Command::new("ip")
        .args(["netns", "pids", &ns.name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// (rx_queue bytes, drops) of the raw TCP socket in `pid`'s namespace.
pub fn raw_socket(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/net/raw")).ok()?;
    s.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let rx = u64::from_str_radix(f.get(4)?.split(':').nth(1)?, 16).ok()?;
        let drops = f.last()?.parse().ok()?;
        Some((rx, drops))
    })
}
