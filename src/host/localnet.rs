//! The host's own neighbourhood, which nftsentry never bans by default: every
//! address of every local interface, loopback, the gateways of every route
//! of every routing table (and of the nexthop objects), and the resolvers
//! (`resolvers`: resolv.conf, systemd-resolved's and dnsmasq's upstreams).
//! Spoofing one of them is the cheapest way to turn a scan blocker against
//! its own host, so they are ignored before anything else is considered.
//!
//! Owns the resolv.conf parser and the choice of what counts as local; the
//! addresses and gateways themselves come from the NETLINK_ROUTE dumps of
//! `kernel::rtnetlink_dump`. Reads the namespace of the calling thread,
//! when called; it knows nothing of nftables, of the ignore file or of
//! when the daemon calls it again (`watch` decides that).

use std::net::IpAddr;
use std::path::PathBuf;

use crate::cidr::Cidr;
use crate::error::Result;
use crate::host::resolvers::{self, ResolverFiles, Upstream};
pub use crate::kernel::rtnetlink_dump::{
    Gateway, RT_TABLE_MAIN, interface_addresses, route_gateways,
};

/// Why an address is on the list, for the log line that shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Loopback,
    /// The interface's name, or its index when the name could not be read.
    Interface(String),
    /// A gateway of a route of `table` (`None`: of a nexthop object).
    Gateway {
        table: Option<u32>,
        default: bool,
    },
    /// A name server of `file`, this host's own or the upstream of a
    /// forwarder running here.
    Resolver {
        file: PathBuf,
        upstream_of: Option<Upstream>,
    },
}

impl Origin {
    /// The reason a log line gives: "local address on eth0", "default
    /// gateway", "resolver in /etc/resolv.conf", ...
    pub fn reason(&self) -> String {
        match self {
            Origin::Loopback => "loopback".to_string(),
            Origin::Interface(name) => format!("local address on {name}"),
            Origin::Gateway {
                table: Some(RT_TABLE_MAIN),
                default: true,
            } => "default gateway".to_string(),
            Origin::Gateway {
                table: Some(RT_TABLE_MAIN),
                default: false,
            } => "gateway of a route in the main table".to_string(),
            Origin::Gateway {
                table: Some(t),
                default: true,
            } => format!("default gateway of routing table {t}"),
            Origin::Gateway {
                table: Some(t),
                default: false,
            } => format!("gateway of a route in routing table {t}"),
            Origin::Gateway { table: None, .. } => "gateway of a nexthop object".to_string(),
            Origin::Resolver {
                file,
                upstream_of: None,
            } => format!("resolver in {}", file.display()),
            Origin::Resolver {
                file,
                upstream_of: Some(up),
            } => format!("resolver in {} ({}'s upstream)", file.display(), up.name()),
        }
    }
}

/// One network never to ban, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalIgnore {
    pub net: Cidr,
    pub origin: Origin,
}

/// Everything local, in this order: 127.0.0.0/8 and ::1, each interface
/// address as a host entry, the gateways (the main table's default routes
/// first), the resolvers of `files` (a missing file means none). An entry
/// already covered by an earlier one is dropped (127.0.0.1 on lo is inside
/// 127.0.0.0/8), so the first origin wins. A resolver file other than
/// resolv.conf that cannot be read is skipped and logged.
pub fn discover(files: &ResolverFiles) -> Result<Vec<LocalIgnore>> {
    let mut notes = Vec::new();
    let list = discover_noting(files, &mut notes)?;
    for n in notes {
        log_warning!("adminalert: WARNING: local addresses: {n}");
    }
    Ok(list)
}

/// `discover`, with what was skipped in `notes` instead of the log.
pub fn discover_noting(files: &ResolverFiles, notes: &mut Vec<String>) -> Result<Vec<LocalIgnore>> {
    let mut list = Vec::new();
    let loopback = [
        Cidr::new(IpAddr::from([127, 0, 0, 0]), 8).expect("/8 fits IPv4"),
        Cidr::host(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
    ];
    for net in loopback {
        push_new(&mut list, net, Origin::Loopback);
    }
    for (name, ip) in interface_addresses()? {
        push_new(&mut list, Cidr::host(ip), Origin::Interface(name));
    }
    for g in route_gateways()? {
        let origin = Origin::Gateway {
            table: g.table,
            default: g.default,
        };
        push_new(&mut list, Cidr::host(g.addr), origin);
    }
    let own = list.clone();
    let is_local = |ip: &IpAddr| {
        own.iter()
            .any(|l| !matches!(l.origin, Origin::Gateway { .. }) && l.net.contains(ip))
    };
    for r in resolvers::resolvers(files, is_local, notes)? {
        let origin = Origin::Resolver {
            file: r.file,
            upstream_of: r.upstream_of,
        };
        push_new(&mut list, Cidr::host(r.addr), origin);
    }
    Ok(list)
}

fn push_new(list: &mut Vec<LocalIgnore>, net: Cidr, origin: Origin) {
    let covered = list
        .iter()
        .any(|l| l.net.prefix() <= net.prefix() && l.net.contains(&net.addr()));
    if !covered {
        list.push(LocalIgnore { net, origin });
    }
}

/// The `nameserver` addresses of a resolv.conf, in file order. Like glibc: a
/// line starting with `#` or `;` is a comment, and so is anything after the
/// address; an IPv6 zone (`fe80::1%eth0`) is dropped, since the ignore set
/// has no zones. Unlike glibc, there is no limit of three and leading blanks
/// are allowed: ignoring one server too many is harmless. Lines that do not
/// parse are skipped, as the resolver skips them.
pub fn parse_resolv_conf(text: &str) -> Vec<IpAddr> {
    let mut servers = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        let Some(rest) = line.strip_prefix("nameserver") else {
            continue;
        };
        // "nameserver" must be a whole word ("nameservers 1.2.3.4" is not one).
        if !rest.starts_with([' ', '\t']) {
            continue;
        }
        let rest = rest.trim_start();
        let end = rest.find([' ', '\t', '#', ';']).unwrap_or(rest.len());
        let word = &rest[..end];
        let ip = match word.split_once('%') {
            // A zone only makes sense on an IPv6 address.
            Some((addr, zone)) if !zone.is_empty() => match addr.parse::<IpAddr>() {
                Ok(ip @ IpAddr::V6(_)) => Some(ip),
                _ => None,
            },
            Some(_) => None,
            None => word.parse::<IpAddr>().ok(),
        };
        servers.extend(ip);
    }
    servers
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn read_resolv_conf(path: &Path) -> Result<Vec<IpAddr>> {
        Ok(resolvers::read_bounded(path)?
            .map(|text| parse_resolv_conf(&text))
            .unwrap_or_default())
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn resolv_conf_nameservers_in_order() {
        let text = "\
# generated by something
search example.org
nameserver 192.0.2.53
options edns0 trust-ad ndots:2
nameserver 2001:db8::53
nameserver\t198.51.100.7
domain example.org
";
        assert_eq!(
            parse_resolv_conf(text),
            ips(&["192.0.2.53", "2001:db8::53", "198.51.100.7"])
        );
    }

    #[test]
    fn resolv_conf_comments() {
        let text = "\
#nameserver 192.0.2.1
; nameserver 192.0.2.2
   # nameserver 192.0.2.3
nameserver 192.0.2.4 # the office resolver
nameserver 192.0.2.5; old one
nameserver 192.0.2.6#x
";
        assert_eq!(
            parse_resolv_conf(text),
            ips(&["192.0.2.4", "192.0.2.5", "192.0.2.6"])
        );
    }

    #[test]
    fn resolv_conf_zone_ids() {
        let text = "\
nameserver fe80::1%eth0
nameserver fe80::2%3 # by index
nameserver 192.0.2.1%eth0
nameserver fe80::3%
";
        // A zone on IPv4 or an empty zone is not an address the resolver takes.
        assert_eq!(parse_resolv_conf(text), ips(&["fe80::1", "fe80::2"]));
    }

    #[test]
    fn resolv_conf_garbage_ignored() {
        let text = "\
nameserver
nameserver    
nameserver dns.example.org
nameserver 192.0.2.300
nameserver 2001:db8::zz
nameservers 192.0.2.7
nameserver192.0.2.8
NAMESERVER 192.0.2.9
\u{0}\u{ff}garbage \x7f
sortlist 130.155.160.0/255.255.240.0
nameserver 192.0.2.10 extra words
  nameserver 2001:db8::10
";
        assert_eq!(
            parse_resolv_conf(text),
            ips(&["192.0.2.10", "2001:db8::10"])
        );
    }

    #[test]
    fn resolv_conf_empty_and_crlf() {
        assert!(parse_resolv_conf("").is_empty());
        assert_eq!(
            parse_resolv_conf("nameserver 192.0.2.1\r\n"),
            ips(&["192.0.2.1"])
        );
    }

    #[test]
    fn dedup_keeps_first_origin() {
        let mut list = Vec::new();
        push_new(&mut list, "127.0.0.0/8".parse().unwrap(), Origin::Loopback);
        push_new(
            &mut list,
            "127.0.0.1".parse().unwrap(),
            Origin::Interface("lo".into()),
        );
        push_new(
            &mut list,
            "192.0.2.1".parse().unwrap(),
            Origin::Interface("eth0".into()),
        );
        let gateway = Origin::Gateway {
            table: Some(RT_TABLE_MAIN),
            default: true,
        };
        push_new(&mut list, "192.0.2.1".parse().unwrap(), gateway);
        let resolver = Origin::Resolver {
            file: "/etc/resolv.conf".into(),
            upstream_of: None,
        };
        push_new(&mut list, "127.0.0.53".parse().unwrap(), resolver);
        assert_eq!(
            list,
            vec![
                LocalIgnore {
                    net: "127.0.0.0/8".parse().unwrap(),
                    origin: Origin::Loopback
                },
                LocalIgnore {
                    net: "192.0.2.1".parse().unwrap(),
                    origin: Origin::Interface("eth0".into())
                },
            ]
        );
    }

    #[test]
    fn reasons_name_table_and_file() {
        let gw = |table, default| Origin::Gateway { table, default }.reason();
        assert_eq!(gw(Some(RT_TABLE_MAIN), true), "default gateway");
        assert_eq!(gw(Some(100), true), "default gateway of routing table 100");
        assert_eq!(
            gw(Some(RT_TABLE_MAIN), false),
            "gateway of a route in the main table"
        );
        assert_eq!(gw(Some(7), false), "gateway of a route in routing table 7");
        assert_eq!(gw(None, false), "gateway of a nexthop object");
        let r = Origin::Resolver {
            file: "/run/systemd/resolve/resolv.conf".into(),
            upstream_of: Some(Upstream::SystemdResolved),
        };
        assert_eq!(
            r.reason(),
            "resolver in /run/systemd/resolve/resolv.conf (systemd-resolved's upstream)"
        );
        let r = Origin::Resolver {
            file: "/etc/resolv.conf".into(),
            upstream_of: None,
        };
        assert_eq!(r.reason(), "resolver in /etc/resolv.conf");
    }

    #[test]
    fn missing_resolv_conf_is_no_resolvers() {
        let path = Path::new("/nonexistent/nftsentry-test/resolv.conf");
        assert_eq!(read_resolv_conf(path).unwrap(), Vec::<IpAddr>::new());
        // A directory is not a missing file: that is an error worth reporting.
        assert!(read_resolv_conf(Path::new("/")).is_err());
    }
}
