//! Bad input, each with a clear message and nothing lost: invalid configs
//! and ignore files (file:line:key, exit 78, from `check` and from `run`,
//! while another instance keeps running with its table and bans as they
//! were), the NFLOG group held by another process, no CAP_NET_ADMIN, a
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
        let cfg = dir.file("good.toml", &format!("ignore_file = \"\"\n{extra}"));
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
        std::fs::write(&cfg, text).unwrap();
        let at = format!("{}:{line}: ", file.display());
        for cmd in ["check", "run"] {
            let o = if cmd == "run" {
                run_once(&r.ns, &cfg)
            } else {
                nftsentry(&r.ns, &cfg, &[cmd])
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
    }
    // An ignore file that cannot be read at all (a directory).
    let cfg = r.dir.file(
        "dir.toml",
        &format!("ignore_file = \"{}\"\n", r.dir.path.display()),
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
    let cfg = r
        .dir
        .file("second.toml", "ignore_file = \"\"\nnflog_group = 7532\n");
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
        "ignore_file = \"\"\nnflog_group = 7532\ntable = \"second\"\n",
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
        let cfg = dir.file("nftsentry.toml", "ignore_file = \"\"\n");
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
            "ignore_file = \"\"\ntable = \"nftsentry2\"\n",
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
        "ignore_file = \"\"\nkeep_table_on_exit = true\n",
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
    use nftsentry::nflog::{NflogConfig, NflogSocket};
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
