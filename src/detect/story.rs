//! story: what detection last did with each source, for `nftsentry why`:
//! its last few probes (time, port, scan type, strength of the evidence so
//! far) and the last decision (counted, withheld for lack of a handshake,
//! held back by the storm guard, banned).
//!
//! Bounded on its own, whatever `max_tracked_sources` is: two generations
//! of at most `GENERATION` sources (65,536, or `max_tracked_sources` if
//! fewer). New sources go into the current one; when it is full it
//! becomes the previous one (the older previous is dropped whole) and a
//! new one starts; a source found in the previous one moves to the current
//! one. So the `GENERATION` sources seen most recently always keep their
//! story, at most twice that many are held, and a flood of forged sources
//! cannot grow it: a source it pushed out is "never seen" to `why` (or
//! "counting", from the tracker, which may still hold it).
//!
//! Each story is one fixed slot (52 bytes: the address, the last `NOTES`
//! notes of 8 bytes in place, the decision) in a vector allocated once to
//! the generation's size, found through the tracker's keyed index (5 bytes
//! a source): about 7.1 MiB at most, nothing allocated per probe or per
//! source once both generations are full. A note keeps its time in tenths
//! of a second since the first note (13 years).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::classify::ScanType;
use super::packet::TcpFlags;
use super::tracker::{Index, Seed, slots_for};
use crate::strength::Strength;

/// Probes remembered per source, the most recent.
pub const NOTES: usize = 4;

/// The most sources of one generation (two are held).
pub const GENERATION: usize = 65_536;

/// One probe as `why` tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Note {
    pub at: Instant,
    pub port: u16,
    pub scan: ScanType,
    pub strength: Strength,
}

/// What the last probe led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Counted below the trigger.
    Counted,
    /// At the trigger, not banned: ban_requires_handshake (or forgeable =
    /// "log") and no completed handshake.
    Withheld,
    /// At the trigger, not banned: the storm guard held the ban back.
    StormHeld,
    /// At the trigger, not banned: a live peer on evidence that could be
    /// forged (`protect_live_peers`).
    Spared,
    /// Banned.
    Banned,
}

const DECISIONS: [Decision; 5] = [
    Decision::Counted,
    Decision::Withheld,
    Decision::StormHeld,
    Decision::Spared,
    Decision::Banned,
];

const STRENGTHS: [Strength; 4] = [
    Strength::Forgeable,
    Strength::Ports,
    Strength::Handshake,
    Strength::Manual,
];

/// A source's story as `why` reads it (`Stories::get` builds it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Story {
    /// Oldest first, at most `NOTES`.
    pub notes: Vec<Note>,
    pub last: Decision,
}

/// Tenths of a second.
const TICK_MS: u64 = 100;

/// `d` in whole ticks, saturating at `u32::MAX`: `as_millis() / TICK_MS`
/// without a u128 division per probe.
fn ticks(d: Duration) -> u32 {
    let t = d
        .as_secs()
        .saturating_mul(1000 / TICK_MS)
        .saturating_add(u64::from(d.subsec_millis()) / TICK_MS);
    u32::try_from(t).unwrap_or(u32::MAX)
}

/// A note in 8 bytes.
#[derive(Clone, Copy, Debug, Default)]
struct Packed {
    /// Ticks since the stories' epoch (saturating).
    at: u32,
    port: u16,
    /// The scan type's index (low 3 bits) and the strength (the next 2).
    kind: u8,
    /// A TcpUnknown's flags.
    flags: u8,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    /// The source as an IPv6 address (IPv4 as ::ffff:a.b.c.d).
    key: [u32; 4],
    /// Oldest first, `len` of them.
    notes: [Packed; NOTES],
    len: u8,
    /// Index in `DECISIONS`.
    last: u8,
}

fn key_of(ip: &IpAddr) -> [u32; 4] {
    let v6 = match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => *a,
    };
    let n = u128::from(v6);
    [
        (n >> 96) as u32,
        (n >> 64) as u32,
        (n >> 32) as u32,
        n as u32,
    ]
}

/// One generation: slots and the index that finds them.
struct Generation {
    slots: Vec<Slot>,
    index: Index,
    seed: Seed,
}

impl Generation {
    fn new() -> Generation {
        Generation {
            slots: Vec::new(),
            index: Index::new(GENERATION),
            seed: Seed::random(),
        }
    }

    fn hash(&self, k: &[u32; 4]) -> u64 {
        let w = |a: u32, b: u32| (u64::from(a) << 32) | u64::from(b);
        self.seed.hash(w(k[2], k[3]), w(k[0], k[1]))
    }

    /// (slot in the index, index in `slots`) of `k`.
    fn find(&self, k: &[u32; 4]) -> Option<(usize, u32)> {
        let v = &self.slots;
        let s = self.index.find(self.hash(k), |i| v[i as usize].key == *k)?;
        Some((s, self.index.at(s)))
    }

    fn rebuild(&mut self, n: usize) {
        'seed: loop {
            self.index.reset(n);
            for i in 0..self.slots.len() {
                let h = self.hash(&self.slots[i].key);
                if self.index.insert(h, i as u32).is_err() {
                    self.seed = Seed::random();
                    continue 'seed;
                }
            }
            return;
        }
    }

    /// Adds `slot` (its key not held; room for it: `len() < max`).
    fn push(&mut self, slot: Slot, max: usize) -> u32 {
        let len = self.slots.len();
        if len == self.slots.capacity() {
            let want = (len * 2).max(16).min(max).max(len + 1);
            self.slots.reserve_exact(want - len);
            self.rebuild(slots_for(self.slots.capacity()));
        } else if self.index.slots() < slots_for(len + 1) {
            // The vector had room (a larger generation before set_max).
            self.rebuild(slots_for(self.slots.capacity()));
        }
        self.slots.push(slot);
        let i = len as u32;
        let h = self.hash(&slot.key);
        if self.index.insert(h, i).is_err() {
            self.seed = Seed::random();
            self.rebuild(self.index.slots());
        }
        i
    }

    /// Removes the slot of `k`, if held, and returns it.
    fn take(&mut self, k: &[u32; 4]) -> Option<Slot> {
        let (s, i) = self.find(k)?;
        let taken = self.slots[i as usize];
        self.index.remove(s);
        let last = self.slots.len() as u32 - 1;
        if i != last {
            let moved = self.slots[last as usize];
            let h = self.hash(&moved.key);
            let ms = self
                .index
                .find(h, |j| j == last)
                .expect("held story is indexed");
            self.index.repoint(ms, i);
            self.slots[i as usize] = moved;
        }
        self.slots.pop();
        Some(taken)
    }

    /// Empty, keeping the memory.
    fn clear(&mut self) {
        self.slots.clear();
        let n = self.index.slots();
        self.index.reset(n);
    }

    fn heap_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Slot>() + self.index.heap_bytes()
    }
}

pub struct Stories {
    /// `gens[current]` takes new sources; the other is the previous one.
    gens: [Generation; 2],
    current: usize,
    /// Sources per generation.
    max: usize,
    /// The instant of the first note; note times count from it.
    epoch: Option<Instant>,
}

impl Stories {
    /// Generations of `max` sources (at least 1, at most `GENERATION`).
    pub fn new(max: usize) -> Stories {
        Stories {
            gens: [Generation::new(), Generation::new()],
            current: 0,
            max: max.clamp(1, GENERATION),
            epoch: None,
        }
    }

    pub fn note(&mut self, src: IpAddr, note: Note, last: Decision) {
        let epoch = *self.epoch.get_or_insert(note.at);
        let packed = Packed {
            at: ticks(note.at.saturating_duration_since(epoch)),
            port: note.port,
            kind: note.scan.index() as u8 | ((note.strength as u8) << 3),
            flags: note.scan.flags().0,
        };
        let k = key_of(&src);
        let slot = match self.gens[self.current].find(&k) {
            Some((_, i)) => &mut self.gens[self.current].slots[i as usize],
            None => {
                let held = self.gens[1 - self.current].take(&k);
                if self.gens[self.current].slots.len() >= self.max {
                    // The current generation is full: it becomes the
                    // previous one, and the older one is dropped.
                    self.current = 1 - self.current;
                    self.gens[self.current].clear();
                }
                let fresh = held.unwrap_or(Slot {
                    key: k,
                    notes: [Packed::default(); NOTES],
                    len: 0,
                    last: 0,
                });
                let max = self.max;
                let g = &mut self.gens[self.current];
                let i = g.push(fresh, max);
                &mut g.slots[i as usize]
            }
        };
        if usize::from(slot.len) == NOTES {
            slot.notes.copy_within(1.., 0);
            slot.notes[NOTES - 1] = packed;
        } else {
            slot.notes[usize::from(slot.len)] = packed;
            slot.len += 1;
        }
        slot.last = last as u8;
    }

    /// `src`'s story, if it is held.
    pub fn get(&self, src: &IpAddr) -> Option<Story> {
        let k = key_of(src);
        let (g, i) = [self.current, 1 - self.current]
            .into_iter()
            .find_map(|g| Some((g, self.gens[g].find(&k)?.1)))?;
        let s = &self.gens[g].slots[i as usize];
        let epoch = self.epoch?;
        let notes = s.notes[..usize::from(s.len)]
            .iter()
            .map(|p| Note {
                at: epoch + Duration::from_millis(u64::from(p.at) * TICK_MS),
                port: p.port,
                scan: ScanType::from_index(usize::from(p.kind & 7), TcpFlags(p.flags))
                    .unwrap_or(ScanType::TcpSynNormal),
                strength: STRENGTHS[usize::from(p.kind >> 3) & 3],
            })
            .collect();
        Some(Story {
            notes,
            last: DECISIONS[usize::from(s.last)],
        })
    }

    pub fn forget(&mut self, src: &IpAddr) {
        let k = key_of(src);
        self.gens[0].take(&k);
        self.gens[1].take(&k);
    }

    /// Sources with a story.
    pub fn len(&self) -> usize {
        self.gens[0].slots.len() + self.gens[1].slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Generations of `max` sources from now on (reload).
    pub fn set_max(&mut self, max: usize) {
        self.max = max.clamp(1, GENERATION);
    }

    /// Heap bytes held (slots and indexes at their allocated capacity).
    pub fn heap_bytes(&self) -> usize {
        self.gens[0].heap_bytes() + self.gens[1].heap_bytes()
    }

    /// Bytes of one story's slot.
    pub const SLOT_BYTES: usize = size_of::<Slot>();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(t: Instant, port: u16) -> Note {
        Note {
            at: t,
            port,
            scan: ScanType::TcpSynNormal,
            strength: Strength::Forgeable,
        }
    }

    fn nth(i: u32) -> IpAddr {
        IpAddr::from((0xC612_0000u32 + i).to_be_bytes())
    }

    #[test]
    fn keeps_the_last_notes_and_stays_bounded() {
        let t = Instant::now();
        let mut s = Stories::new(3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for p in 1..=6 {
            s.note(a, n(t, p), Decision::Counted);
        }
        let ports: Vec<u16> = s.get(&a).unwrap().notes.iter().map(|n| n.port).collect();
        assert_eq!(ports, [3, 4, 5, 6]);
        s.note(a, n(t, 7), Decision::Withheld);
        assert_eq!(s.get(&a).unwrap().last, Decision::Withheld);
        for i in 0..10u8 {
            s.note(IpAddr::from([198, 18, 0, i]), n(t, 1), Decision::Counted);
            assert!(s.len() <= 2 * 3);
        }
        assert!(s.get(&a).is_none());
    }

    #[test]
    fn notes_keep_time_scan_and_strength() {
        let t0 = Instant::now();
        let mut s = Stories::new(10);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let notes = [
            Note {
                at: t0,
                port: 1,
                scan: ScanType::TcpUnknown(TcpFlags(0x29)),
                strength: Strength::Forgeable,
            },
            Note {
                at: t0 + Duration::from_millis(1_250),
                port: 65_535,
                scan: ScanType::Udp,
                strength: Strength::Ports,
            },
            Note {
                at: t0 + Duration::from_secs(86_400 * 400),
                port: 0,
                scan: ScanType::TcpConnect,
                strength: Strength::Handshake,
            },
        ];
        for (i, &x) in notes.iter().enumerate() {
            s.note(
                a,
                x,
                if i == 2 {
                    Decision::Banned
                } else {
                    Decision::Counted
                },
            );
        }
        let got = s.get(&a).unwrap();
        assert_eq!(got.last, Decision::Banned);
        assert_eq!(got.notes.len(), 3);
        for (g, w) in got.notes.iter().zip(notes) {
            assert_eq!((g.port, g.scan, g.strength), (w.port, w.scan, w.strength));
            // Times to a tenth of a second, never later than the probe.
            assert!(g.at <= w.at && w.at.duration_since(g.at) < Duration::from_millis(100));
        }
        // IPv4 and its mapped form are one source.
        let v4: IpAddr = "192.0.2.9".parse().unwrap();
        s.note(v4, n(t0, 7), Decision::Counted);
        assert!(s.get(&"::ffff:192.0.2.9".parse().unwrap()).is_some());
        s.forget(&v4);
        assert!(s.get(&v4).is_none());
        assert!(s.get(&a).is_some());
    }

    /// A source keeps its story through the `GENERATION` new sources that
    /// follow it, wherever in its generation it came; one followed by
    /// twice as many is gone; memory stays at two generations.
    #[test]
    fn generations_keep_the_most_recent_sources() {
        let t = Instant::now();
        let g = GENERATION as u32;
        let mut s = Stories::new(1_000_000);
        // Sources 0.. in turn; watch the first, one in the middle of the
        // first generation and the last of it.
        for i in 0..g {
            s.note(nth(i), n(t, 1), Decision::Counted);
        }
        let bytes = s.heap_bytes();
        for i in g..2 * g {
            s.note(nth(i), n(t, 1), Decision::Counted);
        }
        // The last of the first generation, g - 1, has had g sources since;
        // the first, 2g - 1.
        assert!(s.get(&nth(g - 1)).is_some());
        assert!(s.get(&nth(0)).is_some());
        assert_eq!(s.len(), 2 * GENERATION);
        // One more: the first generation goes, the second stays whole.
        s.note(nth(2 * g), n(t, 1), Decision::Counted);
        assert!(s.get(&nth(0)).is_none());
        assert!(s.get(&nth(g - 1)).is_none());
        for i in [g, g + g / 2, 2 * g - 1, 2 * g] {
            assert!(s.get(&nth(i)).is_some(), "{i}");
        }
        assert_eq!(s.len(), GENERATION + 1);
        // A source of the previous generation noted again moves to the
        // current one and survives the next turn.
        s.note(nth(g + 5), n(t, 2), Decision::Withheld);
        for i in 2 * g + 1..3 * g + 10 {
            s.note(nth(i), n(t, 1), Decision::Counted);
        }
        let kept = s.get(&nth(g + 5)).unwrap();
        assert_eq!(kept.last, Decision::Withheld);
        assert_eq!(
            kept.notes.iter().map(|n| n.port).collect::<Vec<_>>(),
            [1, 2]
        );
        assert!(s.get(&nth(g + 6)).is_none());
        // The memory of two generations, reached at the first: it grows to
        // two generations' slots and no further.
        assert!(s.len() <= 2 * GENERATION);
        assert!(
            s.heap_bytes() <= 2 * bytes,
            "{} > 2 * {bytes}",
            s.heap_bytes()
        );
        assert!(
            s.heap_bytes() <= 2 * GENERATION * (Stories::SLOT_BYTES + 5) + 64,
            "{}",
            s.heap_bytes()
        );
    }

    /// `ticks` and the tracker's `millis` are the u128 arithmetic they
    /// replace, at the edges too.
    #[test]
    fn ticks_are_tenths_of_a_second() {
        let cases = [
            Duration::ZERO,
            Duration::from_nanos(99_999_999),
            Duration::from_millis(100),
            Duration::from_millis(1_999),
            Duration::new(429_496_729, 599_999_999),
            Duration::new(429_496_729, 600_000_000),
            Duration::new(u64::MAX / 1000, 999_999_999),
            Duration::new(u64::MAX / 10 + 1, 0),
            Duration::MAX,
        ];
        for d in cases {
            let want = u32::try_from(d.as_millis() / u128::from(TICK_MS)).unwrap_or(u32::MAX);
            assert_eq!(ticks(d), want, "{d:?}");
        }
    }

    #[test]
    fn slot_is_small() {
        assert_eq!(Stories::SLOT_BYTES, 52);
    }
}
