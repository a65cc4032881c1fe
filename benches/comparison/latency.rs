//! Probe→ban latency, closed loop: on an idle machine, and while a bulk
//! TCP transfer runs between the namespaces.

use crate::Args;
use crate::net::*;
use crate::procs::*;
use crate::table::{Better, Report};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// One probe's latency, with which probe it was and when it was sent
/// (since the first), so outliers can be set beside other events.
#[derive(Clone, Copy)]
struct Probe {
    index: u32,
    at: Duration,
    latency: Duration,
}

/// The latencies of one run, slowest last, and the probes missed.
struct Latencies {
    probes: Vec<Probe>,
    missed: u32,
    /// Bulk transfer beside it: bytes and seconds.
    bulk: Option<(u64, Duration)>,
}

impl Latencies {
    fn q(&self, q: f64) -> f64 {
        let v = &self.probes;
        v[((v.len() - 1) as f64 * q).round() as usize]
            .latency
            .as_secs_f64()
            * 1e3
    }
    fn max(&self) -> f64 {
        self.q(1.0)
    }
    /// The five slowest: "index @ time since start: latency".
    fn slowest(&self) -> String {
        self.probes
            .iter()
            .rev()
            .take(5)
            .map(|p| {
                format!(
                    "#{} at {:.3} s: {:.3} ms",
                    p.index,
                    p.at.as_secs_f64(),
                    p.latency.as_secs_f64() * 1e3
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
    fn describe(&self, who: &str) -> String {
        let bulk = self
            .bulk
            .map(|(b, d)| {
                format!(
                    ", bulk transfer {:.2} GB in {:.1} s beside it",
                    b as f64 / 1e9,
                    d.as_secs_f64()
                )
            })
            .unwrap_or_default();
        format!(
            "{who}: max {:.3} ms, missed {}{bulk}; slowest {}",
            self.max(),
            self.missed,
            self.slowest()
        )
    }
}

/// Closed loop: one SYN from a new source, wait until the ban is seen (or
/// 1 s), 1 ms pause, next.
fn ban_latencies(p: &crate::common::Pair, mon: Monitor, probes: u32) -> Latencies {
    p.attacker.enter(move || {
        use nix::sys::socket::*;
        let fd = raw_socket_fd();
        let dst = SockaddrIn::new(192, 0, 2, 1, 0);
        let mut lat = Vec::with_capacity(probes as usize);
        let mut missed = 0;
        let start = Instant::now();
        for i in 0..probes {
            let src = SPOOF_BASE + i;
            let t = Instant::now();
            sendto(fd.as_raw_fd(), &syn(src), &dst, MsgFlags::empty()).unwrap();
            match mon.wait_for(src, Duration::from_secs(1)) {
                Some(seen) => lat.push(Probe {
                    index: i,
                    at: t - start,
                    latency: seen.saturating_duration_since(t),
                }),
                None => missed += 1,
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        lat.sort_unstable_by_key(|p| p.latency);
        Latencies {
            probes: lat,
            missed,
            bulk: None,
        }
    })
}

/// nftsentry `bin` (stealth, scan_trigger 0) measured in a fresh pair, with
/// a bulk transfer to port 80 running throughout when `bulk`.
fn nft_latencies(bin: &Bin, probes: u32, bulk: bool) -> Option<Latencies> {
    let mut p = pair("cmp-lat");
    let listener = bulk.then(|| open_port(&p));
    let d = match start_nftsentry(&mut p, &nftsentry_config(0, ""), bin) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return None;
        }
    };
    let transfer = listener.map(|l| Bulk::start(&p, l, Duration::from_secs(300)));
    // Let the transfer reach its pace first.
    if transfer.is_some() {
        std::thread::sleep(Duration::from_millis(500));
    }
    let mon = Monitor::start(&p.victim, Watch::SetElements);
    let mut r = ban_latencies(&p, mon, probes);
    r.bulk = transfer.map(|t| t.finish(true));
    if r.probes.is_empty() {
        eprintln!("{} log:\n{}", bin.who, d.log_tail());
        return None;
    }
    Some(r)
}

pub fn row_latency(a: &Args, t: &mut Report) {
    let n = a.probes;
    // This commit and the baseline one after the other, idle then under
    // bulk, so a change in the machine's load hits both.
    let mut idle = Vec::new();
    let mut busy = Vec::new();
    for bin in a.bins() {
        idle.push(nft_latencies(bin, n, false));
    }
    for bin in a.bins() {
        busy.push(nft_latencies(bin, n, true));
    }
    let ps = {
        let p = pair("cmp-lat-ps");
        let ps = start_portsentry(&p, &a.portsentry, "-stcp", 0);
        let mon = Monitor::start(&p.victim, Watch::Routes);
        let r = ban_latencies(&p, mon, n);
        ps.stop();
        Some(r).filter(|r| !r.probes.is_empty())
    };
    let Some(ours) = &idle[0] else {
        t.text("probe→ban latency", "no ban seen", None, "—");
        return;
    };
    let base = idle.get(1).and_then(|b| b.as_ref());
    type Quantile = fn(&Latencies) -> f64;
    let f = |r: Option<&Latencies>, g: Quantile| r.map(g);
    let quantiles: [(&str, Quantile); 3] = [
        ("p50", |r| r.q(0.5)),
        ("p99", |r| r.q(0.99)),
        ("max", Latencies::max),
    ];
    for (name, g) in quantiles {
        t.row(
            &format!("probe→ban latency {name}, {n} SYNs from distinct sources, idle (ms)"),
            g(ours),
            f(base, g),
            f(ps.as_ref(), g),
            "",
            Better::Lower,
        );
    }
    t.row(
        &format!("probe→ban latency: probes of {n} missed (no ban within 1 s)"),
        f64::from(ours.missed),
        base.map(|b| f64::from(b.missed)),
        ps.as_ref().map(|p| f64::from(p.missed)),
        "",
        Better::Lower,
    );
    if let Some(ours_busy) = &busy[0] {
        let base_busy = busy.get(1).and_then(|b| b.as_ref());
        for (name, g) in quantiles {
            t.row(
                &format!("probe→ban latency {name} under bulk (a TCP transfer to port 80 throughout) (ms)"),
                g(ours_busy),
                f(base_busy, g),
                None,
                "",
                Better::Lower,
            );
        }
    }
    let mut who: Vec<String> = Vec::new();
    for (bin, (i, b)) in a.bins().iter().zip(idle.iter().zip(&busy)) {
        if let Some(i) = i {
            who.push(i.describe(&format!("{} idle", bin.who)));
        }
        if let Some(b) = b {
            who.push(b.describe(&format!("{} under bulk", bin.who)));
        }
    }
    if let Some(ps) = &ps {
        who.push(ps.describe("PortSentry idle"));
    }
    t.note(format!(
        "Latency: one spoofed SYN to port {PROBE_PORT} at a time, the next after the ban is seen \
         (closed loop, 1 ms pause), {n} probes. nftsentry (stealth, scan_trigger 0): from sendto() \
         in the attacker to the kernel's NEWSETELEM event for the source. PortSentry -stcp \
         (SCAN_TRIGGER 0, Debian's KILL_ROUTE `route add -host $TARGET$ reject`): to the \
         RTM_NEWROUTE event. Idle: nothing else crosses the namespaces (the machine's load \
         average is in the header). Under bulk: the same in a fresh pair while one TCP connection from \
         the attacker writes 128 KiB at a time to a listener on 192.0.2.1:80 (started 0.5 s \
         before the first probe, stopped after the last; PortSentry not measured). Each probe's \
         index and send time (since the first probe) are kept: {}.",
        who.join("; ")
    ));
}
