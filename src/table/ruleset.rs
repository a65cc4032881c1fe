//! ruleset: what nftsentry installs, from the config: the table, its sets and
//! the input chain's rules. The same description is
//! encoded as one netlink batch and rendered as nft syntax, and each rule's
//! text and expressions are written side by side, so the two cannot drift;
//! a test compares `nft list table` with the rendering in `rules/`.
//!
//! Knows nothing of sockets: it hands a `Batch` to the caller.

use std::fmt::Write as _;
use std::time::Duration;

use crate::cidr::{Cidr, merge_ranges};
use crate::config::{Config, format_duration};
use crate::kernel::nft::FAMILY;
use crate::kernel::nft::batch::{Batch, ChainSpec, Element};
use crate::kernel::nft::expr::{self, Expr};
use crate::table::sets::OurSet;
use netlink_packet_netfilter::nftables::TableFlags;

pub const CHAIN: &str = "input";

/// The comment every table nftsentry creates carries: what tells a table
/// nftsentry left behind (killed, or `keep_table_on_exit`), which it may
/// replace, from one someone else created under the same name, which it
/// must not touch.
pub const TABLE_COMMENT: &str = "managed by nftsentry";
/// Sorted, merged inclusive ranges of addresses (IPv4 in the low 32 bits).
pub type Ranges = Vec<(u128, u128)>;

/// Everything that decides the table's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruleset {
    pub table: String,
    /// Offset from nft's `filter` priority (0).
    pub priority: i32,
    pub nflog_group: u16,
    pub log_prefix: String,
    pub ban_time: Duration,
    pub set_size: u32,
    /// Table flags: `Owner | Persisent` with `table_owner` (the daemon
    /// drops what the kernel lacks), else none.
    pub flags: TableFlags,
    /// Merged inclusive ranges of ignored sources.
    pub ignore4: Vec<(u128, u128)>,
    pub ignore6: Vec<(u128, u128)>,
    /// Merged inclusive ranges of watched ports.
    pub watch_tcp: Vec<(u16, u16)>,
    pub watch_udp: Vec<(u16, u16)>,
}

/// One rule: its nft text (as `nft list` prints it) and its expressions.
pub struct Rule {
    pub text: String,
    pub exprs: Vec<Expr>,
}

/// Splits networks by family and merges them.
pub fn ignore_ranges(nets: &[Cidr]) -> (Ranges, Ranges) {
    let v4 = nets
        .iter()
        .filter(|c| c.is_ipv4())
        .map(Cidr::range)
        .collect();
    let v6 = nets
        .iter()
        .filter(|c| !c.is_ipv4())
        .map(Cidr::range)
        .collect();
    let succ = |x: u128| x.checked_add(1);
    (merge_ranges(v4, succ), merge_ranges(v6, succ))
}

impl Ruleset {
    /// The table for `cfg`, ignoring `ignores` (ignore file plus local
    /// addresses, already gathered by the caller).
    pub fn from_config(cfg: &Config, ignores: &[Cidr]) -> Ruleset {
        let (ignore4, ignore6) = ignore_ranges(ignores);
        let watched = |p: &crate::config::Protocol| p.tripwire_ports().ranges().to_vec();
        Ruleset {
            table: cfg.table.clone(),
            priority: cfg.chain_priority,
            nflog_group: cfg.nflog_group,
            log_prefix: cfg.log_prefix.clone(),
            ban_time: cfg.ban_time,
            set_size: cfg.set_size,
            flags: if cfg.table_owner {
                TableFlags::Owner | TableFlags::Persisent
            } else {
                TableFlags::empty()
            },
            ignore4,
            ignore6,
            watch_tcp: watched(&cfg.tcp),
            watch_udp: watched(&cfg.udp),
        }
    }

    /// The input chain's rules, in order: replies return → blocked drop
    /// (unless ignored) → established return → sockets return → tripwires
    /// (a watched port, on a packet addressed to this host).
    ///
    /// Replies to connections this host opened come first: a ban must never
    /// cut the host off from what it depends on, or one probe forged "from"
    /// its resolver or its package mirror would be a day of outage. Only
    /// the reply direction passes: a connection a banned source opened to
    /// us is still cut, since its packets travel in the original direction.
    ///
    /// An ignored source is never dropped, but its probes still reach the
    /// tripwires: the daemon logs them as ignored instead of acting, so an
    /// admin sees that someone probed while spoofing the gateway, a resolver
    /// or a local address (a `return` for ignored sources at the top of the
    /// chain would hide exactly those).
    ///
    /// A tripwire matches only a packet addressed to one of this host's
    /// addresses (`fib daddr type local`): a broadcast or multicast packet
    /// (Wake-on-LAN to UDP 9, a discovery protocol) reaches every host of
    /// the segment and probes none of them.
    pub fn rules(&self) -> Vec<Rule> {
        use expr::*;
        use netlink_packet_netfilter::nftables::Operator;
        let log_text = format!(
            "log prefix \"{}\" group {}",
            self.log_prefix, self.nflog_group
        );
        let set = |s: OurSet| (s.name(), s.id());
        let with = |mut m: Vec<Expr>, tail: Vec<Expr>| {
            m.extend(tail);
            m
        };
        // The port first: only a packet for a tripwire port costs a route
        // lookup.
        let tripwire = |l4proto: u8, s: OurSet| {
            let mut m = dport_in(l4proto, s.name(), s.id());
            m.extend(daddr_local());
            m.push(log(self.nflog_group, &self.log_prefix));
            m
        };
        vec![
            Rule {
                text: "ct state established,related ct direction reply return".into(),
                exprs: with(
                    ct_reply_in(CT_STATE_ESTABLISHED | CT_STATE_RELATED),
                    vec![ret()],
                ),
            },
            Rule {
                text: format!(
                    "ip saddr != @{} ip saddr @{} counter drop",
                    OurSet::Ignore4,
                    OurSet::Blocked4
                ),
                exprs: with(
                    saddr_in_unless(false, set(OurSet::Blocked4), set(OurSet::Ignore4)),
                    vec![counter(), drop()],
                ),
            },
            Rule {
                text: format!(
                    "ip6 saddr != @{} ip6 saddr @{} counter drop",
                    OurSet::Ignore6,
                    OurSet::Blocked6
                ),
                exprs: with(
                    saddr_in_unless(true, set(OurSet::Blocked6), set(OurSet::Ignore6)),
                    vec![counter(), drop()],
                ),
            },
            Rule {
                // The rest of established traffic never trips a wire either.
                text: "ct state established,related return".into(),
                exprs: with(
                    ct_state_in(CT_STATE_ESTABLISHED | CT_STATE_RELATED),
                    vec![ret()],
                ),
            },
            // A packet for a port with a socket (a real service, on any
            // address, IPv4 or IPv6, TCP or UDP) is never a probe: the kernel
            // looks the socket up at the moment the packet arrives, so a
            // service started a millisecond ago is already covered.
            Rule {
                text: "socket transparent 0 return".into(),
                exprs: with(
                    vec![socket_transparent(), cmp(Operator::Equal, &[0])],
                    vec![ret()],
                ),
            },
            Rule {
                text: "socket transparent 1 return".into(),
                exprs: with(
                    vec![socket_transparent(), cmp(Operator::Equal, &[1])],
                    vec![ret()],
                ),
            },
            Rule {
                text: format!(
                    "tcp dport @{} fib daddr type local {log_text}",
                    OurSet::WatchTcp
                ),
                exprs: tripwire(IPPROTO_TCP, OurSet::WatchTcp),
            },
            Rule {
                text: format!(
                    "udp dport @{} fib daddr type local {log_text}",
                    OurSet::WatchUdp
                ),
                exprs: tripwire(IPPROTO_UDP, OurSet::WatchUdp),
            },
        ]
    }

    fn set_elements(&self, set: OurSet) -> Vec<Element> {
        match set {
            OurSet::Ignore4 => interval_elements(&self.ignore4, 4),
            OurSet::Ignore6 => interval_elements(&self.ignore6, 16),
            OurSet::WatchTcp => interval_elements(&widen(&self.watch_tcp), 2),
            OurSet::WatchUdp => interval_elements(&widen(&self.watch_udp), 2),
            // Bans come from the caller (`bans::add_to_batch`).
            OurSet::Blocked4 | OurSet::Blocked6 => Vec::new(),
        }
    }

    /// One transaction that replaces any table of the same name with this
    /// one: create (so the delete cannot fail), delete, create with content.
    pub fn install_batch(&self) -> Batch {
        let mut b = Batch::new();
        b.add_table(FAMILY, &self.table, false);
        b.del_table(FAMILY, &self.table);
        self.create_into(&mut b);
        b
    }

    /// The same, for a caller that knows whether the table exists: delete
    /// it (when it does) and create ours, in one transaction. No update of
    /// the old table on the way: the kernel refuses to change the `persist`
    /// flag of a table (EOPNOTSUPP), so the trick above fails on a table
    /// left by a killed daemon.
    pub fn replace_batch(&self, exists: bool) -> Batch {
        let mut b = Batch::new();
        if exists {
            b.del_table(FAMILY, &self.table);
        }
        self.create_into(&mut b);
        b
    }

    /// Appends the creation of the table and everything in it to `b`.
    pub fn create_into(&self, b: &mut Batch) {
        b.add_table_commented(FAMILY, &self.table, true, self.flags, Some(TABLE_COMMENT));
        for set in OurSet::ALL {
            b.add_set(FAMILY, &self.table, &set.spec(self.ban_time, self.set_size));
            let elems = self.set_elements(set);
            if !elems.is_empty() {
                b.add_elements(FAMILY, &self.table, set.name(), Some(set.id()), &elems);
            }
        }
        b.add_chain(
            FAMILY,
            &self.table,
            &ChainSpec {
                name: CHAIN.into(),
                priority: self.priority,
                policy_accept: true,
            },
        );
        for r in self.rules() {
            b.add_rule(FAMILY, &self.table, CHAIN, r.exprs, &r.text);
        }
    }

    /// The table in nft syntax, laid out as `nft -s list table` prints it.
    pub fn render(&self) -> String {
        let mut o = String::new();
        // As nft lists the table: an owned one with the owner's process
        // name, the flags it knows (nft 1.0.6 does not print `persist`),
        // then the comment.
        if self.flags.contains(TableFlags::Owner) {
            let _ = writeln!(o, "table inet {} {{ # progname nftsentry", self.table);
            let _ = writeln!(o, "\tflags owner");
        } else {
            let _ = writeln!(o, "table inet {} {{", self.table);
        }
        let _ = writeln!(o, "\tcomment \"{TABLE_COMMENT}\"\n");
        for (i, set) in OurSet::ALL.into_iter().enumerate() {
            let s = set.spec(self.ban_time, self.set_size);
            if i > 0 {
                o.push('\n');
            }
            let _ = writeln!(o, "\tset {} {{", s.name);
            let _ = writeln!(o, "\t\ttype {}", s.key.name());
            if s.interval {
                let _ = writeln!(o, "\t\tflags interval");
            }
            if let Some(size) = s.size {
                let _ = writeln!(o, "\t\tsize {size}");
            }
            if s.counter {
                let _ = writeln!(o, "\t\tcounter");
            }
            if let Some(t) = s.timeout {
                let _ = writeln!(o, "\t\ttimeout {}", format_duration(t));
            }
            let items: Vec<String> = match set {
                OurSet::Ignore4 => self
                    .ignore4
                    .iter()
                    .map(|r| render_addr_range(*r, false))
                    .collect(),
                OurSet::Ignore6 => self
                    .ignore6
                    .iter()
                    .map(|r| render_addr_range(*r, true))
                    .collect(),
                OurSet::WatchTcp => self
                    .watch_tcp
                    .iter()
                    .map(|r| render_port_range(*r))
                    .collect(),
                OurSet::WatchUdp => self
                    .watch_udp
                    .iter()
                    .map(|r| render_port_range(*r))
                    .collect(),
                OurSet::Blocked4 | OurSet::Blocked6 => Vec::new(),
            };
            if !items.is_empty() {
                let _ = writeln!(o, "\t\telements = {{ {} }}", items.join(", "));
            }
            let _ = writeln!(o, "\t}}");
        }
        let _ = writeln!(o, "\n\tchain {CHAIN} {{");
        let _ = writeln!(
            o,
            "\t\ttype filter hook input priority {}; policy accept;",
            render_priority(self.priority)
        );
        for r in self.rules() {
            let _ = writeln!(o, "\t\t{}", r.text);
        }
        let _ = writeln!(o, "\t}}\n}}");
        o
    }
}

fn widen(ports: &[(u16, u16)]) -> Vec<(u128, u128)> {
    ports.iter().map(|&(s, e)| (s as u128, e as u128)).collect()
}

/// Interval-set elements for sorted, merged inclusive ranges of `width`-byte
/// keys: each range is its start, and its end + 1 flagged as an interval end
/// (left out when the range reaches the top of the key space). Like nft, a
/// leading end element at 0 closes the space below the first range.
pub fn interval_elements(ranges: &[(u128, u128)], width: usize) -> Vec<Element> {
    let max: u128 = if width == 16 {
        u128::MAX
    } else {
        (1u128 << (width * 8)) - 1
    };
    let key = |v: u128| v.to_be_bytes()[16 - width..].to_vec();
    let mut out = Vec::with_capacity(ranges.len() * 2 + 1);
    if let Some(&(first, _)) = ranges.first() {
        if first > 0 {
            out.push(Element {
                interval_end: true,
                ..Element::key(key(0))
            });
        }
    }
    for &(s, e) in ranges {
        out.push(Element::key(key(s)));
        if e < max {
            out.push(Element {
                interval_end: true,
                ..Element::key(key(e + 1))
            });
        }
    }
    out
}

/// `a`, `a/len` when the range is exactly one network, else `a-b`.
fn render_addr_range((s, e): (u128, u128), v6: bool) -> String {
    let bits = if v6 { 128 } else { 32 };
    let addr = |v: u128| -> String {
        if v6 {
            std::net::Ipv6Addr::from(v).to_string()
        } else {
            std::net::Ipv4Addr::from(v as u32).to_string()
        }
    };
    if s == e {
        return addr(s);
    }
    let span = e - s;
    // A network: the size is a power of two and the start is aligned to it.
    if span
        .checked_add(1)
        .is_none_or(|n| n.is_power_of_two() && s % n == 0)
    {
        let host_bits = if span == u128::MAX {
            128
        } else {
            (span + 1).trailing_zeros()
        };
        return format!("{}/{}", addr(s), bits - host_bits);
    }
    format!("{}-{}", addr(s), addr(e))
}

fn render_port_range((s, e): (u16, u16)) -> String {
    if s == e {
        s.to_string()
    } else {
        format!("{s}-{e}")
    }
}

/// nft's priority syntax relative to `filter` (0).
pub fn render_priority(p: i32) -> String {
    match p {
        0 => "filter".into(),
        p if p < 0 => format!("filter - {}", -(p as i64)),
        p => format!("filter + {p}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_render_as_nft_does() {
        assert_eq!(
            render_addr_range((0x7f00_0000, 0x7fff_ffff), false),
            "127.0.0.0/8"
        );
        assert_eq!(
            render_addr_range((0xc000_0201, 0xc000_0201), false),
            "192.0.2.1"
        );
        assert_eq!(
            render_addr_range((0xc000_0201, 0xc000_0205), false),
            "192.0.2.1-192.0.2.5"
        );
        assert_eq!(render_addr_range((0, u32::MAX as u128), false), "0.0.0.0/0");
        assert_eq!(render_addr_range((0, u128::MAX), true), "::/0");
        assert_eq!(render_addr_range((1, 1), true), "::1");
        assert_eq!(render_port_range((100, 200)), "100-200");
        assert_eq!(render_priority(-10), "filter - 10");
        assert_eq!(render_priority(5), "filter + 5");
    }

    #[test]
    fn merging_joins_overlaps_and_neighbours() {
        let nets: Vec<Cidr> = [
            "192.0.2.0/25",
            "192.0.2.128/25",
            "192.0.2.7",
            "198.51.100.1",
            "::1",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let (v4, v6) = ignore_ranges(&nets);
        assert_eq!(
            v4,
            vec![(0xc000_0200, 0xc000_02ff), (0xc633_6401, 0xc633_6401)]
        );
        assert_eq!(v6, vec![(1, 1)]);
    }

    #[test]
    fn interval_elements_close_ranges() {
        let e = interval_elements(&[(1, 1), (100, 200), (65000, 65535)], 2);
        let keys: Vec<(u16, bool)> = e
            .iter()
            .map(|e| (u16::from_be_bytes([e.key[0], e.key[1]]), e.interval_end))
            .collect();
        assert_eq!(
            keys,
            vec![
                (0, true),
                (1, false),
                (2, true),
                (100, false),
                (201, true),
                (65000, false)
            ]
        );
    }
}
