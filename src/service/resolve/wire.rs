//! resolve::wire: the DNS wire format of one PTR lookup: the reverse name
//! of an address, the query, and the checks a reply must pass to count as
//! the answer (the query's id, the question repeated, compared
//! case-insensitively so 0x20-randomising servers work), then its first PTR
//! name, after CNAMEs. Names from PTR records end up in log lines, so
//! anything but a plain hostname is "no name".
//!
//! Pure byte handling: knows nothing of sockets, servers, retries or the
//! cache; never panics on what the network sends.

use std::net::IpAddr;

/// A name on the wire is at most 255 bytes (RFC 1035 3.1).
const MAX_WIRE_NAME: usize = 255;
/// More pointer hops than a 255-byte name can legitimately need is a loop.
const MAX_POINTER_HOPS: usize = 127;
/// Longest CNAME chain followed to the PTR (RFC 2317 delegation uses one).
const MAX_ALIASES: usize = 8;
pub(super) const TYPE_PTR: u16 = 12;
pub(super) const TYPE_CNAME: u16 = 5;
pub(super) const CLASS_IN: u16 = 1;

/// The reverse-lookup name: `d.c.b.a.in-addr.arpa` for IPv4 (also for an
/// IPv4-mapped IPv6 address, whose PTR lives there), 32 nibbles in reverse
/// order then `ip6.arpa` for IPv6.
pub fn ptr_name(ip: IpAddr) -> String {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                for nibble in [byte & 0x0f, byte >> 4] {
                    s.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
                    s.push('.');
                }
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

/// A dotted name as uncompressed wire labels (length-prefixed, without the
/// final zero). Errors on empty labels or labels over 63 bytes.
pub(super) fn encode_name(name: &str) -> std::result::Result<Vec<u8>, String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let mut out = Vec::with_capacity(name.len() + 1);
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("bad label in {name:?}"));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    if out.len() + 1 > MAX_WIRE_NAME {
        return Err(format!("name too long: {name:?}"));
    }
    Ok(out)
}

/// A standard recursive query for PTR `qwire` (as from `encode_name`).
pub(super) fn build_query(id: u16, qwire: &[u8]) -> Vec<u8> {
    let mut q = Vec::with_capacity(12 + qwire.len() + 5);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes()); // RD: the server recurses for us
    q.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    q.extend_from_slice(&[0; 6]); // AN, NS, AR counts
    q.extend_from_slice(qwire);
    q.push(0);
    q.extend_from_slice(&TYPE_PTR.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    q
}

pub(super) fn be16(msg: &[u8], pos: usize) -> std::result::Result<u16, String> {
    match pos.checked_add(2).and_then(|end| msg.get(pos..end)) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(format!("truncated at offset {pos}")),
    }
}

/// Reads the (possibly compressed) name at `start`: returns it as
/// uncompressed wire labels and the offset just past it in the message.
fn read_name(msg: &[u8], start: usize) -> std::result::Result<(Vec<u8>, usize), String> {
    let mut out = Vec::new();
    let mut pos = start;
    let mut after: Option<usize> = None;
    let mut hops = 0;
    loop {
        let len = *msg.get(pos).ok_or("name runs past the end")?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                return Ok((out, after.unwrap_or(pos + 1)));
            }
            0x00 => {
                let len = usize::from(len);
                let label = msg
                    .get(pos + 1..pos + 1 + len)
                    .ok_or("label runs past the end")?;
                // +1 for this length byte, +1 for the final zero.
                if out.len() + 1 + len + 1 > MAX_WIRE_NAME {
                    return Err("name longer than 255 bytes".into());
                }
                out.push(len as u8);
                out.extend_from_slice(label);
                pos += 1 + len;
            }
            0xc0 => {
                let low = *msg.get(pos + 1).ok_or("pointer runs past the end")?;
                after.get_or_insert(pos + 2);
                hops += 1;
                if hops > MAX_POINTER_HOPS {
                    return Err("compression pointer loop".into());
                }
                pos = (usize::from(len & 0x3f) << 8) | usize::from(low);
            }
            _ => return Err(format!("unsupported label type {len:#04x}")),
        }
    }
}

/// Wire labels as a hostname fit for a log line: letters, digits, '-', '_'
/// in labels joined by '.', at most 253 characters; `None` otherwise (a
/// hostile PTR record must not put spaces, newlines or escapes in our logs).
pub(super) fn hostname_from_wire(wire: &[u8]) -> Option<String> {
    let mut name = String::with_capacity(wire.len());
    let mut pos = 0;
    while pos < wire.len() {
        let len = usize::from(wire[pos]);
        let label = wire.get(pos + 1..pos + 1 + len)?;
        if label.is_empty() {
            return None;
        }
        if !name.is_empty() {
            name.push('.');
        }
        for &b in label {
            if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return None;
            }
            name.push(char::from(b));
        }
        pos += 1 + len;
    }
    (!name.is_empty() && name.len() <= 253).then_some(name)
}

/// What a reply that really answers our question says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    Name(String),
    /// NXDOMAIN, no PTR record, or a PTR name that is not a plain hostname.
    NoName,
    /// SERVFAIL, REFUSED and the like: worth asking the next server.
    ServerFailure(u8),
}

/// Checks that `msg` answers query `id` for `qwire` and takes its first
/// PTR record (following CNAMEs from the question). `Err` means "not an
/// answer to this query" (spoofed, mangled): the caller ignores it.
pub(super) fn parse_answer(
    msg: &[u8],
    id: u16,
    qwire: &[u8],
) -> std::result::Result<Answer, String> {
    if msg.len() < 12 {
        return Err("shorter than a DNS header".into());
    }
    if be16(msg, 0)? != id {
        return Err("id does not match".into());
    }
    let flags = be16(msg, 2)?;
    if flags & 0x8000 == 0 {
        return Err("not a response".into());
    }
    if (flags >> 11) & 0x0f != 0 {
        return Err("not a standard query response".into());
    }
    if be16(msg, 4)? != 1 {
        return Err("question count is not 1".into());
    }
    let ancount = be16(msg, 6)?;
    let (qname, mut pos) = read_name(msg, 12)?;
    let (qtype, qclass) = (be16(msg, pos)?, be16(msg, pos + 2)?);
    pos += 4;
    // Length bytes are below 64, never ASCII letters, so a case-insensitive
    // compare of whole wire names compares labels only.
    if !qname.eq_ignore_ascii_case(qwire) || qtype != TYPE_PTR || qclass != CLASS_IN {
        return Err("question does not match".into());
    }
    match flags & 0x0f {
        0 => {}
        3 => return Ok(Answer::NoName),
        rcode => return Ok(Answer::ServerFailure(rcode as u8)),
    }
    let mut aliases: Vec<Vec<u8>> = vec![qname];
    for _ in 0..ancount {
        let (owner, p) = read_name(msg, pos)?;
        let rtype = be16(msg, p)?;
        let class = be16(msg, p + 2)?;
        let rdlen = usize::from(be16(msg, p + 8)?);
        let rdata = p + 10;
        let end = rdata + rdlen;
        if end > msg.len() {
            return Err("record data runs past the end".into());
        }
        let ours = class == CLASS_IN && aliases.iter().any(|a| a.eq_ignore_ascii_case(&owner));
        if ours && (rtype == TYPE_PTR || rtype == TYPE_CNAME) {
            let (target, after) = read_name(msg, rdata)?;
            if after > end {
                return Err("name runs past its record".into());
            }
            if rtype == TYPE_PTR {
                return Ok(hostname_from_wire(&target).map_or(Answer::NoName, Answer::Name));
            }
            if aliases.len() < MAX_ALIASES {
                aliases.push(target);
            }
        }
        pos = end;
    }
    Ok(Answer::NoName)
}

/// Pure parser for tests and fuzzing: does `buf` answer query `id` for
/// `qname` (e.g. "7.100.51.198.in-addr.arpa")? `Ok(Some(name))` for the first
/// PTR name if it is a plain hostname; `Ok(None)` when the server says there
/// is none (NXDOMAIN, no PTR, a name unfit for logs, or a server failure);
/// `Err` when `buf` is not an answer to this query (wrong id or question,
/// malformed). Never panics.
pub fn parse_ptr_response(
    buf: &[u8],
    id: u16,
    qname: &str,
) -> std::result::Result<Option<String>, String> {
    let qwire = encode_name(qname)?;
    match parse_answer(buf, id, &qwire)? {
        Answer::Name(n) => Ok(Some(n)),
        Answer::NoName | Answer::ServerFailure(_) => Ok(None),
    }
}
