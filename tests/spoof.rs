//! Spoofing: the cheapest way to turn a scan blocker against its host is to
//! send probes that claim to come from the host's own addresses, its
//! gateway or its resolvers, hoping it bans them. Each such probe must reach
//! the tripwires (so the test proves something), be logged as ignored with
//! the reason, and never be banned; the same probes from an address that is
//! not protected must ban it (so the test can fail).
mod common;
use common::spoof::{FIN, L4, SYN, Spoofer, accept_own_sources, packet, pin_victim_neighbours};
use common::*;
use std::net::IpAddr;
use std::time::Duration;

const GATEWAY4: &str = "192.0.2.254";
const GATEWAY6: &str = "2001:db8:1::fe";
const RESOLVER4: &str = "198.51.100.53";
const RESOLVER6: &str = "2001:db8:53::53";
const IGNORED4: &str = "198.51.100.77";
const IGNORED6: &str = "2001:db8:77::5";
/// Not protected: the same probes from here must ban it.
const CONTROL4: &str = "198.18.0.99";
const CONTROL6: &str = "2001:db8:99::9";

/// A victim whose default routes go through the attacker's side, with two
/// resolvers and an ignore file, running nftsentry (scan_trigger 0: the first
/// probe of a source that is not protected bans it).
fn scene(tag: &str) -> (scene::Scene, String) {
    let s = scene::Scene::build(
        tag,
        "scan_trigger = 0\nban_time = \"1h\"\n",
        &format!("{IGNORED4}\n2001:db8:77::/48\n"),
        |pair| {
            set_resolv_conf(
                &pair.victim,
                &format!("nameserver {RESOLVER4}\nnameserver {RESOLVER6}\n"),
            );
            pair.victim
                .ip(&["route", "add", "default", "via", GATEWAY4]);
            pair.victim
                .ip(&["-6", "route", "add", "default", "via", GATEWAY6]);
            accept_own_sources(&pair.victim, "eth0");
            pin_victim_neighbours(pair);
        },
    );
    // The victim's link-local address, also its own.
    let ll = s
        .pair
        .victim
        .ip(&["-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"]);
    let ll = String::from_utf8(ll.stdout).unwrap();
    let ll = ll
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .expect("link-local address")
        .to_string();
    (s, ll)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn spoofed_own_gateway_resolver_and_ignored_sources_are_logged_never_banned() {
    let (s, link_local) = scene("spf");
    let spoofer = Spoofer::open(&s.pair.attacker);
    // (source, the reason the log must give)
    let protected: Vec<(String, String)> = vec![
        (VICTIM4.into(), "local address on eth0".into()),
        (VICTIM6.into(), "local address on eth0".into()),
        (link_local.clone(), "local address on eth0".into()),
        ("127.0.0.1".into(), "loopback".into()),
        (GATEWAY4.into(), "default gateway".into()),
        (GATEWAY6.into(), "default gateway".into()),
        (RESOLVER4.into(), "resolver in /etc/resolv.conf".into()),
        (RESOLVER6.into(), "resolver in /etc/resolv.conf".into()),
        (IGNORED4.into(), "ignore file ".into()),
        (IGNORED6.into(), "ignore file ".into()),
    ];
    let probes = [
        (L4::Tcp { flags: SYN }, 1),
        (L4::Tcp { flags: FIN }, 11),
        (L4::Tcp { flags: SYN }, 79),
        (L4::Udp, 7),
    ];
    let send_all = |src: &str| {
        let dst = if src.contains(':') {
            ip(VICTIM6)
        } else {
            ip(VICTIM4)
        };
        for (i, (l4, port)) in probes.iter().enumerate() {
            spoofer.send_sure(&packet(ip(src), dst, *l4, 40000 + i as u16, *port));
        }
    };
    for (src, _) in &protected {
        send_all(src);
    }
    for src in [CONTROL4, CONTROL6] {
        send_all(src);
    }
    // The controls prove the probes got through and would have banned.
    for c in [CONTROL4, CONTROL6] {
        assert!(
            s.wait_banned(c),
            "control {c} not banned; log:\n{}",
            s.log()
        );
    }
    s.settle();
    let log = s.log();
    for (src, why) in &protected {
        assert!(!s.banned(src), "{src} was banned; log:\n{log}");
        let said = format!("attackalert: Host: {src} found in ignore list ({why}");
        assert!(
            log.contains(&said),
            "no line `{said}` for {src}; log:\n{log}"
        );
        assert!(
            !log.contains(&format!("host: {src}/{src}")),
            "{src} got an alert line as if it were not ignored:\n{log}"
        );
    }
    // One line per source: the other probes are counted, not logged, until
    // a minute has passed.
    let lines = log.matches("found in ignore list").count();
    assert_eq!(lines, protected.len(), "{log}");

    // A second wave: still not banned, still no new lines within the minute.
    for (src, _) in &protected {
        send_all(src);
    }
    s.settle();
    for (src, _) in &protected {
        assert!(!s.banned(src), "{src} banned by the second wave");
    }
    assert_eq!(s.log().matches("found in ignore list").count(), lines);
}

#[test]
fn many_spoofed_ignored_sources_cannot_flood_the_log() {
    // An ignored /48: every probe from it is ignored, each from another
    // source address; the log gets at most 100 such lines a minute.
    let (s, _) = scene("spfl");
    let spoofer = Spoofer::open(&s.pair.attacker);
    for i in 0..500u32 {
        let src: std::net::Ipv6Addr = format!("2001:db8:77::{:x}:{:x}", i >> 8, i & 0xff)
            .parse()
            .unwrap();
        spoofer.send_sure(&packet(
            IpAddr::V6(src),
            ip(VICTIM6),
            L4::Tcp { flags: SYN },
            40000,
            1,
        ));
    }
    assert!(
        wait_until(Duration::from_secs(5), || s
            .log()
            .matches("found in ignore list")
            .count()
            >= 100),
        "{}",
        s.log()
    );
    s.settle();
    let log = s.log();
    assert_eq!(log.matches("found in ignore list").count(), 100, "{log}");
    // No ban of an address or prefix in there.
    let bans = s.pair.victim.enter(|| {
        let mut sock = nftsentry::kernel::nft::NftSocket::open().unwrap();
        nftsentry::table::bans::list(&mut sock, "nftsentry", 64).unwrap()
    });
    assert!(
        !bans
            .iter()
            .any(|b| b.addr.to_string().starts_with("2001:db8:77:")),
        "{bans:?}"
    );
}
