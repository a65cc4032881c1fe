//! Detection end to end: a victim namespace runs nftsentry, an attacker
//! namespace scans it with real nmap over a veth pair, on IPv4 and IPv6.
mod common;
use common::scene::*;
use common::*;
use std::time::Duration;

fn attacker(v6: bool) -> &'static str {
    if v6 { ATTACKER6 } else { ATTACKER4 }
}

/// Scan, expect a ban and PortSentry's line, then a second scan sees the
/// port filtered (dropped) instead of closed.
fn scan_bans(tag: &str, scan: &str, v6: bool, port: &str, line: &str, after: &str) {
    let s = Scene::new(tag, "");
    let first = s.nmap(scan, v6, port);
    let a = attacker(v6);
    assert!(
        s.wait_banned(a),
        "{scan} over v6={v6} did not ban {a}\nnmap: {first}\nlog: {}",
        s.log()
    );
    let expected = format!(
        "attackalert: {line} from host: {a}/{a} to {}",
        port_label(scan, port)
    );
    assert!(
        s.log().lines().any(|l| l == expected),
        "missing `{expected}` in log:\n{}",
        s.log()
    );
    assert!(
        s.log().contains(&format!(
            "attackalert: Host {a} has been blocked via nftables set blocked{}",
            if v6 { 6 } else { 4 }
        )),
        "{}",
        s.log()
    );
    let dropped_before = s.dropped(v6);
    let second = s.nmap(scan, v6, port);
    // On IPv6 nmap may not even resolve the victim's link-layer address: the
    // banned source's neighbour solicitations are dropped too.
    assert!(
        second.contains(after) || (v6 && second.contains("0 hosts up")),
        "after the ban nmap should report {after}:\n{second}"
    );
    assert!(!second.contains("closed"), "{second}");
    assert!(
        s.dropped(v6) > dropped_before,
        "the ban rule dropped nothing"
    );
}

fn port_label(scan: &str, port: &str) -> String {
    if scan == "-sU" {
        format!("UDP port: {port}")
    } else {
        format!("TCP port: {port}")
    }
}

macro_rules! scan_test {
    ($name:ident, $scan:expr, $port:expr, $line:expr, $after:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn ipv4() {
                scan_bans(
                    concat!(stringify!($name), "4"),
                    $scan,
                    false,
                    $port,
                    $line,
                    $after,
                );
            }
            #[test]
            fn ipv6() {
                scan_bans(
                    concat!(stringify!($name), "6"),
                    $scan,
                    true,
                    $port,
                    $line,
                    $after,
                );
            }
        }
    };
}

scan_test!(syn, "-sS", "1", "TCP SYN/Normal scan", "filtered");
scan_test!(connect, "-sT", "11", "TCP SYN/Normal scan", "filtered");
scan_test!(fin, "-sF", "79", "TCP FIN scan", "open|filtered");
scan_test!(null, "-sN", "1", "TCP NULL scan", "open|filtered");
scan_test!(xmas, "-sX", "11", "TCP XMAS scan", "open|filtered");
scan_test!(udp, "-sU", "7", "UDP scan", "open|filtered");

#[test]
fn fin_scan_before_ban_sees_closed_ports() {
    // Control for the FIN/NULL/XMAS tests above: without a ban those scans
    // get a RST and report "closed", so "open|filtered" afterwards is the drop.
    let s = Scene::new("finctl", "ban_time = \"1s\"\nscan_trigger = 5\n");
    let out = s.nmap("-sF", false, "2");
    assert!(out.contains("closed"), "{out}");
}

#[test]
fn ack_scan_is_not_a_probe() {
    for v6 in [false, true] {
        let s = Scene::new(if v6 { "ack6" } else { "ack4" }, "");
        s.nmap("-sA", v6, "1,11,79");
        s.settle();
        assert!(
            !s.banned(attacker(v6)),
            "-sA banned v6={v6}; log:\n{}",
            s.log()
        );
        assert!(!s.log().contains("attackalert"), "{}", s.log());
    }
}

#[test]
fn scan_trigger_two_needs_two_probes() {
    for v6 in [false, true] {
        let s = Scene::new(if v6 { "trig6" } else { "trig4" }, "scan_trigger = 2\n");
        let a = attacker(v6);
        s.nmap("-sS", v6, "1");
        s.settle();
        assert!(
            !s.banned(a),
            "one probe banned with scan_trigger = 2; log:\n{}",
            s.log()
        );
        assert!(
            s.log()
                .contains("attackalert: TCP SYN/Normal scan from host:"),
            "{}",
            s.log()
        );
        s.nmap("-sS", v6, "11");
        assert!(
            s.wait_banned(a),
            "second probe did not ban; log:\n{}",
            s.log()
        );
    }
}

#[test]
fn ignored_source_is_never_banned() {
    for v6 in [false, true] {
        let ignore = format!("# the attacker\n{ATTACKER4}/32\n{ATTACKER6}\n");
        let s = Scene::build(if v6 { "ign6" } else { "ign4" }, "", &ignore, |_| {});
        s.nmap("-sS", v6, TCP_PORTS);
        s.nmap("-sU", v6, UDP_PORTS);
        s.settle();
        assert!(
            !s.banned(attacker(v6)),
            "ignored source banned; log:\n{}",
            s.log()
        );
        // Seen and said, never acted on.
        let log = s.log();
        assert!(!log.contains("from host:"), "{log}");
        assert!(!log.contains("has been blocked"), "{log}");
        let said = format!(
            "attackalert: Host: {} found in ignore list (ignore file ",
            attacker(v6)
        );
        assert!(log.contains(&said), "{log}");
    }
}

#[test]
fn unwatched_port_does_not_ban() {
    for v6 in [false, true] {
        let s = Scene::new(if v6 { "unw6" } else { "unw4" }, "");
        s.nmap("-sS", v6, "2,3,1000");
        s.nmap("-sU", v6, "2,3,1000");
        s.settle();
        assert!(!s.banned(attacker(v6)), "log:\n{}", s.log());
    }
}

#[test]
fn own_outbound_traffic_never_trips() {
    for v6 in [false, true] {
        let mut s = Scene::new(if v6 { "out6" } else { "out4" }, "");
        let (a, fam) = if v6 {
            (ATTACKER6, "-6")
        } else {
            (ATTACKER4, "-4")
        };
        // The attacker host answers one TCP connection on 80 and one UDP
        // datagram on 5353 with "pong".
        for script in [
            format!("echo pong | nc {fam} -l 80"),
            format!("echo pong | nc {fam} -u -l 5353"),
        ] {
            let mut c = s.pair.attacker.cmd("sh");
            c.args(["-c", &script]).stdout(std::process::Stdio::null());
            s.pair.attacker.spawn(&mut c);
        }
        std::thread::sleep(Duration::from_millis(300));
        // The victim's clients use watched ports as their source ports: the
        // replies arrive at tripwire ports, but as established traffic.
        let tcp = s
            .pair
            .victim
            .sh(&format!("echo hello | nc {fam} -w 2 -p 11 {a} 80 || true"));
        let udp = s.pair.victim.sh(&format!(
            "echo ping | nc {fam} -u -w 2 -p 7 {a} 5353 || true"
        ));
        assert!(
            String::from_utf8_lossy(&tcp.stdout).contains("pong"),
            "no TCP reply reached the victim"
        );
        assert!(
            String::from_utf8_lossy(&udp.stdout).contains("pong"),
            "no UDP reply reached the victim"
        );
        s.settle();
        assert!(
            !s.banned(a),
            "outbound traffic banned v6={v6}; log:\n{}",
            s.log()
        );
        assert!(!s.log().contains("attackalert"), "{}", s.log());
    }
}

/// A DNS server for one name: PTR 2.2.0.192.in-addr.arpa → scanner.example.net,
/// NXDOMAIN for anything else; on 127.0.0.1:53 inside `ns`, for `secs`.
fn fake_dns(ns: &Netns, secs: u64) -> std::thread::JoinHandle<()> {
    let path = format!("/var/run/netns/{}", ns.name);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let sock = std::net::UdpSocket::bind("127.0.0.1:53").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let end = std::time::Instant::now() + Duration::from_secs(secs);
        let mut buf = [0u8; 512];
        while std::time::Instant::now() < end {
            let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let q = &buf[..n];
            // The question ends after the name's zero byte, type and class.
            let mut i = 12;
            let mut labels = Vec::new();
            while i < n && q[i] != 0 {
                let l = q[i] as usize;
                labels.push(String::from_utf8_lossy(&q[i + 1..i + 1 + l]).to_lowercase());
                i += 1 + l;
            }
            let qend = i + 5;
            let found = labels.join(".") == "2.2.0.192.in-addr.arpa";
            let mut r = q[..qend].to_vec();
            r[2] = 0x81;
            r[3] = if found { 0x80 } else { 0x83 };
            r[6..8].copy_from_slice(&(found as u16).to_be_bytes());
            r[8..12].fill(0);
            if found {
                let mut rdata = Vec::new();
                for l in ["scanner", "example", "net"] {
                    rdata.push(l.len() as u8);
                    rdata.extend_from_slice(l.as_bytes());
                }
                rdata.push(0);
                r.extend_from_slice(&[0xc0, 0x0c, 0, 12, 0, 1, 0, 0, 0x0e, 0x10]);
                r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
                r.extend_from_slice(&rdata);
            }
            let _ = sock.send_to(&r, peer);
        }
    });
    ready_rx.recv().unwrap();
    h
}

#[test]
fn resolve_host_names_the_scanner_without_delaying_the_ban() {
    let s = Scene::build("rslv", "resolve_host = true\n", "# nothing\n", |pair| {
        set_resolv_conf(&pair.victim, "nameserver 127.0.0.1\n")
    });
    let dns = fake_dns(&s.pair.victim, 5);
    s.nmap("-sS", false, "1");
    assert!(s.wait_banned(ATTACKER4), "log:\n{}", s.log());
    let expected = format!(
        "attackalert: TCP SYN/Normal scan from host: scanner.example.net/{ATTACKER4} to TCP port: 1"
    );
    assert!(
        wait_until(Duration::from_secs(5), || s
            .log()
            .lines()
            .any(|l| l == expected)),
        "missing `{expected}`:\n{}",
        s.log()
    );
    // A source without a PTR record is logged by address.
    s.nmap("-sS", true, "1");
    assert!(s.wait_banned(ATTACKER6), "log:\n{}", s.log());
    let expected6 = format!(
        "attackalert: TCP SYN/Normal scan from host: {ATTACKER6}/{ATTACKER6} to TCP port: 1"
    );
    assert!(
        wait_until(Duration::from_secs(6), || s
            .log()
            .lines()
            .any(|l| l == expected6)),
        "missing `{expected6}`:\n{}",
        s.log()
    );
    dns.join().unwrap();
}

/// A full set makes room by ending the ban with the weakest, oldest
/// evidence (here all are one forgeable probe, so the oldest goes), says so
/// once per eviction, and the daemon goes on (tests/forged.rs has a ban
/// that finds no room).
#[test]
fn a_full_ban_set_evicts_the_oldest_weakest_ban_and_the_daemon_goes_on() {
    let s = Scene::new("full", "set_size = 2\n");
    let sources = ["192.0.2.3", "192.0.2.4", "192.0.2.5", "192.0.2.6"];
    for src in sources {
        s.pair
            .attacker
            .ip(&["addr", "add", &format!("{src}/24"), "dev", "eth0"]);
    }
    for src in sources {
        s.pair
            .attacker
            .sh(&format!("nc -z -w 1 -s {src} {VICTIM4} 1 || true"));
    }
    s.settle();
    let banned: Vec<&str> = sources.iter().copied().filter(|a| s.banned(a)).collect();
    assert_eq!(banned, ["192.0.2.5", "192.0.2.6"], "log:\n{}", s.log());
    let log = s.log();
    let evictions: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("unblocked to make room for"))
        .collect();
    assert_eq!(evictions.len(), 2, "log:\n{log}");
    assert!(
        evictions[0].starts_with("attackalert: Host 192.0.2.3 unblocked to make room for 192.0.2.5: the set of bans is full (set_size 2)"),
        "{}",
        evictions[0]
    );
    assert!(!log.contains("could not block host"), "log:\n{log}");
    // Still alive and banning where there is room (blocked6 is empty).
    s.nmap("-sS", true, "1");
    assert!(s.wait_banned(ATTACKER6), "{}", s.log());
}

#[test]
fn port_with_a_service_is_never_a_tripwire() {
    for v6 in [false, true] {
        // The client below completes a handshake with a real service, which
        // makes it a live peer (protect_live_peers), and a live peer is not
        // banned on a UDP probe: this test is about the tripwires.
        let mut s = Scene::new(
            if v6 { "svc6" } else { "svc4" },
            "protect_live_peers = false\n",
        );
        let (a, fam, any) = if v6 {
            (ATTACKER6, "-6", "::")
        } else {
            (ATTACKER4, "-4", "0.0.0.0")
        };
        let target = if v6 { VICTIM6 } else { VICTIM4 };
        // Services on watched ports, started after the daemon.
        let mut tcp = s.pair.victim.cmd("nc");
        tcp.args([fam, "-k", "-l", any, "11"])
            .stdout(std::process::Stdio::null());
        let tcp_pid = s.pair.victim.spawn(&mut tcp);
        let mut udp = s.pair.victim.cmd("nc");
        udp.args([fam, "-u", "-k", "-l", any, "7"])
            .stdout(std::process::Stdio::null());
        let udp_pid = s.pair.victim.spawn(&mut udp);
        std::thread::sleep(Duration::from_millis(300));
        s.pair.attacker.sh(&format!("nc {fam} -z -w 1 {target} 11"));
        s.pair
            .attacker
            .sh(&format!("echo x | nc {fam} -u -w 1 {target} 7 || true"));
        s.settle();
        assert!(
            !s.banned(a),
            "a client of a real service was banned (v6={v6}); log:\n{}",
            s.log()
        );
        assert!(!s.log().contains("attackalert"), "{}", s.log());
        // The services stop: the ports are tripwires again at once.
        for pid in [tcp_pid, udp_pid] {
            let mut child = s.pair.victim.take_child(pid);
            child.kill().unwrap();
            child.wait().unwrap();
        }
        s.nmap("-sU", v6, "7");
        assert!(
            s.wait_banned(a),
            "no ban once the service stopped (v6={v6}); log:\n{}",
            s.log()
        );
    }
}

/// The ruleset generation in the victim: one more for each transaction
/// the kernel committed.
fn generation(s: &Scene) -> u32 {
    s.pair.victim.enter(|| {
        nftsentry::kernel::nft::NftSocket::open()
            .and_then(|mut n| n.generation())
            .expect("ruleset generation")
    })
}

/// Probes from `sources` read in one drain: the daemon is stopped while
/// they arrive, so their NFLOG messages wait together in its socket.
fn burst_of_probes(s: &Scene, sources: &[&str]) {
    for src in sources {
        s.pair
            .attacker
            .ip(&["addr", "add", &format!("{src}/24"), "dev", "eth0"]);
    }
    signal(s.pid, nix::sys::signal::Signal::SIGSTOP);
    let probes: Vec<String> = sources
        .iter()
        .map(|a| format!("nc -z -w 1 -s {a} {VICTIM4} 1"))
        .collect();
    s.pair
        .attacker
        .sh(&format!("{} ; true", probes.join(" ; ")));
    std::thread::sleep(Duration::from_millis(200));
    signal(s.pid, nix::sys::signal::Signal::SIGCONT);
    s.settle();
}

/// The bans of one NFLOG read go to the kernel in one transaction (one
/// new ruleset generation), not one each; each is still told.
#[test]
fn the_bans_of_one_read_go_to_the_kernel_in_one_transaction() {
    let s = Scene::new("burst", "");
    let sources = ["192.0.2.3", "192.0.2.4", "192.0.2.5", "192.0.2.6"];
    let before = generation(&s);
    burst_of_probes(&s, &sources);
    let log = s.log();
    for src in sources {
        assert!(s.banned(src), "{src} not banned; log:\n{log}");
        assert!(
            log.contains(&format!(
                "attackalert: Host {src} has been blocked via nftables set blocked4 in table inet nftsentry"
            )),
            "{src}: log:\n{log}"
        );
    }
    assert_eq!(generation(&s) - before, 1, "log:\n{log}");
}

/// When the kernel refuses a burst's transaction (here blocked4 is full of
/// elements another program added: table_owner = false), each ban goes
/// alone: the one that fits is banned, the others fail with the kernel's
/// error and are not counted as bans in force.
#[test]
fn bans_the_kernel_refuses_from_a_burst_are_not_taken_for_bans() {
    let s = Scene::new("refuse", "set_size = 4\ntable_owner = false\n");
    s.pair.victim.nft(&[
        "add",
        "element",
        "inet",
        "nftsentry",
        "blocked4",
        "{ 203.0.113.1, 203.0.113.2, 203.0.113.3 }",
    ]);
    let sources = ["192.0.2.3", "192.0.2.4", "192.0.2.5"];
    burst_of_probes(&s, &sources);
    let log = s.log();
    let banned: Vec<&str> = sources.iter().copied().filter(|a| s.banned(a)).collect();
    assert_eq!(banned.len(), 1, "{banned:?}; log:\n{log}");
    assert!(
        log.contains("attackalert: ERROR: could not block host 192.0.2."),
        "log:\n{log}"
    );
    let told = log.matches("has been blocked via nftables set").count();
    assert_eq!(told, 1, "log:\n{log}");
    let status = String::from_utf8(s.cli(&["status"]).stdout).unwrap();
    assert!(
        status.contains("since start: 1 bans, 2 failed"),
        "{status}\nlog:\n{log}"
    );
    // A refused source is forgotten: its next probe tries again (and
    // fails again while the set is full), it is not "already blocked".
    let refused = sources.iter().find(|a| !s.banned(a)).unwrap();
    s.pair
        .attacker
        .sh(&format!("nc -z -w 1 -s {refused} {VICTIM4} 11 ; true"));
    s.settle();
    assert!(
        !s.log().contains(&format!("/{refused} is already blocked")),
        "log:\n{}",
        s.log()
    );
}
