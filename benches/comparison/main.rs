//! nftsentry beside PortSentry 1.2 (Debian's build), end to end, in one run:
//! one table, each row both figures and how many times better nftsentry is;
//! with `--baseline PATH` a second table puts this commit's nftsentry beside
//! another nftsentry binary (the previous commit's build), every nftsentry
//! row measured for both in the same run, one right after the other.
//!
//! Everything happens between network namespaces this program makes and
//! removes (victim 192.0.2.1, attacker 192.0.2.2, joined by veth). Spoofed
//! probes come only from 198.18.0.0/15, which the victim routes back to the
//! attacker, where forwarding is off: nothing leaves the namespaces. Every
//! flood is bounded in packets and seconds. PortSentry runs only inside the
//! victim namespace, in a private mount namespace whose /etc is an overlay
//! (so its fixed /etc/portsentry/portsentry.conf is ours and the host's /etc
//! is untouched); it daemonizes, and is found with `ip netns pids` and ended
//! by that PID.
//!
//! Run by benches/compare (which installs iptables, unpacks portsentry,
//! builds this and, given a git revision as baseline, that revision), as root:
//!   cargo bench --bench compare -- --portsentry PATH [--only ROW,...] [--quick]
//!       [--senders N] [--baseline PATH [--baseline-commit REV]] [--profile DIR]
//! Rows: latency, flood (flood-bans, flood-held: onto 100k restored bans, flood-nobans), bulk, forged-scan (a
//! forged flood larger than the set while a real nmap scan runs), storm
//! (forged sources banned per minute), drop, startup (startup = 100k bans,
//! startup-1m = 1M bans of both families), restart (100k bans with
//! hosts.deny), v6rotate (an IPv6 scanner rotating inside one /64), rss.
//! Profiling: --profile DIR attaches `perf record` to each daemon during the
//! floods (flood-bans and flood-nobans); NFTSENTRY_BENCH_WRAP="valgrind --tool=callgrind ..." runs
//! nftsentry under a wrapper. Nothing here asserts a timing; a measurement
//! that cannot be made prints why in its row.
//!
//! One module per kind of row; `net` (packets, senders, monitors), `procs`
//! (the daemons and their CPU and memory) and `table` serve them all.

#[path = "../../tests/common/mod.rs"]
mod common;

mod flood;
mod forged;
mod kernel_paths;
mod latency;
mod memory;
mod net;
mod procs;
mod restore;
mod table;
mod v6rotate;

use procs::Bin;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use table::Report;

#[global_allocator]
static ALLOC: memory::Counting = memory::Counting;

pub struct Args {
    portsentry: PathBuf,
    probes: u32,
    flood_bans: u64,
    flood_decode: u64,
    /// Sender threads of the floods and the drop path.
    senders: usize,
    only: Vec<String>,
    /// `--profile DIR`: perf record of each daemon during the floods.
    profile: Option<PathBuf>,
    /// This commit's nftsentry, then the baseline's if given.
    bins: Vec<Bin>,
    baseline_commit: Option<String>,
}

impl Args {
    /// The nftsentry binaries each row runs: this commit's first.
    pub fn bins(&self) -> &[Bin] {
        &self.bins
    }

    /// `--profile DIR`: where a row's perf data of `who` goes.
    pub fn profile_file(&self, who: &str, row: &str) -> Option<PathBuf> {
        self.profile
            .as_ref()
            .map(|d| d.join(format!("{who}-{row}.perf.data")))
    }
}

fn parse_args() -> Args {
    let mut a = Args {
        portsentry: PathBuf::new(),
        probes: 10_000,
        flood_bans: 100_000,
        flood_decode: 1_000_000,
        senders: 2,
        only: Vec::new(),
        profile: None,
        bins: vec![Bin::this()],
        baseline_commit: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--portsentry" => a.portsentry = it.next().expect("--portsentry PATH").into(),
            "--only" => {
                a.only = it
                    .next()
                    .expect("--only ROWS")
                    .split(',')
                    .map(String::from)
                    .collect()
            }
            "--quick" => {
                a.probes = 1000;
                a.flood_bans = 20_000;
                a.flood_decode = 200_000;
            }
            "--senders" => {
                a.senders = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| (1..=16).contains(n))
                    .expect("--senders N (1 to 16)")
            }
            "--baseline" => {
                let path: PathBuf = it.next().expect("--baseline PATH").into();
                assert!(
                    path.is_file(),
                    "--baseline {}: not a file (benches/compare builds a git revision given instead)",
                    path.display()
                );
                a.bins.push(Bin {
                    path: std::fs::canonicalize(path).unwrap(),
                    who: "baseline",
                });
            }
            "--baseline-commit" => a.baseline_commit = it.next(),
            "--profile" => a.profile = Some(it.next().expect("--profile DIR").into()),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// This checkout's commit, if it is one (benches/compare runs from it).
fn this_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()?;
    let rev = String::from_utf8(out.stdout).ok()?.trim().to_string();
    let dirty = !Command::new("git")
        .args(["diff", "--quiet", "HEAD"])
        .status()
        .is_ok_and(|s| s.success());
    (!rev.is_empty()).then(|| {
        if dirty {
            format!("{rev} with uncommitted changes")
        } else {
            rev
        }
    })
}

fn main() {
    if std::env::args().any(|a| a == memory::TRACKER_CHILD) {
        return memory::tracker_child();
    }
    if std::env::args().any(|a| a == memory::DETECTOR_CHILD) {
        return memory::detector_child();
    }
    let a = parse_args();
    if !a.portsentry.is_file() {
        // A plain `cargo bench` gets here: this one needs the wrapper script,
        // which fetches PortSentry. Not a failure of the other benches.
        eprintln!(
            "compare: no --portsentry PATH given; run benches/compare as root (it fetches \
             Debian's portsentry and passes it)"
        );
        return;
    }
    common::require_root();
    if let Some(dir) = &a.profile {
        std::fs::create_dir_all(dir).expect("--profile DIR");
    }
    let this = &a.bins[0];
    let this_desc = format!(
        "{} (`{}`, commit {})",
        this.path.display(),
        this.version(),
        this_commit().unwrap_or_else(|| "unknown".into())
    );
    let base_desc = a.bins.get(1).map(|b| {
        format!(
            "{} (`{}`, commit {})",
            b.path.display(),
            b.version(),
            a.baseline_commit.as_deref().unwrap_or("unknown")
        )
    });
    let mut t = Report::new(base_desc.as_ref().map(|d| format!("baseline: {d}")));
    // A row name selects itself and its sub-rows ("flood" = "flood-bans" and
    // "flood-nobans").
    let want = |r: &str| {
        a.only.is_empty()
            || a.only
                .iter()
                .any(|o| o == r || r.starts_with(&format!("{o}-")))
    };
    let started = Instant::now();
    let mut phases: HashMap<&str, Duration> = HashMap::new();
    let mut timed = |name: &'static str, t: &mut Report, f: &mut dyn FnMut(&mut Report)| {
        if want(name) {
            let s = Instant::now();
            eprintln!("== {name}");
            f(t);
            phases.insert(name, s.elapsed());
        }
    };
    timed("latency", &mut t, &mut |t| latency::row_latency(&a, t));
    timed("flood-bans", &mut t, &mut |t| flood::row_flood_bans(&a, t));
    timed("flood-held", &mut t, &mut |t| flood::row_flood_held(&a, t));
    let mut rss = None;
    timed("flood-nobans", &mut t, &mut |t| {
        rss = flood::row_flood_nobans(&a, t)
    });
    timed("bulk", &mut t, &mut |t| kernel_paths::row_bulk(&a, t));
    timed("forged-scan", &mut t, &mut |t| {
        forged::row_forged_scan(&a, t)
    });
    timed("storm", &mut t, &mut |t| forged::row_storm(&a, t));
    timed("drop", &mut t, &mut |t| kernel_paths::row_drop(&a, t));
    timed("startup", &mut t, &mut |t| restore::row_startup(&a, t));
    timed("startup-1m", &mut t, &mut |t| {
        restore::row_startup_1m(&a, t)
    });
    timed("restart", &mut t, &mut |t| restore::row_restart(&a, t));
    timed("v6rotate", &mut t, &mut |t| v6rotate::row_v6rotate(&a, t));
    timed("rss", &mut t, &mut |t| memory::row_rss(t, rss));
    let mut ph: Vec<_> = phases.into_iter().collect();
    ph.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
    t.note(format!(
        "Run time {:.0} s ({}).",
        started.elapsed().as_secs_f64(),
        ph.iter()
            .map(|(n, d)| format!("{n} {:.0} s", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    println!("- nftsentry (this commit): {this_desc}");
    if let Some(d) = &base_desc {
        println!("- baseline: {d}");
    }
    t.ps.print();
    if let Some(b) = &mut t.base {
        b.note(
            "Each nftsentry row ran this commit's binary and then the baseline's, one right \
             after the other in the same run (fresh namespaces and daemon each), so a change in \
             the machine's load between rows hits both; the notes of the first table hold both \
             sides' details. \"this commit better by\" is the baseline's figure over this \
             commit's for costs and times, this commit's over the baseline's for rates; under 1× \
             is a regression.",
        );
        println!();
        println!("## nftsentry (this commit) vs the baseline");
        b.print();
    }
}
