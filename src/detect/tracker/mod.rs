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
//! Layout, for a million sources: three tables by the kind of key, an
//! IPv4 address (`u32`), an IPv6 prefix of at most 64 bits (what
//! `ban_prefix6` = 64 counts by: the high half), any other IPv6 address;
//! each an entry vector (24, 28 and 36 bytes an entry) and an `index::Index`
//! of `u32` slots at load at most 4/5 with a fast keyed hash (Robin Hood
//! probing; forged sources cannot aim collisions at a seed they cannot
//! see). The least-recently-seen list runs through all three: its links
//! name the table in their top 2 bits. Entry vectors grow by doubling up
//! to the capacity and no further, so at a million IPv4 sources the
//! tracker takes 29 bytes a source. Once full nothing allocates: the
//! victim's slot is reused.
//!
//! Time: an entry's count began at a `u32` tick since the tracker's epoch,
//! 1 ms, or a power of two of ms for windows over 2^30 ms (12 days; the
//! longest window, a year, counts in 32 ms ticks). Ages are taken modulo
//! 2^32 and so must stay below 2^32 ticks: every 2^30 ticks a sweep ends
//! the counts whose window is over (one pass over the entries), so no live
//! count is older than its window plus 2^30 ticks.
//!
//! Eviction: the least recently seen source goes first.

mod index;

pub(crate) use index::{Index, Seed, slots_for};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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

/// No entry: the end of the list.
const NIL: u32 = u32::MAX;
/// A list link: the entry's table in the top 2 bits, its index below.
const TABLE_SHIFT: u32 = 30;
const LINK_INDEX: u32 = (1 << TABLE_SHIFT) - 1;

/// Distinct ports are counted exactly up to this many; past it the count
/// stays at this many ("this many or more"). Evidence asks only whether a
/// source probed one port or several (`strength_of`).
pub const PORTS_EXACT: u32 = 3;
/// Probe counts saturate here (the top 2 bits of `Entry::count` hold the
/// distinct ports).
const COUNT_MAX: u32 = (1 << 30) - 1;
/// Ticks between sweeps, and the most ticks a window spans.
const SWEEP: u64 = 1 << 30;

#[derive(Clone, Copy, Debug)]
struct Links {
    /// Neighbours in the recency list (towards head / tail).
    prev: u32,
    next: u32,
}

#[derive(Clone, Copy, Debug)]
struct Entry<K> {
    links: Links,
    key: K,
    /// The tick at which the count began.
    start: u32,
    /// Probes counted (low 30 bits; 0 when a sweep ended the count: the
    /// next probe starts one) and the distinct ports among them (top 2
    /// bits: 1 up to `PORTS_EXACT`).
    count: u32,
    /// The first two distinct ports of the count.
    ports: [u16; 2],
}

impl<K> Entry<K> {
    fn count(&self) -> u32 {
        self.count & COUNT_MAX
    }

    fn distinct(&self) -> u32 {
        self.count >> 30
    }

    fn restart(&mut self, port: u16, t: u32) {
        self.start = t;
        self.ports = [port, 0];
        self.count = (1 << 30) | 1;
    }

    fn add(&mut self, port: u16) {
        let c = (self.count() + 1).min(COUNT_MAX);
        let mut d = self.distinct();
        if d < PORTS_EXACT && !self.ports[..(d as usize).min(2)].contains(&port) {
            if d < 2 {
                self.ports[d as usize] = port;
            }
            d += 1;
        }
        self.count = (d << 30) | c;
    }
}

/// A key of one of the three tables.
trait Key: Copy + Eq + Sized {
    const TABLE: u32;
    /// The key as two words to hash.
    fn words(self) -> (u64, u64);
    fn ip(self) -> IpAddr;
    fn table(t: &Tracker) -> &Table<Self>;
    fn table_mut(t: &mut Tracker) -> &mut Table<Self>;
}

/// An IPv4 address.
impl Key for u32 {
    const TABLE: u32 = 0;
    fn words(self) -> (u64, u64) {
        (u64::from(self), 0)
    }
    fn ip(self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(self))
    }
    fn table(t: &Tracker) -> &Table<u32> {
        &t.v4
    }
    fn table_mut(t: &mut Tracker) -> &mut Table<u32> {
        &mut t.v4
    }
}

/// The high half of an IPv6 address whose low half is zero (a prefix of
/// at most 64 bits, as `ban_prefix6` = 64 counts by).
impl Key for [u32; 2] {
    const TABLE: u32 = 1;
    fn words(self) -> (u64, u64) {
        ((u64::from(self[0]) << 32) | u64::from(self[1]), 0)
    }
    fn ip(self) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(u128::from(self.words().0) << 64))
    }
    fn table(t: &Tracker) -> &Table<[u32; 2]> {
        &t.prefix6
    }
    fn table_mut(t: &mut Tracker) -> &mut Table<[u32; 2]> {
        &mut t.prefix6
    }
}

/// Any other IPv6 address.
impl Key for [u32; 4] {
    const TABLE: u32 = 2;
    fn words(self) -> (u64, u64) {
        (
            (u64::from(self[2]) << 32) | u64::from(self[3]),
            (u64::from(self[0]) << 32) | u64::from(self[1]),
        )
    }
    fn ip(self) -> IpAddr {
        let (lo, hi) = self.words();
        IpAddr::V6(Ipv6Addr::from((u128::from(hi) << 64) | u128::from(lo)))
    }
    fn table(t: &Tracker) -> &Table<[u32; 4]> {
        &t.v6
    }
    fn table_mut(t: &mut Tracker) -> &mut Table<[u32; 4]> {
        &mut t.v6
    }
}

/// A source as the key of its table: a v4 source and its mapped form
/// (::ffff:a.b.c.d) are one host.
enum AnyKey {
    V4(u32),
    Prefix6([u32; 2]),
    V6([u32; 4]),
}

fn key_of(ip: IpAddr) -> AnyKey {
    let v6 = match ip {
        IpAddr::V4(a) => return AnyKey::V4(u32::from(a)),
        IpAddr::V6(a) => a,
    };
    if let Some(a) = v6.to_ipv4_mapped() {
        return AnyKey::V4(u32::from(a));
    }
    let n = u128::from(v6);
    let hi = [(n >> 96) as u32, (n >> 64) as u32];
    if n as u64 == 0 {
        AnyKey::Prefix6(hi)
    } else {
        AnyKey::V6([hi[0], hi[1], (n >> 32) as u32, n as u32])
    }
}

/// Calls `$f` with the tracker and the key's type for the table of `$k`.
macro_rules! by_key {
    ($k:expr, $key:ident => $e:expr) => {
        match $k {
            AnyKey::V4($key) => $e,
            AnyKey::Prefix6($key) => $e,
            AnyKey::V6($key) => $e,
        }
    };
}

/// One table: entries and the index that finds them.
struct Table<K> {
    entries: Vec<Entry<K>>,
    index: Index,
    seed: Seed,
}

impl<K: Key> Table<K> {
    fn new(capacity: usize) -> Table<K> {
        Table {
            entries: Vec::new(),
            index: Index::new(capacity),
            seed: Seed::random(),
        }
    }

    fn hash(&self, k: K) -> u64 {
        let (lo, hi) = k.words();
        self.seed.hash(lo, hi)
    }

    /// (slot, entry index) of `k`.
    fn find(&self, k: K) -> Option<(usize, u32)> {
        let e = &self.entries;
        let s = self.index.find(self.hash(k), |i| e[i as usize].key == k)?;
        Some((s, self.index.at(s)))
    }

    /// The slot of entry `i` (no key compared).
    fn slot_of(&self, i: u32) -> usize {
        let h = self.hash(self.entries[i as usize].key);
        self.index
            .find(h, |j| j == i)
            .expect("tracked entry is in the index")
    }

    fn heap_bytes(&self) -> usize {
        self.entries.capacity() * size_of::<Entry<K>>() + self.index.heap_bytes()
    }

    /// Indexes every entry again in `slots` slots, under a new seed for
    /// as long as one overflows.
    fn rebuild(&mut self, slots: usize) {
        'seed: loop {
            self.index.reset(slots);
            for i in 0..self.entries.len() {
                let h = self.hash(self.entries[i].key);
                if self.index.insert(h, i as u32).is_err() {
                    self.seed = Seed::random();
                    continue 'seed;
                }
            }
            return;
        }
    }

    fn index_entry(&mut self, i: u32) {
        let h = self.hash(self.entries[i as usize].key);
        if self.index.insert(h, i).is_err() {
            self.seed = Seed::random();
            self.rebuild(self.index.slots());
        }
    }

    /// Room for one more entry: the vector doubles, up to `cap` and no
    /// further, and the index follows it (load at most 4/5).
    fn reserve(&mut self, cap: usize) {
        let len = self.entries.len();
        if len == self.entries.capacity() {
            let want = (len * 2).max(16).min(cap).max(len + 1);
            self.entries.reserve_exact(want - len);
            self.rebuild(slots_for(self.entries.capacity()));
        }
    }

    /// Removes entry `i` (in `slot`); the last entry moves into its place,
    /// and its links are returned to be repointed.
    fn remove(&mut self, slot: usize, i: u32) -> Option<Links> {
        self.index.remove(slot);
        let last = self.entries.len() as u32 - 1;
        let moved = if i != last {
            let m = self.entries[last as usize];
            let ms = self.slot_of(last);
            self.index.repoint(ms, i);
            self.entries[i as usize] = m;
            Some(m.links)
        } else {
            None
        };
        self.entries.pop();
        moved
    }
}

#[derive(Clone, Copy, Debug)]
struct List {
    /// Most recently seen.
    head: u32,
    /// Least recently seen: the next victim.
    tail: u32,
}

pub struct Tracker {
    v4: Table<u32>,
    prefix6: Table<[u32; 2]>,
    v6: Table<[u32; 4]>,
    /// Every entry, most recently seen first.
    list: List,
    capacity: usize,
    needed: u32,
    window_ms: u64,
    /// A tick is 2^shift ms.
    shift: u32,
    /// The window in ticks (at most `SWEEP`).
    window: u64,
    /// The first instant we were given; times are kept relative to it.
    epoch: Option<Instant>,
    /// The latest time counted, ms since the epoch (time never goes back
    /// here).
    last_ms: u64,
    /// The tick of the last sweep.
    swept: u64,
    evictions: u64,
}

fn link<K: Key>(i: u32) -> u32 {
    (K::TABLE << TABLE_SHIFT) | i
}

/// `d` in whole ms, saturating: `as_millis` without its u128 division
/// (a call to `__udivti3` per probe).
fn millis(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(d.subsec_millis()))
}

/// The tick for a window of `window_ms`: the smallest power of two of ms
/// in which the window spans at most `SWEEP` ticks.
fn shift_for(window_ms: u64) -> u32 {
    let mut s = 0;
    while window_ms >> s > SWEEP {
        s += 1;
    }
    s
}

impl Tracker {
    /// `capacity` sources at most (at least 1, at most 16,777,216);
    /// `scan_trigger` as PortSentry's SCAN_TRIGGER; probes counted within
    /// `window` of the first counted one.
    pub fn new(capacity: usize, scan_trigger: u32, window: Duration) -> Tracker {
        let capacity = capacity.clamp(1, index::MAX_ENTRIES);
        let mut t = Tracker {
            v4: Table::new(capacity),
            prefix6: Table::new(capacity),
            v6: Table::new(capacity),
            list: List {
                head: NIL,
                tail: NIL,
            },
            capacity,
            needed: 1,
            window_ms: 0,
            shift: 0,
            window: 0,
            epoch: None,
            last_ms: 0,
            swept: 0,
            evictions: 0,
        };
        t.set_params(scan_trigger, window);
        t
    }

    /// The `n` sources with the most probes counted now, most first:
    /// `status` shows them. One pass, no allocation
    /// beyond the answer.
    pub fn top(&self, n: usize) -> Vec<(IpAddr, u32)> {
        fn top_in<K: Key>(tb: &Table<K>, n: usize, best: &mut Vec<(u32, IpAddr)>) {
            for e in &tb.entries {
                let c = e.count();
                if best.len() == n && best.last().is_some_and(|&(b, _)| b >= c) {
                    continue;
                }
                let at = best.partition_point(|&(b, _)| b >= c);
                best.insert(at, (c, e.key.ip()));
                best.truncate(n);
            }
        }
        let mut best = Vec::with_capacity(n + 1);
        top_in(&self.v4, n, &mut best);
        top_in(&self.prefix6, n, &mut best);
        top_in(&self.v6, n, &mut best);
        best.into_iter().map(|(c, ip)| (ip, c)).collect()
    }

    /// New trigger and window (on reload); counts in progress are kept.
    pub fn set_params(&mut self, scan_trigger: u32, window: Duration) {
        // 0 and 1 both mean "the first probe acts".
        self.needed = scan_trigger.max(1);
        let window_ms = millis(window);
        let shift = shift_for(window_ms);
        let ticks = window_ms >> shift;
        if shift != self.shift {
            // Counts in progress in the new ticks: ages kept (to the new
            // tick), those past the new window ended.
            let old = self.shift;
            let (old_t, new_t) = ((self.last_ms >> old) as u32, self.last_ms >> shift);
            self.each_count(|start, count| {
                if *count & COUNT_MAX == 0 {
                    return;
                }
                let age = (u64::from(old_t.wrapping_sub(*start)) << old) >> shift;
                if age > ticks {
                    *count = 0;
                } else {
                    *start = (new_t - age) as u32;
                }
            });
            self.swept = new_t;
        }
        self.window_ms = window_ms;
        self.shift = shift;
        self.window = ticks;
    }

    /// Count one probe from `src` seen at `now`.
    pub fn record(&mut self, src: IpAddr, now: Instant) -> Outcome {
        self.record_port(src, 0, now).0
    }

    /// Count one probe from `src` to `port`; also how many distinct ports
    /// the source probed in its window (at least 1; exact up to
    /// `PORTS_EXACT`, and `PORTS_EXACT` for more).
    pub fn record_port(&mut self, src: IpAddr, port: u16, now: Instant) -> (Outcome, u32) {
        let t = self.advance(now);
        by_key!(key_of(src), k => self.record_key(k, port, t))
    }

    fn record_key<K: Key>(&mut self, k: K, port: u16, t: u32) -> (Outcome, u32) {
        let Some((_, i)) = K::table(self).find(k) else {
            self.alloc(k, port, t);
            return (self.judge(1), 1);
        };
        self.touch(link::<K>(i));
        let window = self.window;
        let e = &mut K::table_mut(self).entries[i as usize];
        if e.count() == 0 || u64::from(t.wrapping_sub(e.start)) > window {
            e.restart(port, t);
        } else {
            e.add(port);
        }
        let (count, ports) = (e.count(), e.distinct());
        (self.judge(count), ports)
    }

    /// Where `src` stands at `now` (nothing changes): the probes counted in
    /// its window, the trigger, and the time left in the window. `None`
    /// when it is not tracked or its window is over (its next probe counts
    /// from one).
    pub fn progress(&self, src: IpAddr, now: Instant) -> Option<Progress> {
        let epoch = self.epoch?;
        let t = millis(now.saturating_duration_since(epoch)).max(self.last_ms) >> self.shift;
        if t - self.swept >= 2 * SWEEP {
            // No probe for over 2^30 ticks: every window is over.
            return None;
        }
        let (count, start) = by_key!(key_of(src), k => {
            let tb = Key::table(self);
            let (_, i) = tb.find(k)?;
            let e = &tb.entries[i as usize];
            (e.count(), e.start)
        });
        let age = u64::from((t as u32).wrapping_sub(start));
        if count == 0 || age > self.window {
            return None;
        }
        Some(Progress {
            count,
            needed: self.needed,
            window_left: Duration::from_millis(self.window_ms.saturating_sub(age << self.shift)),
        })
    }

    /// Drop everything known about `src` (it is banned now, or its ban
    /// ended): its next probe starts a fresh count.
    pub fn forget(&mut self, src: IpAddr) {
        by_key!(key_of(src), k => {
            if let Some((_, i)) = Key::table(self).find(k) {
                self.remove_in(k, i);
            }
        })
    }

    /// Sources tracked now.
    pub fn len(&self) -> usize {
        self.v4.entries.len() + self.prefix6.entries.len() + self.v6.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sources dropped to make room since the tracker was made.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Heap bytes held: the three tables' entry vectors and indexes, at
    /// their allocated capacity.
    pub fn heap_bytes(&self) -> usize {
        self.v4.heap_bytes() + self.prefix6.heap_bytes() + self.v6.heap_bytes()
    }

    /// The same as `heap_bytes`.
    pub fn memory_bytes(&self) -> usize {
        self.heap_bytes()
    }

    /// Bytes one tracked source costs in its entry vector at most (an IPv6
    /// address; excluding the index's 4 bytes per slot, 5 per entry).
    pub const ENTRY_BYTES: usize = size_of::<Entry<[u32; 4]>>();
    /// The same for an IPv4 source.
    pub const ENTRY_BYTES_V4: usize = size_of::<Entry<u32>>();
    /// The same for an IPv6 prefix of at most 64 bits.
    pub const ENTRY_BYTES_PREFIX6: usize = size_of::<Entry<[u32; 2]>>();

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

    /// The tick of `now` (as a `u32`: ages are taken modulo 2^32), after
    /// the sweep if one is due.
    fn advance(&mut self, now: Instant) -> u32 {
        let epoch = *self.epoch.get_or_insert(now);
        self.last_ms = millis(now.saturating_duration_since(epoch)).max(self.last_ms);
        let t = self.last_ms >> self.shift;
        if t - self.swept >= SWEEP {
            let (t32, window) = (t as u32, self.window);
            self.each_count(|start, count| {
                if u64::from(t32.wrapping_sub(*start)) > window {
                    *count = 0;
                }
            });
            self.swept = t;
        }
        t as u32
    }

    fn each_count(&mut self, mut f: impl FnMut(&mut u32, &mut u32)) {
        for e in &mut self.v4.entries {
            f(&mut e.start, &mut e.count);
        }
        for e in &mut self.prefix6.entries {
            f(&mut e.start, &mut e.count);
        }
        for e in &mut self.v6.entries {
            f(&mut e.start, &mut e.count);
        }
    }

    fn links(&mut self, l: u32) -> &mut Links {
        let i = (l & LINK_INDEX) as usize;
        match l >> TABLE_SHIFT {
            0 => &mut self.v4.entries[i].links,
            1 => &mut self.prefix6.entries[i].links,
            _ => &mut self.v6.entries[i].links,
        }
    }

    /// A fresh entry for `k` at the head of the list, evicting if full.
    fn alloc<K: Key>(&mut self, k: K, port: u16, t: u32) {
        let mut fresh = Entry {
            links: Links {
                prev: NIL,
                next: NIL,
            },
            key: k,
            start: 0,
            count: 0,
            ports: [0; 2],
        };
        fresh.restart(port, t);
        if self.len() >= self.capacity {
            let victim = self.list.tail;
            self.evictions += 1;
            if victim >> TABLE_SHIFT == K::TABLE {
                // Same table: the victim's entry becomes the new one.
                let i = victim & LINK_INDEX;
                self.unlink(victim);
                let tb = K::table_mut(self);
                let slot = tb.slot_of(i);
                tb.index.remove(slot);
                tb.entries[i as usize] = fresh;
                tb.index_entry(i);
                self.push_front(victim);
                return;
            }
            self.remove_link(victim);
        }
        let cap = self.capacity;
        let tb = K::table_mut(self);
        tb.reserve(cap);
        let i = tb.entries.len() as u32;
        tb.entries.push(fresh);
        tb.index_entry(i);
        self.push_front(link::<K>(i));
    }

    fn remove_link(&mut self, l: u32) {
        let i = l & LINK_INDEX;
        match l >> TABLE_SHIFT {
            0 => self.remove_in(0u32, i),
            1 => self.remove_in([0u32; 2], i),
            _ => self.remove_in([0u32; 4], i),
        }
    }

    /// Removes entry `i` of `K`'s table (`_k` names the table).
    fn remove_in<K: Key>(&mut self, _k: K, i: u32) {
        self.unlink(link::<K>(i));
        let tb = K::table_mut(self);
        let slot = tb.slot_of(i);
        if let Some(m) = tb.remove(slot, i) {
            // The last entry moved to `i`: repoint what referred to it.
            let to = link::<K>(i);
            match m.prev {
                NIL => self.list.head = to,
                p => self.links(p).next = to,
            }
            match m.next {
                NIL => self.list.tail = to,
                n => self.links(n).prev = to,
            }
        }
    }

    fn unlink(&mut self, l: u32) {
        let Links { prev, next } = *self.links(l);
        match prev {
            NIL => self.list.head = next,
            p => self.links(p).next = next,
        }
        match next {
            NIL => self.list.tail = prev,
            n => self.links(n).prev = prev,
        }
    }

    fn push_front(&mut self, l: u32) {
        let old = self.list.head;
        *self.links(l) = Links {
            prev: NIL,
            next: old,
        };
        match old {
            NIL => self.list.tail = l,
            o => self.links(o).prev = l,
        }
        self.list.head = l;
    }

    /// Mark `l` as just seen.
    fn touch(&mut self, l: u32) {
        if self.list.head != l {
            self.unlink(l);
            self.push_front(l);
        }
    }
}

#[cfg(test)]
mod tests;
