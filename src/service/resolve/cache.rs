//! resolve::cache: the names found (and not found) by address, bounded,
//! each kept for its TTL: the oldest insertion goes first when full.
//!
//! Knows nothing of DNS or of sockets.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long a name found is kept.
pub const POSITIVE_TTL: Duration = Duration::from_secs(3600);
/// How long "no name" (NXDOMAIN, no PTR, bad name, timeout, failure) is kept.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(300);

struct Entry {
    name: Option<String>,
    expires: Instant,
    generation: u64,
}

/// Bounded cache: oldest insertion goes first when full; entries also expire.
pub(super) struct Cache {
    map: HashMap<IpAddr, Entry>,
    /// Insertion order; an item is stale when the map holds a newer generation.
    order: VecDeque<(IpAddr, u64)>,
    capacity: usize,
    generation: u64,
}

impl Cache {
    pub(super) fn new(capacity: usize) -> Cache {
        Cache {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity,
            generation: 0,
        }
    }

    pub(super) fn get(&mut self, ip: IpAddr, now: Instant) -> Option<Option<String>> {
        let entry = self.map.get(&ip)?;
        if now >= entry.expires {
            self.map.remove(&ip);
            return None;
        }
        Some(entry.name.clone())
    }

    pub(super) fn insert(&mut self, ip: IpAddr, name: Option<String>, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        let ttl = if name.is_some() {
            POSITIVE_TTL
        } else {
            NEGATIVE_TTL
        };
        self.generation += 1;
        let generation = self.generation;
        self.map.insert(
            ip,
            Entry {
                name,
                expires: now + ttl,
                generation,
            },
        );
        self.order.push_back((ip, generation));
        while self.map.len() > self.capacity {
            let Some((old, g)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&old).is_some_and(|e| e.generation == g) {
                self.map.remove(&old);
            }
        }
        // Re-inserted and expired addresses leave stale items; drop them
        // before the queue outgrows the map by much.
        if self.order.len() > 2 * self.capacity + 16 {
            let map = &self.map;
            self.order
                .retain(|(ip, g)| map.get(ip).is_some_and(|e| e.generation == *g));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn cache_bounds_and_ttls() {
        let t0 = Instant::now();
        let ip = |n: u8| IpAddr::V4(Ipv4Addr::new(198, 51, 100, n));
        let mut c = Cache::new(3);
        c.insert(ip(1), Some("one".into()), t0);
        c.insert(ip(2), None, t0);
        assert_eq!(c.get(ip(1), t0), Some(Some("one".into())));
        assert_eq!(c.get(ip(2), t0), Some(None));
        assert_eq!(c.get(ip(2), t0 + NEGATIVE_TTL), None, "negative TTL");
        assert_eq!(c.get(ip(1), t0 + NEGATIVE_TTL), Some(Some("one".into())));
        assert_eq!(c.get(ip(1), t0 + POSITIVE_TTL), None, "positive TTL");
        for n in 0..100 {
            c.insert(ip(n), Some(format!("h{n}")), t0);
            assert!(c.map.len() <= 3 && c.order.len() <= 2 * 3 + 16);
        }
        assert_eq!(c.get(ip(99), t0), Some(Some("h99".into())));
        assert_eq!(c.get(ip(96), t0), None, "oldest evicted");
        // Re-inserting one address again and again keeps it and stays bounded.
        for _ in 0..100 {
            c.insert(ip(7), None, t0);
        }
        assert!(c.order.len() <= 2 * 3 + 16);
        assert_eq!(c.get(ip(7), t0), Some(None));
        let mut none = Cache::new(0);
        none.insert(ip(1), None, t0);
        assert_eq!(none.get(ip(1), t0), None);
    }
}
