//! Crashes: `kill -9` in the middle of a flood of bans, and `kill -9` while
//! the state file is being written, again and again. Nothing may be lost: a
//! restart brings back every ban with the time it had left, and the state
//! file is always the old one or the new one, never half of either.
//!
//! Spoofed sources come from 198.18.0.0/15 only (each one banned at its
//! first probe, scan_trigger 0), routed back to the attacker namespace.
mod common;
use common::spoof::{L4, SYN, Spoofer, packet, route_spoofed_range_back};
use common::*;
use nftsentry::kernel::nft::NftSocket;
use nftsentry::table::bans::{self, Ban};
use nix::sys::signal::Signal;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

const FIRST: u32 = 0xC612_0001; // 198.18.0.1
const SOURCES: u32 = 131_070;

fn syn_from(i: u32) -> Vec<u8> {
    let src = IpAddr::V4(Ipv4Addr::from(FIRST + i % SOURCES));
    packet(
        src,
        VICTIM4.parse().unwrap(),
        L4::Tcp { flags: SYN },
        40_000,
        1,
    )
}

/// A victim set up for floods, and its config (every probe bans for 10 min;
/// the storm guard is off, as these floods are forged one-probe sources).
fn victim(tag: &str) -> (Pair, TempDir, PathBuf) {
    let pair = Pair::new(tag);
    route_spoofed_range_back(&pair);
    let dir = TempDir::new(tag);
    let cfg = dir.file(
        "nftsentry.toml",
        &format!(
            "ignore_file = \"\"\n{}ban_time = \"10m\"\nscan_trigger = 0\nset_size = 262144\nstorm_threshold = 0\n\
             [tcp]\nports = \"1\"\n[udp]\nports = \"\"\n",
            private_files(&dir.path)
        ),
    );
    (pair, dir, cfg)
}

/// Starts the daemon with its log in `log` and waits for its start line
/// (the table may be there already: one that a killed daemon left).
fn start(ns: &mut Netns, cfg: &Path, log: &Path) -> u32 {
    assert_private_files(cfg);
    let mut c = ns.cmd(nftsentry_bin());
    c.arg("-c")
        .arg(cfg)
        .arg("run")
        .stderr(std::fs::File::create(log).unwrap());
    let pid = ns.spawn(&mut c);
    assert!(
        wait_until(Duration::from_secs(20), || std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains(" started: table inet nftsentry installed")),
        "daemon did not start; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    pid
}

fn kill9(ns: &mut Netns, pid: u32) {
    signal(pid, Signal::SIGKILL);
    let _ = ns.take_child(pid).wait();
}

fn bans(ns: &Netns) -> Vec<Ban> {
    ns.enter(|| {
        let mut s = NftSocket::open().unwrap();
        bans::list(&mut s, "nftsentry", 64).unwrap()
    })
}

fn ban_count(ns: &Netns) -> u32 {
    ns.enter(|| {
        NftSocket::open()
            .and_then(|mut s| s.set_info("nftsentry", "blocked4"))
            .map(|i| i.count.unwrap_or(0))
            .unwrap_or(0)
    })
}

#[test]
fn kill_9_mid_flood_keeps_every_ban_and_its_time_left() {
    let (mut pair, dir, cfg) = victim("crf");
    let log1 = dir.path.join("log1");
    let pid = start(&mut pair.victim, &cfg, &log1);
    let spoofer = Spoofer::open(&pair.attacker);
    let sender = std::thread::spawn(move || {
        for i in 0..SOURCES {
            spoofer.send_sure(&syn_from(i));
        }
    });
    // The daemon dies with a third of the sources banned, the rest on the way.
    assert!(
        wait_until(Duration::from_secs(30), || ban_count(&pair.victim)
            >= 40_000),
        "the flood banned only {}; log:\n{}",
        ban_count(&pair.victim),
        std::fs::read_to_string(&log1).unwrap_or_default()
    );
    kill9(&mut pair.victim, pid);
    sender.join().unwrap();
    // Each element's time left is read somewhere inside its dump, so the
    // clock runs from the dumps' starts and the slack grows by their length.
    let t_before = Instant::now();
    let before = bans(&pair.victim);
    let dump_before = t_before.elapsed();
    assert!(
        before.len() >= 40_000 && before.len() < SOURCES as usize,
        "{} bans: the kill was not mid-flood",
        before.len()
    );

    let log2 = dir.path.join("log2");
    let pid = start(&mut pair.victim, &cfg, &log2);
    let t_after = Instant::now();
    let after = bans(&pair.victim);
    let slack = 1000 + (dump_before.max(t_after.elapsed())).as_millis() as i64;
    // Every ban is back, with the time it had left (within a second plus the dumps' length), and
    // its length.
    let elapsed = t_after.duration_since(t_before).as_millis() as i64;
    let after: HashMap<IpAddr, &Ban> = after.iter().map(|b| (b.addr.addr(), b)).collect();
    let mut worst = 0i64;
    for b in &before {
        let a = after
            .get(&b.addr.addr())
            .unwrap_or_else(|| panic!("{} lost in the restart", b.addr));
        assert_eq!(a.timeout, b.timeout, "{}", b.addr);
        let left_before = b.expires_in.unwrap().as_millis() as i64;
        let left_after = a.expires_in.unwrap().as_millis() as i64;
        let drift = left_after - (left_before - elapsed);
        worst = worst.max(drift.abs());
        assert!(
            drift.abs() <= slack,
            "{}: drift {drift} ms (slack {slack} ms)",
            b.addr
        );
    }
    assert_eq!(after.len(), before.len());
    let text = std::fs::read_to_string(&log2).unwrap();
    assert!(
        text.contains("bans restored with the time they had left"),
        "{text}"
    );
    // And the state file records them all soon (a change waits at most 5 s).
    let state = dir.path.join("state");
    assert!(
        wait_until(Duration::from_secs(8), || {
            let (entries, problems) = nftsentry::journal::state::parse(
                &std::fs::read(&state).unwrap_or_default(),
                "state",
            );
            problems.is_empty() && before.iter().all(|b| entries.contains_key(&b.addr))
        }),
        "the state file does not hold every ban"
    );
    eprintln!(
        "kill -9 mid-flood: {} bans before, all back after the restart ({elapsed} ms later, \
         worst drift {worst} ms)",
        before.len()
    );
    signal(pid, Signal::SIGTERM);
    assert!(pair.victim.take_child(pid).wait().unwrap().success());
}

/// inotify on a directory, for the moment a file is created in it.
struct Watch(std::os::fd::OwnedFd);

impl Watch {
    fn new(dir: &Path) -> Watch {
        use nix::libc;
        use std::os::fd::FromRawFd;
        use std::os::unix::ffi::OsStrExt;
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        assert!(fd >= 0, "inotify_init1");
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
        let w = unsafe { libc::inotify_add_watch(fd, path.as_ptr(), libc::IN_CREATE) };
        assert!(w >= 0, "inotify_add_watch");
        Watch(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
    }

    /// Forgets the events so far.
    fn drain(&self) {
        let mut buf = [0u8; 4096];
        while nix::unistd::read(&self.0, &mut buf).is_ok_and(|n| n > 0) {}
    }

    /// Waits up to `limit` for a file whose name starts with `prefix` to be
    /// created; true when one was.
    fn created(&self, prefix: &str, limit: Duration) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            if poll(&mut fds, PollTimeout::from(ms)).unwrap_or(0) == 0 {
                continue;
            }
            let Ok(n) = nix::unistd::read(&self.0, &mut buf) else {
                continue;
            };
            // struct inotify_event: wd, mask, cookie, len, then the name.
            let mut off = 0;
            while off + 16 <= n {
                let len = u32::from_ne_bytes(buf[off + 12..off + 16].try_into().unwrap()) as usize;
                let name = &buf[off + 16..(off + 16 + len).min(n)];
                let name = name.split(|&b| b == 0).next().unwrap_or_default();
                if name.starts_with(prefix.as_bytes()) {
                    return true;
                }
                off += 16 + len;
            }
        }
    }
}

fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(".state.tmp."))
        .collect()
}

/// Bans made before the rounds of kills: a state file of this many lines
/// (~20 MB) takes long enough to write that a kill at the creation of the
/// temporary file lands before its rename.
const PRELOAD: u32 = 100_000;

#[test]
fn kill_9_while_the_state_file_is_written_never_leaves_half_a_file() {
    let (mut pair, dir, cfg) = victim("crw");
    let state = dir.path.join("state");
    let spoofer = Arc::new(Spoofer::open(&pair.attacker));
    let entries_now = || {
        nftsentry::journal::state::parse(&std::fs::read(&state).unwrap_or_default(), "state")
            .0
            .len()
    };
    let pid = start(&mut pair.victim, &cfg, &dir.path.join("log0"));
    for i in 0..PRELOAD {
        spoofer.send_sure(&syn_from(i));
    }
    assert!(
        wait_until(Duration::from_secs(30), || entries_now()
            >= PRELOAD as usize),
        "the state file holds {} bans",
        entries_now()
    );
    kill9(&mut pair.victim, pid);
    // Then new sources all along, a few hundred a second, so that every
    // restarted daemon soon has a change to write.
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU32::new(PRELOAD));
    let sender = {
        let (stop, next, spoofer) = (stop.clone(), next.clone(), spoofer.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= SOURCES {
                    break;
                }
                spoofer.send_sure(&syn_from(i));
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let watch = Watch::new(&dir.path);
    let started = Instant::now();
    let (mut rounds, mut mid_write) = (0, 0);
    let mut last_entries = 0;
    while rounds < 30 && mid_write < 6 && started.elapsed() < Duration::from_secs(50) {
        rounds += 1;
        let log = dir.path.join(format!("log{rounds}"));
        let pid = start(&mut pair.victim, &cfg, &log);
        // Its first write, at start, is over by now; at the moment it
        // creates the temporary file for the next one, it dies.
        watch.drain();
        let caught = watch.created(".state.tmp.", Duration::from_secs(10));
        kill9(&mut pair.victim, pid);
        assert!(caught, "round {rounds}: no state write within 10 s");
        if temp_files(&dir.path)
            .iter()
            .any(|n| n.ends_with(&format!(".{pid}")))
        {
            mid_write += 1;
        }
        // The file is whole: every line parses, with its checksum.
        let bytes = std::fs::read(&state).unwrap_or_default();
        let (entries, problems) = nftsentry::journal::state::parse(&bytes, "state");
        assert!(
            problems.is_empty(),
            "round {rounds}: the state file is damaged: {problems:?}"
        );
        assert!(bytes.is_empty() || bytes.ends_with(b"\n"), "round {rounds}");
        // Each complete write holds at least what the one before held.
        assert!(
            entries.len() >= last_entries,
            "round {rounds}: entries went back"
        );
        last_entries = entries.len();
        let log_text = std::fs::read_to_string(&log).unwrap();
        assert!(
            !log_text.contains("ERROR: state file"),
            "round {rounds}:\n{log_text}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    eprintln!(
        "kill -9 at state writes: {rounds} rounds, {mid_write} kills between the temporary \
         file's creation and its rename, {last_entries} bans in the last whole file"
    );
    assert!(
        mid_write >= 3,
        "only {mid_write} of {rounds} kills came while a write was in progress: the test \
         did not reach what it is about"
    );
    // A last start reads the file without complaint, keeps every ban it
    // lists, and clears the temporary files the killed writers left.
    let log = dir.path.join("log-final");
    let pid = start(&mut pair.victim, &cfg, &log);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("ERROR"), "{text}");
    // Each start removes what the last killed writer left (once per round).
    assert!(
        text.contains("left by a write that was cut short (kill -9 or a crash)"),
        "{text}"
    );
    let (entries, _) = nftsentry::journal::state::parse(&std::fs::read(&state).unwrap(), "state");
    let kernel: Vec<IpAddr> = bans(&pair.victim).iter().map(|b| b.addr.addr()).collect();
    for addr in entries.keys() {
        assert!(
            kernel.contains(&addr.addr()),
            "{addr} is in the state file, not in the kernel"
        );
    }
    assert_eq!(temp_files(&dir.path), Vec::<String>::new());
    signal(pid, Signal::SIGTERM);
    assert!(pair.victim.take_child(pid).wait().unwrap().success());
}
