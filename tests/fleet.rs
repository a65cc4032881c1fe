//! `[crowdsec]` with the real engine: Debian's crowdsec running its Local
//! API alone (`crowdsec -no-cs -no-capi`, a config and sqlite file of the
//! test's own) in a hub namespace, two nftsentry daemons (A and B) and a
//! scanner in namespaces of their own on the hub's bridge. Needs root, the
//! crowdsec package (tests/run installs it) and nmap.

mod common;

use common::fleet::*;
use common::*;
use std::net::TcpListener;
use std::time::Duration;

/// The fleet's way: nmap trips A; A pushes; B drops the scanner within a
/// pull interval, before it ever probes B, and `cscli decisions list` shows
/// it. Decisions made with cscli (an address, a Range) are enforced on
/// both, but not over B's ignore list, and their deletion lifts them on
/// both. A recognises its own decision coming back. `nft flush ruleset`
/// on B leaves the fleet's bans in force.
#[test]
fn a_scan_of_one_host_is_dropped_by_the_other_and_cscli_decisions_reach_both() {
    let mut hub = Hub::new("fl");
    hub.setup_lapi(&format!("{LAPI}:8080"));
    hub.start_lapi();
    let url = format!("http://{LAPI}:8080");
    let scanner = hub.host("fls", &[SCANNER, OTHER, RANGE_IN, RANGE_IGNORED]);
    let a = Daemon::start(&hub, "fla", A, "hostA", "# none\n", "", &url);
    let b = Daemon::start(
        &hub,
        "flb",
        B,
        "hostB",
        &format!("{RANGE_IGNORED}\n"),
        "",
        &url,
    );
    assert!(
        reaches(&scanner, SCANNER, B),
        "B unreachable before the scan"
    );

    scan(&scanner, A);
    assert!(
        wait_until(Duration::from_secs(10), || a
            .set("blocked4")
            .contains(SCANNER)),
        "A did not ban the scanner:\n{}",
        a.log()
    );
    // Within one pull interval (1 s) plus the push and the LAPI's time.
    let seen = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(15), || b.fleet_has(SCANNER)),
        "B did not take the fleet's decision on the scanner:\nA:\n{}\nB:\n{}\nA status:\n{}",
        a.log(),
        b.log(),
        a.status()
    );
    eprintln!("probe on A to the drop on B: {:?}", seen.elapsed());
    let list = hub.cscli(&["decisions", "list", "-a"]);
    assert!(
        list.contains(SCANNER) && list.contains("nftsentry/port-scan"),
        "{list}"
    );
    assert!(
        !reaches(&scanner, SCANNER, B),
        "B still answers the scanner"
    );
    // The scanner now probes B: nothing reaches B's tripwires.
    scan(&scanner, B);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !b.log().contains(&format!(
            "attackalert: TCP SYN/Normal scan from host: {SCANNER}"
        )),
        "{}",
        b.log()
    );
    // A: its own decision came back and is not doubled in the fleet's set.
    assert!(
        wait_until(Duration::from_secs(4), || a.status().contains("1 our own")),
        "{}",
        a.status()
    );
    assert!(!a.fleet_has(SCANNER), "{}", a.set("fleet4"));

    // cscli decisions add --ip: both drop it; delete: both lift it.
    assert!(reaches(&scanner, OTHER, A) && reaches(&scanner, OTHER, B));
    hub.cscli(&["decisions", "add", "--ip", OTHER, "--duration", "1h"]);
    assert!(
        wait_until(Duration::from_secs(10), || a.fleet_has(OTHER)
            && b.fleet_has(OTHER)),
        "A:\n{}\nB:\n{}",
        a.set("fleet4"),
        b.set("fleet4")
    );
    assert!(!reaches(&scanner, OTHER, A) && !reaches(&scanner, OTHER, B));
    // `list` tells the origins; a fleet decision is not lifted locally.
    let list = out_text(&nftsentry(&b.ns, &b.cfg, &["list"]));
    assert!(
        list.lines()
            .any(|l| l.starts_with(OTHER) && l.contains("fleet cscli/"))
            && list.lines().any(
                |l| l.starts_with(SCANNER) && l.contains("fleet nftsentry/nftsentry/port-scan")
            ),
        "{list}"
    );
    let list = out_text(&nftsentry(&a.ns, &a.cfg, &["list"]));
    assert!(
        list.lines()
            .any(|l| l.starts_with(SCANNER) && l.ends_with(" local")),
        "{list}"
    );
    let o = nftsentry(&b.ns, &b.cfg, &["unblock", OTHER]);
    assert!(
        !o.status.success() && out_text(&o).contains("dropped by the fleet's decision"),
        "{}",
        out_text(&o)
    );
    // The time left comes from the LAPI (about an hour, not the set's 1d).
    assert!(
        b.set("fleet4").contains("timeout 59m") || b.set("fleet4").contains("timeout 1h"),
        "{}",
        b.set("fleet4")
    );
    hub.cscli(&["decisions", "delete", "--ip", OTHER]);
    assert!(
        wait_until(Duration::from_secs(10), || !a.fleet_has(OTHER)
            && !b.fleet_has(OTHER)),
        "A:\n{}\nB:\n{}",
        a.set("fleet4"),
        b.set("fleet4")
    );
    assert!(reaches(&scanner, OTHER, A) && reaches(&scanner, OTHER, B));

    // A Range: every address in it dropped, but not B's ignored one on B.
    assert!(reaches(&scanner, RANGE_IN, B) && reaches(&scanner, RANGE_IGNORED, B));
    hub.cscli(&[
        "decisions",
        "add",
        "--range",
        "198.51.100.0/24",
        "--duration",
        "1h",
    ]);
    assert!(
        wait_until(Duration::from_secs(10), || a.fleet_has("198.51.100.0/24")
            && b.fleet_has("198.51.100.0/24")),
        "A:\n{}\nB:\n{}",
        a.set("fleet4"),
        b.set("fleet4")
    );
    assert!(!reaches(&scanner, RANGE_IN, A) && !reaches(&scanner, RANGE_IN, B));
    assert!(!reaches(&scanner, RANGE_IGNORED, A), "A has no ignore list");
    assert!(
        reaches(&scanner, RANGE_IGNORED, B),
        "B's ignored address was cut off by the fleet"
    );
    assert!(
        wait_until(Duration::from_secs(3), || b.log().contains(
            "on 198.51.100.0/24 not enforced for the part on the ignore list"
        )),
        "{}",
        b.log()
    );
    assert_eq!(
        b.log()
            .matches("not enforced for the part on the ignore list")
            .count(),
        1,
        "a veto is logged once per decision:\n{}",
        b.log()
    );
    // `why` names the decision, enforced or vetoed.
    let why = out_text(&nftsentry(&b.ns, &b.cfg, &["why", RANGE_IN]));
    assert!(
        why.contains("dropped by the fleet's decision")
            && why.contains("on 198.51.100.0/24 (cscli/"),
        "{why}"
    );
    let why = out_text(&nftsentry(&b.ns, &b.cfg, &["why", RANGE_IGNORED]));
    assert!(
        why.contains("never banned: on the ignore list")
            && why.contains("on 198.51.100.0/24 (cscli/")
            && why.contains("is vetoed here"),
        "{why}"
    );

    // nft flush ruleset on B: the owned table and the fleet's bans stay.
    run_ok(b.ns.cmd("nft").args(["flush", "ruleset"]));
    assert!(
        b.fleet_has(SCANNER) && b.fleet_has("198.51.100.0/24"),
        "{}",
        b.set("fleet4")
    );
    assert!(!reaches(&scanner, RANGE_IN, B) && !reaches(&scanner, SCANNER, B));
    let status = b.status();
    assert!(
        status.contains("crowdsec: Local API reachable")
            && status.contains("1 vetoed by the ignore list"),
        "{status}"
    );
    let json = out_text(&nftsentry(&b.ns, &b.cfg, &["status", "--json"]));
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect(&json);
    assert_eq!(v["crowdsec"]["reachable"], true, "{json}");
    assert_eq!(v["crowdsec"]["vetoed"], 1, "{json}");
    assert!(
        v["crowdsec"]["decisions_held"].as_u64() >= Some(2),
        "{json}"
    );
    // unblock --fleet on A: lifted here and fleet-wide.
    let o = nftsentry(&a.ns, &a.cfg, &["unblock", "--fleet", SCANNER]);
    assert!(o.status.success(), "{}", out_text(&o));
    assert!(
        wait_until(Duration::from_secs(6), || !b.fleet_has(SCANNER)
            && !a.set("blocked4").contains(SCANNER)),
        "A:\n{}\nB:\n{}",
        a.log(),
        b.set("fleet4")
    );
    assert!(reaches(&scanner, SCANNER, A) && reaches(&scanner, SCANNER, B));
    hub.stop_lapi();
}

/// The LAPI stopped: A still bans locally and queues its alerts (counted
/// in status); B keeps the decisions in force. The LAPI back: the queue
/// drains and B catches up. The queue survives a restart of A.
#[test]
fn a_lapi_that_is_down_delays_nothing_local_and_the_queue_drains_when_it_is_back() {
    let mut hub = Hub::new("fd");
    hub.setup_lapi(&format!("{LAPI}:8080"));
    hub.start_lapi();
    let url = format!("http://{LAPI}:8080");
    let scanner = hub.host("fds", &[SCANNER, OTHER]);
    let mut a = Daemon::start(&hub, "fda", A, "hostA", "# none\n", "", &url);
    // B's table is a plain one (no owner flag): anyone may delete it, and
    // B puts it back.
    let b = Daemon::start(
        &hub,
        "fdb",
        B,
        "hostB",
        "# none\n",
        "table_owner = false\n",
        &url,
    );
    hub.cscli(&["decisions", "add", "--ip", OTHER, "--duration", "1h"]);
    assert!(wait_until(Duration::from_secs(10), || b.fleet_has(OTHER)));
    hub.stop_lapi();
    std::thread::sleep(Duration::from_secs(2));
    // Local detection and bans go on at once.
    let start = std::time::Instant::now();
    scan(&scanner, A);
    assert!(
        wait_until(Duration::from_secs(10), || a
            .set("blocked4")
            .contains(SCANNER)),
        "{}",
        a.log()
    );
    eprintln!("local ban with the LAPI down after {:?}", start.elapsed());
    assert!(
        wait_until(Duration::from_secs(10), || a
            .status()
            .contains("1 alerts queued")),
        "{}",
        a.status()
    );
    let status = a.status();
    assert!(status.contains("Local API unreachable"), "{status}");
    // B keeps what was in force.
    assert!(b.fleet_has(OTHER) && !reaches(&scanner, OTHER, B));
    // `nft flush ruleset` on B with the LAPI down: B puts its table back
    // with the fleet's decisions it holds.
    run_ok(b.ns.cmd("nft").args(["flush", "ruleset"]));
    assert!(
        wait_until(Duration::from_secs(5), || b.fleet_has(OTHER)),
        "{}",
        b.log()
    );
    assert!(!reaches(&scanner, OTHER, B));
    // A restarts while the LAPI is down: the alert waits in its queue file.
    signal(a.pid, nix::sys::signal::Signal::SIGTERM);
    let mut child = a.ns.take_child(a.pid);
    child.wait().unwrap();
    let queue = std::fs::read_to_string(a.cfg.parent().unwrap().join("crowdsec-queue")).unwrap();
    assert!(
        queue.contains(SCANNER) && queue.lines().count() == 1,
        "{queue}"
    );
    a.pid = start_daemon(&mut a.ns, &a.cfg, &a.log);
    assert!(
        wait_until(Duration::from_secs(10), || a
            .log()
            .contains("1 alerts not pushed before the restart are queued")),
        "{}",
        a.log()
    );
    assert!(b.log().contains("crowdsec: Local API"), "{}", b.log());
    // Back: the queue drains, B gets the decision (after a full re-sync).
    hub.start_lapi();
    assert!(
        wait_until(Duration::from_secs(20), || b.fleet_has(SCANNER)),
        "A:\n{}\n{}\nB:\n{}",
        a.log(),
        a.status(),
        b.log()
    );
    assert!(a.status().contains("0 alerts queued"), "{}", a.status());
    assert!(
        b.fleet_has(OTHER),
        "the re-sync lost a decision: {}",
        b.set("fleet4")
    );
    assert!(
        b.log().contains("reachable again; full re-sync"),
        "{}",
        b.log()
    );
    hub.stop_lapi();
    // A queue file replaced by a link to a file planted beside it is
    // refused, never read through: A starts with an empty queue.
    signal(a.pid, nix::sys::signal::Signal::SIGTERM);
    a.ns.take_child(a.pid).wait().unwrap();
    let dir = a.cfg.parent().unwrap();
    let planted = dir.join("planted");
    std::fs::write(&planted, &queue).unwrap();
    let queue_file = dir.join("crowdsec-queue");
    let _ = std::fs::remove_file(&queue_file);
    std::os::unix::fs::symlink(&planted, &queue_file).unwrap();
    a.pid = start_daemon(&mut a.ns, &a.cfg, &a.log);
    assert!(
        wait_until(Duration::from_secs(10), || a.log().contains(
            "cannot be read (refused: it is a symbolic link, not a regular file); starting empty"
        )),
        "{}",
        a.log()
    );
    assert!(
        !a.log()
            .contains("alerts not pushed before the restart are queued"),
        "{}",
        a.log()
    );
    assert!(a.status().contains("0 alerts queued"), "{}", a.status());
}

/// A server of the test's own in the hub, answering each connection with
/// `answer` (or nothing, holding it open, when `None`).
fn fake_lapi(hub: &Netns, port: u16, answer: Option<&'static str>) {
    let path = format!("/var/run/netns/{}", hub.name);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let l = TcpListener::bind((LAPI, port)).unwrap();
        tx.send(()).unwrap();
        let mut held = Vec::new();
        // Bounded: at most 200 connections, then the thread ends (its
        // namespace goes with the test).
        for c in l.incoming().take(200) {
            let Ok(mut c) = c else { break };
            let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut c, &mut buf);
            match answer {
                Some(a) => {
                    let _ = std::io::Write::write_all(&mut c, a.as_bytes());
                }
                None => held.push(c),
            }
        }
    });
    rx.recv().unwrap();
}

/// Bad credentials, a server answering garbage, one that never answers:
/// each a clear error line (once, not per try), and local bans go on.
#[test]
fn bad_credentials_garbage_and_a_hanging_lapi_are_clear_errors_and_lose_nothing_local() {
    let mut hub = Hub::new("fe");
    hub.setup_lapi(&format!("{LAPI}:8080"));
    hub.start_lapi();
    let scanner = hub.host("fes", &[SCANNER]);
    let bad = Daemon::start_with(
        &hub,
        "feb",
        A,
        "hostA",
        "# none\n",
        "",
        &format!("http://{LAPI}:8080"),
        Some(("wrong-password", "wrong-key")),
        "",
    );
    fake_lapi(
        &hub.hub,
        8081,
        Some("HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\n<html>oops</h"),
    );
    fake_lapi(&hub.hub, 8082, None);
    let garbage = Daemon::start(
        &hub,
        "feg",
        B,
        "hostB",
        "# none\n",
        "",
        &format!("http://{LAPI}:8081"),
    );
    let hanging = Daemon::start(
        &hub,
        "feh",
        "192.0.2.3",
        "hostC",
        "# none\n",
        "",
        &format!("http://{LAPI}:8082"),
    );
    for (d, target) in [(&bad, A), (&garbage, B), (&hanging, "192.0.2.3")] {
        scan(&scanner, target);
        assert!(
            wait_until(Duration::from_secs(10), || d
                .set("blocked4")
                .contains(SCANNER)),
            "{}",
            d.log()
        );
    }
    let wait_log = |d: &Daemon, what: &str| {
        assert!(
            wait_until(Duration::from_secs(15), || d.log().contains(what)),
            "no {what:?} in:\n{}\nthe LAPI's log:\n{}",
            d.log(),
            hub.api_log()
        );
    };
    wait_log(&bad, "pulling decisions: API key refused (HTTP 403)");
    wait_log(&bad, "login as machine \"hostA\" refused (HTTP 401");
    wait_log(&garbage, "the answer is not a Local API decision stream");
    wait_log(&hanging, "no answer in time");
    // Rate-limited: pulls every second for several seconds, one line each.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        bad.log().matches("API key refused").count(),
        1,
        "{}",
        bad.log()
    );
    assert_eq!(
        garbage
            .log()
            .matches("not a Local API decision stream")
            .count(),
        1,
        "{}",
        garbage.log()
    );
    // The secrets are never logged.
    assert!(!bad.log().contains("wrong-password") && !bad.log().contains("wrong-key"));
    for d in [&bad, &garbage, &hanging] {
        let s = d.status();
        assert!(
            s.contains("1 alerts queued") && s.contains("unreachable"),
            "{s}"
        );
    }
    hub.stop_lapi();
}

/// A secret file others may read is refused at start and by `check`,
/// naming the file; `check` says what it would connect to.
#[test]
fn check_refuses_readable_secrets_and_says_what_it_would_connect_to() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("fck");
    let key = dir.file("key", "k\n");
    let pw = dir.file("pw", "p\n");
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = dir.file(
        "n.toml",
        &format!(
            "{}[crowdsec]\nenabled = true\nurl = \"http://192.0.2.254:8080/\"\nmachine_id = \"web1\"\npassword_file = \"{}\"\napi_key_file = \"{}\"\n",
            private_files(&dir.path),
            pw.display(),
            key.display()
        ),
    );
    let ns = Netns::new("fck");
    let o = nftsentry(&ns, &cfg, &["check"]);
    let text = out_text(&o);
    assert!(!o.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "crowdsec.api_key_file {}: refused: mode 0644",
            key.display()
        )),
        "{text}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = nftsentry(&ns, &cfg, &["check"]);
    let text = out_text(&o);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("crowdsec: Local API http://192.0.2.254:8080: push bans of handshake evidence or stronger as machine \"web1\""),
        "{text}"
    );
    assert!(!text.contains("\nk\n") && !text.contains("\np\n"));
}

/// The LAPI over TLS with a CA the test made: push and pull work with
/// that CA as `ca_file`; without it (the system's roots), or when the URL
/// names a host the certificate is not for, every call fails with a clear
/// error and local bans go on.
#[test]
fn over_tls_push_and_pull_work_with_the_ca_and_fail_clearly_without_it_or_for_another_name() {
    let mut hub = Hub::new("ft");
    // 192.0.2.253 is the hub's too, but the certificate does not name it.
    hub.hub.ip(&["addr", "add", "192.0.2.253/24", "dev", "br0"]);
    hub.setup_lapi_tls("0.0.0.0:8080", true);
    hub.start_lapi();
    let scanner = hub.host("fts", &[SCANNER, OTHER]);
    let ca = hub.dir.path.join("ca.pem");
    let with_ca = format!("ca_file = \"{}\"\n", ca.display());
    let good = Daemon::start_with(
        &hub,
        "ftg",
        A,
        "hostA",
        "# none\n",
        "",
        &format!("https://{LAPI}:8080"),
        None,
        &with_ca,
    );
    let no_ca = Daemon::start(
        &hub,
        "ftn",
        B,
        "hostB",
        "# none\n",
        "",
        &format!("https://{LAPI}:8080"),
    );
    let wrong_name = Daemon::start_with(
        &hub,
        "ftw",
        "192.0.2.3",
        "hostC",
        "# none\n",
        "",
        "https://192.0.2.253:8080",
        None,
        &with_ca,
    );
    // Push: a scan of the good one reaches the LAPI.
    scan(&scanner, A);
    assert!(
        wait_until(Duration::from_secs(15), || hub
            .cscli(&["decisions", "list", "-a"])
            .contains(SCANNER)),
        "{}\n{}",
        good.log(),
        good.status()
    );
    // Pull: a decision of cscli reaches it.
    hub.cscli(&["decisions", "add", "--ip", OTHER, "--duration", "1h"]);
    assert!(
        wait_until(Duration::from_secs(10), || good.fleet_has(OTHER)),
        "{}",
        good.log()
    );
    for (d, why) in [
        (&no_ca, "UnknownIssuer"),
        (
            &wrong_name,
            "certificate not valid for name \"192.0.2.253\"",
        ),
    ] {
        assert!(
            wait_until(Duration::from_secs(10), || d.log().contains(why)),
            "no {why} in:\n{}",
            d.log()
        );
        assert!(!d.fleet_has(OTHER), "{}", d.set("fleet4"));
    }
    // Local bans go on without the LAPI.
    scan(&scanner, B);
    assert!(
        wait_until(Duration::from_secs(10), || no_ca
            .set("blocked4")
            .contains(SCANNER)),
        "{}",
        no_ca.log()
    );
    hub.stop_lapi();
}

/// Interoperability: Debian's crowdsec-firewall-bouncer (nftables mode) in
/// a namespace of its own enforces the decision nftsentry on A pushed.
#[test]
fn debians_firewall_bouncer_enforces_what_nftsentry_pushed() {
    let mut hub = Hub::new("fi");
    hub.setup_lapi(&format!("{LAPI}:8080"));
    hub.start_lapi();
    let url = format!("http://{LAPI}:8080");
    let scanner = hub.host("fis", &[SCANNER]);
    let a = Daemon::start(&hub, "fia", A, "hostA", "# none\n", "", &url);
    let mut c = hub.host("fic", &["192.0.2.3"]);
    let d = hub.dir.path.display().to_string();
    let cfg = hub.dir.file(
        "bouncer.yaml",
        &format!(
            "mode: nftables\npid_dir: {d}/\nupdate_frequency: 1s\ndaemonize: false\nlog_mode: file\nlog_dir: {d}/\nlog_level: info\n\
api_url: {url}/\napi_key: key-hostC\ninsecure_skip_verify: false\ndisable_ipv6: true\ndeny_action: DROP\ndeny_log: false\n\
supported_decisions_types:\n  - ban\nblacklists_ipv4: crowdsec-blacklists\nblacklists_ipv6: crowdsec6-blacklists\n\
nftables:\n  ipv4:\n    enabled: true\n    set-only: false\n    table: crowdsec\n    chain: crowdsec-chain\n  ipv6:\n    enabled: false\n    set-only: false\n    table: crowdsec6\n    chain: crowdsec6-chain\n\
prometheus:\n  enabled: false\n  listen_addr: 127.0.0.1\n  listen_port: 60601\n"
        ),
    );
    let log = std::fs::File::create(hub.dir.path.join("bouncer.out")).unwrap();
    c.spawn(
        c.cmd("crowdsec-firewall-bouncer")
            .arg("-c")
            .arg(&cfg)
            .stdout(log.try_clone().unwrap())
            .stderr(log),
    );
    assert!(reaches(&scanner, SCANNER, "192.0.2.3"));
    scan(&scanner, A);
    let listed = || {
        c.cmd("nft")
            .args(["list", "set", "ip", "crowdsec", "crowdsec-blacklists"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    assert!(
        wait_until(Duration::from_secs(20), || listed().contains(SCANNER)),
        "the bouncer did not enforce A's decision:\nA:\n{}\nbouncer:\n{}{}",
        a.log(),
        std::fs::read_to_string(hub.dir.path.join("bouncer.out")).unwrap_or_default(),
        std::fs::read_to_string(hub.dir.path.join("crowdsec-firewall-bouncer.log"))
            .unwrap_or_default()
    );
    assert!(!reaches(&scanner, SCANNER, "192.0.2.3"));
    hub.stop_lapi();
}
