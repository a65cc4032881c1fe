//! Discovery of the local addresses never to ban, read from real namespaces.
mod common;
use common::*;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use nftsentry::cidr::Cidr;
use nftsentry::host::localnet::{self, LocalIgnore, Origin};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn entry(net: &str, origin: Origin) -> LocalIgnore {
    LocalIgnore {
        net: net.parse::<Cidr>().unwrap(),
        origin,
    }
}

/// A resolv.conf of the test's own, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, content: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("nftsentry-localnet-{tag}-{}", std::process::id()));
        std::fs::write(&path, content).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn fresh_namespace_has_loopback_and_resolvers_only() {
    let ns = Netns::new("lnlo");
    let conf = TempFile::new(
        "lo",
        "# test\nnameserver 198.51.100.53\nnameserver 127.0.0.53\noptions edns0\n\
         nameserver 2001:db8:53::1%lo\nnameserver 198.51.100.53\n",
    );
    let path = conf.0.clone();
    let found = ns.enter(move || localnet::discover(&path)).unwrap();
    assert_eq!(
        found,
        vec![
            entry("127.0.0.0/8", Origin::Loopback),
            entry("::1", Origin::Loopback),
            // 127.0.0.53 is inside 127.0.0.0/8 and the repeat is dropped.
            entry("198.51.100.53", Origin::Resolver),
            entry("2001:db8:53::1", Origin::Resolver),
        ]
    );

    // The parts: lo's own addresses, and no default route at all.
    let addrs = ns.enter(localnet::interface_addresses).unwrap();
    assert_eq!(
        addrs,
        vec![
            ("lo".to_string(), ip("127.0.0.1")),
            ("lo".to_string(), ip("::1"))
        ]
    );
    assert_eq!(
        ns.enter(localnet::default_gateways).unwrap(),
        Vec::<IpAddr>::new()
    );
}

#[test]
fn missing_resolv_conf_means_no_resolvers() {
    let ns = Netns::new("lnnr");
    let found = ns
        .enter(|| localnet::discover(std::path::Path::new("/nonexistent/nftsentry/resolv.conf")))
        .unwrap();
    assert_eq!(
        found,
        vec![
            entry("127.0.0.0/8", Origin::Loopback),
            entry("::1", Origin::Loopback)
        ]
    );
}

/// The link-local address the kernel gave the victim's eth0, once it exists.
fn link_local(ns: &Netns) -> IpAddr {
    let mut found = None;
    let ok = wait_until(Duration::from_secs(5), || {
        let out = ns.ip(&["-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        found = text
            .split_whitespace()
            .skip_while(|w| *w != "inet6")
            .nth(1)
            .and_then(|a| a.split('/').next())
            .and_then(|a| a.parse().ok());
        found.is_some()
    });
    assert!(ok, "eth0 got no IPv6 link-local address");
    found.unwrap()
}

#[test]
fn pair_victim_sees_its_addresses_and_gateways() {
    let p = Pair::new("lngw");
    p.victim.ip(&["route", "add", "default", "via", ATTACKER4]);
    p.victim
        .ip(&["-6", "route", "add", "default", "via", ATTACKER6]);
    let ll = link_local(&p.victim);
    assert!(
        matches!(ll, IpAddr::V6(a) if a.segments()[0] == 0xfe80),
        "{ll}"
    );

    let addrs = p.victim.enter(localnet::interface_addresses).unwrap();
    for want in [ip(VICTIM4), ip(VICTIM6), ll, ip("127.0.0.1"), ip("::1")] {
        assert!(
            addrs.iter().any(|(_, a)| *a == want),
            "{want} missing from {addrs:?}"
        );
    }
    let eth0: Vec<IpAddr> = addrs
        .iter()
        .filter(|(n, _)| n == "eth0")
        .map(|(_, a)| *a)
        .collect();
    assert_eq!(
        eth0.len(),
        3,
        "eth0 should have exactly its v4, v6 and link-local address: {addrs:?}"
    );
    // The peer's addresses are not ours.
    assert!(
        !addrs
            .iter()
            .any(|(_, a)| *a == ip(ATTACKER4) || *a == ip(ATTACKER6))
    );

    let gws = p.victim.enter(localnet::default_gateways).unwrap();
    assert_eq!(gws, vec![ip(ATTACKER4), ip(ATTACKER6)]);

    let conf = TempFile::new("gw", "nameserver 192.0.2.2\nnameserver 198.51.100.1\n");
    let path = conf.0.clone();
    let found = p.victim.enter(move || localnet::discover(&path)).unwrap();
    let eth0 = || Origin::Interface("eth0".into());
    for want in [
        entry("127.0.0.0/8", Origin::Loopback),
        entry("::1", Origin::Loopback),
        entry(VICTIM4, eth0()),
        entry(VICTIM6, eth0()),
        LocalIgnore {
            net: Cidr::host(ll),
            origin: eth0(),
        },
        entry(ATTACKER4, Origin::Gateway),
        entry(ATTACKER6, Origin::Gateway),
        entry("198.51.100.1", Origin::Resolver),
    ] {
        assert!(found.contains(&want), "{want:?} missing from {found:?}");
    }
    // Interface addresses are hosts, never their subnets; 192.0.2.2 is listed
    // once, as the gateway it was first found as.
    assert_eq!(found.len(), 8, "{found:?}");
    assert!(found.iter().all(|l| l.origin == Origin::Loopback
        || l.net.prefix() == if l.net.is_ipv4() { 32 } else { 128 }));
}

#[test]
fn multipath_and_non_main_default_routes() {
    let p = Pair::new("lnmp");
    // A second neighbour on the link, so a multipath route has two gateways.
    p.victim
        .ip(&["addr", "add", "198.51.100.1/24", "dev", "eth0"]);
    p.victim.ip(&[
        "route",
        "add",
        "default",
        "nexthop",
        "via",
        ATTACKER4,
        "dev",
        "eth0",
        "nexthop",
        "via",
        "198.51.100.2",
        "dev",
        "eth0",
    ]);
    p.victim.ip(&[
        "-6",
        "route",
        "add",
        "default",
        "nexthop",
        "via",
        ATTACKER6,
        "dev",
        "eth0",
        "nexthop",
        "via",
        "2001:db8:1::3",
        "dev",
        "eth0",
    ]);
    // A default route outside the main table is policy routing, not the
    // host's gateway: it is not listed.
    p.victim.ip(&[
        "route",
        "add",
        "default",
        "via",
        "192.0.2.9",
        "table",
        "1000",
    ]);
    p.victim.ip(&[
        "route",
        "add",
        "default",
        "via",
        "192.0.2.10",
        "table",
        "100",
    ]);
    // A non-default route's gateway is not a default gateway.
    p.victim
        .ip(&["route", "add", "198.51.100.128/25", "via", "192.0.2.11"]);
    p.victim.ip(&[
        "-6",
        "route",
        "add",
        "2001:db8:99::/48",
        "via",
        "2001:db8:1::4",
    ]);

    let mut gws = p.victim.enter(localnet::default_gateways).unwrap();
    gws.sort();
    let mut want = vec![
        ip(ATTACKER4),
        ip("198.51.100.2"),
        ip(ATTACKER6),
        ip("2001:db8:1::3"),
    ];
    want.sort();
    assert_eq!(gws, want);
}

#[test]
fn ipv4_default_via_ipv6_neighbour() {
    let p = Pair::new("lnvia");
    // RFC 5549 style: the IPv4 default route's next hop is an IPv6 address (RTA_VIA).
    p.victim.ip(&[
        "route", "add", "default", "via", "inet6", ATTACKER6, "dev", "eth0",
    ]);
    let gws = p.victim.enter(localnet::default_gateways).unwrap();
    assert_eq!(gws, vec![ip(ATTACKER6)]);
}

#[test]
fn many_addresses_need_several_datagrams() {
    // Enough addresses that the dump spans several datagrams (NLM_F_MULTI).
    let ns = Netns::new("lnmany");
    // On lo: no dummy or veth needed (the dummy module may be missing).
    let mut batch = String::new();
    for i in 0..1000u32 {
        batch.push_str(&format!(
            "addr add 2001:db8:2::{:x}/128 dev lo nodad\n",
            i + 1
        ));
    }
    let file = TempFile::new("batch", &batch);
    ns.ip(&["-batch", file.0.to_str().unwrap()]);
    let addrs = ns.enter(localnet::interface_addresses).unwrap();
    let added: Vec<&IpAddr> = addrs
        .iter()
        .filter(|(n, a)| n == "lo" && !a.is_loopback())
        .map(|(_, a)| a)
        .collect();
    assert_eq!(added.len(), 1000);
    for i in [1u32, 500, 1000] {
        assert!(
            added.contains(&&ip(&format!("2001:db8:2::{i:x}"))),
            "2001:db8:2::{i:x} missing"
        );
    }
}

#[test]
fn point_to_point_peer_is_not_ours() {
    let ns = Netns::new("lnp2p");
    ns.ip(&[
        "addr",
        "add",
        "198.51.100.5",
        "peer",
        "198.51.100.6",
        "dev",
        "lo",
    ]);
    ns.ip(&[
        "-6",
        "addr",
        "add",
        "2001:db8:5::5",
        "peer",
        "2001:db8:5::6",
        "dev",
        "lo",
        "nodad",
    ]);
    let addrs = ns.enter(localnet::interface_addresses).unwrap();
    let lo: Vec<IpAddr> = addrs
        .iter()
        .filter(|(n, _)| n == "lo")
        .map(|(_, a)| *a)
        .collect();
    let mut want = vec![
        ip("127.0.0.1"),
        ip("198.51.100.5"),
        ip("::1"),
        ip("2001:db8:5::5"),
    ];
    let mut got = lo.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{addrs:?}");
}
