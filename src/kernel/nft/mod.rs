//! nft: the nf_tables netlink layer. One socket, transactions (`Batch` +
//! `NftSocket::commit`), expression builders, set elements with per-element
//! timeouts (chunked), element listing, table existence and deletion.
//!
//! Knows nothing of scans, configs or what the table is for: `ruleset` decides
//! what to install, this module only speaks netlink.

pub mod batch;
pub mod expr;
pub mod socket;

use std::time::Duration;

use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_netfilter::NetfilterProtoFamily;
use netlink_packet_netfilter::nftables::{
    NfTablesMessage, RuleAttribute, RuleMessage, SetAttribute, SetElementList, SetElementMessage,
    SetMessage, TableAttribute, TableMessage,
};

pub use batch::{Batch, ChainSpec, Element, KeyType, SetSpec};
pub use socket::NftSocket;

use crate::error::{Error, Kind, Result};

/// Our tables are always in the inet family (IPv4 and IPv6 in one table).
pub const FAMILY: NetfilterProtoFamily = NetfilterProtoFamily::Inet;

/// A set's element count and default timeout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetInfo {
    pub count: Option<u32>,
    pub timeout: Option<Duration>,
}

/// A table as the kernel lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableInfo {
    /// Its comment (nft's `comment "..."`), if it has one.
    pub comment: Option<String>,
}

/// A set element as the kernel lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedElement {
    pub key: Vec<u8>,
    pub interval_end: bool,
    /// The element's timeout, when it differs from the set's default (the
    /// kernel leaves out a timeout equal to the default).
    pub timeout: Option<Duration>,
    /// Time left until the kernel removes it.
    pub expiration: Option<Duration>,
    /// Its `counter` (packets, bytes), in a set made with one.
    pub counter: Option<(u64, u64)>,
}

/// A rule as a counter dump sees it: the sets it looks up and its
/// `counter` (packets, bytes), if it has one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleCounter {
    pub sets: Vec<String>,
    pub counter: Option<(u64, u64)>,
}

impl NftSocket {
    /// Does `table` exist in our family?
    pub fn table_exists(&mut self, table: &str) -> Result<bool> {
        let what = format!("table inet {table}");
        match self.request(
            FAMILY,
            NfTablesMessage::GetTable(TableMessage {
                attributes: vec![TableAttribute::Name(table.to_string())],
            }),
            NLM_F_REQUEST | NLM_F_ACK,
            &what,
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.kind == Kind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// What the kernel says of `table`; `None` when it does not exist.
    pub fn table_info(&mut self, table: &str) -> Result<Option<TableInfo>> {
        let what = format!("table inet {table}");
        let replies = match self.request(
            FAMILY,
            NfTablesMessage::GetTable(TableMessage {
                attributes: vec![TableAttribute::Name(table.to_string())],
            }),
            NLM_F_REQUEST | NLM_F_ACK,
            &what,
        ) {
            Ok(r) => r,
            Err(e) if e.kind == Kind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut info = TableInfo::default();
        for m in replies {
            if let NfTablesMessage::NewTable(TableMessage { attributes }) = m {
                for a in attributes {
                    if let TableAttribute::UserData(u) = a {
                        info.comment = batch::udata_comment(&u);
                    }
                }
            }
        }
        Ok(Some(info))
    }

    /// Deletes `table` if it exists; true if it did.
    pub fn delete_table(&mut self, table: &str) -> Result<bool> {
        let mut b = Batch::new();
        b.del_table(FAMILY, table);
        match self.commit(&b) {
            Ok(()) => Ok(true),
            Err(e) if e.kind == Kind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// What the kernel says of `set`: its element count (NFTA_SET_COUNT;
    /// kernels before 6.x do not report it) and default timeout.
    pub fn set_info(&mut self, table: &str, set: &str) -> Result<SetInfo> {
        let replies = self.request(
            FAMILY,
            NfTablesMessage::GetSet(SetMessage {
                attributes: vec![
                    SetAttribute::Table(table.into()),
                    SetAttribute::Name(set.into()),
                ],
            }),
            NLM_F_REQUEST | NLM_F_ACK,
            &format!("set {set} in table inet {table}"),
        )?;
        let mut info = SetInfo::default();
        for m in replies {
            if let NfTablesMessage::NewSet(SetMessage { attributes }) = m {
                for a in attributes {
                    match a {
                        SetAttribute::Count(n) => info.count = Some(n),
                        SetAttribute::Timeout(ms) => info.timeout = Some(Duration::from_millis(ms)),
                        _ => {}
                    }
                }
            }
        }
        Ok(info)
    }

    /// Every element of `set` in `table`, with timeouts and time left.
    ///
    /// A dump that overlaps the kernel resizing the set's hash table (which it
    /// does on its own after many inserts) can repeat an element and skip
    /// another. So duplicates are dropped, and the dump is taken again while
    /// it disagrees with the kernel's element count.
    pub fn list_elements(&mut self, table: &str, set: &str) -> Result<Vec<ListedElement>> {
        let mut out = Vec::new();
        for attempt in 0..5 {
            let (elements, had_duplicates) = self.dump_elements(table, set)?;
            out = elements;
            // The kernel counts an interval once (its end element is not
            // counted).
            let count_matches = match self.set_info(table, set)?.count {
                Some(n) => n as usize == out.iter().filter(|e| !e.interval_end).count(),
                None => !had_duplicates,
            };
            if count_matches {
                break;
            }
            std::thread::sleep(Duration::from_millis(10 << attempt));
        }
        Ok(out)
    }

    /// The element of `set` whose key is `key`, if it is there.
    pub fn get_element(
        &mut self,
        table: &str,
        set: &str,
        key: &[u8],
    ) -> Result<Option<ListedElement>> {
        Ok(self
            .get_elements(table, set, key)?
            .into_iter()
            .find(|e| e.key == key))
    }

    /// In an interval set, the start of the interval that holds `key`.
    pub fn get_interval_start(
        &mut self,
        table: &str,
        set: &str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get_elements(table, set, key)?
            .into_iter()
            .find(|e| !e.interval_end)
            .map(|e| e.key))
    }

    /// What the kernel answers a get of `key` with: the element, or in an
    /// interval set the start of the interval holding it.
    fn get_elements(&mut self, table: &str, set: &str, key: &[u8]) -> Result<Vec<ListedElement>> {
        let what = format!("element {} of set {set}", batch::describe_key(key));
        let replies = match self.request_raw(
            FAMILY,
            NfTablesMessage::GetSetElement(SetElementMessage {
                attributes: vec![
                    SetElementList::Table(table.to_string()),
                    SetElementList::Set(set.to_string()),
                    SetElementList::Elements(vec![batch::encode_element(&Element::key(
                        key.to_vec(),
                    ))]),
                ],
            }),
            NLM_F_REQUEST | NLM_F_ACK,
            &what,
        ) {
            Ok(r) => r,
            Err(e) if e.kind == Kind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for (_, payload) in &replies {
            parse_element_dump(payload, &mut out)
                .map_err(|e| Error::other(format!("{what}: malformed answer: {e}")))?;
        }
        Ok(out)
    }

    /// The rules of `chain` with the sets they look up and their counters.
    pub fn rule_counters(&mut self, table: &str, chain: &str) -> Result<Vec<RuleCounter>> {
        let what = format!("rules of chain {chain} in table inet {table}");
        let replies = self.request_raw(
            FAMILY,
            NfTablesMessage::GetRule(RuleMessage {
                attributes: vec![
                    RuleAttribute::Table(table.to_string()),
                    RuleAttribute::Chain(chain.to_string()),
                ],
            }),
            NLM_F_REQUEST | NLM_F_DUMP,
            &what,
        )?;
        replies
            .iter()
            .map(|(_, p)| {
                parse_rule_dump(p).map_err(|e| Error::other(format!("{what}: malformed rule: {e}")))
            })
            .collect()
    }

    fn dump_elements(&mut self, table: &str, set: &str) -> Result<(Vec<ListedElement>, bool)> {
        let what = format!("set {set} in table inet {table}");
        let replies = self.request_raw(
            FAMILY,
            NfTablesMessage::GetSetElement(SetElementMessage {
                attributes: vec![
                    SetElementList::Table(table.to_string()),
                    SetElementList::Set(set.to_string()),
                ],
            }),
            NLM_F_REQUEST | NLM_F_DUMP,
            &what,
        )?;
        let mut out = Vec::new();
        for (_, payload) in &replies {
            parse_element_dump(payload, &mut out)
                .map_err(|e| Error::other(format!("{what}: malformed element list: {e}")))?;
        }
        let before = out.len();
        // Interval sets list start and end elements under distinct flags.
        out.sort_by(|a, b| (&a.key, a.interval_end).cmp(&(&b.key, b.interval_end)));
        out.dedup_by(|a, b| a.key == b.key && a.interval_end == b.interval_end);
        let had_duplicates = out.len() != before;
        Ok((out, had_duplicates))
    }
}

fn be_u64(v: &[u8]) -> std::result::Result<u64, String> {
    v.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| format!("{} bytes for a u64", v.len()))
}

/// Decodes one NEWSETELEM message of a dump (nfgenmsg, then
/// NFTA_SET_ELEM_LIST_ELEMENTS → NFTA_LIST_ELEM → key, flags, timeout,
/// expiration). Hand-written because the crate's decoder formats the whole
/// buffer into every error context, which is quadratic on large sets.
pub fn parse_element_dump(
    payload: &[u8],
    out: &mut Vec<ListedElement>,
) -> std::result::Result<(), String> {
    const LIST_ELEMENTS: u16 = 3;
    const LIST_ELEM: u16 = 1;
    const KEY: u16 = 1;
    const FLAGS: u16 = 3;
    const TIMEOUT: u16 = 4;
    const EXPIRATION: u16 = 5;
    const EXPR: u16 = 7;
    const EXPRESSIONS: u16 = 10;
    const DATA_VALUE: u16 = 1;
    let body = payload.get(4..).ok_or("short message")?;
    use crate::kernel::netlink::attrs;
    for a in attrs(body) {
        let (kind, value) = a?;
        if kind != LIST_ELEMENTS {
            continue;
        }
        for item in attrs(value) {
            let (kind, elem) = item?;
            if kind != LIST_ELEM {
                continue;
            }
            let mut e = ListedElement {
                key: Vec::new(),
                interval_end: false,
                timeout: None,
                expiration: None,
                counter: None,
            };
            for f in attrs(elem) {
                let (kind, v) = f?;
                match kind {
                    KEY => {
                        for d in attrs(v) {
                            let (k, data) = d?;
                            if k == DATA_VALUE {
                                e.key = data.to_vec();
                            }
                        }
                    }
                    FLAGS => {
                        let f: [u8; 4] = v.try_into().map_err(|_| "bad flags")?;
                        e.interval_end = u32::from_be_bytes(f) & 1 != 0;
                    }
                    TIMEOUT => e.timeout = Some(Duration::from_millis(be_u64(v)?)),
                    EXPIRATION => e.expiration = Some(Duration::from_millis(be_u64(v)?)),
                    // One expression, or (NFTA_SET_ELEM_EXPRESSIONS) a list.
                    EXPR => {
                        if let Some(c) = counter_of(v)? {
                            e.counter = Some(c);
                        }
                    }
                    EXPRESSIONS => {
                        for x in attrs(v) {
                            let (k, x) = x?;
                            if k == LIST_ELEM {
                                if let Some(c) = counter_of(x)? {
                                    e.counter = Some(c);
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            if !e.key.is_empty() {
                out.push(e);
            }
        }
    }
    Ok(())
}

/// The (packets, bytes) of one expression (NFTA_EXPR_NAME, NFTA_EXPR_DATA)
/// when it is a `counter`.
fn counter_of(expr: &[u8]) -> std::result::Result<Option<(u64, u64)>, String> {
    const NAME: u16 = 1;
    const DATA: u16 = 2;
    const BYTES: u16 = 1;
    const PACKETS: u16 = 2;
    use crate::kernel::netlink::attrs;
    let mut is_counter = false;
    let mut data: &[u8] = &[];
    for a in attrs(expr) {
        let (k, v) = a?;
        match k {
            NAME => is_counter = v.split(|&b| b == 0).next() == Some(b"counter"),
            DATA => data = v,
            _ => {}
        }
    }
    if !is_counter {
        return Ok(None);
    }
    let (mut packets, mut bytes) = (0, 0);
    for a in attrs(data) {
        let (k, v) = a?;
        match k {
            BYTES => bytes = be_u64(v)?,
            PACKETS => packets = be_u64(v)?,
            _ => {}
        }
    }
    Ok(Some((packets, bytes)))
}

/// Decodes one NEWRULE message of a dump: the sets its `lookup`s name and
/// its `counter`.
pub fn parse_rule_dump(payload: &[u8]) -> std::result::Result<RuleCounter, String> {
    const RULE_EXPRESSIONS: u16 = 4;
    const LIST_ELEM: u16 = 1;
    const EXPR_NAME: u16 = 1;
    const EXPR_DATA: u16 = 2;
    const LOOKUP_SET: u16 = 1;
    use crate::kernel::netlink::attrs;
    let body = payload.get(4..).ok_or("short message")?;
    let mut out = RuleCounter::default();
    for a in attrs(body) {
        let (kind, value) = a?;
        if kind != RULE_EXPRESSIONS {
            continue;
        }
        for item in attrs(value) {
            let (kind, expr) = item?;
            if kind != LIST_ELEM {
                continue;
            }
            if let Some(c) = counter_of(expr)? {
                out.counter = Some(c);
                continue;
            }
            let mut lookup = false;
            let mut data: &[u8] = &[];
            for f in attrs(expr) {
                let (k, v) = f?;
                match k {
                    EXPR_NAME => lookup = v.split(|&b| b == 0).next() == Some(b"lookup"),
                    EXPR_DATA => data = v,
                    _ => {}
                }
            }
            if lookup {
                for f in attrs(data) {
                    let (k, v) = f?;
                    if k == LOOKUP_SET {
                        let name = v.split(|&b| b == 0).next().unwrap_or(&[]);
                        out.sets.push(String::from_utf8_lossy(name).into_owned());
                    }
                }
            }
        }
    }
    Ok(out)
}
