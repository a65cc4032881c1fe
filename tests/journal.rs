//! The journal's native protocol: a daemon started as systemd starts it
//! (JOURNAL_STREAM set) sends each line as a datagram to the journal's
//! socket, here one the test binds (NFTSENTRY_JOURNAL_SOCKET), with the
//! unchanged PortSentry text in MESSAGE, PRIORITY, a MESSAGE_ID per kind and
//! NFTSENTRY_* fields; after an nmap scan from another namespace the probe
//! and the ban say the source, port, protocol, scan type, action and length.
mod common;
use common::*;
use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// One datagram as fields (the simple `KEY=value` form; values with a
/// newline are framed with a length).
type Record = HashMap<String, String>;

fn parse(d: &[u8]) -> Record {
    let mut out = HashMap::new();
    let mut rest = d;
    while !rest.is_empty() {
        let nl = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = &rest[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            out.insert(
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            );
            rest = rest.get(nl + 1..).unwrap_or(&[]);
        } else {
            let key = String::from_utf8_lossy(line).into_owned();
            let len = u64::from_le_bytes(rest[nl + 1..nl + 9].try_into().unwrap()) as usize;
            let value = &rest[nl + 9..nl + 9 + len];
            out.insert(key, String::from_utf8_lossy(value).into_owned());
            rest = rest.get(nl + 10 + len..).unwrap_or(&[]);
        }
    }
    out
}

#[test]
fn lines_reach_the_journal_with_their_fields() {
    let mut pair = Pair::new("jrnl");
    let dir = TempDir::new("jrnl");
    let sock_path = dir.path.join("journal.sock");
    let journal = UnixDatagram::bind(&sock_path).unwrap();
    journal
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let ignore = dir.file("ignore", "# nothing\n");
    let cfg = dir.file(
        "nftsentry.toml",
        &format!(
            "ignore_file = \"{}\"\n{}[tcp]\nports = \"1\"\n[udp]\nports = \"\"\n",
            ignore.display(),
            private_files(&dir.path)
        ),
    );
    let log = std::fs::File::create(dir.path.join("stderr")).unwrap();
    let mut c = pair.victim.cmd(nftsentry_bin());
    c.arg("-c")
        .arg(&cfg)
        .arg("run")
        .env("JOURNAL_STREAM", "8:12345")
        .env("NFTSENTRY_JOURNAL_SOCKET", &sock_path)
        .stdout(Stdio::null())
        .stderr(log);
    pair.victim.spawn(&mut c);
    let mut got: Vec<Record> = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut receive = |until: &dyn Fn(&[Record]) -> bool| {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) && !until(&got) {
            if let Ok(n) = journal.recv(&mut buf) {
                got.push(parse(&buf[..n]));
            }
        }
        got.clone()
    };
    let kind =
        |m: &HashMap<String, String>, k: &str| m.get("NFTSENTRY_KIND").is_some_and(|x| x == k);
    let started = receive(&|g| g.iter().any(|m| kind(m, "start")));
    let start = started
        .iter()
        .find(|m| kind(m, "start"))
        .unwrap_or_else(|| panic!("no start line: {started:?}"));
    assert!(start["MESSAGE"].starts_with("adminalert: nftsentry "));
    assert_eq!(start["MESSAGE_ID"], "d9d4e870abf04bd4b0fae6ad23e75b8c");
    assert_eq!(start["PRIORITY"], "5");
    assert_eq!(start["SYSLOG_IDENTIFIER"], "nftsentry");
    let mut nmap = pair.attacker.cmd("nmap");
    nmap.args([
        "-sS",
        "-T5",
        "--max-retries",
        "0",
        "-Pn",
        "-n",
        "-p",
        "1",
        VICTIM4,
    ]);
    run_ok(&mut nmap);
    let all = receive(&|g| g.iter().any(|m| kind(m, "ban")));
    let probe = all
        .iter()
        .find(|m| kind(m, "probe"))
        .unwrap_or_else(|| panic!("no probe line: {all:?}"));
    assert_eq!(
        probe["MESSAGE"],
        format!(
            "attackalert: TCP SYN/Normal scan from host: {ATTACKER4}/{ATTACKER4} to TCP port: 1"
        )
    );
    assert_eq!(probe["MESSAGE_ID"], "0c9e3a4d167d4b8aabb70bdd0c676279");
    assert_eq!(probe["NFTSENTRY_SOURCE"], ATTACKER4);
    assert_eq!(probe["NFTSENTRY_PORT"], "1");
    assert_eq!(probe["NFTSENTRY_PROTOCOL"], "TCP");
    assert_eq!(probe["NFTSENTRY_SCAN_TYPE"], "TCP SYN/Normal scan");
    let ban = all.iter().find(|m| kind(m, "ban")).unwrap();
    assert_eq!(ban["NFTSENTRY_SOURCE"], ATTACKER4);
    assert_eq!(ban["NFTSENTRY_ACTION"], "nftables set");
    assert_eq!(ban["NFTSENTRY_BAN_LENGTH"], "1d");
    assert_eq!(ban["MESSAGE_ID"], "44a23dc3c33f4542a0096aaacce411f7");
    // Nothing went to stderr: every line went to the journal.
    let stderr = std::fs::read_to_string(dir.path.join("stderr")).unwrap();
    assert!(!stderr.contains("attackalert"), "{stderr}");
}
