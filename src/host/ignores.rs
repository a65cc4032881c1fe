//! ignores: the sources nftsentry never bans, gathered at start and reload:
//! the built-in list (addresses no host sends from, whatever the config),
//! the ignore file (both in `configured_labelled`), and (with
//! `ignore_local`) every local address, loopback, the gateways and the
//! resolvers (`localnet`, `local_labelled`, gathered again by the daemon
//! when they change), each with the reason it is on the list, for the log
//! line that says a probe was ignored.
//!
//! Knows nothing of nftables: `ruleset` puts the list into the ignore sets and
//! `detect` checks it again in user space (`detect::Ignored` is an entry).

use crate::cidr::Cidr;
use crate::config::{self, Config};
pub use crate::detect::{Ignored, networks};
use crate::error::Result;
use crate::host::localnet::LocalIgnore;
use crate::host::resolvers::ResolverFiles;

pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Sources that are never banned, whatever `ignore_file` and `ignore_local`
/// say, with the reason the log line gives ("never banned: multicast").
/// No host sends a probe from one of them: a packet that claims to is forged
/// (or a client without an address yet, as a DHCP DISCOVER from 0.0.0.0),
/// and a ban on it would drop every such client, or nothing at all.
pub const NEVER_BANNED: [(&str, &str); 5] = [
    ("0.0.0.0/8", "unspecified address"),
    ("255.255.255.255", "broadcast"),
    ("224.0.0.0/4", "multicast"),
    ("::", "unspecified address"),
    ("ff00::/8", "multicast"),
];

/// `NEVER_BANNED` as ignore list entries.
pub fn never_banned() -> Vec<Ignored> {
    NEVER_BANNED
        .iter()
        .map(|(net, what)| Ignored {
            net: net.parse().expect("a built-in network"),
            why: format!("never banned: {what}"),
        })
        .collect()
}

/// The whole ignore list for `cfg`, sorted, without duplicates.
pub fn collect(cfg: &Config) -> Result<Vec<Cidr>> {
    Ok(networks(&collect_labelled(cfg)?))
}

/// The ignore list with reasons: the built-in entries first (their reason
/// wins), then the ignore file's, then the local ones in
/// `localnet::discover`'s order. A network listed twice keeps both entries;
/// `networks` merges them.
pub fn collect_labelled(cfg: &Config) -> Result<Vec<Ignored>> {
    let mut list = configured_labelled(cfg)?;
    if cfg.ignore_local {
        list.extend(local_labelled(&ResolverFiles::system())?);
    }
    Ok(list)
}

/// The entries that do not follow the host's neighbourhood: the built-in
/// list, then the ignore file's.
pub fn configured_labelled(cfg: &Config) -> Result<Vec<Ignored>> {
    let mut list = never_banned();
    if let Some(path) = &cfg.ignore_file {
        match config::ignore::load_lines(path)? {
            Some(nets) => {
                list.extend(nets.into_iter().map(|(net, line)| Ignored {
                    net,
                    why: format!("ignore file {}:{line}", path.display()),
                }));
            }
            None => log_warning!(
                "adminalert: ignore file {} does not exist; only local addresses are ignored",
                path.display()
            ),
        }
    }
    Ok(list)
}

/// The local entries (`ignore_local`): this host's addresses, gateways
/// and resolvers now, each with its reason.
pub fn local_labelled(files: &ResolverFiles) -> Result<Vec<Ignored>> {
    Ok(labelled(crate::host::localnet::discover(files)?))
}

/// `local_labelled`, with the resolver files it skipped in `notes`.
pub fn local_labelled_noting(
    files: &ResolverFiles,
    notes: &mut Vec<String>,
) -> Result<Vec<Ignored>> {
    Ok(labelled(crate::host::localnet::discover_noting(
        files, notes,
    )?))
}

fn labelled(local: Vec<LocalIgnore>) -> Vec<Ignored> {
    local
        .into_iter()
        .map(|l| Ignored {
            net: l.net,
            why: l.origin.reason(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_list_stands_without_ignore_file_or_local_addresses() {
        let cfg = Config {
            ignore_file: None,
            ignore_local: false,
            ..Default::default()
        };
        let list = collect_labelled(&cfg).unwrap();
        assert_eq!(list, never_banned());
        let nets = networks(&list);
        let ignore = crate::detect::IgnoreList::new(nets);
        for (ip, why) in [
            ("0.0.0.0", "never banned: unspecified address"),
            ("0.1.2.3", "never banned: unspecified address"),
            ("255.255.255.255", "never banned: broadcast"),
            ("224.0.0.251", "never banned: multicast"),
            ("239.255.255.250", "never banned: multicast"),
            ("::", "never banned: unspecified address"),
            ("ff02::1", "never banned: multicast"),
            ("::ffff:0.0.0.0", "never banned: unspecified address"),
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert!(ignore.contains(&ip), "{ip}");
            assert_eq!(crate::detect::why(&list, &ip), Some(why), "{ip}");
        }
        for ip in [
            "1.0.0.0",
            "192.0.2.255",
            "223.255.255.255",
            "240.0.0.1",
            "::1",
            "fe80::1",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert!(!ignore.contains(&ip), "{ip}");
        }
    }
}
