//! Start-up restore at scale: a state file of N live IPv4 and M live IPv6
//! bans (IPv6 addresses from 2001:db8::/32, `ban_prefix6 = 128` so each is
//! one element of blocked6), `nftsentry run` started in a network namespace
//! of its own, the clock stopped when blocked4 and blocked6 hold them all
//! (read with the set's element count, as benches/compare's startup row
//! does), then when the daemon says the bans are restored, then when it has
//! replaced the state file for the first time.
//!
//! Needs root. Nothing leaves the namespace (no traffic at all: loopback
//! only). Nothing here asserts a timing.
//!
//!   cargo bench --bench restore -- [--v4 N] [--v6 N] [--runs K]
//!       [--bin PATH]... [--wrap "perf record -e cpu-clock --call-graph dwarf -o F"]
//!   cargo bench --bench restore -- --kernel-only [--v4 N]   (the kernel's insert alone)
//!   cargo bench --bench restore -- --write-cost N   (the loop's side of a state write; no root)
//!   cargo bench --bench restore -- --writer-cost N [--writes K]   (the writer thread's side; no root)
//!   cargo bench --bench restore -- --parse-only [--v4 N] [--v6 N]   (the parse, sorted and in journal order; no root)
//!
//! Several `--bin` are measured in turn, run by run (A B A B ...), so that a
//! comparison of two builds sees the same machine load.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nftsentry::config::Proto;
use nftsentry::journal::state::{Applied, Entry};
use nftsentry::kernel::nft::NftSocket;

/// IPv4 bans from 240.0.0.0/4 (reserved: no packet is ever sent from or to them).
const V4_BASE: u32 = 0xF000_0000;

struct Args {
    v4: u32,
    v6: u32,
    runs: u32,
    bins: Vec<PathBuf>,
    wrap: Option<String>,
    /// Only the kernel's part: the elements committed into a set made by
    /// nft, with and without `counter`.
    kernel_only: bool,
    /// Only the loop's side of state file writes with this many bans.
    write_cost: Option<u32>,
    /// Only the writer thread's side of state file writes with this many
    /// bans, `writes` writes.
    writer_cost: Option<u32>,
    writes: u32,
    /// Only the parse of the state file, in this process.
    parse_only: bool,
}

fn args() -> Args {
    let mut a = Args {
        v4: 500_000,
        v6: 500_000,
        runs: 1,
        bins: Vec::new(),
        wrap: None,
        kernel_only: false,
        write_cost: None,
        writer_cost: None,
        writes: 150,
        parse_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--v4" => a.v4 = val().parse().expect("--v4 N"),
            "--v6" => a.v6 = val().parse().expect("--v6 N"),
            "--runs" => a.runs = val().parse().expect("--runs K"),
            "--bin" => a.bins.push(PathBuf::from(val())),
            "--wrap" => a.wrap = Some(val()),
            "--kernel-only" => a.kernel_only = true,
            "--write-cost" => a.write_cost = Some(val().parse().expect("--write-cost N")),
            "--writer-cost" => a.writer_cost = Some(val().parse().expect("--writer-cost N")),
            "--writes" => a.writes = val().parse().expect("--writes K"),
            "--parse-only" => a.parse_only = true,
            // cargo bench passes --bench.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    if a.bins.is_empty() {
        a.bins.push(nftsentry_bin());
    }
    a
}

fn state_text(v4: u32, v6: u32) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let entry = |i: u32, addr: IpAddr| Entry {
        addr: nftsentry::cidr::Cidr::host(addr),
        scan: "syn".into(),
        proto: Some(Proto::Tcp),
        mode: "stcp".into(),
        port: 1,
        banned_at: now_ms - u64::from(i % 3600) * 1000,
        expires_at: now_ms + 86_400_000 - u64::from(i % 3600) * 1000,
        length: 86_400_000,
        repeat: 1,
        evidence: nftsentry::strength::Strength::Forgeable,
        applied: Applied {
            set: true,
            ..Applied::default()
        },
    };
    let mut entries: Vec<Entry> = (0..v4)
        .map(|i| entry(i, IpAddr::V4(Ipv4Addr::from(V4_BASE + i))))
        .collect();
    entries.extend((0..v6).map(|i| {
        let a = (0x2001_0db8u128 << 96) | (u128::from(i) << 16) | 1;
        entry(i, IpAddr::V6(Ipv6Addr::from(a)))
    }));
    nftsentry::journal::state::render(&entries)
}

fn counts(s: &mut NftSocket) -> (u32, u32) {
    let n = |s: &mut NftSocket, set: &str| {
        s.set_info("nftsentry", set)
            .ok()
            .and_then(|i| i.count)
            .unwrap_or(0)
    };
    (n(s, "blocked4"), n(s, "blocked6"))
}

/// utime + stime of `pid` in seconds.
fn cpu_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = 100.0;
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After the comm: state is field 0, utime 11, stime 12.
    (t(11) + t(12)) / tick
}

/// The nftsentry process: `pid` itself, or under a wrapper its child.
fn daemon_pid(pid: u32, wrapped: bool) -> u32 {
    if !wrapped {
        return pid;
    }
    let kids =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    kids.split_whitespace()
        .next()
        .and_then(|k| k.parse().ok())
        .unwrap_or(pid)
}

struct Figures {
    sets_full: Duration,
    restored_line: Option<Duration>,
    first_write: Option<Duration>,
    cpu: f64,
    /// VmRSS and VmHWM (peak) in MiB once settled.
    rss: (u64, u64),
}

fn rss_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (kb("VmRSS:") / 1024, kb("VmHWM:") / 1024)
}

fn one_run(a: &Args, bin: &Path, text: &str) -> Figures {
    let mut ns = Netns::new("restore");
    let dir = TempDir::new("restore");
    let cfg = dir.file(
        "nftsentry.toml",
        &format!(
            "{}ignore_file = \"\"\nban_time = \"1d\"\nset_size = 1048576\nban_prefix6 = 128\n\
             max_tracked_sources = 1000000\n[tcp]\nports = \"1\"\n[udp]\nports = \"\"\n",
            private_files(&dir.path)
        ),
    );
    let state = dir.path.join("state");
    std::fs::write(&state, text).unwrap();
    let inode = std::fs::metadata(&state).unwrap().ino();
    let log = dir.path.join("log");
    let mut c = match &a.wrap {
        Some(w) => {
            let mut words = w.split_whitespace();
            let mut c = ns.cmd(words.next().unwrap());
            c.args(words).arg(bin);
            c
        }
        None => ns.cmd(bin),
    };
    c.arg("-c")
        .arg(&cfg)
        .arg("run")
        .stderr(File::create(&log).unwrap());
    let start = Instant::now();
    let pid = ns.spawn(&mut c);
    let (want4, want6) = (a.v4, a.v6);
    let sets_full = ns.enter(move || {
        let mut s = NftSocket::open().expect("nft socket");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (n4, n6) = counts(&mut s);
            if n4 >= want4 && n6 >= want6 {
                return start.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "bans not restored: {n4} IPv4, {n6} IPv6"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let mut restored_line = None;
    let mut first_write = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while (restored_line.is_none() || first_write.is_none()) && Instant::now() < deadline {
        if restored_line.is_none()
            && std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("bans restored with the time they had left")
        {
            restored_line = Some(start.elapsed());
        }
        if first_write.is_none() && std::fs::metadata(&state).is_ok_and(|m| m.ino() != inode) {
            first_write = Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // Settled: what the start-up cost the daemon.
    std::thread::sleep(Duration::from_millis(200));
    let daemon = daemon_pid(pid, a.wrap.is_some());
    let cpu = cpu_of(daemon);
    let rss = rss_of(daemon);
    signal(daemon, nix::sys::signal::Signal::SIGTERM);
    let mut child = ns.take_child(pid);
    let _ = child.wait();
    Figures {
        sets_full,
        restored_line,
        first_write,
        cpu,
        rss,
    }
}

/// The kernel's insert alone: `n` IPv4 elements with timeouts, into a set
/// like blocked4 (with and without `counter`, with and without `size`), in
/// one transaction or in transactions of 50,000.
fn kernel_only(n: u32) {
    use nftsentry::kernel::nft::{Batch, Element, FAMILY};
    for (decl, per) in [
        (" size 1048576;", n),
        (" size 1048576; counter;", n),
        (" counter;", n),
        (" size 1048576; counter;", 50_000),
    ] {
        let ns = Netns::new("restore-k");
        ns.nft(&["add", "table", "inet", "t"]);
        ns.nft(&[&format!(
            "add set inet t s {{ type ipv4_addr; flags timeout;{decl} }}"
        )]);
        let took = ns.enter(move || {
            let elems: Vec<Element> = (0..n)
                .map(|i| Element {
                    key: (V4_BASE + i).to_be_bytes().to_vec(),
                    timeout: Some(Duration::from_secs(86_400)),
                    expiration: Some(Duration::from_secs(80_000)),
                    interval_end: false,
                    counter: None,
                })
                .collect();
            let batches: Vec<Batch> = elems
                .chunks(per as usize)
                .map(|c| {
                    let mut b = Batch::new();
                    b.add_elements(FAMILY, "t", "s", None, c);
                    b
                })
                .collect();
            let mut s = NftSocket::open().expect("nft socket");
            let start = Instant::now();
            for b in &batches {
                s.commit(b).expect("commit");
            }
            start.elapsed()
        });
        println!(
            "kernel: {n} elements, set{decl}, {per} a transaction: {:.0} ms",
            took.as_secs_f64() * 1e3
        );
    }
}

/// What a state file write costs the event loop with `n` bans: writes of
/// 1,000 changed entries each, the time spent in `StateFile::tick` on this
/// thread (the writer thread renders and writes; each write is waited for
/// before the next one, off the clock).
fn write_cost(n: u32) {
    use nftsentry::journal::state_file::StateFile;
    let dir = TempDir::new("restore-wc");
    let entries = bench_entries(n);
    let get = |a: &nftsentry::cidr::Cidr| entries.get(a);
    let mut f = StateFile::new(dir.path.join("state"));
    f.start_writer();
    let mut now = Instant::now();
    f.changed_all(now);
    f.flush(entries.values(), get);
    let keys: Vec<_> = entries.keys().copied().collect();
    let (mut total, mut worst) = (Duration::ZERO, Duration::ZERO);
    const ROUNDS: usize = 10;
    for round in 0..ROUNDS {
        for a in keys.iter().skip(round * 1000).take(1000) {
            f.changed(*a, now);
        }
        now += Duration::from_secs(10);
        let t = Instant::now();
        f.tick(now, entries.values(), get);
        let d = t.elapsed();
        total += d;
        worst = worst.max(d);
        f.flush(entries.values(), get);
    }
    println!(
        "state file, {n} bans, writes of 1000 changes: the loop's time per write mean {:.2} ms, max {:.2} ms",
        total.as_secs_f64() * 1e3 / ROUNDS as f64,
        worst.as_secs_f64() * 1e3
    );
}

/// The thread named `name` of this process: its on-CPU time (user and
/// system, from schedstat, in ns) and the bytes it passed to write(2).
fn thread_cost(name: &str) -> Option<(u64, u64)> {
    for t in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let sched = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
        let ns = sched.split_whitespace().next()?.parse().ok()?;
        let io = std::fs::read_to_string(t.path().join("io")).ok()?;
        let wchar = io
            .lines()
            .find_map(|l| l.strip_prefix("wchar: "))?
            .trim()
            .parse()
            .ok()?;
        return Some((ns, wchar));
    }
    None
}

/// What state file writes cost the writer thread with `n` bans: `k` writes
/// of 1,000 changes each (a third of them new bans, a third changed ones,
/// a third gone), each waited for; its CPU time (user and system, the
/// kernel's copy into the page cache included) and the bytes it wrote, per
/// write, with the file's size at the end and how many times the file was
/// replaced (its inode changed).
fn writer_cost(n: u32, k: u32) {
    use nftsentry::journal::state_file::StateFile;
    let dir = TempDir::new("restore-wr");
    let path = dir.path.join("state");
    let mut entries = bench_entries(n);
    let mut f = StateFile::new(path.clone());
    f.start_writer();
    let mut now = Instant::now();
    f.changed_all(now);
    f.flush(entries.values(), |a| entries.get(a));
    let (cpu0, w0) = thread_cost("state-writer").expect("the writer thread");
    let mut inode = std::fs::metadata(&path).unwrap().ino();
    let mut replaced = 0;
    let mut next = n;
    let mut oldest = 0;
    for round in 0..k {
        // New bans, changed ones (a ban that ended), gone ones.
        for _ in 0..334 {
            let e = bench_entry(next);
            f.changed(e.addr, now);
            entries.insert(e.addr, e);
            next += 1;
        }
        for i in 0..333 {
            let a = bench_addr(oldest + 333 + i);
            if let Some(e) = entries.get_mut(&a) {
                e.applied = Applied::default();
                e.expires_at = 1_700_000_000_000 + u64::from(round);
                f.changed(a, now);
            }
        }
        for i in 0..333 {
            let a = bench_addr(oldest + i);
            entries.remove(&a);
            f.changed(a, now);
        }
        oldest += 666;
        now += Duration::from_secs(10);
        f.flush(entries.values(), |a| entries.get(a));
        let ino = std::fs::metadata(&path).unwrap().ino();
        if ino != inode {
            replaced += 1;
            inode = ino;
        }
    }
    let (cpu1, w1) = thread_cost("state-writer").expect("the writer thread");
    println!(
        "state writer, {n} bans, {k} writes of 1000 changes: the writer thread's CPU per write {:.2} ms, bytes written per write {:.0} KB, file {:.1} MB at the end ({} live bans), replaced {replaced} times",
        (cpu1 - cpu0) as f64 / 1e6 / f64::from(k),
        (w1 - w0) as f64 / 1e3 / f64::from(k),
        std::fs::metadata(&path).unwrap().len() as f64 / 1e6,
        entries.len()
    );
}

/// The parse of `text` alone, in this process: best of three.
fn parse_cost(what: &str, text: &str) {
    let mut best = Duration::MAX;
    let mut n = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let (entries, problems) = nftsentry::journal::state::parse(text.as_bytes(), "state");
        best = best.min(t.elapsed());
        assert!(
            problems.is_empty(),
            "{:?}",
            &problems[..problems.len().min(3)]
        );
        n = entries.len();
    }
    println!(
        "parse, {what}: {n} entries, {:.0} ms",
        best.as_secs_f64() * 1e3
    );
}

fn bench_addr(i: u32) -> nftsentry::cidr::Cidr {
    nftsentry::cidr::Cidr::host(IpAddr::V4(Ipv4Addr::from(V4_BASE + i)))
}

fn bench_entry(i: u32) -> Entry {
    Entry {
        addr: bench_addr(i),
        scan: "syn".into(),
        proto: Some(Proto::Tcp),
        mode: "stcp".into(),
        port: 1,
        banned_at: 1_700_000_000_000,
        expires_at: 1_700_086_400_000,
        length: 86_400_000,
        repeat: 1,
        evidence: nftsentry::strength::Strength::Forgeable,
        applied: Applied {
            set: true,
            ..Applied::default()
        },
    }
}

fn bench_entries(n: u32) -> std::collections::BTreeMap<nftsentry::cidr::Cidr, Entry> {
    (0..n).map(|i| (bench_addr(i), bench_entry(i))).collect()
}

fn main() {
    let a = args();
    if let Some(n) = a.write_cost {
        write_cost(n);
        return;
    }
    if let Some(n) = a.writer_cost {
        writer_cost(n, a.writes);
        return;
    }
    if a.parse_only {
        let text = state_text(a.v4, a.v6);
        parse_cost("sorted (a rewritten file)", &text);
        // The same lines in the order a journal of new bans has them
        // (shuffled by a hash of each line).
        let (header, body) = text.split_at(nftsentry::journal::state::HEADER.len());
        let mut lines: Vec<&str> = body.split_inclusive('\n').collect();
        lines.sort_by_cached_key(|l| {
            l.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            })
        });
        parse_cost(
            "in journal order (appended)",
            &(header.to_string() + &lines.concat()),
        );
        return;
    }
    require_root();
    if a.kernel_only {
        kernel_only(a.v4);
        return;
    }
    let text = state_text(a.v4, a.v6);
    // The parse alone, in this process (what the daemon does first).
    let t = Instant::now();
    let (entries, problems) = nftsentry::journal::state::parse(text.as_bytes(), "state");
    println!(
        "parse in-process: {} entries, {} problems, {:.0} ms",
        entries.len(),
        problems.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    drop(entries);
    println!(
        "restore: {} IPv4 + {} IPv6 live bans, state file {} MB",
        a.v4,
        a.v6,
        text.len() / 1_000_000
    );
    let ms = |d: Option<Duration>| {
        d.map_or("-".to_string(), |d| format!("{:.0}", d.as_secs_f64() * 1e3))
    };
    for run in 0..a.runs {
        for bin in &a.bins {
            let f = one_run(&a, bin, &text);
            println!(
                "run {run} {}: sets full {} ms, restored line {} ms, first state write {} ms, daemon CPU {:.2} s, RSS {} MiB (peak {} MiB)",
                bin.display(),
                ms(Some(f.sets_full)),
                ms(f.restored_line),
                ms(f.first_write),
                f.cpu,
                f.rss.0,
                f.rss.1
            );
        }
    }
}
