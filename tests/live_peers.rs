//! live_peers: a source with an established TCP connection to a service of
//! this host (the admin's SSH session, the monitoring, the load balancer) is
//! not banned on evidence anyone could forge (issue 15). The kernel keeps
//! the list (the live sets, fed once per connection and period from the
//! packet path); the tripwires tell the daemon with their log prefix. Real
//! connections between the namespaces, forged probes from the attacker's
//! raw sockets; forged sources without a connection come from
//! 198.18.0.0/15, routed back into the attacker namespace.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::time::Duration;

use common::spoof::{L4, SYN, Spoofer, packet, pin_victim_neighbours, route_spoofed_range_back};
use common::*;
use nix::sys::signal::Signal;

/// The service on the victim that the peer holds a connection to.
const SERVICE: u16 = 2222;

struct Victim {
    pair: Pair,
    dir: TempDir,
    cfg: std::path::PathBuf,
    pid: u32,
}

impl Victim {
    /// Advanced tripwires on 1-1024 (a probe of ports 1, 11 and 15 is
    /// forgeable evidence of three ports), connect mode on 79 (a handshake).
    fn start(tag: &str, extra: &str) -> Victim {
        Victim::with_tables(
            tag,
            extra,
            "[tcp]\nmode = [\"advanced\", \"connect\"]\nports = \"79\"\n[udp]\nports = \"\"\n",
        )
    }

    fn with_tables(tag: &str, extra: &str, tables: &str) -> Victim {
        let mut pair = Pair::new(tag);
        route_spoofed_range_back(&pair);
        pin_victim_neighbours(&pair);
        let dir = TempDir::new(tag);
        let cfg = dir.file(
            "nftsentry.toml",
            &format!(
                "{}ignore_file = \"\"\nignore_local = false\nscan_trigger = 0\nstorm_threshold = 0\n{extra}\n{tables}",
                private_files(&dir.path)
            ),
        );
        let pid = start_daemon(&mut pair.victim, &cfg, &dir.path.join("log"));
        Victim {
            pair,
            dir,
            cfg,
            pid,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path.join("log")).unwrap_or_default()
    }

    fn set(&self, name: &str) -> String {
        let o = self
            .pair
            .victim
            .cmd("nft")
            .args(["list", "set", "inet", "nftsentry", name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn banned(&self, addr: &str) -> bool {
        let set = if addr.contains(':') {
            "blocked6"
        } else {
            "blocked4"
        };
        self.set(set).contains(addr)
    }

    fn live(&self, addr: &str) -> bool {
        self.set(if addr.contains(':') { "live6" } else { "live4" })
            .contains(addr)
    }

    /// The packets counted by the live chain's rule that updates `set`:
    /// how many times the set was fed.
    fn updates(&self, set: &str) -> u64 {
        let chain = self
            .pair
            .victim
            .nft(&["list", "chain", "inet", "nftsentry", "live"]);
        let line = chain
            .lines()
            .find(|l| l.contains(&format!("update @{set} ")))
            .unwrap_or_else(|| panic!("no update of {set} in\n{chain}"));
        let n = line.split("counter packets ").nth(1).unwrap();
        n.split_whitespace().next().unwrap().parse().unwrap()
    }

    fn status(&self) -> String {
        let out = nftsentry(&self.pair.victim, &self.cfg, &["status"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the daemon; returns its log with the statistics line.
    fn stop(mut self) -> String {
        signal(self.pid, Signal::SIGTERM);
        let _ = self.pair.victim.take_child(self.pid).wait();
        self.log()
    }
}

/// A TCP service in the victim namespace and a client connection to it
/// from the attacker namespace, with a few bytes each way.
struct Session {
    client: TcpStream,
    server: TcpStream,
}

impl Session {
    fn open(pair: &Pair, listener: &TcpListener, to: &str) -> Session {
        let to: IpAddr = to.parse().unwrap();
        let client = pair
            .attacker
            .enter(move || TcpStream::connect((to, SERVICE)).unwrap());
        let (server, _) = listener.accept().unwrap();
        for s in [&client, &server] {
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        }
        let mut s = Session { client, server };
        assert!(s.works(), "the session does not carry data");
        s
    }

    /// Data goes both ways.
    fn works(&mut self) -> bool {
        let mut buf = [0u8; 5];
        self.client.write_all(b"ping!").is_ok()
            && self.server.read_exact(&mut buf).is_ok()
            && &buf == b"ping!"
            && self.server.write_all(b"pong!").is_ok()
            && self.client.read_exact(&mut buf).is_ok()
            && &buf == b"pong!"
    }
}

fn listener(ns: &Netns) -> TcpListener {
    ns.enter(|| TcpListener::bind(("::", SERVICE)).unwrap())
}

/// A SYN "from" `src` to the victim's `dport`, as any host could send it.
fn forged_syn(src: &str, dport: u16) -> Vec<u8> {
    let src: IpAddr = src.parse().unwrap();
    let dst: IpAddr = if src.is_ipv4() { VICTIM4 } else { VICTIM6 }
        .parse()
        .unwrap();
    packet(src, dst, L4::Tcp { flags: SYN }, 40_000 + dport, dport)
}

/// Stealth probes of three ports forged with the source of a peer that
/// holds a session (IPv4 and IPv6): logged, not banned, and the sessions
/// keep working; the same probes from a source with no connection ban it;
/// a handshake with a connect-mode port still bans the live peer. Before
/// the live sets, the peer was banned and its session cut.
#[test]
fn a_live_peer_is_not_banned_on_forged_probes_and_keeps_its_session() {
    let v = Victim::start("lpeer", "");
    let service = listener(&v.pair.victim);
    let mut s4 = Session::open(&v.pair, &service, VICTIM4);
    let mut s6 = Session::open(&v.pair, &service, VICTIM6);
    assert!(
        wait_until(Duration::from_secs(3), || v.live(ATTACKER4)
            && v.live(ATTACKER6)),
        "live4:\n{}\nlive6:\n{}",
        v.set("live4"),
        v.set("live6")
    );
    let spoofer = Spoofer::open(&v.pair.attacker);
    for peer in [ATTACKER4, ATTACKER6] {
        for port in [1, 11, 15] {
            spoofer.send_sure(&forged_syn(peer, port));
        }
    }
    for peer in [ATTACKER4, ATTACKER6] {
        let line = format!(
            "Host {peer} not blocked: it has an established TCP connection to this host (a live peer)"
        );
        assert!(
            wait_until(Duration::from_secs(5), || v.log().contains(&line)),
            "{}",
            v.log()
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(!v.banned(ATTACKER4), "{}", v.log());
    assert!(!v.banned(ATTACKER6), "{}", v.log());
    assert!(s4.works() && s6.works(), "a session was cut");
    // The probes are on record.
    assert!(
        v.log().contains(&format!(
            "attackalert: TCP SYN/Normal scan from host: {ATTACKER4}/{ATTACKER4} to TCP port: 11"
        )),
        "{}",
        v.log()
    );
    let status = v.status();
    assert!(
        status.contains("live peers: 2 sources with an established TCP connection; 2 not banned"),
        "{status}"
    );

    // The same probe from a source without a connection bans it.
    let stranger = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 9)).to_string();
    spoofer.send_sure(&forged_syn(&stranger, 1));
    assert!(
        wait_until(Duration::from_secs(5), || v.banned(&stranger)),
        "{}",
        v.log()
    );

    // A completed handshake with the connect-mode port proves the address:
    // the live peer is banned all the same.
    let victim: IpAddr = VICTIM4.parse().unwrap();
    let _ = v
        .pair
        .attacker
        .enter(move || TcpStream::connect_timeout(&(victim, 79).into(), Duration::from_secs(2)));
    assert!(
        wait_until(Duration::from_secs(5), || v.banned(ATTACKER4)),
        "{}",
        v.log()
    );
    assert!(!v.banned(ATTACKER6));
    v.stop();
}

/// With protect_live_peers = false there are no live sets, and the forged
/// probes ban the peer and cut its session, as they did before.
#[test]
fn protect_live_peers_false_bans_a_live_peer_like_anyone() {
    let v = Victim::start("lpoff", "protect_live_peers = false");
    assert!(v.set("live4").is_empty());
    let service = listener(&v.pair.victim);
    let mut s4 = Session::open(&v.pair, &service, VICTIM4);
    let spoofer = Spoofer::open(&v.pair.attacker);
    spoofer.send_sure(&forged_syn(ATTACKER4, 1));
    assert!(
        wait_until(Duration::from_secs(5), || v.banned(ATTACKER4)),
        "{}",
        v.log()
    );
    assert!(!s4.works(), "the banned peer's session still works");
    assert!(v.status().contains("live peers: not protected"));
    v.stop();
}

/// The live set is fed once per connection, not per packet: 16 MiB over
/// one connection cost one update, a second connection one more; and none
/// of that traffic reaches the daemon (no NFLOG message at all).
#[test]
fn the_live_set_is_fed_once_per_connection_and_bulk_traffic_never_reaches_the_daemon() {
    let v = Victim::start("lbulk", "");
    let service = listener(&v.pair.victim);
    let mut s = Session::open(&v.pair, &service, VICTIM4);
    assert!(wait_until(Duration::from_secs(3), || v.live(ATTACKER4)));
    let chunk = vec![0x5au8; 64 * 1024];
    let mut server = s.server.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0usize;
        while got < 16 << 20 {
            match server.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        got
    });
    for _ in 0..256 {
        s.client.write_all(&chunk).unwrap();
    }
    assert_eq!(reader.join().unwrap(), 16 << 20);
    assert!(s.works());
    assert_eq!(v.updates("live4"), 1, "one update for one connection");
    let _s2 = Session::open(&v.pair, &service, VICTIM4);
    assert_eq!(v.updates("live4"), 2, "one more for a second connection");
    assert_eq!(v.updates("live6"), 0);
    let log = v.stop();
    assert!(
        log.contains("statistics since start: 0 NFLOG packets received"),
        "{log}"
    );
}

/// A reload replaces the table, and another program may delete it (no owner
/// flag): either way the new live sets start empty, and the new table
/// starts the other period, so a connection that already fed the old set
/// feeds the new one at its next packet instead of a minute later.
#[test]
fn a_reloaded_or_restored_table_is_fed_again_at_the_next_packet() {
    let v = Victim::start("lrenew", "table_owner = false");
    let service = listener(&v.pair.victim);
    let mut s = Session::open(&v.pair, &service, VICTIM4);
    assert!(wait_until(Duration::from_secs(3), || v.live(ATTACKER4)));
    signal(v.pid, Signal::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(5), || v
            .log()
            .contains("configuration reloaded")),
        "{}",
        v.log()
    );
    assert!(!v.live(ATTACKER4), "the new table's live set is new");
    assert!(s.works());
    assert!(
        wait_until(Duration::from_secs(2), || v.live(ATTACKER4)),
        "the session did not feed the reloaded table's live set:\n{}",
        v.set("live4")
    );
    v.pair.victim.nft(&["delete", "table", "inet", "nftsentry"]);
    assert!(
        wait_until(Duration::from_secs(5), || v.log().contains("put back")),
        "{}",
        v.log()
    );
    assert!(s.works());
    assert!(
        wait_until(Duration::from_secs(2), || v.live(ATTACKER4)),
        "the session did not feed the restored table's live set:\n{}",
        v.set("live4")
    );
    v.stop();
}

/// A UDP datagram to a connect-mode port proves nothing of its source
/// either: one forged "from" a live peer is logged and does not ban it (the
/// daemon asks the kernel's live set), while one from a stranger bans.
#[test]
fn a_forged_datagram_to_a_connect_mode_udp_port_does_not_ban_a_live_peer() {
    let v = Victim::with_tables(
        "ludp",
        "",
        "[tcp]\nports = \"\"\n[udp]\nmode = \"connect\"\nports = \"7000\"\n",
    );
    let service = listener(&v.pair.victim);
    let mut s = Session::open(&v.pair, &service, VICTIM4);
    assert!(wait_until(Duration::from_secs(3), || v.live(ATTACKER4)));
    let spoofer = Spoofer::open(&v.pair.attacker);
    let datagram = |src: &str| {
        packet(
            src.parse().unwrap(),
            VICTIM4.parse().unwrap(),
            L4::Udp,
            40_000,
            7000,
        )
    };
    spoofer.send_sure(&datagram(ATTACKER4));
    let line = format!("Host {ATTACKER4} not blocked: it has an established TCP connection");
    assert!(
        wait_until(Duration::from_secs(5), || v.log().contains(&line)),
        "{}",
        v.log()
    );
    assert!(!v.banned(ATTACKER4));
    assert!(s.works());
    let stranger = "198.18.0.10";
    spoofer.send_sure(&datagram(stranger));
    assert!(
        wait_until(Duration::from_secs(5), || v.banned(stranger)),
        "{}",
        v.log()
    );
    v.stop();
}
