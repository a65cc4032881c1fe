//! state: the line format of the state file, which carries the active bans
//! and the remembered repeat offenders across restarts.
//!
//! One ban per line, `ban <address>` (or `ban <network>/<prefix>` for a
//! prefix ban: an IPv6 /64, an escalated IPv4 /24; files from before prefix
//! bans name addresses only, and still load) and then `key=value` fields separated by
//! spaces, values percent-encoded (every byte outside `!`..`~`, and `%`),
//! ending with `crc=` and an FNV-1a checksum of everything before it:
//!
//! ```text
//! ban 192.0.2.2 scan=syn proto=tcp mode=stcp port=1 banned=1700000000123 expires=1700086400123 length=86400000 repeat=1 evidence=forgeable actions=set,hosts_deny,route:blackhole crc=5f3c0a1e
//! ```
//!
//! The file is a journal (see `state_file`): between two rewrites the
//! daemon appends the lines of the entries that changed. A later `ban`
//! line for an address replaces an earlier one, and an entry that went
//! (forgotten, lifted) gets an `end` record, the address (or network)
//! alone, with the same checksum rule:
//!
//! ```text
//! end 192.0.2.2 crc=91f3fd24
//! ```
//!
//! Records apply in file order; an `end` for an address with no entry
//! before it changes nothing. A rewritten file holds one `ban` line per
//! entry and no `end`.
//!
//! `actions` says which actions are in force for the ban, never how: the
//! hosts.deny file and line, the commands and their arguments come from the
//! config when an action is applied or undone, so nothing written here
//! decides what a privileged step writes (the checksum catches damage, not
//! forgery). The route kind is one of three names, checked on reading.
//!
//! Files of the first release (0.1.0) wrote the actions as `set=1
//! kill_route=0 command=0 route=... hosts_deny=PATH hosts_deny_line=LINE`
//! and had no `mode`: those lines still load (the path and line are read as
//! "a hosts.deny line is in force" and nothing more), and are written back
//! in the form above.
//!
//! Times are milliseconds since 1970 (wall clock: they must mean the same
//! after a reboot). A line that fails its checksum or does not parse (a
//! last line cut short by a crash in the middle of an append among them)
//! is reported and skipped; the others are kept.
//!
//! Knows nothing of files, the kernel, actions or when the file is written.

use crate::cidr::Cidr;
use crate::config::{Proto, RouteMode};
use crate::strength::Strength;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Which actions are in force for one ban (applied and not undone yet).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// An element in the kernel set blocked4/blocked6.
    pub set: bool,
    /// A line in the configured hosts.deny file.
    pub hosts_deny: bool,
    /// A native host route of this kind, with our protocol number.
    pub route: Option<RouteMode>,
    /// The legacy kill_route command ran (nothing to undo).
    pub kill_route: bool,
    /// The external command was started (nothing to undo).
    pub command: bool,
}

impl Applied {
    /// Nothing was applied.
    pub fn is_empty(&self) -> bool {
        *self == Applied::default()
    }

    /// Something that must be undone when the ban ends.
    pub fn needs_undo(&self) -> bool {
        self.route.is_some() || self.hosts_deny
    }

    /// The `actions` field: names joined by commas, `-` for none.
    fn render_into(&self, out: &mut String) {
        let start = out.len();
        let name = |out: &mut String, n: &str| {
            if out.len() > start {
                out.push(',');
            }
            out.push_str(n);
        };
        if self.set {
            name(out, "set");
        }
        if self.hosts_deny {
            name(out, "hosts_deny");
        }
        if let Some(r) = self.route {
            name(out, "route:");
            out.push_str(r.as_str());
        }
        if self.kill_route {
            name(out, "kill_route");
        }
        if self.command {
            name(out, "command");
        }
        if out.len() == start {
            out.push('-');
        }
    }

    fn parse(v: &str) -> Result<Applied, String> {
        let mut a = Applied::default();
        if v == "-" {
            return Ok(a);
        }
        for name in v.split(',') {
            let seen = match name.split_once(':') {
                Some(("route", kind)) => {
                    let kind = RouteMode::from_name(kind)
                        .filter(|m| *m != RouteMode::Off)
                        .ok_or_else(|| format!("`route:{kind}` is not a route kind"))?;
                    a.route.replace(kind).is_some()
                }
                Some(_) => return Err(format!("`{name}` is not an action")),
                None => {
                    let flag = match name {
                        "set" => &mut a.set,
                        "hosts_deny" => &mut a.hosts_deny,
                        "kill_route" => &mut a.kill_route,
                        "command" => &mut a.command,
                        _ => return Err(format!("`{name}` is not an action")),
                    };
                    std::mem::replace(flag, true)
                }
            };
            if seen {
                return Err(format!("action `{name}` given twice"));
            }
        }
        Ok(a)
    }
}

/// One ban, active or ended (an ended one is kept to remember a repeat
/// offender, or until what it applied is undone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// What the ban covers: an address, or a prefix.
    pub addr: Cidr,
    /// The scan that triggered it (`ScanType::key`), "manual" for
    /// `nftsentry block`, "adopted" for a ban found in the kernel table.
    pub scan: String,
    pub proto: Option<Proto>,
    /// $MODE$ of the ban's templates: PortSentry's name of the mode that
    /// saw it ("stcp", "atcp", "tcp", "sudp", ...; "manual"). Empty when a
    /// file of the first release did not say.
    pub mode: String,
    /// The port that tripped; 0 when there is none.
    pub port: u16,
    /// Milliseconds since 1970.
    pub banned_at: u64,
    pub expires_at: u64,
    /// The ban's full length in milliseconds: the base of an escalation.
    pub length: u64,
    /// 1 for a first ban, n for the nth in a row.
    pub repeat: u32,
    /// What the ban rests on: a full ban set gives way to stronger
    /// evidence. Files of 0.1.0 did not say; their bans are read as
    /// `Strength::of_scan` names them.
    pub evidence: Strength,
    pub applied: Applied,
}

impl Entry {
    pub fn is_active(&self, now_ms: u64) -> bool {
        self.expires_at > now_ms
    }
}

/// Every entry, by address.
pub type Entries = BTreeMap<Cidr, Entry>;

/// The comment lines at the top of the file.
pub const HEADER: &str = "# nftsentry state file: active bans and repeat offenders (nftsentry.toml(5), state_file).\n\
# A journal: a later line for an address replaces an earlier one, `end` removes it; edit it only while nftsentry is stopped.\n";

/// One record of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// An entry: replaces any earlier one for its address.
    Ban(Entry),
    /// The entry of this address (or network) is gone.
    End(Cidr),
}

/// FNV-1a, 32 bits: catches a truncated or garbled line.
fn checksum(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

fn encode(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if (0x21..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

fn decode(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad escape at `{}`", &s[i..]))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// A name made of `[A-Za-z0-9_-]`, as scan keys and modes are.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// One entry as its line, with the newline.
pub fn render_entry(e: &Entry) -> String {
    let mut s = String::with_capacity(192);
    render_entry_into(&mut s, e);
    s
}

/// Decimal digits of `v`, without the formatting machinery (a state file
/// of a million bans has six numbers a line).
fn push_num(out: &mut String, v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&buf[i..]).expect("digits"));
}

/// Appends one entry's line, with the newline, to `out`.
pub fn render_entry_into(out: &mut String, e: &Entry) {
    #[cfg(test)]
    RENDERED.with(|n| n.set(n.get() + 1));
    let start = out.len();
    out.push_str("ban ");
    let _ = write!(out, "{}", e.addr);
    out.push_str(" scan=");
    encode(out, e.scan.as_bytes());
    out.push_str(" proto=");
    out.push_str(e.proto.map(Proto::as_str).unwrap_or("-"));
    out.push_str(" mode=");
    out.push_str(if e.mode.is_empty() { "-" } else { &e.mode });
    out.push_str(" port=");
    push_num(out, e.port.into());
    out.push_str(" banned=");
    push_num(out, e.banned_at);
    out.push_str(" expires=");
    push_num(out, e.expires_at);
    out.push_str(" length=");
    push_num(out, e.length);
    out.push_str(" repeat=");
    push_num(out, e.repeat.into());
    out.push_str(" evidence=");
    out.push_str(e.evidence.as_str());
    out.push_str(" actions=");
    e.applied.render_into(out);
    let crc = checksum(&out.as_bytes()[start..]);
    let _ = writeln!(out, " crc={crc:08x}");
}

/// Appends the `end` record of `addr` (its entry is gone), with the
/// newline, to `out`.
pub fn render_end_into(out: &mut String, addr: &Cidr) {
    #[cfg(test)]
    RENDERED.with(|n| n.set(n.get() + 1));
    let start = out.len();
    out.push_str("end ");
    let _ = write!(out, "{addr}");
    let crc = checksum(&out.as_bytes()[start..]);
    let _ = writeln!(out, " crc={crc:08x}");
}

#[cfg(test)]
thread_local! {
    /// Lines rendered on this thread (tests: which thread renders the
    /// state file).
    pub static RENDERED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The whole file.
pub fn render<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> String {
    let mut s = HEADER.to_string();
    for e in entries {
        render_entry_into(&mut s, e);
    }
    s
}

fn need<'a>(v: Option<&'a str>, k: &str) -> Result<&'a str, String> {
    v.ok_or_else(|| format!("no `{k}`"))
}

fn num<T: std::str::FromStr>(v: &str, k: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("`{k}={v}` is not a valid number"))
}

fn flag(v: &str, k: &str) -> Result<bool, String> {
    match v {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(format!("`{k}={v}` is not 0 or 1")),
    }
}

fn text(v: &str, k: &str) -> Result<String, String> {
    if !v.bytes().any(|b| b == b'%') {
        return Ok(v.to_string());
    }
    decode(v).and_then(|b| String::from_utf8(b).map_err(|_| format!("`{k}` is not UTF-8")))
}

/// The keys a line may have, in one table: a line's fields land in slots,
/// with no map built per line.
const KEYS: [&str; 16] = [
    "scan",
    "proto",
    "mode",
    "port",
    "banned",
    "expires",
    "length",
    "repeat",
    "evidence",
    "actions",
    // The first release's actions.
    "set",
    "kill_route",
    "command",
    "route",
    "hosts_deny",
    "hosts_deny_line",
];

/// `k`'s place in `KEYS`.
fn key_index(k: &str) -> Option<usize> {
    Some(match k {
        "scan" => 0,
        "proto" => 1,
        "mode" => 2,
        "port" => 3,
        "banned" => 4,
        "expires" => 5,
        "length" => 6,
        "repeat" => 7,
        "evidence" => 8,
        "actions" => 9,
        "set" => 10,
        "kill_route" => 11,
        "command" => 12,
        "route" => 13,
        "hosts_deny" => 14,
        "hosts_deny_line" => 15,
        _ => return None,
    })
}

/// One line's `key=value` fields.
struct Fields<'a> {
    known: [Option<&'a str>; KEYS.len()],
    /// Keys of no field (rare: a damaged or foreign line).
    unknown: Vec<&'a str>,
}

impl<'a> Fields<'a> {
    fn of(words: impl Iterator<Item = &'a str>) -> Result<Fields<'a>, String> {
        let mut f = Fields {
            known: [None; KEYS.len()],
            unknown: Vec::new(),
        };
        for w in words {
            let eq = w.bytes().position(|b| b == b'=');
            let (k, v) = eq
                .map(|i| (&w[..i], &w[i + 1..]))
                .ok_or_else(|| format!("`{w}` is not key=value"))?;
            let twice = match key_index(k) {
                Some(i) => f.known[i].replace(v).is_some(),
                None if f.unknown.contains(&k) => true,
                None => {
                    f.unknown.push(k);
                    false
                }
            };
            if twice {
                return Err(format!("`{k}` given twice"));
            }
        }
        Ok(f)
    }

    fn take(&mut self, k: &str) -> Option<&'a str> {
        self.known[key_index(k).expect("a known key")].take()
    }

    /// The first (in the order of names) field left unread.
    fn left(&self) -> Option<&'a str> {
        let known = KEYS
            .iter()
            .zip(&self.known)
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| *k);
        self.unknown.iter().copied().chain(known).min()
    }
}

/// The actions of a line of the first release: `set`, `kill_route`,
/// `command` flags, an optional `route`, and `hosts_deny` with
/// `hosts_deny_line`, whose values say only that a line is in force.
fn first_release_actions(fields: &mut Fields) -> Result<Applied, String> {
    let mut take = |k: &str| fields.take(k);
    let set = flag(need(take("set"), "set")?, "set")?;
    let kill_route = flag(need(take("kill_route"), "kill_route")?, "kill_route")?;
    let command = flag(need(take("command"), "command")?, "command")?;
    let route = match take("route") {
        None => None,
        Some(r) => Some(
            RouteMode::from_name(r)
                .filter(|m| *m != RouteMode::Off)
                .ok_or_else(|| format!("`route={r}` is not a route kind"))?,
        ),
    };
    let hosts_deny = match (take("hosts_deny"), take("hosts_deny_line")) {
        (None, None) => false,
        (Some(p), Some(l)) => {
            decode(p)?;
            text(l, "hosts_deny_line")?;
            true
        }
        _ => return Err("`hosts_deny` and `hosts_deny_line` go together".to_string()),
    };
    Ok(Applied {
        set,
        hosts_deny,
        route,
        kill_route,
        command,
    })
}

/// One `ban` line (without its newline) as an entry; an `end` record is
/// refused here (see `parse_record`).
pub fn parse_line(line: &str) -> Result<Entry, String> {
    match parse_record(line)? {
        Record::Ban(e) => Ok(e),
        Record::End(_) => Err("an `end` record, not a ban".to_string()),
    }
}

/// The address or network a record names, no wider than a ban may be.
fn record_addr(word: Option<&str>) -> Result<Cidr, String> {
    let addr_text = word.ok_or("no address")?;
    let addr: Cidr = addr_text
        .parse()
        .map_err(|_| format!("`{addr_text}` is not an address or network"))?;
    if !addr.is_bannable_width() {
        return Err(format!(
            "`{addr_text}` is wider than a ban may be (/{} for IPv4, /{} for IPv6)",
            crate::cidr::WIDEST_BAN4,
            crate::cidr::WIDEST_BAN6
        ));
    }
    Ok(addr)
}

/// One line (without its newline) as a record. Long: one check per field,
/// each with the message that names it.
pub fn parse_record(line: &str) -> Result<Record, String> {
    // As written, the line ends in ` crc=` and eight digits.
    let tail = line
        .len()
        .checked_sub(13)
        .filter(|&i| line.is_char_boundary(i));
    let (body, crc) = match tail {
        // Bytes: `i + 5` may fall inside a character of a damaged line.
        Some(i) if &line.as_bytes()[i..i + 5] == b" crc=" => (&line[..i], &line[i + 5..]),
        _ => line
            .rsplit_once(" crc=")
            .ok_or("no checksum (the line is cut short)")?,
    };
    let crc = u32::from_str_radix(crc, 16).map_err(|_| format!("bad checksum `{crc}`"))?;
    if crc != checksum(body.as_bytes()) {
        return Err("checksum mismatch (the line is damaged)".to_string());
    }
    let mut words = body.split(' ');
    match words.next() {
        Some("ban") => {}
        Some("end") => {
            let addr = record_addr(words.next())?;
            if let Some(w) = words.next() {
                return Err(format!("`{w}` after the address of an `end` record"));
            }
            return Ok(Record::End(addr));
        }
        _ => return Err("does not start with `ban` or `end`".to_string()),
    }
    let addr = record_addr(words.next())?;
    let mut fields = Fields::of(words)?;
    let scan = text(need(fields.take("scan"), "scan")?, "scan")?;
    let proto = match need(fields.take("proto"), "proto")? {
        "tcp" => Some(Proto::Tcp),
        "udp" => Some(Proto::Udp),
        "-" => None,
        other => return Err(format!("`proto={other}` is not tcp, udp or -")),
    };
    let mode = match fields.take("mode") {
        None | Some("-") => String::new(),
        Some(m) if is_name(m) => m.to_string(),
        Some(m) => return Err(format!("`mode={m}` is not a mode name")),
    };
    let port = num(need(fields.take("port"), "port")?, "port")?;
    let banned_at = num(need(fields.take("banned"), "banned")?, "banned")?;
    let expires_at: u64 = num(need(fields.take("expires"), "expires")?, "expires")?;
    let length = num(need(fields.take("length"), "length")?, "length")?;
    let repeat = num(need(fields.take("repeat"), "repeat")?, "repeat")?;
    let evidence = match fields.take("evidence") {
        None => Strength::of_scan(&scan),
        Some(v) => {
            Strength::from_name(v).ok_or_else(|| format!("`evidence={v}` is not a strength"))?
        }
    };
    let applied = match fields.take("actions") {
        Some(v) => Applied::parse(v)?,
        None => first_release_actions(&mut fields)?,
    };
    if let Some(k) = fields.left() {
        return Err(format!("unknown field `{k}`"));
    }
    if expires_at < banned_at {
        return Err("expires before it was banned".to_string());
    }
    if !is_name(&scan) {
        return Err(format!("`scan={scan}` is not a scan name"));
    }
    Ok(Record::Ban(Entry {
        addr,
        scan,
        proto,
        mode,
        port,
        banned_at,
        expires_at,
        length,
        repeat,
        evidence,
        applied,
    }))
}

/// The entries `bytes` leaves in force, and one message per line that is
/// not valid (`source:LINE: why; entry dropped`). Records apply in file
/// order: a later `ban` line for an address replaces an earlier one (the
/// journal's way, not a problem), an `end` removes it.
pub fn parse(bytes: &[u8], source: &str) -> (Entries, Vec<String>) {
    let mut problems: Vec<String> = Vec::new();
    // Each record with its address, in file order; `None`: an `end`.
    let mut parsed: Vec<(Cidr, Option<Entry>)> = Vec::with_capacity(bytes.len() / 160 + 1);
    // The text after the last newline: empty when the file ends properly.
    let cut_short = !bytes.is_empty() && !bytes.ends_with(b"\n");
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut lines = body.split(|&b| b == b'\n').enumerate().peekable();
    while let Some((i, raw)) = lines.next() {
        let n = i + 1;
        let last = lines.peek().is_none();
        if raw.is_empty() || raw.starts_with(b"#") {
            continue;
        }
        let result = std::str::from_utf8(raw)
            .map_err(|_| "not text".to_string())
            .and_then(parse_record)
            .and_then(|r| {
                if cut_short && last {
                    Err("the file ends in the middle of this line".to_string())
                } else {
                    Ok(r)
                }
            });
        match result {
            Ok(Record::Ban(e)) => parsed.push((e.addr, Some(e))),
            Ok(Record::End(a)) => parsed.push((a, None)),
            Err(why) => problems.push(format!("{source}:{n}: {why}; entry dropped")),
        }
    }
    let entries = if parsed.is_sorted_by(|a, b| a.0 <= b.0) {
        net(parsed.into_iter())
    } else {
        // Appended records are in no order: the addresses with their place
        // in the file are sorted (small, where the records are not), and
        // the records taken in that order.
        let mut order: Vec<(Cidr, usize)> =
            parsed.iter().enumerate().map(|(i, r)| (r.0, i)).collect();
        order.sort_unstable();
        net(order
            .into_iter()
            .map(|(addr, i)| (addr, parsed[i].1.take())))
    };
    (entries, problems)
}

/// The entries left by records sorted by address, and for one address in
/// file order: the last record of each address, when it is a ban. Built
/// from sorted keys in one pass.
fn net(records: impl Iterator<Item = (Cidr, Option<Entry>)>) -> Entries {
    let mut records = records.peekable();
    std::iter::from_fn(|| {
        loop {
            let (addr, e) = records.next()?;
            if records.peek().is_some_and(|(next, _)| *next == addr) {
                continue;
            }
            if let Some(e) = e {
                return Some((addr, e));
            }
        }
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzz/run (state): damaged bytes, a word cut inside a
    /// multi-byte character. Parsing reports, never panics, and what it
    /// keeps renders back to itself.
    #[test]
    fn damaged_bytes_found_by_the_fuzzer_parse_without_a_panic() {
        let data: &[u8] = b"# nftsentry state\x00\nile: actIve bans andr epeat offe&nders (nftsentry.toml( nftrytn \n\n\nplaced as a who# nfts[erytn \n\n\nle on every change; edit it only while nftsentry is stopped.\nban 384.0.2.2 s\xc5\x992960aab\nbadf\nn 2001:db8::7";
        let (entries, problems) = parse(data, "state");
        assert!(
            problems.iter().all(|p| p.starts_with("state:")),
            "{problems:?}"
        );
        for e in entries.values() {
            let line = render_entry(e);
            assert_eq!(parse_line(line.trim_end_matches('\n')).as_ref(), Ok(e));
        }
    }

    fn entry(addr: &str) -> Entry {
        Entry {
            addr: addr.parse().unwrap(),
            scan: "syn".into(),
            proto: Some(Proto::Tcp),
            mode: "stcp".into(),
            port: 1,
            banned_at: 1_700_000_000_123,
            expires_at: 1_700_086_400_123,
            length: 86_400_000,
            repeat: 1,
            evidence: Strength::Forgeable,
            applied: Applied {
                set: true,
                ..Applied::default()
            },
        }
    }

    #[test]
    fn round_trip_every_field() {
        let mut full = entry("2001:db8:1::2");
        full.scan = "unknown".into();
        full.proto = Some(Proto::Udp);
        full.mode = "audp".into();
        full.port = 65535;
        full.repeat = 7;
        full.evidence = Strength::Handshake;
        full.applied = Applied {
            set: true,
            route: Some(RouteMode::Prohibit),
            kill_route: true,
            hosts_deny: true,
            command: true,
        };
        let mut manual = entry("198.51.100.7");
        manual.scan = "manual".into();
        manual.proto = None;
        manual.mode = "manual".into();
        manual.evidence = Strength::Manual;
        manual.port = 0;
        manual.applied = Applied::default();
        let mut old = entry("192.0.2.9");
        old.mode = String::new();
        let text = render([&full, &manual, &old]);
        assert!(text.starts_with("# nftsentry state file"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(!line.contains('\t'), "{line}");
            assert!(line.is_ascii(), "{line}");
        }
        let (entries, problems) = parse(text.as_bytes(), "s");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[&full.addr], full);
        assert_eq!(entries[&manual.addr], manual);
        assert_eq!(entries[&old.addr], old);
    }

    #[test]
    fn prefix_bans_round_trip_and_none_wider_than_a_ban_loads() {
        let v6 = entry("2001:db8:1:2::/64");
        let v4 = entry("198.18.0.0/24");
        let host = entry("2001:db8:1:3::9");
        let text = render([&v6, &v4, &host]);
        assert!(text.contains("\nban 2001:db8:1:2::/64 scan="), "{text}");
        assert!(text.contains("\nban 198.18.0.0/24 scan="), "{text}");
        // A single address is written as before prefix bans: no /128.
        assert!(text.contains("\nban 2001:db8:1:3::9 scan="), "{text}");
        let (entries, problems) = parse(text.as_bytes(), "s");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(entries[&v6.addr], v6);
        assert_eq!(entries[&v4.addr], v4);
        assert_eq!(entries[&host.addr], host);
        // Too wide: refused, whatever the checksum says.
        for wide in ["0.0.0.0/0", "198.18.0.0/16", "2001:db8::/32", "::/0"] {
            let text = render([&entry(wide)]);
            let (entries, problems) = parse(text.as_bytes(), "s");
            assert!(entries.is_empty(), "{wide} loaded");
            assert!(
                problems[0].contains("wider than a ban may be"),
                "{problems:?}"
            );
        }
    }

    #[test]
    fn line_format_is_stable() {
        let mut e = entry("192.0.2.2");
        e.applied.route = Some(RouteMode::Blackhole);
        e.applied.hosts_deny = true;
        let line = render_entry(&e);
        let body = "ban 192.0.2.2 scan=syn proto=tcp mode=stcp port=1 banned=1700000000123 expires=1700086400123 length=86400000 repeat=1 evidence=forgeable actions=set,hosts_deny,route:blackhole";
        assert_eq!(
            line,
            format!("{body} crc={:08x}\n", checksum(body.as_bytes()))
        );
    }

    #[test]
    fn lines_of_the_first_release_load_and_say_only_which_actions_ran() {
        // Written by nftsentry 0.1.0 (tests/fixtures/state-0.1.0 has a whole
        // file made by that binary).
        let old = "ban 192.0.2.2 scan=syn proto=tcp port=1 banned=1796115493020 expires=1796201893020 length=86400000 repeat=1 set=1 kill_route=0 command=1 route=blackhole hosts_deny=/var/tmp/nftsentry-state-fixture/hosts.deny hosts_deny_line=ALL:%20192.0.2.2 crc=c8f9ea1b";
        let e = parse_line(old).unwrap();
        assert_eq!(
            e.applied,
            Applied {
                set: true,
                hosts_deny: true,
                route: Some(RouteMode::Blackhole),
                kill_route: false,
                command: true,
            }
        );
        assert_eq!(e.mode, "");
        // Written back in the new form, with nothing of the path or line.
        let again = render_entry(&e);
        assert!(
            !again.contains("hosts.deny") && !again.contains("ALL"),
            "{again}"
        );
        assert!(
            again.contains(" actions=set,hosts_deny,route:blackhole,command "),
            "{again}"
        );
        assert_eq!(parse_line(again.trim_end()).unwrap(), e);
    }

    #[test]
    fn damaged_lines_are_dropped_and_named_the_rest_kept() {
        let a = render_entry(&entry("192.0.2.2"));
        let b = render_entry(&entry("192.0.2.3"));
        let c = render_entry(&entry("192.0.2.4"));
        // b garbled in the middle, c cut short at the end of the file.
        let garbled = b.replacen("port=1", "port=7", 1);
        let text = format!("{HEADER}{a}{garbled}\n# comment\n{}", &c[..c.len() - 20]);
        let (entries, problems) = parse(text.as_bytes(), "/var/lib/nftsentry/state");
        assert_eq!(
            entries.keys().map(|a| a.to_string()).collect::<Vec<_>>(),
            ["192.0.2.2"]
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(
            problems[0],
            "/var/lib/nftsentry/state:4: checksum mismatch (the line is damaged); entry dropped"
        );
        assert!(
            problems[1].starts_with("/var/lib/nftsentry/state:7: "),
            "{problems:?}"
        );
        // A whole line that only lacks its final newline is also suspect.
        let text = format!("{a}{}", b.trim_end());
        let (entries, problems) = parse(text.as_bytes(), "s");
        assert_eq!(entries.len(), 1);
        assert_eq!(
            problems,
            ["s:2: the file ends in the middle of this line; entry dropped"]
        );
    }

    #[test]
    fn semantic_errors() {
        let with = |f: &dyn Fn(&str) -> String| {
            let body = f(
                "ban 192.0.2.2 scan=syn proto=tcp mode=stcp port=1 banned=5 expires=9 length=4 repeat=1 evidence=ports actions=set",
            );
            format!("{body} crc={:08x}", checksum(body.as_bytes()))
        };
        let old = |f: &dyn Fn(&str) -> String| {
            let body = f(
                "ban 192.0.2.2 scan=syn proto=tcp port=1 banned=5 expires=9 length=4 repeat=1 set=1 kill_route=0 command=0",
            );
            format!("{body} crc={:08x}", checksum(body.as_bytes()))
        };
        type Edit<'a> = &'a dyn Fn(&str) -> String;
        let cases: [(Edit, &str); 15] = [
            (&|s| s.replace("192.0.2.2", "192.0.2"), "is not an address"),
            (&|s| s.replace("port=1", "port=70000"), "not a valid number"),
            (&|s| s.replace("expires=9", "expires=4"), "expires before"),
            (&|s| s.replace(" repeat=1", ""), "no `repeat`"),
            (&|s| format!("{s} color=red"), "unknown field `color`"),
            (&|s| format!("{s} port=2"), "`port` given twice"),
            (
                &|s| s.replace("actions=set", "actions=route:off"),
                "not a route kind",
            ),
            (
                &|s| s.replace("actions=set", "actions=set,set"),
                "given twice",
            ),
            (
                &|s| s.replace("actions=set", "actions=reboot"),
                "not an action",
            ),
            (&|s| s.replace("mode=stcp", "mode=s%20t"), "not a mode name"),
            (&|s| s.replace("scan=syn", "scan=%41%4"), "bad escape"),
            (&|s| s.replace("proto=tcp", "proto=icmp"), "not tcp, udp"),
            (
                &|s| s.replace("evidence=ports", "evidence=hearsay"),
                "not a strength",
            ),
            (&|s| s.replace("ban ", "bam "), "does not start with `ban`"),
            (&|s| format!("{s} set=1"), "unknown field `set`"),
        ];
        for (edit, why) in cases {
            let line = with(edit);
            let e = parse_line(&line).expect_err(&line);
            assert!(e.contains(why), "{line}: {e}");
        }
        let old_cases: [(Edit, &str); 3] = [
            (&|s| s.replace("set=1", "set=yes"), "not 0 or 1"),
            (&|s| format!("{s} route=off"), "not a route kind"),
            (&|s| format!("{s} hosts_deny=/x"), "go together"),
        ];
        for (edit, why) in old_cases {
            let line = old(edit);
            let e = parse_line(&line).expect_err(&line);
            assert!(e.contains(why), "{line}: {e}");
        }
        assert!(parse_line(&with(&|s: &str| s.to_string())).is_ok());
        assert!(parse_line(&old(&|s: &str| s.to_string())).is_ok());
        assert!(
            parse_line("ban 192.0.2.2")
                .unwrap_err()
                .contains("no checksum")
        );
    }

    fn end(addr: &str) -> String {
        let mut s = String::new();
        render_end_into(&mut s, &addr.parse().unwrap());
        s
    }

    #[test]
    fn end_record_format_is_stable() {
        assert_eq!(end("192.0.2.2"), "end 192.0.2.2 crc=91f3fd24\n");
        assert_eq!(
            parse_record("end 2001:db8:1:2::/64 crc=".to_string().as_str()).unwrap_err(),
            "bad checksum ``"
        );
        let line = end("2001:db8:1:2::/64");
        assert_eq!(
            parse_record(line.trim_end()),
            Ok(Record::End("2001:db8:1:2::/64".parse().unwrap()))
        );
        // Not a ban: `parse_line` (ban lines only) refuses it.
        assert!(parse_line(line.trim_end()).unwrap_err().contains("`end`"));
        let with = |body: &str| format!("{body} crc={:08x}", checksum(body.as_bytes()));
        for (body, why) in [
            ("end 192.0.2.2 port=1", "after the address"),
            ("end", "no address"),
            ("end 192.0.2", "not an address"),
            ("end 0.0.0.0/0", "wider than a ban may be"),
            ("fin 192.0.2.2", "does not start with `ban` or `end`"),
        ] {
            let e = parse_record(&with(body)).unwrap_err();
            assert!(e.contains(why), "{body}: {e}");
        }
    }

    #[test]
    fn ban_and_end_records_apply_in_file_order_and_no_repeat_is_a_problem() {
        let a = entry("192.0.2.2");
        let b = entry("192.0.2.3");
        let c = entry("2001:db8::1");
        let mut a2 = a.clone();
        a2.port = 9;
        let mut b2 = b.clone();
        b2.repeat = 2;
        let mut text = render([&c, &a, &b]);
        // Appended: a changed, b gone, an address never banned gone, c gone
        // and banned again, b banned again, then a gone.
        text.push_str(&render_entry(&a2));
        text.push_str(&end("192.0.2.3"));
        text.push_str(&end("198.51.100.9"));
        text.push_str(&end("2001:db8::1"));
        text.push_str(&render_entry(&c));
        text.push_str(&render_entry(&b2));
        let (entries, problems) = parse(text.as_bytes(), "s");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[&a.addr], a2);
        assert_eq!(entries[&b.addr], b2);
        assert_eq!(entries[&c.addr], c);
        text.push_str(&end("192.0.2.2"));
        text.push_str(&end("192.0.2.2"));
        let (entries, problems) = parse(text.as_bytes(), "s");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(entries.keys().collect::<Vec<_>>(), [&b.addr, &c.addr]);
        // Many repeats of one address: the last line wins, nothing told.
        let mut text = String::from(HEADER);
        for port in 1..=50 {
            let mut e = a.clone();
            e.port = port;
            text.push_str(&render_entry(&e));
        }
        let (entries, problems) = parse(text.as_bytes(), "s");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(entries[&a.addr].port, 50);
    }

    #[test]
    fn a_torn_last_append_loses_only_that_record_and_is_reported() {
        let a = entry("192.0.2.2");
        let b = entry("192.0.2.3");
        let base = render([&a, &b]);
        let lines = base.lines().count();
        // A crash in the middle of appending a changed `a`: the old `a`
        // stays, the torn line is named.
        let mut a2 = a.clone();
        a2.port = 9;
        let torn = render_entry(&a2);
        for cut in 1..torn.len() - 1 {
            let text = format!("{base}{}", &torn[..cut]);
            let (entries, problems) = parse(text.as_bytes(), "/var/lib/nftsentry/state");
            assert_eq!(entries.len(), 2, "cut at {cut}");
            assert_eq!(entries[&a.addr], a, "cut at {cut}");
            assert_eq!(problems.len(), 1, "cut at {cut}: {problems:?}");
            assert!(
                problems[0].starts_with(&format!("/var/lib/nftsentry/state:{}: ", lines + 1)),
                "{problems:?}"
            );
        }
        // A torn `end`: the ban it would have ended stays.
        let gone = end("192.0.2.3");
        for cut in 1..gone.len() {
            let text = format!("{base}{}", &gone[..cut]);
            let (entries, problems) = parse(text.as_bytes(), "s");
            assert_eq!(entries[&b.addr], b, "cut at {cut}");
            assert_eq!(problems.len(), 1, "cut at {cut}: {problems:?}");
        }
        // Whole, it ends the ban.
        let (entries, problems) = parse(format!("{base}{gone}").as_bytes(), "s");
        assert!(problems.is_empty() && !entries.contains_key(&b.addr));
    }

    #[test]
    fn garbage_never_panics() {
        let mut good = render([&entry("192.0.2.2"), &entry("2001:db8::1")]);
        good.push_str(&end("192.0.2.2"));
        good.push_str(&render_entry(&entry("192.0.2.2")));
        good.push_str(&end("2001:db8::/64"));
        let bytes = good.as_bytes();
        for end in 0..=bytes.len() {
            let _ = parse(&bytes[..end], "p");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.to_vec();
            b[i] ^= 0x5a;
            let (entries, _) = parse(&b, "p");
            assert!(entries.len() <= 3);
        }
        for junk in [
            &b"\xff\xfe\n"[..],
            b"ban",
            b"ban  crc=",
            b"%",
            b"ban x crc=zz\n",
            b"end",
            b"end  crc=",
            b"end \xff crc=00000000\n",
        ] {
            let _ = parse(junk, "j");
        }
    }
}
