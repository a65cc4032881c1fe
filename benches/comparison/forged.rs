//! Forged floods paced below the senders' limit (issue 15): a real scan
//! during a forged flood larger than the ban set, and a steady storm of
//! forged one-probe sources.

use crate::Args;
use crate::common::Pair;
use crate::net::*;
use crate::procs::*;
use crate::table::{Better, Report};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// The real scanner's address as a ban key.
const SCANNER: u32 = 0xC000_0202; // 192.0.2.2

/// Time from the scan's start to the scanner's ban (None: not within the
/// limit), the flood's (sent, elapsed) and the scan's wall time.
type ScanRun = (Option<Duration>, (u64, Duration), Duration);

/// A forged flood of `sources` distinct sources (one SYN each) from a
/// thread, while nmap -sS from the attacker's own address scans four
/// watched ports 0.3 s after the flood began.
fn flood_with_scan(p: &Pair, watch: Watch, sources: u64, limit: Duration) -> ScanRun {
    let mon = Monitor::start(&p.victim, watch);
    // Paced at 20,000 a second: a flood, yet one that a veth and both
    // daemons' sockets take without dropping the scan.
    let flooder = spawn_in(&p.attacker, move || {
        let start = Instant::now();
        let sent = send_paced(sources, 20_000, Duration::from_secs(10));
        (sent, start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    let scan_start = Instant::now();
    let out = p
        .attacker
        .cmd("nmap")
        .args([
            "-n",
            "-Pn",
            "-sS",
            "--max-retries",
            "1",
            "-p",
            "1,11,15,79",
            "192.0.2.1",
        ])
        .output()
        .unwrap();
    let scan_time = scan_start.elapsed();
    assert!(out.status.success(), "nmap failed: {out:?}");
    let banned = mon
        .wait_for(SCANNER, limit)
        .map(|t| t.saturating_duration_since(scan_start));
    (banned, flooder.join().unwrap(), scan_time)
}

pub fn row_forged_scan(a: &Args, t: &mut Report) {
    // The set holds 10,000 bans; the flood brings 20,000 forged sources.
    const SET: u32 = 10_000;
    const SOURCES: u64 = 20_000;
    let cfg = |storm: &str| {
        format!(
            "ignore_file = \"\"\nignore_local = false\nban_time = \"1h\"\nset_size = {SET}\nscan_trigger = 0\n{storm}\
             [tcp]\nports = \"1,11,15,79\"\n[udp]\nports = \"\"\n"
        )
    };
    let run_nft = |bin: &Bin, storm: &str| -> Option<(ScanRun, u32)> {
        let mut p = pair("cmp-fs");
        let d = start_nftsentry(&mut p, &cfg(storm), bin)
            .map_err(|e| eprintln!("{e}"))
            .ok()?;
        let r = flood_with_scan(&p, Watch::SetElements, SOURCES, Duration::from_secs(20));
        wait_idle(d.pid, Duration::from_secs(20));
        Some((r, set_count(&p.victim, "blocked4")))
    };
    let mut runs = Vec::new();
    for storm in ["", "storm_threshold = 0\n"] {
        runs.push(
            a.bins()
                .iter()
                .map(|b| run_nft(b, storm))
                .collect::<Vec<_>>(),
        );
    }
    let (ps, ps_blocked) = {
        let p = pair("cmp-fs-ps");
        let ps = start_portsentry(&p, &a.portsentry, "-stcp", 0);
        let r = flood_with_scan(&p, Watch::Routes, SOURCES, Duration::from_secs(30));
        let blocked = ps.blocked();
        ps.stop();
        (r, blocked)
    };
    let show = |r: &ScanRun, limit: u64| match r.0 {
        Some(d) => format!("{:.3} s", d.as_secs_f64()),
        None => format!("not within {limit} s"),
    };
    let mut notes = Vec::new();
    for (label, nft) in [
        ("storm guard on (the default)", &runs[0]),
        ("storm guard off, set full", &runs[1]),
    ] {
        let what = format!(
            "forged flood of {SOURCES} sources into a {SET}-ban set during a real nmap -sS scan, {label}: scan start → scanner banned"
        );
        let Some((ours, _)) = &nft[0] else {
            t.text(&what, "did not start", None, "—");
            continue;
        };
        let base = nft.get(1).and_then(|b| b.as_ref());
        let secs = |r: &ScanRun| r.0.map(|d| d.as_secs_f64());
        match (secs(ours), secs(&ps)) {
            (Some(n), Some(o)) => t.ps.both(&what, n, o, "s", Better::Lower),
            _ => t.ps.text(&what, &show(ours, 20), &show(&ps, 30), "—"),
        }
        if let Some(b) = &mut t.base {
            match (secs(ours), base.map(|b| secs(&b.0))) {
                (Some(n), Some(Some(o))) => b.both(&what, n, o, "s", Better::Lower),
                (_, Some(_)) => b.text(&what, &show(ours, 20), &show(&base.unwrap().0, 20), "—"),
                (_, None) => b.text(&what, &show(ours, 20), "not measured", "—"),
            }
        }
        for (bin, r) in a.bins().iter().zip(nft) {
            if let Some((r, bans)) = r {
                notes.push(format!(
                    "{} {label}: {bans} bans in blocked4 after the flood (flood sent {} in {:.2} s, nmap took {:.2} s)",
                    bin.who,
                    r.1.0,
                    r.1.1.as_secs_f64(),
                    r.2.as_secs_f64()
                ));
            }
        }
    }
    t.note(format!(
        "Forged flood with a real scan: {SOURCES} SYNs from distinct forged sources (198.18.0.0/15, \
         20,000 a second, one thread) to port 1; 0.3 s in, nmap -sS --max-retries 1 from the \
         attacker's own address (192.0.2.2) scans ports 1,11,15,79 (watched by both). Time from \
         nmap's start to the scanner's ban event (NEWSETELEM, RTM_NEWROUTE for PortSentry's \
         KILL_ROUTE). nftsentry: set_size {SET}, scan_trigger 0, ignore_local = false (the \
         attacker is the victim's route to the forged range, so a gateway); with the storm guard \
         (storm_threshold 100) the forged one-probe sources stop banning once the storm is seen \
         and the scanner's four ports still ban it; without it the set fills and the scanner's \
         stronger evidence (several ports) evicts a forged ban. {}; PortSentry -stcp \
         (SCAN_TRIGGER 0): {} hosts blocked (sent {} in {:.2} s, nmap took {:.2} s).",
        notes.join("; "),
        ps_blocked,
        ps.1.0,
        ps.1.1.as_secs_f64(),
        ps.2.as_secs_f64(),
    ));
}

/// A steady forged flood, `pps` distinct sources a second for `secs`.
fn paced_flood(p: &Pair, pps: u64, secs: u64) -> u64 {
    p.attacker
        .enter(move || send_paced(pps * secs, pps, Duration::from_secs(secs + 5)))
}

/// From the attacker's namespace (the caller is in it): `total` SYNs from
/// distinct forged sources to the victim, `pps` a second, for at most
/// `limit`; how many were sent.
fn send_paced(total: u64, pps: u64, limit: Duration) -> u64 {
    use nix::sys::socket::*;
    let fd = raw_socket_fd();
    let dst = SockaddrIn::new(192, 0, 2, 1, 0);
    let start = Instant::now();
    let mut sent = 0;
    while sent < total && start.elapsed() < limit {
        let due = Duration::from_secs_f64(sent as f64 / pps as f64);
        if start.elapsed() < due {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        if sendto(
            fd.as_raw_fd(),
            &syn(src_distinct(sent)),
            &dst,
            MsgFlags::empty(),
        )
        .is_ok()
        {
            sent += 1;
        }
    }
    sent
}

pub fn row_storm(a: &Args, t: &mut Report) {
    const PPS: u64 = 1_000;
    const SECS: u64 = 20;
    let nft: Vec<Option<u64>> = a
        .bins()
        .iter()
        .map(|bin| {
            let mut p = pair("cmp-st");
            // The defaults: storm_threshold 100, storm_hold 10m.
            let d = start_nftsentry(
                &mut p,
                "ignore_file = \"\"\nignore_local = false\nban_time = \"1h\"\nscan_trigger = 0\n[tcp]\nports = \"1\"\n[udp]\nports = \"\"\n",
                bin,
            )
            .map_err(|e| eprintln!("{e}"))
            .ok()?;
            paced_flood(&p, PPS, SECS);
            wait_idle(d.pid, Duration::from_secs(20));
            Some(u64::from(set_count(&p.victim, "blocked4")))
        })
        .collect();
    let ps_bans = {
        let p = pair("cmp-st-ps");
        let ps = start_portsentry(&p, &a.portsentry, "-stcp", 0);
        paced_flood(&p, PPS, SECS);
        wait_idle(ps.pid, Duration::from_secs(20));
        let b = ps.blocked();
        ps.stop();
        b
    };
    let per_min = |n: u64| n as f64 * 60.0 / SECS as f64;
    let what = format!(
        "storm of forged one-probe sources ({PPS}/s for {SECS} s): forged sources banned per minute (average over the storm)"
    );
    let Some(ours) = nft[0] else {
        t.text(&what, "did not start", None, "—");
        return;
    };
    t.row(
        &what,
        per_min(ours),
        nft.get(1).copied().flatten().map(per_min),
        Some(per_min(ps_bans)),
        "",
        Better::Lower,
    );
    t.note(format!(
        "Storm: {} SYNs, each from a new forged source (198.18.0.0/15), {PPS} a second for {SECS} s, \
         to port 1. nftsentry with its defaults (storm_threshold 100, storm_hold 10m, scan_trigger \
         0): {ours} forged sources banned in all, every one of them before the guard went on \
         (it turns on at the threshold's 100th ban of a 10 s window, then a source must probe two \
         ports for storm_hold), so a longer storm adds none and the average per minute falls with \
         its length; PortSentry -stcp (SCAN_TRIGGER 0): {ps_bans} hosts blocked, at a steady rate \
         (one KILL_ROUTE fork each). Per minute = the count × 60 / {SECS}.",
        PPS * SECS
    ));
}
