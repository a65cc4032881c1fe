//! held: the fleet's decisions this host enforces, by LAPI id, and what the
//! kernel's interval sets must hold for them: disjoint ranges, each with
//! the latest end of the decisions covering it (an address under a short
//! `Ip` decision and a long `Range` one stays banned for the longer).
//!
//! Pure: the caller gives the clock and writes the sets.

use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::time::{Duration, Instant};

use super::lapi::Usable;
use crate::cidr::Cidr;

/// One decision in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub net: Cidr,
    pub until: Instant,
    pub origin: String,
    pub scenario: String,
}

/// A range of the kernel set: inclusive bounds and the time left.
pub type Segment = (u128, u128, Duration);

#[derive(Debug, Default)]
pub struct HeldDecisions {
    pub by_id: BTreeMap<i64, Held>,
    /// Ids already logged as vetoed or as our own.
    noted: HashSet<i64>,
}

impl HeldDecisions {
    /// Applies a stream answer read at `now`: a full one replaces what is
    /// held. Returns the decisions new to this host.
    pub fn apply(
        &mut self,
        full: bool,
        new: Vec<Usable>,
        deleted: &[i64],
        now: Instant,
    ) -> Vec<(i64, Held)> {
        if full {
            self.by_id.clear();
        }
        for id in deleted {
            self.by_id.remove(id);
            self.noted.remove(id);
        }
        let mut added = Vec::new();
        for u in new {
            let h = Held {
                net: u.net,
                until: now + u.left,
                origin: u.origin,
                scenario: u.scenario,
            };
            if self.by_id.insert(u.id, h.clone()).is_none() {
                added.push((u.id, h));
            }
        }
        self.expire(now);
        added
    }

    /// Forgets decisions whose time is over.
    pub fn expire(&mut self, now: Instant) {
        self.by_id.retain(|_, h| h.until > now);
        let ids: HashSet<i64> = self.by_id.keys().copied().collect();
        self.noted.retain(|id| ids.contains(id));
    }

    /// True the first time `id` is noted (a veto or our own decision is
    /// logged once).
    pub fn note_once(&mut self, id: i64) -> bool {
        self.noted.insert(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The decision covering `addr` that lasts longest.
    pub fn covering(&self, addr: &std::net::IpAddr) -> Option<(i64, &Held)> {
        self.by_id
            .iter()
            .filter(|(_, h)| h.net.contains(addr))
            .max_by_key(|(_, h)| h.until)
            .map(|(id, h)| (*id, h))
    }

    /// The sets' content at `now` for one family, leaving out the ids in
    /// `skip` (our own bans, already in the ban sets).
    pub fn segments(&self, v6: bool, now: Instant, skip: &HashSet<i64>) -> Vec<Segment> {
        let ranges: Vec<(u128, u128, Instant)> = self
            .by_id
            .iter()
            .filter(|(id, h)| h.net.is_ipv4() != v6 && !skip.contains(id) && h.until > now)
            .map(|(_, h)| {
                let (s, e) = h.net.range();
                (s, e, h.until)
            })
            .collect();
        segments(ranges, now)
    }
}

/// Disjoint ranges covering `ranges`, each with the latest end among those
/// covering it; neighbours with the same end are joined.
pub fn segments(mut ranges: Vec<(u128, u128, Instant)>, now: Instant) -> Vec<Segment> {
    ranges.sort_by_key(|r| r.0);
    // Boundaries: every start and every end + 1.
    let mut bounds: Vec<u128> = Vec::with_capacity(ranges.len() * 2);
    for &(s, e, _) in &ranges {
        bounds.push(s);
        if let Some(n) = e.checked_add(1) {
            bounds.push(n);
        }
    }
    bounds.sort_unstable();
    bounds.dedup();
    let mut out: Vec<(u128, u128, Instant)> = Vec::new();
    // Max-heap of (end instant, range end) of the ranges open here; those
    // already closed are popped when they come to the top. Between two
    // boundaries the open ranges do not change.
    let mut open: BinaryHeap<(Instant, u128)> = BinaryHeap::new();
    let mut next = 0;
    for (i, &b) in bounds.iter().enumerate() {
        while next < ranges.len() && ranges[next].0 == b {
            open.push((ranges[next].2, ranges[next].1));
            next += 1;
        }
        while open.peek().is_some_and(|&(_, e)| e < b) {
            open.pop();
        }
        let Some(&(until, _)) = open.peek() else {
            continue;
        };
        let end = match bounds.get(i + 1) {
            Some(&n) => n - 1,
            None => u128::MAX,
        };
        match out.last_mut() {
            Some(last) if last.2 == until && last.1.checked_add(1) == Some(b) => last.1 = end,
            _ => out.push((b, end, until)),
        }
    }
    out.into_iter()
        .map(|(s, e, t)| {
            (
                s,
                e,
                t.saturating_duration_since(now)
                    .max(Duration::from_millis(1)),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_decisions_give_disjoint_ranges_with_the_latest_end() {
        let now = Instant::now();
        let s = |n: u64| now + Duration::from_secs(n);
        // A /24 for 100 s, an address inside it for 500 s, another range
        // apart for 50 s.
        let segs = segments(
            vec![(0, 255, s(100)), (10, 10, s(500)), (1000, 1010, s(50))],
            now,
        );
        let secs: Vec<(u128, u128, u64)> =
            segs.iter().map(|&(a, b, d)| (a, b, d.as_secs())).collect();
        assert_eq!(
            secs,
            vec![(0, 9, 100), (10, 10, 500), (11, 255, 100), (1000, 1010, 50)]
        );
        // Adjacent with the same end are joined; the top of the space works.
        let segs = segments(
            vec![(0, 4, s(9)), (5, 9, s(9)), (u128::MAX - 1, u128::MAX, s(9))],
            now,
        );
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0].1, 9);
        assert_eq!(segs[1].1, u128::MAX);
        // Every address is covered by exactly the longest decision over it.
        let input = vec![
            (5, 20, s(30)),
            (0, 10, s(60)),
            (15, 40, s(10)),
            (18, 18, s(90)),
        ];
        let segs = segments(input.clone(), now);
        for a in 0..=45u128 {
            let want = input
                .iter()
                .filter(|r| r.0 <= a && a <= r.1)
                .map(|r| r.2)
                .max();
            let got: Vec<_> = segs.iter().filter(|x| x.0 <= a && a <= x.1).collect();
            match want {
                None => assert!(got.is_empty(), "{a}"),
                Some(t) => {
                    assert_eq!(got.len(), 1, "{a}: {segs:?}");
                    assert_eq!(got[0].2, t.duration_since(now), "{a}");
                }
            }
        }
    }

    #[test]
    fn a_full_sync_replaces_and_deletions_remove() {
        let now = Instant::now();
        let u = |id, net: &str, secs| Usable {
            id,
            net: net.parse().unwrap(),
            left: Duration::from_secs(secs),
            origin: "cscli".into(),
            scenario: "manual".into(),
        };
        let mut h = HeldDecisions::default();
        assert_eq!(
            h.apply(
                true,
                vec![u(1, "192.0.2.1", 60), u(2, "2001:db8::/64", 60)],
                &[],
                now
            )
            .len(),
            2
        );
        assert_eq!(h.segments(false, now, &HashSet::new()).len(), 1);
        assert_eq!(h.segments(true, now, &HashSet::new()).len(), 1);
        // Refreshed: the same id with new time is not new.
        assert!(
            h.apply(false, vec![u(1, "192.0.2.1", 600)], &[2], now)
                .is_empty()
        );
        assert_eq!(h.len(), 1);
        assert_eq!(
            h.segments(false, now, &HashSet::new())[0].2,
            Duration::from_secs(600)
        );
        assert!(h.segments(false, now, &HashSet::from([1])).is_empty());
        h.apply(true, vec![u(3, "198.51.100.0/24", 5)], &[], now);
        assert_eq!(h.by_id.keys().copied().collect::<Vec<_>>(), vec![3]);
        h.expire(now + Duration::from_secs(6));
        assert!(h.is_empty());
    }
}
