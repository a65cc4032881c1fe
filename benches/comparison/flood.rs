//! Floods of forged SYNs as fast as the senders go: every probe banned, or
//! none (the per-probe read, decode and track cost).

use crate::Args;
use crate::common::wait_until;
use crate::net::*;
use crate::procs::*;
use crate::table::{Better, Report};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One flood's figures.
pub struct FloodResult {
    sent: Sent,
    arrived: u64,
    handled: u64,
    /// From the first packet until the daemon was idle.
    busy: Duration,
    cpu: Duration,
    pub rss_mib: f64,
    extra: String,
}

impl FloodResult {
    fn rate(&self) -> f64 {
        self.handled as f64 / self.busy.as_secs_f64().max(1e-9)
    }
    fn cpu_per_million(&self) -> f64 {
        if self.handled == 0 {
            return 0.0;
        }
        self.cpu.as_secs_f64() * 1e6 / self.handled as f64
    }
    fn lost(&self) -> u64 {
        self.arrived.saturating_sub(self.handled)
    }
    fn per_cpu_second(&self) -> f64 {
        1e6 / self.cpu_per_million().max(1e-9)
    }
    fn describe(&self, who: &str) -> String {
        format!(
            "{who}: sent {} in {:.2} s by {} sender threads (offered {:.0}/s), arrived {}, handled {} in {:.2} s ({:.0}/s), lost {}, CPU {:.3} s ({:.0}% of one core over that time), {}",
            self.sent.sent,
            self.sent.time.as_secs_f64(),
            self.sent.senders,
            self.sent.rate(),
            self.arrived,
            self.handled,
            self.busy.as_secs_f64(),
            self.rate(),
            self.lost(),
            self.cpu.as_secs_f64(),
            100.0 * self.cpu.as_secs_f64() / self.busy.as_secs_f64().max(1e-9),
            self.extra
        )
    }
}

/// The flood's bound in time (it is bounded in packets too).
const FLOOD_LIMIT: Duration = Duration::from_secs(10);

/// Bans the daemon of the flood-held row holds before its flood (IPv4,
/// from 240.0.0.0/4, restored from its state file).
const HELD: u32 = 100_000;

/// `held` bans restored first (and the state file's first write after the
/// restore done) when not 0.
fn flood_nftsentry(
    a: &Args,
    bin: &Bin,
    n: u64,
    scan_trigger: u32,
    held: u32,
    profile: Option<PathBuf>,
) -> Option<FloodResult> {
    let mut p = pair("cmp-fl");
    let state = (held > 0).then(|| crate::restore::state_text(held, 0));
    let d = start_nftsentry_with(
        &mut p,
        &nftsentry_config(scan_trigger, ""),
        bin,
        state.as_deref(),
    )
    .map_err(|e| eprintln!("{e}"))
    .ok()?;
    if held > 0 {
        let restored = wait_until(Duration::from_secs(120), || {
            set_count(&p.victim, "blocked4") >= held
        });
        if !restored {
            eprintln!("{}: {held} bans not restored within 120 s", bin.who);
            return None;
        }
        wait_idle(d.pid, Duration::from_secs(60));
    }
    let ring = distinct_ring(n);
    let rss0 = rss_mib(&d.pid.to_string());
    let perf = Perf::attach(d.pid, profile);
    let cpu0 = cpu_of(d.pid);
    let main0 = main_thread_cpu(d.pid);
    let t0 = Instant::now();
    let sent = flood(&p, &ring, n, FLOOD_LIMIT, a.senders);
    let log = d.log.clone();
    // With bans held, until the state file's next write (throttled: up to
    // 5 s after the flood) is done too: its cost is what this row is for.
    let quiet = Duration::from_millis(if held > 0 { 7_000 } else { 500 });
    let (_idle, done) =
        wait_quiet_progress(d.pid, quiet, Duration::from_secs(60), || file_len(&log));
    let cpu = cpu_of(d.pid) - cpu0;
    let main = main_thread_cpu(d.pid) - main0;
    if let Some(perf) = perf {
        perf.finish();
    }
    let handled = d.alerts();
    let bans = set_count(&p.victim, "blocked4");
    let lost_line = std::fs::read_to_string(&d.log)
        .unwrap_or_default()
        .lines()
        .rfind(|l| l.contains("NFLOG events lost"))
        .map(|l| format!("; daemon: \"{}\"", l.trim()))
        .unwrap_or_default();
    Some(FloodResult {
        sent,
        arrived: arrived(&p),
        handled,
        busy: done.saturating_duration_since(t0),
        cpu,
        rss_mib: rss_mib(&d.pid.to_string()),
        extra: format!(
            "{bans} bans in blocked4, main thread's CPU {:.3} s of it, RSS {rss0:.1} MiB before the flood{lost_line}",
            main.as_secs_f64()
        ),
    })
}

fn flood_portsentry(
    a: &Args,
    bin: &Path,
    n: u64,
    trigger: u32,
    profile: Option<PathBuf>,
) -> FloodResult {
    let p = pair("cmp-fl-ps");
    let ps = start_portsentry(&p, bin, "-stcp", trigger);
    let ring = distinct_ring(n);
    let rss0 = rss_mib(&ps.pid.to_string());
    let perf = Perf::attach(ps.pid, profile);
    let cpu0 = cpu_of(ps.pid);
    let t0 = Instant::now();
    let sent = flood(&p, &ring, n, FLOOD_LIMIT, a.senders);
    // With a trigger PortSentry writes nothing: its work ends when it idles.
    let history = ps.history();
    let (idle, history_done) =
        wait_idle_progress(ps.pid, Duration::from_secs(30), || file_len(&history));
    let done = if trigger == 0 { history_done } else { idle };
    let cpu = cpu_of(ps.pid) - cpu0;
    if let Some(perf) = perf {
        perf.finish();
    }
    let arrived = arrived(&p);
    let (rx_queue, drops) = raw_socket(ps.pid).unwrap_or((0, 0));
    // With a trigger nothing is blocked: what it read is what arrived less
    // what its socket dropped (and what still waits, if it gave up).
    let handled = if trigger == 0 {
        ps.blocked()
    } else {
        arrived.saturating_sub(drops)
    };
    let rss = rss_mib(&ps.pid.to_string());
    let blocked = ps.blocked();
    ps.stop();
    FloodResult {
        sent,
        arrived,
        handled,
        busy: done.saturating_duration_since(t0),
        cpu,
        rss_mib: rss,
        extra: format!(
            "{blocked} hosts blocked, RSS {rss0:.1} MiB before the flood; raw socket: {drops} packets dropped, {rx_queue} bytes still queued"
        ),
    }
}

/// Each nftsentry binary's flood (this commit, then the baseline: one
/// after the other, so a change in load hits both), then PortSentry's.
fn floods(
    a: &Args,
    n: u64,
    trigger: u32,
    row: &str,
) -> Option<(Vec<Option<FloodResult>>, FloodResult)> {
    let nft: Vec<Option<FloodResult>> = a
        .bins()
        .iter()
        .map(|bin| flood_nftsentry(a, bin, n, trigger, 0, a.profile_file(bin.who, row)))
        .collect();
    let ps = flood_portsentry(
        a,
        &a.portsentry,
        n,
        trigger,
        a.profile_file("portsentry", row),
    );
    nft[0].as_ref()?;
    Some((nft, ps))
}

type Figure = fn(&FloodResult) -> f64;

/// A flood's result rows (handled per second, lost, CPU per million):
/// this commit's, the baseline's, PortSentry's when it ran.
fn result_rows(
    t: &mut Report,
    label: &str,
    ours: &FloodResult,
    base: Option<&FloodResult>,
    ps: Option<&FloodResult>,
) {
    let rows: [(&str, Figure, &str, Better); 3] = [
        (
            "probes handled per second (wall clock, until the last was handled)",
            FloodResult::rate,
            "/s",
            Better::Higher,
        ),
        (
            "probes lost (arrived, never handled)",
            |r| r.lost() as f64,
            "",
            Better::Lower,
        ),
        (
            "daemon CPU seconds per million probes handled",
            FloodResult::cpu_per_million,
            "s",
            Better::Lower,
        ),
    ];
    for (what, f, unit, better) in rows {
        t.row(
            &format!("{label}: {what}"),
            f(ours),
            base.map(f),
            ps.map(f),
            unit,
            better,
        );
    }
}

fn flood_rows(t: &mut Report, label: &str, nft: &[Option<FloodResult>], ps: &FloodResult) {
    let ours = nft[0].as_ref().unwrap();
    let base = nft.get(1).and_then(|b| b.as_ref());
    // The offered load is the benchmark's, not a result: no ratio.
    t.ps.text(
        &format!("{label}: offered load (packets sent per second of sending)"),
        &crate::table::fmt_num(ours.sent.rate(), "/s"),
        &crate::table::fmt_num(ps.sent.rate(), "/s"),
        "(the load)",
    );
    if let Some(b) = &mut t.base {
        b.text(
            &format!("{label}: offered load (packets sent per second of sending)"),
            &crate::table::fmt_num(ours.sent.rate(), "/s"),
            &base
                .map(|r| crate::table::fmt_num(r.sent.rate(), "/s"))
                .unwrap_or("not measured".into()),
            "(the load)",
        );
    }
    result_rows(t, label, ours, base, Some(ps));
}

fn describe_all(a: &Args, nft: &[Option<FloodResult>], ps: Option<&FloodResult>) -> String {
    let mut v: Vec<String> = a
        .bins()
        .iter()
        .zip(nft)
        .filter_map(|(bin, r)| Some(r.as_ref()?.describe(bin.who)))
        .collect();
    v.extend(ps.map(|ps| ps.describe("PortSentry")));
    v.join(". ")
}

pub fn row_flood_bans(a: &Args, t: &mut Report) {
    // Every probe from a new source, each one banned.
    let Some((nft, ps)) = floods(a, a.flood_bans, 0, "flood-bans") else {
        t.text("flood, ban every source", "did not start", None, "—");
        return;
    };
    flood_rows(t, "flood, ban every source", &nft, &ps);
    t.note(format!(
        "Flood with bans: {} SYNs from distinct spoofed sources (198.18.0.0/15), sent by {} \
         thread(s) in the attacker, each with its own raw socket, in sendmmsg(2) batches of \
         prebuilt packets, as fast as they go (at most {} s); scan_trigger/SCAN_TRIGGER 0 so \
         every probe is a ban. Offered = packets sent over the send time; handled = alert lines \
         (nftsentry), history lines (PortSentry), over the wall time from the first packet \
         until the last of those lines was written (the log, or the history file, stopped \
         growing; the daemon's CPU is counted until it has been idle 0.5 s, so the state \
         file's write after the flood is in it); lost = arrived (counted at prerouting) minus \
         handled. CPU: every thread of the daemon (the notes give the main thread's share) and PortSentry's KILL_ROUTE children. {}.",
        a.flood_bans,
        a.senders,
        FLOOD_LIMIT.as_secs(),
        describe_all(a, &nft, Some(&ps))
    ));
}

/// A flood of new bans onto a host that already holds `HELD` (nftsentry
/// only: PortSentry restores nothing): what a state write costs when the
/// file is large and a flood changes a small part of it.
pub fn row_flood_held(a: &Args, t: &mut Report) {
    let n = a.flood_bans / 5;
    let label = format!("flood onto {} held bans, ban every source", fmt_count(HELD));
    let nft: Vec<Option<FloodResult>> = a
        .bins()
        .iter()
        .map(|bin| flood_nftsentry(a, bin, n, 0, HELD, a.profile_file(bin.who, "flood-held")))
        .collect();
    let Some(ours) = nft[0].as_ref() else {
        t.text(&label, "did not start", None, "n/a");
        return;
    };
    let base = nft.get(1).and_then(|b| b.as_ref());
    result_rows(t, &label, ours, base, None);
    t.note(format!(
        "Flood onto held bans: {} IPv4 bans restored from the state file first (and the \
         state file's first write after the restore done), then {n} SYNs from new spoofed \
         sources as in the flood with bans, each one banned; measured as that row, but the \
         daemon's CPU counted until it has been idle 7 s (the state file's write after the \
         flood is throttled to at most 5 s after it). The \
         state file then holds {} lines before the flood, and each write during it changes \
         a few thousand. {}.",
        fmt_count(HELD),
        fmt_count(HELD),
        describe_all(a, &nft, None)
    ));
}

fn fmt_count(n: u32) -> String {
    crate::table::fmt_num(f64::from(n), "")
}

/// A trigger no source reaches in the floods (each source probes a few
/// times at most). PortSentry bans at once above 50, its state table size.
pub const NO_TRIGGER: u32 = 50;

/// Returns the daemons' RSS after the flood (this, baseline, PortSentry),
/// for the RSS row.
pub fn row_flood_nobans(a: &Args, t: &mut Report) -> Option<(f64, Option<f64>, f64)> {
    // Decode and count only: the trigger is never reached.
    let Some((nft, ps)) = floods(a, a.flood_decode, NO_TRIGGER, "flood") else {
        t.text("flood, no bans", "did not start", None, "—");
        return None;
    };
    flood_rows(t, "flood, no bans (decode + track)", &nft, &ps);
    let ours = nft[0].as_ref().unwrap();
    let base = nft.get(1).and_then(|b| b.as_ref());
    t.row(
        "flood, no bans: probes per CPU-second of the daemon (per core)",
        ours.per_cpu_second(),
        base.map(FloodResult::per_cpu_second),
        Some(ps.per_cpu_second()),
        "/s",
        Better::Higher,
    );
    t.note(format!(
        "Flood without bans: {} SYNs cycling over {SPOOF_COUNT} spoofed sources, {} sender \
         threads as above (at most {} s), trigger {NO_TRIGGER} (PortSentry's most: above its 50-host state \
         table it blocks at once) so nothing is banned: the per-probe read/decode/track cost. \
         nftsentry handled = alert lines (each probe is logged); PortSentry handled = arrived \
         minus its raw socket's drops (it logs nothing below the trigger). {}.",
        a.flood_decode,
        a.senders,
        FLOOD_LIMIT.as_secs(),
        describe_all(a, &nft, Some(&ps))
    ));
    Some((ours.rss_mib, base.map(|b| b.rss_mib), ps.rss_mib))
}
