//! The command line against a real kernel table, each test in its own
//! namespace: run, block, unblock, list, flush, exit codes.
mod common;
use common::*;
use nix::sys::signal::Signal;
use std::time::Duration;

/// A config for tests: the built-in defaults, no ignore file.
fn config(dir: &TempDir, extra: &str) -> std::path::PathBuf {
    dir.file(
        "nftsentry.toml",
        &format!("ignore_file = \"\"\n{}{extra}", private_files(&dir.path)),
    )
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn block_list_unblock_flush_v4_and_v6() {
    let mut ns = Netns::new("cli");
    let dir = TempDir::new("cli");
    let cfg = config(&dir, "");
    start_daemon(&mut ns, &cfg, &dir.path.join("log"));

    let o = nftsentry(&ns, &cfg, &["block", "198.51.100.7", "--for", "30s"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let set = ns.nft(&["list", "set", "inet", "nftsentry", "blocked4"]);
    assert!(
        set.contains("198.51.100.7 counter packets 0 bytes 0 timeout 30s expires 2"),
        "{set}"
    );

    let o = nftsentry(&ns, &cfg, &["block", "2001:db8::7"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let set6 = ns.nft(&["list", "set", "inet", "nftsentry", "blocked6"]);
    // nft leaves out a timeout equal to the set's default (1d).
    assert!(
        set6.contains("2001:db8::7 counter packets 0 bytes 0 expires 23h59m"),
        "{set6}"
    );

    let list = stdout(&nftsentry(&ns, &cfg, &["list"]));
    let line = list
        .lines()
        .find(|l| l.starts_with("198.51.100.7"))
        .expect(&list);
    let left: Vec<&str> = line.split_whitespace().collect();
    assert!(
        left[1].ends_with('s') && left[1].trim_end_matches('s').parse::<u64>().unwrap() <= 30,
        "{line}"
    );
    assert_eq!(left[2], "30s");
    // Nothing came from it: it dropped nothing yet.
    assert_eq!(&left[3..], ["0", "0", "manual"], "{line}");
    assert!(list.contains("2001:db8::7"), "{list}");

    let json = stdout(&nftsentry(&ns, &cfg, &["list", "--json"]));
    assert!(
        json.starts_with(
            "[{\"address\":\"198.51.100.7\",\"prefix\":32,\"timeout\":30,\"expires_in\":"
        ),
        "{json}"
    );
    assert!(
        json.contains("{\"address\":\"2001:db8::7\",\"prefix\":128,\"timeout\":86400,"),
        "{json}"
    );

    let o = nftsentry(&ns, &cfg, &["unblock", "198.51.100.7"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !ns.nft(&["list", "set", "inet", "nftsentry", "blocked4"])
            .contains("198.51.100.7")
    );
    let o = nftsentry(&ns, &cfg, &["unblock", "198.51.100.7"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("198.51.100.7 is not blocked"),
        "{}",
        stderr(&o)
    );

    // Blocking an ignored (here: loopback) address works but says it has no effect.
    let o = nftsentry(&ns, &cfg, &["block", "127.0.0.1", "--for", "1m"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("127.0.0.1 is in the ignore list"),
        "{}",
        stderr(&o)
    );

    let o = nftsentry(&ns, &cfg, &["flush"]);
    assert!(stdout(&o).contains("2 bans lifted"), "{}", stdout(&o));
    assert_eq!(stdout(&nftsentry(&ns, &cfg, &["list", "--json"])), "[]\n");
}

#[test]
fn ban_expires_in_the_kernel() {
    let mut ns = Netns::new("exp");
    let dir = TempDir::new("exp");
    let cfg = config(&dir, "");
    start_daemon(&mut ns, &cfg, &dir.path.join("log"));
    let o = nftsentry(&ns, &cfg, &["block", "198.51.100.9", "--for", "2s"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        ns.nft(&["list", "set", "inet", "nftsentry", "blocked4"])
            .contains("198.51.100.9")
    );
    // Nobody removes it but the kernel.
    assert!(wait_until(Duration::from_secs(6), || {
        !ns.nft(&["list", "set", "inet", "nftsentry", "blocked4"])
            .contains("198.51.100.9")
    }));
}

#[test]
fn sigterm_removes_the_table_unless_kept() {
    for (keep, present) in [("false", false), ("true", true)] {
        let mut ns = Netns::new("term");
        let dir = TempDir::new("term");
        let cfg = config(&dir, &format!("keep_table_on_exit = {keep}\n"));
        let pid = start_daemon(&mut ns, &cfg, &dir.path.join("log"));
        signal(pid, Signal::SIGTERM);
        let status = ns.take_child(pid).wait().unwrap();
        assert!(status.success(), "exit {status}");
        let tables = ns.nft(&["list", "tables"]);
        assert_eq!(
            tables.contains("nftsentry"),
            present,
            "keep={keep}: {tables}"
        );
    }
}

#[test]
fn run_replaces_a_leftover_table() {
    let mut ns = Netns::new("left");
    let dir = TempDir::new("left");
    let cfg = config(&dir, "");
    // What a killed run left behind under our name: it carries our comment
    // (a table without it is someone else's, and `run` refuses: see
    // tests/bad_input.rs).
    ns.nft(&["add table inet nftsentry { comment \"managed by nftsentry\"; }; add chain inet nftsentry junk; add rule inet nftsentry junk drop; add set inet nftsentry blocked4 { type ipv4_addr; }"]);
    start_daemon(&mut ns, &cfg, &dir.path.join("log"));
    // The leftover table is there from the start: start_daemon's wait for
    // a table returns at once, so wait for the junk to go.
    assert!(
        wait_until(Duration::from_secs(10), || !ns
            .nft(&["list", "table", "inet", "nftsentry"])
            .contains("junk")),
        "{}",
        std::fs::read_to_string(dir.path.join("log")).unwrap_or_default()
    );
    let listed = ns.nft(&["-s", "list", "table", "inet", "nftsentry"]);
    let rendered = stdout(&nftsentry(&ns, &cfg, &["ruleset"]));
    assert_eq!(normalize_ws(&listed), normalize_ws(&rendered));
    assert!(!listed.contains("junk"));
}

#[test]
fn exit_codes() {
    let ns = Netns::new("exit");
    let dir = TempDir::new("exit");
    let good = config(&dir, "");

    // Usage error: 64.
    let o = nftsentry(&ns, &good, &["block"]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    let o = nftsentry(&ns, &good, &["block", "198.51.100.1", "--for", "10"]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));

    // Config error: 78, naming file, line and key.
    let bad = dir.file(
        "bad.toml",
        &format!(
            "ignore_file = \"\"\n{}\n[tcp]\nports = \"1,70000\"\n",
            private_files(&dir.path).trim_end()
        ),
    );
    let o = nftsentry(&ns, &bad, &["check"]);
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("{}:6", bad.display())) && e.contains("tcp.ports"),
        "{e}"
    );
    let o = nftsentry(&ns, &dir.path.join("missing.toml"), &["check"]);
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));

    // No table: 1, with a hint.
    let o = nftsentry(&ns, &good, &["list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));

    // Without CAP_NET_ADMIN: 77, saying so.
    let o = ns
        .cmd("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(nftsentry_bin())
        .args(["-c"])
        .arg(&good)
        .args(["block", "198.51.100.1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(77), "{}", stderr(&o));
    assert!(stderr(&o).contains("CAP_NET_ADMIN"), "{}", stderr(&o));
}
