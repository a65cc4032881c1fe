//! The PTR resolver against a fake DNS server on the loopback of a fresh
//! network namespace, driven by poll(2) the way the daemon's loop drives it.
//! No query leaves the namespace. Needs root (fails, never skips, without).

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Netns, TempDir};
use nftsentry::service::resolve::{Lookup, MAX_PENDING, Resolver, ptr_name};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

const SCANNER: &str = "198.51.100.7";
const SCANNER6: &str = "2001:db8::7";
/// Spoofed answers come first, then the honest one.
const SPOOFED: &str = "198.51.100.8";
/// PTR name with a newline and spaces: must not reach a log line.
const HOSTILE: &str = "198.51.100.9";
/// SERVFAIL from the IPv4 server, a name from the IPv6 one.
const FAILOVER: &str = "198.51.100.10";
/// Never answered.
const SILENT: &str = "198.51.100.99";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn wire(name: &str) -> Vec<u8> {
    let mut w = Vec::new();
    for label in name.split('.') {
        w.push(label.len() as u8);
        w.extend_from_slice(label.as_bytes());
    }
    w.push(0);
    w
}

/// A reply to `query` (header and question copied from it) with `rcode`
/// and, if given, one PTR record whose data is `target` (raw wire name).
fn reply(query: &[u8], qend: usize, id: u16, rcode: u16, target: Option<&[u8]>) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&(0x8180 | rcode).to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, u8::from(target.is_some()), 0, 0, 0, 0]);
    m.extend_from_slice(&query[12..qend]);
    if let Some(t) = target {
        m.extend_from_slice(&[0xc0, 12, 0, 12, 0, 1, 0, 0, 0x0e, 0x10]);
        m.extend_from_slice(&(t.len() as u16).to_be_bytes());
        m.extend_from_slice(t);
    }
    m
}

/// The question name of a query (lowercased, dotted) and where the
/// question ends.
fn question(q: &[u8]) -> Option<(String, usize)> {
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*q.get(pos)?);
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(pos + 1..pos + 1 + len)?).to_lowercase());
        pos += 1 + len;
    }
    Some((labels.join("."), pos + 5))
}

/// A fake recursive server on `addr`:53 in the current namespace.
struct FakeDns {
    stop: Arc<AtomicBool>,
    queries: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl FakeDns {
    fn start(addr: &str) -> FakeDns {
        let addr: IpAddr = addr.parse().unwrap();
        let sock = UdpSocket::bind(SocketAddr::new(addr, 53)).expect("bind fake DNS on port 53");
        // Same host, another port: a spoofer that knows the id but not our port.
        let other = UdpSocket::bind(SocketAddr::new(addr, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let (st, qs) = (stop.clone(), queries.clone());
        let v6 = addr.is_ipv6();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !st.load(Ordering::SeqCst) {
                let Ok((len, peer)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                qs.fetch_add(1, Ordering::SeqCst);
                let q = &buf[..len];
                let Some((name, qend)) = question(q) else {
                    continue;
                };
                let id = u16::from_be_bytes([q[0], q[1]]);
                let answer = |rcode, target: Option<&[u8]>| reply(q, qend, id, rcode, target);
                let send = |m: Vec<u8>| sock.send_to(&m, peer).unwrap();
                if name == ptr_name(ip(SCANNER)) {
                    send(answer(0, Some(&wire("scanner.example.net"))));
                } else if name == ptr_name(ip(SCANNER6)) {
                    send(answer(0, Some(&wire("scanner6.example.net"))));
                } else if name == ptr_name(ip(SPOOFED)) {
                    let evil = wire("evil.example.net");
                    send(reply(q, qend, id ^ 0x5555, 0, Some(&evil)));
                    other.send_to(&answer(0, Some(&evil)), peer).unwrap();
                    // Right id, wrong question.
                    let mut wrong = answer(0, Some(&evil));
                    wrong[13] = b'9';
                    send(wrong);
                    std::thread::sleep(Duration::from_millis(50));
                    send(answer(0, Some(&wire("honest.example.net"))));
                } else if name == ptr_name(ip(HOSTILE)) {
                    let label = b"evil name\nAug 1 forged";
                    let mut t = vec![label.len() as u8];
                    t.extend_from_slice(label);
                    t.extend_from_slice(&wire("example"));
                    send(answer(0, Some(&t)));
                } else if name == ptr_name(ip(FAILOVER)) {
                    if v6 {
                        send(answer(0, Some(&wire("failover.example.net"))));
                    } else {
                        send(answer(2, None));
                    }
                } else if name == ptr_name(ip(SILENT)) {
                } else {
                    send(answer(3, None));
                }
            }
        });
        FakeDns {
            stop,
            queries,
            thread: Some(thread),
        }
    }

    fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs the poll loop until `ip` completes; returns its name and how long
/// it took. Panics after `limit`.
fn drive(r: &mut Resolver, ip: IpAddr, limit: Duration) -> (Option<String>, Duration) {
    let start = Instant::now();
    match r.lookup(ip, start) {
        Some(Lookup::Found(n)) => return (Some(n), start.elapsed()),
        Some(Lookup::NotFound) => return (None, start.elapsed()),
        None => {}
    }
    loop {
        let elapsed = start.elapsed();
        assert!(elapsed < limit, "no result for {ip} after {elapsed:?}");
        let (gave_up, next) = r.tick(Instant::now());
        if let Some((_, n)) = gave_up.into_iter().find(|(a, _)| *a == ip) {
            return (n, start.elapsed());
        }
        let wait = next.unwrap_or(limit).min(limit - elapsed);
        let fds = r.fds();
        let mut pfds: Vec<PollFd> = fds
            .iter()
            .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
            .collect();
        let ms = PollTimeout::try_from(wait.as_millis() as u64 + 1).unwrap();
        poll(&mut pfds, ms).unwrap();
        drop(pfds);
        drop(fds);
        let answers = r.poll_answers(Instant::now());
        if let Some((_, n)) = answers.into_iter().find(|(a, _)| *a == ip) {
            return (n, start.elapsed());
        }
    }
}

const LIMIT: Duration = Duration::from_secs(5);

#[test]
fn found_not_found_cached_and_hostile() {
    let ns = Netns::new("res-basic");
    ns.enter(|| {
        let dns = FakeDns::start("127.0.0.1");
        let dir = TempDir::new("res-conf");
        let conf = dir.file(
            "resolv.conf",
            "# test\nsearch example\nnameserver 127.0.0.1 # ours\noptions ndots:1\n",
        );
        let mut r = Resolver::from_resolv_conf(&conf, Duration::from_secs(2), 64).unwrap();

        // Sockets fit a poll loop: one (IPv4 only), non-blocking, close-on-exec.
        let fds = r.fds();
        assert_eq!(fds.len(), 1);
        let raw = fds[0].as_raw_fd();
        let fl = nix::fcntl::fcntl(fds[0], nix::fcntl::FcntlArg::F_GETFL).unwrap();
        assert!(fl & nix::libc::O_NONBLOCK != 0, "fd {raw} blocks");
        let fd = nix::fcntl::fcntl(fds[0], nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert!(fd & nix::libc::FD_CLOEXEC != 0, "fd {raw} lacks CLOEXEC");
        drop(fds);

        let (name, took) = drive(&mut r, ip(SCANNER), LIMIT);
        assert_eq!(name.as_deref(), Some("scanner.example.net"));
        assert!(took < Duration::from_secs(1), "{took:?}");
        assert_eq!(dns.queries(), 1);
        assert_eq!(r.pending(), 0);

        // Cached: answered at once, no second query.
        let now = Instant::now();
        assert_eq!(
            r.lookup(ip(SCANNER), now),
            Some(Lookup::Found("scanner.example.net".into()))
        );
        assert_eq!(dns.queries(), 1);

        // NXDOMAIN: None, then cached negative.
        let other = ip("198.51.100.50");
        assert_eq!(drive(&mut r, other, LIMIT).0, None);
        assert_eq!(dns.queries(), 2);
        assert_eq!(r.lookup(other, Instant::now()), Some(Lookup::NotFound));
        assert_eq!(dns.queries(), 2);

        // Negative entries expire after 5 minutes, positive ones after an hour.
        let later = Instant::now() + Duration::from_secs(301);
        assert_eq!(
            r.lookup(other, later),
            None,
            "negative entry outlived its TTL"
        );
        assert_eq!(
            r.lookup(ip(SCANNER), later),
            Some(Lookup::Found("scanner.example.net".into()))
        );
        assert_eq!(r.lookup(ip(SCANNER), now + Duration::from_secs(3601)), None);
        assert_eq!(r.pending(), 2);
        // A pending address is not asked twice.
        assert_eq!(r.lookup(other, later), None);
        assert_eq!(r.pending(), 2);

        // A PTR name with a newline and spaces is no name.
        let (name, _) = drive(&mut r, ip(HOSTILE), LIMIT);
        assert_eq!(name, None);
    });
}

#[test]
fn silent_server_times_out_after_one_retry() {
    let ns = Netns::new("res-silent");
    ns.enter(|| {
        let dns = FakeDns::start("127.0.0.1");
        let timeout = Duration::from_millis(200);
        let mut r = Resolver::new(vec![ip("127.0.0.1")], timeout, 64).unwrap();
        let (name, took) = drive(&mut r, ip(SILENT), LIMIT);
        assert_eq!(name, None);
        assert!(took >= 2 * timeout, "gave up after {took:?}");
        assert!(took < 2 * timeout + Duration::from_millis(500), "{took:?}");
        assert_eq!(dns.queries(), 2, "one query and one retry");
        assert_eq!(r.pending(), 0);
        assert_eq!(r.tick(Instant::now()).1, None, "no deadline left");
        // Given up is cached, so the same source does not cost a query again.
        assert_eq!(r.lookup(ip(SILENT), Instant::now()), Some(Lookup::NotFound));
        assert_eq!(dns.queries(), 2);
    });
}

#[test]
fn spoofed_answers_are_ignored() {
    let ns = Netns::new("res-spoof");
    ns.enter(|| {
        let _dns = FakeDns::start("127.0.0.1");
        let mut r = Resolver::new(vec![ip("127.0.0.1")], Duration::from_secs(2), 64).unwrap();
        // Wrong id, right id from the wrong port, right id with the wrong
        // question: all dropped; the honest answer that follows wins.
        let (name, took) = drive(&mut r, ip(SPOOFED), LIMIT);
        assert_eq!(name.as_deref(), Some("honest.example.net"));
        assert!(took < Duration::from_secs(1), "{took:?}");
    });
}

#[test]
fn ipv6_server_failover_and_server_failure() {
    let ns = Netns::new("res-six");
    ns.enter(|| {
        let _dns4 = FakeDns::start("127.0.0.1");
        let dns6 = FakeDns::start("::1");
        let timeout = Duration::from_millis(300);

        // SERVFAIL from the first server: the second is asked at once.
        let mut r = Resolver::new(vec![ip("127.0.0.1"), ip("::1")], timeout, 64).unwrap();
        assert_eq!(r.fds().len(), 2);
        let (name, took) = drive(&mut r, ip(FAILOVER), LIMIT);
        assert_eq!(name.as_deref(), Some("failover.example.net"));
        assert!(took < timeout, "waited for a timeout: {took:?}");
        assert_eq!(dns6.queries(), 1);

        // Nothing listens on 127.0.0.2: after its timeout, ::1 answers, for
        // an IPv6 address's ip6.arpa name.
        let mut r = Resolver::new(vec![ip("127.0.0.2"), ip("::1")], timeout, 64).unwrap();
        let (name, took) = drive(&mut r, ip(SCANNER6), LIMIT);
        assert_eq!(name.as_deref(), Some("scanner6.example.net"));
        assert!(took >= timeout && took < 2 * timeout, "{took:?}");
        assert_eq!(dns6.queries(), 2);
    });
}

#[test]
fn pending_queries_are_bounded() {
    let ns = Netns::new("res-bound");
    ns.enter(|| {
        // Nothing listens on 127.0.0.2:53: every query times out.
        let timeout = Duration::from_millis(300);
        let mut r = Resolver::new(vec![ip("127.0.0.2")], timeout, 1024).unwrap();
        let start = Instant::now();
        let addrs: Vec<IpAddr> = (0..MAX_PENDING as u32)
            .map(|n| IpAddr::V4((0xc633_6400 + n).into())) // 198.51.100.0/24
            .collect();
        assert_eq!(addrs.len(), 256);
        for a in &addrs {
            assert_eq!(r.lookup(*a, start), None);
        }
        assert_eq!(r.pending(), MAX_PENDING);
        // Full: the answer is "no name" now, and nothing more is pending.
        let extra = ip("192.0.2.77");
        assert_eq!(r.lookup(extra, start), Some(Lookup::NotFound));
        assert_eq!(r.pending(), MAX_PENDING);

        let mut gave_up = Vec::new();
        while r.pending() > 0 {
            assert!(start.elapsed() < LIMIT);
            let (done, next) = r.tick(Instant::now());
            gave_up.extend(done);
            std::thread::sleep(next.unwrap_or_default());
            gave_up.extend(r.poll_answers(Instant::now()));
        }
        assert!(start.elapsed() >= 2 * timeout);
        assert_eq!(gave_up.len(), MAX_PENDING);
        assert!(gave_up.iter().all(|(_, n)| n.is_none()));
        // Those given up are cached; the refused one was not, so it starts now.
        assert_eq!(r.lookup(addrs[0], Instant::now()), Some(Lookup::NotFound));
        assert_eq!(r.lookup(extra, Instant::now()), None);
        assert_eq!(r.pending(), 1);
    });
}

#[test]
fn resolv_conf_without_servers_means_localhost() {
    let ns = Netns::new("res-empty");
    ns.enter(|| {
        let dns = FakeDns::start("127.0.0.1");
        let dir = TempDir::new("res-empty");
        let conf = dir.file("resolv.conf", "search example\n");
        let mut r = Resolver::from_resolv_conf(&conf, Duration::from_secs(2), 8).unwrap();
        assert_eq!(
            drive(&mut r, ip(SCANNER), LIMIT).0.as_deref(),
            Some("scanner.example.net")
        );
        assert_eq!(dns.queries(), 1);
        assert!(Resolver::new(vec![], Duration::from_secs(1), 8).is_err());
        assert!(
            Resolver::from_resolv_conf(&dir.path.join("missing"), Duration::from_secs(1), 8)
                .is_err()
        );
    });
}
