//! `[crowdsec]` with the real engine: Debian's crowdsec running its Local
//! API alone (`crowdsec -no-cs -no-capi`, a config and sqlite file of the
//! test's own) in a hub namespace, two nftsentry daemons (A and B) and a
//! scanner in namespaces of their own on the hub's bridge. Needs root, the
//! crowdsec package (tests/run installs it) and nmap.

mod common;

use common::*;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

const LAPI: &str = "192.0.2.254";
const A: &str = "192.0.2.1";
const B: &str = "192.0.2.2";
const SCANNER: &str = "192.0.2.66";
/// More addresses of the scanner's namespace (on the bridge too).
const OTHER: &str = "192.0.2.77";
const RANGE_IN: &str = "198.51.100.7";
const RANGE_IGNORED: &str = "198.51.100.200";

/// The hub with its bridge and the LAPI, and the namespaces on it.
struct Hub {
    hub: Netns,
    dir: TempDir,
    lapi_pid: Option<u32>,
    hosts: std::cell::Cell<u32>,
}

fn out_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Hub {
    fn new(tag: &str) -> Hub {
        let hub = Netns::new(&format!("{tag}h"));
        // A fixed address: a bridge without one takes its ports' lowest,
        // which changes as hosts join, and the hosts' ARP entries for the
        // LAPI would then point at a port.
        hub.ip(&[
            "link",
            "add",
            "br0",
            "address",
            "02:00:00:00:00:fe",
            "type",
            "bridge",
        ]);
        hub.ip(&["addr", "add", &format!("{LAPI}/24"), "dev", "br0"]);
        hub.ip(&["link", "set", "br0", "up"]);
        let dir = TempDir::new(tag);
        Hub {
            hub,
            dir,
            lapi_pid: None,
            hosts: std::cell::Cell::new(0),
        }
    }

    /// A namespace on the bridge with `addrs` (the first is its own, the
    /// others on the same link), and routes to 198.51.100.0/24 on the link.
    fn host(&self, tag: &str, addrs: &[&str]) -> Netns {
        let ns = Netns::new(tag);
        // Veths live in the hub: their names need only be unique there.
        self.hosts.set(self.hosts.get() + 1);
        let veth = &format!("port{}", self.hosts.get());
        self.hub.ip(&[
            "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ]);
        self.hub.ip(&["link", "set", veth, "master", "br0"]);
        self.hub.ip(&["link", "set", veth, "up"]);
        for a in addrs {
            let prefix = if a.starts_with("192.0.2.") { 24 } else { 32 };
            ns.ip(&["addr", "add", &format!("{a}/{prefix}"), "dev", "eth0"]);
        }
        ns.ip(&["link", "set", "eth0", "up"]);
        ns.ip(&["route", "add", "198.51.100.0/24", "dev", "eth0"]);
        ns
    }

    fn cfg(&self) -> PathBuf {
        self.dir.path.join("crowdsec.yaml")
    }

    /// Writes the LAPI's config and credentials: machines hostA and hostB
    /// (password "pw-" + name), bouncers with key "key-" + name, and the
    /// `cli` machine cscli itself uses.
    fn setup_lapi(&self, listen: &str) {
        self.setup_lapi_tls(listen, false)
    }

    /// With `tls`, the LAPI serves a certificate for 192.0.2.254 signed by
    /// a CA the test makes (`ca.pem` in the hub's directory).
    fn setup_lapi_tls(&self, listen: &str, tls: bool) {
        let d = &self.dir.path;
        let (server_tls, client_tls, scheme) = if tls {
            make_certs(d);
            (
                format!(
                    "    tls:\n      cert_file: {}/server.pem\n      key_file: {}/server.key\n",
                    d.display(),
                    d.display()
                ),
                "    insecure_skip_verify: true\n",
                "https",
            )
        } else {
            (String::new(), "", "http")
        };
        let yaml = format!(
            "common:\n  daemonize: false\n  log_media: file\n  log_level: info\n  log_dir: {d}/\n  working_dir: .\n\
config_paths:\n  config_dir: {d}/\n  data_dir: {d}/data/\n  simulation_path: {d}/simulation.yaml\n  hub_dir: /var/lib/crowdsec/hub/\n  index_path: /var/lib/crowdsec/hub/.index.json\n  notification_dir: {d}/notifications/\n  plugin_dir: /usr/lib/crowdsec/plugins/\n\
crowdsec_service:\n  acquisition_path: {d}/acquis.yaml\n\
cscli:\n  output: human\n\
db_config:\n  log_level: info\n  type: sqlite\n  db_path: {d}/data/crowdsec.db\n\
api:\n  client:\n    credentials_path: {d}/cli.yaml\n{client_tls}  server:\n    log_level: info\n    listen_uri: {listen}\n    profiles_path: /etc/crowdsec/profiles.yaml\n{server_tls}    trusted_ips:\n      - 127.0.0.1\n      - \"::1\"\n\
prometheus:\n  enabled: false\n",
            d = d.display()
        );
        self.dir.file("crowdsec.yaml", &yaml);
        std::fs::create_dir_all(d.join("data")).unwrap();
        std::fs::create_dir_all(d.join("notifications")).unwrap();
        self.dir.file("acquis.yaml", "filenames: []\n");
        self.dir
            .file("simulation.yaml", "simulation: off\nexclusions: []\n");
        for m in ["hostA", "hostB", "hostC"] {
            self.cscli(&[
                "machines",
                "add",
                m,
                "--password",
                &format!("pw-{m}"),
                "-f",
                &d.join(format!("{m}.yaml")).display().to_string(),
            ]);
            self.cscli(&["bouncers", "add", m, "--key", &format!("key-{m}")]);
        }
        let listen = listen.replace("0.0.0.0", LAPI);
        let url = format!("{scheme}://{listen}");
        self.cscli(&[
            "machines",
            "add",
            "cli",
            "--auto",
            "-f",
            &d.join("cli.yaml").display().to_string(),
            "--url",
            &url,
        ]);
    }

    fn start_lapi(&mut self) {
        let log = std::fs::File::create(self.dir.path.join("lapi.out")).unwrap();
        let mut c = self.hub.cmd("crowdsec");
        c.arg("-c")
            .arg(self.cfg())
            .args(["-no-cs", "-no-capi"])
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.lapi_pid = Some(self.hub.spawn(&mut c));
        assert!(
            wait_until(Duration::from_secs(20), || {
                self.hub
                    .cmd("cscli")
                    .arg("-c")
                    .arg(self.cfg())
                    .args(["decisions", "list", "-a"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            }),
            "the Local API did not answer; its log:\n{}",
            std::fs::read_to_string(self.dir.path.join("crowdsec_api.log")).unwrap_or_default()
        );
    }

    /// The end of the LAPI's own log, for failure messages.
    fn api_log(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path.join("crowdsec_api.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn stop_lapi(&mut self) {
        if let Some(pid) = self.lapi_pid.take() {
            let mut child = self.hub.take_child(pid);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `cscli -c CONFIG ARGS` in the hub, checked.
    fn cscli(&self, args: &[&str]) -> String {
        let o = run_ok(self.hub.cmd("cscli").arg("-c").arg(self.cfg()).args(args));
        out_text(&o)
    }

    /// A secret file of mode 0600.
    fn secret(&self, name: &str, value: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.dir.file(name, &format!("{value}\n"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }
}

/// One nftsentry daemon on the hub.
struct Daemon {
    ns: Netns,
    /// Holds the config, state and log until the daemon ends.
    _dir: TempDir,
    cfg: PathBuf,
    log: PathBuf,
    pid: u32,
}

impl Daemon {
    /// `machine` logs in as itself with its password and key (or the
    /// `password`/`key` given), pulling every second.
    fn start(
        hub: &Hub,
        tag: &str,
        addr: &str,
        machine: &str,
        ignore: &str,
        extra: &str,
        url: &str,
    ) -> Daemon {
        Daemon::start_with(hub, tag, addr, machine, ignore, extra, url, None, "")
    }

    #[allow(clippy::too_many_arguments)]
    fn start_with(
        hub: &Hub,
        tag: &str,
        addr: &str,
        machine: &str,
        ignore: &str,
        extra: &str,
        url: &str,
        creds: Option<(&str, &str)>,
        crowdsec_extra: &str,
    ) -> Daemon {
        let mut ns = hub.host(tag, &[addr]);
        let dir = TempDir::new(tag);
        let (pw, key) = creds.unwrap_or(("", ""));
        // The default timeout for the real LAPI; the server that never
        // answers gets a short one.
        let timeout = if url.ends_with(":8082") { "2s" } else { "10s" };
        let pw = if pw.is_empty() {
            format!("pw-{machine}")
        } else {
            pw.to_string()
        };
        let key = if key.is_empty() {
            format!("key-{machine}")
        } else {
            key.to_string()
        };
        let pw = hub.secret(&format!("{machine}-{tag}.pw"), &pw);
        let key = hub.secret(&format!("{machine}-{tag}.key"), &key);
        let ignore = dir.file("ignore", ignore);
        let cfg = dir.file(
            "nftsentry.toml",
            &format!(
                "ignore_file = \"{}\"\n{}scan_trigger = 2\n{extra}\n\
[tcp]\nports = \"1,11,79,120,1000\"\n[udp]\nmode = \"off\"\n\
[crowdsec]\nenabled = true\nurl = \"{url}\"\nmachine_id = \"{machine}\"\n\
password_file = \"{}\"\napi_key_file = \"{}\"\npush_evidence = \"ports\"\n\
pull_interval = \"1s\"\ntimeout = \"{timeout}\"\n{crowdsec_extra}",
                ignore.display(),
                private_files(&dir.path),
                pw.display(),
                key.display()
            ),
        );
        let log = dir.path.join("log");
        let pid = start_daemon(&mut ns, &cfg, &log);
        Daemon {
            ns,
            _dir: dir,
            cfg,
            log,
            pid,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn status(&self) -> String {
        out_text(&nftsentry(&self.ns, &self.cfg, &["status"]))
    }

    fn set(&self, name: &str) -> String {
        let o = self
            .ns
            .cmd("nft")
            .args(["list", "set", "inet", "nftsentry", name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Whether `addr` is in the fleet's IPv4 set (as itself or in a range).
    fn fleet_has(&self, needle: &str) -> bool {
        self.set("fleet4").contains(needle)
    }
}

/// One echo request from `src` (an address of `from`) to `dst`: answered?
fn reaches(from: &Netns, src: &str, dst: &str) -> bool {
    from.cmd("ping")
        .args(["-c", "1", "-W", "1", "-I", src, dst])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// nmap over the tripwires: their residues modulo 32 differ, so the
/// tracker's port bits count every one and a ban rests on "ports"
/// evidence (pushed with push_evidence = "ports").
fn scan(from: &Netns, target: &str) -> String {
    let o = run_ok(from.cmd("nmap").args([
        "-sS",
        "-T5",
        "--max-retries",
        "0",
        "-Pn",
        "-n",
        "-p",
        "1,11,79,120,1000",
        target,
    ]));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

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
    let b = Daemon::start(&hub, "fdb", B, "hostB", "# none\n", "", &url);
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

/// A CA, and a certificate it signs for 192.0.2.254 only, in `dir`.
fn make_certs(dir: &std::path::Path) {
    let d = dir.display();
    let script = format!(
        "set -e; cd {d}; \
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=nftsentry-test-CA 2>/dev/null; \
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=192.0.2.254 2>/dev/null; \
printf 'subjectAltName=IP:192.0.2.254\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext; \
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext 2>/dev/null"
    );
    run_ok(std::process::Command::new("sh").args(["-c", &script]));
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
