//! Start-up: bans restored from the state file into the kernel sets (100k
//! IPv4; 1M, half IPv4 and half IPv6), and a restart with hosts.deny on.

use crate::Args;
use crate::common::*;
use crate::net::*;
use crate::procs::*;
use crate::table::{Better, Report};
use nftsentry::cidr::Cidr;
use nftsentry::config::Proto;
use nftsentry::journal::state::{Applied, Entry};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::{Duration, Instant};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A live ban of `addr` made `i % 3600` seconds ago for a day.
fn entry(addr: IpAddr, i: u32, now_ms: u64, applied: Applied) -> Entry {
    Entry {
        addr: Cidr::host(addr),
        scan: "syn".into(),
        proto: Some(Proto::Tcp),
        mode: "stcp".into(),
        port: PROBE_PORT,
        banned_at: now_ms - u64::from(i % 3600) * 1000,
        expires_at: now_ms + 86_400_000 - u64::from(i % 3600) * 1000,
        length: 86_400_000,
        repeat: 1,
        evidence: nftsentry::strength::Strength::Forgeable,
        applied,
    }
}

/// 2001:db8:100::/48 (never sent from or to): the i-th IPv6 ban.
fn v6_filler(i: u32) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(
        0x2001_0db8_0100_0000_0000_0000_0000_0000u128 + u128::from(i) + 1,
    ))
}

/// The state file's text: `v4` IPv4 bans (240/4) and `v6` IPv6 bans.
pub fn state_text(v4: u32, v6: u32) -> String {
    let now = now_ms();
    let set = Applied {
        set: true,
        ..Applied::default()
    };
    let entries: Vec<Entry> = (0..v4)
        .map(|i| entry(IpAddr::V4(Ipv4Addr::from(filler(i))), i, now, set.clone()))
        .chain((0..v6).map(|i| entry(v6_filler(i), i, now, set.clone())))
        .collect();
    nftsentry::journal::state::render(&entries)
}

/// One restore: `bin run` with `state` as its state file, timed until
/// blocked4 + blocked6 hold `want` elements (polled every 2 ms); with the
/// daemon's VmRSS once it is idle after.
fn restore(bin: &Bin, state: &Path, want: u32, extra_cfg: &str) -> Option<(Duration, f64)> {
    let mut p = pair("cmp-start");
    let dir = TempDir::new("cmp-start");
    let cfg = dir.file(
        "nftsentry.toml",
        &format!(
            "{}{extra_cfg}{}",
            private_files(&dir.path),
            nftsentry_config(0, "")
        ),
    );
    std::fs::copy(state, dir.path.join("state")).unwrap();
    let log = dir.path.join("log");
    let start = Instant::now();
    let pid = spawn_daemon(&mut p.victim, bin, &cfg, &log);
    let took = p.victim.enter(move || {
        let mut s = nftsentry::kernel::nft::NftSocket::open().expect("nft socket");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let n: u32 = ["blocked4", "blocked6"]
                .iter()
                .map(|set| {
                    s.set_info("nftsentry", set)
                        .ok()
                        .and_then(|i| i.count)
                        .unwrap_or(0)
                })
                .sum();
            if n >= want {
                return Ok(start.elapsed());
            }
            if Instant::now() >= deadline || exited(pid) {
                return Err(n);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    match took {
        Ok(took) => {
            wait_idle(pid, Duration::from_secs(30));
            let rss = rss_mib(&pid.to_string());
            signal(pid, nix::sys::signal::Signal::SIGTERM);
            wait_until(Duration::from_secs(30), || exited(pid));
            Some((took, rss))
        }
        Err(n) => {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            eprintln!(
                "{}: {n} of {want} bans restored within 120 s; log ends:\n{}",
                bin.who,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
            None
        }
    }
}

fn restore_rows(a: &Args, t: &mut Report, v4: u32, v6: u32, label: &str, extra_cfg: &str) {
    let dir = TempDir::new("cmp-state");
    let state = dir.file("state", &state_text(v4, v6));
    let runs: Vec<Option<(Duration, f64)>> = a
        .bins()
        .iter()
        .map(|bin| restore(bin, &state, v4 + v6, extra_cfg))
        .collect();
    let what = format!("start-up with {label} to restore (state file -> all in the kernel sets)");
    let Some((took, rss)) = runs[0] else {
        t.text(&what, "not all restored (see stderr)", None, "n/a");
        return;
    };
    let base = runs.get(1).copied().flatten();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    t.row(
        &format!("{what} (ms)"),
        ms(took),
        base.map(|b| ms(b.0)),
        None,
        "",
        Better::Lower,
    );
    t.row(
        &format!("daemon RSS after restoring {label} (MiB)"),
        rss,
        base.map(|b| b.1),
        None,
        "",
        Better::Lower,
    );
    let who: Vec<String> = a
        .bins()
        .iter()
        .zip(&runs)
        .map(|(bin, r)| match r {
            Some((d, rss)) => format!("{} {:.0} ms, RSS {rss:.1} MiB", bin.who, ms(*d)),
            None => format!("{} did not restore them all", bin.who),
        })
        .collect();
    t.note(format!(
        "Start-up, {label}: a state file of {v4} live IPv4 bans (240/4) and {v6} IPv6 bans \
         (single addresses of 2001:db8:100::/48, ban_prefix6 = 128, so each goes to blocked6), \
         set_size 1048576; `nftsentry run` started, clock stopped when blocked4 + blocked6 held \
         all of them (NFTA_SET_COUNT, polled every 2 ms); RSS once the daemon was idle after: \
         {}. PortSentry keeps no bans across restarts (its iptables rules stay until reboot or \
         are lost), so it has no figure.",
        who.join("; ")
    ));
}

pub fn row_startup(a: &Args, t: &mut Report) {
    restore_rows(a, t, 100_000, 0, "100k bans", "");
}

pub fn row_startup_1m(a: &Args, t: &mut Report) {
    restore_rows(
        a,
        t,
        500_000,
        500_000,
        "1,000,000 bans (500k IPv4 + 500k IPv6)",
        "ban_prefix6 = 128\n",
    );
}

/// Restart with 100k bans and hosts.deny on: a state file of 100k live bans
/// whose hosts.deny lines are all in the file (as a restart finds them),
/// `bin run` started, the clock stopped at the line that says the bans are
/// restored, which comes after every line was checked and every ended ban
/// undone.
fn restart(bin: &Bin, bans: u32) -> Option<Duration> {
    let mut p = pair("cmp-restart");
    let dir = TempDir::new("cmp-restart");
    let deny = dir.path.join("hosts.deny");
    let mut lines = String::from("# the admin's\n");
    for i in 0..bans {
        lines.push_str(&format!("ALL: {}\n", Ipv4Addr::from(filler(i))));
    }
    std::fs::write(&deny, lines).unwrap();
    let cfg = dir.file(
        "nftsentry.toml",
        &format!(
            "{}hosts_deny = \"{}\"\n{}",
            private_files(&dir.path),
            deny.display(),
            nftsentry_config(0, "")
        ),
    );
    let now = now_ms();
    let applied = Applied {
        set: true,
        hosts_deny: true,
        ..Applied::default()
    };
    let entries: Vec<Entry> = (0..bans)
        .map(|i| {
            entry(
                IpAddr::V4(Ipv4Addr::from(filler(i))),
                i,
                now,
                applied.clone(),
            )
        })
        .collect();
    std::fs::write(
        dir.path.join("state"),
        nftsentry::journal::state::render(&entries),
    )
    .unwrap();
    let log = dir.path.join("log");
    let start = Instant::now();
    let pid = spawn_daemon(&mut p.victim, bin, &cfg, &log);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("bans restored with the time they had left") {
            return Some(start.elapsed());
        }
        if Instant::now() >= deadline || exited(pid) {
            eprintln!("{}: no restore line:\n{text}", bin.who);
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn row_restart(a: &Args, t: &mut Report) {
    const BANS: u32 = 100_000;
    let runs: Vec<Option<Duration>> = a.bins().iter().map(|b| restart(b, BANS)).collect();
    let what = "restart with 100k bans and hosts.deny on (state file -> every line checked)";
    let Some(took) = runs[0] else {
        t.text(what, "no restore line (see stderr)", None, "n/a");
        return;
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    t.row(
        &format!("{what} (ms)"),
        ms(took),
        runs.get(1).copied().flatten().map(ms),
        None,
        "",
        Better::Lower,
    );
    t.note(format!(
        "Restart with hosts.deny: a state file of {BANS} live bans with hosts_deny on, their \
         {BANS} lines already in the file; `nftsentry run` started, clock stopped at its \
         \"bans restored\" line (after every line was checked): {:.0} ms. Before one read and \
         one write per restart, each ban re-read and rewrote the file: 21.7 s at 40,000 bans.",
        ms(took)
    ));
}
