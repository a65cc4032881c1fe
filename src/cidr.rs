//! An IPv4 or IPv6 network (address plus prefix length), as written in the
//! ignore file, and the inclusive numeric range it covers, as nftables
//! interval sets store it; the merge of such ranges; the canonical form of
//! an address (an IPv4-mapped IPv6 address is its IPv4 host).
//!
//! Knows nothing of files or sockets.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The widest prefix a ban may cover, per family: an escalated IPv4 /24,
/// an IPv6 /48. Nothing wider is banned, whatever a state file or a
/// request says.
pub const WIDEST_BAN4: u8 = 24;
pub const WIDEST_BAN6: u8 = 48;

/// A network. The address is kept with its host bits cleared, so two ways of
/// writing the same network compare equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `addr/prefix`, host bits cleared. `None` if the prefix is too long for
    /// the family.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        let max = max_prefix(&addr);
        if prefix > max {
            return None;
        }
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(prefix))),
        };
        Some(Cidr { addr, prefix })
    }

    /// The network holding exactly one address.
    pub fn host(addr: IpAddr) -> Cidr {
        Cidr {
            addr,
            prefix: max_prefix(&addr),
        }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    pub fn is_ipv6(&self) -> bool {
        self.addr.is_ipv6()
    }

    /// The longest prefix of its family (32 or 128).
    pub fn max_prefix(&self) -> u8 {
        max_prefix(&self.addr)
    }

    /// A single address (/32, /128).
    pub fn is_host(&self) -> bool {
        self.prefix == max_prefix(&self.addr)
    }

    /// Does this network hold all of `other`?
    pub fn covers(&self, other: &Cidr) -> bool {
        self.is_ipv4() == other.is_ipv4()
            && self.prefix <= other.prefix
            && self.contains(&other.addr)
    }

    /// Do the two networks share an address? (Aligned blocks either nest
    /// or are disjoint.)
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.covers(other) || other.covers(self)
    }

    /// The network of `prefix` that holds this one (`prefix` clamped to
    /// this one's: a network never widens past what it was asked).
    pub fn widen(&self, prefix: u8) -> Cidr {
        Cidr::new(self.addr, prefix.min(self.prefix)).expect("shorter prefix")
    }

    /// The aligned block exactly from `start` to `end` (inclusive), if the
    /// range is one: how an interval read back from the kernel is named.
    pub fn from_range(v4: bool, start: u128, end: u128) -> Option<Cidr> {
        let bits: u32 = if v4 { 32 } else { 128 };
        if end < start || (v4 && end > u32::MAX as u128) {
            return None;
        }
        let span = end - start;
        // span + 1 must be a power of two and start aligned to it.
        if span.checked_add(1).is_some_and(|n| !n.is_power_of_two()) {
            return None;
        }
        let host_bits = 128 - span.leading_zeros();
        let host_bits = if span == u128::MAX { 128 } else { host_bits };
        if host_bits > bits || (host_bits < 128 && start & ((1u128 << host_bits) - 1) != 0) {
            return None;
        }
        let prefix = (bits - host_bits) as u8;
        let addr = if v4 {
            IpAddr::V4(Ipv4Addr::from(start as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(start))
        };
        Cidr::new(addr, prefix)
    }

    /// Narrow enough to be a ban (`WIDEST_BAN4`, `WIDEST_BAN6`)?
    pub fn is_bannable_width(&self) -> bool {
        self.prefix
            >= if self.is_ipv4() {
                WIDEST_BAN4
            } else {
                WIDEST_BAN6
            }
    }

    /// The network in tcp_wrappers' hosts_access(5) syntax: `192.0.2.7`,
    /// `192.0.2.0/255.255.255.0`, `[2001:db8::7]`, `[2001:db8::]/64`.
    pub fn hosts_access(&self) -> String {
        match self.addr {
            IpAddr::V4(a) if self.is_host() => a.to_string(),
            IpAddr::V4(a) => format!("{a}/{}", Ipv4Addr::from(mask32(self.prefix))),
            IpAddr::V6(a) if self.is_host() => format!("[{a}]"),
            IpAddr::V6(a) => format!("[{a}]/{}", self.prefix),
        }
    }

    /// Does this network hold `ip`? An IPv4 network never holds an IPv6
    /// address, IPv4-mapped ones included: the kernel sees those as IPv6.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(*ip) & mask32(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(*ip) & mask128(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }

    /// First and last address as numbers (IPv4 in the low 32 bits).
    pub fn range(&self) -> (u128, u128) {
        match self.addr {
            IpAddr::V4(a) => {
                let start = u32::from(a);
                (start as u128, (start | !mask32(self.prefix)) as u128)
            }
            IpAddr::V6(a) => {
                let start = u128::from(a);
                (start, start | !mask128(self.prefix))
            }
        }
    }
}

fn max_prefix(addr: &IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

fn mask32(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix as u32)
    }
}

fn mask128(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix as u32)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix == max_prefix(&self.addr) {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

/// In JSON as written: `"192.0.2.7"`, `"2001:db8::/64"`.
impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Read back as written (the fleet's queue file).
impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse()
            .map_err(|e: CidrError| serde::de::Error::custom(e.0))
    }
}

/// Why a network did not parse; the caller adds file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrError(pub String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CidrError {}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `192.0.2.1`, `192.0.2.0/24`, `2001:db8::/32`. Host bits set under the
    /// prefix (`192.0.2.1/24`) are cleared, as nft does.
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| CidrError(format!("`{s}` is not an IPv4 or IPv6 address")))?;
        let prefix = match prefix {
            None => max_prefix(&addr),
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max_prefix(&addr))
                .ok_or_else(|| {
                    CidrError(format!(
                        "`{s}`: prefix length must be a number from 0 to {}",
                        max_prefix(&addr)
                    ))
                })?,
        };
        Ok(Cidr::new(addr, prefix).expect("prefix checked above"))
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are IPv4 hosts.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        v4 => v4,
    }
}

/// Sorts inclusive ranges and folds overlapping or touching ones into one
/// (the kernel refuses overlapping intervals; a lookup wants disjoint ones).
/// `succ` is the next value, `None` at the top of the space.
pub fn merge_ranges<T: Copy + Ord>(
    mut ranges: Vec<(T, T)>,
    succ: fn(T) -> Option<T>,
) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            // `last.1 + 1 >= lo` without overflowing at the top of the space.
            Some(last) if lo <= last.1 || succ(last.1) == Some(lo) => {
                if hi > last.1 {
                    last.1 = hi;
                }
            }
            _ => out.push((lo, hi)),
        }
    }
    out.shrink_to_fit();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_masks() {
        let c: Cidr = "192.0.2.77/24".parse().unwrap();
        assert_eq!(c.to_string(), "192.0.2.0/24");
        assert_eq!(c.range(), (0xc000_0200, 0xc000_02ff));
        let h: Cidr = "2001:db8::1".parse().unwrap();
        assert_eq!(h.prefix(), 128);
        assert_eq!(h.to_string(), "2001:db8::1");
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert_eq!(all.range(), (0, u32::MAX as u128));
        let all6: Cidr = "::/0".parse().unwrap();
        assert_eq!(all6.range(), (0, u128::MAX));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "192.0.2",
            "192.0.2.1/33",
            "::1/129",
            "host.example",
            "1.2.3.4/-1",
            "1.2.3.4/",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn prefix_arithmetic() {
        let n64: Cidr = "2001:db8:1:2::/64".parse().unwrap();
        let host: Cidr = "2001:db8:1:2::77".parse().unwrap();
        assert!(n64.covers(&host) && !host.covers(&n64));
        assert!(n64.overlaps(&host) && host.overlaps(&n64));
        assert!(!n64.overlaps(&"2001:db8:1:3::/64".parse().unwrap()));
        assert_eq!(host.widen(64), n64);
        assert_eq!(host.widen(200), host);
        assert_eq!(n64.widen(48).to_string(), "2001:db8:1::/48");
        assert!(host.is_host() && !n64.is_host());
        let v4: Cidr = "198.18.0.9".parse().unwrap();
        assert_eq!(v4.widen(24).to_string(), "198.18.0.0/24");
        assert!(!v4.covers(&host) && !n64.covers(&v4));
        // Ranges back to networks.
        let (lo, hi) = n64.range();
        assert_eq!(Cidr::from_range(false, lo, hi), Some(n64));
        let (lo, hi) = v4.widen(24).range();
        assert_eq!(Cidr::from_range(true, lo, hi), Some(v4.widen(24)));
        let (lo, hi) = v4.range();
        assert_eq!(Cidr::from_range(true, lo, hi), Some(v4));
        assert_eq!(Cidr::from_range(false, 0, u128::MAX).unwrap().prefix(), 0);
        assert_eq!(
            Cidr::from_range(true, 0, u32::MAX as u128)
                .unwrap()
                .prefix(),
            0
        );
        assert_eq!(Cidr::from_range(true, 1, 2), None, "not aligned");
        assert_eq!(Cidr::from_range(true, 0, 2), None, "not a power of two");
        assert_eq!(Cidr::from_range(true, 0, 1u128 << 32), None, "too wide");
        // hosts_access(5) forms.
        assert_eq!(v4.hosts_access(), "198.18.0.9");
        assert_eq!(v4.widen(24).hosts_access(), "198.18.0.0/255.255.255.0");
        assert_eq!(host.hosts_access(), "[2001:db8:1:2::77]");
        assert_eq!(n64.hosts_access(), "[2001:db8:1:2::]/64");
    }

    #[test]
    fn contains_respects_family() {
        let c: Cidr = "198.51.100.0/24".parse().unwrap();
        assert!(c.contains(&"198.51.100.200".parse().unwrap()));
        assert!(!c.contains(&"198.51.101.1".parse().unwrap()));
        assert!(!c.contains(&"::ffff:198.51.100.1".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(&"2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains(&"2001:db9::1".parse().unwrap()));
    }
}
