//! A transaction: nf_tables messages that the kernel applies all or none of.
//!
//! Each message carries a short description of the object it touches
//! ("set blocked4", "rule `ip saddr @blocked4 counter drop`") so that an error
//! the kernel reports by sequence number comes back naming the object.

use std::time::Duration;

use netlink_packet_core::{DefaultNla, NLA_F_NESTED, NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_netfilter::NetfilterProtoFamily;
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, DataAttribute, Hook, InetHookNumber, NfTablesMessage,
    RuleAttribute, RuleMessage, SetAttribute, SetDescription, SetElementAttribute, SetElementFlags,
    SetElementList, SetElementMessage, SetFlags, SetMessage, TableAttribute, TableFlags,
    TableMessage,
};

use super::expr::Expr;

/// How many elements go into one netlink message: an attribute over 64 KiB
/// panics netlink-packet-core, and 1,000 IPv6 elements with timeout and
/// expiration stay near 48 KiB.
pub const ELEMENTS_PER_MESSAGE: usize = 1000;
/// The same for elements with a counter (44 bytes more each).
pub const COUNTED_ELEMENTS_PER_MESSAGE: usize = 500;

/// A set's key type, with nft's datatype number and the key length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    Ipv4Addr,
    Ipv6Addr,
    InetService,
}

impl KeyType {
    /// nft's datatype numbers (TYPE_IPADDR, TYPE_IP6ADDR, TYPE_INET_SERVICE).
    pub fn nft_type(self) -> u32 {
        match self {
            KeyType::Ipv4Addr => 7,
            KeyType::Ipv6Addr => 8,
            KeyType::InetService => 13,
        }
    }
    /// Key length in bytes.
    pub fn width(self) -> usize {
        match self {
            KeyType::Ipv4Addr => 4,
            KeyType::Ipv6Addr => 16,
            KeyType::InetService => 2,
        }
    }
    /// The name nft prints.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Ipv4Addr => "ipv4_addr",
            KeyType::Ipv6Addr => "ipv6_addr",
            KeyType::InetService => "inet_service",
        }
    }
}

/// A named set as the kernel stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetSpec {
    pub name: String,
    /// Transaction-local id, so rules in the same batch can refer to the set.
    pub id: u32,
    pub key: KeyType,
    pub interval: bool,
    /// Fed from the packet path (`update @set`): NFT_SET_EVAL, which nft
    /// lists as `flags dynamic`.
    pub dynamic: bool,
    /// `Some` makes a timeout set; the duration is the default element timeout.
    pub timeout: Option<Duration>,
    pub size: Option<u32>,
    /// `counter`: each element counts the packets and bytes it matched.
    pub counter: bool,
}

/// A base chain on the inet input hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainSpec {
    pub name: String,
    pub priority: i32,
    pub policy_accept: bool,
}

/// One set element to add or delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    /// Key bytes in network byte order.
    pub key: Vec<u8>,
    /// Per-element timeout; `None` uses the set's default.
    pub timeout: Option<Duration>,
    /// Time left before the element expires; with `timeout`, lets a restored
    /// ban keep its original end instead of starting over.
    pub expiration: Option<Duration>,
    /// The end (exclusive) of an interval in an interval set.
    pub interval_end: bool,
    /// The (packets, bytes) its counter starts from, in a set with
    /// `counter`: a ban carried into a new table keeps what it dropped.
    pub counter: Option<(u64, u64)>,
}

impl Element {
    pub fn key(key: Vec<u8>) -> Element {
        Element {
            key,
            timeout: None,
            expiration: None,
            interval_end: false,
            counter: None,
        }
    }
}

/// One queued message: what it is, how to send it, and what to call it in errors.
#[derive(Clone, Debug)]
pub struct Queued {
    pub family: NetfilterProtoFamily,
    pub message: NfTablesMessage,
    pub flags: u16,
    pub what: String,
}

/// Messages for one transaction, in order.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub(crate) messages: Vec<Queued>,
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The queued messages in order, for framing outside `NftSocket` (the
    /// element-encoding benchmark serialises them without a socket).
    pub fn messages(&self) -> &[Queued] {
        &self.messages
    }

    pub fn push(
        &mut self,
        family: NetfilterProtoFamily,
        message: NfTablesMessage,
        flags: u16,
        what: impl Into<String>,
    ) {
        self.messages.push(Queued {
            family,
            message,
            flags,
            what: what.into(),
        });
    }

    /// Creates the table; with `exclusive`, fails if it exists.
    pub fn add_table(&mut self, family: NetfilterProtoFamily, name: &str, exclusive: bool) {
        self.add_table_flags(family, name, exclusive, TableFlags::empty());
    }

    /// A table with flags: `Owner` (only the sending socket may change it;
    /// kernel >= 5.12) and `Persisent` (it outlives that socket, >= 6.9).
    pub fn add_table_flags(
        &mut self,
        family: NetfilterProtoFamily,
        name: &str,
        exclusive: bool,
        flags: TableFlags,
    ) {
        self.add_table_commented(family, name, exclusive, flags, None);
    }

    /// The same with a `comment`, stored as nft stores one (`nft list`
    /// shows `comment "..."`); the kernel keeps it only when it creates the
    /// table.
    pub fn add_table_commented(
        &mut self,
        family: NetfilterProtoFamily,
        name: &str,
        exclusive: bool,
        flags: TableFlags,
        comment: Option<&str>,
    ) {
        let excl = if exclusive { NLM_F_EXCL } else { 0 };
        let mut attributes = vec![
            TableAttribute::Name(name.to_string()),
            TableAttribute::Flags(flags),
        ];
        if let Some(c) = comment {
            attributes.push(TableAttribute::UserData(comment_udata(c)));
        }
        self.push(
            family,
            NfTablesMessage::NewTable(TableMessage { attributes }),
            NLM_F_CREATE | excl,
            format!("table {} {name}", family_name(family)),
        );
    }

    pub fn del_table(&mut self, family: NetfilterProtoFamily, name: &str) {
        self.push(
            family,
            NfTablesMessage::DeleteTable(TableMessage {
                attributes: vec![TableAttribute::Name(name.to_string())],
            }),
            0,
            format!("table {} {name}", family_name(family)),
        );
    }

    pub fn add_set(&mut self, family: NetfilterProtoFamily, table: &str, set: &SetSpec) {
        let mut flags = SetFlags::empty();
        if set.interval {
            flags |= SetFlags::Interval;
        }
        if set.timeout.is_some() {
            flags |= SetFlags::Timeout;
        }
        if set.dynamic {
            flags |= SetFlags::Eval;
        }
        let mut attributes = vec![
            SetAttribute::Table(table.to_string()),
            SetAttribute::Name(set.name.clone()),
            SetAttribute::Flags(flags),
            SetAttribute::KeyType(set.key.nft_type()),
            SetAttribute::KeyLen(set.key.width() as u32),
            SetAttribute::Id(set.id),
        ];
        if let Some(t) = set.timeout {
            attributes.push(SetAttribute::Timeout(ms(t)));
        }
        if let Some(size) = set.size {
            attributes.push(SetAttribute::Description(vec![SetDescription::Size(size)]));
        }
        if set.counter {
            // NFTA_SET_EXPR (Linux 5.7): one expression every element gets.
            const NFTA_SET_EXPR: u16 = 17;
            attributes.push(SetAttribute::Other(netlink_packet_core::DefaultNla::new(
                NFTA_SET_EXPR | netlink_packet_core::NLA_F_NESTED,
                super::expr::counter_nested(),
            )));
        }
        self.push(
            family,
            NfTablesMessage::NewSet(SetMessage { attributes }),
            NLM_F_CREATE | NLM_F_EXCL,
            format!("set {}", set.name),
        );
    }

    pub fn add_chain(&mut self, family: NetfilterProtoFamily, table: &str, chain: &ChainSpec) {
        self.push(
            family,
            NfTablesMessage::NewChain(ChainMessage {
                attributes: vec![
                    ChainAttribute::Table(table.to_string()),
                    ChainAttribute::Name(chain.name.clone()),
                    ChainAttribute::Hook(vec![
                        Hook::Number(InetHookNumber::LocalIn.into()),
                        // The kernel reads the priority as a signed 32-bit value.
                        Hook::Priority(chain.priority as u32),
                    ]),
                    ChainAttribute::Policy(if chain.policy_accept {
                        super::expr::NF_ACCEPT
                    } else {
                        super::expr::NF_DROP
                    }),
                    ChainAttribute::Type("filter".to_string()),
                ],
            }),
            NLM_F_CREATE | NLM_F_EXCL,
            format!("chain {}", chain.name),
        );
    }

    /// A regular chain (no hook): reached only by a jump.
    pub fn add_regular_chain(&mut self, family: NetfilterProtoFamily, table: &str, name: &str) {
        self.push(
            family,
            NfTablesMessage::NewChain(ChainMessage {
                attributes: vec![
                    ChainAttribute::Table(table.to_string()),
                    ChainAttribute::Name(name.to_string()),
                ],
            }),
            NLM_F_CREATE | NLM_F_EXCL,
            format!("chain {name}"),
        );
    }

    /// Removes every rule of `chain` (a DELRULE with no handle).
    pub fn flush_chain(&mut self, family: NetfilterProtoFamily, table: &str, chain: &str) {
        self.push(
            family,
            NfTablesMessage::DeleteRule(RuleMessage {
                attributes: vec![
                    RuleAttribute::Table(table.to_string()),
                    RuleAttribute::Chain(chain.to_string()),
                ],
            }),
            0,
            format!("the rules of chain {chain}"),
        );
    }

    /// Appends a rule; `text` is its nft syntax, used in error messages.
    pub fn add_rule(
        &mut self,
        family: NetfilterProtoFamily,
        table: &str,
        chain: &str,
        exprs: Vec<Expr>,
        text: &str,
    ) {
        self.push(
            family,
            NfTablesMessage::NewRule(RuleMessage {
                attributes: vec![
                    RuleAttribute::Table(table.to_string()),
                    RuleAttribute::Chain(chain.to_string()),
                    RuleAttribute::Expressions(exprs),
                ],
            }),
            NLM_F_CREATE | NLM_F_APPEND,
            format!("rule `{text}` in chain {chain}"),
        );
    }

    /// Adds elements, `ELEMENTS_PER_MESSAGE` to a message. `set_id` is needed
    /// when the set is created in this same batch.
    pub fn add_elements(
        &mut self,
        family: NetfilterProtoFamily,
        table: &str,
        set: &str,
        set_id: Option<u32>,
        elements: &[Element],
    ) {
        self.element_messages(family, table, set, set_id, elements, true);
    }

    pub fn del_elements(
        &mut self,
        family: NetfilterProtoFamily,
        table: &str,
        set: &str,
        elements: &[Element],
    ) {
        self.element_messages(family, table, set, None, elements, false);
    }

    /// Removes every element of `set` (a DELSETELEM with no element list).
    pub fn flush_set(&mut self, family: NetfilterProtoFamily, table: &str, set: &str) {
        self.push(
            family,
            NfTablesMessage::DeleteSetElement(SetElementMessage {
                attributes: vec![
                    SetElementList::Table(table.to_string()),
                    SetElementList::Set(set.to_string()),
                ],
            }),
            0,
            format!("set {set}"),
        );
    }

    /// The element messages: each chunk's elements encoded straight into
    /// the bytes of one attribute (NFTA_SET_ELEM_LIST_ELEMENTS), with no
    /// attribute tree per element to build, clone and walk (a restore of a
    /// million bans spent more there than the kernel did inserting them).
    /// The bytes are those netlink-packet-netfilter emits for the same
    /// elements (tested); a chunk stays below the 64 KiB an attribute may
    /// have.
    fn element_messages(
        &mut self,
        family: NetfilterProtoFamily,
        table: &str,
        set: &str,
        set_id: Option<u32>,
        elements: &[Element],
        add: bool,
    ) {
        let per = if elements.iter().any(|e| e.counter.is_some()) {
            COUNTED_ELEMENTS_PER_MESSAGE
        } else {
            ELEMENTS_PER_MESSAGE
        };
        let mut rest = elements;
        while !rest.is_empty() {
            let mut list = Vec::with_capacity(per.min(rest.len()) * 64);
            let mut n = 0;
            for e in rest.iter().take(per) {
                let at = list.len();
                encode_element_into(&mut list, e);
                if list.len() > ELEMENT_LIST_MAX && n > 0 {
                    list.truncate(at);
                    break;
                }
                n += 1;
            }
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let mut attributes = vec![
                DefaultNla::new(NFTA_SET_ELEM_LIST_TABLE, c_string(table)),
                DefaultNla::new(NFTA_SET_ELEM_LIST_SET, c_string(set)),
            ];
            if let Some(id) = set_id {
                attributes.push(DefaultNla::new(
                    NFTA_SET_ELEM_LIST_SET_ID,
                    id.to_be_bytes().to_vec(),
                ));
            }
            attributes.push(DefaultNla::new(
                NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED,
                list,
            ));
            let what = if chunk.len() == 1 {
                format!("element {} of set {set}", describe_key(&chunk[0].key))
            } else {
                format!(
                    "{} elements of set {set} (from {})",
                    chunk.len(),
                    describe_key(&chunk[0].key)
                )
            };
            let (message_type, flags) = if add {
                (NFT_MSG_NEWSETELEM, NLM_F_CREATE)
            } else {
                (NFT_MSG_DELSETELEM, 0)
            };
            self.push(
                family,
                NfTablesMessage::Other {
                    message_type,
                    attributes,
                },
                flags,
                what,
            );
        }
    }
}

// The kernel's numbers (include/uapi/linux/netfilter/nf_tables.h).
const NFT_MSG_NEWSETELEM: u8 = 12;
const NFT_MSG_DELSETELEM: u8 = 14;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_LIST_SET_ID: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
const NFTA_SET_ELEM_EXPIRATION: u16 = 5;
const NFTA_SET_ELEM_EXPR: u16 = 7;
const NFTA_DATA_VALUE: u16 = 1;
const NFT_SET_ELEM_INTERVAL_END: u32 = 1;
/// The most bytes of elements in one message's list attribute: its
/// length is 16 bits, header included.
const ELEMENT_LIST_MAX: usize = 65_535 - 4;

fn c_string(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

/// One netlink attribute of type `kind` whose value `value` appends,
/// padded to 4 bytes as netlink wants.
fn nla(out: &mut Vec<u8>, kind: u16, value: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    value(out);
    let len = u16::try_from(out.len() - at).unwrap_or(u16::MAX);
    out[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    out[at + 2..at + 4].copy_from_slice(&kind.to_ne_bytes());
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

/// One element (NFTA_LIST_ELEM) as netlink-packet-netfilter would emit
/// `encode_element(e)`, appended to `out`.
fn encode_element_into(out: &mut Vec<u8>, e: &Element) {
    nla(out, NFTA_LIST_ELEM | NLA_F_NESTED, |out| {
        nla(out, NFTA_SET_ELEM_KEY | NLA_F_NESTED, |out| {
            nla(out, NFTA_DATA_VALUE, |out| out.extend_from_slice(&e.key))
        });
        if e.interval_end {
            nla(out, NFTA_SET_ELEM_FLAGS, |out| {
                out.extend_from_slice(&NFT_SET_ELEM_INTERVAL_END.to_be_bytes())
            });
        }
        if let Some(t) = e.timeout {
            nla(out, NFTA_SET_ELEM_TIMEOUT, |out| {
                out.extend_from_slice(&ms(t).to_be_bytes())
            });
        }
        if let Some(x) = e.expiration {
            nla(out, NFTA_SET_ELEM_EXPIRATION, |out| {
                out.extend_from_slice(&ms(x).to_be_bytes())
            });
        }
        if let Some((packets, bytes)) = e.counter {
            // Its counter, starting from these.
            let counter = super::expr::counter_nested_from(packets, bytes);
            nla(out, NFTA_SET_ELEM_EXPR | NLA_F_NESTED, |out| {
                out.extend_from_slice(&counter)
            });
        }
    });
}

/// libnftnl's user data for a table comment: one TLV, type
/// NFTNL_UDATA_TABLE_COMMENT (0), a one-byte length, the text and its NUL.
/// Comments are at most 128 bytes in nft; longer ones are cut.
pub fn comment_udata(comment: &str) -> Vec<u8> {
    let text = &comment.as_bytes()[..comment.len().min(127)];
    let mut v = vec![UDATA_TABLE_COMMENT, text.len() as u8 + 1];
    v.extend_from_slice(text);
    v.push(0);
    v
}

/// The comment in a table's user data (as `comment_udata` or nft writes
/// it); `None` when there is none or the TLVs do not parse.
pub fn udata_comment(udata: &[u8]) -> Option<String> {
    let mut rest = udata;
    while let [kind, len, tail @ ..] = rest {
        let value = tail.get(..usize::from(*len))?;
        if *kind == UDATA_TABLE_COMMENT {
            let text = value.strip_suffix(&[0]).unwrap_or(value);
            return std::str::from_utf8(text).ok().map(str::to_string);
        }
        rest = &tail[usize::from(*len)..];
    }
    None
}

const UDATA_TABLE_COMMENT: u8 = 0;

pub(crate) fn encode_element(
    e: &Element,
) -> netlink_packet_netfilter::nftables::ListAttribute<SetElementAttribute> {
    let mut attrs = vec![SetElementAttribute::Key(DataAttribute::Value(
        e.key.clone(),
    ))];
    if e.interval_end {
        attrs.push(SetElementAttribute::Flags(SetElementFlags::IntervalEnd));
    }
    if let Some(t) = e.timeout {
        attrs.push(SetElementAttribute::Timeout(ms(t)));
    }
    if let Some(x) = e.expiration {
        attrs.push(SetElementAttribute::Expiration(ms(x)));
    }
    if let Some((packets, bytes)) = e.counter {
        // NFTA_SET_ELEM_EXPR: its counter, starting from these.
        const NFTA_SET_ELEM_EXPR: u16 = 7;
        attrs.push(SetElementAttribute::Other(
            netlink_packet_core::DefaultNla::new(
                NFTA_SET_ELEM_EXPR | netlink_packet_core::NLA_F_NESTED,
                super::expr::counter_nested_from(packets, bytes),
            ),
        ));
    }
    netlink_packet_netfilter::nftables::ListAttribute::Element(attrs)
}

/// The key as an address or port, for error messages.
pub fn describe_key(key: &[u8]) -> String {
    match key.len() {
        4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(key).unwrap()).to_string(),
        16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(key).unwrap()).to_string(),
        2 => u16::from_be_bytes([key[0], key[1]]).to_string(),
        _ => format!("{key:02x?}"),
    }
}

pub fn family_name(family: NetfilterProtoFamily) -> &'static str {
    match family {
        NetfilterProtoFamily::Inet => "inet",
        NetfilterProtoFamily::IPv4 => "ip",
        NetfilterProtoFamily::IPv6 => "ip6",
        NetfilterProtoFamily::Bridge => "bridge",
        NetfilterProtoFamily::ARP => "arp",
        NetfilterProtoFamily::NetDev => "netdev",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    #[test]
    fn table_comments_round_trip() {
        assert_eq!(comment_udata("hi"), vec![0, 3, b'h', b'i', 0]);
        assert_eq!(
            udata_comment(&comment_udata("managed by nftsentry")).as_deref(),
            Some("managed by nftsentry")
        );
        // Another TLV first (nft has none for tables today), then ours.
        assert_eq!(
            udata_comment(&[7, 2, 1, 2, 0, 2, b'x', 0]).as_deref(),
            Some("x")
        );
        for bad in [&[][..], &[0], &[0, 5, b'a'], &[1, 1, 0], &[0, 2, 0xff, 0]] {
            assert_eq!(udata_comment(bad), None, "{bad:?}");
        }
        assert_eq!(comment_udata(&"a".repeat(300)).len(), 2 + 128);
    }

    /// The bytes netlink-packet-netfilter emits for `elements` in one
    /// message: what `element_messages` must send.
    fn crate_encoding(set_id: Option<u32>, elements: &[Element], add: bool) -> Vec<u8> {
        let mut attributes = vec![
            SetElementList::Table("nftsentry".into()),
            SetElementList::Set("blocked4".into()),
        ];
        if let Some(id) = set_id {
            attributes.push(SetElementList::SetId(id));
        }
        attributes.push(SetElementList::Elements(
            elements.iter().map(encode_element).collect(),
        ));
        let m = SetElementMessage { attributes };
        let m = if add {
            NfTablesMessage::NewSetElement(m)
        } else {
            NfTablesMessage::DeleteSetElement(m)
        };
        emitted(m)
    }

    fn emitted(m: NfTablesMessage) -> Vec<u8> {
        use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage};
        let m = NetfilterMessage::new(NetfilterHeader::new(NetfilterProtoFamily::Inet, 0, 0), m);
        let mut buf = vec![0u8; m.buffer_len()];
        m.emit(&mut buf);
        buf
    }

    #[test]
    fn elements_are_encoded_as_the_crate_encodes_them() {
        let mut elems = Vec::new();
        for key in [
            vec![192, 0, 2, 1],
            vec![0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9],
            vec![0, 22],
            vec![1, 2, 3],
        ] {
            for timeout in [None, Some(Duration::from_millis(86_400_123))] {
                for expiration in [None, Some(Duration::from_millis(1))] {
                    for interval_end in [false, true] {
                        for counter in [None, Some((0, 0)), Some((u64::MAX, 7))] {
                            elems.push(Element {
                                key: key.clone(),
                                timeout,
                                expiration,
                                interval_end,
                                counter,
                            });
                        }
                    }
                }
            }
        }
        for add in [true, false] {
            for set_id in [None, Some(0x0102_0304)] {
                for one in elems.chunks(1).chain([&elems[..]]) {
                    let mut b = Batch::new();
                    b.element_messages(
                        NetfilterProtoFamily::Inet,
                        "nftsentry",
                        "blocked4",
                        set_id,
                        one,
                        add,
                    );
                    assert_eq!(b.len(), 1);
                    let q = &b.messages[0];
                    assert_eq!(q.flags, if add { NLM_F_CREATE } else { 0 });
                    assert_eq!(
                        emitted(q.message.clone()),
                        crate_encoding(set_id, one, add),
                        "{one:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn elements_are_chunked_below_64k() {
        let elems: Vec<Element> = (0..100_000u32)
            .map(|i| {
                let mut key = [0u8; 16];
                key[12..].copy_from_slice(&i.to_be_bytes());
                Element {
                    key: key.to_vec(),
                    timeout: Some(Duration::from_secs(3600)),
                    expiration: Some(Duration::from_secs(1800)),
                    interval_end: false,
                    counter: None,
                }
            })
            .collect();
        let mut b = Batch::new();
        b.add_elements(
            NetfilterProtoFamily::Inet,
            "nftsentry",
            "blocked6",
            None,
            &elems,
        );
        assert_eq!(b.len(), 100);
        for q in &b.messages {
            let len = q.message.buffer_len();
            assert!(len < 60_000, "message of {len} bytes");
        }
        assert!(
            b.messages[3]
                .what
                .contains("1000 elements of set blocked6 (from ::bb8)")
        );
        // With their counters (carried over a reload), half as many.
        let counted: Vec<Element> = elems
            .iter()
            .take(10_000)
            .map(|e| Element {
                counter: Some((u64::MAX, u64::MAX)),
                ..e.clone()
            })
            .collect();
        let mut b = Batch::new();
        b.add_elements(
            NetfilterProtoFamily::Inet,
            "nftsentry",
            "blocked6",
            None,
            &counted,
        );
        assert_eq!(b.len(), 20);
        for q in &b.messages {
            let len = q.message.buffer_len();
            assert!(len < 60_000, "message of {len} bytes");
        }
    }
}
