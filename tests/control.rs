//! The running daemon as a service: the control socket (list, block,
//! unblock, flush, status, reload), reload with bans carried over and a
//! broken config refused, and the table surviving `nft flush ruleset`, with
//! and without the owner flag.
mod common;
use common::scene::*;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::Duration;

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}{}",
        o.status.code(),
        out(&o),
        err(&o)
    );
    out(&o)
}

/// Seconds left for `addr` in `nftsentry list --json`.
fn expires_in(s: &Scene, addr: &str) -> Option<u64> {
    let list = ok(s.cli(&["list", "--json"]));
    let item = list
        .split("},")
        .find(|i| i.contains(&format!("\"{addr}\"")))?;
    let v = item.split("\"expires_in\":").nth(1)?;
    v.trim_end_matches(['}', ']', '\n'])
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The table as nft lists it, without counters and element timers that
/// change by themselves.
fn table_shape(s: &Scene) -> String {
    let t = s
        .pair
        .victim
        .nft(&["-s", "list", "table", "inet", "nftsentry"]);
    t.lines()
        .filter(|l| !l.contains("expires"))
        .map(|l| l.split(" expires ").next().unwrap_or(l).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A JSON document according to Python's parser (python3 is on every
/// machine of this kind and in CI).
fn assert_json(text: &str) {
    use std::io::Write;
    let mut p = std::process::Command::new("python3")
        .args(["-m", "json.tool"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let o = p.wait_with_output().unwrap();
    assert!(o.status.success(), "not JSON: {}\n{text}", err(&o));
}

#[test]
fn commands_go_to_the_running_daemon() {
    let s = Scene::new("ctl", "");
    let sock = s.cfg.parent().unwrap().join("control");
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "control socket permissions");

    // A probe, so that status has something to show.
    s.nmap("-sS", false, "1");
    assert!(s.wait_banned(ATTACKER4), "{}", s.log());

    let status = ok(s.cli(&["status"]));
    for part in [
        "running for",
        "table inet nftsentry (flags: owner, persist)",
        "tcp: mode stealth, 3 ports watched",
        "bans active: 1 (1 IPv4, 0 IPv6)",
        "events lost: 0",
        "last bans:",
        ATTACKER4,
    ] {
        assert!(status.contains(part), "{part} missing from\n{status}");
    }
    let json = ok(s.cli(&["status", "--json"]));
    assert_json(&json);
    assert!(json.contains("\"active\":1"), "{json}");

    // Block, list, unblock, flush: through the daemon, which owns the
    // table (the owner flag refuses any other writer).
    let b = ok(s.cli(&["block", "198.51.100.9", "--for", "90s"]));
    assert!(b.contains("198.51.100.9 blocked for 1m30s"), "{b}");
    let left = expires_in(&s, "198.51.100.9").expect("listed");
    assert!((85..=90).contains(&left), "{left}");
    assert!(
        !s.pair
            .victim
            .cmd("nft")
            .args([
                "delete",
                "element",
                "inet",
                "nftsentry",
                "blocked4",
                "{ 198.51.100.9 }"
            ])
            .status()
            .unwrap()
            .success(),
        "another writer was let into the owned table"
    );
    ok(s.cli(&["unblock", ATTACKER4]));
    assert!(!s.banned(ATTACKER4));
    // Unblocked means forgotten: the next probe bans again at once.
    s.nmap("-sS", false, "11");
    assert!(s.wait_banned(ATTACKER4), "{}", s.log());
    let f = ok(s.cli(&["flush"]));
    assert!(f.contains("2 bans lifted"), "{f}");
    assert!(!s.banned(ATTACKER4) && !s.banned("198.51.100.9"));
    let o = s.cli(&["unblock", "198.51.100.77"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("is not blocked"), "{}", err(&o));
}

#[test]
fn without_a_daemon_commands_use_the_kernel_and_status_says_so() {
    let mut s = Scene::new("ctlnone", "keep_table_on_exit = true");
    ok(s.cli(&["block", "198.51.100.8"]));
    signal(s.pid, nix::sys::signal::Signal::SIGTERM);
    let mut child = s.pair.victim.take_child(s.pid);
    assert!(child.wait().unwrap().success());
    let sock = s.cfg.parent().unwrap().join("control");
    assert!(!sock.exists(), "the socket file goes with the daemon");
    // The kept table is no one's now: the command line changes it itself.
    assert!(ok(s.cli(&["list"])).contains("198.51.100.8"));
    ok(s.cli(&["unblock", "198.51.100.8"]));
    assert!(!s.banned("198.51.100.8"));
    let o = s.cli(&["status"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("not running"), "{}", err(&o));
    let o = s.cli(&["reload"]);
    assert_eq!(o.status.code(), Some(1));
    s.pair.victim.nft(&["delete", "table", "inet", "nftsentry"]);
}

#[test]
fn reload_carries_bans_over_and_applies_the_new_config() {
    let s = Scene::new("reload", "");
    ok(s.cli(&["block", "198.51.100.5", "--for", "1h"]));
    ok(s.cli(&["block", "2001:db8:9::5", "--for", "2h"]));
    std::thread::sleep(Duration::from_secs(2));
    let before = expires_in(&s, "198.51.100.5").unwrap();
    // New ports, a new ignore entry, a new ban time.
    let text = std::fs::read_to_string(&s.cfg)
        .unwrap()
        .replace(&format!("ports = \"{TCP_PORTS}\""), "ports = \"2222\"")
        .replace("ignore_file", "ban_time = \"5m\"\nignore_file");
    std::fs::write(&s.cfg, text).unwrap();
    let ignore = s.cfg.parent().unwrap().join("ignore");
    std::fs::write(&ignore, "198.51.100.200\n").unwrap();
    let r = ok(s.cli(&["reload"]));
    assert!(r.contains("2 bans carried over"), "{r}");
    let after = expires_in(&s, "198.51.100.5").unwrap();
    assert!(
        after <= before && before - after <= 2,
        "ban time left changed: {before} -> {after}"
    );
    assert!((7000..=7200).contains(&expires_in(&s, "2001:db8:9::5").unwrap()));
    let table = s.pair.victim.nft(&["list", "table", "inet", "nftsentry"]);
    assert!(table.contains("198.51.100.200"), "{table}");
    assert!(table.contains("timeout 5m"), "{table}");
    // The old port is no tripwire any more, the new one is.
    s.nmap("-sS", false, "1");
    s.settle();
    assert!(!s.banned(ATTACKER4), "{}", s.log());
    s.nmap("-sS", false, "2222");
    assert!(s.wait_banned(ATTACKER4), "{}", s.log());
    assert!(
        s.log().contains("adminalert: configuration reloaded from"),
        "{}",
        s.log()
    );

    // SIGHUP does the same.
    signal(s.pid, nix::sys::signal::Signal::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(5), || s
            .log()
            .matches("adminalert: configuration reloaded")
            .count()
            == 2),
        "{}",
        s.log()
    );
    let status = ok(s.cli(&["status"]));
    assert!(status.contains("reloads 2"), "{status}");
}

#[test]
fn a_broken_config_is_refused_and_the_running_table_stays() {
    let s = Scene::new("reloadbad", "");
    s.nmap("-sS", false, "1");
    assert!(s.wait_banned(ATTACKER4));
    let shape = table_shape(&s);
    let good = std::fs::read_to_string(&s.cfg).unwrap();
    for (bad, key) in [
        (
            good.replace(&format!("\"{TCP_PORTS}\""), "\"1,70000\""),
            "tcp.ports",
        ),
        (
            good.replace("ignore_file", "ban_time = 5\nignore_file"),
            "ban_time",
        ),
        (
            good.replace("ignore_file", "bogus_key = 1\nignore_file"),
            "bogus_key",
        ),
    ] {
        std::fs::write(&s.cfg, &bad).unwrap();
        let o = s.cli(&["reload"]);
        assert_eq!(o.status.code(), Some(78), "{}{}", out(&o), err(&o));
        assert!(
            err(&o).contains(&format!("{}:", s.cfg.display())) && err(&o).contains(key),
            "{}",
            err(&o)
        );
        assert_eq!(
            table_shape(&s),
            shape,
            "the table changed on a refused reload"
        );
    }
    // A bad ignore file is refused too.
    std::fs::write(&s.cfg, &good).unwrap();
    let ignore = s.cfg.parent().unwrap().join("ignore");
    std::fs::write(&ignore, "not an address\n").unwrap();
    let o = s.cli(&["reload"]);
    assert_eq!(o.status.code(), Some(78), "{}", err(&o));
    assert_eq!(table_shape(&s), shape);
    assert!(
        s.log().contains(
            "adminalert: ERROR: reload refused, the running table and settings are unchanged"
        ),
        "{}",
        s.log()
    );
    // The daemon still works: the old ban holds and a new probe bans.
    assert!(s.banned(ATTACKER4));
    s.nmap("-sS", true, "11");
    assert!(s.wait_banned(ATTACKER6), "{}", s.log());
}

#[test]
fn flush_ruleset_cannot_touch_the_owned_table() {
    let s = Scene::new("ownflush", "");
    s.nmap("-sS", false, "1");
    assert!(s.wait_banned(ATTACKER4));
    // What nftables.service does on restart, and an admin's cleanup.
    s.pair.victim.nft(&["flush", "ruleset"]);
    assert!(s.banned(ATTACKER4), "the ban went with flush ruleset");
    let del = s
        .pair
        .victim
        .cmd("nft")
        .args(["delete", "table", "inet", "nftsentry"])
        .output()
        .unwrap();
    assert!(
        !del.status.success(),
        "delete of the owned table was allowed"
    );
    assert!(s.banned(ATTACKER4));
}

#[test]
fn without_the_owner_flag_a_deleted_table_is_back_within_a_second() {
    let s = Scene::new("noowner", "table_owner = false");
    s.nmap("-sS", false, "1");
    s.nmap("-sS", true, "1");
    assert!(s.wait_banned(ATTACKER4) && s.wait_banned(ATTACKER6));
    let left = expires_in(&s, ATTACKER4).unwrap();
    s.pair.victim.nft(&["flush", "ruleset"]);
    let t0 = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(1), || s.banned(ATTACKER4)
            && s.banned(ATTACKER6)),
        "bans not back within 1 s; log:\n{}",
        s.log()
    );
    eprintln!("table back after {:?}", t0.elapsed());
    let again = expires_in(&s, ATTACKER4).unwrap();
    assert!(left - again <= 2, "time left reset: {left} -> {again}");
    assert!(
        s.log()
            .contains("adminalert: WARNING: table inet nftsentry was deleted"),
        "{}",
        s.log()
    );
    // A flushed set: its bans come back.
    s.pair
        .victim
        .nft(&["flush", "set", "inet", "nftsentry", "blocked4"]);
    assert!(
        wait_until(Duration::from_secs(1), || s.banned(ATTACKER4)),
        "{}",
        s.log()
    );
    assert!(
        s.log()
            .contains("bans were removed from table inet nftsentry by another program")
    );
    // And the tripwires work after the restore.
    ok(s.cli(&["flush"]));
    s.nmap("-sS", false, "11");
    assert!(s.wait_banned(ATTACKER4), "{}", s.log());
    let status = ok(s.cli(&["status"]));
    assert!(
        status.contains("flags: none") && status.contains("table restored 2 times"),
        "{status}"
    );
}
