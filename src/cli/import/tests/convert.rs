//! Tests of the conversion of every other key, of the generated file's
//! comments, and that any input converts to a config nftsentry accepts.

use super::*;
use crate::cli::import::convert::needs_shell;

const FULL: &str = "\
TCP_PORTS=\"1,11,15,79,111,119,143,540,635,1080,1524,2000,5742,6667,12345,12346,20034,27665,31337,32771,32772,32773,32774,40421,49724,54320\"
UDP_PORTS=\"1,7,9,69,8080\"
ADVANCED_PORTS_TCP=\"2048\"
ADVANCED_PORTS_UDP=\"70000\"
ADVANCED_EXCLUDE_TCP=\"113,139,80-90\"
IGNORE_FILE=\"/etc/portsentry/portsentry.ignore\"
HISTORY_FILE=\"var/lib/portsentry/portsentry.history\"
BLOCKED_FILE=\"/var/lib/portsentry/portsentry.blocked\"
RESOLVE_HOST=\"2\"
BLOCK_UDP=\"2\"
BLOCK_TCP=\"1\"
KILL_HOSTS_DENY=\"ALL: $TARGET$ : DENY\"
KILL_RUN_CMD_FIRST = \"1\"
KILL_RUN_CMD=\"/usr/local/bin/page-me $TARGET$ $PORT$ $MODE$\"
SCAN_TRIGGER=\"3\"
PORT_BANNER=\"** UNAUTHORIZED ACCESS PROHIBITED **\"
";

// Long: one conversion of FULL, each of its keys checked in turn.
#[test]
fn every_key_is_converted() {
    let (out, t) = convert_text(FULL, Some("TCP_MODE=\"atcp\"\nUDP_MODE=\"sudp\"\n"));
    assert_eq!(str_at(&t, "tcp.mode"), "advanced");
    assert_eq!(str_at(&t, "udp.mode"), "stealth");
    assert_eq!(str_at(&t, "tcp.ports"), "aware");
    assert_eq!(str_at(&t, "udp.ports"), "1,7,9,69,8080");
    assert_eq!(
        get(&t, "tcp.advanced_ports").unwrap().as_integer(),
        Some(2048)
    );
    // Beyond 65535: every port, as far as nftsentry goes.
    assert_eq!(
        get(&t, "udp.advanced_ports").unwrap().as_integer(),
        Some(65535)
    );
    // atoi("80-90") is 80.
    assert_eq!(str_at(&t, "tcp.advanced_exclude"), "80,113,139");
    assert!(
        out.warnings
            .iter()
            .any(|w| w.contains("`80-90` is port 80"))
    );
    // Absent: PortSentry excluded nothing.
    assert_eq!(str_at(&t, "udp.advanced_exclude"), "");
    assert_eq!(str_at(&t, "tcp.block_mode"), "block");
    assert_eq!(str_at(&t, "udp.block_mode"), "command");
    // Relative to /, where PortSentry runs.
    // The packaged unit can write only /var/lib/nftsentry: the history goes
    // there, and the old file is remembered for fail2ban's jails.
    assert_eq!(str_at(&t, "history_file"), "/var/lib/nftsentry/history");
    assert_eq!(
        out.old_history.as_deref(),
        Some("/var/lib/portsentry/portsentry.history")
    );
    assert_eq!(get(&t, "resolve_host"), Some(&toml::Value::Boolean(true)));
    // hosts.deny: a file of addresses in the state directory, which one
    // line of /etc/hosts.deny includes with PortSentry's services and options.
    assert_eq!(str_at(&t, "hosts_deny"), "/var/lib/nftsentry/hosts.deny");
    assert_eq!(str_at(&t, "hosts_deny_line"), "$TARGET$");
    assert_eq!(
        out.todo[0].commands,
        [
            "grep -qsxF 'ALL: /var/lib/nftsentry/hosts.deny : DENY' /etc/hosts.deny || echo 'ALL: /var/lib/nftsentry/hosts.deny : DENY' >> /etc/hosts.deny"
        ]
    );
    assert!(
        out.toml
            .contains("\n#   ALL: /var/lib/nftsentry/hosts.deny : DENY\n"),
        "{}",
        out.toml
    );
    let cmd: Vec<&str> = get(&t, "command")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        cmd,
        ["/usr/local/bin/page-me", "$TARGET$", "$PORT$", "$MODE$"]
    );
    assert_eq!(
        get(&t, "run_before_block"),
        Some(&toml::Value::Boolean(true))
    );
    // PortSentry's third probe acts, and nftsentry's.
    assert_eq!(get(&t, "scan_trigger").unwrap().as_integer(), Some(3));
    assert_eq!(
        str_at(&t, "port_banner"),
        "** UNAUTHORIZED ACCESS PROHIBITED **"
    );
    // What has no equivalent is said.
    assert!(
        out.toml
            .contains("# - BLOCKED_FILE=\"/var/lib/portsentry/portsentry.blocked\"")
    );
    assert!(flat(&out.toml).contains("never expired"));
    // Every setting names its line.
    assert!(
        out.toml.contains("# BLOCK_TCP=\"1\" (portsentry.conf:11)"),
        "{}",
        out.toml
    );
}

#[test]
fn absent_keys_keep_portsentry_behaviour() {
    let (out, t) = convert_text("", None);
    // CheckFlag's default is 0: no blocking.
    assert_eq!(str_at(&t, "tcp.block_mode"), "log");
    assert_eq!(str_at(&t, "udp.block_mode"), "log");
    assert_eq!(get(&t, "scan_trigger").unwrap().as_integer(), Some(0));
    assert_eq!(get(&t, "resolve_host"), Some(&toml::Value::Boolean(false)));
    assert_eq!(
        get(&t, "tcp.advanced_ports").unwrap().as_integer(),
        Some(1024)
    );
    // The mode came from the command line: not converted, and said so.
    assert!(get(&t, "tcp.mode").is_none());
    assert!(flat(&out.toml).contains("which this import cannot see"));
    for key in [
        "route",
        "kill_route",
        "hosts_deny",
        "command",
        "port_banner",
    ] {
        assert!(get(&t, key).is_none(), "{key}");
    }
}

#[test]
fn empty_values() {
    let text = "TCP_PORTS=\"\"\nKILL_ROUTE=\"\"\nKILL_HOSTS_DENY=\"\"\nKILL_RUN_CMD=\"\"\nKILL_RUN_CMD_FIRST=\"1\"\nSCAN_TRIGGER=\"\"\nBLOCK_TCP=\"\"\nHISTORY_FILE=\"\"\nPORT_BANNER=\"\"\nADVANCED_EXCLUDE_UDP=\"\"\n";
    let (out, t) = convert_text(text, None);
    assert_eq!(str_at(&t, "tcp.ports"), "");
    assert_eq!(str_at(&t, "udp.advanced_exclude"), "");
    assert_eq!(str_at(&t, "tcp.block_mode"), "log");
    assert_eq!(str_at(&t, "history_file"), "");
    assert_eq!(str_at(&t, "port_banner"), "");
    assert_eq!(get(&t, "scan_trigger").unwrap().as_integer(), Some(0));
    for key in [
        "route",
        "kill_route",
        "hosts_deny",
        "command",
        "run_before_block",
    ] {
        assert!(get(&t, key).is_none(), "{key}");
    }
    assert!(
        flat(&out.toml).contains("KILL_RUN_CMD_FIRST=\"1\" (portsentry.conf:5): without effect"),
        "{}",
        out.toml
    );
}

#[test]
fn port_lists_read_as_portsentry_did() {
    // strtok skips empty items; atoi reads leading digits and blanks.
    let (out, t) = convert_text("TCP_PORTS=\"1,, 11,80x,0,70000,abc,\"\n", None);
    assert_eq!(str_at(&t, "tcp.ports"), "1,11,80");
    let w = out.warnings.join("\n");
    assert!(w.contains("`80x` is port 80"), "{w}");
    assert!(w.contains("`0` is not a port"), "{w}");
    assert!(w.contains("`70000` is not a port"), "{w}");
    assert!(w.contains("`abc` is not a port"), "{w}");
    assert!(!w.contains("`11`"), "{w}");

    // More than MAXSOCKS: all are watched, and the difference is said.
    let many: Vec<String> = (1000..1070).map(|p| p.to_string()).collect();
    let (out, t) = convert_text(&format!("UDP_PORTS=\"{}\"\n", many.join(",")), None);
    assert_eq!(str_at(&t, "udp.ports"), "1000-1069");
    assert!(flat(&out.toml).contains("only the first 64 of these 70 ports"));
}

#[test]
fn scan_trigger_counts_as_portsentry_did() {
    for (portsentry, ours) in [("0", 0), ("1", 1), ("2", 2), ("5", 5), ("-3", 0), ("x", 0)] {
        let (_, t) = convert_text(&format!("SCAN_TRIGGER=\"{portsentry}\"\n"), None);
        assert_eq!(
            get(&t, "scan_trigger").unwrap().as_integer(),
            Some(ours),
            "SCAN_TRIGGER={portsentry}"
        );
    }
}

#[test]
fn commands_with_shell_syntax() {
    let (_, t) = convert_text(
        "KILL_RUN_CMD=\"/usr/bin/logger -t portsentry $TARGET$ >> /var/log/x\"\n",
        None,
    );
    assert_eq!(
        str_at(&t, "command"),
        "/usr/bin/logger -t portsentry $TARGET$ >> /var/log/x"
    );
    assert_eq!(get(&t, "command_shell"), Some(&toml::Value::Boolean(true)));
    // KILL_RUN_CMD_FIRST absent: after the block.
    assert_eq!(
        get(&t, "run_before_block"),
        Some(&toml::Value::Boolean(false))
    );
    // A variable as the program cannot be converted.
    let (out, t) = convert_text("KILL_RUN_CMD=\"$TARGET$ x\"\n", None);
    assert!(get(&t, "command").is_none());
    assert!(flat(&out.toml).contains("the program itself is a variable"));
    assert!(!needs_shell(
        "/usr/local/bin/x $TARGET$ $PORT$ --mode=$MODE$"
    ));
    assert!(needs_shell("FOO=1 /usr/local/bin/x $TARGET$"));
    assert!(needs_shell("/usr/local/bin/x \"$TARGET$\""));
}

#[test]
fn hosts_deny_without_target_or_as_comment() {
    let (out, t) = convert_text("KILL_HOSTS_DENY=\"ALL: 192.0.2.1\"\n", None);
    assert!(get(&t, "hosts_deny").is_none());
    assert!(flat(&out.toml).contains("no $TARGET$"));
    let (_, t) = convert_text("KILL_HOSTS_DENY=\"# $TARGET$\"\n", None);
    assert!(get(&t, "hosts_deny").is_none());
}

#[test]
fn file_names_cannot_break_the_comments() {
    let c = PortsentryConf::parse(b"SCAN_TRIGGER=\"1\"\n", "/tmp/odd\nname = 1");
    let ig = IgnoreImport::parse("192.0.2.1\n", "/tmp/odd\nignore");
    let out = convert(&c, None, Some(&ig), None, &[]);
    let t: toml::Table = out.toml.parse().unwrap();
    assert!(t.get("name").is_none(), "{}", out.toml);
    assert!(out.toml.contains("#   /tmp/odd?name = 1\n"), "{}", out.toml);
}

#[test]
fn block_mode_command_needs_a_command() {
    let (out, t) = convert_text(
        "BLOCK_UDP=\"2\"\nBLOCK_TCP=\"2\"\nKILL_RUN_CMD=\"\"\n",
        None,
    );
    assert_eq!(str_at(&t, "udp.block_mode"), "log");
    assert_eq!(str_at(&t, "tcp.block_mode"), "log");
    assert!(flat(&out.toml).contains("there is none to run"));
    let (_, t) = convert_text(
        "BLOCK_UDP=\"2\"\nKILL_RUN_CMD=\"/bin/true $TARGET$\"\n",
        None,
    );
    assert_eq!(str_at(&t, "udp.block_mode"), "command");
}

#[test]
fn history_file_forms() {
    let (_, t) = convert_text("HISTORY_FILE=\"/var/lib/portsentry/\"\n", None);
    assert_eq!(str_at(&t, "history_file"), "");
    // Anywhere the service cannot write: nftsentry's own file.
    let (out, t) = convert_text("HISTORY_FILE=\"history\"\n", None);
    assert_eq!(str_at(&t, "history_file"), "/var/lib/nftsentry/history");
    assert_eq!(out.old_history.as_deref(), Some("/history"));
    // In the state directory or the runtime directory: kept.
    for kept in ["/var/lib/nftsentry/ps.history", "/run/nftsentry/h"] {
        let (out, t) = convert_text(&format!("HISTORY_FILE=\"{kept}\"\n"), None);
        assert_eq!(str_at(&t, "history_file"), kept);
        assert_eq!(out.old_history, None);
    }
    let (_, t) = convert_text("HISTORY_FILE=\"/var/lib/nftsentryx/h\"\n", None);
    assert_eq!(str_at(&t, "history_file"), "/var/lib/nftsentry/history");
}

#[test]
fn hosts_deny_templates_split_into_a_file_and_one_include_line() {
    let split = |t: &str| {
        let s = split_hosts_deny(t);
        (s.file_line, s.include, s.note.is_some())
    };
    let f = "/var/lib/nftsentry/hosts.deny";
    assert_eq!(
        split("ALL: $TARGET$"),
        ("$TARGET$".into(), format!("ALL: {f}"), false)
    );
    assert_eq!(
        split("ALL: $TARGET$ : DENY"),
        ("$TARGET$".into(), format!("ALL: {f} : DENY"), false)
    );
    assert_eq!(
        split("sshd, in.telnetd : $TARGET$/255.255.255.255 : spawn (echo $TARGET$) : DENY"),
        (
            "$TARGET$/255.255.255.255".into(),
            format!("sshd, in.telnetd: {f} : spawn (echo $TARGET$) : DENY"),
            false
        )
    );
    // Forms that do not split: the addresses, for every service, and a note.
    for t in ["$TARGET$", "ALL: $TARGET$ EXCEPT 192.0.2.1", ": $TARGET$"] {
        assert_eq!(
            split(t),
            ("$TARGET$".into(), format!("ALL: {f}"), true),
            "{t}"
        );
    }
}

/// A small xorshift generator: the same inputs on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

#[test]
fn any_input_converts_to_a_config_nftsentry_accepts() {
    // Configs built from PortSentry's keys and the bytes its reader cares
    // about: whatever PortSentry made of them, the output must parse.
    let mut words: Vec<&str> = KEYS.to_vec();
    words.extend([
        "=",
        " ",
        "\"",
        "\"",
        "\"",
        "#",
        "\t",
        "\r",
        "\n",
        "\n",
        "\n",
        ",",
        "1",
        "80-90",
        "0",
        "70000",
        "-5",
        "$TARGET$",
        "$PORT$",
        "$MODE$",
        "/sbin/route add -host",
        "reject",
        "gw 333.444.555.666",
        "ip route add blackhole",
        "iptables -I INPUT -s",
        "-j DROP",
        "|",
        "&&",
        "'",
        "\u{e9}",
        "\0",
        "ALL:",
        "/",
        "tcp",
        "x",
        "2",
        "\\",
    ]);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for round in 0..3000 {
        let len = 1 + rng.next() % 40;
        let text: String = (0..len).map(|_| rng.pick(&words)).collect();
        let modes = ["tcp", "stcp", "atcp", ""];
        let udp_modes = ["udp", "sudp", "audp", ""];
        let default = format!(
            "TCP_MODE=\"{}\"\nUDP_MODE=\"{}\"\n",
            rng.pick(&modes),
            rng.pick(&udp_modes)
        );
        let d = DebianDefault::parse(&default, "default").unwrap();
        let ig = IgnoreImport::parse(&text, "ignore");
        let out = convert(&conf(&text), Some(&d), Some(&ig), None, &[]);
        if let Err(e) = Config::parse(&out.toml, "converted.toml") {
            panic!("round {round}: {e}\ninput: {text:?}\n{}", out.toml);
        }
    }
}
