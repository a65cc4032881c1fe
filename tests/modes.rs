//! Advanced and connect modes, and ban_requires_handshake, end to end: a
//! victim namespace runs nftsentry, an attacker namespace scans it with real
//! nmap (and nc) over IPv4 and IPv6.
mod common;
use common::scene::*;
use common::*;
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn6, bind, listen, setsockopt, socket,
    sockopt,
};

fn addrs(v6: bool) -> (&'static str, &'static str, &'static str) {
    if v6 {
        (ATTACKER6, VICTIM6, "-6")
    } else {
        (ATTACKER4, VICTIM4, "-4")
    }
}

fn advanced(tag: &str, extra: &str, tcp: &str, udp: &str) -> Scene {
    let tables = format!("[tcp]\nmode = \"advanced\"\n{tcp}\n[udp]\nmode = \"advanced\"\n{udp}\n");
    Scene::with_tables(tag, extra, &tables, "# nothing\n", |_| {})
}

#[test]
fn advanced_syn_scan_of_the_low_ports_bans() {
    for v6 in [false, true] {
        let s = advanced(if v6 { "adv6" } else { "adv4" }, "", "", "");
        let (a, _, _) = addrs(v6);
        let out = s.nmap("-sS", v6, "1-1023");
        assert!(
            s.wait_banned(a),
            "nmap -sS -p1-1023 did not ban {a}\nnmap: {out}\nlog: {}",
            s.log()
        );
        assert!(
            s.log().contains(&format!(
                "attackalert: TCP SYN/Normal scan from host: {a}/{a} to TCP port: "
            )),
            "{}",
            s.log()
        );
        // Once banned, nothing answers (over IPv6 not even neighbour
        // discovery): no port shows as closed any more.
        let again = s.nmap("-sS", v6, "1-20");
        assert!(!again.contains("closed"), "{again}");
    }
}

#[test]
fn advanced_udp_scan_over_a_range_bans() {
    for v6 in [false, true] {
        let s = advanced(if v6 { "advu6" } else { "advu4" }, "", "", "");
        let (a, _, _) = addrs(v6);
        let out = s.nmap("-sU", v6, "600-640");
        assert!(
            s.wait_banned(a),
            "nmap -sU did not ban {a}\nnmap: {out}\nlog: {}",
            s.log()
        );
        assert!(
            s.log().contains(&format!(
                "attackalert: UDP scan from host: {a}/{a} to UDP port: 6"
            )),
            "{}",
            s.log()
        );
    }
}

#[test]
fn ports_above_the_advanced_range_and_excluded_ports_never_trip() {
    for v6 in [false, true] {
        let s = advanced(
            if v6 { "advx6" } else { "advx4" },
            "",
            "advanced_ports = 1024\nadvanced_exclude = \"113,139,700-710\"",
            "",
        );
        let (a, _, _) = addrs(v6);
        s.nmap("-sS", v6, "113,139,700-710,1024,5000");
        s.nmap("-sF", v6, "113,139,1024");
        s.nmap("-sU", v6, "67,137,138,520,1024,5353");
        s.settle();
        assert!(
            !s.banned(a),
            "excluded or unwatched ports banned {a}:\n{}",
            s.log()
        );
        assert!(!s.log().contains("attackalert"), "{}", s.log());
        // The same scene still bans on a watched port: the scans reached it.
        s.nmap("-sS", v6, "112");
        assert!(s.wait_banned(a), "{}", s.log());
    }
}

#[test]
fn service_started_after_the_daemon_is_never_a_tripwire_and_trips_again_when_stopped() {
    for v6 in [false, true] {
        // Its clients complete handshakes with the services, which makes
        // them live peers (protect_live_peers), not banned on a SYN scan:
        // this test is about which ports are tripwires.
        let mut s = advanced(
            if v6 { "advs6" } else { "advs4" },
            "protect_live_peers = false\n",
            "",
            "",
        );
        let (a, target, fam) = addrs(v6);
        let any = if v6 { "::" } else { "0.0.0.0" };
        let mut tcp = s.pair.victim.cmd("nc");
        tcp.args([fam, "-k", "-l", any, "222"])
            .stdout(Stdio::null());
        let tcp_pid = s.pair.victim.spawn(&mut tcp);
        let mut udp = s.pair.victim.cmd("nc");
        udp.args([fam, "-u", "-k", "-l", any, "333"])
            .stdout(Stdio::null());
        let udp_pid = s.pair.victim.spawn(&mut udp);
        std::thread::sleep(Duration::from_millis(300));
        // Clients of both services, and a SYN "scan" of the TCP one.
        s.pair
            .attacker
            .sh(&format!("nc {fam} -z -w 1 {target} 222"));
        s.pair
            .attacker
            .sh(&format!("echo x | nc {fam} -u -w 1 {target} 333 || true"));
        s.nmap("-sS", v6, "222");
        s.settle();
        assert!(
            !s.banned(a),
            "a client of a real service was banned:\n{}",
            s.log()
        );
        assert!(!s.log().contains("attackalert"), "{}", s.log());
        for pid in [tcp_pid, udp_pid] {
            let mut child = s.pair.victim.take_child(pid);
            child.kill().unwrap();
            child.wait().unwrap();
        }
        // No refresh interval to wait for: the kernel looks per packet.
        s.nmap("-sS", v6, "222");
        assert!(
            s.wait_banned(a),
            "no ban once the service stopped (v6={v6}); log:\n{}",
            s.log()
        );
    }
}

/// A listening TCP socket made in the victim namespace: bound to `addr`
/// (IPv6), dual-stack unless `v6only`.
fn v6_listener(s: &Scene, addr: std::net::Ipv6Addr, port: u16, v6only: bool) -> OwnedFd {
    s.pair.victim.enter(move || {
        let fd = socket(
            AddressFamily::Inet6,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        setsockopt(&fd, sockopt::Ipv6V6Only, &v6only).unwrap();
        let sa = SockaddrIn6::from(std::net::SocketAddrV6::new(addr, port, 0, 0));
        // The address may still be tentative (DAD) right after setup.
        let ok = wait_until(Duration::from_secs(5), || {
            bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &sa).is_ok()
        });
        assert!(ok, "cannot bind [{addr}]:{port}");
        listen(&fd, Backlog::new(16).unwrap()).unwrap();
        fd
    })
}

#[test]
fn specific_ipv6_and_dual_stack_listeners_are_never_tripwires() {
    // The clients below become live peers (protect_live_peers), which a
    // SYN scan does not ban: this test is about which ports are tripwires.
    let s = advanced("advds", "protect_live_peers = false\n", "", "");
    // A service on the victim's own IPv6 address only, and one on [::]
    // that also takes IPv4 (IPV6_V6ONLY off), as many daemons bind.
    let _specific = v6_listener(&s, VICTIM6.parse().unwrap(), 444, true);
    let _dual = v6_listener(&s, std::net::Ipv6Addr::UNSPECIFIED, 555, false);
    s.nmap("-sS", true, "444,555");
    s.nmap("-sS", false, "555");
    s.pair.attacker.sh(&format!(
        "nc -6 -z -w 1 {VICTIM6} 444; nc -4 -z -w 1 {VICTIM4} 555"
    ));
    s.settle();
    assert!(
        !s.banned(ATTACKER4) && !s.banned(ATTACKER6),
        "a probe of a port with a listener banned:\n{}",
        s.log()
    );
    assert!(!s.log().contains("attackalert"), "{}", s.log());
    // IPv4 to 444 has no service (the socket is the IPv6 address's): a probe.
    s.nmap("-sS", false, "444");
    assert!(s.wait_banned(ATTACKER4), "{}", s.log());
}

#[test]
fn the_hosts_own_traffic_never_trips_with_every_port_watched() {
    let tcp = "advanced_ports = 65535\nadvanced_exclude = []";
    let mut s = advanced("advout", "", tcp, tcp);
    // Services on the attacker side that the victim uses: TCP, and UDP
    // with a reply (as DNS), on high and low ports.
    let mut srv = s.pair.attacker.cmd("nc");
    srv.args(["-k", "-l", "0.0.0.0", "8080"])
        .stdout(Stdio::null());
    s.pair.attacker.spawn(&mut srv);
    let mut srv6 = s.pair.attacker.cmd("nc");
    srv6.args(["-6", "-k", "-l", "::", "443"])
        .stdout(Stdio::null());
    s.pair.attacker.spawn(&mut srv6);
    // A UDP "resolver" that answers every query.
    let mut dns = s.pair.attacker.cmd("sh");
    dns.args([
        "-c",
        "while true; do echo answer | nc -u -l -w 1 -q 1 0.0.0.0 53 >/dev/null 2>&1 || true; done",
    ]);
    s.pair.attacker.spawn(&mut dns);
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        s.pair
            .victim
            .sh(&format!("echo hello | nc -N -w 2 {ATTACKER4} 8080 || true"));
        s.pair.victim.sh(&format!(
            "echo hello | nc -6 -N -w 2 {ATTACKER6} 443 || true"
        ));
        s.pair
            .victim
            .sh(&format!("echo query | nc -u -w 1 {ATTACKER4} 53 || true"));
    }
    s.pair.victim.sh(&format!(
        "ping -c 3 -i 0.2 {ATTACKER4}; ping -6 -c 3 -i 0.2 {ATTACKER6}"
    ));
    // ICMP from the attacker, too.
    s.pair.attacker.sh(&format!(
        "ping -c 3 -i 0.2 {VICTIM4}; ping -6 -c 3 -i 0.2 {VICTIM6}"
    ));
    s.settle();
    assert!(
        !s.banned(ATTACKER4) && !s.banned(ATTACKER6),
        "the host's own traffic banned its peer:\n{}",
        s.log()
    );
    assert!(!s.log().contains("attackalert"), "{}", s.log());
    // The full range is really watched: a probe of a high port bans.
    s.nmap("-sS", false, "40000");
    assert!(s.wait_banned(ATTACKER4), "{}", s.log());
}

fn connect_scene(tag: &str, extra: &str, tcp_mode: &str, udp_mode: &str) -> Scene {
    let tables = format!(
        "[tcp]\nmode = {tcp_mode}\nports = \"1,11,79\"\n[udp]\nmode = {udp_mode}\nports = \"7,9\"\n"
    );
    let s = Scene::with_tables(tag, extra, &tables, "# nothing\n", |_| {});
    assert!(
        wait_until(Duration::from_secs(5), || s
            .log()
            .contains("connect mode listening on")),
        "{}",
        s.log()
    );
    s
}

#[test]
fn connect_mode_bans_a_connect_scan_and_sends_the_banner() {
    for v6 in [false, true] {
        let s = connect_scene(
            if v6 { "con6" } else { "con4" },
            "port_banner = \"GO AWAY\\n\"\nscan_trigger = 2",
            "\"connect\"",
            "\"connect\"",
        );
        let (a, target, fam) = addrs(v6);
        // A client gets the banner; one connection is below the trigger.
        let out = s
            .pair
            .attacker
            .sh(&format!("nc {fam} -w 3 {target} 11 </dev/null"));
        let got = String::from_utf8_lossy(&out.stdout);
        assert_eq!(got, "GO AWAY\n", "banner; log:\n{}", s.log());
        assert!(
            wait_until(Duration::from_secs(5), || s.log().contains(&format!(
                "attackalert: Connect from host: {a}/{a} to TCP port: 11"
            ))),
            "{}",
            s.log()
        );
        assert!(!s.banned(a), "one connection banned:\n{}", s.log());
        // nmap -sT completes handshakes: the next one crosses the trigger.
        let scan = s.nmap("-sT", v6, "1,79");
        assert!(
            s.wait_banned(a),
            "nmap -sT did not ban {a}\nnmap: {scan}\nlog: {}",
            s.log()
        );
    }
}

/// A UDP datagram's source may be forged: connect mode logs and bans it,
/// but sends no banner back (it would reflect traffic onto the forged
/// address; PortSentry answered every datagram).
#[test]
fn connect_mode_udp_logs_and_bans_and_reflects_nothing() {
    for v6 in [false, true] {
        let s = connect_scene(
            if v6 { "conu6" } else { "conu4" },
            "port_banner = \"GO AWAY\"",
            "\"off\"",
            "\"connect\"",
        );
        let (a, target, fam) = addrs(v6);
        let out = s
            .pair
            .attacker
            .sh(&format!("echo hi | nc {fam} -u -w 2 {target} 9"));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "",
            "a banner came back"
        );
        assert!(s.wait_banned(a), "{}", s.log());
        assert!(
            s.log().contains(&format!(
                "attackalert: Connect from host: {a}/{a} to UDP port: 9"
            )),
            "{}",
            s.log()
        );
    }
}

#[test]
fn connect_mode_skips_a_port_in_use_and_keeps_the_others() {
    let s = Scene::with_tables(
        "conbusy",
        "",
        "[tcp]\nmode = \"connect\"\nports = \"11,79\"\n[udp]\nmode = \"off\"\n",
        "# nothing\n",
        |p| {
            let mut c = p.victim.cmd("nc");
            c.args(["-k", "-l", "0.0.0.0", "79"]).stdout(Stdio::null());
            p.victim.spawn(&mut c);
            std::thread::sleep(Duration::from_millis(300));
        },
    );
    assert!(
        wait_until(Duration::from_secs(5), || s.log().contains(
            "TCP port 79 is in use by another program: not listening on it"
        )),
        "{}",
        s.log()
    );
    assert!(
        s.log().contains("connect mode listening on TCP ports 11"),
        "{}",
        s.log()
    );
    // The other program's clients are not ours.
    s.pair.attacker.sh(&format!("nc -z -w 1 {VICTIM4} 79"));
    s.settle();
    assert!(!s.banned(ATTACKER4), "{}", s.log());
    s.pair.attacker.sh(&format!("nc -z -w 1 {VICTIM4} 11"));
    assert!(s.wait_banned(ATTACKER4), "{}", s.log());
}

#[test]
fn ban_requires_handshake_logs_syn_scans_and_bans_connects() {
    for v6 in [false, true] {
        let s = connect_scene(
            if v6 { "hs6" } else { "hs4" },
            "ban_requires_handshake = true",
            "[\"advanced\", \"connect\"]",
            "\"advanced\"",
        );
        let (a, _, _) = addrs(v6);
        s.nmap("-sS", v6, "20-30");
        s.nmap("-sU", v6, "600-605");
        assert!(
            wait_until(Duration::from_secs(5), || {
                s.log().contains(&format!(
                "attackalert: Host {a} not blocked: ban_requires_handshake is set and it completed no TCP handshake"
            ))
            }),
            "{}",
            s.log()
        );
        assert!(
            s.log().contains(&format!(
                "attackalert: TCP SYN/Normal scan from host: {a}/{a}"
            )),
            "{}",
            s.log()
        );
        s.settle();
        assert!(!s.banned(a), "a SYN scan banned:\n{}", s.log());
        // A SYN scan of a connect port is not a handshake either.
        s.nmap("-sS", v6, "11");
        s.settle();
        assert!(!s.banned(a), "{}", s.log());
        let scan = s.nmap("-sT", v6, "1");
        assert!(
            s.wait_banned(a),
            "connect scan did not ban {a}\nnmap: {scan}\nlog: {}",
            s.log()
        );
    }
}
