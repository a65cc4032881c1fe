//! forged_rules: the kernel rules' and the decoder's side of issue 15
//! (tests/forged.rs has the detector's and the ledger's): forged probes can
//! neither make nftsentry ban what the host depends on, nor slip past it.
//! Each test sends, between the
//! test's own namespaces, what an attacker would send, and fails on 58947b3:
//! - a ban of a peer cut the replies to the host's own connections to it
//!   (one probe forged "from" the resolver was a day without DNS);
//! - with no ignore file and `ignore_local = false`, a probe from 0.0.0.0
//!   or :: banned it;
//! - a broadcast or multicast datagram to a tripwire port banned its sender
//!   (a Wake-on-LAN packet would ban it on every host of the segment);
//! - a TCP probe behind a 96-byte Destination Options header (or behind
//!   nine empty ones) was undecodable: scanned, answered, never detected.
mod common;
use common::scene::Scene;
use common::spoof::{L4, SYN, Spoofer, packet, pin_victim_neighbours, route_spoofed_range_back};
use common::*;
use nftsentry::config::Config;
use nftsentry::detect::{BanInForce, Bans, Detector, Ignored, Verdict};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(addr: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip(addr), port)
}

// ------------------------------------------------------------ replies ---

/// Set to end the servers below; they end by themselves after 30 s.
type Stop = std::sync::Arc<std::sync::atomic::AtomicBool>;

fn running(stop: &Stop, end: Instant) -> bool {
    !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < end
}

/// A TCP server in the attacker's namespace: every line it reads on a
/// connection it answers with "pong " and the line.
fn tcp_echo(ns: &Netns, addr: SocketAddr, stop: Stop) -> std::thread::JoinHandle<()> {
    let listener = ns.enter(move || TcpListener::bind(addr).unwrap());
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(30);
        while running(&stop, end) {
            match listener.accept() {
                Ok((conn, _)) => {
                    std::thread::spawn(move || {
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(Duration::from_secs(30)))
                            .unwrap();
                        let mut w = conn.try_clone().unwrap();
                        for line in BufReader::new(conn).lines() {
                            let Ok(line) = line else { break };
                            if w.write_all(format!("pong {line}\n").as_bytes()).is_err() {
                                break;
                            }
                        }
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    })
}

/// A UDP server (a resolver, say) in the attacker's namespace: answers each
/// datagram with "re " and the datagram.
fn udp_echo(ns: &Netns, addr: SocketAddr, stop: Stop) -> std::thread::JoinHandle<()> {
    let sock = ns.enter(move || UdpSocket::bind(addr).unwrap());
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 512];
        while running(&stop, end) {
            if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                let mut r = b"re ".to_vec();
                r.extend_from_slice(&buf[..n]);
                let _ = sock.send_to(&r, peer);
            }
        }
    })
}

/// Sends `line` on `conn` and reads the answer (None after 2 s).
fn ask(conn: &mut BufReader<TcpStream>, line: &str) -> Option<String> {
    conn.get_mut()
        .write_all(format!("{line}\n").as_bytes())
        .ok()?;
    let mut answer = String::new();
    conn.read_line(&mut answer).ok()?;
    Some(answer.trim_end().to_string())
}

fn udp_ask(sock: &UdpSocket, to: SocketAddr, what: &str) -> Option<String> {
    sock.send_to(what.as_bytes(), to).ok()?;
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn replies_to_the_hosts_own_connections_pass_a_ban_of_the_peer() {
    let s = Scene::new("rply", "ban_time = \"1h\"\n");
    for v6 in [false, true] {
        let (peer, me) = if v6 {
            (ATTACKER6, VICTIM6)
        } else {
            (ATTACKER4, VICTIM4)
        };
        let (tcp_srv, udp_srv) = (sa(peer, 8080), sa(peer, 5353));
        let stop = Stop::default();
        let servers = [
            tcp_echo(&s.pair.attacker, tcp_srv, stop.clone()),
            udp_echo(&s.pair.attacker, udp_srv, stop.clone()),
        ];
        // A service of the victim's, on a port that is no tripwire.
        let own = sa(me, 8081);
        let service = s.pair.victim.enter(move || TcpListener::bind(own).unwrap());

        // Before the ban: the victim talks to the peer's services, and the
        // peer can reach the victim's.
        let mut conn = BufReader::new(
            s.pair
                .victim
                .enter(move || TcpStream::connect_timeout(&tcp_srv, Duration::from_secs(2)))
                .unwrap(),
        );
        conn.get_ref()
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        assert_eq!(ask(&mut conn, "1").as_deref(), Some("pong 1"));
        let resolver_client = s
            .pair
            .victim
            .enter(move || UdpSocket::bind(SocketAddr::new(ip(me), 0)).unwrap());
        resolver_client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        assert_eq!(
            udp_ask(&resolver_client, udp_srv, "q1").as_deref(),
            Some("re q1")
        );
        let inbound = s
            .pair
            .attacker
            .enter(move || TcpStream::connect_timeout(&own, Duration::from_secs(2)));
        assert!(
            inbound.is_ok(),
            "the control connection to the victim failed"
        );
        drop(inbound);

        // The peer is banned (as one forged probe would have it).
        let o = s.cli(&["block", peer, "--for", "1h"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(s.wait_banned(peer), "{peer} not banned; log:\n{}", s.log());
        let dropped = s.dropped(v6);

        // Replies on the open connection, a new connection of the victim's
        // and a new query all still get their answers.
        assert_eq!(
            ask(&mut conn, "2").as_deref(),
            Some("pong 2"),
            "the reply on an open connection was dropped (v6={v6})"
        );
        let mut again = BufReader::new(
            s.pair
                .victim
                .enter(move || TcpStream::connect_timeout(&tcp_srv, Duration::from_secs(2)))
                .unwrap_or_else(|e| panic!("a new connection to the banned peer failed: {e}")),
        );
        again
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        assert_eq!(ask(&mut again, "3").as_deref(), Some("pong 3"));
        assert_eq!(
            udp_ask(&resolver_client, udp_srv, "q2").as_deref(),
            Some("re q2"),
            "the resolver's answer was dropped (v6={v6})"
        );

        // What the banned peer opens itself is still cut.
        let inbound = s
            .pair
            .attacker
            .enter(move || TcpStream::connect_timeout(&own, Duration::from_secs(1)));
        assert!(
            inbound.is_err(),
            "the banned peer opened a connection to the victim (v6={v6})"
        );
        assert!(s.dropped(v6) > dropped, "the ban rule dropped nothing");
        drop((conn, again, service, resolver_client));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in servers {
            t.join().unwrap();
        }
        let o = s.cli(&["unblock", peer]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

// -------------------------------------------------- the built-in list ---

/// The MAC address of `dev` in `ns`.
fn mac(ns: &Netns, dev: &str) -> [u8; 6] {
    let out = ns.ip(&["-o", "link", "show", "dev", dev]);
    let text = String::from_utf8(out.stdout).unwrap();
    let m = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("a MAC address")
        .to_string();
    let b: Vec<u8> = m
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap())
        .collect();
    b.try_into().unwrap()
}

/// Sends the IPv4 packet `pkt` as one Ethernet frame to `dst_mac` out of
/// eth0 of `ns`, through a packet socket: a raw IP socket would put the
/// sender's own address in place of a source of 0.0.0.0.
fn send_frame(ns: &Netns, dst_mac: [u8; 6], pkt: &[u8]) {
    use nix::libc;
    let src_mac = mac(ns, "eth0");
    let mut frame = dst_mac.to_vec();
    frame.extend(src_mac);
    frame.extend(0x0800u16.to_be_bytes());
    frame.extend_from_slice(pkt);
    ns.enter(move || {
        let ifindex = nix::net::if_::if_nametoindex("eth0").unwrap();
        // SAFETY: plain socket calls on a descriptor this closure owns, with
        // a sockaddr_ll it fills in whole.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            assert!(
                fd >= 0,
                "packet socket: {}",
                std::io::Error::last_os_error()
            );
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = 0x0800u16.to_be();
            sll.sll_ifindex = ifindex as i32;
            sll.sll_halen = 6;
            sll.sll_addr[..6].copy_from_slice(&dst_mac);
            let n = libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const sll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            assert_eq!(n, frame.len() as isize, "send: {err}");
        }
    });
}

/// A victim running nftsentry with no ignore file and `ignore_local =
/// false`: nothing is ignored but the built-in list.
struct Bare {
    pair: Pair,
    dir: TempDir,
    cfg: std::path::PathBuf,
}

impl Bare {
    fn new(tag: &str) -> Bare {
        let mut pair = Pair::new(tag);
        let dir = TempDir::new(tag);
        let cfg = dir.file(
            "nftsentry.toml",
            &format!(
                "ignore_file = \"\"\nignore_local = false\nscan_trigger = 0\nban_time = \"1h\"\n{}\
                 [tcp]\nports = \"1,11,79\"\n[udp]\nports = \"1,7,9\"\n",
                private_files(&dir.path)
            ),
        );
        route_spoofed_range_back(&pair);
        pin_victim_neighbours(&pair);
        start_daemon(&mut pair.victim, &cfg, &dir.path.join("log"));
        Bare { pair, dir, cfg }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path.join("log")).unwrap_or_default()
    }

    fn set(&self, name: &str) -> String {
        self.pair
            .victim
            .nft(&["list", "set", "inet", "nftsentry", name])
    }

    /// Covered by a ban: its own or its /64's.
    fn banned(&self, addr: &str) -> bool {
        ban_covers(&self.pair.victim, addr)
    }
}

#[test]
fn unspecified_sources_are_never_banned_without_ignore_file_or_local_list() {
    let b = Bare::new("unsp");
    let spoofer = Spoofer::open(&b.pair.attacker);
    // A DHCP client has no address yet: 0.0.0.0 to 255.255.255.255 is what
    // the kernel delivers from 0.0.0.0 (to a unicast address it is a
    // martian). Its destination keeps it off the tripwires since issue 15;
    // the ignore set is the line behind.
    send_frame(
        &b.pair.attacker,
        [0xff; 6],
        &packet(ip("0.0.0.0"), ip("255.255.255.255"), L4::Udp, 68, 9),
    );
    // From :: (a host during duplicate address detection), to the victim.
    for port in [1, 11] {
        spoofer.send_sure(&packet(
            ip("::"),
            ip(VICTIM6),
            L4::Tcp { flags: SYN },
            40000,
            port,
        ));
    }
    // Controls: the same probes from an address nothing protects ban it.
    spoofer.send_sure(&packet(
        ip("198.18.0.99"),
        ip(VICTIM4),
        L4::Tcp { flags: SYN },
        40000,
        1,
    ));
    spoofer.send_sure(&packet(
        ip("2001:db8:99::9"),
        ip(VICTIM6),
        L4::Tcp { flags: SYN },
        40000,
        1,
    ));
    assert!(
        wait_until(Duration::from_secs(5), || b.banned("198.18.0.99")
            && b.banned("2001:db8:99::9")),
        "controls not banned; log:\n{}",
        b.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    let log = b.log();
    assert!(!b.banned("0.0.0.0"), "0.0.0.0 banned; log:\n{log}");
    assert!(!b.banned("::"), ":: banned; log:\n{log}");
    assert!(
        log.contains(
            "attackalert: Host: :: found in ignore list (never banned: unspecified address), aborting actions: TCP SYN/Normal scan to TCP port: 1"
        ),
        "{log}"
    );
    // The kernel sets hold the built-in list.
    let ignore4 = b.set("ignore4");
    let ignore6 = b.set("ignore6");
    for net in ["0.0.0.0/8", "224.0.0.0/4", "255.255.255.255"] {
        assert!(ignore4.contains(net), "{net} not in {ignore4}");
    }
    assert!(ignore6.contains("ff00::/8"), "{ignore6}");
    assert!(
        ignore6.contains("elements = { ::,") || ignore6.contains("elements = { ::/128"),
        "{ignore6}"
    );
    // A ban an admin asks for is noted as one that drops nothing.
    let o = nftsentry(&b.pair.victim, &b.cfg, &["block", "0.0.0.0", "--for", "1h"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("note: 0.0.0.0 is in the ignore list"),
        "{o:?}"
    );
}

/// The ledger as the detector sees it, with nothing banned.
struct NoBans;
impl Bans for NoBans {
    fn ban_on(
        &self,
        _: nftsentry::cidr::Cidr,
        _: nftsentry::config::Proto,
        _: Instant,
    ) -> Option<BanInForce> {
        None
    }
}

#[test]
fn detection_ignores_the_built_in_list_whatever_the_config() {
    // No root needed: the same list feeds the detector, so a packet the
    // kernel would let through (0.0.0.0 to a unicast address, say, from a
    // kernel that stops calling it a martian) is still not banned.
    let cfg = Config {
        ignore_file: None,
        ignore_local: false,
        ..Default::default()
    };
    let list: Vec<Ignored> = nftsentry::host::ignores::collect_labelled(&cfg).unwrap();
    let mut d = Detector::new(&cfg, list);
    let now = Instant::now();
    for (src, dst, why) in [
        ("0.0.0.0", "192.0.2.1", "unspecified address"),
        ("0.12.0.1", "192.0.2.1", "unspecified address"),
        ("224.0.0.251", "192.0.2.1", "multicast"),
        ("255.255.255.255", "192.0.2.1", "broadcast"),
        ("::", "2001:db8:1::1", "unspecified address"),
        ("ff02::1", "2001:db8:1::1", "multicast"),
    ] {
        let pkt = packet(ip(src), ip(dst), L4::Tcp { flags: SYN }, 40000, 1);
        let v = d.on_packet(&pkt, now, &NoBans);
        let Verdict::Ignored(lines) = v else {
            panic!("{src}: {v:?}")
        };
        assert_eq!(
            lines,
            [format!(
                "attackalert: Host: {src} found in ignore list (never banned: {why}), aborting actions: TCP SYN/Normal scan to TCP port: 1"
            )]
        );
    }
    // A broadcast or multicast destination is not a probe (counted so).
    for dst in ["255.255.255.255", "239.255.255.250", "ff02::1"] {
        let src = if dst.contains(':') {
            "2001:db8:1::2"
        } else {
            "192.0.2.2"
        };
        let pkt = packet(ip(src), ip(dst), L4::Udp, 40000, 9);
        assert_eq!(d.on_packet(&pkt, now, &NoBans), Verdict::Nothing, "{dst}");
    }
    assert_eq!(d.counts.not_probes, 3);
    assert_eq!(d.counts.total_probes(), 0);
}

// ---------------------------------------- broadcast and multicast ---

#[test]
fn broadcast_and_multicast_datagrams_on_a_tripwire_ban_nobody() {
    let s = Scene::new("bcst", "scan_trigger = 0\nban_time = \"1h\"\n");
    let local = s.pair.victim.ip(&["route", "show", "table", "local"]);
    assert!(
        String::from_utf8_lossy(&local.stdout).contains("broadcast 192.0.2.255"),
        "the victim has no broadcast route for its subnet"
    );
    s.pair
        .attacker
        .ip(&["route", "add", "224.0.0.0/4", "dev", "eth0"]);
    let eth0: u32 = {
        let out = s.pair.attacker.ip(&["-o", "link", "show", "eth0"]);
        let text = String::from_utf8(out.stdout).unwrap();
        text.split(':').next().unwrap().trim().parse().unwrap()
    };
    // Each destination from a source of its own, so that each one's ban
    // (on 58947b3) shows.
    let sends: [(&str, SocketAddr); 4] = [
        ("192.0.2.3", sa("192.0.2.255", 9)),
        ("192.0.2.4", sa("255.255.255.255", 9)),
        ("192.0.2.5", sa("224.0.0.1", 9)),
        (
            "2001:db8:1::5",
            SocketAddr::V6(std::net::SocketAddrV6::new(
                "ff02::1".parse().unwrap(),
                9,
                0,
                eth0,
            )),
        ),
    ];
    for (src, _) in &sends {
        let len = if src.contains(':') { "64" } else { "24" };
        s.pair.attacker.ip(&[
            "addr",
            "add",
            &format!("{src}/{len}"),
            "dev",
            "eth0",
            "nodad",
        ]);
    }
    // Wake-on-LAN's magic packet: six 0xff, then the MAC sixteen times.
    let mut wol = vec![0xffu8; 6];
    for _ in 0..16 {
        wol.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    }
    let socks: Vec<UdpSocket> = sends
        .iter()
        .map(|(src, _)| {
            let src = sa(src, 0);
            s.pair.attacker.enter(move || {
                let u = UdpSocket::bind(src).unwrap();
                u.set_broadcast(true).unwrap();
                u
            })
        })
        .collect();
    for (u, (_, dst)) in socks.iter().zip(&sends) {
        u.send_to(&wol, dst).unwrap();
    }
    s.settle();
    let log = s.log();
    let banned: Vec<(&str, SocketAddr)> = sends
        .iter()
        .filter(|(src, _)| s.banned(src))
        .copied()
        .collect();
    assert!(
        banned.is_empty(),
        "banned (source, destination): {banned:?}\n{log}"
    );
    assert!(!log.contains("attackalert"), "{log}");
    // The same datagram to the victim's own address is a probe.
    for (u, (src, _)) in socks.iter().zip(&sends) {
        let me = if src.contains(':') { VICTIM6 } else { VICTIM4 };
        u.send_to(&wol, sa(me, 9)).unwrap();
    }
    for (src, _) in &sends {
        assert!(s.wait_banned(src), "control {src} not banned:\n{}", s.log());
    }
}

// -------------------------------------------------- extension headers ---

/// `pkt` (IPv6, from `spoof::packet`) with `exts` inserted between its
/// IPv6 header and its transport header: each (next header, bytes) pair is
/// one extension header whose own first byte the function fills in. The
/// transport checksum does not change (no routing header in play).
fn with_extension_headers(pkt: &[u8], exts: &[(u8, usize)]) -> Vec<u8> {
    assert_eq!(pkt[0] >> 4, 6);
    let transport = pkt[6];
    let mut out = pkt[..40].to_vec();
    let mut chain = Vec::new();
    for (i, &(kind, len)) in exts.iter().enumerate() {
        assert!(len % 8 == 0 && len >= 8);
        if i == 0 {
            out[6] = kind;
        }
        let next = exts.get(i + 1).map_or(transport, |e| e.0);
        let mut h = vec![next, (len / 8 - 1) as u8];
        // Options over the rest: Linux refuses more than 7 bytes of padding
        // in a header and more than 8 options, so unknown options of type
        // 0x1e ("skip if unknown", RFC 3692's experimental value), at most
        // 257 bytes each, and PadN for what is left.
        let mut left = len - 2;
        while left >= 8 {
            let n = (left - 2).min(255);
            let n = if left - 2 - n == 1 { n - 1 } else { n };
            h.extend([0x1e, n as u8]);
            h.extend(std::iter::repeat_n(0u8, n));
            left -= n + 2;
        }
        match left {
            0 => {}
            1 => h.push(0),
            n => {
                h.extend([1, (n - 2) as u8]);
                h.extend(std::iter::repeat_n(0u8, n - 2));
            }
        }
        assert_eq!(h.len(), len);
        chain.extend(h);
    }
    let plen = u16::from_be_bytes([pkt[4], pkt[5]]) as usize + chain.len();
    out[4..6].copy_from_slice(&(plen as u16).to_be_bytes());
    out.extend(chain);
    out.extend_from_slice(&pkt[40..]);
    out
}

const DEST_OPTS: u8 = 60;

#[test]
fn probes_behind_ipv6_extension_headers_are_detected() {
    let s = Scene::build(
        "exth",
        "scan_trigger = 0\nban_time = \"1h\"\n",
        "# nothing\n",
        |pair| pin_victim_neighbours(pair),
    );
    let spoofer = Spoofer::open(&s.pair.attacker);
    // nmap -6 cannot add extension headers; this is its SYN, with one.
    let syn =
        |src: &str, port: u16| packet(ip(src), ip(VICTIM6), L4::Tcp { flags: SYN }, 40000, port);
    // 1. From the attacker's own address: a 96-byte Destination Options
    //    header puts TCP at byte 136, past 58947b3's 128-byte copy.
    let p = with_extension_headers(&syn(ATTACKER6, 1), &[(DEST_OPTS, 96)]);
    assert_eq!(p.len(), 40 + 96 + 20);
    spoofer.send_sure(&p);
    assert!(
        s.wait_banned(ATTACKER6),
        "a SYN behind a 96-byte header was not detected; log:\n{}",
        s.log()
    );
    let log = s.log();
    let a = ATTACKER6;
    assert!(
        log.contains(&format!(
            "attackalert: TCP SYN/Normal scan from host: {a}/{a} to TCP port: 1"
        )),
        "{log}"
    );
    // 2. Nine empty Destination Options headers (72 bytes, all within the
    //    old copy): 58947b3 walked eight at most and gave up.
    let nine = [(DEST_OPTS, 8); 9];
    let src = "2001:db8:99::a";
    spoofer.send_sure(&with_extension_headers(&syn(src, 11), &nine));
    assert!(
        s.wait_banned(src),
        "a SYN behind nine headers was not detected; log:\n{}",
        s.log()
    );
    // 3. A header chain longer than the copy (only possible over a link
    //    with a larger MTU than 1500) cannot be read: its port is unknown.
    //    The log says so, with the source, once for several packets.
    for ns in [&s.pair.victim, &s.pair.attacker] {
        ns.ip(&["link", "set", "eth0", "mtu", "9000"]);
    }
    // Another /64: the ban of 2001:db8:99::a covers 2001:db8:99::/64.
    let src = "2001:db8:98::b";
    let long = with_extension_headers(&syn(src, 79), &[(DEST_OPTS, 1480)]);
    for _ in 0..5 {
        spoofer.send_sure(&long);
    }
    assert!(
        wait_until(Duration::from_secs(5), || {
            s
            .log()
            .contains("attackalert: undecodable packet on a tripwire from 2001:db8:98::b to 2001:db8:1::1: truncated packet: TCP header (ports and flags) needs")
        }),
        "no line for the cut probe; log:\n{}",
        s.log()
    );
    s.settle();
    let log = s.log();
    assert_eq!(
        log.matches("undecodable packet on a tripwire").count(),
        1,
        "not rate-limited:\n{log}"
    );
    assert!(!s.banned(src));
    let status = s.cli(&["status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("undecodable 5"), "{status}");
}

#[test]
fn ipv6_extension_header_builder_is_what_the_decoder_reads() {
    // No root: the packets above decode, whole, to the probes they claim.
    let pkt = packet(
        ip("2001:db8:1::2"),
        ip("2001:db8:1::1"),
        L4::Tcp { flags: SYN },
        40000,
        1,
    );
    for exts in [
        vec![(DEST_OPTS, 96)],
        vec![(DEST_OPTS, 8); 9],
        vec![(0u8, 8), (DEST_OPTS, 2048)],
    ] {
        let p = with_extension_headers(&pkt, &exts);
        let probe = nftsentry::detect::packet::decode(&p).unwrap();
        assert_eq!(probe.dport, 1);
        assert!(probe.ip_options);
        assert_eq!(
            probe.dst,
            IpAddr::V6("2001:db8:1::1".parse::<Ipv6Addr>().unwrap())
        );
    }
}
