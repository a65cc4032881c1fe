//! index: the open-addressing table that finds an entry of a vector by
//! its key, shared by the tracker and the stories of `why`.
//!
//! Each slot is a `u32`: its distance from its home slot (high 8 bits),
//! and below, the entry's index in its vector (as many bits as the most
//! entries need, at least 16) under a tag of the hash in the bits left (8
//! for at most 65,536 entries, 7 for 100,000, none for over 8 million), or
//! `EMPTY`. Robin Hood linear probing: an insert takes the slot of an entry
//! nearer its home, so a lookup compares keys only for entries of the same
//! home (the slot's distance equals the probe's) and tag, and stops at the
//! first entry nearer its home than the probe is: a source not held costs
//! no entry read, nearly always. Deletion shifts the cluster back by the
//! stored distances, touching no entry. The slot count is any number (no power of
//! two): the home of a hash is `hash * slots >> 64`, so a table sized for
//! load 4/5 wastes nothing to rounding.
//!
//! Hashing: `Seed`, keyed with random words taken from std's `RandomState`
//! at start, folded multiplications (as foldhash does for integers): a few
//! nanoseconds, and a sender of forged sources who cannot see the seed
//! cannot choose sources that share a home. An insert that would push an
//! entry 255 slots from its home (which random keys never do) fails, and
//! the owner rebuilds the table under a new seed.

use std::hash::{BuildHasher, RandomState};

/// An empty slot (its distance, 255, is more than any entry's).
const EMPTY: u32 = u32::MAX;
/// The tag and index bits of a slot.
const PAYLOAD: u32 = (1 << 24) - 1;
/// The most entries an index can find.
pub const MAX_ENTRIES: usize = 1 << 24;
/// The largest distance from home an entry may have.
const MAX_DIST: u32 = 254;

/// Slots for `n` entries: load at most 4/5.
pub fn slots_for(n: usize) -> usize {
    n + n / 4 + 1
}

/// A keyed hash of a key given as two 64-bit words.
#[derive(Clone, Copy, Debug)]
pub struct Seed([u64; 3]);

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Seed {
    /// A fresh random seed (each call a different one).
    pub fn random() -> Seed {
        let s = RandomState::new();
        Seed([s.hash_one(1u8), s.hash_one(2u8) | 1, s.hash_one(3u8) | 1])
    }

    #[inline]
    pub fn hash(&self, lo: u64, hi: u64) -> u64 {
        fold(fold(lo ^ self.0[0], hi ^ self.0[1]), self.0[2])
    }
}

/// The overflow of an insert: the table must be rebuilt under a new seed.
#[derive(Debug)]
pub struct Overflow;

/// The slots. The owner keeps the entries and hands in their hashes.
#[derive(Debug)]
pub struct Index {
    slots: Vec<u32>,
    /// The entry-index bits of a slot.
    index_mask: u32,
    /// The tag bits of a slot (above the index).
    tag_mask: u32,
}

#[inline]
fn pack(payload: u32, dist: u32) -> u32 {
    (dist << 24) | payload
}

impl Index {
    /// An index (with no slots yet) for at most `max_entries` entries.
    pub fn new(max_entries: usize) -> Index {
        let bits = (usize::BITS - max_entries.saturating_sub(1).leading_zeros()).clamp(16, 24);
        let index_mask = ((1u64 << bits) - 1) as u32;
        Index {
            slots: Vec::new(),
            index_mask,
            tag_mask: PAYLOAD & !index_mask,
        }
    }

    /// The tag of hash `h`, in place.
    #[inline]
    fn tag(&self, h: u64) -> u32 {
        (h as u32) & self.tag_mask
    }

    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<u32>()
    }

    #[inline]
    fn home(&self, h: u64) -> usize {
        ((u128::from(h) * self.slots.len() as u128) >> 64) as usize
    }

    #[inline]
    fn next(&self, s: usize) -> usize {
        if s + 1 == self.slots.len() { 0 } else { s + 1 }
    }

    /// The slot holding the entry of hash `h` for which `is` holds.
    #[inline]
    pub fn find(&self, h: u64, mut is: impl FnMut(u32) -> bool) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mut s = self.home(h);
        let tag = self.tag(h);
        let mut d = 0;
        loop {
            let v = self.slots[s];
            if v == EMPTY || v >> 24 < d {
                return None;
            }
            if v >> 24 == d && v & self.tag_mask == tag && is(v & self.index_mask) {
                return Some(s);
            }
            d += 1;
            s = self.next(s);
        }
    }

    /// The entry index in `slot`.
    #[inline]
    pub fn at(&self, slot: usize) -> u32 {
        self.slots[slot] & self.index_mask
    }

    /// `slot` now refers to entry `i` (the entry moved in its vector).
    #[inline]
    pub fn repoint(&mut self, slot: usize, i: u32) {
        self.slots[slot] = (self.slots[slot] & !self.index_mask) | i;
    }

    /// Adds entry `i` of hash `h` (not in the table; a slot is free). On
    /// `Overflow` the table is left inconsistent: rebuild it.
    pub fn insert(&mut self, h: u64, i: u32) -> Result<(), Overflow> {
        debug_assert!(i <= self.index_mask);
        let mut s = self.home(h);
        let mut cur = self.tag(h) | i;
        let mut d = 0;
        loop {
            let v = self.slots[s];
            if v == EMPTY {
                self.slots[s] = pack(cur, d);
                return Ok(());
            }
            if v >> 24 < d {
                self.slots[s] = pack(cur, d);
                cur = v & PAYLOAD;
                d = v >> 24;
            }
            d += 1;
            if d > MAX_DIST {
                return Err(Overflow);
            }
            s = self.next(s);
        }
    }

    /// Empties `slot`, shifting the entries after it back.
    pub fn remove(&mut self, slot: usize) {
        let mut hole = slot;
        loop {
            let n = self.next(hole);
            let v = self.slots[n];
            if v == EMPTY || v >> 24 == 0 {
                break;
            }
            self.slots[hole] = v - (1 << 24);
            hole = n;
        }
        self.slots[hole] = EMPTY;
    }

    /// Every slot empty, `slots` of them (allocated once to that size).
    pub fn reset(&mut self, slots: usize) {
        self.slots.clear();
        if self.slots.capacity() < slots {
            self.slots.reserve_exact(slots);
        }
        self.slots.resize(slots, EMPTY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a std map, with many entries of one home (a constant hash
    /// part) and removals: lookups, shifts and the stored distances agree.
    #[test]
    fn robin_hood_agrees_with_a_map() {
        let seed = Seed::random();
        let mut keys: Vec<u64> = Vec::new();
        let mut ix = Index::new(1000);
        ix.reset(slots_for(1000));
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut live = std::collections::HashMap::new();
        for step in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // A few homes hold many keys: keys 0..8 hash alike in pairs.
            let k = x % 1500;
            let h = |k: u64| if k < 8 { k / 2 } else { seed.hash(k, 0) };
            let found = ix.find(h(k), |i| keys[i as usize] == k);
            assert_eq!(found.is_some(), live.contains_key(&k), "step {step}");
            match found {
                Some(slot) => {
                    // Remove: swap the last entry into the hole.
                    let i = ix.at(slot);
                    ix.remove(slot);
                    let last = keys.len() as u32 - 1;
                    if i != last {
                        let moved = keys[last as usize];
                        let ms = ix.find(h(moved), |j| j == last).unwrap();
                        ix.repoint(ms, i);
                        keys[i as usize] = moved;
                    }
                    keys.pop();
                    live.remove(&k);
                }
                None if keys.len() < 1000 => {
                    keys.push(k);
                    ix.insert(h(k), keys.len() as u32 - 1).unwrap();
                    live.insert(k, ());
                }
                None => {}
            }
        }
        for (i, &k) in keys.iter().enumerate() {
            let h = if k < 8 { k / 2 } else { seed.hash(k, 0) };
            assert_eq!(
                ix.find(h, |j| keys[j as usize] == k).map(|s| ix.at(s)),
                Some(i as u32)
            );
        }
    }

    #[test]
    fn overflow_is_reported_not_looped() {
        let mut ix = Index::new(1000);
        ix.reset(1000);
        let mut r = Ok(());
        for i in 0..300 {
            r = ix.insert(7, i);
            if r.is_err() {
                break;
            }
        }
        assert!(r.is_err(), "256 entries of one home cannot all be near it");
    }

    /// The index bits cover the most entries, at least 16; the tag takes
    /// what is left of 24.
    #[test]
    fn index_and_tag_bits() {
        for (n, mask) in [
            (1, 0xffff),
            (65_536, 0xffff),
            (65_537, 0x1_ffff),
            (100_000, 0x1_ffff),
            (1 << 24, 0xff_ffff),
        ] {
            let ix = Index::new(n);
            assert_eq!((ix.index_mask, ix.tag_mask), (mask, PAYLOAD & !mask), "{n}");
        }
        // All 2^24 indexes are usable: none makes a slot EMPTY.
        let mut ix = Index::new(MAX_ENTRIES);
        ix.reset(4);
        ix.insert(u64::MAX, MAX_ENTRIES as u32 - 1).unwrap();
        assert_eq!(
            ix.find(u64::MAX, |_| true).map(|s| ix.at(s)),
            Some(MAX_ENTRIES as u32 - 1)
        );
    }

    #[test]
    fn seeds_differ() {
        let (a, b) = (Seed::random(), Seed::random());
        assert_ne!(a.hash(1, 2), b.hash(1, 2));
        assert_ne!(a.hash(1, 2), a.hash(2, 1));
    }
}
