//! The set of sources that are never banned, as sorted, merged, disjoint
//! address ranges per family, so a lookup is one binary search.
//!
//! An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the same host as a.b.c.d:
//! it matches IPv4 entries, and an IPv4 address matches IPv6 entries that
//! cover its mapped form.

use std::net::IpAddr;

use crate::cidr::{Cidr, merge_ranges};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IgnoreList {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
    /// `v4` with the IPv4 part of `v6` (its ranges inside ::ffff:0:0/96,
    /// as IPv4), merged: what an IPv4 address or an IPv4-mapped one is
    /// looked up in, one binary search instead of one per family.
    v4_all: Vec<(u32, u32)>,
}

/// ::ffff:0.0.0.0, the first IPv4-mapped IPv6 address.
const MAPPED: u128 = 0xffff_0000_0000;
const MAPPED_END: u128 = MAPPED | 0xffff_ffff;

/// The IPv4 addresses whose mapped forms `lo..=hi` holds, if any.
fn mapped_part((lo, hi): (u128, u128)) -> Option<(u32, u32)> {
    (lo <= MAPPED_END && hi >= MAPPED).then(|| {
        (
            (lo.max(MAPPED) - MAPPED) as u32,
            (hi.min(MAPPED_END) - MAPPED) as u32,
        )
    })
}

impl IgnoreList {
    pub fn new(networks: Vec<Cidr>) -> IgnoreList {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for n in networks {
            let (lo, hi) = n.range();
            if n.is_ipv4() {
                v4.push((lo as u32, hi as u32));
            } else {
                v6.push((lo, hi));
            }
        }
        let v4 = merge_ranges(v4, |x| x.checked_add(1));
        let v6 = merge_ranges(v6, |x| x.checked_add(1));
        let both = v4
            .iter()
            .copied()
            .chain(v6.iter().filter_map(|&r| mapped_part(r)));
        let v4_all = merge_ranges(both.collect(), |x| x.checked_add(1));
        IgnoreList { v4, v6, v4_all }
    }

    /// `ip` or its other form (a.b.c.d and ::ffff:a.b.c.d are one host)
    /// is in a range of the list: one binary search.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => lookup(&self.v4_all, u32::from(*a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(m) => lookup(&self.v4_all, u32::from(m)),
                None => lookup(&self.v6, u128::from(*a)),
            },
        }
    }

    /// Does `net` hold an address of the list (or lie inside one)?
    pub fn overlaps(&self, net: &Cidr) -> bool {
        let (lo, hi) = net.range();
        if net.is_ipv4() {
            overlap(&self.v4_all, lo as u32, hi as u32)
        } else {
            overlap(&self.v6, lo, hi)
        }
    }

    /// The network of `prefix` around `src` that a ban covers, or `src`
    /// alone when that network holds an address of the list. A prefix that
    /// holds an ignored address is this host's own network, a gateway's or
    /// a trusted one: its addresses are distinct hosts (neighbours), not
    /// one customer's, so each is banned by itself. (`src` itself is not on
    /// the list: it is checked first.)
    pub fn ban_net(&self, src: IpAddr, prefix: u8) -> Cidr {
        let host = Cidr::host(src);
        let net = host.widen(prefix);
        if self.overlaps(&net) { host } else { net }
    }

    /// Number of disjoint ranges after merging overlapping and adjacent
    /// networks (both families).
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

impl From<Vec<Cidr>> for IgnoreList {
    fn from(networks: Vec<Cidr>) -> IgnoreList {
        IgnoreList::new(networks)
    }
}

/// Does any of the sorted disjoint `ranges` meet `lo..=hi`?
fn overlap<T: Copy + Ord>(ranges: &[(T, T)], lo: T, hi: T) -> bool {
    // The first range that does not end before lo is the only candidate.
    let i = ranges.partition_point(|&(_, end)| end < lo);
    i < ranges.len() && ranges[i].0 <= hi
}

fn lookup<T: Copy + Ord>(ranges: &[(T, T)], x: T) -> bool {
    // First range starting after x; the one before it is the only candidate.
    let i = ranges.partition_point(|&(lo, _)| lo <= x);
    i > 0 && x <= ranges[i - 1].1
}

/// One network on the ignore list and why it is there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ignored {
    pub net: Cidr,
    /// "ignore file /etc/nftsentry/ignore", "default gateway", ...
    pub why: String,
}

/// The networks of a labelled list, sorted, without duplicates.
pub fn networks(list: &[Ignored]) -> Vec<Cidr> {
    let mut nets: Vec<Cidr> = list.iter().map(|i| i.net).collect();
    nets.sort_unstable();
    nets.dedup();
    nets
}

/// Why `ip` is ignored: the first entry holding it (ignore file entries
/// come first, so an admin's own entry is named before a local reason).
/// IPv4-mapped IPv6 addresses match IPv4 entries, as `IgnoreList` does.
pub fn why<'a>(list: &'a [Ignored], ip: &IpAddr) -> Option<&'a str> {
    let mapped = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
        IpAddr::V4(v4) => Some(IpAddr::V6(v4.to_ipv6_mapped())),
    };
    list.iter()
        .find(|i| i.net.contains(ip) || mapped.is_some_and(|m| i.net.contains(&m)))
        .map(|i| i.why.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn list(nets: &[&str]) -> IgnoreList {
        IgnoreList::new(nets.iter().map(|s| s.parse().unwrap()).collect())
    }

    fn has(l: &IgnoreList, ip: &str) -> bool {
        l.contains(&ip.parse().unwrap())
    }

    #[test]
    fn v4_networks_and_hosts() {
        let l = list(&["192.0.2.0/24", "198.51.100.7", "10.0.0.0/8"]);
        assert!(has(&l, "192.0.2.0") && has(&l, "192.0.2.255") && has(&l, "192.0.2.77"));
        assert!(!has(&l, "192.0.1.255") && !has(&l, "192.0.3.0"));
        assert!(has(&l, "198.51.100.7"));
        assert!(!has(&l, "198.51.100.6") && !has(&l, "198.51.100.8"));
        assert!(has(&l, "10.255.255.255"));
        assert!(!has(&l, "11.0.0.0") && !has(&l, "0.0.0.0") && !has(&l, "255.255.255.255"));
        assert_eq!(l.len(), 3);
    }

    #[test]
    fn ban_nets_never_cover_an_ignored_address() {
        let l = list(&["2001:db8:1:2::53", "192.0.2.0/24", "2001:db8:7::/48"]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let net = |s: &str| s.parse::<Cidr>().unwrap();
        // Nothing ignored in this /64: the whole /64.
        assert_eq!(
            l.ban_net(ip("2001:db8:1:3::9"), 64),
            net("2001:db8:1:3::/64")
        );
        // The resolver ::53 is in this /64: single addresses there, near
        // it or far.
        for src in [
            "2001:db8:1:2:8000::1",
            "2001:db8:1:2::52",
            "2001:db8:1:2::1:0",
        ] {
            let n = l.ban_net(ip(src), 64);
            assert_eq!(n, net(src));
            assert!(!l.overlaps(&n));
        }
        // Inside an ignored /48 nothing could be banned; outside of it,
        // a /48 ban request narrows to miss it.
        assert!(l.overlaps(&net("2001:db8::/32")));
        assert!(!l.overlaps(&net("2001:db8:8::/48")));
        assert_eq!(l.ban_net(ip("2001:db8:6::1"), 48), net("2001:db8:6::/48"));
        // IPv4: hosts, and prefixes for escalation.
        assert_eq!(l.ban_net(ip("198.51.100.9"), 32), net("198.51.100.9"));
        assert_eq!(l.ban_net(ip("198.51.100.9"), 24), net("198.51.100.0/24"));
        assert!(l.overlaps(&net("192.0.0.0/16")));
        assert!(!l.overlaps(&net("192.0.3.0/24")));
        // A v6 entry covering a v4 host's mapped form counts for IPv4.
        let m = list(&["::ffff:198.18.0.7"]);
        assert!(m.overlaps(&net("198.18.0.0/24")));
    }

    #[test]
    fn v6_networks_and_hosts() {
        let l = list(&["2001:db8:1::/48", "2001:db8:9::1", "::1"]);
        assert!(has(&l, "2001:db8:1::") && has(&l, "2001:db8:1:ffff:ffff:ffff:ffff:ffff"));
        assert!(!has(&l, "2001:db8:2::") && !has(&l, "2001:db8:0:ffff::1"));
        assert!(has(&l, "2001:db8:9::1") && !has(&l, "2001:db8:9::2"));
        assert!(has(&l, "::1") && !has(&l, "::2") && !has(&l, "::"));
        // Families stay apart: 0.0.0.1 is not ::1.
        assert!(!has(&l, "0.0.0.1"));
    }

    #[test]
    fn mapped_addresses_match_v4_entries() {
        let l = list(&["192.0.2.0/24", "127.0.0.1"]);
        assert!(has(&l, "::ffff:192.0.2.9"));
        assert!(has(&l, "::ffff:127.0.0.1"));
        assert!(!has(&l, "::ffff:192.0.3.9"));
        // IPv4-compatible (deprecated ::a.b.c.d) is not the same host.
        assert!(!has(&l, "::192.0.2.9"));
        // And the other way round: a v6 entry written in mapped form.
        let l = list(&["::ffff:198.51.100.0/120"]);
        assert!(has(&l, "198.51.100.200"));
        assert!(!has(&l, "198.51.101.1"));
    }

    #[test]
    fn merging() {
        // Overlapping, nested, adjacent and duplicate networks fold together.
        let l = list(&[
            "192.0.2.128/25",
            "192.0.2.0/25",
            "192.0.2.5",
            "192.0.2.0/24",
            "198.51.100.0/24",
            "198.51.101.0/24",
            "203.0.113.9",
            "203.0.113.9",
            "2001:db8::/33",
            "2001:db8:8000::/33",
            "2001:db8:1::1",
        ]);
        assert_eq!(
            l.v4,
            vec![
                (0xc000_0200, 0xc000_02ff),
                (0xc633_6400, 0xc633_65ff),
                (0xcb00_7109, 0xcb00_7109)
            ]
        );
        assert_eq!(l.v6.len(), 1);
        assert_eq!(l.len(), 4);
        assert!(has(&l, "198.51.100.255") && has(&l, "198.51.101.0"));
        assert!(!has(&l, "198.51.102.0"));
        assert!(has(&l, "2001:db8:ffff::1") && !has(&l, "2001:db9::"));
    }

    #[test]
    fn whole_spaces_and_empty() {
        let l = list(&["0.0.0.0/0", "255.255.255.255", "::/0"]);
        assert!(
            has(&l, "0.0.0.0")
                && has(&l, "255.255.255.255")
                && has(&l, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
        );
        assert_eq!(l.len(), 2);
        let e = IgnoreList::new(Vec::new());
        assert!(e.is_empty());
        assert_eq!(e.len(), 0);
        assert!(!has(&e, "192.0.2.1") && !has(&e, "::ffff:192.0.2.1") && !has(&e, "::"));
    }

    #[test]
    fn agrees_with_cidr_contains() {
        // Pseudo-random networks and probes: the merged lookup must agree
        // with a linear scan over Cidr::contains (plus the mapped rule).
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for _ in 0..200 {
            let mut nets = Vec::new();
            for _ in 0..(next() % 20) {
                // Cluster addresses in 10.0.0.0/16 so ranges overlap often.
                let a = Ipv4Addr::from(0x0a00_0000 | (next() as u32 & 0xffff));
                let p = 16 + (next() % 17) as u8;
                nets.push(Cidr::new(IpAddr::V4(a), p).unwrap());
            }
            let l = IgnoreList::new(nets.clone());
            for _ in 0..200 {
                let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (next() as u32 & 0x1ffff)));
                let want = nets.iter().any(|n| n.contains(&ip));
                assert_eq!(l.contains(&ip), want, "{ip} in {nets:?}");
            }
        }
    }

    /// IPv4 entries, IPv6 entries in mapped form (::ffff:a.b.c.d/p, some
    /// reaching past ::ffff:0:0/96) and others, probed in both forms:
    /// `contains` and `overlaps` (one merged IPv4 list) agree with a linear
    /// scan that applies the mapped rule to each entry.
    #[test]
    fn mapped_entries_and_probes_agree_with_a_scan() {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mapped = |a: u32| IpAddr::V6(Ipv4Addr::from(a).to_ipv6_mapped());
        for _ in 0..300 {
            let mut nets = Vec::new();
            for _ in 0..(next() % 12) {
                let a = 0x0a00_0000 | (next() as u32 & 0xffff);
                let n = match next() % 4 {
                    0 | 1 => Cidr::new(IpAddr::V4(Ipv4Addr::from(a)), 16 + (next() % 17) as u8),
                    // ::ffff:10.x.y.z/112.. and a few as wide as /80 (all
                    // of the mapped space and more).
                    2 => Cidr::new(mapped(a), 80 + (next() % 49) as u8),
                    _ => Cidr::new(
                        IpAddr::V6(Ipv6Addr::from(0x2001_0db8u128 << 96 | u128::from(a))),
                        100 + (next() % 29) as u8,
                    ),
                };
                nets.push(n.unwrap());
            }
            let l = IgnoreList::new(nets.clone());
            let other = |ip: &IpAddr| match ip {
                IpAddr::V4(a) => Some(IpAddr::V6(a.to_ipv6_mapped())),
                IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4),
            };
            let held = |ip: &IpAddr| {
                nets.iter()
                    .any(|n| n.contains(ip) || other(ip).is_some_and(|o| n.contains(&o)))
            };
            for _ in 0..200 {
                let a = 0x0a00_0000 | (next() as u32 & 0x1ffff);
                let ip = match next() % 3 {
                    0 => IpAddr::V4(Ipv4Addr::from(a)),
                    1 => mapped(a),
                    _ => IpAddr::V6(Ipv6Addr::from(0x2001_0db8u128 << 96 | u128::from(a))),
                };
                assert_eq!(l.contains(&ip), held(&ip), "{ip} in {nets:?}");
                // An IPv4 network overlaps the list when one of its
                // addresses is held (checked at its ends and middle, and
                // by any entry inside it).
                if let IpAddr::V4(v4) = ip {
                    let net = Cidr::new(IpAddr::V4(v4), 24 + (next() % 9) as u8).unwrap();
                    let (lo, hi) = net.range();
                    let inside = nets.iter().any(|n| {
                        let (a, b) = n.range();
                        let (a, b) = if n.is_ipv4() {
                            (a, b)
                        } else {
                            match mapped_part((a, b)) {
                                Some((a, b)) => (u128::from(a), u128::from(b)),
                                None => return false,
                            }
                        };
                        a <= hi && b >= lo
                    });
                    assert_eq!(l.overlaps(&net), inside, "{net} in {nets:?}");
                }
            }
        }
    }

    fn entry(net: &str, why: &str) -> Ignored {
        Ignored {
            net: net.parse().unwrap(),
            why: why.into(),
        }
    }

    #[test]
    fn first_reason_wins_and_mapped_addresses_match() {
        let list = vec![
            entry("192.0.2.0/24", "ignore file f"),
            entry("192.0.2.254", "default gateway"),
            entry("2001:db8::53", "resolver in /etc/resolv.conf"),
        ];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(why(&list, &ip("192.0.2.254")), Some("ignore file f"));
        assert_eq!(why(&list, &ip("::ffff:192.0.2.9")), Some("ignore file f"));
        assert_eq!(
            why(&list, &ip("2001:db8::53")),
            Some("resolver in /etc/resolv.conf")
        );
        assert_eq!(why(&list, &ip("198.51.100.1")), None);
        assert_eq!(
            networks(&[list[1].clone(), list[0].clone(), list[1].clone()]),
            vec![list[0].net, list[1].net]
        );
    }
}
