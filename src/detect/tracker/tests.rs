//! Tests of the tracker: trigger counting as PortSentry 1.2 did it, the
//! time window, forgetting, the bound on sources and its memory under a
//! flood, and a reference model.

use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

#[test]
fn top_sources_most_first() {
    let t0 = Instant::now();
    let mut t = Tracker::new(100, 10, Duration::from_secs(60));
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    for (src, n) in [
        ("192.0.2.1", 3),
        ("192.0.2.2", 5),
        ("2001:db8::1", 4),
        ("192.0.2.3", 1),
    ] {
        for _ in 0..n {
            t.record(ip(src), t0);
        }
    }
    t.forget(ip("192.0.2.2"));
    assert_eq!(
        t.top(2),
        vec![(ip("2001:db8::1"), 4), (ip("192.0.2.1"), 3)],
        "forgotten (banned) sources are not candidates"
    );
    assert_eq!(t.top(10).len(), 3);
    assert!(t.top(0).is_empty());
}

const MIN: Duration = Duration::from_secs(60);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn nth_v4(n: u32) -> IpAddr {
    // 198.18.0.0/15 and beyond: numbering only, never sent anywhere.
    IpAddr::V4(Ipv4Addr::from(0xc612_0000u32.wrapping_add(n)))
}

#[test]
fn distinct_ports_are_counted_within_the_window() {
    let t0 = Instant::now();
    let mut t = Tracker::new(10, 100, MIN);
    let a = ip("192.0.2.2");
    assert_eq!(t.record_port(a, 1, t0).1, 1);
    assert_eq!(t.record_port(a, 1, t0).1, 1);
    assert_eq!(t.record_port(a, 11, t0).1, 2);
    assert_eq!(t.record_port(a, 12, t0).1, 3);
    // The window restarts: so does the port count.
    assert_eq!(t.record_port(a, 13, t0 + MIN + Duration::from_secs(1)).1, 1);
}

#[test]
fn entry_is_small() {
    assert_eq!(Tracker::ENTRY_BYTES_V4, 24);
    assert_eq!(Tracker::ENTRY_BYTES_PREFIX6, 28);
    assert_eq!(Tracker::ENTRY_BYTES, 36);
}

/// Ports 79 and 111 are 15 modulo 32: a bitmap of ports modulo 32 counted
/// them as one port, and a scan of the two as forgeable evidence.
#[test]
fn distinct_ports_are_exact_not_modulo_32() {
    let t0 = Instant::now();
    let mut t = Tracker::new(10, 100, MIN);
    let a = ip("192.0.2.2");
    assert_eq!(t.record_port(a, 79, t0).1, 1);
    assert_eq!(t.record_port(a, 111, t0).1, 2);
    assert_eq!(t.record_port(a, 79, t0).1, 2);
    assert_eq!(t.record_port(a, 111, t0).1, 2);
    // 32 ports apart, and 0 (which `record` counts as) beside 32.
    let b = ip("2001:db8::7");
    assert_eq!(t.record_port(b, 0, t0).1, 1);
    assert_eq!(t.record_port(b, 32, t0).1, 2);
    assert_eq!(t.record_port(b, 64, t0).1, 3);
    // Exact up to PORTS_EXACT, then "that many or more".
    assert_eq!(t.record_port(b, 96, t0).1, PORTS_EXACT);
    assert_eq!(t.record_port(b, 0, t0).1, PORTS_EXACT);
}

/// A count whose source is not seen again for longer than 2^32 ms (49.7
/// days) ends with its window, not when the tick counter wraps back near
/// its start.
#[test]
fn counts_survive_the_tick_wrap_correctly() {
    let t0 = Instant::now();
    let mut t = Tracker::new(10, 3, MIN);
    let (a, b) = (ip("192.0.2.2"), ip("192.0.2.3"));
    t.record(a, t0);
    t.record(a, t0);
    // b probes now and then (the loop goes on), a comes back 2^32 ms +
    // 1 s later: without the sweep its age would read 1 s.
    let wrap = Duration::from_millis(1 << 32);
    let mut at = t0;
    while at < t0 + wrap {
        at += Duration::from_secs(86_400);
        t.record(b, at);
    }
    let back = t0 + wrap + Duration::from_secs(1);
    assert_eq!(t.progress(a, back), None);
    assert_eq!(
        t.record(a, back),
        Outcome::Counted {
            count: 1,
            needed: 3
        }
    );
    // With no probe at all in between, progress says the same.
    let mut u = Tracker::new(10, 3, MIN);
    u.record(a, t0);
    assert!(u.progress(a, t0 + Duration::from_secs(1)).is_some());
    assert_eq!(u.progress(a, back), None);
    assert_eq!(u.progress(a, t0 + 2 * wrap + Duration::from_secs(1)), None);
}

/// A window of a year counts in coarser ticks, and a reload from a short
/// window to a year (and back) keeps the counts in progress.
#[test]
fn long_windows_and_reload_across_tick_sizes() {
    let t0 = Instant::now();
    let year = Duration::from_secs(365 * 86_400);
    let mut t = Tracker::new(10, 3, year);
    let a = ip("192.0.2.2");
    t.record(a, t0);
    t.record(a, t0 + Duration::from_secs(200 * 86_400));
    assert_eq!(
        t.record(a, t0 + Duration::from_secs(364 * 86_400)),
        Outcome::Trigger
    );
    let later = t0 + Duration::from_secs(366 * 86_400);
    assert_eq!(
        t.record(a, later),
        Outcome::Counted {
            count: 1,
            needed: 3
        }
    );
    t.set_params(3, MIN);
    let p = t.progress(a, later + Duration::from_secs(10)).unwrap();
    assert_eq!(p.count, 1);
    // Within a tick of the 32 ms the count began in.
    assert!(p.window_left <= Duration::from_secs(50), "{p:?}");
    assert!(p.window_left >= Duration::from_millis(49_900), "{p:?}");
    t.set_params(3, year);
    assert_eq!(
        t.record(a, later + Duration::from_secs(20)),
        Outcome::Counted {
            count: 2,
            needed: 3
        }
    );
    // Back to a minute: the count began over a minute ago, so it is over.
    t.set_params(3, MIN);
    assert_eq!(t.progress(a, later + Duration::from_secs(90)), None);
}

#[test]
fn trigger_zero_and_one_act_on_first_probe() {
    for trigger in [0, 1] {
        let t0 = Instant::now();
        let mut t = Tracker::new(10, trigger, MIN);
        assert_eq!(t.record(ip("192.0.2.2"), t0), Outcome::Trigger);
        // Not blocked by the caller (e.g. log-only mode): every probe acts,
        // as in PortSentry.
        assert_eq!(t.record(ip("192.0.2.2"), t0), Outcome::Trigger);
        assert_eq!(t.record(ip("2001:db8:1::2"), t0), Outcome::Trigger);
    }
}

#[test]
fn trigger_two_and_three() {
    let t0 = Instant::now();
    let a = ip("192.0.2.2");
    let b = ip("2001:db8:1::2");
    let mut t = Tracker::new(10, 2, MIN);
    assert_eq!(
        t.record(a, t0),
        Outcome::Counted {
            count: 1,
            needed: 2
        }
    );
    assert_eq!(
        t.record(b, t0),
        Outcome::Counted {
            count: 1,
            needed: 2
        }
    );
    assert_eq!(t.record(a, t0 + Duration::from_secs(1)), Outcome::Trigger);
    assert_eq!(t.record(a, t0 + Duration::from_secs(2)), Outcome::Trigger);
    assert_eq!(t.record(b, t0 + Duration::from_secs(2)), Outcome::Trigger);

    let mut t = Tracker::new(10, 3, MIN);
    assert_eq!(
        t.record(a, t0),
        Outcome::Counted {
            count: 1,
            needed: 3
        }
    );
    assert_eq!(
        t.record(a, t0),
        Outcome::Counted {
            count: 2,
            needed: 3
        }
    );
    assert_eq!(t.record(a, t0), Outcome::Trigger);
    assert_eq!(t.record(a, t0), Outcome::Trigger);
    assert_eq!(t.len(), 1);
}

#[test]
fn window_expiry_restarts_the_count() {
    let t0 = Instant::now();
    let a = ip("198.51.100.7");
    let mut t = Tracker::new(10, 3, Duration::from_secs(10));
    assert_eq!(
        t.record(a, t0),
        Outcome::Counted {
            count: 1,
            needed: 3
        }
    );
    // Exactly at the window's end still counts.
    assert_eq!(
        t.record(a, t0 + Duration::from_secs(10)),
        Outcome::Counted {
            count: 2,
            needed: 3
        }
    );
    // Past it: the count starts over with this probe.
    let t1 = t0 + Duration::from_millis(10_001);
    assert_eq!(
        t.record(a, t1),
        Outcome::Counted {
            count: 1,
            needed: 3
        }
    );
    assert_eq!(
        t.record(a, t1 + Duration::from_secs(5)),
        Outcome::Counted {
            count: 2,
            needed: 3
        }
    );
    assert_eq!(t.record(a, t1 + Duration::from_secs(9)), Outcome::Trigger);
    // A reached trigger also expires.
    let t2 = t1 + Duration::from_secs(30);
    assert_eq!(
        t.record(a, t2),
        Outcome::Counted {
            count: 1,
            needed: 3
        }
    );
}

#[test]
fn set_params_applies_to_counts_in_progress() {
    let t0 = Instant::now();
    let a = ip("192.0.2.9");
    let mut t = Tracker::new(10, 5, MIN);
    assert_eq!(
        t.record(a, t0),
        Outcome::Counted {
            count: 1,
            needed: 5
        }
    );
    assert_eq!(
        t.record(a, t0),
        Outcome::Counted {
            count: 2,
            needed: 5
        }
    );
    t.set_params(3, MIN);
    assert_eq!(t.record(a, t0), Outcome::Trigger);
    t.set_params(10, Duration::from_secs(1));
    assert_eq!(
        t.record(a, t0 + Duration::from_secs(2)),
        Outcome::Counted {
            count: 1,
            needed: 10
        }
    );
}

#[test]
fn forgotten_sources_count_afresh() {
    let t0 = Instant::now();
    let a = ip("192.0.2.2");
    let mut t = Tracker::new(10, 2, MIN);
    t.record(a, t0);
    assert_eq!(t.record(a, t0), Outcome::Trigger);
    t.forget(a);
    assert_eq!(t.len(), 0);
    assert_eq!(
        t.record(a, t0),
        Outcome::Counted {
            count: 1,
            needed: 2
        }
    );
    // Forgetting an unknown source is a no-op.
    t.forget(ip("203.0.113.1"));
    assert_eq!(t.len(), 1);
}

#[test]
fn mapped_v6_is_the_same_source() {
    let t0 = Instant::now();
    let mut t = Tracker::new(10, 2, MIN);
    assert_eq!(
        t.record(ip("192.0.2.2"), t0),
        Outcome::Counted {
            count: 1,
            needed: 2
        }
    );
    assert_eq!(t.record(ip("::ffff:192.0.2.2"), t0), Outcome::Trigger);
    t.forget(ip("192.0.2.2"));
    assert!(t.is_empty());
}

#[test]
fn evicts_least_recently_seen() {
    let t0 = Instant::now();
    let (a, b, c, d) = (nth_v4(1), nth_v4(2), nth_v4(3), nth_v4(4));
    let mut t = Tracker::new(3, 3, MIN);
    t.record(a, t0);
    t.record(b, t0);
    t.record(c, t0);
    // Seeing A again makes B the least recent.
    assert_eq!(
        t.record(a, t0),
        Outcome::Counted {
            count: 2,
            needed: 3
        }
    );
    assert_eq!(
        t.record(d, t0),
        Outcome::Counted {
            count: 1,
            needed: 3
        }
    );
    assert_eq!((t.len(), t.evictions()), (3, 1));
    // A and C kept their counts; B starts over (and evicts C, now least
    // recent).
    assert_eq!(t.record(a, t0), Outcome::Trigger);
    assert_eq!(
        t.record(b, t0),
        Outcome::Counted {
            count: 1,
            needed: 3
        }
    );
    assert_eq!(t.evictions(), 2);
    assert_eq!(
        t.record(d, t0),
        Outcome::Counted {
            count: 2,
            needed: 3
        }
    );
    assert_eq!(
        t.record(c, t0),
        Outcome::Counted {
            count: 1,
            needed: 3
        }
    );
}

#[test]
fn million_sources_in_ten_thousand() {
    let t0 = Instant::now();
    let cap = 10_000;
    let mut t = Tracker::new(cap, 3, MIN);
    for n in 0..1_000_000u32 {
        let o = t.record(nth_v4(n), t0);
        assert_eq!(
            o,
            Outcome::Counted {
                count: 1,
                needed: 3
            }
        );
        assert!(t.len() <= cap);
    }
    assert_eq!(t.len(), cap);
    assert_eq!(t.evictions(), 1_000_000 - cap as u64);
    // Memory is what the capacity needs: 16384 entries at most (Vec
    // doubling) and a 32768-slot table.
    let bound = 16_384 * Tracker::ENTRY_BYTES + 32_768 * 4;
    assert!(t.memory_bytes() <= bound, "{} > {bound}", t.memory_bytes());
    // The newest are the ones kept.
    assert_eq!(
        t.record(nth_v4(999_999), t0),
        Outcome::Counted {
            count: 2,
            needed: 3
        }
    );
    assert_eq!(
        t.record(nth_v4(990_000), t0),
        Outcome::Counted {
            count: 2,
            needed: 3
        }
    );
    assert_eq!(
        t.record(nth_v4(0), t0),
        Outcome::Counted {
            count: 1,
            needed: 3
        }
    );
}

#[test]
fn bytes_per_source_at_a_million() {
    let t0 = Instant::now();
    let n = 1_000_000u32;
    let mut t = Tracker::new(n as usize, 2, MIN);
    let start = Instant::now();
    for i in 0..n {
        t.record(nth_v4(i), t0);
    }
    let elapsed = start.elapsed();
    assert_eq!(t.len(), n as usize);
    assert_eq!(t.evictions(), 0);
    let per = t.memory_bytes() as f64 / n as f64;
    eprintln!(
        "tracker: {n} sources, {} bytes ({per:.1} bytes/source, entry {} bytes), {:.0} ns/insert",
        t.memory_bytes(),
        Tracker::ENTRY_BYTES,
        elapsed.as_nanos() as f64 / n as f64
    );
    // Vec growth can leave up to 2x entry capacity; the table is 4 bytes
    // per slot at load 1/2 or more.
    assert!(per <= (2 * Tracker::ENTRY_BYTES + 16) as f64, "{per}");
    assert_eq!(t.record(nth_v4(n / 2), t0), Outcome::Trigger);

    // Warm: repeat probes from tracked sources, then new sources that
    // each evict one; neither may grow memory.
    let bytes = t.memory_bytes();
    let start = Instant::now();
    for i in 0..n {
        t.record(nth_v4(i.wrapping_mul(7919) % n), t0);
    }
    let hit = start.elapsed();
    let start = Instant::now();
    for i in n..2 * n {
        t.record(nth_v4(i), t0);
    }
    let evict = start.elapsed();
    assert_eq!(t.memory_bytes(), bytes);
    assert_eq!(t.evictions(), n as u64);
    eprintln!(
        "tracker warm: {:.0} ns/probe from a tracked source, {:.0} ns/probe from a new source (evicting)",
        hit.as_nanos() as f64 / n as f64,
        evict.as_nanos() as f64 / n as f64
    );
}

/// Reference model: a plain vector, oldest first per list.
struct Model {
    cap: usize,
    needed: u32,
    window_ms: u64,
    // (key, count, start, last_seen_tick)
    v: Vec<(IpAddr, u32, u64, u64)>,
    tick: u64,
}

fn canon(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl Model {
    fn pos(&self, ip: IpAddr) -> Option<usize> {
        self.v.iter().position(|e| e.0 == canon(ip))
    }
    fn make_room(&mut self) {
        if self.v.len() < self.cap {
            return;
        }
        let victim = self
            .v
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| e.3)
            .map(|(i, _)| i)
            .unwrap();
        self.v.remove(victim);
    }
    fn record(&mut self, ip: IpAddr, t: u64) -> Outcome {
        self.tick += 1;
        let tick = self.tick;
        match self.pos(ip) {
            Some(p) => {
                let e = &mut self.v[p];
                e.3 = tick;
                if t.saturating_sub(e.2) > self.window_ms {
                    e.1 = 0;
                    e.2 = t;
                }
                e.1 += 1;
                let c = e.1;
                self.judge(c)
            }
            None => {
                self.make_room();
                self.v.push((canon(ip), 1, t, tick));
                self.judge(1)
            }
        }
    }
    fn judge(&self, c: u32) -> Outcome {
        if c >= self.needed {
            Outcome::Trigger
        } else {
            Outcome::Counted {
                count: c,
                needed: self.needed,
            }
        }
    }
    fn forget(&mut self, ip: IpAddr) {
        if let Some(p) = self.pos(ip) {
            self.v.remove(p);
        }
    }
}

#[test]
fn agrees_with_reference_model() {
    let mut s = 0x0123_4567_89ab_cdefu64;
    let mut rnd = move |n: u64| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s % n
    };
    for round in 0..20 {
        let cap = 1 + rnd(40) as usize;
        let needed = 1 + rnd(4) as u32;
        let mut t = Tracker::new(cap, needed, Duration::from_millis(50));
        let mut m = Model {
            cap,
            needed,
            window_ms: 50,
            v: Vec::new(),
            tick: 0,
        };
        let t0 = Instant::now();
        let mut now = 0u64;
        for step in 0..20_000 {
            now += rnd(5);
            let at = t0 + Duration::from_millis(now);
            let k = rnd(3 * cap as u64 + 2) as u32;
            // Half the v4 sources also appear in mapped form.
            let src = if k % 2 == 0 && rnd(2) == 0 {
                IpAddr::V6(Ipv4Addr::from(0xc612_0000 + k).to_ipv6_mapped())
            } else if k % 7 == 3 {
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, k as u16))
            } else {
                nth_v4(k)
            };
            match rnd(10) {
                0 | 1 => {
                    t.forget(src);
                    m.forget(src);
                }
                _ => {
                    let got = t.record(src, at);
                    let want = m.record(src, now);
                    assert_eq!(got, want, "round {round} step {step} src {src}");
                }
            }
            assert_eq!(t.len(), m.v.len(), "round {round} step {step}");
        }
    }
}

#[test]
fn progress_is_the_count_in_the_window_and_changes_nothing() {
    let t0 = Instant::now();
    let mut t = Tracker::new(100, 3, Duration::from_secs(60));
    let a: IpAddr = "198.51.100.7".parse().unwrap();
    assert_eq!(t.progress(a, t0), None);
    t.record(a, t0);
    t.record(a, t0 + Duration::from_secs(10));
    let p = t.progress(a, t0 + Duration::from_secs(20)).unwrap();
    assert_eq!((p.count, p.needed), (2, 3));
    assert_eq!(p.window_left, Duration::from_secs(40));
    // Asking twice changes nothing; past the window the count is over.
    assert_eq!(t.progress(a, t0 + Duration::from_secs(20)), Some(p));
    assert_eq!(t.progress(a, t0 + Duration::from_secs(61)), None);
    // The mapped form is the same host.
    let m: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
    assert_eq!(t.progress(m, t0 + Duration::from_secs(20)), Some(p));
}

/// `millis` is `as_millis` saturated to u64, without the u128 division.
#[test]
fn millis_is_as_millis_saturated() {
    for d in [
        Duration::ZERO,
        Duration::from_nanos(999_999),
        Duration::from_nanos(1_000_000),
        Duration::new(1, 999_999_999),
        Duration::new(u64::MAX / 1000, 999_999_999),
        Duration::new(u64::MAX / 1000 + 1, 0),
        Duration::MAX,
    ] {
        assert_eq!(
            millis(d),
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            "{d:?}"
        );
    }
}
