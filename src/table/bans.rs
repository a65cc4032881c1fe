//! bans: the ban sets of our table seen as networks with time left. A ban
//! covers one address or a prefix, and goes into the set of its kind
//! (`OurSet::blocked_of`): an address into blocked4/blocked6 (hash sets),
//! an IPv6 prefix of `ban_prefix6` into blocked6_prefix (a hash set of
//! first addresses, which the rule matches against the masked source), any
//! other prefix into blocked4_net/blocked6_net, interval sets where a ban
//! is the interval's start (carrying the timeout) and its end + 1 flagged
//! as an interval end. The kernel's interval sets cost O(n) per insert
//! (20,000 one-ban transactions: 17.7 s, against 0.24 s for a hash set),
//! so the bans a flood makes never go there.
//!
//! Add, remove, list and flush, each one netlink transaction, or additions
//! held in a `BanQueue` and sent together at the end of a burst. The kernel
//! is the source of truth: a ban is an element, and it expires by itself.
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
    /// What it dropped so far (packets, bytes): the element's counter.
    pub dropped: Option<(u64, u64)>,
}

pub fn set_for(net: &Cidr, prefix6: u8) -> &'static str {
    OurSet::blocked_of(net, prefix6).name()
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

/// The elements of a ban of `net` in `set`: in a hash set its first
/// address, in an interval set the interval (`intervals`).
pub fn elements_in(
    set: OurSet,
    net: &Cidr,
    timeout: Option<Duration>,
    left: Option<Duration>,
) -> Vec<Element> {
    if set.is_interval() {
        return elements(net, timeout, left);
    }
    vec![Element {
        key: key_of(net.range().0, width(net)),
        timeout,
        expiration: left,
        interval_end: false,
        counter: None,
    }]
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
        counter: None,
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
    /// What the ban on `net` dropped so far (packets, bytes); `None`
    /// when it is not in its set (or its set counts nothing).
    fn dropped(&mut self, _net: Cidr) -> Result<Option<(u64, u64)>> {
        Ok(None)
    }
    /// Additions wait for the end of the burst (`QueuedBans`): their
    /// success is known only then.
    fn queued(&self) -> bool {
        false
    }
}

/// `BanSets` on the netlink socket that owns our table.
pub struct KernelBans<'a> {
    pub nft: &'a mut NftSocket,
    pub table: &'a str,
    /// `ban_prefix6`: which IPv6 prefixes go into blocked6_prefix.
    pub prefix6: u8,
}

impl BanSets for KernelBans<'_> {
    fn add(&mut self, net: Cidr, timeout: Duration) -> Result<()> {
        add(self.nft, self.table, self.prefix6, net, timeout, None)
    }

    fn contains(&mut self, net: Cidr) -> Result<bool> {
        contains(self.nft, self.table, self.prefix6, net)
    }

    fn remove(&mut self, net: Cidr) -> Result<bool> {
        if !self.nft.table_exists(self.table)? {
            return Ok(false);
        }
        remove(self.nft, self.table, self.prefix6, net)
    }

    fn flush(&mut self) -> Result<Option<usize>> {
        if !self.nft.table_exists(self.table)? {
            return Ok(None);
        }
        flush(self.nft, self.table, self.prefix6).map(Some)
    }

    fn list(&mut self) -> Result<Vec<Ban>> {
        list(self.nft, self.table, self.prefix6)
    }

    fn dropped(&mut self, net: Cidr) -> Result<Option<(u64, u64)>> {
        // The counter of a ban in an interval set is on its start element.
        let set = OurSet::blocked_of(&net, self.prefix6);
        let start = elements_in(set, &net, None, None).swap_remove(0).key;
        Ok(self
            .nft
            .get_element(self.table, set.name(), &start)?
            .and_then(|e| e.counter))
    }
}

/// Bans held back until the end of a burst (the packets of one NFLOG read)
/// and then sent in one transaction: a flood's bans cost one round trip
/// per read, not one each. What the kernel refuses is kept, with why, for
/// the caller to undo (`take_refused`).
#[derive(Default)]
pub struct BanQueue {
    adds: Vec<(Cidr, Duration)>,
    refused: Vec<(Cidr, Error)>,
}

impl BanQueue {
    pub fn is_empty(&self) -> bool {
        self.adds.is_empty()
    }

    /// Sends what is queued: every set's elements in one transaction. If
    /// the kernel refuses it, each ban is sent alone, so one bad element
    /// costs only its own ban.
    pub fn send(&mut self, sock: &mut NftSocket, table: &str, prefix6: u8) {
        let adds = std::mem::take(&mut self.adds);
        if adds.is_empty() {
            return;
        }
        // As the table's install adds bans: each set's elements together.
        let mut b = Batch::new();
        add_to_batch(&mut b, table, prefix6, adds.iter().map(|&(n, t)| (n, t, t)));
        if sock.commit_unchecked(&b).is_ok() {
            return;
        }
        for (net, timeout) in adds {
            if let Err(e) = add(sock, table, prefix6, net, timeout, None) {
                self.refused.push((net, e));
            }
        }
    }

    /// The bans the kernel refused since the last call.
    pub fn take_refused(&mut self) -> Vec<(Cidr, Error)> {
        std::mem::take(&mut self.refused)
    }
}

/// `BanSets` on our socket with additions held in a `BanQueue` until the
/// burst ends; anything else first sends what is queued, so the kernel
/// sees every change in the order it was made.
pub struct QueuedBans<'a> {
    pub nft: &'a mut NftSocket,
    pub table: &'a str,
    pub prefix6: u8,
    pub queue: &'a mut BanQueue,
}

impl QueuedBans<'_> {
    fn now(&mut self) -> KernelBans<'_> {
        self.queue.send(self.nft, self.table, self.prefix6);
        KernelBans {
            nft: self.nft,
            table: self.table,
            prefix6: self.prefix6,
        }
    }
}

impl BanSets for QueuedBans<'_> {
    fn add(&mut self, net: Cidr, timeout: Duration) -> Result<()> {
        self.queue.adds.push((net, timeout));
        Ok(())
    }

    fn queued(&self) -> bool {
        true
    }

    fn contains(&mut self, net: Cidr) -> Result<bool> {
        self.now().contains(net)
    }

    fn remove(&mut self, net: Cidr) -> Result<bool> {
        self.now().remove(net)
    }

    fn flush(&mut self) -> Result<Option<usize>> {
        self.now().flush()
    }

    fn list(&mut self) -> Result<Vec<Ban>> {
        self.now().list()
    }

    fn dropped(&mut self, net: Cidr) -> Result<Option<(u64, u64)>> {
        self.now().dropped(net)
    }
}

/// Packets and bytes the table's drop rules dropped since it was
/// installed, IPv4 and IPv6: the `counter` of the rule that looks up each
/// ban set.
pub fn dropped_by_rules(sock: &mut NftSocket, table: &str) -> Result<[(u64, u64); 2]> {
    let mut out = [(0, 0); 2];
    for r in sock.rule_counters(table, crate::table::ruleset::CHAIN)? {
        let Some(c) = r.counter else { continue };
        for set in OurSet::BLOCKED {
            // By family: every ban set of IPv4, then of IPv6.
            let i = usize::from(set.key() != crate::kernel::nft::KeyType::Ipv4Addr);
            if r.sets.iter().any(|s| s == set.name()) {
                out[i].0 += c.0;
                out[i].1 += c.1;
            }
        }
    }
    Ok(out)
}

/// Is `net` itself (not a wider or narrower ban) a ban of its set? In an
/// interval set the kernel answers a get with the interval holding the key:
/// it must start at `net`'s start and not reach past its end.
pub fn contains(sock: &mut NftSocket, table: &str, prefix6: u8, net: Cidr) -> Result<bool> {
    let our = OurSet::blocked_of(&net, prefix6);
    let set = our.name();
    let e = elements_in(our, &net, None, None);
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
    prefix6: u8,
    net: Cidr,
    timeout: Duration,
    expires_in: Option<Duration>,
) -> Result<()> {
    let set = OurSet::blocked_of(&net, prefix6);
    let mut b = Batch::new();
    b.add_elements(
        FAMILY,
        table,
        set.name(),
        None,
        &elements_in(set, &net, Some(timeout), expires_in),
    );
    sock.commit_unchecked(&b).map_err(|e| {
        if e.kind == Kind::NotFound {
            missing_table(table, e)
        } else {
            e
        }
    })
}

/// What bans dropped so far, by network: carried into a new table.
pub type Dropped = std::collections::HashMap<Cidr, (u64, u64)>;

/// Appends to `b` the bans `(network, timeout, time left)`, e.g. to the
/// batch that installs the table, so they are in from its first instant.
pub fn add_to_batch(
    b: &mut Batch,
    table: &str,
    prefix6: u8,
    bans: impl IntoIterator<Item = (Cidr, Duration, Duration)>,
) {
    add_to_batch_carrying(b, table, prefix6, bans, &Dropped::new())
}

/// The same, each ban's counter starting from what `dropped` says it
/// dropped in the table it comes from (on the start of an interval).
pub fn add_to_batch_carrying(
    b: &mut Batch,
    table: &str,
    prefix6: u8,
    bans: impl IntoIterator<Item = (Cidr, Duration, Duration)>,
    dropped: &Dropped,
) {
    let mut by_set: Vec<(OurSet, Vec<Element>)> =
        OurSet::BLOCKED.iter().map(|s| (*s, Vec::new())).collect();
    for (net, timeout, left) in bans {
        let set = OurSet::blocked_of(&net, prefix6);
        let mut e = elements_in(set, &net, Some(timeout), Some(left.min(timeout)));
        e[0].counter = dropped.get(&net).copied().filter(|&(p, _)| p > 0);
        if let Some((_, v)) = by_set.iter_mut().find(|(s, _)| *s == set) {
            v.extend(e);
        }
    }
    for (set, elems) in by_set {
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
pub fn remove(sock: &mut NftSocket, table: &str, prefix6: u8, net: Cidr) -> Result<bool> {
    require_table(sock, table)?;
    let set = OurSet::blocked_of(&net, prefix6);
    if set.is_interval() && !contains(sock, table, prefix6, net)? {
        return Ok(false);
    }
    let keys: Vec<Element> = elements_in(set, &net, None, None)
        .into_iter()
        .map(|e| Element {
            timeout: None,
            expiration: None,
            ..e
        })
        .collect();
    let mut b = Batch::new();
    b.del_elements(FAMILY, table, set.name(), &keys);
    match sock.commit_unchecked(&b) {
        Ok(()) => Ok(true),
        Err(e) if e.kind == Kind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Every active ban, IPv4 first, each family sorted by address. The
/// prefix set's elements are prefixes of `prefix6`.
pub fn list(sock: &mut NftSocket, table: &str, prefix6: u8) -> Result<Vec<Ban>> {
    require_table(sock, table)?;
    let mut out = Vec::new();
    for set in OurSet::BLOCKED {
        let default_timeout = match sock.set_info(table, set.name()) {
            Ok(i) => i.timeout,
            // A table of a release before prefix bans has no prefix sets.
            Err(e) if e.kind == Kind::NotFound && set.is_interval() => continue,
            Err(e) if e.kind == Kind::NotFound && set == OurSet::Blocked6Prefix => continue,
            Err(e) => return Err(e),
        };
        let listed = sock.list_elements(table, set.name())?;
        let v4 = set.key() == crate::kernel::nft::KeyType::Ipv4Addr;
        let nets: Vec<(Cidr, ListedElement)> = if set.is_interval() {
            pair_intervals(v4, listed)
        } else {
            let prefix = if set == OurSet::Blocked6Prefix {
                prefix6
            } else if v4 {
                32
            } else {
                128
            };
            listed
                .into_iter()
                .filter(|e| !e.interval_end)
                .filter_map(|e| {
                    let addr = match e.key.len() {
                        4 => IpAddr::from(<[u8; 4]>::try_from(&e.key[..]).ok()?),
                        16 => IpAddr::from(<[u8; 16]>::try_from(&e.key[..]).ok()?),
                        _ => return None,
                    };
                    Some((Cidr::new(addr, prefix)?, e))
                })
                .collect()
        };
        for (net, e) in nets {
            out.push(Ban {
                addr: net,
                timeout: e.timeout.or(default_timeout),
                expires_in: e.expiration,
                dropped: e.counter,
            });
        }
    }
    out.sort_by_key(|b| (b.addr.is_ipv6(), b.addr));
    Ok(out)
}

/// Lifts every ban; returns how many there were.
pub fn flush(sock: &mut NftSocket, table: &str, prefix6: u8) -> Result<usize> {
    let n = list(sock, table, prefix6)?.len();
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
        assert_eq!(set_for(&net("198.51.100.7"), 64), "blocked4");
        assert_eq!(set_for(&net("2001:db8::/64"), 64), "blocked6_prefix");
        assert_eq!(set_for(&net("2001:db8::/64"), 128), "blocked6_net");
        // In a hash set a ban is one element: the first address.
        let e = elements_in(
            OurSet::Blocked6Prefix,
            &net("2001:db8:1:2::/64"),
            None,
            None,
        );
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].key[..8], [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2]);
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
                    counter: None,
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
            counter: None,
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
                counter: None,
            })
            .collect();
        let got: Vec<String> = pair_intervals(true, plain)
            .into_iter()
            .map(|(n, _)| n.to_string())
            .collect();
        assert_eq!(got, ["198.18.0.1", "198.18.0.9"]);
    }
}
