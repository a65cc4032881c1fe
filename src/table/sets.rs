//! sets: the sets of our table, each with its name, its id in the
//! transaction that creates it, its key type and its kind, in one place.
//! Rules, listings, counts and the watch over the table all name a set
//! through this enum, never through a string.
//!
//! Knows nothing of what goes into a set (that is `ruleset` and `bans`).

use std::net::IpAddr;
use std::time::Duration;

use crate::cidr::Cidr;
use crate::kernel::nft::batch::{KeyType, SetSpec};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OurSet {
    /// Sources never banned (interval set).
    Ignore4,
    Ignore6,
    /// Banned addresses (hash sets), each element with its own timeout.
    Blocked4,
    Blocked6,
    /// Banned IPv6 prefixes of `ban_prefix6` (a /64): a hash set of their
    /// first addresses, matched against the source masked to the prefix,
    /// so a ban costs what an address's does.
    Blocked6Prefix,
    /// Banned prefixes of any other length (a manual block, a reload that
    /// changed `ban_prefix6`): interval sets with timeouts. Rare: the
    /// kernel's interval sets cost O(n) per insert.
    Blocked4Net,
    Blocked6Net,
    /// Tripwire ports (interval set).
    WatchTcp,
    WatchUdp,
    /// The fleet's decisions (`[crowdsec] pull`): an interval set whose
    /// elements have timeouts, so a Range decision is one element.
    Fleet4,
    Fleet6,
    /// Live peers (`protect_live_peers`): sources with an established TCP
    /// connection to a service of this host, fed by the packet path
    /// (dynamic, each element with a timeout).
    Live4,
    Live6,
}

/// How long a source stays a live peer after its connection last fed the
/// set: a connection feeds it once per `LIVE_PERIOD` while it carries
/// packets, so an active connection never lapses.
pub const LIVE_TIMEOUT: Duration = Duration::from_secs(300);

impl OurSet {
    /// Every set, in the order they are created and `nft list` shows them.
    pub const ALL: [OurSet; 11] = [
        OurSet::Ignore4,
        OurSet::Ignore6,
        OurSet::Blocked4,
        OurSet::Blocked6,
        OurSet::Blocked6Prefix,
        OurSet::Blocked4Net,
        OurSet::Blocked6Net,
        OurSet::WatchTcp,
        OurSet::WatchUdp,
        OurSet::Live4,
        OurSet::Live6,
    ];

    /// The fleet's sets, in a table only with `[crowdsec] pull`.
    pub const FLEET: [OurSet; 2] = [OurSet::Fleet4, OurSet::Fleet6];
    /// The live-peer sets, there only with `protect_live_peers`.
    pub const LIVE: [OurSet; 2] = [OurSet::Live4, OurSet::Live6];

    /// The ban sets.
    pub const BLOCKED: [OurSet; 5] = [
        OurSet::Blocked4,
        OurSet::Blocked6,
        OurSet::Blocked6Prefix,
        OurSet::Blocked4Net,
        OurSet::Blocked6Net,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OurSet::Ignore4 => "ignore4",
            OurSet::Ignore6 => "ignore6",
            OurSet::Blocked4 => "blocked4",
            OurSet::Blocked6 => "blocked6",
            OurSet::Blocked6Prefix => "blocked6_prefix",
            OurSet::Blocked4Net => "blocked4_net",
            OurSet::Blocked6Net => "blocked6_net",
            OurSet::WatchTcp => "watch_tcp",
            OurSet::WatchUdp => "watch_udp",
            OurSet::Fleet4 => "fleet4",
            OurSet::Fleet6 => "fleet6",
            OurSet::Live4 => "live4",
            OurSet::Live6 => "live6",
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
            OurSet::Blocked6Prefix => 7,
            OurSet::Blocked4Net => 8,
            OurSet::Blocked6Net => 9,
            OurSet::Fleet4 => 10,
            OurSet::Fleet6 => 11,
            OurSet::Live4 => 12,
            OurSet::Live6 => 13,
        }
    }

    pub fn key(self) -> KeyType {
        match self {
            OurSet::Ignore4
            | OurSet::Blocked4
            | OurSet::Blocked4Net
            | OurSet::Fleet4
            | OurSet::Live4 => KeyType::Ipv4Addr,
            OurSet::Ignore6
            | OurSet::Blocked6
            | OurSet::Blocked6Prefix
            | OurSet::Blocked6Net
            | OurSet::Fleet6
            | OurSet::Live6 => KeyType::Ipv6Addr,
            OurSet::WatchTcp | OurSet::WatchUdp => KeyType::InetService,
        }
    }

    /// A ban set (timeouts, a size) rather than a constant interval set.
    pub fn is_blocked(self) -> bool {
        OurSet::BLOCKED.contains(&self)
    }

    /// An interval set (the ignore and port sets, the ban sets of prefixes
    /// of any length, the fleet's sets).
    pub fn is_interval(self) -> bool {
        !matches!(
            self,
            OurSet::Blocked4
                | OurSet::Blocked6
                | OurSet::Blocked6Prefix
                | OurSet::Live4
                | OurSet::Live6
        )
    }

    /// The ban set that holds a ban of the address `addr`.
    pub fn blocked_for(addr: &IpAddr) -> OurSet {
        if addr.is_ipv4() {
            OurSet::Blocked4
        } else {
            OurSet::Blocked6
        }
    }

    /// The ban set that holds a ban of `net`, when IPv6 bans cover
    /// `prefix6`: an address in its family's address set, a prefix of
    /// `prefix6` in the prefix set, any other prefix in its family's
    /// interval set.
    pub fn blocked_of(net: &Cidr, prefix6: u8) -> OurSet {
        match (net.is_ipv4(), net.is_host()) {
            (true, true) => OurSet::Blocked4,
            (false, true) => OurSet::Blocked6,
            (true, false) => OurSet::Blocked4Net,
            (false, false) if net.prefix() == prefix6 => OurSet::Blocked6Prefix,
            (false, false) => OurSet::Blocked6Net,
        }
    }

    /// A live-peer set.
    pub fn is_live(self) -> bool {
        matches!(self, OurSet::Live4 | OurSet::Live6)
    }

    /// How it is created: ban sets with the default ban time and room for
    /// `set_size` bans each (the kernel counts an interval once, by its
    /// start); the fleet's sets as intervals with timeouts (each element
    /// has its own; the set's is the default ban time); live-peer sets
    /// dynamic with `LIVE_TIMEOUT` and `set_size` (full, a new peer is not
    /// recorded: its probes then ban as anyone's would).
    pub fn spec(self, ban_time: Duration, set_size: u32) -> SetSpec {
        let blocked = self.is_blocked();
        let fleet = matches!(self, OurSet::Fleet4 | OurSet::Fleet6);
        let live = self.is_live();
        SetSpec {
            name: self.name().into(),
            id: self.id(),
            key: self.key(),
            interval: self.is_interval(),
            dynamic: live,
            timeout: if live {
                Some(LIVE_TIMEOUT)
            } else {
                (blocked || fleet).then_some(ban_time)
            },
            size: (blocked || live).then_some(set_size),
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
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids, [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13]);
        assert_eq!(OurSet::FLEET.map(OurSet::id), [10, 11]);
        let names: std::collections::HashSet<&str> = OurSet::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names.len(), 11);
        let net = |s: &str| s.parse::<Cidr>().unwrap();
        assert_eq!(OurSet::blocked_of(&net("192.0.2.7"), 64), OurSet::Blocked4);
        assert_eq!(
            OurSet::blocked_of(&net("192.0.2.0/24"), 64),
            OurSet::Blocked4Net
        );
        assert_eq!(
            OurSet::blocked_of(&net("2001:db8::7"), 64),
            OurSet::Blocked6
        );
        assert_eq!(
            OurSet::blocked_of(&net("2001:db8::/64"), 64),
            OurSet::Blocked6Prefix
        );
        assert_eq!(
            OurSet::blocked_of(&net("2001:db8::/56"), 64),
            OurSet::Blocked6Net
        );
        assert_eq!(
            OurSet::blocked_of(&net("2001:db8::/56"), 56),
            OurSet::Blocked6Prefix
        );
        assert_eq!(
            OurSet::blocked_for(&"2001:db8::1".parse().unwrap()),
            OurSet::Blocked6
        );
    }
}
