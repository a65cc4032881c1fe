//! `nftsentry import-portsentry` against Debian's real portsentry package,
//! which tests/run downloads at test time into $NFTSENTRY_TEST_PORTSENTRY_DIR
//! (never committed): its portsentry.conf, portsentry.ignore.static, and
//! `default`, the /etc/default/portsentry its postinst writes. Every
//! converted config must pass `nftsentry check`. The reader's edge cases are
//! unit tests (src/cli/import/tests/); here, those of the command line.
mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ENV: &str = "NFTSENTRY_TEST_PORTSENTRY_DIR";

/// The directory with Debian's files; a test without them fails.
fn debian() -> PathBuf {
    let dir = std::env::var_os(ENV).unwrap_or_else(|| {
        panic!(
            "{ENV} is not set: tests/run downloads Debian's portsentry package and sets it; \
             or point it at a directory with portsentry.conf, portsentry.ignore.static and default"
        )
    });
    let dir = PathBuf::from(dir);
    for f in ["portsentry.conf", "portsentry.ignore.static", "default"] {
        assert!(dir.join(f).is_file(), "{ENV}: no {f} in {}", dir.display());
    }
    dir
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn import(args: &[&Path]) -> Output {
    let mut c = Command::new(nftsentry_bin());
    c.arg("import-portsentry").args(args);
    c.output().unwrap()
}

/// Import, save the result in `dir`, check it with `nftsentry check`, and
/// return it parsed with the import's standard error.
fn import_and_check(dir: &TempDir, name: &str, args: &[&Path]) -> (toml::Table, String) {
    let o = import(args);
    assert!(
        o.status.success(),
        "import-portsentry {args:?}: {}",
        stderr(&o)
    );
    let text = stdout(&o);
    let file = dir.file(name, &text);
    let check = run_ok(
        Command::new(nftsentry_bin())
            .arg("-c")
            .arg(&file)
            .arg("check"),
    );
    assert!(
        stdout(&check).starts_with(&format!("config {}: OK\n", file.display())),
        "{}",
        stdout(&check)
    );
    (text.parse().unwrap(), stderr(&o))
}

fn get<'t>(t: &'t toml::Table, path: &str) -> &'t toml::Value {
    let v = match path.split_once('.') {
        Some((table, key)) => t.get(table).and_then(|t| t.get(key)),
        None => t.get(path),
    };
    v.unwrap_or_else(|| panic!("no {path} in {t:#?}"))
}

fn s<'t>(t: &'t toml::Table, path: &str) -> &'t str {
    get(t, path).as_str().unwrap()
}

#[test]
fn debian_files_convert_and_pass_check() {
    let d = debian();
    let dir = TempDir::new("import");
    let ignore = dir.path.join("ignore");
    let (t, err) = import_and_check(
        &dir,
        "nftsentry.toml",
        &[
            &d.join("portsentry.conf"),
            Path::new("--default"),
            &d.join("default"),
            Path::new("--ignore"),
            &d.join("portsentry.ignore.static"),
            Path::new("--write-ignore"),
            &ignore,
        ],
    );
    // Debian's files are clean: no notes, only where the entries went, then
    // what is left to do by hand: the one line for /etc/hosts.deny (and
    // fail2ban's portsentry jail, where this host has fail2ban).
    let (head, todo) = err
        .split_once("nftsentry: to finish the migration, run as root:\n")
        .unwrap_or_else(|| panic!("no steps to finish in:\n{err}"));
    assert_eq!(
        head,
        format!(
            "nftsentry: wrote the ignore entries to {}\n",
            ignore.display()
        )
    );
    assert!(
        todo.contains("\n    grep -qsxF 'ALL: /var/lib/nftsentry/hosts.deny : DENY' /etc/hosts.deny || echo 'ALL: /var/lib/nftsentry/hosts.deny : DENY' >> /etc/hosts.deny\n"),
        "{todo}"
    );
    assert!(todo.lines().all(|l| l.starts_with("    ")), "{todo}");
    // What Debian's portsentry 1.2-14 does out of the box: classic modes on
    // the "aware" lists, blocking off (BLOCK_TCP/UDP "0"), a reject route and
    // a hosts.deny line for when blocking is turned on.
    assert_eq!(s(&t, "tcp.mode"), "connect");
    assert_eq!(s(&t, "udp.mode"), "connect");
    assert_eq!(s(&t, "tcp.ports"), "aware");
    assert_eq!(s(&t, "udp.ports"), "aware");
    assert_eq!(s(&t, "tcp.block_mode"), "log");
    assert_eq!(s(&t, "udp.block_mode"), "log");
    assert_eq!(get(&t, "tcp.advanced_ports").as_integer(), Some(1024));
    assert_eq!(s(&t, "tcp.advanced_exclude"), "113,139");
    assert_eq!(s(&t, "udp.advanced_exclude"), "67,137-138,520");
    assert_eq!(s(&t, "route"), "unreachable");
    // Where the packaged unit lets the service write.
    assert_eq!(s(&t, "hosts_deny"), "/var/lib/nftsentry/hosts.deny");
    assert_eq!(s(&t, "hosts_deny_line"), "$TARGET$");
    assert_eq!(get(&t, "scan_trigger").as_integer(), Some(0));
    assert_eq!(get(&t, "resolve_host").as_bool(), Some(false));
    assert_eq!(s(&t, "history_file"), "/var/lib/nftsentry/history");
    assert_eq!(s(&t, "ignore_file"), ignore.display().to_string());
    for absent in ["kill_route", "command", "port_banner"] {
        assert!(t.get(absent).is_none(), "{absent}");
    }
    // The ignore file holds the two entries of portsentry.ignore.static.
    let entries = nftsentry::config::ignore::load(&ignore).unwrap().unwrap();
    let entries: Vec<String> = entries.iter().map(|c| c.to_string()).collect();
    assert_eq!(entries, ["127.0.0.1", "0.0.0.0"]);
}

#[test]
fn debian_modes_in_every_combination() {
    let d = debian();
    let dir = TempDir::new("import-modes");
    let original = read(&d.join("default"));
    assert!(original.contains("\nTCP_MODE=\"tcp\"\nUDP_MODE=\"udp\"\n"));
    for (tcp, udp, want_tcp, want_udp) in [
        ("stcp", "sudp", "stealth", "stealth"),
        ("atcp", "audp", "advanced", "advanced"),
        ("atcp", "", "advanced", "off"),
        ("", "udp", "off", "connect"),
    ] {
        let text = original
            .replace("TCP_MODE=\"tcp\"", &format!("TCP_MODE=\"{tcp}\""))
            .replace("UDP_MODE=\"udp\"", &format!("UDP_MODE=\"{udp}\""));
        let default = dir.file("default", &text);
        let (t, _) = import_and_check(
            &dir,
            "nftsentry.toml",
            &[
                &d.join("portsentry.conf"),
                Path::new("--default"),
                &default,
                Path::new("--ignore"),
                &d.join("portsentry.ignore.static"),
            ],
        );
        assert_eq!(s(&t, "tcp.mode"), want_tcp, "{tcp}");
        assert_eq!(s(&t, "udp.mode"), want_udp, "{udp}");
    }
}

/// Debian's portsentry.conf with `line` (one of its commented examples,
/// uncommented) before everything else, where it wins.
fn with_first_line(dir: &TempDir, line: &str) -> PathBuf {
    let conf = read(&debian().join("portsentry.conf"));
    dir.file("portsentry.conf", &format!("{line}\n{conf}"))
}

#[test]
fn every_kill_route_example_of_debian() {
    let d = debian();
    let dir = TempDir::new("import-route");
    // What each example of the file becomes: (command, key, value), where
    // key "" means nothing is written (the ban already drops).
    let expected: &[(&str, &str, &str)] = &[
        (
            "/sbin/route add $TARGET$ 333.444.555.666",
            "route",
            "blackhole",
        ),
        (
            "/sbin/route add -host $TARGET$ gw 333.444.555.666",
            "route",
            "blackhole",
        ),
        (
            "/sbin/route add -host $TARGET$ reject",
            "route",
            "unreachable",
        ),
        (
            "/usr/sbin/route add $TARGET$ 333.444.555.666 1",
            "route",
            "blackhole",
        ),
        (
            "/usr/etc/route add $TARGET$ 127.0.0.1 1",
            "route",
            "blackhole",
        ),
        (
            "route add -net $TARGET$ -netmask 255.255.255.255 127.0.0.1 -blackhole",
            "route",
            "blackhole",
        ),
        (
            "/sbin/route add -host -blackhole $TARGET$ 127.0.0.1",
            "route",
            "blackhole",
        ),
        (
            "/usr/sbin/route add net $TARGET$ netmask 255.255.255.0 127.0.0.1",
            "kill_route",
            "",
        ),
        ("/sbin/ipfwadm -I -i deny -S $TARGET$ -o", "", ""),
        ("/sbin/ipfwadm -I -i deny -S $TARGET$", "", ""),
        ("/sbin/ipchains -I input -s $TARGET$ -j DENY -l", "", ""),
        ("/sbin/ipchains -I input -s $TARGET$ -j DENY", "", ""),
        ("/sbin/iptables -I INPUT -s $TARGET$ -j DROP", "", ""),
        (
            "/sbin/iptables -I INPUT -s $TARGET$ -j DROP && /sbin/iptables -I INPUT -s $TARGET$ -m limit --limit 3/minute --limit-burst 5 -j LOG --log-level DEBUG --log-prefix 'Portsentry: dropping: '",
            "kill_route",
            "",
        ),
        (
            "/sbin/ipfw add 1 deny all from $TARGET$:255.255.255.255 to any",
            "",
            "",
        ),
        (
            "/bin/echo 'block in log on external_interface from $TARGET$/32 to any' | /sbin/ipf -f -",
            "kill_route",
            "",
        ),
    ];
    let conf = read(&d.join("portsentry.conf"));
    let mut examples = Vec::new();
    for line in conf.lines() {
        let l = line.trim_start_matches(['#', ' ']);
        if let Some(v) = l.strip_prefix("KILL_ROUTE=\"") {
            examples.push(v.strip_suffix('"').unwrap().to_string());
        }
    }
    // Every example of the file is covered, so a changed file fails here.
    let mut known: Vec<&str> = expected.iter().map(|e| e.0).collect();
    known.sort();
    let mut found: Vec<&str> = examples.iter().map(String::as_str).collect();
    found.sort();
    found.dedup();
    assert_eq!(found, known);

    for (cmd, key, value) in expected {
        let conf = with_first_line(&dir, &format!("KILL_ROUTE=\"{cmd}\""));
        let (t, _) = import_and_check(
            &dir,
            "nftsentry.toml",
            &[
                &conf,
                Path::new("--default"),
                &d.join("default"),
                Path::new("--ignore"),
                &d.join("portsentry.ignore.static"),
            ],
        );
        match *key {
            "route" => {
                assert_eq!(s(&t, "route"), *value, "{cmd}");
                assert!(t.get("kill_route").is_none(), "{cmd}");
            }
            "kill_route" => {
                assert_eq!(s(&t, "kill_route"), *cmd);
                assert!(t.get("route").is_none(), "{cmd}");
                // Pipes, && and quotes need the shell PortSentry used.
                let shell = cmd.contains(['|', '&', '\'']);
                assert_eq!(
                    t.get("command_shell").and_then(|v| v.as_bool()),
                    shell.then_some(true),
                    "{cmd}"
                );
            }
            _ => {
                assert!(t.get("route").is_none(), "{cmd}");
                assert!(t.get("kill_route").is_none(), "{cmd}");
            }
        }
    }
}

#[test]
fn debian_commented_examples_of_other_keys() {
    let d = debian();
    let dir = TempDir::new("import-examples");
    let conf = read(&d.join("portsentry.conf"));
    // The commented alternatives of the file, each put first in turn.
    let example = |key: &str, containing: &str| -> String {
        conf.lines()
            .filter_map(|l| l.strip_prefix('#'))
            .find(|l| l.starts_with(key) && l.contains(containing))
            .unwrap_or_else(|| panic!("no commented {key} with {containing}"))
            .to_string()
    };
    let cases = [
        (
            vec![example("TCP_PORTS", "1,7,9,11")],
            "tcp.ports",
            "paranoid",
        ),
        (
            vec![example("UDP_PORTS", "1,7,9,66")],
            "udp.ports",
            "paranoid",
        ),
        (
            vec![example("TCP_PORTS", "1,11,15,110")],
            "tcp.ports",
            "bare-bones",
        ),
        (
            vec![example("UDP_PORTS", "1,7,9,69,161,162,513,640")],
            "udp.ports",
            "bare-bones",
        ),
        (
            // `ALL: $TARGET$`: the addresses go to a file that one line of
            // /etc/hosts.deny includes.
            vec![example("KILL_HOSTS_DENY", "ALL")],
            "hosts_deny_line",
            "$TARGET$",
        ),
        (
            vec![example("PORT_BANNER", "")],
            "port_banner",
            "** UNAUTHORIZED ACCESS PROHIBITED *** YOUR CONNECTION ATTEMPT HAS BEEN LOGGED. GO AWAY.",
        ),
    ];
    for (lines, key, want) in cases {
        let file = with_first_line(&dir, &lines.join("\n"));
        let (t, _) = import_and_check(
            &dir,
            "nftsentry.toml",
            &[&file, Path::new("--default"), &d.join("default")],
        );
        assert_eq!(s(&t, key), want, "{lines:?}");
    }

    // KILL_RUN_CMD with KILL_RUN_CMD_FIRST, as the file shows them.
    let lines = [
        example("KILL_RUN_CMD_FIRST", "0"),
        example("KILL_RUN_CMD=", "$TARGET$"),
    ];
    let file = with_first_line(&dir, &lines.join("\n"));
    let (t, _) = import_and_check(
        &dir,
        "nftsentry.toml",
        &[&file, Path::new("--default"), &d.join("default")],
    );
    let cmd: Vec<&str> = get(&t, "command")
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        cmd,
        ["/some/path/here/script", "$TARGET$", "$PORT$", "$MODE$"]
    );
    assert_eq!(get(&t, "run_before_block").as_bool(), Some(false));
    assert!(t.get("command_shell").is_none());
}

#[test]
fn hand_written_edge_cases_on_the_command_line() {
    let dir = TempDir::new("import-edge");
    // CRLF, a duplicate key (the first wins), an unquoted key, garbage, the
    // dummy gateway, an empty value, a bad ignore line.
    let conf = dir.file(
        "portsentry.conf",
        "TCP_PORTS=\"1,11,15\"\r\n\
         TCP_PORTS=\"2,3\"\r\n\
         SCAN_TRIGGER=2\r\n\
         complete garbage here\r\n\
         KILL_ROUTE=\"/sbin/route add $TARGET$ gw 333.444.555.666\"\r\n\
         BLOCK_TCP=\"1\"\r\n\
         KILL_HOSTS_DENY=\"\"\r\n",
    );
    let ignore = dir.file("ignore", "192.0.2.0/24\nnot-an-address\n");
    let default = dir.file("default", "TCP_MODE=\"stcp\"\r\nUDP_MODE=\"\"\r\n");
    let (t, err) = import_and_check(
        &dir,
        "nftsentry.toml",
        &[
            &conf,
            Path::new("--ignore"),
            &ignore,
            Path::new("--default"),
            &default,
        ],
    );
    assert_eq!(s(&t, "tcp.ports"), "1,11,15");
    assert_eq!(s(&t, "tcp.mode"), "stealth");
    assert_eq!(s(&t, "udp.mode"), "off");
    assert_eq!(s(&t, "tcp.block_mode"), "block");
    assert_eq!(s(&t, "route"), "blackhole");
    assert_eq!(get(&t, "scan_trigger").as_integer(), Some(0));
    assert!(t.get("hosts_deny").is_none());
    let c = conf.display();
    for note in [
        format!(
            "nftsentry: note: {c}:2: TCP_PORTS again: PortSentry uses only the first one, line 1"
        ),
        format!(
            "nftsentry: note: {c}:4: PortSentry reads no setting from `complete garbage here`; ignored"
        ),
        format!(
            "nftsentry: note: {c}:3: SCAN_TRIGGER has no quotes: PortSentry skipped it (\"Quotes missing\")"
        ),
        format!(
            "nftsentry: note: {}:2: `not-an-address` skipped: `not-an-address` is not an IPv4 or IPv6 address or network",
            ignore.display()
        ),
    ] {
        assert!(err.lines().any(|l| l == note), "missing {note:?} in\n{err}");
    }
    // The entries are listed as comments when no file is asked for.
    let text = read(&dir.path.join("nftsentry.toml"));
    assert!(text.contains("\n#   192.0.2.0/24\n"), "{text}");
}

#[test]
fn errors_name_the_file_and_exit_78() {
    let dir = TempDir::new("import-errors");
    let absent = dir.path.join("absent.conf");
    let o = import(&[&absent]);
    assert_eq!(o.status.code(), Some(78));
    assert_eq!(
        stderr(&o),
        format!(
            "nftsentry: {}: cannot read the PortSentry config: No such file or directory\n",
            absent.display()
        )
    );
    assert!(o.stdout.is_empty());

    let conf = dir.file("portsentry.conf", "TCP_PORTS=\"1\"\n");
    let default = dir.file("default", "# modes\nTCP_MODE=\"bogus\"\n");
    let o = import(&[&conf, Path::new("--default"), &default]);
    assert_eq!(o.status.code(), Some(78));
    assert!(
        stderr(&o).starts_with(&format!(
            "nftsentry: {}:2: TCP_MODE=\"bogus\" is not a mode",
            default.display()
        )),
        "{}",
        stderr(&o)
    );

    // An ignore file that cannot be written: nothing on standard output.
    let ignore = dir.file("ignore", "192.0.2.1\n");
    let o = import(&[
        &conf,
        Path::new("--default"),
        &dir.file("d", ""),
        Path::new("--ignore"),
        &ignore,
        Path::new("--write-ignore"),
        &dir.path.join("no/such/dir/ignore"),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot write the ignore file"));
    assert!(o.stdout.is_empty());
}
