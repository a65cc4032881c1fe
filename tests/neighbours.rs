//! The ignore list follows the host after start (issue 15): an address
//! added by SLAAC, DHCP or a VPN, a gateway in another routing table, a
//! resolver written into resolv.conf, systemd-resolved's and dnsmasq's
//! upstreams. Each is proven the way a spoofer would test it: a forged
//! probe "from" the new neighbour must be logged as ignored and never
//! banned, and, once the neighbour is gone, the same probe bans. A control
//! source that is not protected proves the probes get through. Root,
//! network namespaces (tests/common); the forged sources are the test's
//! own addresses and 198.18.0.0/15.
mod common;
use common::scene::Scene;
use common::spoof::{
    L4, SYN, Spoofer, accept_own_sources, packet, pin_victim_neighbours, route_spoofed_range_back,
};
use common::*;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Addresses the victim gains after start, on its eth0.
const NEW6: &str = "2001:db8:5::99";
const NEW4: &str = "198.51.100.99";
/// A gateway of a default route in routing table 100.
const TABLE_GW: &str = "192.0.2.77";
/// resolv.conf's server at start, and the one written in its place.
const RESOLVER_OLD: &str = "198.51.100.53";
const RESOLVER_NEW: &str = "198.51.100.54";
/// Not protected: a probe from here bans.
const CONTROL4: &str = "198.18.0.99";
const CONTROL6: &str = "2001:db8:99::9";

/// How long the daemon may take to follow a change (it waits out a burst
/// for 200 ms).
const FOLLOW: Duration = Duration::from_secs(5);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A victim running nftsentry (scan_trigger 0: a first probe bans) whose
/// spoofed own addresses reach the tripwires, with its own resolv.conf.
fn scene(tag: &str, extra: &str) -> Scene {
    Scene::build(
        tag,
        &format!("scan_trigger = 0\nban_time = \"1h\"\n{extra}"),
        "# nothing\n",
        |pair| {
            set_resolv_conf(&pair.victim, &format!("nameserver {RESOLVER_OLD}\n"));
            accept_own_sources(&pair.victim, "eth0");
            pin_victim_neighbours(pair);
            route_spoofed_range_back(pair);
        },
    )
}

/// The elements of one of the victim's sets, as nft lists it.
fn set_text(ns: &Netns, set: &str) -> String {
    let o = ns
        .cmd("nft")
        .args(["list", "set", "inet", "nftsentry", set])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ignore_set(addr: &str) -> &'static str {
    if addr.contains(':') {
        "ignore6"
    } else {
        "ignore4"
    }
}

/// Whether the kernel's ignore set of its family covers `addr` (an
/// element or a range holding it: `nft get element` answers for either).
fn ignored_in_kernel(ns: &Netns, addr: &str) -> bool {
    ns.cmd("nft")
        .args(["get", "element", "inet", "nftsentry", ignore_set(addr)])
        .arg(format!("{{ {addr} }}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Waits until the kernel's ignore set holds `addr` (or no longer does);
/// how long it took, or None.
fn wait_ignored(ns: &Netns, addr: &str, present: bool) -> Option<Duration> {
    let t0 = Instant::now();
    wait_until(FOLLOW, || ignored_in_kernel(ns, addr) == present).then(|| t0.elapsed())
}

/// Sends one forged SYN "from" `src` to the victim's tripwire port 1.
fn probe(spoofer: &Spoofer, src: &str) {
    let dst = if src.contains(':') {
        common::VICTIM6
    } else {
        common::VICTIM4
    };
    spoofer.send_sure(&packet(ip(src), ip(dst), L4::Tcp { flags: SYN }, 40000, 1));
}

/// Probes from each of `protected` (with the reason the log must give)
/// are logged as ignored and not banned; the controls, probed after them,
/// are banned.
#[track_caller]
fn assert_ignored_not_banned(s: &Scene, protected: &[(&str, &str)], controls: &[&str]) {
    let spoofer = Spoofer::open(&s.pair.attacker);
    for (src, _) in protected {
        probe(&spoofer, src);
    }
    for c in controls {
        probe(&spoofer, c);
        assert!(
            s.wait_banned(c),
            "control {c} not banned; log:\n{}",
            s.log()
        );
    }
    s.settle();
    let log = s.log();
    for (src, why) in protected {
        assert!(!s.banned(src), "{src} ({why}) was banned; log:\n{log}");
        let said = format!("attackalert: Host: {src} found in ignore list ({why}");
        assert!(log.contains(&said), "no line `{said}`; log:\n{log}");
    }
}

#[test]
fn addresses_added_after_start_are_ignored_and_bannable_once_removed() {
    let s = scene("nbadd", "");
    let v = &s.pair.victim;
    // The daemon is running; now the host gains addresses (SLAAC, DHCP).
    v.ip(&["-6", "addr", "add", &format!("{NEW6}/64"), "dev", "eth0"]);
    v.ip(&["addr", "add", &format!("{NEW4}/32"), "dev", "eth0"]);
    let took6 = wait_ignored(v, NEW6, true);
    let took4 = wait_ignored(v, NEW4, true);
    eprintln!("ignore sets updated after {took6:?} (IPv6) and {took4:?} (IPv4)");
    assert_ignored_not_banned(
        &s,
        &[
            (NEW6, "local address on eth0"),
            (NEW4, "local address on eth0"),
        ],
        &[CONTROL6],
    );
    assert!(took6.is_some() && took4.is_some(), "{}", s.log());
    let log = s.log();
    let changed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("adminalert: local addresses changed: "))
        .collect();
    eprintln!("{}", changed.join("\n"));
    assert!(!changed.is_empty(), "no change line; log:\n{log}");

    // Gone again: the same forged probes ban, and the control's ban stayed
    // through both changes of the ignore sets.
    v.ip(&["-6", "addr", "del", &format!("{NEW6}/64"), "dev", "eth0"]);
    v.ip(&["addr", "del", &format!("{NEW4}/32"), "dev", "eth0"]);
    assert!(wait_ignored(v, NEW6, false).is_some(), "{}", s.log());
    assert!(wait_ignored(v, NEW4, false).is_some(), "{}", s.log());
    assert!(s.banned(CONTROL6), "the control's ban was lost");
    let spoofer = Spoofer::open(&s.pair.attacker);
    for src in [NEW6, NEW4] {
        probe(&spoofer, src);
        assert!(
            s.wait_banned(src),
            "{src} not banned once removed; log:\n{}",
            s.log()
        );
    }
    // The rest of the table is as it was: the victim's own addresses stay
    // ignored.
    assert!(ignored_in_kernel(v, common::VICTIM6));
    assert!(ignored_in_kernel(v, common::VICTIM4));
}

#[test]
fn gateways_of_other_tables_and_a_rewritten_resolv_conf_are_followed() {
    let s = scene("nbgw", "");
    let v = &s.pair.victim;
    assert!(ignored_in_kernel(v, RESOLVER_OLD), "{}", s.log());
    // Policy routing: a default route in table 100 (a VPN's, say).
    v.ip(&["route", "add", "default", "via", TABLE_GW, "table", "100"]);
    // resolvconf or DHCP writes another server into resolv.conf: in place,
    // as `ip netns exec` bind-mounts /etc/netns/NAME/resolv.conf over
    // /etc/resolv.conf (a rename would not reach the daemon's mount
    // namespace at all: it keeps the old file).
    set_resolv_conf(v, &format!("nameserver {RESOLVER_NEW}\n"));
    let gw = wait_ignored(v, TABLE_GW, true);
    let res = wait_ignored(v, RESOLVER_NEW, true);
    eprintln!("followed after {gw:?} (gateway) and {res:?} (resolver)");
    assert_ignored_not_banned(
        &s,
        &[
            (TABLE_GW, "default gateway of routing table 100"),
            (RESOLVER_NEW, "resolver in /etc/resolv.conf"),
        ],
        &[CONTROL4],
    );
    // The old resolver is no longer one: it can be banned.
    assert!(
        wait_ignored(v, RESOLVER_OLD, false).is_some(),
        "{}",
        s.log()
    );
    let spoofer = Spoofer::open(&s.pair.attacker);
    probe(&spoofer, RESOLVER_OLD);
    assert!(s.wait_banned(RESOLVER_OLD), "{}", s.log());
    // The route goes: so does its gateway's protection.
    v.ip(&["route", "del", "default", "via", TABLE_GW, "table", "100"]);
    assert!(wait_ignored(v, TABLE_GW, false).is_some(), "{}", s.log());
    probe(&spoofer, TABLE_GW);
    assert!(s.wait_banned(TABLE_GW), "{}", s.log());
}

#[test]
fn without_the_owner_flag_a_put_back_table_and_a_reload_keep_the_current_list() {
    let s = scene("nbown", "table_owner = false\n");
    let v = &s.pair.victim;
    v.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{NEW6}/64"),
        "dev",
        "eth0",
        "nodad",
    ]);
    assert!(wait_ignored(v, NEW6, true).is_some(), "{}", s.log());
    // Someone deletes the table: the daemon puts it back with the list in
    // force now, not the one of start.
    v.nft(&["delete", "table", "inet", "nftsentry"]);
    assert!(
        wait_until(FOLLOW, || s.log().contains("put back with")),
        "{}",
        s.log()
    );
    assert!(wait_ignored(v, NEW6, true).is_some(), "{}", s.log());
    // A reload gathers the list again and keeps following afterwards.
    let o = s.cli(&["reload"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(ignored_in_kernel(v, NEW6), "{}", s.log());
    v.ip(&["addr", "add", &format!("{NEW4}/32"), "dev", "eth0"]);
    assert!(wait_ignored(v, NEW4, true).is_some(), "{}", s.log());
    v.ip(&["-6", "addr", "del", &format!("{NEW6}/64"), "dev", "eth0"]);
    assert!(wait_ignored(v, NEW6, false).is_some(), "{}", s.log());
    assert_ignored_not_banned(&s, &[(NEW4, "local address on eth0")], &[CONTROL6]);
}

/// The victim's nftables transactions while `f` runs, as `nft monitor`
/// reports them ("# new generation N by process P (nftsentry)"). The
/// monitor is a child of this test, ended by its PID (and by the
/// namespace's removal if the test fails first).
fn transactions_during(ns: &Netns, out: &Path, f: impl FnOnce()) -> usize {
    let mut child = ns
        .cmd("nft")
        .arg("monitor")
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // nft monitor prints nothing until it has joined the event group.
    std::thread::sleep(Duration::from_millis(300));
    f();
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(out).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("new generation") && l.contains("nftsentry"))
        .count()
}

/// A burst of 1,000 address changes costs one or two gatherings and as
/// many transactions, whatever the number of events.
#[test]
fn a_burst_of_a_thousand_addresses_is_one_or_two_transactions() {
    let s = scene("nbflood", "");
    let dir = TempDir::new("nbflood");
    let addrs: Vec<String> = (0..1000u32)
        .map(|i| format!("2001:db8:7::{:x}", 2 * i + 1))
        .collect();
    let batch = |verb: &str| {
        let text: String = addrs
            .iter()
            .map(|a| format!("addr {verb} {a}/128 dev lo nodad\n"))
            .collect();
        dir.file(&format!("batch-{verb}"), &text)
    };
    let (add, del) = (batch("add"), batch("del"));
    let victim = &s.pair.victim;
    let count = || set_text(victim, "ignore6").matches("2001:db8:7::").count();
    for (file, want, what) in [(&add, 1000, "added"), (&del, 0, "removed")] {
        let mut took = None;
        let n = transactions_during(victim, &dir.path.join("monitor"), || {
            let t0 = Instant::now();
            run_ok(
                Command::new("ip")
                    .args(["-n", &victim.name, "-batch"])
                    .arg(file.as_path()),
            );
            let ok = wait_until(Duration::from_secs(10), || count() == want);
            took = ok.then(|| t0.elapsed());
        });
        eprintln!("1000 addresses {what}: ignore6 updated after {took:?} in {n} transaction(s)");
        assert!(
            took.is_some(),
            "ignore6 holds {} of them; log:\n{}",
            count(),
            s.log()
        );
        assert!(
            (1..=3).contains(&n),
            "{n} transactions for one burst; log:\n{}",
            s.log()
        );
    }
}

/// `nftsentry run` in `ns`, in a mount namespace of its own whose /run is
/// a fresh tmpfs (so the test can play systemd-resolved and dnsmasq
/// without touching the host's /run), with `files` (path below /run,
/// content) written there first. Returns the daemon's PID; its /run is
/// /proc/PID/root/run.
fn start_with_private_run(ns: &mut Netns, cfg: &Path, log: &Path, files: &[(&str, &str)]) -> u32 {
    let mut script = String::from("mount -t tmpfs -o mode=0755 nfst-run /run || exit 1\n");
    for (path, text) in files {
        script.push_str(&format!(
            "mkdir -p \"$(dirname /run/{path})\" && printf '%s' '{text}' > /run/{path} || exit 1\n"
        ));
    }
    script.push_str("exec \"$0\" -c \"$1\" run\n");
    let mut c = ns.cmd("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .arg(nftsentry_bin())
        .arg(cfg)
        .stderr(std::fs::File::create(log).unwrap());
    let pid = ns.spawn(&mut c);
    let ns = &*ns;
    let present = || {
        ns.cmd("nft")
            .args(["list", "table", "inet", "nftsentry"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(
        wait_until(Duration::from_secs(10), present),
        "daemon did not install its table; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    pid
}

/// Writes `text` to `path` as a resolver daemon does: a new file renamed
/// over the old one.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn systemd_resolved_and_dnsmasq_upstreams_are_ignored_and_followed() {
    let mut pair = Pair::new("nbres");
    accept_own_sources(&pair.victim, "eth0");
    pin_victim_neighbours(&pair);
    route_spoofed_range_back(&pair);
    // resolv.conf names resolved's stub and a forwarder on this host.
    set_resolv_conf(
        &pair.victim,
        "nameserver 127.0.0.53\nnameserver 127.0.0.1\n",
    );
    let dir = TempDir::new("nbres");
    let ignore = dir.file("ignore", "# nothing\n");
    let cfg = dir.file(
        "nftsentry.toml",
        &format!(
            "ignore_file = \"{}\"\n{}scan_trigger = 0\nban_time = \"1h\"\n[tcp]\nports = \"1,11,79\"\n[udp]\nports = \"1,7,9\"\n",
            ignore.display(),
            private_files(&dir.path)
        ),
    );
    let log = dir.path.join("log");
    let pid = start_with_private_run(
        &mut pair.victim,
        &cfg,
        &log,
        &[
            (
                "systemd/resolve/resolv.conf",
                "# managed by systemd-resolved\nnameserver 198.51.100.61\nnameserver 2001:db8:53::61\n",
            ),
            ("dnsmasq/resolv.conf", "nameserver 198.51.100.71\n"),
        ],
    );
    let run = PathBuf::from(format!("/proc/{pid}/root/run"));
    let v = &pair.victim;
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    for a in ["198.51.100.61", "2001:db8:53::61", "198.51.100.71"] {
        assert!(
            ignored_in_kernel(v, a),
            "{a} not ignored at start; log:\n{}",
            read_log()
        );
    }
    // resolved learns other upstreams (DHCP on another link) and rewrites
    // its file by a rename; dnsmasq's is rewritten in place.
    replace_file(
        &run.join("systemd/resolve/resolv.conf"),
        "nameserver 198.51.100.62\n",
    );
    std::fs::write(
        run.join("dnsmasq/resolv.conf"),
        "nameserver 198.51.100.72\n",
    )
    .unwrap();
    for (a, present) in [
        ("198.51.100.62", true),
        ("198.51.100.72", true),
        ("198.51.100.61", false),
        ("2001:db8:53::61", false),
        ("198.51.100.71", false),
    ] {
        assert!(
            wait_ignored(v, a, present).is_some(),
            "{a} should be ignored: {present}; log:\n{}",
            read_log()
        );
    }
    let s_banned = |a: &str| wait_until(Duration::from_secs(5), || ban_covers(v, a));
    let spoofer = Spoofer::open(&pair.attacker);
    for a in ["198.51.100.62", "198.51.100.72", CONTROL4] {
        probe(&spoofer, a);
    }
    assert!(s_banned(CONTROL4), "{}", read_log());
    std::thread::sleep(Duration::from_millis(500));
    let text = read_log();
    for (a, why) in [
        (
            "198.51.100.62",
            "resolver in /run/systemd/resolve/resolv.conf (systemd-resolved's upstream)",
        ),
        (
            "198.51.100.72",
            "resolver in /run/dnsmasq/resolv.conf (dnsmasq's upstream)",
        ),
    ] {
        assert!(!set_text(v, "blocked4").contains(a), "{a} banned:\n{text}");
        let said = format!("attackalert: Host: {a} found in ignore list ({why})");
        assert!(text.contains(&said), "no `{said}`:\n{text}");
    }
}
