//! Per-source memory of probes: counts each source's probes against
//! `scan_trigger` within a time window, and stays within a fixed number of
//! sources however many distinct (spoofed) sources arrive. Whether a source
//! is banned is the ledger's to say, not the tracker's: a banned source is
//! forgotten here, and its probes never reach the count.
//!
//! Trigger semantics follow PortSentry 1.2's `CheckStateEngine`
//! (portsentry.c): with SCAN_TRIGGER 0 the check is skipped and every probe
//! acts; otherwise a probe acts when it and the earlier ones from the same
//! source number at least SCAN_TRIGGER (`gotOne` starts at 1 and must reach
//! `gblConfigTriggerCount`), so 1 also means the first probe, N the Nth, and
//! every probe after the Nth acts too until the source is blocked. PortSentry
//! remembered the last 50 probes (MAXSTATE) with no time limit; we count per
//! source and restart the count when the first counted probe is older than
//! `window`.
//!
//! Layout, for a million sources: entries live in one `Vec` (40 bytes each)
//! and carry their least-recently-seen links as `u32` indices; a lookup goes
//! through an open-addressing table of `u32` entry indices (linear probing,
//! load at most 1/2, keyed SipHash so spoofed sources cannot aim collisions).
//! Once the tracker is full nothing allocates: the victim's slot is reused.
//!
//! Eviction: the least recently seen source goes first.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// What one probe means for its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Counted, below the trigger: log at most, do not act.
    Counted { count: u32, needed: u32 },
    /// This probe acts (alert and ban).
    Trigger,
}

/// A tracked source's count (`Tracker::progress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub count: u32,
    pub needed: u32,
    pub window_left: Duration,
}

const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// The source as an IPv6 address (IPv4 as ::ffff:a.b.c.d), high and
    /// low halves: a v4 source and its mapped form are one host.
    key: [u64; 2],
    /// Milliseconds since the tracker's epoch when the count began.
    start_ms: u64,
    /// Neighbours in this entry's recency list (towards head / tail).
    prev: u32,
    next: u32,
    count: u32,
    /// The ports probed since the count began, one bit per port modulo
    /// 32: its population is how many distinct ports (a little less when
    /// two share a bit, never more).
    ports: u32,
}

#[derive(Clone, Copy, Debug)]
struct List {
    /// Most recently seen.
    head: u32,
    /// Least recently seen: the next victim.
    tail: u32,
}

const EMPTY_LIST: List = List {
    head: NIL,
    tail: NIL,
};

pub struct Tracker {
    entries: Vec<Entry>,
    /// Open addressing: each slot is NIL or an index into `entries`.
    table: Vec<u32>,
    hasher: RandomState,
    /// Every entry, most recently seen first.
    list: List,
    capacity: usize,
    needed: u32,
    window_ms: u64,
    /// The first instant we were given; times are kept relative to it.
    epoch: Option<Instant>,
    evictions: u64,
}

fn key_of(ip: IpAddr) -> [u64; 2] {
    let v6 = match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    };
    let n = u128::from(v6);
    [(n >> 64) as u64, n as u64]
}

impl Tracker {
    /// `capacity` sources at most (at least 1, at most `u32::MAX - 1`);
    /// `scan_trigger` as PortSentry's SCAN_TRIGGER; probes counted within
    /// `window` of the first counted one.
    pub fn new(capacity: usize, scan_trigger: u32, window: Duration) -> Tracker {
        let mut t = Tracker {
            entries: Vec::new(),
            table: vec![NIL; 16],
            hasher: RandomState::new(),
            list: EMPTY_LIST,
            capacity: capacity.clamp(1, NIL as usize - 1),
            needed: 1,
            window_ms: 0,
            epoch: None,
            evictions: 0,
        };
        t.set_params(scan_trigger, window);
        t
    }

    /// The `n` sources with the most probes counted now, most first:
    /// `status` shows them. One pass, no allocation
    /// beyond the answer.
    pub fn top(&self, n: usize) -> Vec<(IpAddr, u32)> {
        let mut best: Vec<(u32, [u64; 2])> = Vec::with_capacity(n + 1);
        for e in &self.entries {
            if best.len() == n && best.last().is_some_and(|&(c, _)| c >= e.count) {
                continue;
            }
            let at = best.partition_point(|&(c, _)| c >= e.count);
            best.insert(at, (e.count, e.key));
            best.truncate(n);
        }
        best.into_iter()
            .map(|(c, k)| {
                let v6 = std::net::Ipv6Addr::from((u128::from(k[0]) << 64) | u128::from(k[1]));
                let ip = match v6.to_ipv4_mapped() {
                    Some(v4) => IpAddr::V4(v4),
                    None => IpAddr::V6(v6),
                };
                (ip, c)
            })
            .collect()
    }

    /// New trigger and window (on reload); counts in progress are kept.
    pub fn set_params(&mut self, scan_trigger: u32, window: Duration) {
        // 0 and 1 both mean "the first probe acts".
        self.needed = scan_trigger.max(1);
        self.window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    }

    /// Count one probe from `src` seen at `now`.
    pub fn record(&mut self, src: IpAddr, now: Instant) -> Outcome {
        self.record_port(src, 0, now).0
    }

    /// Count one probe from `src` to `port`; also how many distinct ports
    /// the source probed in its window (at least 1).
    pub fn record_port(&mut self, src: IpAddr, port: u16, now: Instant) -> (Outcome, u32) {
        let t = self.ms(now);
        let key = key_of(src);
        let bit = 1u32 << (port % 32);
        let i = match self.find(key) {
            Some((_, i)) => i,
            None => {
                let i = self.alloc(key, t);
                let e = &mut self.entries[i as usize];
                e.count = 1;
                e.ports = bit;
                return (self.judge(1), 1);
            }
        };
        self.touch(i);
        let window_ms = self.window_ms;
        let e = &mut self.entries[i as usize];
        if t.saturating_sub(e.start_ms) > window_ms {
            e.count = 0;
            e.ports = 0;
            e.start_ms = t;
        }
        e.count = e.count.saturating_add(1);
        e.ports |= bit;
        let (count, ports) = (e.count, e.ports.count_ones());
        (self.judge(count), ports)
    }

    /// Where `src` stands at `now` (nothing changes): the probes counted in
    /// its window, the trigger, and the time left in the window. `None`
    /// when it is not tracked or its window is over (its next probe counts
    /// from one).
    pub fn progress(&self, src: IpAddr, now: Instant) -> Option<Progress> {
        let epoch = self.epoch?;
        let t = u64::try_from(now.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX);
        let (_, i) = self.find(key_of(src))?;
        let e = &self.entries[i as usize];
        let age = t.saturating_sub(e.start_ms);
        if age > self.window_ms {
            return None;
        }
        Some(Progress {
            count: e.count,
            needed: self.needed,
            window_left: Duration::from_millis(self.window_ms - age),
        })
    }

    /// Drop everything known about `src` (it is banned now, or its ban
    /// ended): its next probe starts a fresh count.
    pub fn forget(&mut self, src: IpAddr) {
        if let Some((slot, i)) = self.find(key_of(src)) {
            self.unlink(i);
            self.remove_slot(slot);
            let last = (self.entries.len() - 1) as u32;
            if i != last {
                // Move the last entry into the hole and repoint everything
                // that referred to it.
                let moved = self.entries[last as usize];
                self.entries[i as usize] = moved;
                match moved.prev {
                    NIL => self.list.head = i,
                    p => self.entries[p as usize].next = i,
                }
                match moved.next {
                    NIL => self.list.tail = i,
                    n => self.entries[n as usize].prev = i,
                }
                let (mslot, _) = self.find(moved.key).expect("moved entry is in the table");
                self.table[mslot] = i;
            }
            self.entries.pop();
        }
    }

    /// Sources tracked now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sources dropped to make room since the tracker was made.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Heap bytes held (entries and index table, allocated capacity).
    pub fn memory_bytes(&self) -> usize {
        self.entries.capacity() * size_of::<Entry>() + self.table.capacity() * size_of::<u32>()
    }

    /// Bytes one tracked source costs in the entry vector (excluding the
    /// index table's 4 bytes per slot).
    pub const ENTRY_BYTES: usize = size_of::<Entry>();

    // --- internals ----------------------------------------------------------

    fn judge(&self, count: u32) -> Outcome {
        if count >= self.needed {
            Outcome::Trigger
        } else {
            Outcome::Counted {
                count,
                needed: self.needed,
            }
        }
    }

    fn ms(&mut self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        u64::try_from(now.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn home(&self, key: [u64; 2]) -> usize {
        self.hasher.hash_one(key) as usize & (self.table.len() - 1)
    }

    /// (table slot, entry index) of `key`.
    fn find(&self, key: [u64; 2]) -> Option<(usize, u32)> {
        let mask = self.table.len() - 1;
        let mut s = self.home(key);
        loop {
            match self.table[s] {
                NIL => return None,
                i if self.entries[i as usize].key == key => return Some((s, i)),
                _ => s = (s + 1) & mask,
            }
        }
    }

    fn insert_slot(&mut self, key: [u64; 2], i: u32) {
        let mask = self.table.len() - 1;
        let mut s = self.home(key);
        while self.table[s] != NIL {
            s = (s + 1) & mask;
        }
        self.table[s] = i;
    }

    /// Empty `slot` by backward-shift deletion (no tombstones, so probe
    /// lengths do not decay under churn).
    fn remove_slot(&mut self, slot: usize) {
        let mask = self.table.len() - 1;
        let mut hole = slot;
        let mut j = slot;
        loop {
            j = (j + 1) & mask;
            let i = self.table[j];
            if i == NIL {
                break;
            }
            let home = self.home(self.entries[i as usize].key);
            // Leave it if its home lies cyclically in (hole, j]: moving it
            // before its home would make it unreachable.
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.table[hole] = i;
                hole = j;
            }
        }
        self.table[hole] = NIL;
    }

    /// Make room for one more entry in the index table (load at most 1/2).
    fn reserve_slot(&mut self) {
        if (self.entries.len() + 1) * 2 <= self.table.len() {
            return;
        }
        let slots = self.table.len() * 2;
        self.table.clear();
        self.table.resize(slots, NIL);
        for i in 0..self.entries.len() {
            let key = self.entries[i].key;
            self.insert_slot(key, i as u32);
        }
    }

    /// A fresh entry for `key` at the head of the list, evicting if full.
    fn alloc(&mut self, key: [u64; 2], t: u64) -> u32 {
        let fresh = Entry {
            key,
            start_ms: t,
            prev: NIL,
            next: NIL,
            count: 0,
            ports: 0,
        };
        let i = if self.entries.len() < self.capacity {
            self.reserve_slot();
            let i = self.entries.len() as u32;
            self.entries.push(fresh);
            i
        } else {
            let victim = self.list.tail;
            self.unlink(victim);
            let (slot, _) = self
                .find(self.entries[victim as usize].key)
                .expect("tracked entry is in the table");
            self.remove_slot(slot);
            self.evictions += 1;
            self.entries[victim as usize] = fresh;
            victim
        };
        self.insert_slot(key, i);
        self.push_front(i);
        i
    }

    fn unlink(&mut self, i: u32) {
        let Entry { prev, next, .. } = self.entries[i as usize];
        match prev {
            NIL => self.list.head = next,
            p => self.entries[p as usize].next = next,
        }
        match next {
            NIL => self.list.tail = prev,
            n => self.entries[n as usize].prev = prev,
        }
    }

    fn push_front(&mut self, i: u32) {
        let old = self.list.head;
        {
            let e = &mut self.entries[i as usize];
            e.prev = NIL;
            e.next = old;
        }
        match old {
            NIL => self.list.tail = i,
            o => self.entries[o as usize].prev = i,
        }
        self.list.head = i;
    }

    /// Mark `i` as just seen.
    fn touch(&mut self, i: u32) {
        if self.list.head != i {
            self.unlink(i);
            self.push_front(i);
        }
    }
}

#[cfg(test)]
mod tests;
