//! Expression builders: each returns the kernel's expression list entries for
//! one piece of nft syntax, in the order `nft --debug=netlink` prints them.
//!
//! Everything the crate types cover is sent through them; `ct`, `counter`,
//! `fib`, `socket` and `log` have no typed form in netlink-packet-netfilter
//! 0.4 and are sent as raw attributes in the kernel's numbering
//! (include/uapi/linux/netfilter/nf_tables.h).

use netlink_packet_core::DefaultNla;
use netlink_packet_netfilter::nftables::{
    Bitwise, Cmp, DataAttribute, ExpressionAttribute, Expressions, Immediate, ListAttribute,
    Lookup, Meta, MetaKey, Operator, Payload, Register, Verdict, VerdictAttribute,
};

/// One entry of a rule's expression list.
pub type Expr = ListAttribute<ExpressionAttribute>;

/// NFT_PAYLOAD_NETWORK_HEADER / NFT_PAYLOAD_TRANSPORT_HEADER.
pub const NETWORK_HEADER: u32 = 1;
pub const TRANSPORT_HEADER: u32 = 2;

/// nfgenmsg / meta nfproto values.
pub const NFPROTO_IPV4: u8 = 2;
pub const NFPROTO_IPV6: u8 = 10;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// Kernel verdict codes (include/uapi/linux/netfilter.h): the crate's
/// `Verdict` has no Drop/Accept variant.
pub const NF_DROP: u32 = 0;
pub const NF_ACCEPT: u32 = 1;

/// ct state bits (NF_CT_STATE_BIT): invalid 1, established 2, related 4, new 8.
pub const CT_STATE_ESTABLISHED: u32 = 0x2;
pub const CT_STATE_RELATED: u32 = 0x4;

/// ct direction values (enum ip_conntrack_dir): original 0, reply 1.
pub const CT_DIR_ORIGINAL: u8 = 0;
pub const CT_DIR_REPLY: u8 = 1;

/// ct status bits (enum ip_conntrack_status): IPS_ASSURED, which TCP
/// conntrack sets when a handshake completes (an ACK in window after the
/// SYN-ACK), not for a SYN alone.
pub const CT_STATUS_ASSURED: u32 = 1 << 2;

/// Route types (enum rtn_type in include/uapi/linux/rtnetlink.h) that `fib
/// ... type` yields: unicast 1, local 2, broadcast 3, anycast 4, multicast 5.
pub const RTN_LOCAL: u32 = 2;

const NFT_CT_STATE: u32 = 0;
const NFT_CT_DIRECTION: u32 = 1;
const NFT_CT_STATUS: u32 = 2;
const NFT_CT_MARK: u32 = 3;
const NFTA_CT_DREG: u16 = 1;
const NFTA_CT_KEY: u16 = 2;
const NFTA_CT_SREG: u16 = 4;
const NFTA_DYNSET_SET_NAME: u16 = 1;
const NFTA_DYNSET_SET_ID: u16 = 2;
const NFTA_DYNSET_OP: u16 = 3;
const NFTA_DYNSET_SREG_KEY: u16 = 4;
/// NFT_DYNSET_OP_UPDATE: add the key, or refresh its timeout.
const NFT_DYNSET_OP_UPDATE: u32 = 1;
const NFTA_LOG_GROUP: u16 = 1;
const NFTA_LOG_PREFIX: u16 = 2;
const NFTA_SOCKET_KEY: u16 = 1;
const NFTA_SOCKET_DREG: u16 = 2;
const NFT_SOCKET_TRANSPARENT: u32 = 0;
const NFTA_COUNTER_BYTES: u16 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;
const NFTA_FIB_DREG: u16 = 1;
const NFTA_FIB_RESULT: u16 = 2;
const NFTA_FIB_FLAGS: u16 = 3;
/// NFTA_FIB_F_DADDR: look the destination address up.
const NFTA_FIB_F_DADDR: u32 = 1 << 1;
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;

fn raw(name: &str, attributes: Vec<DefaultNla>) -> Expr {
    Expressions::Other {
        expression_type: name.to_string(),
        attributes,
    }
    .into()
}

/// `meta nfproto` or `meta l4proto` into register 1.
pub fn meta(key: MetaKey) -> Expr {
    Expressions::Meta(vec![
        Meta::DestinationRegister(Register::Reg1),
        Meta::Key(key),
    ])
    .into()
}

/// `payload load LEN b @ BASE header + OFFSET => reg 1`.
pub fn payload(base: u32, offset: u32, len: u32) -> Expr {
    Expressions::Payload(vec![
        Payload::DestinationRegister(Register::Reg1),
        Payload::Base(base),
        Payload::Offset(offset),
        Payload::Len(len),
    ])
    .into()
}

/// `cmp OP reg 1 DATA`.
pub fn cmp(op: Operator, data: &[u8]) -> Expr {
    Expressions::Cmp(vec![
        Cmp::SourceRegister(Register::Reg1),
        Cmp::Op(op),
        Cmp::Data(DataAttribute::Value(data.to_vec())),
    ])
    .into()
}

/// `lookup reg 1 set NAME`; `set_id` names a set created in the same batch.
pub fn lookup(set: &str, set_id: u32) -> Expr {
    Expressions::Lookup(vec![
        Lookup::Set(set.to_string()),
        Lookup::SourceRegister(Register::Reg1),
        Lookup::SetId(set_id),
    ])
    .into()
}

/// NFT_LOOKUP_F_INV: the lookup matches when the key is *not* in the set.
const NFT_LOOKUP_F_INV: u32 = 1;

/// `lookup reg 1 set NAME 0x1`: matches when reg 1 is not in the set.
pub fn lookup_inverted(set: &str, set_id: u32) -> Expr {
    Expressions::Lookup(vec![
        Lookup::Set(set.to_string()),
        Lookup::SourceRegister(Register::Reg1),
        Lookup::SetId(set_id),
        Lookup::Flags(NFT_LOOKUP_F_INV),
    ])
    .into()
}

/// `reg 1 = (reg 1 & mask) ^ 0`, on `mask.len()` bytes.
pub fn bitwise_and(mask: &[u8]) -> Expr {
    bitwise(mask, &vec![0; mask.len()])
}

/// `reg 1 = (reg 1 & mask) ^ xor`: nft's form of `&`, `|` and `^`.
pub fn bitwise(mask: &[u8], xor: &[u8]) -> Expr {
    Expressions::Bitwise(vec![
        Bitwise::SourceRegister(Register::Reg1),
        Bitwise::DestinationRegister(Register::Reg1),
        Bitwise::Length(mask.len() as u32),
        Bitwise::Mask(DataAttribute::Value(mask.to_vec())),
        Bitwise::Xor(DataAttribute::Value(xor.to_vec())),
    ])
    .into()
}

fn ct_load(key: u32) -> Expr {
    raw(
        "ct",
        vec![
            DefaultNla::new(
                NFTA_CT_DREG,
                u32::from(Register::Reg1).to_be_bytes().to_vec(),
            ),
            DefaultNla::new(NFTA_CT_KEY, key.to_be_bytes().to_vec()),
        ],
    )
}

/// `ct load state => reg 1` (a 32-bit bitmask in host order).
pub fn ct_state() -> Expr {
    ct_load(NFT_CT_STATE)
}

/// `ct load direction => reg 1` (one byte: original 0, reply 1).
pub fn ct_direction() -> Expr {
    ct_load(NFT_CT_DIRECTION)
}

/// `ct load status => reg 1` (a 32-bit bitmask in host order).
pub fn ct_status() -> Expr {
    ct_load(NFT_CT_STATUS)
}

/// `ct load mark => reg 1` (32 bits, host order).
pub fn ct_mark() -> Expr {
    ct_load(NFT_CT_MARK)
}

/// `ct set mark with reg 1`.
pub fn ct_set_mark() -> Expr {
    raw(
        "ct",
        vec![
            DefaultNla::new(NFTA_CT_KEY, NFT_CT_MARK.to_be_bytes().to_vec()),
            DefaultNla::new(
                NFTA_CT_SREG,
                u32::from(Register::Reg1).to_be_bytes().to_vec(),
            ),
        ],
    )
}

/// `dynset update reg_key 1 set NAME`: adds reg 1 to the set, or refreshes
/// its element's timeout (the set's default); `set_id` names a set created
/// in the same batch. A full set adds nothing and ends the rule.
pub fn dynset_update(set: &str, set_id: u32) -> Expr {
    let mut name = set.as_bytes().to_vec();
    name.push(0);
    raw(
        "dynset",
        vec![
            DefaultNla::new(NFTA_DYNSET_SET_NAME, name),
            DefaultNla::new(NFTA_DYNSET_SET_ID, set_id.to_be_bytes().to_vec()),
            DefaultNla::new(NFTA_DYNSET_OP, NFT_DYNSET_OP_UPDATE.to_be_bytes().to_vec()),
            DefaultNla::new(
                NFTA_DYNSET_SREG_KEY,
                u32::from(Register::Reg1).to_be_bytes().to_vec(),
            ),
        ],
    )
}

/// `fib daddr type => reg 1`: the route type of the packet's destination
/// address (a 32-bit `RTN_*` value in host order), as the routing tables of
/// the packet's network namespace say: local for an address of this host,
/// broadcast, multicast, unicast for one routed elsewhere.
pub fn fib_daddr_type() -> Expr {
    raw(
        "fib",
        vec![
            DefaultNla::new(
                NFTA_FIB_DREG,
                u32::from(Register::Reg1).to_be_bytes().to_vec(),
            ),
            DefaultNla::new(
                NFTA_FIB_RESULT,
                NFT_FIB_RESULT_ADDRTYPE.to_be_bytes().to_vec(),
            ),
            DefaultNla::new(NFTA_FIB_FLAGS, NFTA_FIB_F_DADDR.to_be_bytes().to_vec()),
        ],
    )
}

/// `socket transparent` into register 1: the packet's local socket (a
/// listener, or a bound UDP socket) is looked up; without one the rule ends.
pub fn socket_transparent() -> Expr {
    raw(
        "socket",
        vec![
            DefaultNla::new(
                NFTA_SOCKET_KEY,
                NFT_SOCKET_TRANSPARENT.to_be_bytes().to_vec(),
            ),
            DefaultNla::new(
                NFTA_SOCKET_DREG,
                u32::from(Register::Reg1).to_be_bytes().to_vec(),
            ),
        ],
    )
}

/// `counter` starting at zero.
pub fn counter() -> Expr {
    raw(
        "counter",
        vec![
            DefaultNla::new(NFTA_COUNTER_BYTES, 0u64.to_be_bytes().to_vec()),
            DefaultNla::new(NFTA_COUNTER_PACKETS, 0u64.to_be_bytes().to_vec()),
        ],
    )
}

/// `counter` as the one expression of a set (NFTA_SET_EXPR's content:
/// name and data): every element added gets a counter of its own.
pub fn counter_nested() -> Vec<u8> {
    counter_nested_from(0, 0)
}

/// The same, starting from `packets` and `bytes` (an element's own
/// counter, NFTA_SET_ELEM_EXPR).
pub fn counter_nested_from(packets: u64, bytes: u64) -> Vec<u8> {
    use netlink_packet_core::Emitable;
    let c = raw(
        "counter",
        vec![
            DefaultNla::new(NFTA_COUNTER_BYTES, bytes.to_be_bytes().to_vec()),
            DefaultNla::new(NFTA_COUNTER_PACKETS, packets.to_be_bytes().to_vec()),
        ],
    );
    match c {
        ListAttribute::Element(attrs) => {
            let mut buf = vec![0u8; attrs.as_slice().buffer_len()];
            attrs.as_slice().emit(&mut buf);
            buf
        }
        _ => unreachable!("counter() is one list element"),
    }
}

/// `log prefix PREFIX group GROUP`: packets go to NFLOG group GROUP.
pub fn log(group: u16, prefix: &str) -> Expr {
    let mut p = prefix.as_bytes().to_vec();
    p.push(0);
    raw(
        "log",
        vec![
            DefaultNla::new(NFTA_LOG_GROUP, group.to_be_bytes().to_vec()),
            DefaultNla::new(NFTA_LOG_PREFIX, p),
        ],
    )
}

fn verdict(code: Verdict) -> Expr {
    Expressions::Immediate(vec![
        Immediate::DestinationRegister(Register::Verdict),
        Immediate::Data(DataAttribute::Verdict(vec![VerdictAttribute::Code(code)])),
    ])
    .into()
}

pub fn drop() -> Expr {
    verdict(Verdict::Other(NF_DROP))
}

pub fn accept() -> Expr {
    verdict(Verdict::Other(NF_ACCEPT))
}

pub fn ret() -> Expr {
    verdict(Verdict::Return)
}

/// `jump CHAIN` (a chain of the same table).
pub fn jump(chain: &str) -> Expr {
    Expressions::Immediate(vec![
        Immediate::DestinationRegister(Register::Verdict),
        Immediate::Data(DataAttribute::Verdict(vec![
            VerdictAttribute::Code(Verdict::Jump),
            VerdictAttribute::Chain(chain.to_string()),
        ])),
    ])
    .into()
}

// Compositions for the match parts of nft syntax.

/// `ip saddr @SET` / `ip6 saddr @SET`.
pub fn saddr_in(ipv6: bool, set: &str, set_id: u32) -> Vec<Expr> {
    let (proto, offset, len) = if ipv6 {
        (NFPROTO_IPV6, 8, 16)
    } else {
        (NFPROTO_IPV4, 12, 4)
    };
    vec![
        meta(MetaKey::Nfproto),
        cmp(Operator::Equal, &[proto]),
        payload(NETWORK_HEADER, offset, len),
        lookup(set, set_id),
    ]
}

/// `ip saddr != @UNLESS ip saddr @SET` (and ip6): in SET and not in
/// UNLESS. nft loads the address again for the second lookup; so do we.
pub fn saddr_in_unless(ipv6: bool, set: (&str, u32), unless: (&str, u32)) -> Vec<Expr> {
    let mut v = saddr_in(ipv6, unless.0, unless.1);
    let load = v[2].clone();
    v[3] = lookup_inverted(unless.0, unless.1);
    v.push(load);
    v.push(lookup(set.0, set.1));
    v
}

/// `tcp dport @SET` / `udp dport @SET`.
pub fn dport_in(l4proto: u8, set: &str, set_id: u32) -> Vec<Expr> {
    vec![
        meta(MetaKey::L4Proto),
        cmp(Operator::Equal, &[l4proto]),
        payload(TRANSPORT_HEADER, 2, 2),
        lookup(set, set_id),
    ]
}

/// `ct state established,related`: the ct state word is in host byte order.
pub fn ct_state_in(mask: u32) -> Vec<Expr> {
    vec![
        ct_state(),
        bitwise_and(&mask.to_ne_bytes()),
        cmp(Operator::NotEqual, &[0; 4]),
    ]
}

/// `ct state established,related ct direction reply`: a reply of a
/// connection this host opened (or of one related to it).
pub fn ct_reply_in(mask: u32) -> Vec<Expr> {
    let mut v = ct_state_in(mask);
    v.push(ct_direction());
    v.push(cmp(Operator::Equal, &[CT_DIR_REPLY]));
    v
}

/// `ct direction original ct status assured`, after `meta l4proto tcp`:
/// a TCP connection a peer opened to this host and completed the
/// handshake of.
pub fn tcp_assured_inbound() -> Vec<Expr> {
    vec![
        meta(MetaKey::L4Proto),
        cmp(Operator::Equal, &[IPPROTO_TCP]),
        ct_direction(),
        cmp(Operator::Equal, &[CT_DIR_ORIGINAL]),
        ct_status(),
        bitwise_and(&CT_STATUS_ASSURED.to_ne_bytes()),
        cmp(Operator::NotEqual, &[0; 4]),
    ]
}

/// `ct mark & MASK == VALUE`.
pub fn ct_mark_masked_eq(mask: u32, value: u32) -> Vec<Expr> {
    vec![
        ct_mark(),
        bitwise_and(&mask.to_ne_bytes()),
        cmp(Operator::Equal, &value.to_ne_bytes()),
    ]
}

/// `ct mark set ct mark & ~MASK ct mark set ct mark | VALUE`: the bits of
/// `mask` become `value`, the others stay (nft has no one-step form that
/// it lists back as it reads it).
pub fn ct_mark_set_bits(mask: u32, value: u32) -> Vec<Expr> {
    vec![
        ct_mark(),
        bitwise_and(&(!mask).to_ne_bytes()),
        ct_set_mark(),
        ct_mark(),
        bitwise(&(!value).to_ne_bytes(), &value.to_ne_bytes()),
        ct_set_mark(),
    ]
}

/// `update @SET { ip saddr }` / `{ ip6 saddr }`.
pub fn update_saddr(ipv6: bool, set: &str, set_id: u32) -> Vec<Expr> {
    let mut v = saddr_in(ipv6, set, set_id);
    v[3] = dynset_update(set, set_id);
    v
}

/// `fib daddr type local`: the packet is addressed to this host (not to a
/// broadcast or multicast address, nor routed through it).
pub fn daddr_local() -> Vec<Expr> {
    vec![
        fib_daddr_type(),
        cmp(Operator::Equal, &RTN_LOCAL.to_ne_bytes()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    /// Serialises one expression and returns its bytes.
    fn bytes(e: &Expr) -> Vec<u8> {
        let mut buf = vec![0; e.buffer_len()];
        e.emit(&mut buf);
        buf
    }

    /// Finds the attribute `kind` directly inside a nested attribute list.
    fn attr(buf: &[u8], kind: u16) -> Option<Vec<u8>> {
        let mut i = 0;
        while i + 4 <= buf.len() {
            let len = u16::from_ne_bytes([buf[i], buf[i + 1]]) as usize;
            let k = u16::from_ne_bytes([buf[i + 2], buf[i + 3]]) & 0x3fff;
            if len < 4 || i + len > buf.len() {
                return None;
            }
            if k == kind {
                return Some(buf[i + 4..i + len].to_vec());
            }
            i += (len + 3) & !3;
        }
        None
    }

    #[test]
    fn log_uses_kernel_numbering() {
        let b = bytes(&log(7531, "nftsentry: "));
        let elem = &b[4..]; // NFTA_LIST_ELEM header
        assert_eq!(attr(elem, 1).unwrap(), b"log\0");
        let data = attr(elem, 2).unwrap();
        assert_eq!(attr(&data, NFTA_LOG_GROUP).unwrap(), 7531u16.to_be_bytes());
        assert_eq!(attr(&data, NFTA_LOG_PREFIX).unwrap(), b"nftsentry: \0");
    }

    #[test]
    fn ct_state_mask_is_host_order() {
        let exprs = ct_state_in(CT_STATE_ESTABLISHED | CT_STATE_RELATED);
        assert_eq!(exprs.len(), 3);
        let b = bytes(&exprs[1]);
        let data = attr(&b[4..], 2).unwrap();
        let mask = attr(&data, 4).unwrap(); // NFTA_BITWISE_MASK → NFTA_DATA_VALUE
        assert_eq!(attr(&mask, 1).unwrap(), 6u32.to_ne_bytes());
    }

    #[test]
    fn ct_direction_is_one_byte_of_key_one() {
        let exprs = ct_reply_in(CT_STATE_ESTABLISHED | CT_STATE_RELATED);
        assert_eq!(exprs.len(), 5);
        let b = bytes(&exprs[3]);
        let elem = &b[4..];
        assert_eq!(attr(elem, 1).unwrap(), b"ct\0");
        let data = attr(elem, 2).unwrap();
        assert_eq!(attr(&data, NFTA_CT_KEY).unwrap(), 1u32.to_be_bytes());
        assert_eq!(attr(&data, NFTA_CT_DREG).unwrap(), 1u32.to_be_bytes());
        let cmp = attr(&attr(&bytes(&exprs[4])[4..], 2).unwrap(), 3).unwrap(); // NFTA_CMP_DATA
        assert_eq!(attr(&cmp, 1).unwrap(), [1]);
    }

    #[test]
    fn fib_uses_kernel_numbering() {
        let exprs = daddr_local();
        let b = bytes(&exprs[0]);
        let elem = &b[4..];
        assert_eq!(attr(elem, 1).unwrap(), b"fib\0");
        let data = attr(elem, 2).unwrap();
        assert_eq!(attr(&data, 1).unwrap(), 1u32.to_be_bytes()); // dreg 1
        assert_eq!(attr(&data, 2).unwrap(), 3u32.to_be_bytes()); // addrtype
        assert_eq!(attr(&data, 3).unwrap(), 2u32.to_be_bytes()); // daddr
        let cmp = attr(&attr(&bytes(&exprs[1])[4..], 2).unwrap(), 3).unwrap();
        assert_eq!(attr(&cmp, 1).unwrap(), 2u32.to_ne_bytes()); // RTN_LOCAL, host order
    }

    #[test]
    fn inverted_lookup_then_lookup() {
        let e = saddr_in_unless(false, ("blocked4", 3), ("ignore4", 1));
        assert_eq!(e.len(), 6);
        let flags = |x: &Expr| attr(&attr(&bytes(x)[4..], 2).unwrap(), 5); // NFTA_LOOKUP_FLAGS
        assert_eq!(flags(&e[3]).unwrap(), 1u32.to_be_bytes());
        assert_eq!(flags(&e[5]), None);
        let set = |x: &Expr| attr(&attr(&bytes(x)[4..], 2).unwrap(), 1); // NFTA_LOOKUP_SET
        assert_eq!(set(&e[3]).unwrap(), b"ignore4\0");
        assert_eq!(set(&e[5]).unwrap(), b"blocked4\0");
        assert_eq!(bytes(&e[2]), bytes(&e[4]));
    }

    #[test]
    fn saddr_offsets() {
        let v4 = saddr_in(false, "blocked4", 3);
        let v6 = saddr_in(true, "blocked6", 4);
        let p4 = attr(&bytes(&v4[2])[4..], 2).unwrap();
        let p6 = attr(&bytes(&v6[2])[4..], 2).unwrap();
        assert_eq!(attr(&p4, 3).unwrap(), 12u32.to_be_bytes()); // offset
        assert_eq!(attr(&p4, 4).unwrap(), 4u32.to_be_bytes()); // len
        assert_eq!(attr(&p6, 3).unwrap(), 8u32.to_be_bytes());
        assert_eq!(attr(&p6, 4).unwrap(), 16u32.to_be_bytes());
    }
}
