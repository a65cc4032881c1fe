//! Bad input, each with a clear message and nothing lost: invalid configs
//! and ignore files (file:line:key, exit 78, from `check` and from `run`,
//! while another instance keeps running with its table and bans as they
//! were, and refused by that instance's reload, SIGHUP or `reload`), the NFLOG group held by another process, no CAP_NET_ADMIN, a
//! table of the same name that someone else made, and a second daemon for
//! the same table.
mod common;
use common::*;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The whole ruleset of the namespace, without the seconds ticking away in
/// `expires` (and counters, with -s), to compare before and after.
fn ruleset(ns: &Netns) -> String {
    let text = ns.nft(&["-s", "list", "ruleset"]);
    let mut out = Vec::new();
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "expires" {
            words.next();
            continue;
        }
        out.push(w);
    }
    out.join(" ")
}

/// Alive, and not a zombie waiting to be reaped.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

/// A running daemon with one ban, in its own namespace.
struct Running {
    ns: Netns,
    dir: TempDir,
    pid: u32,
    before: String,
}

impl Running {
    fn start(tag: &str, extra: &str) -> Running {
        let mut ns = Netns::new(tag);
        let dir = TempDir::new(tag);
        let cfg = dir.file(
            "good.toml",
            &format!("ignore_file = \"\"\n{}{extra}", private_files(&dir.path)),
        );
        let pid = start_daemon(&mut ns, &cfg, &dir.path.join("log"));
        let o = nftsentry(&ns, &cfg, &["block", "198.51.100.7", "--for", "1h"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let before = ruleset(&ns);
        assert!(before.contains("198.51.100.7"), "{before}");
        Running {
            ns,
            dir,
            pid,
            before,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path.join("log")).unwrap_or_default()
    }

    /// The table, its ban and the daemon are as they were.
    fn unchanged(&self, what: &str) {
        assert!(running(self.pid), "{what}: the running daemon died");
        assert_eq!(
            ruleset(&self.ns),
            self.before,
            "{what}: the ruleset changed"
        );
    }

    fn stop(self) {
        let Running { mut ns, pid, .. } = self;
        signal(pid, Signal::SIGTERM);
        let status = ns.take_child(pid).wait().unwrap();
        assert!(status.success(), "daemon exit {status}");
    }
}

/// `nftsentry -c cfg run` in `ns`, waited for: it must exit on its own.
fn run_once(ns: &Netns, cfg: &Path) -> std::process::Output {
    let mut c = ns.cmd("timeout");
    c.arg("20")
        .arg(nftsentry_bin())
        .arg("-c")
        .arg(cfg)
        .arg("run");
    c.output().unwrap()
}

/// One bad input: what it is, the config text (None: the ignore-file
/// cases, whose config only names the file), the ignore file's text, the
/// line the message must name, and what the message must say.
type Case = (
    &'static str,
    Option<&'static [u8]>,
    &'static [u8],
    usize,
    &'static str,
);

fn cases() -> Vec<Case> {
    vec![
        (
            "wrong type: bare number for a duration",
            Some(b"ban_time = 3600\n"),
            b"",
            1,
            "key `ban_time`: expected a duration",
        ),
        (
            "wrong type: string for a boolean",
            Some(b"\nkeep_table_on_exit = \"1\"\n"),
            b"",
            2,
            "key `keep_table_on_exit`: expected true or false",
        ),
        (
            "wrong type: string for an integer",
            Some(b"set_size = \"big\"\n"),
            b"",
            1,
            "key `set_size`: expected an integer",
        ),
        (
            "wrong type in [tcp]",
            Some(b"[tcp]\nmode = 5\n"),
            b"",
            2,
            "key `tcp.mode`: expected a mode name",
        ),
        (
            "wrong type: [udp] not a table",
            Some(b"udp = \"stealth\"\n"),
            b"",
            1,
            "key `udp`: expected a table",
        ),
        (
            "unknown key",
            Some(b"scan_triger = 2\n"),
            b"",
            1,
            "unknown key `scan_triger`",
        ),
        (
            "unknown key, PortSentry's name",
            Some(b"# old habits\nTCP_PORTS = \"1,11\"\n"),
            b"",
            2,
            "unknown key `TCP_PORTS` (did you mean `tcp.ports`?)",
        ),
        (
            "unknown key in [udp]",
            Some(b"[udp]\nport = \"1\"\n"),
            b"",
            2,
            "unknown key `udp.port`",
        ),
        (
            "port out of range",
            Some(b"[tcp]\nports = \"1,70000\"\n"),
            b"",
            2,
            "key `tcp.ports`: port 70000 is out of range",
        ),
        (
            "port zero in an array",
            Some(b"[tcp]\nports = [1,\n  0]\n"),
            b"",
            3,
            "key `tcp.ports`: port 0 is out of range",
        ),
        (
            "reversed range",
            Some(b"[udp]\nports = \"200-100\"\n"),
            b"",
            2,
            "key `udp.ports`: range 200-100 is reversed",
        ),
        (
            "half a range",
            Some(b"[tcp]\nadvanced_exclude = \"113,5-\"\n"),
            b"",
            2,
            "key `tcp.advanced_exclude`: `5-` is not a port",
        ),
        (
            "unknown duration unit",
            Some(b"ban_time = \"1x\"\n"),
            b"",
            1,
            "key `ban_time`: `1x`: unknown unit `x`",
        ),
        (
            "duration out of range",
            Some(b"scan_window = \"0s\"\n"),
            b"",
            1,
            "key `scan_window`: 0s is out of range",
        ),
        (
            "duration too long",
            Some(b"ban_time = \"400d\"\n"),
            b"",
            1,
            "key `ban_time`: 400d is out of range",
        ),
        (
            "TOML syntax",
            Some(b"set_size = 10\nban_time = \"1h\n"),
            b"",
            2,
            "TOML syntax error",
        ),
        (
            "duplicate key",
            Some(b"set_size = 1\nset_size = 2\n"),
            b"",
            2,
            "TOML syntax error",
        ),
        (
            "not UTF-8",
            Some(b"# caf\xe9\n"),
            b"",
            1,
            "the file is not UTF-8 text",
        ),
        (
            "ignore file: prefix too long",
            None,
            b"127.0.0.1\n# the lab\n192.0.2.0/33\n",
            3,
            "",
        ),
        (
            "ignore file: a host name",
            None,
            b"\n\nhost.example.com\n",
            3,
            "`host.example.com` is not an IPv4 or IPv6 address or network",
        ),
        (
            "ignore file: two addresses on a line",
            None,
            b"192.0.2.1 192.0.2.2\n",
            1,
            "`192.0.2.1 192.0.2.2`: one address or network per line",
        ),
        (
            "ignore file: two prefixes",
            None,
            b"::1\n192.0.2.1/24/8\n",
            2,
            "",
        ),
        (
            "ignore file: hex address",
            None,
            b"0x7f000001\n",
            1,
            "is not an IPv4 or IPv6 address",
        ),
        (
            "ignore file: NUL and binary",
            None,
            b"192.0.2.1\n\x00\x01\x02\n",
            2,
            "is not an IPv4 or IPv6 address",
        ),
        (
            "ignore file: bad byte in an entry",
            None,
            b"# caf\xe9 is fine in a comment\n198.51.100.\xff\n",
            2,
            "",
        ),
    ]
}

#[test]
fn invalid_configs_and_ignore_files_exit_78_naming_the_line_and_leave_the_running_table() {
    let r = Running::start("badcfg", "");
    for (what, config, ignore, line, message) in cases() {
        let ign = r.dir.path.join("bad-ignore");
        std::fs::write(&ign, ignore).unwrap();
        let cfg: PathBuf = r.dir.path.join("bad.toml");
        let (file, text) = match config {
            Some(text) => (cfg.clone(), text.to_vec()),
            None => (
                ign.clone(),
                format!("ignore_file = \"{}\"\n", ign.display()).into_bytes(),
            ),
        };
        // Our own state and history files, after the bad line.
        let mut text = text;
        text.extend_from_slice(format!("\n{}", private_files(&r.dir.path)).as_bytes());
        std::fs::write(&cfg, text).unwrap();
        let at = format!("{}:{line}: ", file.display());
        for cmd in ["check", "run"] {
            // Not through common::nftsentry, which reads the config as text
            // (to check that it names its own state files): one case is
            // not text. Each bad config does name them, after the bad line.
            let o = if cmd == "run" {
                run_once(&r.ns, &cfg)
            } else {
                r.ns.cmd(nftsentry_bin())
                    .arg("-c")
                    .arg(&cfg)
                    .arg(cmd)
                    .output()
                    .unwrap()
            };
            let e = stderr(&o);
            assert_eq!(o.status.code(), Some(78), "{what}: {cmd}: {e}");
            assert!(
                e.starts_with(&format!("nftsentry: {at}")) && e.contains(message),
                "{what}: {cmd}: wanted `{at}...{message}`, got:\n{e}"
            );
            // One clear line, not a dump.
            assert_eq!(e.lines().count(), 1, "{what}: {cmd}: {e}");
            r.unchanged(&format!("{what} ({cmd})"));
        }
        // The same file as the running daemon's own config, then a reload
        // by signal: refused, the file and line in the log, nothing
        // changed; `nftsentry reload` with it stops at the same error.
        let good = r.dir.path.join("good.toml");
        let good_text = std::fs::read(&good).unwrap();
        std::fs::copy(&cfg, &good).unwrap();
        let refusals = || r.log().matches("reload refused").count();
        let before = refusals();
        signal(r.pid, Signal::SIGHUP);
        assert!(
            wait_until(Duration::from_secs(5), || refusals() > before),
            "{what}: SIGHUP: no refusal in the log:\n{}",
            r.log()
        );
        let log = r.log();
        let line = log.lines().rfind(|l| l.contains("reload refused")).unwrap();
        let at_good = at.replace(&cfg.display().to_string(), &good.display().to_string());
        assert!(
            line.contains(&at_good) && line.contains(message),
            "{what}: SIGHUP: wanted `{at_good}...{message}` in {line}"
        );
        r.unchanged(&format!("{what} (SIGHUP)"));
        let o =
            r.ns.cmd(nftsentry_bin())
                .arg("-c")
                .arg(&good)
                .arg("reload")
                .output()
                .unwrap();
        assert_eq!(o.status.code(), Some(78), "{what}: reload: {}", stderr(&o));
        assert!(
            stderr(&o).contains(&at_good),
            "{what}: reload: {}",
            stderr(&o)
        );
        r.unchanged(&format!("{what} (reload)"));
        std::fs::write(&good, good_text).unwrap();
    }
    // An ignore file that cannot be read at all (a directory).
    let cfg = r.dir.file(
        "dir.toml",
        &format!(
            "ignore_file = \"{}\"\n{}",
            r.dir.path.display(),
            private_files(&r.dir.path)
        ),
    );
    let o = run_once(&r.ns, &cfg);
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "{}: cannot read the ignore file",
            r.dir.path.display()
        )),
        "{}",
        stderr(&o)
    );
    r.unchanged("ignore file is a directory");
    r.stop();
}

#[test]
fn a_second_daemon_for_the_same_table_refuses_and_names_the_first() {
    let r = Running::start("twice", "");
    // Another NFLOG group, so the group cannot be what stops it.
    let cfg = r.dir.file(
        "second.toml",
        &format!(
            "ignore_file = \"\"\nnflog_group = 7532\n{}",
            private_files(&r.dir.path.join("second"))
        ),
    );
    let o = run_once(&r.ns, &cfg);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains(&format!(
            "table inet nftsentry is in use by another nftsentry in this network namespace (pid {})",
            r.pid
        )),
        "{e}"
    );
    r.unchanged("second daemon");
    // Another table name is another daemon's business: it starts.
    let other = r.dir.file(
        "other.toml",
        &format!(
            "ignore_file = \"\"\nnflog_group = 7532\ntable = \"second\"\n{}",
            private_files(&r.dir.path.join("second"))
        ),
    );
    let mut ns = r.ns;
    let pid2 = ns.spawn(
        ns.cmd(nftsentry_bin())
            .arg("-c")
            .arg(&other)
            .arg("run")
            .stderr(std::process::Stdio::null()),
    );
    assert!(wait_until(Duration::from_secs(10), || ns
        .nft(&["list", "tables"])
        .contains("inet second")));
    assert!(running(r.pid) && running(pid2));
    assert!(
        ns.nft(&["list", "set", "inet", "nftsentry", "blocked4"])
            .contains("198.51.100.7")
    );
}

#[test]
fn a_table_someone_else_made_is_left_alone() {
    for (tag, comment) in [("frn", None), ("frnc", Some("my firewall"))] {
        let ns = Netns::new(tag);
        let dir = TempDir::new(tag);
        let table = match comment {
            Some(c) => format!("add table inet nftsentry {{ comment \"{c}\"; }}"),
            None => "add table inet nftsentry".to_string(),
        };
        ns.nft(&[&format!(
            "{table}; add chain inet nftsentry mine {{ type filter hook input priority 0; policy accept; }}; \
             add rule inet nftsentry mine tcp dport 22 accept; add set inet nftsentry blocked4 {{ type ipv4_addr; }}"
        )]);
        let before = ruleset(&ns);
        let cfg = dir.file(
            "nftsentry.toml",
            &format!("ignore_file = \"\"\n{}", private_files(&dir.path)),
        );
        let o = run_once(&ns, &cfg);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{e}");
        let found = match comment {
            Some(c) => format!("its comment is \"{c}\""),
            None => "it has no comment".to_string(),
        };
        assert!(
            e.contains(&format!(
                "table inet nftsentry exists and was not created by nftsentry ({found}, not \"managed by nftsentry\")"
            )),
            "{e}"
        );
        assert!(e.contains("nft delete table inet nftsentry"), "{e}");
        assert_eq!(ruleset(&ns), before, "the foreign table was touched");
        // The way out the message gives: another name.
        let renamed = dir.file(
            "renamed.toml",
            &format!(
                "ignore_file = \"\"\ntable = \"nftsentry2\"\n{}",
                private_files(&dir.path)
            ),
        );
        let mut ns = ns;
        ns.spawn(
            ns.cmd(nftsentry_bin())
                .arg("-c")
                .arg(&renamed)
                .arg("run")
                .stderr(std::process::Stdio::null()),
        );
        assert!(wait_until(Duration::from_secs(10), || ns
            .nft(&["list", "tables"])
            .contains("inet nftsentry2")));
        assert!(ruleset(&ns).contains(&before), "the foreign table changed");
    }
}

/// A table nftsentry left behind (`keep_table_on_exit`), with a ban.
fn kept_table(tag: &str) -> (Netns, TempDir, PathBuf, String) {
    let mut ns = Netns::new(tag);
    let dir = TempDir::new(tag);
    let cfg = dir.file(
        "nftsentry.toml",
        &format!(
            "ignore_file = \"\"\nkeep_table_on_exit = true\n{}",
            private_files(&dir.path)
        ),
    );
    let pid = start_daemon(&mut ns, &cfg, &dir.path.join("log"));
    let o = nftsentry(&ns, &cfg, &["block", "198.51.100.9", "--for", "1h"]);
    assert!(o.status.success(), "{}", stderr(&o));
    signal(pid, Signal::SIGTERM);
    assert!(ns.take_child(pid).wait().unwrap().success());
    let before = ruleset(&ns);
    assert!(before.contains("198.51.100.9"), "{before}");
    (ns, dir, cfg, before)
}

#[test]
fn nflog_group_held_by_another_process_stops_run_before_the_table() {
    use nftsentry::kernel::nflog::{NflogConfig, NflogSocket};
    let (ns, _dir, cfg, before) = kept_table("nflh");
    // This test process holds the group.
    let holder = ns.enter(|| {
        NflogSocket::open(&NflogConfig {
            group: 7531,
            ..NflogConfig::default()
        })
        .expect("bind the group")
    });
    let o = run_once(&ns, &cfg);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("NFLOG group 7531 is already bound by another socket"),
        "{e}"
    );
    assert!(
        e.contains(&format!("(pid {})", std::process::id())),
        "the holder is not named: {e}"
    );
    assert!(e.contains("choose another nflog_group"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    assert_eq!(ruleset(&ns), before, "the table changed");
    drop(holder);
    // Free again: run takes the table over.
    let mut ns = ns;
    let log = _dir.path.join("log2");
    let pid = start_daemon(&mut ns, &cfg, &log);
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("was left by an earlier nftsentry; replacing it")
    }));
    assert!(running(pid));
}

#[test]
fn without_cap_net_admin_run_exits_77_and_changes_nothing() {
    let (ns, _dir, cfg, before) = kept_table("ncap");
    // Root without CAP_NET_ADMIN, and nobody without any capability.
    let ways: [&[&str]; 2] = [
        &["--bounding-set=-net_admin", "--inh-caps=-net_admin"],
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ],
    ];
    for way in ways {
        let o = ns
            .cmd("setpriv")
            .args(way)
            .arg(nftsentry_bin())
            .arg("-c")
            .arg(&cfg)
            .arg("run")
            .output()
            .unwrap();
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(77), "{way:?}: {e}");
        assert!(e.contains("CAP_NET_ADMIN is needed"), "{way:?}: {e}");
        assert_eq!(e.lines().count(), 1, "{way:?}: {e}");
        assert_eq!(ruleset(&ns), before, "{way:?}: the table changed");
    }
    // `check` changes nothing and needs no privilege.
    let o = ns
        .cmd("setpriv")
        .args(ways[1])
        .arg(nftsentry_bin())
        .arg("-c")
        .arg(&cfg)
        .arg("check")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A victim whose daemon bans a spoofed source (198.18.0.0/15, routed back
/// to the attacker) at its first probe, with `extra` in its config.
struct Banning {
    pair: Pair,
    dir: TempDir,
    cfg: PathBuf,
    spoofer: common::spoof::Spoofer,
    pid: Option<u32>,
    starts: u32,
}

impl Banning {
    fn new(tag: &str, extra: &str) -> Banning {
        let pair = Pair::new(tag);
        common::spoof::route_spoofed_range_back(&pair);
        common::spoof::pin_victim_neighbours(&pair);
        let dir = TempDir::new(tag);
        let cfg = dir.file(
            "nftsentry.toml",
            &format!(
                "ignore_file = \"\"\n{}ban_time = \"1h\"\nscan_trigger = 0\n{extra}\n\
                 [tcp]\nports = \"1\"\n[udp]\nports = \"\"\n",
                private_files(&dir.path)
            ),
        );
        let spoofer = common::spoof::Spoofer::open(&pair.attacker);
        Banning {
            pair,
            dir,
            cfg,
            spoofer,
            pid: None,
            starts: 0,
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path.join(format!("log{}", self.starts))
    }

    /// The log of the current (or last) run.
    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn start(&mut self) {
        self.starts += 1;
        let mut c = self.pair.victim.cmd(nftsentry_bin());
        c.arg("-c")
            .arg(&self.cfg)
            .arg("run")
            .stderr(std::fs::File::create(self.log_path()).unwrap());
        self.pid = Some(self.pair.victim.spawn(&mut c));
        assert!(
            wait_until(Duration::from_secs(10), || self
                .log()
                .contains(" started: table inet nftsentry installed")),
            "daemon did not start:\n{}",
            self.log()
        );
    }

    fn stop(&mut self) {
        let pid = self.pid.take().unwrap();
        assert!(running(pid), "the daemon died:\n{}", self.log());
        signal(pid, Signal::SIGTERM);
        let status = self.pair.victim.take_child(pid).wait().unwrap();
        assert!(status.success(), "exit {status}:\n{}", self.log());
    }

    /// A SYN to port 1 from 198.18.0.`n`; waits for its ban.
    fn ban(&self, n: u8) -> String {
        let src = format!("198.18.0.{n}");
        self.spoofer.send_sure(&common::spoof::packet(
            src.parse().unwrap(),
            VICTIM4.parse().unwrap(),
            common::spoof::L4::Tcp {
                flags: common::spoof::SYN,
            },
            40000,
            1,
        ));
        assert!(
            wait_until(Duration::from_secs(5), || self.banned().contains(&src)),
            "{src} not banned:\n{}",
            self.log()
        );
        src
    }

    fn banned(&self) -> Vec<String> {
        self.pair.victim.enter(|| {
            nftsentry::kernel::nft::NftSocket::open()
                .and_then(|mut s| nftsentry::table::bans::list(&mut s, "nftsentry", 64))
                .map(|l| l.iter().map(|b| b.addr.to_string()).collect())
                .unwrap_or_default()
        })
    }
}

/// `chattr +i` on a file, undone on drop (an immutable file cannot be
/// removed, not even by root, so the test's directory could not be either).
struct Immutable(PathBuf);

impl Immutable {
    fn new(p: &Path) -> Immutable {
        run_ok(std::process::Command::new("chattr").arg("+i").arg(p));
        Immutable(p.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn hosts_deny_missing_read_only_or_a_symlink_never_stops_a_ban() {
    // Missing: the file is created, 0644, with the line.
    let deny_line = "hosts_deny_line = \"ALL: $TARGET$\"";
    let mut h = Banning::new("hdm", "");
    let deny = h.dir.path.join("hosts.deny");
    let text = std::fs::read_to_string(&h.cfg).unwrap();
    std::fs::write(
        &h.cfg,
        format!("hosts_deny = \"{}\"\n{deny_line}\n{text}", deny.display()),
    )
    .unwrap();
    h.start();
    let a = h.ban(1);
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&deny).is_ok_and(|t| t == format!("ALL: {a}\n"))
    }));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&deny).unwrap().permissions().mode() & 0o777,
        0o644
    );

    // Read-only even for root (immutable): the ban happens, the file stays
    // as it was, the error says why; once writable again, the next ban
    // writes its line.
    {
        let _ro = Immutable::new(&deny);
        let b = h.ban(2);
        assert!(
            wait_until(Duration::from_secs(5), || {
                h.log().contains(&format!(
                "attackalert: ERROR: could not block host {b} via wrappers: hosts.deny file {}: cannot append to it: Operation not permitted",
                deny.display()
            ))
            }),
            "{}",
            h.log()
        );
        assert_eq!(
            std::fs::read_to_string(&deny).unwrap(),
            format!("ALL: {a}\n")
        );
    }
    let c = h.ban(3);
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&deny)
            .unwrap()
            .contains(&format!("ALL: {c}\n"))
    }));
    h.stop();

    // A symbolic link: refused, never written through; the ban happens.
    let mut h = Banning::new("hds", "");
    let real = h.dir.file("real-hosts.deny", "# theirs\n");
    let link = h.dir.path.join("hosts.deny");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let text = std::fs::read_to_string(&h.cfg).unwrap();
    std::fs::write(
        &h.cfg,
        format!("hosts_deny = \"{}\"\n{deny_line}\n{text}", link.display()),
    )
    .unwrap();
    h.start();
    let a = h.ban(4);
    assert!(
        wait_until(Duration::from_secs(5), || {
            h.log().contains(&format!(
            "attackalert: ERROR: could not block host {a} via wrappers: hosts.deny file {}: is a symbolic link",
            link.display()
        ))
        }),
        "{}",
        h.log()
    );
    assert_eq!(std::fs::read_to_string(&real).unwrap(), "# theirs\n");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    h.stop();

    // Its directory missing: an error, the ban all the same.
    let mut h = Banning::new("hdd", "");
    let gone = h.dir.path.join("no-such-dir/hosts.deny");
    let text = std::fs::read_to_string(&h.cfg).unwrap();
    std::fs::write(
        &h.cfg,
        format!("hosts_deny = \"{}\"\n{deny_line}\n{text}", gone.display()),
    )
    .unwrap();
    h.start();
    let a = h.ban(5);
    assert!(
        wait_until(Duration::from_secs(5), || {
            h.log().contains(&format!(
            "attackalert: ERROR: could not block host {a} via wrappers: hosts.deny file {}: cannot create",
            gone.display()
        ))
        }),
        "{}",
        h.log()
    );
    assert!(!gone.exists());
    h.stop();
}

/// The `ban` lines of a state file, whole (each with its newline).
fn state_lines(text: &[u8]) -> Vec<&[u8]> {
    text.split_inclusive(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"ban ") && l.ends_with(b"\n"))
        .collect()
}

#[test]
fn a_state_file_cut_short_or_garbled_gives_back_every_whole_line() {
    let mut h = Banning::new("stc", "");
    let state = h.dir.path.join("state");
    h.start();
    for n in 1..=40 {
        h.ban(n);
    }
    h.stop(); // the table goes; the state file keeps the 40 bans
    let full = std::fs::read(&state).unwrap();
    let lines = state_lines(&full);
    assert_eq!(lines.len(), 40);
    let header = full.len() - lines.iter().map(|l| l.len()).sum::<usize>();
    let line_no = |ban: usize| {
        // 1-based line of the ban-th ban line: the header's lines first.
        full[..header].iter().filter(|&&b| b == b'\n').count() + ban + 1
    };

    // Cut anywhere: every line before the cut comes back; a line cut in two
    // is reported (with its number) and dropped; the daemon runs.
    let mut offsets: Vec<usize> = (0..10)
        .map(|k| header + 17 + k * (full.len() - header) / 10)
        .collect();
    offsets.push(full.len() - 1); // the last newline missing
    offsets.push(header + lines[0].len()); // right after a whole line
    offsets.push(0); // empty
    for &cut in &offsets {
        let cut = cut.min(full.len());
        std::fs::write(&state, &full[..cut]).unwrap();
        let whole = state_lines(&full[..cut]).len();
        let partial = cut > header && !full[..cut].ends_with(b"\n");
        h.start();
        let banned = h.banned();
        assert_eq!(banned.len(), whole, "cut at {cut}:\n{}", h.log());
        let errors: Vec<String> = h
            .log()
            .lines()
            .filter(|l| l.contains("ERROR: state file"))
            .map(str::to_string)
            .collect();
        if partial {
            assert_eq!(errors.len(), 1, "cut at {cut}: {errors:?}");
            let want = format!("{}:{}: ", state.display(), line_no(whole));
            assert!(
                errors[0].contains(&want),
                "cut at {cut}: {errors:?}, want {want}"
            );
        } else {
            assert!(errors.is_empty(), "cut at {cut}: {errors:?}");
        }
        h.stop();
    }

    // Garbled: five lines with a byte changed fail their checksums; 10,000
    // lines of binary junk are summed up, not logged one by one; every
    // intact line comes back.
    let mut garbled = full[..header].to_vec();
    for (i, l) in lines.iter().enumerate() {
        let mut l = l.to_vec();
        if i % 8 == 3 {
            let at = l.len() / 2;
            l[at] ^= 0x20;
        }
        garbled.extend(l);
    }
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    // Damaged lines: the five, and the junk that does not start like a
    // comment (`#`).
    let mut damaged = 5;
    for _ in 0..10_000 {
        for k in 0..40 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = (x >> 24) as u8;
            let b = if b == b'\n' { b'x' } else { b };
            if k == 0 && b != b'#' {
                damaged += 1;
            }
            garbled.push(b);
        }
        garbled.push(b'\n');
    }
    std::fs::write(&state, &garbled).unwrap();
    h.start();
    assert_eq!(h.banned().len(), 35, "{}", h.log());
    let log = h.log();
    let errors = log
        .lines()
        .filter(|l| l.contains("ERROR: state file"))
        .count();
    assert_eq!(errors, 21, "{log}");
    assert!(
        log.contains("checksum mismatch (the line is damaged)"),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "ERROR: state file {}: {} more damaged lines not shown; every valid line was read",
            state.display(),
            damaged - 20
        )),
        "{log}"
    );
    // It goes on: a new ban, and the file is rewritten clean.
    h.ban(200);
    assert!(wait_until(Duration::from_secs(8), || {
        let t = std::fs::read(&state).unwrap_or_default();
        state_lines(&t).len() == 36 && !t.contains(&0u8)
    }));
    h.stop();
}
