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
/// The regular chain that feeds the live-peer sets (`protect_live_peers`).
pub const LIVE_CHAIN: &str = "live";
/// How often a connection feeds the live-peer sets while it carries
/// packets: the daemon flips `Ruleset::live_phase` this often, and each
/// connection's next packet marks it with the new phase and refreshes its
/// source. Well under `sets::LIVE_TIMEOUT`, so an active peer never lapses.
pub const LIVE_PERIOD: Duration = Duration::from_secs(60);

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
    /// `ban_prefix6`: the mask of the rule over blocked6_prefix.
    pub ban_prefix6: u8,
    /// Table flags: `Owner | Persisent` with `table_owner` (the daemon
    /// drops what the kernel lacks), else none.
    pub flags: TableFlags,
    /// Merged inclusive ranges of ignored sources.
    pub ignore4: Vec<(u128, u128)>,
    pub ignore6: Vec<(u128, u128)>,
    /// Merged inclusive ranges of watched ports.
    pub watch_tcp: Vec<(u16, u16)>,
    pub watch_udp: Vec<(u16, u16)>,
    /// The fleet's sets and their drop rules (`[crowdsec]` pull on).
    pub fleet: bool,
    /// `protect_live_peers`: the two conntrack mark bits (`live_peer_mark`)
    /// that record which period a connection last fed the live sets in.
    pub live_mark: Option<u32>,
    /// The current period: false marks with the lower bit, true with the
    /// higher.
    pub live_phase: bool,
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
            ban_prefix6: cfg.ban_prefix6,
            flags: if cfg.table_owner {
                TableFlags::Owner | TableFlags::Persisent
            } else {
                TableFlags::empty()
            },
            ignore4,
            ignore6,
            watch_tcp: watched(&cfg.tcp),
            watch_udp: watched(&cfg.udp),
            fleet: cfg.crowdsec.enabled && cfg.crowdsec.pull,
            live_mark: cfg.protect_live_peers.then_some(cfg.live_peer_mark),
            live_phase: false,
        }
    }

    /// The sets of this table, in the order they are created and listed:
    /// the live-peer sets only with `protect_live_peers`, the fleet's only
    /// with `[crowdsec] pull`.
    pub fn sets(&self) -> Vec<OurSet> {
        let mut v: Vec<OurSet> = OurSet::ALL
            .into_iter()
            .filter(|s| !s.is_live() || self.live_mark.is_some())
            .collect();
        if self.fleet {
            v.extend(OurSet::FLEET);
        }
        v
    }

    /// The log prefix of the tripwires for live peers.
    pub fn live_prefix(&self) -> String {
        format!("{}{}", self.log_prefix, crate::config::LIVE_PEER_SUFFIX)
    }

    /// The mark value of the current period: one of the two bits.
    fn live_value(&self, mask: u32) -> u32 {
        let low = mask & mask.wrapping_neg();
        if self.live_phase { mask & !low } else { low }
    }

    /// The rules of the live chain for the current period: a connection
    /// marked with it returns; any other (new, or marked in the last
    /// period) is marked and feeds its source to the live sets. So a
    /// connection costs one set update per period, however many packets it
    /// carries, and the daemon none. Only the period's bits of the mark
    /// change: the rest of it is the admin's.
    pub fn live_rules(&self) -> Vec<Rule> {
        use expr::*;
        let Some(mask) = self.live_mark else {
            return Vec::new();
        };
        let value = self.live_value(mask);
        let with = |mut m: Vec<Expr>, tail: Vec<Expr>| {
            m.extend(tail);
            m
        };
        let update = |s: OurSet| {
            with(
                update_saddr(s == OurSet::Live6, s.name(), s.id()),
                vec![counter()],
            )
        };
        vec![
            Rule {
                text: format!("ct mark & {mask:#010x} == {value:#010x} return"),
                exprs: with(ct_mark_masked_eq(mask, value), vec![ret()]),
            },
            Rule {
                text: format!(
                    "ct mark set ct mark & {:#010x} ct mark set ct mark | {value:#010x}",
                    !mask
                ),
                exprs: ct_mark_set_bits(mask, value),
            },
            Rule {
                text: format!("update @{} {{ ip saddr }} counter", OurSet::Live4),
                exprs: update(OurSet::Live4),
            },
            Rule {
                text: format!("update @{} {{ ip6 saddr }} counter", OurSet::Live6),
                exprs: update(OurSet::Live6),
            },
        ]
    }

    /// The next period: the live chain's rules replaced in one
    /// transaction, so every connection feeds the sets again at its next
    /// packet.
    pub fn next_live_period(&mut self) -> Option<Batch> {
        self.live_mark?;
        self.live_phase = !self.live_phase;
        let mut b = Batch::new();
        b.flush_chain(FAMILY, &self.table, LIVE_CHAIN);
        for r in self.live_rules() {
            b.add_rule(FAMILY, &self.table, LIVE_CHAIN, r.exprs, &r.text);
        }
        Some(b)
    }

    /// The input chain's rules, in order: replies return → blocked drop
    /// (unless ignored) → live peers fed (`live_rules`) → established
    /// return → sockets return → tripwires (a watched port, on a packet
    /// addressed to this host; from a live peer with their own prefix).
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
    ///
    /// A live peer is a source with an assured TCP connection it opened to
    /// this host: conntrack sets `assured` when the handshake completes, so
    /// a forged SYN (or a second one after our SYN-ACK went to the forged
    /// address) does not make one. Its probes still reach the daemon, with
    /// `live_prefix`: the daemon needs no lookup to know, and does not ban
    /// it on evidence that anyone could forge.
    ///
    /// Long: the chain is built top to bottom as `nft list` shows it, each
    /// rule beside its text, so the order that matters stays in one place.
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
        // A banned source is dropped unless ignored; the prefix set is
        // matched against the source masked to `ban_prefix6`.
        let drop_banned = |s: OurSet, mask: Option<u8>| {
            let v6 = s.key() == crate::kernel::nft::KeyType::Ipv6Addr;
            let (ip, ignore) = if v6 {
                ("ip6", OurSet::Ignore6)
            } else {
                ("ip", OurSet::Ignore4)
            };
            let mut m = saddr_in_unless(v6, set(s), set(ignore));
            let text = match mask {
                Some(p) => {
                    let bits = if p == 0 {
                        0
                    } else {
                        u128::MAX << (128 - p as u32)
                    };
                    // Before the lookup: mask the loaded address.
                    let lookup = m.pop().expect("a lookup");
                    m.push(bitwise_and(&bits.to_be_bytes()));
                    m.push(lookup);
                    format!(
                        "{ip} saddr != @{ignore} {ip} saddr & {} == @{s} counter drop",
                        std::net::Ipv6Addr::from(bits)
                    )
                }
                None => format!("{ip} saddr != @{ignore} {ip} saddr @{s} counter drop"),
            };
            m.extend([counter(), drop()]);
            Rule { text, exprs: m }
        };
        let live_prefix = self.live_prefix();
        let live_tripwire = |l4proto: u8, s: OurSet, live: OurSet| {
            let mut m = dport_in(l4proto, s.name(), s.id());
            m.extend(daddr_local());
            m.extend(saddr_in(live == OurSet::Live6, live.name(), live.id()));
            m.push(log(self.nflog_group, &live_prefix));
            m.push(ret());
            m
        };
        let live_tripwires = |proto: &str, l4proto: u8, s: OurSet| -> Vec<Rule> {
            if self.live_mark.is_none() {
                return Vec::new();
            }
            [(OurSet::Live4, "ip"), (OurSet::Live6, "ip6")]
                .into_iter()
                .map(|(live, family)| Rule {
                    text: format!(
                        "{proto} dport @{s} fib daddr type local {family} saddr @{live} log prefix \"{live_prefix}\" group {} return",
                        self.nflog_group
                    ),
                    exprs: live_tripwire(l4proto, s, live),
                })
                .collect()
        };
        let feed_live = self.live_mark.map(|_| Rule {
            text: format!(
                "meta l4proto tcp ct direction original ct status assured jump {LIVE_CHAIN}"
            ),
            exprs: with(tcp_assured_inbound(), vec![jump(LIVE_CHAIN)]),
        });
        let mut rules = vec![
            Rule {
                text: "ct state established,related ct direction reply return".into(),
                exprs: with(
                    ct_reply_in(CT_STATE_ESTABLISHED | CT_STATE_RELATED),
                    vec![ret()],
                ),
            },
            drop_banned(OurSet::Blocked4, None),
            drop_banned(OurSet::Blocked4Net, None),
            drop_banned(OurSet::Blocked6, None),
            drop_banned(OurSet::Blocked6Prefix, Some(self.ban_prefix6)),
            drop_banned(OurSet::Blocked6Net, None),
        ];
        if self.fleet {
            // The fleet's bans, but never a source this host never bans:
            // the fleet cannot cut it off its gateway or its monitoring.
            for (v6, fleet, ignore) in [
                (false, OurSet::Fleet4, OurSet::Ignore4),
                (true, OurSet::Fleet6, OurSet::Ignore6),
            ] {
                let ip = if v6 { "ip6" } else { "ip" };
                rules.push(Rule {
                    text: format!("{ip} saddr != @{ignore} {ip} saddr @{fleet} counter drop"),
                    exprs: with(
                        saddr_in_unless(v6, set(fleet), set(ignore)),
                        vec![counter(), drop()],
                    ),
                });
            }
        }
        rules.extend(feed_live);
        rules.extend([
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
        ]);
        rules.extend(live_tripwires("tcp", IPPROTO_TCP, OurSet::WatchTcp));
        rules.push(Rule {
            text: format!(
                "tcp dport @{} fib daddr type local {log_text}",
                OurSet::WatchTcp
            ),
            exprs: tripwire(IPPROTO_TCP, OurSet::WatchTcp),
        });
        rules.extend(live_tripwires("udp", IPPROTO_UDP, OurSet::WatchUdp));
        rules.push(Rule {
            text: format!(
                "udp dport @{} fib daddr type local {log_text}",
                OurSet::WatchUdp
            ),
            exprs: tripwire(IPPROTO_UDP, OurSet::WatchUdp),
        });
        rules
    }

    fn set_elements(&self, set: OurSet) -> Vec<Element> {
        match set {
            OurSet::Ignore4 => interval_elements(&self.ignore4, 4),
            OurSet::Ignore6 => interval_elements(&self.ignore6, 16),
            OurSet::WatchTcp => interval_elements(&widen(&self.watch_tcp), 2),
            OurSet::WatchUdp => interval_elements(&widen(&self.watch_udp), 2),
            // Bans come from the caller (`bans::add_to_batch`), the fleet's
            // decisions from the fleet thread (`fleet_batch`), live peers
            // from the packet path.
            OurSet::Blocked4
            | OurSet::Blocked6
            | OurSet::Blocked6Prefix
            | OurSet::Blocked4Net
            | OurSet::Blocked6Net
            | OurSet::Fleet4
            | OurSet::Fleet6
            | OurSet::Live4
            | OurSet::Live6 => Vec::new(),
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
        for set in self.sets() {
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
        // The live chain before the rule that jumps to it.
        if self.live_mark.is_some() {
            b.add_regular_chain(FAMILY, &self.table, LIVE_CHAIN);
        }
        for r in self.rules() {
            b.add_rule(FAMILY, &self.table, CHAIN, r.exprs, &r.text);
        }
        for r in self.live_rules() {
            b.add_rule(FAMILY, &self.table, LIVE_CHAIN, r.exprs, &r.text);
        }
    }

    /// The table in nft syntax, laid out as `nft -s list table` prints it.
    /// Long: one line per attribute in nft's order, which tests/golden.rs
    /// compares with the kernel's listing.
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
        for (i, set) in self.sets().into_iter().enumerate() {
            let s = set.spec(self.ban_time, self.set_size);
            if i > 0 {
                o.push('\n');
            }
            let _ = writeln!(o, "\tset {} {{", s.name);
            let _ = writeln!(o, "\t\ttype {}", s.key.name());
            if let Some(size) = s.size {
                let _ = writeln!(o, "\t\tsize {size}");
            }
            if s.dynamic {
                let _ = writeln!(o, "\t\tflags dynamic,timeout");
            }
            match (s.interval, s.timeout.is_some()) {
                (true, true) => {
                    let _ = writeln!(o, "\t\tflags interval,timeout");
                }
                (true, false) => {
                    let _ = writeln!(o, "\t\tflags interval");
                }
                _ => {}
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
                OurSet::Blocked4
                | OurSet::Blocked6
                | OurSet::Blocked6Prefix
                | OurSet::Blocked4Net
                | OurSet::Blocked6Net
                | OurSet::Fleet4
                | OurSet::Fleet6
                | OurSet::Live4
                | OurSet::Live6 => Vec::new(),
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
        let _ = writeln!(o, "\t}}");
        if self.live_mark.is_some() {
            let _ = writeln!(o, "\n\tchain {LIVE_CHAIN} {{");
            for r in self.live_rules() {
                let _ = writeln!(o, "\t\t{}", r.text);
            }
            let _ = writeln!(o, "\t}}");
        }
        let _ = writeln!(o, "}}");
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

/// One transaction that replaces the content of the fleet's sets: each
/// family's disjoint inclusive ranges with their time left.
pub fn fleet_batch(
    table: &str,
    v4: &[(u128, u128, Duration)],
    v6: &[(u128, u128, Duration)],
) -> Batch {
    let mut b = Batch::new();
    for (set, segs, width) in [(OurSet::Fleet4, v4, 4), (OurSet::Fleet6, v6, 16)] {
        b.flush_set(FAMILY, table, set.name());
        let ranges: Vec<(u128, u128)> = segs.iter().map(|&(s, e, _)| (s, e)).collect();
        let mut elems = interval_elements(&ranges, width);
        // The start of each range carries its timeout: the starts are the
        // elements without the end flag, in order.
        let mut left = segs.iter().map(|&(_, _, d)| d);
        for e in elems.iter_mut().filter(|e| !e.interval_end) {
            e.timeout = left.next();
        }
        if !elems.is_empty() {
            b.add_elements(FAMILY, table, set.name(), None, &elems);
        }
    }
    b
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
    fn live_peers_alternate_between_the_two_bits_and_vanish_when_off() {
        let mut cfg = Config {
            live_peer_mark: 0x0000_0101,
            ..Config::default()
        };
        let mut r = Ruleset::from_config(&cfg, &[]);
        assert!(r.sets().contains(&OurSet::Live6));
        let texts =
            |r: &Ruleset| -> Vec<String> { r.live_rules().into_iter().map(|r| r.text).collect() };
        assert_eq!(
            texts(&r)[..2],
            [
                "ct mark & 0x00000101 == 0x00000001 return",
                "ct mark set ct mark & 0xfffffefe ct mark set ct mark | 0x00000001"
            ]
        );
        let flip = r.next_live_period().unwrap();
        // Flush the chain, then its four rules.
        assert_eq!(flip.len(), 5);
        assert_eq!(texts(&r)[0], "ct mark & 0x00000101 == 0x00000100 return");
        r.next_live_period();
        assert_eq!(texts(&r)[0], "ct mark & 0x00000101 == 0x00000001 return");
        assert!(
            r.rules()
                .iter()
                .any(|x| x.text.contains("log prefix \"nftsentry: live peer: \""))
        );

        cfg.protect_live_peers = false;
        let mut r = Ruleset::from_config(&cfg, &[]);
        assert!(!r.sets().iter().any(|s| s.is_live()));
        assert!(r.live_rules().is_empty());
        assert!(r.next_live_period().is_none());
        assert!(!r.rules().iter().any(|x| x.text.contains("live")));
        assert!(!r.render().contains("live"));
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
