//! What the nftables table flags `owner` (kernel >= 5.12) and `persist`
//! (>= 6.9) change, measured on the running kernel: the facts the daemon's
//! tamper resistance is built on (man nftsentry(8), TAMPER RESISTANCE).
mod common;
use common::*;

use netlink_packet_netfilter::nftables::TableFlags;
use nftsentry::kernel::nft::batch::{Batch, Element, KeyType, SetSpec};
use nftsentry::kernel::nft::{FAMILY, NftSocket};

fn table(flags: TableFlags) -> Batch {
    let mut b = Batch::new();
    b.add_table_flags(FAMILY, "own", false, flags);
    b.add_set(
        FAMILY,
        "own",
        &SetSpec {
            name: "b".into(),
            id: 1,
            key: KeyType::Ipv4Addr,
            interval: false,
            dynamic: false,
            timeout: Some(std::time::Duration::from_secs(60)),
            size: None,
            counter: false,
        },
    );
    b
}

/// Enters the namespace on the calling thread (setns is per thread).
fn enter_netns(name: &str) {
    let file = std::fs::File::open(format!("/var/run/netns/{name}")).expect("open netns");
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

fn tables(ns: &Netns) -> String {
    ns.nft(&["list", "tables"])
}

/// `nft ARGS`: its exit status.
fn nft_ok(ns: &Netns, args: &str) -> bool {
    ns.cmd("sh")
        .args(["-c", &format!("nft {args} 2>/dev/null")])
        .status()
        .unwrap()
        .success()
}

#[test]
fn owner_flag_keeps_everyone_else_out_and_persist_outlives_the_owner() {
    require_root();
    let ns = Netns::new("owner");
    // Owner only: untouchable from outside, gone with its socket.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let name = ns.name.as_str().to_string();
    let holder = std::thread::spawn(move || {
        enter_netns(&name);
        let mut s = NftSocket::open().unwrap();
        s.commit(&table(TableFlags::Owner)).unwrap();
        ready_tx.send(()).unwrap();
        rx.recv().unwrap(); // hold the socket until told
    });
    ready_rx.recv().unwrap();
    assert!(tables(&ns).contains("table inet own"));
    assert!(
        nft_ok(&ns, "flush ruleset"),
        "flush ruleset itself succeeds"
    );
    assert!(
        tables(&ns).contains("table inet own"),
        "flush ruleset skipped the owned table"
    );
    assert!(!nft_ok(&ns, "delete table inet own"), "delete refused");
    assert!(
        !nft_ok(&ns, "add element inet own b { 192.0.2.9 }"),
        "element add refused"
    );
    assert!(!nft_ok(&ns, "flush set inet own b"), "set flush refused");
    tx.send(()).unwrap();
    holder.join().unwrap();
    assert!(
        !tables(&ns).contains("table inet own"),
        "an owned table without persist dies with its socket"
    );

    // Owner + persist: outlives the socket, then belongs to nobody.
    let name = ns.name.as_str().to_string();
    std::thread::spawn(move || {
        enter_netns(&name);
        let mut s = NftSocket::open().unwrap();
        s.commit(&table(TableFlags::Owner | TableFlags::Persisent))
            .unwrap();
        let mut b = Batch::new();
        let element = Element {
            key: vec![198, 51, 100, 7],
            timeout: None,
            expiration: None,
            interval_end: false,
            counter: None,
        };
        b.add_elements(FAMILY, "own", "b", None, &[element]);
        s.commit(&b).unwrap();
    })
    .join()
    .unwrap();
    assert!(
        tables(&ns).contains("table inet own"),
        "persist keeps the table after its owner closed"
    );
    let set = ns.nft(&["list", "set", "inet", "own", "b"]);
    assert!(set.contains("198.51.100.7"), "its elements too: {set}");
    assert!(
        nft_ok(&ns, "add element inet own b { 192.0.2.9 }"),
        "an orphaned table is anyone's"
    );
    // A new owner claims it back without recreating it.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let name = ns.name.as_str().to_string();
    let holder = std::thread::spawn(move || {
        enter_netns(&name);
        let mut s = NftSocket::open().unwrap();
        let mut b = Batch::new();
        b.add_table_flags(
            FAMILY,
            "own",
            false,
            TableFlags::Owner | TableFlags::Persisent,
        );
        s.commit(&b).unwrap();
        ready_tx.send(()).unwrap();
        rx.recv().unwrap();
    });
    ready_rx.recv().unwrap();
    assert!(nft_ok(&ns, "flush ruleset"));
    eprintln!(
        "LISTING:\n{}",
        ns.nft(&["-s", "list", "table", "inet", "own"])
    );
    let set = ns.nft(&["list", "set", "inet", "own", "b"]);
    assert!(
        set.contains("198.51.100.7") && set.contains("192.0.2.9"),
        "claimed table and its elements survive flush ruleset: {set}"
    );
    tx.send(()).unwrap();
    holder.join().unwrap();
    assert!(nft_ok(&ns, "delete table inet own"));
}
