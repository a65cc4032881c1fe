//! ignores: the sources nftsentry never bans, gathered at start and reload:
//! the ignore file, and (with `ignore_local`) every local address, loopback,
//! the default gateways and the resolvers (`localnet`), each with the reason
//! it is on the list, for the log line that says a probe was ignored.
//!
//! Knows nothing of nftables: `ruleset` puts the list into the ignore sets and
//! `detect` checks it again in user space.

use std::net::IpAddr;
use std::path::Path;

use crate::cidr::Cidr;
use crate::config::{self, Config};
use crate::error::Result;
use crate::host::localnet::Origin;
use crate::logging;

pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// One network on the ignore list and why it is there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ignored {
    pub net: Cidr,
    /// "ignore file /etc/nftsentry/ignore", "default gateway", ...
    pub why: String,
}

/// The whole ignore list for `cfg`, sorted, without duplicates.
pub fn collect(cfg: &Config) -> Result<Vec<Cidr>> {
    Ok(networks(&collect_labelled(cfg)?))
}

/// The ignore list with reasons: ignore file entries first, then the local
/// ones in `localnet::discover`'s order. A network listed twice keeps both
/// entries; `networks` merges them.
pub fn collect_labelled(cfg: &Config) -> Result<Vec<Ignored>> {
    let mut list = Vec::new();
    if let Some(path) = &cfg.ignore_file {
        match config::ignore::load(path)? {
            Some(nets) => {
                let why = format!("ignore file {}", path.display());
                list.extend(nets.into_iter().map(|net| Ignored {
                    net,
                    why: why.clone(),
                }));
            }
            None => logging::warning(&format!(
                "adminalert: ignore file {} does not exist; only local addresses are ignored",
                path.display()
            )),
        }
    }
    if cfg.ignore_local {
        for l in crate::host::localnet::discover(Path::new(RESOLV_CONF))? {
            let why = match l.origin {
                Origin::Loopback => "loopback".to_string(),
                Origin::Interface(name) => format!("local address on {name}"),
                Origin::Gateway => "default gateway".to_string(),
                Origin::Resolver => format!("resolver in {RESOLV_CONF}"),
            };
            list.push(Ignored { net: l.net, why });
        }
    }
    Ok(list)
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
