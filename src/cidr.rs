//! An IPv4 or IPv6 network (address plus prefix length), as written in the
//! ignore file, and the inclusive numeric range it covers, as nftables
//! interval sets store it; the merge of such ranges; the canonical form of
//! an address (an IPv4-mapped IPv6 address is its IPv4 host).
//!
//! Knows nothing of files or sockets.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

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
