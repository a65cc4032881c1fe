//! `[crowdsec]` figures (no assertion on any timing):
//! - probe to drop: seconds from the start of an nmap scan of host A to the
//!   scanner's address in host B's fleet set, through Debian's crowdsec
//!   Local API (the test bed of tests/fleet.rs: pull_interval 1s), three
//!   rounds;
//! - pull cost: a stream of 10,000 and 100,000 decisions (the LAPI's JSON)
//!   parsed, held, turned into the kernel's ranges and committed into the
//!   fleet set of a table in a namespace: time per step and the growth of
//!   the process's resident memory.
//!
//! Run as root: `cargo bench --bench fleet [-- latency|pull]`; needs the
//! crowdsec package for the latency rows (tests/run installs it).

#[path = "../tests/common/mod.rs"]
mod common;
use common::fleet::*;
use common::*;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use nftsentry::fleet::HeldDecisions;
use nftsentry::fleet::lapi::Stream;
use nftsentry::kernel::nft::NftSocket;
use nftsentry::table::ruleset::{Ruleset, fleet_batch};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn latency() {
    let mut hub = Hub::new("bl");
    hub.setup_lapi(&format!("{LAPI}:8080"));
    hub.start_lapi();
    let url = format!("http://{LAPI}:8080");
    let a = Daemon::start(&hub, "bla", A, "hostA", "# none\n", "", &url);
    let b = Daemon::start(&hub, "blb", B, "hostB", "# none\n", "", &url);
    let mut rows = Vec::new();
    for (i, src) in ["192.0.2.66", "192.0.2.67", "192.0.2.68"]
        .iter()
        .enumerate()
    {
        let scanner = hub.host(&format!("bls{i}"), &[src]);
        let start = Instant::now();
        scan(&scanner, A);
        let mut on_a = None;
        let ok = wait_until(Duration::from_secs(30), || {
            if on_a.is_none() && a.set("blocked4").contains(src) {
                on_a = Some(start.elapsed());
            }
            b.fleet_has(src)
        });
        let on_b = start.elapsed();
        if !ok {
            println!("round {i}: B did not drop {src} within 30 s");
            continue;
        }
        rows.push((on_a.unwrap_or(on_b), on_b));
    }
    println!("probe on A -> drop on B (pull_interval 1s, crowdsec 1.4.6 LAPI, http):");
    for (i, (on_a, on_b)) in rows.iter().enumerate() {
        println!(
            "  round {i}: banned on A after {:.3} s (scan included), dropped on B after {:.3} s",
            on_a.as_secs_f64(),
            on_b.as_secs_f64()
        );
    }
    hub.stop_lapi();
}

/// The LAPI's stream for `n` Ip decisions in 198.18.0.0/15 (and one Range
/// in ten), as crowdsec 1.4.6 writes it.
fn stream_json(n: usize) -> String {
    let mut s = String::with_capacity(n * 160);
    s.push_str("{\"deleted\":null,\"new\":[");
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        let v = 0xc612_0000u32 + i as u32;
        let (scope, value) = if i % 10 == 9 {
            ("Range", format!("{}/31", std::net::Ipv4Addr::from(v & !1)))
        } else {
            ("Ip", std::net::Ipv4Addr::from(v).to_string())
        };
        s.push_str(&format!(
            "{{\"duration\":\"3h59m{}.873s\",\"id\":{},\"origin\":\"crowdsec\",\"scenario\":\"crowdsecurity/ssh-bf\",\"scope\":\"{scope}\",\"type\":\"ban\",\"value\":\"{value}\"}}",
            i % 60,
            i + 1
        ));
    }
    s.push_str("]}");
    s
}

fn pull() {
    println!("pull cost (parse, hold, ranges, one kernel transaction):");
    for n in [10_000usize, 100_000] {
        let json = stream_json(n);
        let rss0 = rss_kib();
        let t = Instant::now();
        let stream: Stream = serde_json::from_str(&json).unwrap();
        let parse = t.elapsed();
        let t = Instant::now();
        let usable: Vec<_> = stream
            .new
            .unwrap_or_default()
            .iter()
            .filter_map(|d| d.usable().ok())
            .collect();
        let now = Instant::now();
        let mut held = HeldDecisions::default();
        held.apply(true, usable, &[], now);
        let segs = held.segments(false, now, &HashSet::new());
        let hold = t.elapsed();
        let rss1 = rss_kib();
        let ns = Netns::new("bp");
        let segs2 = segs.clone();
        let commit = ns.enter(move || {
            let mut r = Ruleset::from_config(&nftsentry::config::Config::default(), &[]);
            r.fleet = true;
            r.flags = Default::default();
            let mut s = NftSocket::open().unwrap();
            s.commit(&r.install_batch()).unwrap();
            let t = Instant::now();
            s.commit(&fleet_batch(&r.table, &segs2, &[])).unwrap();
            let first = t.elapsed();
            // The next sync rewrites it whole.
            let t = Instant::now();
            s.commit(&fleet_batch(&r.table, &segs2, &[])).unwrap();
            (first, t.elapsed())
        });
        println!(
            "  {n} decisions ({} kernel ranges, {} KiB of JSON): parse {:.3} s, hold + ranges {:.3} s, first commit {:.3} s, re-sync commit {:.3} s; resident memory +{} KiB with the JSON parsed and the decisions held",
            segs.len(),
            json.len() / 1024,
            parse.as_secs_f64(),
            hold.as_secs_f64(),
            commit.0.as_secs_f64(),
            commit.1.as_secs_f64(),
            rss1.saturating_sub(rss0)
        );
        drop(held);
    }
}

fn main() {
    require_root();
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let want = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    if want("pull") {
        pull();
    }
    if want("latency") {
        latency();
    }
}
