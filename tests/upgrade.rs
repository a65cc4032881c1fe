//! upgrade: a state file written by the previous release (0.1.0, whose lines
//! named the hosts.deny file and line) restores every ban and every action
//! under this one: the kernel elements with their time left, the routes,
//! the hosts.deny lines, and the file is written back in the new form.
//! tests/fixtures/state-0.1.0 was made by the 0.1.0 binary
//! (tests/fixtures/make-state-0.1.0); its times are moved to now here, with
//! the line checksum recomputed exactly as 0.1.0 computed it.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{Pair, TempDir, nftsentry, private_files, signal, start_daemon, wait_until};
use nftsentry::kernel::nft::NftSocket;
use nftsentry::table::bans;

/// FNV-1a, 32 bits, as the state file's `crc=`.
fn fnv(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The fixture with every time moved by `shift_ms` and the checksums
/// recomputed, line by line.
fn shifted(fixture: &str, shift_ms: i64) -> String {
    let mut out = String::new();
    for line in fixture.lines() {
        if !line.starts_with("ban ") {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let (body, _) = line.rsplit_once(" crc=").unwrap();
        let body: Vec<String> = body
            .split(' ')
            .map(|w| match w.split_once('=') {
                Some((k @ ("banned" | "expires"), v)) => {
                    format!("{k}={}", v.parse::<i64>().unwrap() + shift_ms)
                }
                _ => w.to_string(),
            })
            .collect();
        let body = body.join(" ");
        out.push_str(&format!("{body} crc={:08x}\n", fnv(body.as_bytes())));
    }
    out
}

#[test]
fn a_state_file_of_the_previous_release_restores_every_ban_and_action() {
    let fixture = include_str!("fixtures/state-0.1.0");
    // Its first ban was made "now".
    let first = fixture
        .lines()
        .filter_map(|l| l.split(' ').find_map(|w| w.strip_prefix("banned=")))
        .map(|v| v.parse::<i64>().unwrap())
        .min()
        .unwrap();
    let now = nftsentry::respond::wall_ms() as i64;
    let mut pair = Pair::new("upg");
    let dir = TempDir::new("upg");
    // Two of the bans' lines as 0.1.0 left them (IPv6 without brackets),
    // the other two missing.
    let deny = dir.file(
        "hosts.deny",
        "# the admin's\nALL: 198.51.100.7\nALL: 2001:db8:9::7\n",
    );
    std::fs::write(dir.path.join("state"), shifted(fixture, now - first)).unwrap();
    let cfg = dir.file(
        "nftsentry.toml",
        &format!(
            "{}ignore_file = \"\"\nignore_local = false\nroute = \"blackhole\"\nhosts_deny = \"{}\"\n[tcp]\nports = \"1,11\"\n",
            private_files(&dir.path),
            deny.display()
        ),
    );
    let log = dir.path.join("log");
    let pid = start_daemon(&mut pair.victim, &cfg, &log);
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(5), || {
            read_log()
            .contains("adminalert: 4 bans restored with the time they had left (4 from the state file, 0 adopted")
        }),
        "{}",
        read_log()
    );
    // Every ban in the kernel, with the time the fixture gave it.
    let listed = pair.victim.enter(|| {
        let mut s = NftSocket::open().unwrap();
        bans::list(&mut s, "nftsentry", 64).unwrap()
    });
    let want: [(&str, u64); 4] = [
        ("192.0.2.2", 86_400),
        ("198.51.100.7", 7_200),
        ("2001:db8::2", 86_400),
        ("2001:db8:9::7", 10_800),
    ];
    for (addr, secs) in want {
        let a: IpAddr = addr.parse().unwrap();
        let b = listed
            .iter()
            .find(|b| b.addr.addr() == a)
            .unwrap_or_else(|| panic!("{addr} not banned: {listed:?}"));
        let left = b.expires_in.unwrap().as_secs();
        assert!(left <= secs && left + 30 >= secs, "{addr}: {left}s left");
    }
    // The routes and hosts.deny lines are back (the admin's line stays).
    let routes = |v6: bool| {
        let mut args = vec!["route", "show", "proto", "110"];
        if v6 {
            args.insert(0, "-6");
        }
        String::from_utf8_lossy(&pair.victim.ip(&args).stdout).to_string()
    };
    let all = format!("{}{}", routes(false), routes(true));
    for (addr, _) in want {
        assert!(
            all.contains(&format!("blackhole {addr} ")),
            "{addr}:\n{all}"
        );
    }
    let lines = std::fs::read_to_string(&deny).unwrap();
    assert_eq!(
        lines,
        "# the admin's\nALL: 198.51.100.7\nALL: 2001:db8:9::7\nALL: 192.0.2.2\nALL: [2001:db8::2]\n",
        "the missing lines put back (IPv6 in brackets), 0.1.0's kept as they are"
    );
    // Written back in the new form: which actions ran, and nothing of how.
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(
            dir.path.join("state")
        )
        .unwrap()
        .contains(" actions=")),
        "state file not rewritten"
    );
    let state = std::fs::read_to_string(dir.path.join("state")).unwrap();
    assert!(!state.contains("hosts_deny="), "{state}");
    assert!(
        state.contains("ban 192.0.2.2 scan=syn proto=tcp mode=stcp port=1 ")
            && state.contains(" actions=set,hosts_deny,route:blackhole,command "),
        "{state}"
    );
    // Four entries (the journal may hold a later line for one of them).
    let (entries, problems) = nftsentry::journal::state::parse(state.as_bytes(), "state");
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(entries.len(), 4, "{state}");
    // Lifting them removes every line, today's and 0.1.0's alike.
    let o = nftsentry(&pair.victim, &cfg, &["flush"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(&deny).unwrap(), "# the admin's\n");
    signal(pid, nix::sys::signal::Signal::SIGTERM);
    let mut child = pair.victim.take_child(pid);
    child.wait().unwrap();
}
