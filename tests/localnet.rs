//! Discovery of the local addresses never to ban, read from real namespaces.
mod common;
use common::*;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use nftsentry::cidr::Cidr;
use nftsentry::host::localnet::{self, Gateway, LocalIgnore, Origin, RT_TABLE_MAIN};
use nftsentry::host::resolvers::ResolverFiles;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The gateways' addresses, as route_gateways lists them.
fn gateway_addrs() -> Vec<IpAddr> {
    localnet::route_gateways()
        .unwrap()
        .into_iter()
        .map(|g| g.addr)
        .collect()
}

fn resolver(file: &std::path::Path) -> Origin {
    Origin::Resolver {
        file: file.to_path_buf(),
        upstream_of: None,
    }
}

const DEFAULT_GATEWAY: Origin = Origin::Gateway {
    table: Some(RT_TABLE_MAIN),
    default: true,
};

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
    let found = ns
        .enter(move || localnet::discover(&ResolverFiles::only(&path)))
        .unwrap();
    assert_eq!(
        found,
        vec![
            entry("127.0.0.0/8", Origin::Loopback),
            entry("::1", Origin::Loopback),
            // 127.0.0.53 is inside 127.0.0.0/8 and the repeat is dropped.
            entry("198.51.100.53", resolver(&conf.0)),
            entry("2001:db8:53::1", resolver(&conf.0)),
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
    assert_eq!(ns.enter(gateway_addrs), Vec::<IpAddr>::new());
}

#[test]
fn missing_resolv_conf_means_no_resolvers() {
    let ns = Netns::new("lnnr");
    let found = ns
        .enter(|| {
            localnet::discover(&ResolverFiles::only(std::path::Path::new(
                "/nonexistent/nftsentry/resolv.conf",
            )))
        })
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

    let gws = p.victim.enter(gateway_addrs);
    assert_eq!(gws, vec![ip(ATTACKER4), ip(ATTACKER6)]);

    let conf = TempFile::new("gw", "nameserver 192.0.2.2\nnameserver 198.51.100.1\n");
    let path = conf.0.clone();
    let found = p
        .victim
        .enter(move || localnet::discover(&ResolverFiles::only(&path)))
        .unwrap();
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
        entry(ATTACKER4, DEFAULT_GATEWAY),
        entry(ATTACKER6, DEFAULT_GATEWAY),
        entry("198.51.100.1", resolver(&conf.0)),
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
fn gateways_of_every_route_of_every_table() {
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
    // Policy routing and VPNs put their default routes in other tables:
    // those gateways are neighbours too.
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
    p.victim.ip(&[
        "-6",
        "route",
        "add",
        "default",
        "via",
        "2001:db8:1::9",
        "table",
        "100",
    ]);
    // So are the gateways of routes that are not default routes.
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
    // And those of nexthop objects, which routes use by id.
    p.victim.ip(&[
        "nexthop",
        "add",
        "id",
        "7",
        "via",
        "192.0.2.12",
        "dev",
        "eth0",
    ]);
    p.victim.ip(&[
        "route",
        "add",
        "198.51.100.64/26",
        "nhid",
        "7",
        "table",
        "200",
    ]);
    p.victim.ip(&[
        "nexthop",
        "add",
        "id",
        "8",
        "via",
        "2001:db8:1::12",
        "dev",
        "eth0",
    ]);
    // A route without a gateway (a ban's blackhole route) adds nothing.
    p.victim.ip(&["route", "add", "blackhole", "198.18.0.5/32"]);

    let gws = p.victim.enter(|| localnet::route_gateways().unwrap());
    let g = |a: &str, table: Option<u32>, default: bool| Gateway {
        addr: ip(a),
        table,
        default,
    };
    let main = Some(RT_TABLE_MAIN);
    // The main table's default routes first, then the rest in dump order.
    assert_eq!(
        gws[..4],
        [
            g(ATTACKER4, main, true),
            g("198.51.100.2", main, true),
            g(ATTACKER6, main, true),
            g("2001:db8:1::3", main, true),
        ],
        "{gws:#?}"
    );
    for want in [
        g("192.0.2.9", Some(1000), true),
        g("192.0.2.10", Some(100), true),
        g("2001:db8:1::9", Some(100), true),
        g("192.0.2.11", main, false),
        g("2001:db8:1::4", main, false),
        g("192.0.2.12", Some(200), false),
        g("2001:db8:1::12", None, false),
    ] {
        assert!(gws.contains(&want), "{want:?} missing from {gws:#?}");
    }
    assert_eq!(gws.len(), 11, "each address once: {gws:#?}");
}

#[test]
fn ipv4_default_via_ipv6_neighbour() {
    let p = Pair::new("lnvia");
    // RFC 5549 style: the IPv4 default route's next hop is an IPv6 address (RTA_VIA).
    p.victim.ip(&[
        "route", "add", "default", "via", "inet6", ATTACKER6, "dev", "eth0",
    ]);
    let gws = p.victim.enter(gateway_addrs);
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

/// resolv.conf names this host itself (a dnsmasq on an interface address,
/// not only loopback): dnsmasq's upstreams, from its resolv file, its
/// config and its conf-dir, are neighbours too, each with its file.
#[test]
fn a_local_forwarder_brings_dnsmasqs_upstreams() {
    let p = Pair::new("lndnsm");
    let root = TempDir::new("lndnsm");
    std::fs::create_dir_all(root.path.join("etc/dnsmasq.d")).unwrap();
    std::fs::create_dir_all(root.path.join("run/dnsmasq")).unwrap();
    root.file("etc/resolv.conf", &format!("nameserver {VICTIM4}\n"));
    root.file("run/dnsmasq/resolv.conf", "nameserver 198.51.100.81\n");
    root.file(
        "etc/dnsmasq.conf",
        "server=/example.org/198.51.100.82#5353\nserver=/local/\n",
    );
    root.file("etc/dnsmasq.d/vpn.conf", "server=2001:db8:53::83@eth0\n");
    let files = ResolverFiles::under(&root.path);
    let found = p.victim.enter(move || localnet::discover(&files)).unwrap();
    let up = |file: &str| Origin::Resolver {
        file: root.path.join(file),
        upstream_of: Some(nftsentry::host::resolvers::Upstream::Dnsmasq),
    };
    for want in [
        entry("198.51.100.81", up("run/dnsmasq/resolv.conf")),
        entry("198.51.100.82", up("etc/dnsmasq.conf")),
        entry("2001:db8:53::83", up("etc/dnsmasq.d/vpn.conf")),
    ] {
        assert!(found.contains(&want), "{want:?} missing from {found:#?}");
    }
    // VICTIM4 is listed once, as the interface address it is.
    assert!(found.contains(&entry(VICTIM4, Origin::Interface("eth0".into()))));
    assert_eq!(
        found.iter().filter(|l| l.net.addr() == ip(VICTIM4)).count(),
        1
    );
    assert_eq!(
        found[0].origin.reason(),
        "loopback",
        "reasons come from Origin::reason"
    );
    assert_eq!(
        up("etc/dnsmasq.conf").reason(),
        format!(
            "resolver in {} (dnsmasq's upstream)",
            root.path.join("etc/dnsmasq.conf").display()
        )
    );
}
