//! The metrics endpoint (`metrics_listen`) against real peers: promtool
//! checks the exposition, a real Prometheus started here (in the victim's
//! namespace, with its own config and storage in a temp dir) scrapes the
//! daemon and answers through its HTTP API after an nmap scan from the
//! attacker's namespace; `nftsentry metrics` prints the same text; `list`
//! shows what a ban dropped; a flood of idle clients and garbage requests
//! is bounded and changes nothing for detection.
mod common;
use common::scene::*;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const METRICS: &str = "127.0.0.1:9817";

/// One HTTP request (raw bytes) to `addr` inside `ns`; the whole answer.
fn http(ns: &Netns, addr: &'static str, request: Vec<u8>) -> String {
    ns.enter(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&request).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
}

fn get(ns: &Netns, addr: &'static str, path: &str) -> String {
    http(
        ns,
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes(),
    )
}

/// The body of a 200 answer.
fn body(answer: &str) -> String {
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    answer.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// The value of the sample `name{labels}` (labels as written) in `text`.
fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// `promtool check metrics` on `text`: (success, its output).
fn promtool(text: &str) -> (bool, String) {
    let mut c = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package, installed by tests/run)");
    c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// A Prometheus in `ns` scraping the daemon every second; killed with the
/// namespace. Returns its API address.
fn start_prometheus(ns: &mut Netns, dir: &TempDir) -> &'static str {
    const API: &str = "127.0.0.1:19090";
    let cfg = dir.file(
        "prometheus.yml",
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: nftsentry\n    static_configs:\n      - targets: ['{METRICS}']\n"
        ),
    );
    let data = dir.path.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let log = std::fs::File::create(dir.path.join("prometheus.log")).unwrap();
    let mut c = ns.cmd("prometheus");
    c.arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address={API}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(log);
    ns.spawn(&mut c);
    assert!(
        wait_until(Duration::from_secs(30), || {
            let ok = ns.enter(|| TcpStream::connect(API).is_ok());
            ok && get(ns, API, "/-/ready").starts_with("HTTP/1.1 200")
        }),
        "prometheus did not start: {}",
        std::fs::read_to_string(dir.path.join("prometheus.log")).unwrap_or_default()
    );
    API
}

/// The value Prometheus' API gives for an instant `query` (one series).
fn query(ns: &Netns, api: &'static str, q: &str) -> Option<f64> {
    let enc: String = q
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let answer = get(ns, api, &format!("/api/v1/query?query={enc}"));
    let (_, json) = answer.split_once("\r\n\r\n")?;
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let r = v["data"]["result"].as_array()?;
    if r.len() != 1 {
        return None;
    }
    r[0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn prometheus_scrapes_bans_probes_and_drops_after_a_scan() {
    let mut s = Scene::new("mprom", &format!("metrics_listen = \"{METRICS}\"\n"));
    let dir = TempDir::new("mprom-p");

    let api = start_prometheus(&mut s.pair.victim, &dir);
    // Before any scan: the exposition is valid and counts nothing.
    let first = body(&get(&s.pair.victim, METRICS, "/metrics"));
    let (ok, out) = promtool(&first);
    assert!(ok, "promtool check metrics:\n{out}\n{first}");
    assert_eq!(
        sample(
            &first,
            "nftsentry_probes_total{proto=\"tcp\",scan_type=\"syn\"}"
        ),
        Some(0)
    );
    s.nmap("-sS", false, "1");
    assert!(s.wait_banned(ATTACKER4), "no ban: {}", s.log());
    // Packets from the banned source: dropped, counted by its element.
    let ping = s
        .pair
        .attacker
        .cmd("ping")
        .args(["-c", "5", "-i", "0.2", "-W", "1", VICTIM4])
        .output()
        .unwrap();
    assert!(!ping.status.success(), "a banned source got replies");
    // `list` shows what the ban dropped.
    let list = String::from_utf8(s.cli(&["list", "--json"]).stdout).unwrap();
    let bans: serde_json::Value = serde_json::from_str(&list).unwrap();
    let ban = bans
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["address"] == ATTACKER4)
        .unwrap_or_else(|| panic!("{list}"));
    assert!(ban["packets"].as_u64().unwrap() >= 5, "{list}");
    assert!(ban["bytes"].as_u64().unwrap() >= 5 * 84, "{list}");
    let text = String::from_utf8(s.cli(&["list"]).stdout).unwrap();
    assert!(text.contains("DROPPED PKTS"), "{text}");
    // Prometheus sees the ban, the probe and the drops.
    let want = [
        (
            "nftsentry_bans_total{reason=\"syn\",origin=\"detection\"}",
            1.0,
        ),
        ("nftsentry_probes_total{scan_type=\"syn\"}", 1.0),
        (
            "nftsentry_active_bans{family=\"ipv4\",kind=\"address\"}",
            1.0,
        ),
        ("nftsentry_dropped_packets_total{family=\"ipv4\"}", 5.0),
        ("nftsentry_build_info", 1.0),
    ];
    let mut last = Vec::new();
    let seen = wait_until(Duration::from_secs(20), || {
        last = want
            .iter()
            .map(|(q, _)| (q.to_string(), query(&s.pair.victim, api, q)))
            .collect();
        last.iter()
            .zip(want)
            .all(|((_, got), (_, min))| got.is_some_and(|g| g >= min))
    });
    assert!(seen, "prometheus answered {last:?}");
    assert_eq!(
        query(
            &s.pair.victim,
            api,
            "sum(nftsentry_active_bans{family=\"ipv6\"})"
        ),
        Some(0.0)
    );
    // The text after the scan: valid, and what `nftsentry metrics` prints
    // (the endpoint's copy is at most a second old: both once quiet).
    let mut pair = (String::new(), String::new());
    let same = wait_until(Duration::from_secs(5), || {
        let served = body(&get(&s.pair.victim, METRICS, "/metrics"));
        let o = s.cli(&["metrics"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        pair = (served, String::from_utf8(o.stdout).unwrap());
        pair.0 == pair.1
    });
    assert!(same, "endpoint:\n{}\ncli:\n{}", pair.0, pair.1);
    let (ok, out) = promtool(&pair.0);
    assert!(ok, "promtool check metrics:\n{out}\n{}", pair.0);
    assert!(
        sample(
            &pair.0,
            "nftsentry_probes_total{proto=\"tcp\",scan_type=\"syn\"}"
        )
        .is_some_and(|n| n >= 1)
    );
    assert!(!pair.0.contains(ATTACKER4), "an address in a label");
}

/// Threads of a process (from /proc).
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count()
}

#[test]
fn endpoint_survives_a_flood_of_idle_clients_and_garbage() {
    let s = Scene::new("mflood", &format!("metrics_listen = \"{METRICS}\"\n"));
    let ns = &s.pair.victim;
    // Other paths, methods and what is not HTTP.
    let status = |a: String| a.lines().next().unwrap_or("").to_string();
    assert_eq!(status(get(ns, METRICS, "/")), "HTTP/1.1 404 Not Found", "/");
    assert_eq!(
        status(http(
            ns,
            METRICS,
            b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc".to_vec()
        )),
        "HTTP/1.1 405 Method Not Allowed"
    );
    assert_eq!(
        status(http(
            ns,
            METRICS,
            b"\x16\x03\x01\x02\x00\x01\r\n\r\n".to_vec()
        )),
        "HTTP/1.1 400 Bad Request"
    );
    assert_eq!(
        status(http(ns, METRICS, vec![b'A'; 6000])),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    let base = threads(s.pid);
    // 40 clients that connect and say nothing, while an nmap scan runs.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let holder = {
        let path = format!("/var/run/netns/{}", ns.name);
        std::thread::spawn(move || {
            let f = std::fs::File::open(&path).unwrap();
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let idle: Vec<TcpStream> = (0..40)
                .filter_map(|_| TcpStream::connect(METRICS).ok())
                .collect();
            let _ = rx.recv_timeout(Duration::from_secs(20));
            idle.len()
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let during = threads(s.pid);
    assert!(
        during <= base + 8,
        "{during} threads with idle clients, {base} before: not bounded"
    );
    s.nmap("-sS", false, "1");
    assert!(
        s.wait_banned(ATTACKER4),
        "detection stalled by the flood: {}",
        s.log()
    );
    tx.send(()).unwrap();
    assert!(holder.join().unwrap() > 8);
    // Served again once the idle clients are gone (or timed out), with the
    // ban (the figures published at most a second ago).
    let started = Instant::now();
    let mut last = String::new();
    let series = "nftsentry_bans_total{reason=\"syn\",origin=\"detection\"}";
    let back = wait_until(Duration::from_secs(8), || {
        last = get(ns, METRICS, "/metrics");
        last.starts_with("HTTP/1.1 200 OK") && sample(&body(&last), series).is_some_and(|n| n >= 1)
    });
    assert!(back, "not served after the flood: {last}\nlog: {}", s.log());
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(threads(s.pid) <= base + 8);
}

#[test]
fn metrics_listen_off_by_default_and_the_command_needs_the_daemon() {
    let s = Scene::new("moff", "");
    let refused = s.pair.victim.enter(|| TcpStream::connect(METRICS).is_err());
    assert!(
        refused,
        "something listens on {METRICS} without metrics_listen"
    );
    // The command works without the endpoint: the control socket.
    let o = s.cli(&["metrics"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains("# TYPE nftsentry_probes_total counter"),
        "{text}"
    );
    let (ok, out) = promtool(&text);
    assert!(ok, "{out}");
}

#[test]
fn the_end_of_a_ban_says_what_it_dropped() {
    let s = Scene::new("mend", "ban_time = \"4s\"\n");
    s.nmap("-sS", false, "1");
    assert!(s.wait_banned(ATTACKER4), "no ban: {}", s.log());
    let ping = s
        .pair
        .attacker
        .cmd("ping")
        .args(["-c", "5", "-i", "0.2", "-W", "1", VICTIM4])
        .output()
        .unwrap();
    assert!(!ping.status.success(), "a banned source got replies");
    let prefix = format!("ban of {ATTACKER4} expired; it dropped ");
    let mut line = String::new();
    let ended = wait_until(Duration::from_secs(10), || {
        line = s
            .log()
            .lines()
            .find(|l| l.contains(&prefix))
            .unwrap_or("")
            .to_string();
        !line.is_empty()
    });
    assert!(ended, "no end-of-ban line with drops: {}", s.log());
    // "... it dropped N packets (B bytes)"
    let rest = line.split(&prefix).nth(1).unwrap();
    let words: Vec<&str> = rest.split_whitespace().collect();
    let packets: u64 = words[0].parse().unwrap();
    let bytes: u64 = words[2].trim_start_matches('(').parse().unwrap();
    assert!(packets >= 5 && bytes >= 5 * 84, "{line}");
}

/// What `list --json` says the ban on `addr` dropped.
fn listed_drops(s: &Scene, addr: &str) -> u64 {
    let list = String::from_utf8(s.cli(&["list", "--json"]).stdout).unwrap();
    let bans: serde_json::Value = serde_json::from_str(&list).unwrap();
    bans.as_array()
        .unwrap()
        .iter()
        .find(|b| b["address"] == addr)
        .and_then(|b| b["packets"].as_u64())
        .unwrap_or_else(|| panic!("{list}"))
}

#[test]
fn a_reload_keeps_what_bans_dropped() {
    let s = Scene::new("mrel", "");
    s.nmap("-sS", false, "1");
    assert!(s.wait_banned(ATTACKER4), "no ban: {}", s.log());
    let _ = s
        .pair
        .attacker
        .cmd("ping")
        .args(["-c", "4", "-i", "0.2", "-W", "1", VICTIM4])
        .output();
    let before = listed_drops(&s, ATTACKER4);
    assert!(before >= 4, "{before}");
    let o = s.cli(&["reload"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The new table's element starts from what the old one counted, and
    // the metrics' total keeps the old drop rule's count.
    assert_eq!(listed_drops(&s, ATTACKER4), before);
    let m = String::from_utf8(s.cli(&["metrics"]).stdout).unwrap();
    let total = sample(&m, "nftsentry_dropped_packets_total{family=\"ipv4\"}").unwrap();
    assert!(total >= before, "{total} < {before}\n{m}");
    assert_eq!(sample(&m, "nftsentry_reloads_total"), Some(1), "{m}");
}
