//! An IPv6 scanner rotating its source inside one /64 (prefix bans).

use crate::Args;
use crate::common::spoof::{L4, SYN, Spoofer, packet, pin_victim_neighbours};
use crate::common::*;
use crate::net::PROBE_PORT;
use crate::procs::*;
use crate::table::{Better, Report};
use std::net::IpAddr;
use std::time::Duration;

/// Probes an IPv6 scanner sends from distinct addresses of one /64.
const V6_ROTATE_PROBES: u16 = 200;

/// How many of the scanner's probes no ban dropped, with `bin` and
/// `ban_prefix6` = `prefix`.
fn got_through(bin: &Bin, prefix: u8) -> Option<f64> {
    let mut p = Pair::new(&format!("cmp-v6r{prefix}"));
    pin_victim_neighbours(&p);
    let cfg = format!("ban_prefix6 = {prefix}\n{}", nftsentry_config(3, ""));
    let _d = start_nftsentry(&mut p, &cfg, bin)
        .map_err(|e| eprintln!("{e}"))
        .ok()?;
    let dropped = |p: &Pair| -> u64 {
        p.victim
            .nft(&["list", "chain", "inet", "nftsentry", "input"])
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("ip6 saddr") && l.ends_with(" drop"))
            .filter_map(|l| {
                l.split("counter packets ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    let sp = Spoofer::open(&p.attacker);
    let dst: IpAddr = VICTIM6.parse().unwrap();
    for i in 0..V6_ROTATE_PROBES {
        let src: IpAddr = format!("2001:db8:7::{:x}:{:x}", i + 1, 0x7000 + i)
            .parse()
            .unwrap();
        sp.send_sure(&packet(src, dst, L4::Tcp { flags: SYN }, 40000, PROBE_PORT));
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(300));
    let n = u64::from(V6_ROTATE_PROBES).saturating_sub(dropped(&p));
    eprintln!(
        "{} ban_prefix6 {prefix}: {n} of {V6_ROTATE_PROBES} probes got through",
        bin.who
    );
    Some(n as f64)
}

/// Forged SYNs from 2001:db8:7::/64, one address each, 2 ms apart,
/// `scan_trigger` = 3: how many were not dropped by a ban, with
/// `ban_prefix6` = 64 (the default) and = 128 (each address a source of
/// its own, as before prefix bans). PortSentry 1.2 has no IPv6; the other
/// column is nftsentry by address, in the same run.
pub fn row_v6rotate(a: &Args, t: &mut Report) {
    let by64: Vec<Option<f64>> = a.bins().iter().map(|b| got_through(b, 64)).collect();
    let by128 = got_through(&a.bins()[0], 128);
    let what = format!(
        "IPv6 scanner rotating inside one /64: probes of {V6_ROTATE_PROBES} (each from a new address, scan_trigger 3) that got through (other column: nftsentry with ban_prefix6 = 128, by address as before)"
    );
    match (by64[0], by128) {
        (Some(ours), Some(by128)) => t.row(
            &what,
            ours,
            by64.get(1).copied().flatten(),
            Some(by128),
            "",
            Better::Lower,
        ),
        _ => t.text(&what, "did not start", None, "—"),
    }
}
