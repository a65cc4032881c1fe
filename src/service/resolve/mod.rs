//! Non-blocking reverse DNS (PTR) lookups for `resolve_host` log lines.
//!
//! Owns: one UDP socket per address family, the table of pending queries
//! (bounded), their deadlines and single retry. The DNS wire format is in
//! `wire`, the bounded cache with TTLs in `cache`. The daemon's poll(2)
//! loop drives it: `fds()` to poll, `poll_answers()` when readable,
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

mod cache;
mod wire;

use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use cache::Cache;
use wire::{Answer, be16, build_query, encode_name, parse_answer};

pub use cache::{NEGATIVE_TTL, POSITIVE_TTL};
pub use wire::{parse_ptr_response, ptr_name};

/// Queries in flight at once; beyond, lookups answer `NotFound` at once so a
/// flood from many sources cannot grow memory or the query rate.
pub const MAX_PENDING: usize = 256;
/// Tries per lookup: the first query, then one retry on the next server.
const MAX_ATTEMPTS: u8 = 2;
/// Datagrams read per socket per `poll_answers` call, so a flood of junk on
/// our port cannot keep the loop here (the fd stays readable for next time).
const MAX_READS_PER_CALL: usize = 256;
const DNS_PORT: u16 = 53;

/// What a lookup knows now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The validated PTR name.
    Found(String),
    /// No usable name: cached negative answer, or no room to ask.
    NotFound,
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
mod tests;
