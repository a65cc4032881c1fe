//! sets: the six sets of our table, each with its name, its id in the
//! transaction that creates it, its key type and its kind, in one place.
//! Rules, listings, counts and the watch over the table all name a set
//! through this enum, never through a string.
//!
//! Knows nothing of what goes into a set (that is `ruleset` and `bans`).

use std::net::IpAddr;
use std::time::Duration;

use crate::kernel::nft::batch::{KeyType, SetSpec};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OurSet {
    /// Sources never banned (interval set).
    Ignore4,
    Ignore6,
    /// Banned sources, each element with its own timeout.
    Blocked4,
    Blocked6,
    /// Tripwire ports (interval set).
    WatchTcp,
    WatchUdp,
}

impl OurSet {
    /// Every set, in the order they are created and `nft list` shows them.
    pub const ALL: [OurSet; 6] = [
        OurSet::Ignore4,
        OurSet::Ignore6,
        OurSet::Blocked4,
        OurSet::Blocked6,
        OurSet::WatchTcp,
        OurSet::WatchUdp,
    ];

    /// The ban sets.
    pub const BLOCKED: [OurSet; 2] = [OurSet::Blocked4, OurSet::Blocked6];

    pub fn name(self) -> &'static str {
        match self {
            OurSet::Ignore4 => "ignore4",
            OurSet::Ignore6 => "ignore6",
            OurSet::Blocked4 => "blocked4",
            OurSet::Blocked6 => "blocked6",
            OurSet::WatchTcp => "watch_tcp",
            OurSet::WatchUdp => "watch_udp",
        }
    }

    /// Its id in the transaction that creates it: the rules of the same
    /// transaction refer to it by this id.
    pub fn id(self) -> u32 {
        match self {
            OurSet::Ignore4 => 1,
            OurSet::Ignore6 => 2,
            OurSet::Blocked4 => 3,
            OurSet::Blocked6 => 4,
            OurSet::WatchTcp => 5,
            OurSet::WatchUdp => 6,
        }
    }

    pub fn key(self) -> KeyType {
        match self {
            OurSet::Ignore4 | OurSet::Blocked4 => KeyType::Ipv4Addr,
            OurSet::Ignore6 | OurSet::Blocked6 => KeyType::Ipv6Addr,
            OurSet::WatchTcp | OurSet::WatchUdp => KeyType::InetService,
        }
    }

    /// A ban set (timeouts, a size) rather than an interval set.
    pub fn is_blocked(self) -> bool {
        matches!(self, OurSet::Blocked4 | OurSet::Blocked6)
    }

    /// The ban set that holds `addr`.
    pub fn blocked_for(addr: &IpAddr) -> OurSet {
        if addr.is_ipv4() {
            OurSet::Blocked4
        } else {
            OurSet::Blocked6
        }
    }

    /// How it is created: ban sets with the default ban time and `set_size`.
    pub fn spec(self, ban_time: Duration, set_size: u32) -> SetSpec {
        let blocked = self.is_blocked();
        SetSpec {
            name: self.name().into(),
            id: self.id(),
            key: self.key(),
            interval: !blocked,
            timeout: blocked.then_some(ban_time),
            size: blocked.then_some(set_size),
            // Each ban counts what it dropped (`list`, the end-of-ban line).
            counter: blocked,
        }
    }
}

impl std::fmt::Display for OurSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_are_unique() {
        let mut ids: Vec<u32> = OurSet::ALL.iter().map(|s| s.id()).collect();
        ids.dedup();
        assert_eq!(ids, [1, 2, 3, 4, 5, 6]);
        let names: std::collections::HashSet<&str> = OurSet::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names.len(), 6);
        assert_eq!(
            OurSet::blocked_for(&"2001:db8::1".parse().unwrap()),
            OurSet::Blocked6
        );
    }
}
