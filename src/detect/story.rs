//! story: what detection last did with each source, for `nftsentry why`:
//! its last few probes (time, port, scan type, strength of the evidence so
//! far) and the last decision (counted, withheld for lack of a handshake,
//! held back by the storm guard, banned).
//!
//! Bounded like the tracker: at most `max_tracked_sources` sources, and the
//! whole store is emptied when a new source finds it full, so a flood of
//! spoofed sources cannot grow it (a `why` may then say "never seen" of a
//! source the flood pushed out). A few dozen bytes per source.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use super::classify::ScanType;
use crate::strength::Strength;

/// Probes remembered per source, the most recent.
pub const NOTES: usize = 4;

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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Story {
    /// Oldest first, at most `NOTES`.
    pub notes: Vec<Note>,
    pub last: Decision,
}

pub struct Stories {
    map: HashMap<IpAddr, Story>,
    max: usize,
}

impl Stories {
    pub fn new(max: usize) -> Stories {
        Stories {
            map: HashMap::new(),
            max: max.max(1),
        }
    }

    pub fn note(&mut self, src: IpAddr, note: Note, last: Decision) {
        if self.map.len() >= self.max && !self.map.contains_key(&src) {
            self.map.clear();
        }
        let s = self.map.entry(src).or_insert_with(|| Story {
            notes: Vec::with_capacity(NOTES),
            last,
        });
        if s.notes.len() == NOTES {
            s.notes.remove(0);
        }
        s.notes.push(note);
        s.last = last;
    }

    /// The last decision for `src` becomes `last` (the trigger's outcome,
    /// known after its note).
    pub fn decided(&mut self, src: &IpAddr, last: Decision) {
        if let Some(s) = self.map.get_mut(src) {
            s.last = last;
        }
    }

    pub fn get(&self, src: &IpAddr) -> Option<&Story> {
        self.map.get(src)
    }

    pub fn forget(&mut self, src: &IpAddr) {
        self.map.remove(src);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn set_max(&mut self, max: usize) {
        self.max = max.max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_notes_and_stays_bounded() {
        let t = Instant::now();
        let n = |port| Note {
            at: t,
            port,
            scan: ScanType::TcpSynNormal,
            strength: Strength::Forgeable,
        };
        let mut s = Stories::new(3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for p in 1..=6 {
            s.note(a, n(p), Decision::Counted);
        }
        let ports: Vec<u16> = s.get(&a).unwrap().notes.iter().map(|n| n.port).collect();
        assert_eq!(ports, [3, 4, 5, 6]);
        s.decided(&a, Decision::Withheld);
        assert_eq!(s.get(&a).unwrap().last, Decision::Withheld);
        for i in 0..10u8 {
            s.note(IpAddr::from([198, 18, 0, i]), n(1), Decision::Counted);
            assert!(s.len() <= 3);
        }
        assert!(s.get(&a).is_none());
    }
}
