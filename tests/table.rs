//! The table over netlink in a fresh namespace: what the kernel lists must be
//! what the renderer prints.
mod common;
use common::*;
use nftsentry::kernel::nft::NftSocket;
use nftsentry::table::ruleset::Ruleset;
use std::time::Duration;

fn sample() -> Ruleset {
    Ruleset {
        flags: Default::default(),
        table: "nftsentry".into(),
        priority: -10,
        nflog_group: 7531,
        log_prefix: "nftsentry: ".into(),
        ban_time: Duration::from_secs(86400),
        set_size: 65536,
        ban_prefix6: 64,
        ignore4: vec![(0x7f00_0000, 0x7fff_ffff), (0xc000_0235, 0xc000_0235)],
        ignore6: vec![(1, 1)],
        watch_tcp: vec![(1, 1), (11, 11), (100, 200), (65535, 65535)],
        watch_udp: vec![],
        fleet: false,
        live_mark: Some(0x3000_0000),
        live_phase: false,
    }
}

#[test]
fn installed_table_lists_as_rendered() {
    let ns = Netns::new("tbl");
    let r = sample();
    let r2 = r.clone();
    ns.enter(move || {
        let mut s = NftSocket::open().unwrap();
        s.commit(&r2.install_batch()).unwrap();
        // a second install replaces the first cleanly
        s.commit(&r2.install_batch()).unwrap();
    });
    let listed = ns.nft(&["-s", "list", "table", "inet", "nftsentry"]);
    assert_eq!(
        normalize_ws(&listed),
        normalize_ws(&r.render()),
        "\nkernel:\n{listed}\nrendered:\n{}",
        r.render()
    );
}

#[test]
fn one_bad_object_leaves_no_table_and_names_it() {
    use nftsentry::kernel::nft::{FAMILY, expr};
    let ns = Netns::new("atom");
    let err = ns.enter(|| {
        let mut b = sample().install_batch();
        let mut exprs = expr::dport_in(expr::IPPROTO_TCP, "nope", 99);
        exprs.push(expr::drop());
        b.add_rule(FAMILY, "nftsentry", "input", exprs, "tcp dport @nope drop");
        let mut s = NftSocket::open().unwrap();
        let err = s.commit(&b).unwrap_err();
        assert!(!s.table_exists("nftsentry").unwrap());
        err
    });
    assert_eq!(
        err.message,
        "rule `tcp dport @nope drop` in chain input: No such file or directory"
    );
    let all = ns.nft(&["list", "ruleset"]);
    assert!(all.trim().is_empty(), "ruleset not empty: {all}");
}

#[test]
fn hundred_thousand_bans_with_timeouts_list_back() {
    use nftsentry::kernel::nft::{Batch, Element, FAMILY};
    let ns = Netns::new("100k");
    let (listed, elapsed) = ns.enter(|| {
        let mut s = NftSocket::open().unwrap();
        let r = Ruleset {
            flags: Default::default(),
            set_size: 200_000,
            ..sample()
        };
        s.commit(&r.install_batch()).unwrap();
        let elems: Vec<Element> = (0..100_000u32)
            .map(|i| Element {
                key: (0xc612_0000u32 + i).to_be_bytes().to_vec(), // 198.18.0.0/15
                timeout: Some(Duration::from_secs(3600)),
                expiration: None,
                interval_end: false,
                counter: None,
            })
            .collect();
        let start = std::time::Instant::now();
        let mut b = Batch::new();
        b.add_elements(FAMILY, "nftsentry", "blocked4", None, &elems);
        s.commit(&b).unwrap();
        let elapsed = start.elapsed();
        (s.list_elements("nftsentry", "blocked4").unwrap(), elapsed)
    });
    eprintln!(
        "100000 bans committed in {elapsed:?} ({:.0} elements/s)",
        100_000.0 / elapsed.as_secs_f64()
    );
    assert_eq!(listed.len(), 100_000);
    let mut keys: Vec<u32> = listed
        .iter()
        .map(|e| u32::from_be_bytes(e.key[..].try_into().unwrap()))
        .collect();
    keys.sort_unstable();
    assert_eq!(keys.first(), Some(&0xc612_0000));
    assert_eq!(keys.last(), Some(&(0xc612_0000 + 99_999)));
    for e in &listed {
        assert_eq!(e.timeout, Some(Duration::from_secs(3600)));
        let left = e.expiration.unwrap();
        assert!(
            left <= Duration::from_secs(3600) && left > Duration::from_secs(3500),
            "{left:?}"
        );
    }
}

#[test]
fn ipv6_ban_with_expiration_keeps_time_left() {
    use nftsentry::kernel::nft::{Batch, Element, FAMILY};
    let ns = Netns::new("v6");
    let listed = ns.enter(|| {
        let mut s = NftSocket::open().unwrap();
        s.commit(&sample().install_batch()).unwrap();
        let ip: std::net::Ipv6Addr = "2001:db8:dead::7".parse().unwrap();
        let mut b = Batch::new();
        b.add_elements(
            FAMILY,
            "nftsentry",
            "blocked6",
            None,
            &[Element {
                key: ip.octets().to_vec(),
                timeout: Some(Duration::from_secs(600)),
                expiration: Some(Duration::from_secs(120)),
                interval_end: false,
                counter: None,
            }],
        );
        s.commit(&b).unwrap();
        s.list_elements("nftsentry", "blocked6").unwrap()
    });
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].timeout, Some(Duration::from_secs(600)));
    // The ban sets count what each ban drops, from zero.
    assert_eq!(listed[0].counter, Some((0, 0)));
    let left = listed[0].expiration.unwrap();
    assert!(
        left <= Duration::from_secs(120) && left > Duration::from_secs(115),
        "{left:?}"
    );
    let text = ns.nft(&["list", "set", "inet", "nftsentry", "blocked6"]);
    assert!(
        text.contains("2001:db8:dead::7 counter packets 0 bytes 0 timeout 10m expires 1m5"),
        "{text}"
    );
}

/// The expressions of each rule as the kernel holds them
/// (`nft --debug=netlink list chain`), one block per rule.
fn rule_expressions(ns: &Netns) -> Vec<Vec<String>> {
    chain_expressions(ns, CHAIN)
}

fn chain_expressions(ns: &Netns, chain: &str) -> Vec<Vec<String>> {
    let out = ns.nft(&[
        "--debug=netlink",
        "list",
        "chain",
        "inet",
        "nftsentry",
        chain,
    ]);
    let mut rules = Vec::new();
    let mut cur: Option<Vec<String>> = None;
    for line in out.lines() {
        if line.starts_with(&format!("inet nftsentry {chain} ")) {
            rules.extend(cur.take());
            cur = Some(Vec::new());
        } else if let (Some(r), true) = (cur.as_mut(), line.starts_with("  [")) {
            r.push(line.trim().to_string());
        } else if !line.starts_with("  [") {
            rules.extend(cur.take());
        }
    }
    rules.extend(cur);
    rules
}

use nftsentry::table::ruleset::{CHAIN, LIVE_CHAIN};

#[test]
fn each_rule_is_what_nft_makes_of_its_text() {
    // The raw encodings (ct direction, fib, socket, log) byte for byte as
    // nft 1.0.6 encodes the rendered text, read back from the kernel.
    let ours = Netns::new("exprs");
    let theirs = Netns::new("exprn");
    let r = sample();
    let r2 = r.clone();
    ours.enter(move || {
        NftSocket::open()
            .unwrap()
            .commit(&r2.install_batch())
            .unwrap();
    });
    let dir = TempDir::new("exprn");
    let file = dir.file("table.nft", &r.render());
    run_ok(theirs.cmd("nft").arg("-f").arg(&file));
    let (a, b) = (rule_expressions(&ours), rule_expressions(&theirs));
    assert_eq!(a.len(), r.rules().len(), "{a:#?}");
    assert_eq!(a, b);
    // The rules of issue 15, as `nft --debug=netlink add rule` prints them.
    assert_eq!(
        a[0],
        [
            "[ ct load state => reg 1 ]",
            "[ bitwise reg 1 = ( reg 1 & 0x00000006 ) ^ 0x00000000 ]",
            "[ cmp neq reg 1 0x00000000 ]",
            "[ ct load direction => reg 1 ]",
            "[ cmp eq reg 1 0x00000001 ]",
            "[ immediate reg 0 return ]",
        ]
    );
    // The tripwire for a source without a live connection (after the two
    // of live peers).
    assert!(
        a[12].iter().any(|e| e == "[ fib daddr type => reg 1 ]"),
        "{:?}",
        a[12]
    );
    assert!(
        a[12].iter().any(|e| e == "[ cmp eq reg 1 0x00000002 ]"),
        "{:?}",
        a[12]
    );
    // The IPv6 prefix ban: the source masked to ban_prefix6, then looked up.
    assert!(
        a[4].iter()
            .any(|e| e == "[ bitwise reg 1 = ( reg 1 & 0xffffffff 0xffffffff 0x00000000 0x00000000 ) ^ 0x00000000 0x00000000 0x00000000 0x00000000 ]"),
        "{:?}",
        a[4]
    );
    // Issue 15, live peers: an assured inbound TCP connection jumps to the
    // live chain, whose rules are also what nft makes of their text.
    assert_eq!(
        a[6],
        [
            "[ meta load l4proto => reg 1 ]",
            "[ cmp eq reg 1 0x00000006 ]",
            "[ ct load direction => reg 1 ]",
            "[ cmp eq reg 1 0x00000000 ]",
            "[ ct load status => reg 1 ]",
            "[ bitwise reg 1 = ( reg 1 & 0x00000004 ) ^ 0x00000000 ]",
            "[ cmp neq reg 1 0x00000000 ]",
            "[ immediate reg 0 jump -> live ]",
        ]
    );
    assert!(
        a[10]
            .iter()
            .any(|e| e.starts_with("[ lookup reg 1 set live4")),
        "{:?}",
        a[10]
    );
    let (la, lb) = (
        chain_expressions(&ours, LIVE_CHAIN),
        chain_expressions(&theirs, LIVE_CHAIN),
    );
    assert_eq!(la.len(), r.live_rules().len(), "{la:#?}");
    assert_eq!(la, lb);
    assert_eq!(
        la[1],
        [
            "[ ct load mark => reg 1 ]",
            "[ bitwise reg 1 = ( reg 1 & 0xcfffffff ) ^ 0x00000000 ]",
            "[ ct set mark with reg 1 ]",
            "[ ct load mark => reg 1 ]",
            "[ bitwise reg 1 = ( reg 1 & 0xefffffff ) ^ 0x10000000 ]",
            "[ ct set mark with reg 1 ]",
        ]
    );
    assert!(
        la[2]
            .iter()
            .any(|e| e.starts_with("[ dynset update reg_key 1 set live4")),
        "{:?}",
        la[2]
    );
    // The next period, as the daemon flips it, is the same in both.
    let mut next = r.clone();
    let flip = next.next_live_period().unwrap();
    ours.enter(move || NftSocket::open().unwrap().commit(&flip).unwrap());
    let theirs2 = Netns::new("exprm");
    let file = dir.file("next.nft", &next.render());
    run_ok(theirs2.cmd("nft").arg("-f").arg(&file));
    let (la, lb) = (
        chain_expressions(&ours, LIVE_CHAIN),
        chain_expressions(&theirs2, LIVE_CHAIN),
    );
    assert_eq!(la, lb);
    assert_eq!(la[0][2], "[ cmp eq reg 1 0x20000000 ]");
    let listed = ours.nft(&["-s", "list", "table", "inet", "nftsentry"]);
    assert_eq!(normalize_ws(&listed), normalize_ws(&next.render()));
}

/// `[crowdsec] pull`: the fleet's sets list as rendered, take a Range and
/// an address inside it with their own timeouts (disjoint pieces), and a
/// second sync replaces their content whole (refreshed or removed).
#[test]
fn fleet_sets_hold_ranges_with_timeouts_and_syncs_replace_them() {
    use nftsentry::table::ruleset::fleet_batch;
    let ns = Netns::new("fleet");
    let r = Ruleset {
        fleet: true,
        ..sample()
    };
    let r2 = r.clone();
    let h = Duration::from_secs(3600);
    // 203.0.113.0/24 for 1 h with 203.0.113.7 inside it for 2 h.
    let base: u128 = 0xcb00_7100;
    let first = vec![
        (base, base + 6, h),
        (base + 7, base + 7, 2 * h),
        (base + 8, base + 255, h),
    ];
    let six = vec![(0x2001_0db8u128 << 96, (0x2001_0db8u128 << 96) + 0xffff, h)];
    ns.enter(move || {
        let mut s = NftSocket::open().unwrap();
        s.commit(&r2.install_batch()).unwrap();
    });
    let listed = ns.nft(&["-s", "list", "table", "inet", "nftsentry"]);
    let expected = r.render();
    assert!(expected.contains("set fleet4") && expected.contains("flags interval,timeout"));
    assert_eq!(normalize_ws(&listed), normalize_ws(&expected), "\n{listed}");
    ns.enter(move || {
        let mut s = NftSocket::open().unwrap();
        s.commit(&fleet_batch("nftsentry", &first, &six)).unwrap();
    });
    let set = ns.nft(&["list", "set", "inet", "nftsentry", "fleet4"]);
    assert!(
        set.contains("203.0.113.0-203.0.113.6 timeout 1h")
            && set.contains("203.0.113.7 timeout 2h")
            && set.contains("203.0.113.8-203.0.113.255 timeout 1h"),
        "{set}"
    );
    let set6 = ns.nft(&["list", "set", "inet", "nftsentry", "fleet6"]);
    assert!(set6.contains("2001:db8::/112 timeout 1h"), "{set6}");
    // The next sync: the range deleted, the address refreshed to 3 h.
    ns.enter(move || {
        let mut s = NftSocket::open().unwrap();
        s.commit(&fleet_batch(
            "nftsentry",
            &[(base + 7, base + 7, 3 * h)],
            &[],
        ))
        .unwrap();
    });
    let set = ns.nft(&["list", "set", "inet", "nftsentry", "fleet4"]);
    assert!(
        set.contains("203.0.113.7 timeout 3h") && !set.contains("203.0.113.0"),
        "{set}"
    );
    let set6 = ns.nft(&["list", "set", "inet", "nftsentry", "fleet6"]);
    assert!(!set6.contains("2001:db8"), "{set6}");
}
