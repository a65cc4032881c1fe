//! bans: the blocked4/blocked6 kernel sets seen as networks with time left.
//! A ban covers one address or a prefix (an IPv6 /64, an escalated IPv4
//! /24): the sets are interval sets with timeouts, each ban the interval's
//! start (carrying the timeout) and its end + 1 flagged as an interval end.
//! Add, remove, list and flush, each one netlink transaction. The kernel is
//! the source of truth: a ban is an interval, and it expires by itself.
//!
//! `BanSets` is what the response to a detection needs of them (add,
//! check, remove, flush); `KernelBans` is that on our netlink socket, the
//! table's owner.
//!
//! Knows nothing of why an address is banned (that is `detect` and `respond`).

use std::net::IpAddr;
use std::time::Duration;

use crate::cidr::Cidr;
use crate::error::{Error, Kind, Result};
use crate::kernel::nft::{Batch, Element, FAMILY, ListedElement, NftSocket};
use crate::table::sets::OurSet;

/// One active ban as the kernel holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ban {
    /// What it covers: an address (shown plain) or a prefix.
    pub addr: Cidr,
    /// The ban's full length.
    pub timeout: Option<Duration>,
    /// Time left before the kernel drops the element.
    pub expires_in: Option<Duration>,
}

pub fn set_for(net: &Cidr) -> &'static str {
    OurSet::blocked_of(net.is_ipv4()).name()
}

/// IPv4-mapped IPv6 addresses are IPv4 hosts.
pub fn canonical(addr: IpAddr) -> IpAddr {
    crate::cidr::canonical(addr)
}

fn width(net: &Cidr) -> usize {
    if net.is_ipv4() { 4 } else { 16 }
}

fn key_of(v: u128, width: usize) -> Vec<u8> {
    v.to_be_bytes()[16 - width..].to_vec()
}

/// The interval of `net`: its start (with the timeout and time left), and
/// its end + 1 as an interval end, left out at the top of the space.
pub fn elements(net: &Cidr, timeout: Option<Duration>, left: Option<Duration>) -> Vec<Element> {
    let w = width(net);
    let (lo, hi) = net.range();
    let top = if w == 4 { u32::MAX as u128 } else { u128::MAX };
    let mut out = vec![Element {
        key: key_of(lo, w),
        timeout,
        expiration: left,
        interval_end: false,
    }];
    if hi < top {
        out.push(Element {
            interval_end: true,
            ..Element::key(key_of(hi + 1, w))
        });
    }
    out
}

/// The bans of a listed interval set: each start paired with the end that
/// follows it (none at the top of the space). A set with no interval end at
/// all is a plain set of addresses (a table of a release before prefix
/// bans, adopted at start): each element one address. Elements that do not
/// make an aligned network (none of ours) are skipped.
pub fn pair_intervals(v4: bool, mut listed: Vec<ListedElement>) -> Vec<(Cidr, ListedElement)> {
    let w = if v4 { 4 } else { 16 };
    let num = |k: &[u8]| -> Option<u128> {
        (k.len() == w).then(|| k.iter().fold(0u128, |n, b| (n << 8) | u128::from(*b)))
    };
    let top = if v4 { u32::MAX as u128 } else { u128::MAX };
    // At one key, the end of an interval comes before the start of the
    // next (adjacent bans: 192.0.2.2 ends where 192.0.2.3 starts).
    listed.sort_by(|a, b| (&a.key, !a.interval_end).cmp(&(&b.key, !b.interval_end)));
    let plain = !listed.iter().any(|e| e.interval_end);
    let mut out = Vec::new();
    let mut i = 0;
    while i < listed.len() {
        let e = &listed[i];
        i += 1;
        let Some(start) = num(&e.key) else { continue };
        if e.interval_end {
            continue;
        }
        let end = match listed.get(i) {
            Some(n) if n.interval_end => {
                i += 1;
                match num(&n.key) {
                    Some(x) if x > start => x - 1,
                    _ => continue,
                }
            }
            Some(_) => start,
            None if plain => start,
            None => top,
        };
        if let Some(net) = Cidr::from_range(v4, start, end) {
            out.push((net, e.clone()));
        }
    }
    out
}

/// The ban sets as the response to a detection uses them.
pub trait BanSets {
    /// Bans `net` for `timeout` (re-banning renews the timeout).
    fn add(&mut self, net: Cidr, timeout: Duration) -> Result<()>;
    /// Is `net` itself a ban in its set now?
    fn contains(&mut self, net: Cidr) -> Result<bool>;
    /// Lifts the ban on `net`; Ok(false) if it was not in the set (or our
    /// table is not there).
    fn remove(&mut self, net: Cidr) -> Result<bool>;
    /// Lifts every ban; how many there were, `None` when our table is not
    /// there.
    fn flush(&mut self) -> Result<Option<usize>>;
    /// Every ban in force, IPv4 first, each family by address.
    fn list(&mut self) -> Result<Vec<Ban>>;
}

/// `BanSets` on the netlink socket that owns our table.
pub struct KernelBans<'a> {
    pub nft: &'a mut NftSocket,
    pub table: &'a str,
}

impl BanSets for KernelBans<'_> {
    fn add(&mut self, net: Cidr, timeout: Duration) -> Result<()> {
        add(self.nft, self.table, net, timeout, None)
    }

    fn contains(&mut self, net: Cidr) -> Result<bool> {
        contains(self.nft, self.table, net)
    }

    fn remove(&mut self, net: Cidr) -> Result<bool> {
        if !self.nft.table_exists(self.table)? {
            return Ok(false);
        }
        remove(self.nft, self.table, net)
    }

    fn flush(&mut self) -> Result<Option<usize>> {
        if !self.nft.table_exists(self.table)? {
            return Ok(None);
        }
        flush(self.nft, self.table).map(Some)
    }

    fn list(&mut self) -> Result<Vec<Ban>> {
        list(self.nft, self.table)
    }
}

/// Is `net` itself (not a wider or narrower ban) an interval of its set?
/// The kernel answers a get with the interval holding the key: it must
/// start at `net`'s start, and `net`'s end + 1 must be an interval end.
pub fn contains(sock: &mut NftSocket, table: &str, net: Cidr) -> Result<bool> {
    let set = set_for(&net);
    let e = elements(&net, None, None);
    if sock.get_element(table, set, &e[0].key)?.is_none() {
        return Ok(false);
    }
    match e.get(1) {
        None => Ok(true),
        // The end of the interval found: the one after our end is not ours.
        Some(end) => Ok(!end_is_inside(sock, table, set, &net, &end.key)?),
    }
}

/// Is the interval holding `net`'s start wider than `net`? True when the
/// address just past `net` is in the set through the same interval: the
/// kernel's get then answers with the same start.
fn end_is_inside(
    sock: &mut NftSocket,
    table: &str,
    set: &str,
    net: &Cidr,
    past: &[u8],
) -> Result<bool> {
    let start = elements(net, None, None).swap_remove(0).key;
    Ok(sock
        .get_interval_start(table, set, past)?
        .is_some_and(|s| s == start))
}

/// Fails with a plain message when our table is not there.
fn require_table(sock: &mut NftSocket, table: &str) -> Result<()> {
    if sock.table_exists(table)? {
        Ok(())
    } else {
        Err(Error::other(format!(
            "table inet {table} does not exist: start nftsentry first (nftsentry run or systemctl start nftsentry)"
        )))
    }
}

/// Bans `net` for `timeout` (`expires_in` < `timeout` restores a ban that
/// has already run for a while). Re-banning a network updates its timeout.
pub fn add(
    sock: &mut NftSocket,
    table: &str,
    net: Cidr,
    timeout: Duration,
    expires_in: Option<Duration>,
) -> Result<()> {
    let mut b = Batch::new();
    b.add_elements(
        FAMILY,
        table,
        set_for(&net),
        None,
        &elements(&net, Some(timeout), expires_in),
    );
    sock.commit_unchecked(&b).map_err(|e| {
        if e.kind == Kind::NotFound {
            missing_table(table, e)
        } else {
            e
        }
    })
}

/// Appends to `b` the bans `(network, timeout, time left)`, e.g. to the
/// batch that installs the table, so they are in from its first instant.
pub fn add_to_batch(
    b: &mut Batch,
    table: &str,
    bans: impl IntoIterator<Item = (Cidr, Duration, Duration)>,
) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for (net, timeout, left) in bans {
        let e = elements(&net, Some(timeout), Some(left.min(timeout)));
        if net.is_ipv4() { &mut v4 } else { &mut v6 }.extend(e);
    }
    for (set, elems) in [(OurSet::Blocked4, v4), (OurSet::Blocked6, v6)] {
        if !elems.is_empty() {
            b.add_elements(FAMILY, table, set.name(), None, &elems);
        }
    }
}

fn missing_table(table: &str, e: Error) -> Error {
    Error::other(format!(
        "{e} (is table inet {table} installed? start nftsentry first)"
    ))
}

/// Lifts the ban on `net`. Ok(false) if it was not banned.
pub fn remove(sock: &mut NftSocket, table: &str, net: Cidr) -> Result<bool> {
    require_table(sock, table)?;
    if !contains(sock, table, net)? {
        return Ok(false);
    }
    let keys: Vec<Element> = elements(&net, None, None)
        .into_iter()
        .map(|e| Element {
            timeout: None,
            expiration: None,
            ..e
        })
        .collect();
    let mut b = Batch::new();
    b.del_elements(FAMILY, table, set_for(&net), &keys);
    match sock.commit_unchecked(&b) {
        Ok(()) => Ok(true),
        Err(e) if e.kind == Kind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Every active ban, IPv4 first, each family sorted by address.
pub fn list(sock: &mut NftSocket, table: &str) -> Result<Vec<Ban>> {
    require_table(sock, table)?;
    let mut out = Vec::new();
    for set in OurSet::BLOCKED {
        let default_timeout = sock.set_info(table, set.name())?.timeout;
        let listed = sock.list_elements(table, set.name())?;
        for (net, e) in pair_intervals(set == OurSet::Blocked4, listed) {
            out.push(Ban {
                addr: net,
                timeout: e.timeout.or(default_timeout),
                expires_in: e.expiration,
            });
        }
    }
    out.sort_by_key(|b| (b.addr.is_ipv6(), b.addr));
    Ok(out)
}

/// Lifts every ban; returns how many there were.
pub fn flush(sock: &mut NftSocket, table: &str) -> Result<usize> {
    let n = list(sock, table)?.len();
    let mut b = Batch::new();
    for set in OurSet::BLOCKED {
        b.flush_set(FAMILY, table, set.name());
    }
    sock.commit(&b)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn families_and_sets() {
        let m: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
        assert_eq!(canonical(m), "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!(set_for(&net("198.51.100.7")), "blocked4");
        assert_eq!(set_for(&net("2001:db8::/64")), "blocked6");
    }

    #[test]
    fn intervals_encode_and_pair_back() {
        let t = Some(Duration::from_secs(60));
        let e = elements(&net("198.18.0.0/24"), t, None);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].key, vec![198, 18, 0, 0]);
        assert_eq!((e[0].timeout, e[0].interval_end), (t, false));
        assert_eq!(e[1].key, vec![198, 18, 1, 0]);
        assert!(e[1].interval_end && e[1].timeout.is_none());
        let h = elements(&net("198.18.0.7"), t, None);
        assert_eq!(h[1].key, vec![198, 18, 0, 8]);
        // The top of the space has no end element.
        assert_eq!(elements(&net("255.255.255.255"), t, None).len(), 1);
        assert_eq!(elements(&net("ffff::/16"), t, None).len(), 1);
        let v6 = elements(&net("2001:db8:1:2::/64"), t, None);
        assert_eq!(v6[1].key[..8], [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 3]);

        let listed = |els: Vec<Element>| -> Vec<ListedElement> {
            els.into_iter()
                .map(|e| ListedElement {
                    key: e.key,
                    interval_end: e.interval_end,
                    timeout: e.timeout,
                    expiration: e.expiration,
                })
                .collect()
        };
        let mut all = Vec::new();
        // Listed in any order, with nft's leading end element at 0.
        all.extend(listed(elements(&net("198.18.1.5"), t, None)));
        // Adjacent: 198.18.1.5 ends where 198.18.1.6 starts.
        all.extend(listed(elements(&net("198.18.1.6"), t, None)));
        all.extend(listed(elements(&net("198.18.1.7"), t, None)));
        all.extend(listed(elements(&net("198.18.0.0/24"), t, None)));
        all.extend(listed(elements(&net("255.255.255.255"), t, None)));
        all.push(ListedElement {
            key: vec![0, 0, 0, 0],
            interval_end: true,
            timeout: None,
            expiration: None,
        });
        let got: Vec<String> = pair_intervals(true, all)
            .into_iter()
            .map(|(n, _)| n.to_string())
            .collect();
        assert_eq!(
            got,
            [
                "198.18.0.0/24",
                "198.18.1.5",
                "198.18.1.6",
                "198.18.1.7",
                "255.255.255.255"
            ]
        );
        let six = listed(elements(&net("2001:db8:1:2::/64"), t, None));
        let got = pair_intervals(false, six);
        assert_eq!(got[0].0, net("2001:db8:1:2::/64"));
        assert_eq!(got[0].1.timeout, t);
        // A plain set of addresses (an older release's table).
        let plain: Vec<ListedElement> = ["198.18.0.1", "198.18.0.9"]
            .iter()
            .map(|a| ListedElement {
                key: a.parse::<std::net::Ipv4Addr>().unwrap().octets().to_vec(),
                interval_end: false,
                timeout: t,
                expiration: None,
            })
            .collect();
        let got: Vec<String> = pair_intervals(true, plain)
            .into_iter()
            .map(|(n, _)| n.to_string())
            .collect();
        assert_eq!(got, ["198.18.0.1", "198.18.0.9"]);
    }
}
