//! listeners: sock_diag scans and one-port checks against real sockets in a
//! namespace of the test's own (root; fails without it).

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use common::{Netns, wait_until};
use nftsentry::listeners::{self, Listeners};
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, bind, listen, setsockopt, socket,
    sockopt,
};

/// A TCP socket on [::]:port, listening if `listening`, v6only as asked.
fn tcp6_any(port: u16, v6only: bool, listening: bool) -> OwnedFd {
    let fd = socket(
        AddressFamily::Inet6,
        SockType::Stream,
        // Other tests in this process fork: without CLOEXEC their children
        // would inherit the socket and keep the port in use after we close it.
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    setsockopt(&fd, sockopt::Ipv6V6Only, &v6only).unwrap();
    let addr: SockaddrIn6 = format!("[::]:{port}")
        .parse::<std::net::SocketAddrV6>()
        .unwrap()
        .into();
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr).unwrap();
    if listening {
        listen(&fd, nix::sys::socket::Backlog::new(8).unwrap()).unwrap();
    }
    fd
}

fn tcp4_bound_only(addr: &str) -> OwnedFd {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        // Other tests in this process fork: without CLOEXEC their children
        // would inherit the socket and keep the port in use after we close it.
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    let a: SockaddrIn = addr.parse::<std::net::SocketAddrV4>().unwrap().into();
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &a).unwrap();
    fd
}

fn has_tcp_both_ways(port: u16) -> bool {
    let scanned = listeners::scan().unwrap().has_tcp(port);
    let checked = listeners::tcp_listening(port).unwrap();
    assert_eq!(
        scanned, checked,
        "scan() and tcp_listening({port}) disagree"
    );
    checked
}

/// A closed socket leaves the kernel's tables shortly after close(2) (the
/// unhash can trail it under load): wait until neither view shows the port.
fn gone(check: impl Fn() -> bool) -> bool {
    wait_until(std::time::Duration::from_secs(2), || !check())
}

fn has_udp_both_ways(port: u16) -> bool {
    let scanned = listeners::scan().unwrap().has_udp(port);
    let checked = listeners::udp_bound(port).unwrap();
    assert_eq!(scanned, checked, "scan() and udp_bound({port}) disagree");
    checked
}

#[test]
fn fresh_namespace_has_no_listeners() {
    let ns = Netns::new("lsn-empty");
    let (l, t, u) = ns.enter(|| {
        (
            listeners::scan().unwrap(),
            listeners::tcp_listening(22).unwrap(),
            listeners::udp_bound(53).unwrap(),
        )
    });
    assert_eq!(l, Listeners::default());
    assert!(!t && !u);
}

#[test]
fn tcp_listeners_on_every_kind_of_bind_are_found() {
    let ns = Netns::new("lsn-tcp");
    ns.enter(|| {
        let a = TcpListener::bind("0.0.0.0:2222").unwrap();
        let b = TcpListener::bind("127.0.0.1:2223").unwrap();
        let c = tcp6_any(2224, true, true);
        let d = TcpListener::bind("[::1]:2225").unwrap();
        let l = listeners::scan().unwrap();
        assert_eq!(l.tcp(), [2222, 2223, 2224, 2225]);
        assert_eq!(l.udp(), [] as [u16; 0]);
        for port in [2222, 2223, 2224, 2225] {
            assert!(listeners::tcp_listening(port).unwrap(), "port {port}");
            assert!(!listeners::udp_bound(port).unwrap(), "port {port}");
        }
        assert!(!has_tcp_both_ways(2226));

        // Closed: gone at once, from both.
        drop(c);
        assert!(gone(
            || listeners::scan().unwrap().has_tcp(2224) || listeners::tcp_listening(2224).unwrap()
        ));
        // The same port dual-stack ([::] also taking IPv4).
        let c = tcp6_any(2224, false, true);
        assert!(has_tcp_both_ways(2224));
        assert!(TcpListener::bind("0.0.0.0:2224").is_err(), "not dual-stack");
        drop((a, b, c, d));
        assert!(gone(|| listeners::scan().unwrap() != Listeners::default()));
        for port in [2222, 2223, 2224, 2225] {
            assert!(!listeners::tcp_listening(port).unwrap(), "port {port}");
        }
    });
}

#[test]
fn connected_and_bound_only_tcp_sockets_are_not_listeners() {
    let ns = Netns::new("lsn-conn");
    ns.enter(|| {
        let server = TcpListener::bind("127.0.0.1:2222").unwrap();
        let client = TcpStream::connect("127.0.0.1:2222").unwrap();
        let (accepted, _) = server.accept().unwrap();
        let client_port = client.local_addr().unwrap().port();
        let bound4 = tcp4_bound_only("127.0.0.1:2227");
        let bound6 = tcp6_any(2228, true, false);
        assert!(has_tcp_both_ways(2222));
        assert!(!has_tcp_both_ways(client_port));
        assert!(!has_tcp_both_ways(2227));
        assert!(!has_tcp_both_ways(2228));
        // The accepted socket shares port 2222; without the listener it must
        // not count.
        drop(server);
        assert!(gone(
            || listeners::scan().unwrap().has_tcp(2222) || listeners::tcp_listening(2222).unwrap()
        ));
        assert_eq!(listeners::scan().unwrap().tcp(), [] as [u16; 0]);
        drop((client, accepted, bound4, bound6));
    });
}

#[test]
fn udp_bound_sockets_are_found_and_connected_ones_are_not() {
    let ns = Netns::new("lsn-udp");
    ns.enter(|| {
        let a = UdpSocket::bind("0.0.0.0:5000").unwrap();
        let b = UdpSocket::bind("[::]:5001").unwrap();
        let c = UdpSocket::bind("127.0.0.1:5002").unwrap();
        c.connect("127.0.0.1:5000").unwrap();
        let d = UdpSocket::bind("[::1]:5003").unwrap();
        d.connect("[::1]:5001").unwrap();
        let l = listeners::scan().unwrap();
        assert_eq!(l.udp(), [5000, 5001]);
        assert_eq!(l.tcp(), [] as [u16; 0]);
        assert!(has_udp_both_ways(5000));
        assert!(has_udp_both_ways(5001));
        assert!(!has_udp_both_ways(5002));
        assert!(!has_udp_both_ways(5003));
        assert!(!listeners::tcp_listening(5000).unwrap());
        drop(a);
        assert!(gone(
            || listeners::scan().unwrap().has_udp(5000) || listeners::udp_bound(5000).unwrap()
        ));
        assert!(has_udp_both_ways(5001));
        drop((b, c, d));
        assert!(gone(|| listeners::scan().unwrap() != Listeners::default()));
    });
}

/// Sockets of other processes count too: the dump is per namespace.
#[test]
fn listeners_of_other_processes_appear_and_disappear() {
    let mut ns = Netns::new("lsn-nc");
    let tcp = ns.spawn(ns.cmd("nc").args(["-l", "127.0.0.1", "2230"]));
    let udp = ns.spawn(ns.cmd("nc").args(["-u", "-l", "-6", "::", "5030"]));
    let probe = || ns.enter(|| listeners::scan().unwrap());
    assert!(
        wait_until(Duration::from_secs(5), || {
            let l = probe();
            l.has_tcp(2230) && l.has_udp(5030)
        }),
        "nc listeners not seen: {:?}",
        probe()
    );
    assert!(ns.enter(|| listeners::tcp_listening(2230).unwrap()));
    assert!(ns.enter(|| listeners::udp_bound(5030).unwrap()));
    for pid in [tcp, udp] {
        let mut child = ns.take_child(pid);
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert_eq!(
        ns.enter(|| listeners::scan().unwrap()),
        Listeners::default()
    );
    assert!(!ns.enter(|| listeners::tcp_listening(2230).unwrap()));
}

/// Opens about `n` sockets: 40% established TCP (both ends), 20% TCP
/// listeners, 20% unconnected UDP, 20% connected UDP.
fn open_sockets(n: usize) -> (Vec<TcpListener>, Vec<TcpStream>, Vec<UdpSocket>) {
    let mut lst = Vec::new();
    let mut streams = Vec::new();
    let mut udp = Vec::new();
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = server.local_addr().unwrap();
    for _ in 0..n / 5 {
        streams.push(TcpStream::connect(target).unwrap());
        streams.push(server.accept().unwrap().0);
    }
    lst.push(server);
    for _ in 1..n / 5 {
        lst.push(TcpListener::bind("127.0.0.1:0").unwrap());
    }
    let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for i in 0..2 * (n / 5) {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        if i % 2 == 1 {
            s.connect(peer).unwrap();
        }
        udp.push(s);
    }
    (lst, streams, udp)
}

fn median(mut f: impl FnMut(), rounds: usize) -> Duration {
    let mut v: Vec<Duration> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    v.sort();
    v[rounds / 2]
}

/// Figures for the report, not assertions on speed:
/// `cargo test --release --test listeners cost_with_many_sockets -- --ignored --nocapture`
#[test]
#[ignore = "measurement"]
fn cost_with_many_sockets() {
    // Room for 10,000 sockets whatever the shell's soft limit.
    let mut lim = nix::libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        assert_eq!(nix::libc::getrlimit(nix::libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &lim), 0);
    }
    for n in [0usize, 1_000, 10_000] {
        let ns = Netns::new("lsn-cost");
        let line = ns.enter(move || {
            let socks = open_sockets(n);
            let l = listeners::scan().unwrap();
            assert_eq!(l.tcp().len(), socks.0.len());
            assert_eq!(l.udp().len(), socks.2.len() / 2 + socks.2.len() % 2);
            let some = socks.0.last().map_or(1, |s| s.local_addr().unwrap().port());
            let rounds = 101;
            let scan = median(|| drop(listeners::scan().unwrap()), rounds);
            let tcp_hit = median(
                || assert!(listeners::tcp_listening(some).unwrap() || n == 0),
                rounds,
            );
            let tcp_miss = median(|| assert!(!listeners::tcp_listening(1).unwrap()), rounds);
            let udp_miss = median(|| assert!(!listeners::udp_bound(1).unwrap()), rounds);
            format!(
                "{n:>6} sockets ({} TCP listeners, {} UDP bound): scan {scan:?}, \
                 tcp_listening hit {tcp_hit:?} miss {tcp_miss:?}, udp_bound miss {udp_miss:?}",
                l.tcp().len(),
                l.udp().len()
            )
        });
        eprintln!("{line}");
    }
}
