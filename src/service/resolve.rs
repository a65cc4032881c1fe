//! Non-blocking reverse DNS (PTR) lookups for `resolve_host` log lines.
//!
//! Owns: the DNS wire format for one PTR question and its answer, one UDP
//! socket per address family, the table of pending queries (bounded), their
//! deadlines and single retry, and a bounded cache with TTLs. The daemon's
//! poll(2) loop drives it: `fds()` to poll, `poll_answers()` when readable,
//! `tick()` for timeouts and the next poll timeout. Nothing here blocks or
//! starts a thread (PortSentry's blocking gethostbyaddr would stall the loop
//! during a probe flood).
//!
//! Knows nothing of: scans, log line formats, the poll loop itself.
//!
//! Anti-spoofing: a reply counts only if it comes from the server address
//! and port the query went to, carries the query's random id, and repeats the
//! question (compared case-insensitively, so 0x20-randomising servers work).
//! Names from PTR records end up in log lines, so anything but a plain
//! hostname is treated as "no name".

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How long a name found is kept.
pub const POSITIVE_TTL: Duration = Duration::from_secs(3600);
/// How long "no name" (NXDOMAIN, no PTR, bad name, timeout, failure) is kept.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(300);
/// Queries in flight at once; beyond, lookups answer `NotFound` at once so a
/// flood from many sources cannot grow memory or the query rate.
pub const MAX_PENDING: usize = 256;
/// Tries per lookup: the first query, then one retry on the next server.
const MAX_ATTEMPTS: u8 = 2;
/// Datagrams read per socket per `poll_answers` call, so a flood of junk on
/// our port cannot keep the loop here (the fd stays readable for next time).
const MAX_READS_PER_CALL: usize = 256;
/// A name on the wire is at most 255 bytes (RFC 1035 3.1).
const MAX_WIRE_NAME: usize = 255;
/// More pointer hops than a 255-byte name can legitimately need is a loop.
const MAX_POINTER_HOPS: usize = 127;
/// Longest CNAME chain followed to the PTR (RFC 2317 delegation uses one).
const MAX_ALIASES: usize = 8;
const TYPE_PTR: u16 = 12;
const TYPE_CNAME: u16 = 5;
const CLASS_IN: u16 = 1;
const DNS_PORT: u16 = 53;

/// What a lookup knows now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The validated PTR name.
    Found(String),
    /// No usable name: cached negative answer, or no room to ask.
    NotFound,
}

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
fn encode_name(name: &str) -> std::result::Result<Vec<u8>, String> {
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
fn build_query(id: u16, qwire: &[u8]) -> Vec<u8> {
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

fn be16(msg: &[u8], pos: usize) -> std::result::Result<u16, String> {
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
fn hostname_from_wire(wire: &[u8]) -> Option<String> {
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
enum Answer {
    Name(String),
    /// NXDOMAIN, no PTR record, or a PTR name that is not a plain hostname.
    NoName,
    /// SERVFAIL, REFUSED and the like: worth asking the next server.
    ServerFailure(u8),
}

/// Checks that `msg` answers query `id` for `qwire` and takes its first
/// PTR record (following CNAMEs from the question). `Err` means "not an
/// answer to this query" (spoofed, mangled): the caller ignores it.
fn parse_answer(msg: &[u8], id: u16, qwire: &[u8]) -> std::result::Result<Answer, String> {
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

/// splitmix64: enough to make query ids unpredictable to an off-path
/// spoofer once seeded from the kernel; not a cryptographic generator.
struct Rng(u64);

impl Rng {
    fn from_urandom() -> Result<Rng> {
        let mut seed = [0u8; 8];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut seed))
            .map_err(|e| io_error("cannot read /dev/urandom for DNS query ids", &e))?;
        Ok(Rng(u64::from_ne_bytes(seed)))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn io_error(what: &str, e: &std::io::Error) -> Error {
    Error::io(what, e)
}

struct Entry {
    name: Option<String>,
    expires: Instant,
    generation: u64,
}

/// Bounded cache: oldest insertion goes first when full; entries also expire.
struct Cache {
    map: HashMap<IpAddr, Entry>,
    /// Insertion order; an item is stale when the map holds a newer generation.
    order: VecDeque<(IpAddr, u64)>,
    capacity: usize,
    generation: u64,
}

impl Cache {
    fn new(capacity: usize) -> Cache {
        Cache {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity,
            generation: 0,
        }
    }

    fn get(&mut self, ip: IpAddr, now: Instant) -> Option<Option<String>> {
        let entry = self.map.get(&ip)?;
        if now >= entry.expires {
            self.map.remove(&ip);
            return None;
        }
        Some(entry.name.clone())
    }

    fn insert(&mut self, ip: IpAddr, name: Option<String>, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        let ttl = if name.is_some() {
            POSITIVE_TTL
        } else {
            NEGATIVE_TTL
        };
        self.generation += 1;
        let generation = self.generation;
        self.map.insert(
            ip,
            Entry {
                name,
                expires: now + ttl,
                generation,
            },
        );
        self.order.push_back((ip, generation));
        while self.map.len() > self.capacity {
            let Some((old, g)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&old).is_some_and(|e| e.generation == g) {
                self.map.remove(&old);
            }
        }
        // Re-inserted and expired addresses leave stale items; drop them
        // before the queue outgrows the map by much.
        if self.order.len() > 2 * self.capacity + 16 {
            let map = &self.map;
            self.order
                .retain(|(ip, g)| map.get(ip).is_some_and(|e| e.generation == *g));
        }
    }
}

struct Query {
    ip: IpAddr,
    qwire: Vec<u8>,
    /// Index in `servers` the current try went to.
    server: usize,
    attempts: u8,
    deadline: Instant,
}

/// Drives PTR lookups from a poll loop; see the module header.
pub struct Resolver {
    servers: Vec<SocketAddr>,
    sock4: Option<UdpSocket>,
    sock6: Option<UdpSocket>,
    timeout: Duration,
    pending: HashMap<u16, Query>,
    by_ip: HashMap<IpAddr, u16>,
    cache: Cache,
    rng: Rng,
}

fn udp_socket(bind: IpAddr) -> std::io::Result<UdpSocket> {
    // std opens sockets with SOCK_CLOEXEC; port 0 takes a random ephemeral port.
    let s = UdpSocket::bind(SocketAddr::new(bind, 0))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

impl Resolver {
    /// A resolver asking `servers` (port 53) in order, `timeout` per try,
    /// caching at most `cache_capacity` addresses (0: no cache). Opens one
    /// UDP socket per address family among the servers; servers of a family
    /// the host cannot open a socket for (IPv6 disabled) are dropped.
    pub fn new(servers: Vec<IpAddr>, timeout: Duration, cache_capacity: usize) -> Result<Resolver> {
        if servers.is_empty() {
            return Err(Error::config("reverse DNS: no name server to ask"));
        }
        if timeout.is_zero() {
            return Err(Error::config(
                "reverse DNS: the query timeout must be above 0",
            ));
        }
        let open = |want: fn(&IpAddr) -> bool, bind: IpAddr| -> Result<Option<UdpSocket>> {
            if !servers.iter().any(want) {
                return Ok(None);
            }
            match udp_socket(bind) {
                Ok(s) => Ok(Some(s)),
                Err(e) if e.raw_os_error() == Some(nix::libc::EAFNOSUPPORT) => Ok(None),
                Err(e) => Err(io_error("reverse DNS: cannot open a UDP socket", &e)),
            }
        };
        let sock4 = open(IpAddr::is_ipv4, Ipv4Addr::UNSPECIFIED.into())?;
        let sock6 = open(IpAddr::is_ipv6, Ipv6Addr::UNSPECIFIED.into())?;
        let servers: Vec<SocketAddr> = servers
            .into_iter()
            .filter(|s| match s {
                IpAddr::V4(_) => sock4.is_some(),
                IpAddr::V6(_) => sock6.is_some(),
            })
            .map(|ip| SocketAddr::new(ip, DNS_PORT))
            .collect();
        if servers.is_empty() {
            return Err(Error::other(
                "reverse DNS: no socket for the name servers' address family",
            ));
        }
        Ok(Resolver {
            servers,
            sock4,
            sock6,
            timeout,
            pending: HashMap::new(),
            by_ip: HashMap::new(),
            cache: Cache::new(cache_capacity),
            rng: Rng::from_urandom()?,
        })
    }

    /// The `nameserver` lines of a resolv.conf. Like glibc, a file without
    /// any means the local host (127.0.0.1).
    pub fn from_resolv_conf(
        path: &Path,
        timeout: Duration,
        cache_capacity: usize,
    ) -> Result<Resolver> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| io_error(&format!("cannot read {}", path.display()), &e))?;
        let mut servers = crate::host::localnet::parse_resolv_conf(&text);
        if servers.is_empty() {
            servers.push(Ipv4Addr::LOCALHOST.into());
        }
        Resolver::new(servers, timeout, cache_capacity)
    }

    /// The name of `ip` if the cache knows it (`Found`/`NotFound`); else
    /// starts a query unless one is pending and returns `None`: the answer
    /// comes from `poll_answers` or `tick`. With `MAX_PENDING` queries in
    /// flight, or no server reachable, returns `NotFound` without caching it.
    pub fn lookup(&mut self, ip: IpAddr, now: Instant) -> Option<Lookup> {
        if let Some(cached) = self.cache.get(ip, now) {
            return Some(cached.map_or(Lookup::NotFound, Lookup::Found));
        }
        if self.by_ip.contains_key(&ip) {
            return None;
        }
        if self.pending.len() >= MAX_PENDING {
            return Some(Lookup::NotFound);
        }
        let qwire = encode_name(&ptr_name(ip)).unwrap_or_default();
        let query = Query {
            ip,
            qwire,
            server: 0,
            attempts: 0,
            deadline: now,
        };
        if self.send(query, now) {
            None
        } else {
            Some(Lookup::NotFound)
        }
    }

    /// Sends try number `attempts + 1` of `q`, starting at server `q.server`
    /// and moving on while sending fails. Returns false if no server took it.
    fn send(&mut self, mut q: Query, now: Instant) -> bool {
        let id = self.fresh_id();
        let packet = build_query(id, &q.qwire);
        for step in 0..self.servers.len() {
            let server = (q.server + step) % self.servers.len();
            let addr = self.servers[server];
            let sock = match addr {
                SocketAddr::V4(_) => self.sock4.as_ref(),
                SocketAddr::V6(_) => self.sock6.as_ref(),
            };
            // A full send buffer or an unreachable server: try the next one
            // rather than wait.
            if sock.is_some_and(|s| s.send_to(&packet, addr).is_ok()) {
                q.server = server;
                q.attempts += 1;
                q.deadline = now + self.timeout;
                self.by_ip.insert(q.ip, id);
                self.pending.insert(id, q);
                return true;
            }
        }
        false
    }

    /// A random id no pending query uses (at most 256 of 65536 are taken).
    fn fresh_id(&mut self) -> u16 {
        loop {
            let id = (self.rng.next_u64() >> 48) as u16;
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
    }

    /// The sockets to poll for reading.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        [&self.sock4, &self.sock6]
            .into_iter()
            .flatten()
            .map(|s| s.as_fd())
            .collect()
    }

    /// Reads the answers waiting on the sockets (a bounded number per call)
    /// and returns the lookups they complete, with `None` for no usable name.
    /// Replies that do not match a pending query exactly are dropped.
    pub fn poll_answers(&mut self, now: Instant) -> Vec<(IpAddr, Option<String>)> {
        let mut done = Vec::new();
        let mut buf = [0u8; 4096];
        for v6 in [false, true] {
            for _ in 0..MAX_READS_PER_CALL {
                let sock = if v6 { &self.sock6 } else { &self.sock4 };
                let Some(sock) = sock else { break };
                let (len, from) = match sock.recv_from(&mut buf) {
                    Ok(r) => r,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    // ICMP errors and the like: nothing to read from this one.
                    Err(_) => continue,
                };
                if let Some(result) = self.handle_reply(&buf[..len], from, now) {
                    done.push(result);
                }
            }
        }
        done
    }

    fn handle_reply(
        &mut self,
        msg: &[u8],
        from: SocketAddr,
        now: Instant,
    ) -> Option<(IpAddr, Option<String>)> {
        let id = be16(msg, 0).ok()?;
        let q = self.pending.get(&id)?;
        if !same_addr(from, self.servers[q.server]) {
            return None;
        }
        let answer = parse_answer(msg, id, &q.qwire).ok()?;
        let q = self.pending.remove(&id)?;
        self.by_ip.remove(&q.ip);
        match answer {
            Answer::Name(name) => Some(self.finish(q.ip, Some(name), now)),
            Answer::NoName => Some(self.finish(q.ip, None, now)),
            Answer::ServerFailure(_) => self.retry_or_give_up(q, now),
        }
    }

    fn finish(
        &mut self,
        ip: IpAddr,
        name: Option<String>,
        now: Instant,
    ) -> (IpAddr, Option<String>) {
        self.cache.insert(ip, name.clone(), now);
        (ip, name)
    }

    /// `q` is out of the pending tables: ask the next server once more, or
    /// settle for "no name" (cached, so a source whose reverse zone never
    /// answers cannot make us ask again and again).
    fn retry_or_give_up(&mut self, mut q: Query, now: Instant) -> Option<(IpAddr, Option<String>)> {
        if q.attempts < MAX_ATTEMPTS {
            q.server = (q.server + 1) % self.servers.len();
            let ip = q.ip;
            if self.send(q, now) {
                return None;
            }
            return Some(self.finish(ip, None, now));
        }
        Some(self.finish(q.ip, None, now))
    }

    /// Retries or gives up the queries whose deadline has passed; returns
    /// those given up (name `None`) and the time until the next deadline,
    /// `None` when nothing is pending (the poll loop may sleep as it likes).
    pub fn tick(&mut self, now: Instant) -> (Vec<(IpAddr, Option<String>)>, Option<Duration>) {
        let expired: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, q)| q.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        let mut gave_up = Vec::new();
        for id in expired {
            if let Some(q) = self.pending.remove(&id) {
                self.by_ip.remove(&q.ip);
                gave_up.extend(self.retry_or_give_up(q, now));
            }
        }
        let next = self
            .pending
            .values()
            .map(|q| q.deadline.saturating_duration_since(now))
            .min();
        (gave_up, next)
    }

    /// Queries in flight.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// Reply source vs. server: an IPv4 server may answer a dual-stack socket as
/// a mapped address; compare the plain addresses and ports.
fn same_addr(a: SocketAddr, b: SocketAddr) -> bool {
    let plain = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    a.port() == b.port() && plain(a.ip()) == plain(b.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q4: &str = "7.100.51.198.in-addr.arpa";

    fn name_wire(name: &str) -> Vec<u8> {
        let mut w = encode_name(name).unwrap();
        w.push(0);
        w
    }

    /// Header + question for `qname`, with `ancount` answers to follow.
    fn reply_head(id: u16, rcode: u16, qname: &str, ancount: u16) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&(0x8180u16 | rcode).to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m.extend_from_slice(&ancount.to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        m.extend_from_slice(&name_wire(qname));
        m.extend_from_slice(&TYPE_PTR.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        m
    }

    /// One record: `owner` (raw wire bytes), type, then raw rdata.
    fn record(m: &mut Vec<u8>, owner: &[u8], rtype: u16, rdata: &[u8]) {
        m.extend_from_slice(owner);
        m.extend_from_slice(&rtype.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        m.extend_from_slice(&3600u32.to_be_bytes());
        m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        m.extend_from_slice(rdata);
    }

    /// Answer with the owner compressed to the question (offset 12).
    fn ptr_reply(id: u16, qname: &str, target: &[u8]) -> Vec<u8> {
        let mut m = reply_head(id, 0, qname, 1);
        record(&mut m, &[0xc0, 12], TYPE_PTR, target);
        m
    }

    fn valid() -> Vec<u8> {
        ptr_reply(0x1234, Q4, &name_wire("scanner.example.net"))
    }

    #[test]
    fn ptr_names() {
        assert_eq!(
            ptr_name("198.51.100.7".parse().unwrap()),
            "7.100.51.198.in-addr.arpa"
        );
        assert_eq!(ptr_name("0.0.0.0".parse().unwrap()), "0.0.0.0.in-addr.arpa");
        assert_eq!(
            ptr_name("2001:db8::567:89ab".parse().unwrap()),
            "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
        assert_eq!(
            ptr_name("::ffff:192.0.2.1".parse().unwrap()),
            "1.2.0.192.in-addr.arpa"
        );
        let six = ptr_name("ffff::1".parse().unwrap());
        assert_eq!(six.split('.').count(), 34);
        assert!(six.ends_with(".f.f.f.f.ip6.arpa") && six.starts_with("1.0.0."));
    }

    #[test]
    fn query_wire_format() {
        let q = build_query(0xbeef, &encode_name("1.2.0.192.in-addr.arpa").unwrap());
        let mut want = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in ["1", "2", "0", "192", "in-addr", "arpa"] {
            want.push(label.len() as u8);
            want.extend_from_slice(label.as_bytes());
        }
        want.extend_from_slice(&[0, 0, 12, 0, 1]);
        assert_eq!(q, want);
        assert!(encode_name("a..b").is_err());
        assert!(encode_name(&"x".repeat(64)).is_err());
        assert_eq!(encode_name("a.b.").unwrap(), b"\x01a\x01b");
    }

    #[test]
    fn valid_answer() {
        assert_eq!(
            parse_ptr_response(&valid(), 0x1234, Q4),
            Ok(Some("scanner.example.net".into()))
        );
        // Uncompressed owner name, and a trailing dot on the question.
        let mut m = reply_head(7, 0, Q4, 1);
        record(
            &mut m,
            &name_wire(Q4),
            TYPE_PTR,
            &name_wire("a-b_c.example"),
        );
        assert_eq!(
            parse_ptr_response(&m, 7, &format!("{Q4}.")),
            Ok(Some("a-b_c.example".into()))
        );
    }

    #[test]
    fn compressed_target_and_first_ptr_wins() {
        // Two PTRs, the second compressed against the first: first wins.
        let mut m = reply_head(1, 0, Q4, 2);
        let first_at = m.len() + 12; // after owner pointer (2) + type..rdlength (10)
        record(
            &mut m,
            &[0xc0, 12],
            TYPE_PTR,
            b"\x04host\x07example\x03net\x00",
        );
        let mut second = b"\x05other".to_vec();
        second.extend_from_slice(&(0xc000 | (first_at + 5) as u16).to_be_bytes());
        record(&mut m, &[0xc0, 12], TYPE_PTR, &second);
        assert_eq!(
            parse_ptr_response(&m, 1, Q4),
            Ok(Some("host.example.net".into()))
        );
        // Swap the counts' meaning: with the first record an A record, the
        // compressed second PTR is the answer.
        let mut a = m.clone();
        a[first_at - 9] = 1; // type low byte of the first record: A
        assert_eq!(
            parse_ptr_response(&a, 1, Q4),
            Ok(Some("other.example.net".into()))
        );

        // Target compressed into the question name.
        let mut m = reply_head(1, 0, Q4, 2);
        record(&mut m, &[0xc0, 12], 1, &[192, 0, 2, 1]); // an A record: skipped
        let mut rd = vec![4, b'h', b'o', b's', b't'];
        rd.extend_from_slice(&[0xc0, 12 + 2]); // -> "100.51.198.in-addr.arpa"
        record(&mut m, &[0xc0, 12], TYPE_PTR, &rd);
        assert_eq!(
            parse_ptr_response(&m, 1, Q4),
            Ok(Some("host.100.51.198.in-addr.arpa".into()))
        );
    }

    #[test]
    fn cname_chain_to_ptr() {
        // RFC 2317 classless delegation: the answer is a CNAME then the PTR.
        let mut m = reply_head(9, 0, Q4, 2);
        let alias = name_wire("7.0-25.100.51.198.in-addr.arpa");
        let alias_at = m.len() + 12;
        record(&mut m, &[0xc0, 12], TYPE_CNAME, &alias);
        record(
            &mut m,
            &(0xc000 | alias_at as u16).to_be_bytes(),
            TYPE_PTR,
            &name_wire("x.example"),
        );
        assert_eq!(parse_ptr_response(&m, 9, Q4), Ok(Some("x.example".into())));
        // A PTR for a name we did not ask about is not ours.
        let mut m = reply_head(9, 0, Q4, 1);
        record(
            &mut m,
            &name_wire("8.100.51.198.in-addr.arpa"),
            TYPE_PTR,
            &name_wire("x.example"),
        );
        assert_eq!(parse_ptr_response(&m, 9, Q4), Ok(None));
    }

    #[test]
    fn case_insensitive_question() {
        let m = valid();
        assert!(
            parse_ptr_response(&m, 0x1234, "7.100.51.198.IN-ADDR.Arpa")
                .unwrap()
                .is_some()
        );
        let upper = ptr_reply(0x1234, "7.100.51.198.In-AddR.ARPA", &name_wire("a.b"));
        assert_eq!(
            parse_ptr_response(&upper, 0x1234, Q4),
            Ok(Some("a.b".into()))
        );
    }

    #[test]
    fn negative_answers() {
        assert_eq!(
            parse_ptr_response(&reply_head(5, 3, Q4, 0), 5, Q4),
            Ok(None)
        );
        assert_eq!(
            parse_ptr_response(&reply_head(5, 0, Q4, 0), 5, Q4),
            Ok(None)
        );
        let fail = reply_head(5, 2, Q4, 0);
        assert_eq!(parse_ptr_response(&fail, 5, Q4), Ok(None));
        assert_eq!(
            parse_answer(&fail, 5, &encode_name(Q4).unwrap()),
            Ok(Answer::ServerFailure(2))
        );
    }

    #[test]
    fn mismatches_are_errors() {
        let m = valid();
        assert!(parse_ptr_response(&m, 0x1235, Q4).is_err(), "wrong id");
        assert!(parse_ptr_response(&m, 0x1234, "8.100.51.198.in-addr.arpa").is_err());
        assert!(parse_ptr_response(&m, 0x1234, "7.100.51.198.in-addr.arpa.x").is_err());
        let mut q = m.clone();
        q[2] &= 0x7f; // QR clear: a query, not a response
        assert!(parse_ptr_response(&q, 0x1234, Q4).is_err());
        let mut q = m.clone();
        q[2] |= 0x08; // opcode 1
        assert!(parse_ptr_response(&q, 0x1234, Q4).is_err());
        let mut q = m.clone();
        q[5] = 2; // two questions
        assert!(parse_ptr_response(&q, 0x1234, Q4).is_err());
        let mut q = m.clone();
        let qtype_at = 12 + name_wire(Q4).len() + 1;
        q[qtype_at] = 1; // question type A
        assert!(parse_ptr_response(&q, 0x1234, Q4).is_err());
        // NXDOMAIN for another question is not our NXDOMAIN.
        let nx = reply_head(5, 3, "8.100.51.198.in-addr.arpa", 0);
        assert!(parse_ptr_response(&nx, 5, Q4).is_err());
    }

    #[test]
    fn pointer_loops_and_bad_labels() {
        // Owner name points at itself.
        let mut m = reply_head(1, 0, Q4, 1);
        let at = m.len() as u16;
        record(
            &mut m,
            &(0xc000 | at).to_be_bytes(),
            TYPE_PTR,
            &name_wire("a.b"),
        );
        assert!(parse_ptr_response(&m, 1, Q4).unwrap_err().contains("loop"));
        // Two pointers to each other inside the PTR data.
        let mut m = reply_head(1, 0, Q4, 1);
        let rd_at = (m.len() + 12) as u16;
        let mut rd = (0xc000 | (rd_at + 2)).to_be_bytes().to_vec();
        rd.extend_from_slice(&(0xc000 | rd_at).to_be_bytes());
        record(&mut m, &[0xc0, 12], TYPE_PTR, &rd);
        assert!(parse_ptr_response(&m, 1, Q4).unwrap_err().contains("loop"));
        // A label, then a pointer back before it: grows until too long.
        let mut m = reply_head(1, 0, Q4, 1);
        let rd_at = (m.len() + 12) as u16;
        let mut rd = vec![3, b'a', b'b', b'c'];
        rd.extend_from_slice(&(0xc000 | rd_at).to_be_bytes());
        record(&mut m, &[0xc0, 12], TYPE_PTR, &rd);
        assert!(parse_ptr_response(&m, 1, Q4).is_err());
        // Pointer out of the message; reserved label types 0x40/0x80.
        let m = ptr_reply(1, Q4, &[0xc0, 0xff]);
        assert!(parse_ptr_response(&m, 1, Q4).is_err());
        let m = ptr_reply(1, Q4, &[0x41, b'a', 0]);
        assert!(parse_ptr_response(&m, 1, Q4).is_err());
        // PTR name longer than its rdata says.
        let mut m = reply_head(1, 0, Q4, 1);
        record(&mut m, &[0xc0, 12], TYPE_PTR, b"\x03abc");
        m.extend_from_slice(b"\x00");
        assert!(parse_ptr_response(&m, 1, Q4).is_err());
        // rdlength past the end.
        let mut m = valid();
        let len_at = m.len() - name_wire("scanner.example.net").len() - 2;
        m[len_at] = 0xff;
        assert!(parse_ptr_response(&m, 0x1234, Q4).is_err());
    }

    #[test]
    fn hostile_names_are_not_found() {
        let raw = |labels: &[&[u8]]| {
            let mut w = Vec::new();
            for l in labels {
                w.push(l.len() as u8);
                w.extend_from_slice(l);
            }
            w.push(0);
            w
        };
        let cases: &[&[&[u8]]] = &[
            &[b"evil host", b"example"],
            &[b"evil\nAug 1 fake log line", b"example"],
            &[b"x\x1b[31mred", b"example"],
            &[b"tab\there"],
            &[b"a.b", b"dot-inside-a-label"],
            &[b"semi;colon"],
            &[b"slash/ip"],
            &[b"\xc3\xa9t\xc3\xa9"],
            &[b"nul\x00"],
            &[b"quote\""],
        ];
        for labels in cases {
            let m = ptr_reply(3, Q4, &raw(labels));
            assert_eq!(parse_ptr_response(&m, 3, Q4), Ok(None), "{labels:?}");
        }
        // The root name is no name.
        assert_eq!(parse_ptr_response(&ptr_reply(3, Q4, &[0]), 3, Q4), Ok(None));
        // 253 characters pass (the most a 255-byte wire name holds); one
        // more does not fit on the wire and the answer is refused.
        let label = [b'a'; 63];
        let ok = raw(&[&label, &label, &label, &label[..61]]);
        assert_eq!(
            parse_ptr_response(&ptr_reply(3, Q4, &ok), 3, Q4)
                .unwrap()
                .map(|n| n.len()),
            Some(253)
        );
        let long = raw(&[&label, &label, &label, &label[..62]]);
        assert!(parse_ptr_response(&ptr_reply(3, Q4, &long), 3, Q4).is_err());
        assert_eq!(hostname_from_wire(&long[..long.len() - 1]), None);
    }

    #[test]
    fn every_prefix_is_handled() {
        let m = valid();
        for cut in 0..m.len() {
            assert!(
                parse_ptr_response(&m[..cut], 0x1234, Q4).is_err(),
                "cut at {cut}"
            );
        }
        assert!(parse_ptr_response(&m, 0x1234, Q4).unwrap().is_some());
    }

    #[test]
    fn random_buffers_never_panic() {
        let mut rng = Rng(0x5eed);
        let base = valid();
        let mut found = 0;
        for i in 0..100_000u32 {
            let buf: Vec<u8> = if i % 2 == 0 {
                // Pure noise, with a matching id now and then.
                let len = (rng.next_u64() % 300) as usize;
                let mut b: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                if b.len() >= 2 && i % 4 == 0 {
                    b[..2].copy_from_slice(&0x1234u16.to_be_bytes());
                }
                b
            } else {
                // A valid answer with a few bytes flipped: reaches deep code.
                let mut b = base.clone();
                for _ in 0..1 + rng.next_u64() % 4 {
                    let at = (rng.next_u64() as usize) % b.len();
                    b[at] = rng.next_u64() as u8;
                }
                b
            };
            if let Ok(Some(name)) = parse_ptr_response(&buf, 0x1234, Q4) {
                assert!(name.len() <= 253);
                assert!(
                    name.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b"-._".contains(&c))
                );
                found += 1;
            }
        }
        // The mutations must leave some answers intact, or the test tests nothing deep.
        assert!(found > 1000, "only {found} mutated answers parsed");
    }

    #[test]
    fn cache_bounds_and_ttls() {
        let t0 = Instant::now();
        let ip = |n: u8| IpAddr::V4(Ipv4Addr::new(198, 51, 100, n));
        let mut c = Cache::new(3);
        c.insert(ip(1), Some("one".into()), t0);
        c.insert(ip(2), None, t0);
        assert_eq!(c.get(ip(1), t0), Some(Some("one".into())));
        assert_eq!(c.get(ip(2), t0), Some(None));
        assert_eq!(c.get(ip(2), t0 + NEGATIVE_TTL), None, "negative TTL");
        assert_eq!(c.get(ip(1), t0 + NEGATIVE_TTL), Some(Some("one".into())));
        assert_eq!(c.get(ip(1), t0 + POSITIVE_TTL), None, "positive TTL");
        for n in 0..100 {
            c.insert(ip(n), Some(format!("h{n}")), t0);
            assert!(c.map.len() <= 3 && c.order.len() <= 2 * 3 + 16);
        }
        assert_eq!(c.get(ip(99), t0), Some(Some("h99".into())));
        assert_eq!(c.get(ip(96), t0), None, "oldest evicted");
        // Re-inserting one address again and again keeps it and stays bounded.
        for _ in 0..100 {
            c.insert(ip(7), None, t0);
        }
        assert!(c.order.len() <= 2 * 3 + 16);
        assert_eq!(c.get(ip(7), t0), Some(None));
        let mut none = Cache::new(0);
        none.insert(ip(1), None, t0);
        assert_eq!(none.get(ip(1), t0), None);
    }

    #[test]
    fn same_addr_maps_v4() {
        let s: SocketAddr = "127.0.0.1:53".parse().unwrap();
        assert!(same_addr("[::ffff:127.0.0.1]:53".parse().unwrap(), s));
        assert!(!same_addr("127.0.0.1:5353".parse().unwrap(), s));
        assert!(!same_addr("127.0.0.2:53".parse().unwrap(), s));
    }
}
