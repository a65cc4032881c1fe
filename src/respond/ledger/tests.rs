//! The ledger over a fake kernel set: no root, no netlink.

use super::*;
use crate::detect::ScanType;
use crate::journal::state_file;
use crate::table::bans::Ban;
use std::collections::HashMap;
use std::path::PathBuf;

/// The kernel's ban sets, in memory.
#[derive(Default)]
struct FakeSets(HashMap<Cidr, Duration>);

impl BanSets for FakeSets {
    fn add(&mut self, addr: Cidr, timeout: Duration) -> Result<()> {
        self.0.insert(addr, timeout);
        Ok(())
    }
    fn contains(&mut self, addr: Cidr) -> Result<bool> {
        Ok(self.0.contains_key(&addr))
    }
    fn remove(&mut self, addr: Cidr) -> Result<bool> {
        Ok(self.0.remove(&addr).is_some())
    }
    fn flush(&mut self) -> Result<Option<usize>> {
        let n = self.0.len();
        self.0.clear();
        Ok(Some(n))
    }
    fn list(&mut self) -> Result<Vec<Ban>> {
        Ok(self
            .0
            .iter()
            .map(|(a, t)| Ban {
                addr: *a,
                timeout: Some(*t),
                expires_in: Some(*t),
                dropped: None,
            })
            .collect())
    }
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nftsentry-ledger-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(dir: Option<&std::path::Path>) -> Config {
    Config {
        state_file: dir.map(|d| d.join("state")),
        history_file: None,
        ban_time: Duration::from_secs(2),
        ban_time_factor: 3,
        ban_time_max: Duration::from_secs(30),
        ..Config::default()
    }
}

fn ip(s: &str) -> Cidr {
    s.parse().unwrap()
}

fn evidence(addr: &str, scan: ScanType) -> Evidence {
    Evidence {
        addr: ip(addr).addr(),
        net: ip(addr),
        wanted: ip(addr).prefix(),
        escalate: Vec::new(),
        scan,
        port: 1,
        mode: "stcp",
        strength: crate::detect::Strength::Forgeable,
    }
}

fn record(length_ms: u64, repeat: u32, ended: bool) -> Record {
    let now = Instant::now();
    Record {
        entry: Entry {
            addr: ip("192.0.2.2"),
            scan: "syn".into(),
            proto: Some(Proto::Tcp),
            mode: "stcp".into(),
            port: 1,
            banned_at: 0,
            expires_at: 0,
            length: length_ms,
            repeat,
            evidence: crate::strength::Strength::Forgeable,
            applied: Applied::default(),
        },
        since: now,
        until: now,
        ended,
    }
}

#[test]
fn repeat_offenders_escalate_to_the_cap() {
    let p = Policy::of(&config(None));
    let s = Duration::from_secs;
    assert_eq!(p.length_for(None), (s(2), 1, false));
    assert_eq!(p.length_for(Some(&record(2000, 1, true))), (s(6), 2, true));
    assert_eq!(
        p.length_for(Some(&record(18000, 3, true))),
        (s(30), 4, true)
    );
    // A shorter (manual) ban escalates from its length, never below ban_time.
    assert_eq!(p.length_for(Some(&record(500, 1, true))), (s(2), 2, true));
    // A ban still in force is renewed as it was.
    assert_eq!(
        p.length_for(Some(&record(6000, 2, false))),
        (s(6), 2, false)
    );
    // Without escalation the count still goes up.
    let cfg = Config {
        ban_time_factor: 1,
        ..config(None)
    };
    let p = Policy::of(&cfg);
    assert_eq!(p.length_for(Some(&record(2000, 4, true))), (s(2), 5, true));
}

/// The evidence of a ban of `addr` that may escalate to `wider`.
fn escalating(addr: &str, wider: &[&str]) -> Evidence {
    Evidence {
        escalate: wider.iter().map(|w| ip(w)).collect(),
        ..evidence(addr, ScanType::TcpSynNormal)
    }
}

#[test]
fn three_bans_in_a_24_become_one_ban_of_the_24_until_it_ends() {
    let cfg = Config {
        escalate_after: 3,
        ban_time_factor: 1,
        ..config(None)
    };
    let mut l = Ledger::new(&cfg, true);
    let mut sets = FakeSets::default();
    let t0 = Instant::now();
    let net = ip("198.18.0.0/24");
    for (i, a) in ["198.18.0.1", "198.18.0.2"].iter().enumerate() {
        l.ban(&mut sets, &escalating(a, &["198.18.0.0/24"]), t0);
        assert_eq!(sets.0.len(), i + 1);
    }
    // Another /24 does not count.
    l.ban(&mut sets, &escalating("198.18.1.1", &["198.18.1.0/24"]), t0);
    assert!(!sets.0.contains_key(&net));
    l.ban(&mut sets, &escalating("198.18.0.3", &["198.18.0.0/24"]), t0);
    assert!(sets.0.contains_key(&net), "{:?}", sets.0);
    for a in ["198.18.0.1", "198.18.0.2", "198.18.0.3"] {
        assert!(!sets.0.contains_key(&ip(a)), "{a} still in the set");
        assert!(!l.is_banned(ip(a)));
    }
    assert!(sets.0.contains_key(&ip("198.18.1.1")));
    assert!(l.is_banned(net));
    assert_eq!(l.covering_ban(&ip("198.18.0.77")), Some(net));
    assert!(l.ban_on(ip("198.18.0.77"), Proto::Tcp, t0).is_some());
    // The longest time left of those it replaced (2 s here).
    assert!(sets.0[&net] <= Duration::from_secs(2));
    // It ends: nothing of it is kept, the next offender there is banned
    // by itself.
    sets.0.remove(&net);
    l.tick(&mut sets, t0 + Duration::from_secs(3));
    assert!(!l.is_banned(net));
    l.ban(
        &mut sets,
        &escalating("198.18.0.9", &["198.18.0.0/24"]),
        t0 + Duration::from_secs(3),
    );
    assert!(sets.0.contains_key(&ip("198.18.0.9")));
    assert!(!sets.0.contains_key(&net));
}

#[test]
fn no_escalation_when_off_or_over_an_ignored_address() {
    let t0 = Instant::now();
    // escalate_after = 0 (the default): never.
    let mut l = Ledger::new(&config(None), true);
    let mut sets = FakeSets::default();
    for a in ["198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.4"] {
        l.ban(&mut sets, &escalating(a, &["198.18.0.0/24"]), t0);
    }
    assert_eq!(sets.0.len(), 4);
    // The detector offers no prefix that holds an ignored address.
    let cfg = Config {
        escalate_after: 3,
        ..config(None)
    };
    let mut l = Ledger::new(&cfg, true);
    let mut sets = FakeSets::default();
    for a in ["198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.4"] {
        l.ban(&mut sets, &escalating(a, &[]), t0);
    }
    assert_eq!(sets.0.len(), 4);
}

#[test]
fn a_ban_is_in_the_set_and_the_ledger_until_it_ends() {
    let mut l = Ledger::new(&config(None), true);
    let mut sets = FakeSets::default();
    let t0 = Instant::now();
    let r = l.ban(
        &mut sets,
        &evidence("192.0.2.2", ScanType::TcpSynNormal),
        t0,
    );
    assert!(matches!(r, BanResult::Banned { .. }), "{r:?}");
    assert_eq!(sets.0[&ip("192.0.2.2")], Duration::from_secs(2));
    assert!(l.is_banned(ip("192.0.2.2")));
    let b = l
        .ban_on(ip("192.0.2.2"), Proto::Tcp, t0 + Duration::from_secs(1))
        .unwrap();
    assert_eq!(
        b,
        BanInForce {
            age: Duration::from_secs(1),
            in_kernel: true,
            upgradable: false
        }
    );
    assert_eq!(l.kernel_bans().len(), 1);
    // The kernel expires the element; the ledger's timer ends the ban.
    sets.0.clear();
    let next = l.tick(&mut sets, t0 + Duration::from_secs(3));
    assert!(!l.is_banned(ip("192.0.2.2")));
    assert_eq!(l.released(), vec![ip("192.0.2.2")]);
    // Remembered as a repeat offender until ban_time_max after the end.
    assert!(next.is_some());
    let again = l.ban(
        &mut sets,
        &evidence("192.0.2.2", ScanType::TcpSynNormal),
        t0,
    );
    assert!(matches!(again, BanResult::Banned { length, .. } if length == Duration::from_secs(6)));
}

#[test]
fn block_unblock_and_flush_go_through_the_same_ledger() {
    let mut l = Ledger::new(&config(None), true);
    let mut sets = FakeSets::default();
    let t0 = Instant::now();
    l.block(&mut sets, ip("198.51.100.7"), Duration::from_secs(60), t0)
        .unwrap();
    l.ban(&mut sets, &evidence("2001:db8::7", ScanType::Udp), t0);
    assert_eq!(l.active_bans(), 2);
    assert!(l.unblock(&mut sets, ip("198.51.100.7"), t0).unwrap());
    assert!(!sets.0.contains_key(&ip("198.51.100.7")));
    assert!(!l.unblock(&mut sets, ip("198.51.100.7"), t0).unwrap());
    assert_eq!(l.released(), vec![ip("198.51.100.7")]);
    assert_eq!(l.flush(&mut sets, t0).unwrap(), 1);
    assert_eq!(l.active_bans(), 0);
    assert!(sets.0.is_empty());
    assert_eq!(l.released(), vec![ip("2001:db8::7")]);
}

#[test]
fn log_mode_records_nothing() {
    let dir = tempdir("log");
    let mut cfg = config(Some(&dir));
    cfg.udp.block_mode = BlockMode::Log;
    let mut l = Ledger::new(&cfg, true);
    let mut sets = FakeSets::default();
    let res = l.ban(
        &mut sets,
        &evidence("192.0.2.9", ScanType::Udp),
        Instant::now(),
    );
    assert!(matches!(res, BanResult::LogOnly));
    assert!(sets.0.is_empty());
    assert!(!l.is_banned(ip("192.0.2.9")));
    l.flush_file();
    assert!(!dir.join("state").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn entry(addr: &str, expires_in_ms: i64, set: bool) -> Entry {
    let now = wall_ms() as i64;
    Entry {
        addr: addr.parse().unwrap(),
        scan: "syn".into(),
        proto: Some(Proto::Tcp),
        mode: "stcp".into(),
        port: 1,
        banned_at: (now - 1000) as u64,
        expires_at: (now + expires_in_ms) as u64,
        length: 60_000,
        repeat: 1,
        evidence: crate::strength::Strength::Forgeable,
        applied: Applied {
            set,
            command: !set,
            ..Applied::default()
        },
    }
}

#[test]
fn restore_merges_the_file_and_a_surviving_table() {
    let dir = tempdir("restore");
    let cfg = Config {
        ban_time_factor: 1,
        ..config(Some(&dir))
    };
    let live = entry("192.0.2.2", 30_000, true);
    let ended = entry("192.0.2.3", -1_000, true);
    let command_only = entry("2001:db8::3", 30_000, false);
    let both = entry("192.0.2.4", 30_000, true);
    state_file::save(&dir.join("state"), [&live, &ended, &command_only, &both]).unwrap();
    let kernel = vec![
        // Also in the file: the kernel's time wins.
        Ban {
            addr: both.addr,
            timeout: Some(Duration::from_secs(60)),
            expires_in: Some(Duration::from_secs(10)),
            dropped: None,
        },
        // Only in the kernel: adopted.
        Ban {
            addr: ip("2001:db8::9"),
            timeout: Some(Duration::from_secs(100)),
            expires_in: Some(Duration::from_secs(40)),
            dropped: None,
        },
    ];
    let mut l = Ledger::new(&cfg, true);
    let mut sets = FakeSets::default();
    let now = Instant::now();
    let back = l.restore(Some(kernel), now).unwrap();
    let by: HashMap<Cidr, Restored> = back.iter().map(|b| (b.addr, *b)).collect();
    assert_eq!(by.len(), 3, "{back:?}");
    let near = |d: Duration, secs: u64| d.as_millis().abs_diff(u128::from(secs) * 1000) < 1500;
    assert!(near(by[&live.addr].remaining, 30), "{:?}", by[&live.addr]);
    assert_eq!(by[&live.addr].timeout, Duration::from_secs(60));
    assert!(near(by[&both.addr].remaining, 10), "{:?}", by[&both.addr]);
    let adopted = ip("2001:db8::9");
    assert!(near(by[&adopted].remaining, 40));
    assert_eq!(by[&adopted].timeout, Duration::from_secs(100));
    // The ended ban is gone (no escalation to remember it for); the
    // command-only one is still a ban, without a kernel element.
    assert!(!l.is_banned(ended.addr));
    assert!(l.is_banned(command_only.addr));
    assert!(!by.contains_key(&command_only.addr));
    l.after_install(&mut sets, now);
    // Written by the first write after the start (the writer thread's).
    l.flush_file();
    let (file, problems) = state_file::load(&dir.join("state")).unwrap();
    assert!(problems.is_empty());
    let mut addrs: Vec<String> = file.keys().map(|a| a.to_string()).collect();
    addrs.sort();
    assert_eq!(
        addrs,
        ["192.0.2.2", "192.0.2.4", "2001:db8::3", "2001:db8::9"]
    );
    assert_eq!(file[&adopted].scan, "adopted");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_first_release_entry_gets_the_mode_the_config_would_give_it() {
    let dir = tempdir("mode");
    let mut cfg = config(Some(&dir));
    cfg.tcp.mode = crate::config::Mode::ADVANCED;
    let mut old = entry("192.0.2.2", 30_000, true);
    old.mode = String::new();
    state_file::save(&dir.join("state"), [&old]).unwrap();
    let mut l = Ledger::new(&cfg, true);
    l.restore(None, Instant::now()).unwrap();
    assert_eq!(l.records[&old.addr].entry.mode, "atcp");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Ban sets whose elements count: each ban dropped (its last octet, 60 ×
/// that) so far; `gets` counts the one-by-one reads.
#[derive(Default)]
struct CountingSets {
    sets: FakeSets,
    gets: usize,
    lists: usize,
}

fn counted(net: &Cidr) -> (u64, u64) {
    let n = match net.addr() {
        std::net::IpAddr::V4(a) => u64::from(a.octets()[3]),
        std::net::IpAddr::V6(a) => u64::from(a.octets()[15]),
    };
    (n, 60 * n)
}

impl BanSets for CountingSets {
    fn add(&mut self, addr: Cidr, timeout: Duration) -> Result<()> {
        self.sets.add(addr, timeout)
    }
    fn contains(&mut self, addr: Cidr) -> Result<bool> {
        self.sets.contains(addr)
    }
    fn remove(&mut self, addr: Cidr) -> Result<bool> {
        self.sets.remove(addr)
    }
    fn flush(&mut self) -> Result<Option<usize>> {
        self.sets.flush()
    }
    fn list(&mut self) -> Result<Vec<Ban>> {
        self.lists += 1;
        Ok(self
            .sets
            .list()?
            .into_iter()
            .map(|b| Ban {
                dropped: Some(counted(&b.addr)),
                ..b
            })
            .collect())
    }
    fn dropped(&mut self, addr: Cidr) -> Result<Option<(u64, u64)>> {
        self.gets += 1;
        Ok(self.sets.0.contains_key(&addr).then(|| counted(&addr)))
    }
}

#[test]
fn counters_are_read_just_before_the_end_one_by_one_or_in_one_dump() {
    for (n, gets, lists) in [(3u8, 3, 0), (40, 0, 1)] {
        let cfg = config(None);
        let mut l = Ledger::new(&cfg, false);
        let mut sets = CountingSets::default();
        let t0 = Instant::now();
        for i in 1..=n {
            let addr = Cidr::host(std::net::IpAddr::from([198, 51, 100, i]));
            l.block(&mut sets, addr, Duration::from_secs(10), t0)
                .unwrap();
        }
        // Not yet: nothing read.
        l.tick(&mut sets, t0 + Duration::from_secs(8));
        assert!(l.dropped.is_empty());
        // A second before the end: every ban's counter, in `gets` requests
        // or `lists` dumps.
        l.tick(&mut sets, t0 + Duration::from_millis(9_100));
        assert_eq!((sets.gets, sets.lists), (gets, lists), "{n} bans");
        assert_eq!(l.dropped.len(), n as usize);
        assert_eq!(
            l.dropped[&Cidr::host(std::net::IpAddr::from([198, 51, 100, 3]))],
            (3, 180)
        );
        // At the end the figures go into the end-of-ban lines and are gone.
        l.tick(&mut sets, t0 + Duration::from_secs(11));
        assert!(l.dropped.is_empty());
        assert_eq!(l.active_bans(), 0);
    }
}

#[test]
fn prefix_lengths_come_back_from_the_widest_allowed_down() {
    // Against the plain walk over every length, for sets of lengths at and
    // around the word edges, from every starting length.
    let sets: [&[u8]; 6] = [
        &[],
        &[0],
        &[32, 24],
        &[128, 64, 63, 1],
        &[127, 65, 0],
        &[128, 127, 126, 64, 63, 62, 48, 0],
    ];
    for set in sets {
        let mut l = Lengths::default();
        for &p in set {
            l.set(p);
        }
        for max in 0..=128u8 {
            let got: Vec<u8> = l.down_from(max).collect();
            let mut want: Vec<u8> = set.iter().copied().filter(|&p| p <= max).collect();
            want.sort_unstable_by(|a, b| b.cmp(a));
            assert_eq!(got, want, "set {set:?} from {max}");
        }
    }
}
