//! Memory: the daemon's RSS after the no-ban flood, and what the daemon
//! keeps per tracked source at 1M sources, measured in a fresh child
//! process of this program (1M distinct sources cannot be sent from the
//! /15 we may spoof): the Detector fed through its public API, and the
//! Tracker alone.

use crate::net::*;
use crate::procs::*;
use crate::table::{Better, Report};
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The system allocator, counting the bytes allocated and not freed, for
/// the memory children's "allocated" figure (the cost elsewhere is one
/// relaxed atomic add per allocation).
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes to System with the caller's arguments; the
// counter is only arithmetic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            LIVE.fetch_add(l.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            LIVE.fetch_add(l.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            LIVE.fetch_add(new, Ordering::Relaxed);
            LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        }
        q
    }
}

fn live_mib() -> f64 {
    LIVE.load(Ordering::Relaxed) as f64 / (1 << 20) as f64
}

const SOURCES: u32 = 1_000_000;
pub const DETECTOR_CHILD: &str = "--detector-rss-child";
pub const TRACKER_CHILD: &str = "--tracker-rss-child";

/// The ledger as the child's Detector sees it: nothing banned.
struct NoBans;

impl nftsentry::detect::Bans for NoBans {
    fn ban_on(
        &self,
        _: nftsentry::cidr::Cidr,
        _: nftsentry::config::Proto,
        _: Instant,
    ) -> Option<nftsentry::detect::BanInForce> {
        None
    }
}

/// In the child: a Detector built from the benchmark's no-ban config
/// (max_tracked_sources 1,000,000, a trigger no source reaches) fed one
/// SYN from each of 1M distinct sources through `on_packet_from`, as the
/// event loop feeds it NFLOG payloads. Prints VmRSS before and after (MiB),
/// the sources tracked, the stories kept for `why`, and the heap growth
/// (MiB).
pub fn detector_child() {
    let text = nftsentry_config(crate::flood::NO_TRIGGER, "");
    let cfg = nftsentry::config::Config::parse(&text, "benchmark config").expect("config");
    let before = rss_mib("self");
    let heap0 = live_mib();
    let mut d = nftsentry::detect::Detector::new(&cfg, Vec::new());
    let now = Instant::now();
    for i in 0..SOURCES {
        let v = d.on_packet_from(&syn(filler(i)), false, now, &NoBans);
        debug_assert!(matches!(v, nftsentry::detect::Verdict::Probe { .. }));
    }
    let after = rss_mib("self");
    println!(
        "{before} {after} {} {} {}",
        d.tracked(),
        d.stories(),
        live_mib() - heap0
    );
}

/// In the child: VmRSS before and after filling a Tracker with 1M sources,
/// sources held, MiB allocated (as the tracker counts it), heap growth.
pub fn tracker_child() {
    let before = rss_mib("self");
    let heap0 = live_mib();
    let now = Instant::now();
    let mut tr =
        nftsentry::detect::Tracker::new(SOURCES as usize, 1_000_000, Duration::from_secs(3600));
    for i in 0..SOURCES {
        tr.record(IpAddr::V4(Ipv4Addr::from(filler(i))), now);
    }
    let after = rss_mib("self");
    println!(
        "{before} {after} {} {} {}",
        tr.len(),
        tr.memory_bytes() as f64 / (1 << 20) as f64,
        live_mib() - heap0
    );
}

/// Runs this program as `child`; its figures.
fn child(flag: &str) -> Vec<f64> {
    let out = crate::common::run_ok(Command::new(std::env::current_exe().unwrap()).arg(flag));
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<f64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(f.len(), 5, "{flag} printed {text:?}");
    f
}

/// `after_flood`: the daemons' RSS after the no-ban flood (this commit,
/// baseline, PortSentry).
pub fn row_rss(t: &mut Report, after_flood: Option<(f64, Option<f64>, f64)>) {
    if let Some((nft, base, ps)) = after_flood {
        t.row(
            &format!("daemon RSS after the no-ban flood ({SPOOF_COUNT} sources tracked) (MiB)"),
            nft,
            base,
            Some(ps),
            "",
            Better::Lower,
        );
    }
    let d = child(DETECTOR_CHILD);
    let (d_before, d_after, d_tracked, d_stories, d_heap) = (d[0], d[1], d[2], d[3], d[4]);
    t.row(
        "detection memory with 1M tracked sources: Detector (tracker + why's stories), VmRSS growth (MiB)",
        d_after - d_before,
        None,
        None,
        "",
        Better::Lower,
    );
    let tr = child(TRACKER_CHILD);
    let (before, after, held, counted, heap) = (tr[0], tr[1], tr[2], tr[3], tr[4]);
    t.row(
        "tracker memory with 1M tracked sources (Tracker alone), VmRSS growth (MiB)",
        after - before,
        None,
        None,
        "",
        Better::Lower,
    );
    t.note(format!(
        "RSS: the daemon row is VmRSS after the no-ban flood (nftsentry with \
         max_tracked_sources 1,000,000 holding the {SPOOF_COUNT} spoofed sources; PortSentry \
         keeps a fixed table of 50 recent hosts, so its figure does not grow, nor does it \
         remember more). The 1M rows are measured in a fresh process of this benchmark (so no \
         memory freed by earlier rows hides the growth), linked with this commit's library: the \
         Detector the daemon runs, built from the no-ban flood's config (max_tracked_sources \
         1,000,000, scan_trigger {}), fed one SYN from each of 1,000,000 distinct sources \
         through Detector::on_packet_from: VmRSS {d_before:.1} → {d_after:.1} MiB, {d_tracked} \
         sources tracked, {d_stories} stories kept for `why`, heap growth {d_heap:.1} MiB \
         (counted by the benchmark's allocator). The Tracker alone with 1,000,000 sources: \
         VmRSS {before:.1} → {after:.1} MiB, {held} held, {counted:.1} MiB by its own count, \
         heap growth {heap:.1} MiB. PortSentry cannot track 1M sources. These rows have no \
         baseline figure: they run this commit's library in-process (run the baseline commit's \
         own benches/compare --only rss for its figure).",
        crate::flood::NO_TRIGGER
    ));
}
