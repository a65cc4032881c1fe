//! in_set: the bans that hold an element of a kernel ban set, per family,
//! ordered weakest evidence first and oldest first within a strength: the
//! one a full set gives up for a ban on stronger evidence.

use crate::cidr::Cidr;
use std::collections::BTreeSet;

use crate::strength::Strength;

type Key = (Strength, u64, Cidr);

#[derive(Default)]
pub(super) struct InSet {
    v4: BTreeSet<Key>,
    v6: BTreeSet<Key>,
}

impl InSet {
    fn family(&mut self, addr: &Cidr) -> &mut BTreeSet<Key> {
        if addr.is_ipv4() {
            &mut self.v4
        } else {
            &mut self.v6
        }
    }

    pub(super) fn add(&mut self, strength: Strength, banned_at: u64, addr: Cidr) {
        self.family(&addr).insert((strength, banned_at, addr));
    }

    pub(super) fn remove(&mut self, strength: Strength, banned_at: u64, addr: Cidr) {
        self.family(&addr).remove(&(strength, banned_at, addr));
    }

    /// Bans in the set of `addr`'s family.
    pub(super) fn len(&self, addr: &Cidr) -> usize {
        if addr.is_ipv4() {
            self.v4.len()
        } else {
            self.v6.len()
        }
    }

    /// Bans in the sets of both families.
    pub(super) fn total(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// The ban a full set of `addr`'s family gives up first.
    pub(super) fn weakest(&self, addr: &Cidr) -> Option<Key> {
        if addr.is_ipv4() {
            self.v4.first().copied()
        } else {
            self.v6.first().copied()
        }
    }

    /// The index of these bans, built in one pass per family (a restore
    /// of a million bans: sorted once rather than inserted one by one).
    pub(super) fn rebuilt(bans: impl Iterator<Item = Key>) -> InSet {
        let (mut v4, mut v6): (Vec<Key>, Vec<Key>) = bans.partition(|k| k.2.is_ipv4());
        v4.sort_unstable();
        v6.sort_unstable();
        InSet {
            v4: v4.into_iter().collect(),
            v6: v6.into_iter().collect(),
        }
    }

    pub(super) fn clear(&mut self) {
        self.v4.clear();
        self.v6.clear();
    }
}
