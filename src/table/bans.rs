//! bans: the blocked4/blocked6 kernel sets seen as addresses with time left.
//! Add, remove, list and flush, each one netlink transaction. The kernel is
//! the source of truth: a ban is an element, and it expires by itself.
//!
//! `BanSets` is what the response to a detection needs of them (add,
//! check, remove, flush); `KernelBans` is that on our netlink socket, the
//! table's owner.
//!
//! Knows nothing of why an address is banned (that is `detect` and `respond`).

use std::net::IpAddr;
use std::time::Duration;

use crate::error::{Error, Kind, Result};
use crate::kernel::nft::{Batch, Element, FAMILY, NftSocket};
use crate::table::sets::OurSet;

/// One active ban as the kernel holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ban {
    pub addr: IpAddr,
    /// The ban's full length.
    pub timeout: Option<Duration>,
    /// Time left before the kernel drops the element.
    pub expires_in: Option<Duration>,
    /// What it dropped so far (packets, bytes): the element's counter.
    pub dropped: Option<(u64, u64)>,
}

pub fn set_for(addr: &IpAddr) -> &'static str {
    OurSet::blocked_for(addr).name()
}

/// IPv4-mapped IPv6 addresses are IPv4 hosts: ban them in the IPv4 set.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        v4 => v4,
    }
}

fn key(addr: &IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The ban sets as the response to a detection uses them.
pub trait BanSets {
    /// Bans `addr` for `timeout` (re-banning renews the timeout).
    fn add(&mut self, addr: IpAddr, timeout: Duration) -> Result<()>;
    /// Is `addr` in its set now?
    fn contains(&mut self, addr: IpAddr) -> Result<bool>;
    /// Lifts the ban on `addr`; Ok(false) if it was not in the set (or our
    /// table is not there).
    fn remove(&mut self, addr: IpAddr) -> Result<bool>;
    /// Lifts every ban; how many there were, `None` when our table is not
    /// there.
    fn flush(&mut self) -> Result<Option<usize>>;
    /// Every ban in force, IPv4 first, each family by address.
    fn list(&mut self) -> Result<Vec<Ban>>;
    /// What the ban on `addr` dropped so far (packets, bytes); `None`
    /// when it is not in its set (or its set counts nothing).
    fn dropped(&mut self, _addr: IpAddr) -> Result<Option<(u64, u64)>> {
        Ok(None)
    }
}

/// `BanSets` on the netlink socket that owns our table.
pub struct KernelBans<'a> {
    pub nft: &'a mut NftSocket,
    pub table: &'a str,
}

impl BanSets for KernelBans<'_> {
    fn add(&mut self, addr: IpAddr, timeout: Duration) -> Result<()> {
        add(self.nft, self.table, addr, timeout, None)
    }

    fn contains(&mut self, addr: IpAddr) -> Result<bool> {
        let addr = canonical(addr);
        Ok(self
            .nft
            .get_element(self.table, set_for(&addr), &key(&addr))?
            .is_some())
    }

    fn remove(&mut self, addr: IpAddr) -> Result<bool> {
        if !self.nft.table_exists(self.table)? {
            return Ok(false);
        }
        remove(self.nft, self.table, addr)
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

    fn dropped(&mut self, addr: IpAddr) -> Result<Option<(u64, u64)>> {
        let addr = canonical(addr);
        Ok(self
            .nft
            .get_element(self.table, set_for(&addr), &key(&addr))?
            .and_then(|e| e.counter))
    }
}

/// Packets and bytes the table's drop rules dropped since it was
/// installed, IPv4 and IPv6: the `counter` of the rule that looks up each
/// ban set.
pub fn dropped_by_rules(sock: &mut NftSocket, table: &str) -> Result<[(u64, u64); 2]> {
    let mut out = [(0, 0); 2];
    for r in sock.rule_counters(table, crate::table::ruleset::CHAIN)? {
        let Some(c) = r.counter else { continue };
        for (i, set) in OurSet::BLOCKED.iter().enumerate() {
            if r.sets.iter().any(|s| s == set.name()) {
                out[i].0 += c.0;
                out[i].1 += c.1;
            }
        }
    }
    Ok(out)
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

/// Bans `addr` for `timeout` (`expires_in` < `timeout` restores a ban that
/// has already run for a while). Re-banning an address updates its timeout.
pub fn add(
    sock: &mut NftSocket,
    table: &str,
    addr: IpAddr,
    timeout: Duration,
    expires_in: Option<Duration>,
) -> Result<()> {
    let addr = canonical(addr);
    let mut b = Batch::new();
    b.add_elements(
        FAMILY,
        table,
        set_for(&addr),
        None,
        &[Element {
            key: key(&addr),
            timeout: Some(timeout),
            expiration: expires_in,
            interval_end: false,
            counter: None,
        }],
    );
    sock.commit_unchecked(&b).map_err(|e| {
        if e.kind == Kind::NotFound {
            missing_table(table, e)
        } else {
            e
        }
    })
}

/// What bans dropped so far, by address: carried into a new table.
pub type Dropped = std::collections::HashMap<IpAddr, (u64, u64)>;

/// Appends to `b` the bans `(address, timeout, time left)`, e.g. to the
/// batch that installs the table, so they are in from its first instant.
pub fn add_to_batch(
    b: &mut Batch,
    table: &str,
    bans: impl IntoIterator<Item = (IpAddr, Duration, Duration)>,
) {
    add_to_batch_carrying(b, table, bans, &Dropped::new())
}

/// The same, each ban's counter starting from what `dropped` says it
/// dropped in the table it comes from.
pub fn add_to_batch_carrying(
    b: &mut Batch,
    table: &str,
    bans: impl IntoIterator<Item = (IpAddr, Duration, Duration)>,
    dropped: &Dropped,
) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for (addr, timeout, left) in bans {
        let addr = canonical(addr);
        let e = Element {
            key: key(&addr),
            timeout: Some(timeout),
            expiration: Some(left.min(timeout)),
            interval_end: false,
            counter: dropped.get(&addr).copied().filter(|&(p, _)| p > 0),
        };
        if addr.is_ipv4() { &mut v4 } else { &mut v6 }.push(e);
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

/// Lifts the ban on `addr`. Ok(false) if it was not banned.
pub fn remove(sock: &mut NftSocket, table: &str, addr: IpAddr) -> Result<bool> {
    let addr = canonical(addr);
    require_table(sock, table)?;
    let mut b = Batch::new();
    b.del_elements(FAMILY, table, set_for(&addr), &[Element::key(key(&addr))]);
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
        for e in sock.list_elements(table, set.name())? {
            let addr = match e.key.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(&e.key[..]).unwrap()),
                16 => IpAddr::from(<[u8; 16]>::try_from(&e.key[..]).unwrap()),
                _ => continue,
            };
            out.push(Ban {
                addr,
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

    #[test]
    fn mapped_addresses_are_ipv4() {
        let m: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
        assert_eq!(canonical(m), "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!(set_for(&canonical(m)), "blocked4");
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        assert_eq!(canonical(v6), v6);
        assert_eq!(set_for(&v6), "blocked6");
    }
}
