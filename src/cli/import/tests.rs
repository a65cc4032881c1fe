//! Tests of the PortSentry reader, the KILL_ROUTE forms and the conversion.
//! Debian's real files are tested in tests/import.rs, at test time.

use super::*;
use crate::config::Config;

fn conf(text: &str) -> PortsentryConf {
    PortsentryConf::parse(text.as_bytes(), "/etc/portsentry/portsentry.conf")
}

fn value(text: &str, key: &str) -> Option<String> {
    conf(text).token(key).value().map(str::to_string)
}

/// The converted config for `text` (and a defaults file), as a TOML table,
/// after checking that nftsentry's own parser accepts it.
fn convert_text(text: &str, default: Option<&str>) -> (Import, toml::Table) {
    let d = default.map(|d| DebianDefault::parse(d, "/etc/default/portsentry").unwrap());
    let out = convert(&conf(text), d.as_ref(), None, None, &[]);
    if let Err(e) = Config::parse(&out.toml, "converted.toml") {
        panic!("{e}\n{}", out.toml);
    }
    let table: toml::Table = out.toml.parse().unwrap();
    (out, table)
}

/// The comments of `toml` with wrapped lines joined, to look for a phrase.
fn flat(toml: &str) -> String {
    toml.replace("\n#   ", " ")
}

fn get<'t>(t: &'t toml::Table, path: &str) -> Option<&'t toml::Value> {
    match path.split_once('.') {
        Some((table, key)) => t.get(table)?.as_table()?.get(key),
        None => t.get(path),
    }
}

fn str_at<'t>(t: &'t toml::Table, path: &str) -> &'t str {
    get(t, path)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("no string at {path}: {t:#?}"))
}

// --- ConfigTokenRetrieve's rules -------------------------------------------

#[test]
fn values_are_read_between_double_quotes() {
    assert_eq!(value("SCAN_TRIGGER=\"2\"\n", "SCAN_TRIGGER").unwrap(), "2");
    // Debian's own file writes RESOLVE_HOST = "0": a space after the key.
    assert_eq!(
        value("RESOLVE_HOST = \"1\"\n", "RESOLVE_HOST").unwrap(),
        "1"
    );
    assert_eq!(value("KILL_ROUTE=\"\"\n", "KILL_ROUTE").unwrap(), "");
    // Text after the closing quote is not part of the value.
    assert_eq!(
        value("SCAN_TRIGGER=\"2\" # two\n", "SCAN_TRIGGER").unwrap(),
        "2"
    );
    // No closing quote: the value runs to the end of the line.
    assert_eq!(value("SCAN_TRIGGER=\"2\n", "SCAN_TRIGGER").unwrap(), "2");
    assert_eq!(conf("").token("SCAN_TRIGGER"), Token::Absent);
}

#[test]
fn first_occurrence_wins() {
    let c = conf("SCAN_TRIGGER=\"1\"\nSCAN_TRIGGER=\"3\"\n");
    assert_eq!(
        c.token("SCAN_TRIGGER"),
        Token::Value {
            value: "1".into(),
            line: 1,
            dropped: None
        }
    );
    let d = c.diagnostics();
    assert_eq!(
        d,
        [
            "/etc/portsentry/portsentry.conf:2: SCAN_TRIGGER again: PortSentry uses only the first one, line 1"
        ]
    );
}

#[test]
fn an_unquoted_first_occurrence_hides_later_ones() {
    // PortSentry returns at the first line with the key: "Quotes missing
    // from SCAN_TRIGGER token. Option skipped", and never sees line 2.
    let c = conf("SCAN_TRIGGER=2\nSCAN_TRIGGER=\"3\"\n");
    assert_eq!(c.token("SCAN_TRIGGER"), Token::Unquoted { line: 1 });
    let out = convert(&c, None, None, None, &[]);
    assert!(
        out.warnings.iter().any(|w| w
            == "/etc/portsentry/portsentry.conf:1: SCAN_TRIGGER has no quotes: PortSentry skipped it (\"Quotes missing\")"),
        "{:#?}",
        out.warnings
    );
    // Skipped means PortSentry's "disabled" trigger: 0.
    assert!(out.toml.contains("\nscan_trigger = 0\n"), "{}", out.toml);
}

#[test]
fn comments_and_key_boundaries() {
    // Only a `#` in the first column makes a comment.
    assert_eq!(value("#SCAN_TRIGGER=\"5\"\n", "SCAN_TRIGGER"), None);
    // The byte at offset len(key) must be `=` or a space.
    assert_eq!(value("SCAN_TRIGGER\t=\"5\"\n", "SCAN_TRIGGER"), None);
    assert_eq!(value("KILL_RUN_CMD_FIRST=\"1\"\n", "KILL_RUN_CMD"), None);
    // Keys are case-sensitive.
    assert_eq!(value("scan_trigger=\"5\"\n", "SCAN_TRIGGER"), None);
    // strstr() finds the key anywhere in the line, and the offset test is
    // made at the start of the line: a TCP_PORTS line whose comment names
    // UDP_PORTS is read as UDP_PORTS too, as PortSentry did.
    let c = conf("TCP_PORTS=\"1,2\" # not UDP_PORTS\n");
    assert_eq!(c.token("UDP_PORTS").value(), Some("1,2"));
    assert_eq!(c.token("TCP_PORTS").value(), Some("1,2"));
}

#[test]
fn unprintable_bytes_end_the_value() {
    let c = conf("PORT_BANNER=\"go\taway\"\n");
    assert_eq!(
        c.token("PORT_BANNER"),
        Token::Value {
            value: "go".into(),
            line: 1,
            dropped: Some("\taway".into())
        }
    );
    // isprint() in the C locale: a UTF-8 dash ends the value.
    let c = conf("PORT_BANNER=\"Zugriff \u{2013} verboten\"\n");
    assert_eq!(c.token("PORT_BANNER").value(), Some("Zugriff "));
    let out = convert(&c, None, None, None, &[]);
    assert!(
        out.warnings
            .iter()
            .any(|w| w.contains("PORT_BANNER") && w.contains("it read \"Zugriff \"")),
        "{:#?}",
        out.warnings
    );
}

#[test]
fn crlf_line_endings() {
    let text = "SCAN_TRIGGER=\"2\"\r\nBLOCK_TCP=\"1\"\r\nPORT_BANNER=\"no\r\n";
    let c = conf(text);
    assert_eq!(c.token("SCAN_TRIGGER").value(), Some("2"));
    assert_eq!(c.token("BLOCK_TCP").value(), Some("1"));
    assert_eq!(
        c.token("PORT_BANNER"),
        Token::Value {
            value: "no".into(),
            line: 3,
            dropped: None
        }
    );
    assert_eq!(c.diagnostics(), Vec::<String>::new());
}

#[test]
fn long_lines_are_read_in_fgets_chunks() {
    // fgets(buffer, 1024, ...) returns a long line in pieces of 1023
    // bytes; the piece after the first is not a comment even when the line
    // is, so a key at its start counts.
    let text = format!("#{}TCP_PORTS=\"7\"\nSCAN_TRIGGER=\"1\"\n", "x".repeat(1022));
    let c = conf(&text);
    assert_eq!(
        c.token("TCP_PORTS"),
        Token::Value {
            value: "7".into(),
            line: 1,
            dropped: None
        }
    );
    assert_eq!(c.token("SCAN_TRIGGER").line(), Some(2));
    // One byte less and the key is inside the comment's first piece.
    let text = format!("#{}TCP_PORTS=\"7\"\n", "x".repeat(1021));
    assert_eq!(conf(&text).token("TCP_PORTS"), Token::Absent);
}

#[test]
fn garbage_lines_are_reported_not_fatal() {
    let text = "this is not a setting\nscan_trigger=\"1\"\n\n   \n# comment\n\u{0}\u{1}\u{2}\nSCAN_TRIGGER=\"1\"\n";
    let c = conf(text);
    assert_eq!(c.token("SCAN_TRIGGER").line(), Some(7));
    let d = c.diagnostics();
    assert_eq!(d.len(), 2, "{d:#?}");
    assert_eq!(
        d[0],
        "/etc/portsentry/portsentry.conf:1: PortSentry reads no setting from `this is not a setting`; ignored"
    );
    assert!(
        d[1].ends_with("(keys are upper case: SCAN_TRIGGER)"),
        "{d:#?}"
    );
    // Any bytes at all are read without an error.
    let c = PortsentryConf::parse(&[0xff, 0xfe, b'\n', 0, b'"', b'\n'], "bin");
    assert_eq!(c.token("TCP_PORTS"), Token::Absent);
}

#[test]
fn atoi_as_c() {
    assert_eq!(atoi("12"), (12, true));
    assert_eq!(atoi("  12 "), (12, true));
    assert_eq!(atoi("+7"), (7, true));
    assert_eq!(atoi("-3"), (-3, true));
    assert_eq!(atoi("80-90"), (80, false));
    assert_eq!(atoi("1x"), (1, false));
    assert_eq!(atoi("abc"), (0, false));
    assert_eq!(atoi(""), (0, false));
    assert_eq!(atoi("99999999999999999999"), (i64::from(i32::MAX), true));
}

// --- KILL_ROUTE ------------------------------------------------------------

#[test]
fn kill_route_forms_of_portsentry_conf() {
    use KillRoute::*;
    let cases: &[(&str, KillRoute)] = &[
        // The route examples of portsentry.conf 1.2.
        (
            "/sbin/route add $TARGET$ 333.444.555.666",
            Route("blackhole", ""),
        ),
        (
            "/sbin/route add -host $TARGET$ gw 333.444.555.666",
            Route("blackhole", ""),
        ),
        (
            "/sbin/route add -host $TARGET$ reject",
            Route("unreachable", ""),
        ),
        (
            "/usr/sbin/route add $TARGET$ 333.444.555.666 1",
            Route("blackhole", ""),
        ),
        (
            "/usr/etc/route add $TARGET$ 127.0.0.1 1",
            Route("blackhole", ""),
        ),
        (
            "route add -net $TARGET$ -netmask 255.255.255.255 127.0.0.1 -blackhole",
            Route("blackhole", ""),
        ),
        (
            "/sbin/route add -host -blackhole $TARGET$ 127.0.0.1",
            Route("blackhole", ""),
        ),
        // HP-UX's example routes a whole /24: not the same thing.
        (
            "/usr/sbin/route add net $TARGET$ netmask 255.255.255.0 127.0.0.1",
            Command,
        ),
        // The packet filter examples.
        ("/sbin/ipfwadm -I -i deny -S $TARGET$ -o", FilterDrop("")),
        ("/sbin/ipfwadm -I -i deny -S $TARGET$", FilterDrop("")),
        (
            "/sbin/ipchains -I input -s $TARGET$ -j DENY -l",
            FilterDrop(""),
        ),
        (
            "/sbin/ipchains -I input -s $TARGET$ -j DENY",
            FilterDrop(""),
        ),
        (
            "/sbin/iptables -I INPUT -s $TARGET$ -j DROP",
            FilterDrop(""),
        ),
        (
            "/sbin/iptables -I INPUT -s $TARGET$ -j DROP && /sbin/iptables -I INPUT -s $TARGET$ -m limit --limit 3/minute --limit-burst 5 -j LOG --log-level DEBUG --log-prefix 'Portsentry: dropping: '",
            Command,
        ),
        (
            "/sbin/ipfw add 1 deny all from $TARGET$:255.255.255.255 to any",
            FilterDrop(""),
        ),
        (
            "/bin/echo 'block in log on external_interface from $TARGET$/32 to any' | /sbin/ipf -f -",
            Command,
        ),
        // Linux's ip(8).
        (
            "/sbin/ip route add blackhole $TARGET$",
            Route("blackhole", ""),
        ),
        (
            "ip -4 ro add unreachable $TARGET$/32",
            Route("unreachable", ""),
        ),
        ("ip route replace prohibit $TARGET$", Route("prohibit", "")),
        ("ip route add $TARGET$ via 192.0.2.254", Command),
        // Other variants that do something else.
        ("/sbin/route add -host $TARGET$ gw 192.0.2.254", Command),
        ("iptables -I INPUT 1 -s $TARGET$ -j REJECT", FilterDrop("")),
        ("iptables -A INPUT -s $TARGET$ -p tcp -j DROP", Command),
        ("iptables -I FORWARD -s $TARGET$ -j DROP", Command),
        ("iptables -I INPUT -s 192.0.2.9 -j DROP $TARGET$", Command),
        ("/usr/local/bin/block $TARGET$", Command),
        ("/sbin/route add -host 192.0.2.9 reject", NoTarget),
        ("", NoTarget),
    ];
    for (cmd, want) in cases {
        let got = classify_kill_route(cmd);
        let same = match (&got, want) {
            (Route(a, _), Route(b, _)) => a == b,
            (FilterDrop(_), FilterDrop(_)) => true,
            (a, b) => a == b,
        };
        assert!(same, "{cmd}: got {got:?}, want {want:?}");
    }
    assert_eq!(
        classify_kill_route("iptables -I INPUT -s $TARGET$ -j REJECT"),
        FilterDrop("rejects")
    );
}

#[test]
fn kill_route_conversions() {
    let (_, t) = convert_text(
        "KILL_ROUTE=\"/sbin/route add $TARGET$ gw 333.444.555.666\"\n",
        None,
    );
    assert_eq!(str_at(&t, "route"), "blackhole");
    assert!(get(&t, "kill_route").is_none());

    let (out, t) = convert_text(
        "KILL_ROUTE=\"/sbin/iptables -I INPUT -s $TARGET$ -j DROP\"\n",
        None,
    );
    assert!(get(&t, "route").is_none() && get(&t, "kill_route").is_none());
    assert!(
        flat(&out.toml).contains("# Not converted: this packet filter rule drops the source"),
        "{}",
        out.toml
    );

    let (_, t) = convert_text("KILL_ROUTE=\"/usr/local/sbin/cut $TARGET$ $PORT$\"\n", None);
    assert_eq!(
        str_at(&t, "kill_route"),
        "/usr/local/sbin/cut $TARGET$ $PORT$"
    );
    assert!(get(&t, "command_shell").is_none());

    // Shell syntax: command_shell, as PortSentry's system(3).
    let cmd = "/bin/echo 'block in log on em0 from $TARGET$/32 to any' | /sbin/ipf -f -";
    let (_, t) = convert_text(&format!("KILL_ROUTE=\"{cmd}\"\n"), None);
    assert_eq!(str_at(&t, "kill_route"), cmd);
    assert_eq!(get(&t, "command_shell"), Some(&toml::Value::Boolean(true)));

    // Without $TARGET$ PortSentry skipped it; so do we.
    let (out, t) = convert_text(
        "KILL_ROUTE=\"/sbin/route add -host 192.0.2.1 reject\"\n",
        None,
    );
    assert!(get(&t, "route").is_none() && get(&t, "kill_route").is_none());
    assert!(
        flat(&out.toml).contains("PortSentry skipped it"),
        "{}",
        out.toml
    );
}

// --- the other keys --------------------------------------------------------

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

// --- /etc/default/portsentry -----------------------------------------------

#[test]
fn debian_default_modes() {
    let cases = [
        ("TCP_MODE=\"tcp\"\nUDP_MODE=\"udp\"\n", "connect", "connect"),
        (
            "TCP_MODE=\"stcp\"\nUDP_MODE=\"sudp\"\n",
            "stealth",
            "stealth",
        ),
        (
            "TCP_MODE=\"atcp\"\nUDP_MODE=\"audp\"\n",
            "advanced",
            "advanced",
        ),
        ("TCP_MODE=\"\"\nUDP_MODE=\"\"\n", "off", "off"),
        ("# nothing\n", "off", "off"),
        // Shell: the last assignment wins; quotes of every kind.
        (
            "TCP_MODE=\"tcp\"\nTCP_MODE='atcp'  # changed\nexport UDP_MODE=sudp\n",
            "advanced",
            "stealth",
        ),
    ];
    for (text, tcp, udp) in cases {
        let d = DebianDefault::parse(text, "default").unwrap();
        assert_eq!((d.tcp.mode(), d.udp.mode()), (tcp, udp), "{text}");
        let (_, t) = convert_text("", Some(text));
        assert_eq!(str_at(&t, "tcp.mode"), tcp);
        assert_eq!(str_at(&t, "udp.mode"), udp);
    }
    let d = DebianDefault::parse("TCP_MODE=\"stcp\"\r\nfoo bar\n", "default").unwrap();
    assert_eq!(d.tcp.line, Some(1));
    assert_eq!(
        d.warnings,
        ["default:2: `foo bar` is not an assignment; skipped"]
    );
}

#[test]
fn debian_default_errors() {
    for (text, want) in [
        (
            "TCP_MODE=\"udp\"\n",
            "default:1: TCP_MODE=\"udp\" is not a mode: PortSentry's init script accepts tcp, stcp, atcp",
        ),
        (
            "UDP_MODE=\"$X\"\n",
            "default:1: cannot read UDP_MODE: the value uses shell expansion",
        ),
        (
            "TCP_MODE=\"stcp\n",
            "default:1: cannot read TCP_MODE: no closing quote",
        ),
        (
            "TCP_MODE=stcp; echo\n",
            "default:1: cannot read TCP_MODE: the value uses shell syntax",
        ),
        (
            "[ -x y ] && TCP_MODE=stcp\n",
            "default:1: cannot read `[ -x y ] && TCP_MODE=stcp`",
        ),
    ] {
        let e = DebianDefault::parse(text, "default").unwrap_err();
        assert_eq!(e.kind, crate::error::Kind::Config);
        assert!(e.message.starts_with(want), "{text}: {e}");
    }
}

// --- the ignore file -------------------------------------------------------

/// portsentry.ignore as Debian's portsentry-build-ignore-file writes it.
const DEBIAN_IGNORE: &str = "\
# /etc/portsentry/portsentry.ignore: Contains all IPs portsentry(8)
#                                    will never block.
#
# This file was generated by /usr/lib/portsentry/portsentry-build-ignore-file.

# IPs from /etc/portsentry/portsentry.ignore.static:
127.0.0.1/32
0.0.0.0
192.0.2.0/24   # monitoring
192.168.0.0/255.255.0.0
host.example

# dynamically fetched IPs(via ifconfig -a):
198.51.100.4
";

#[test]
fn ignore_file_entries_checked_line_by_line() {
    let ig = IgnoreImport::parse(DEBIAN_IGNORE, "portsentry.ignore");
    let entries: Vec<&str> = ig.entries.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(
        entries,
        ["127.0.0.1/32", "0.0.0.0", "192.0.2.0/24   # monitoring"]
    );
    assert_eq!(ig.local, ["198.51.100.4"]);
    let invalid: Vec<(usize, &str)> = ig
        .invalid
        .iter()
        .map(|(l, t, _)| (*l, t.as_str()))
        .collect();
    assert_eq!(
        invalid,
        [(10, "192.168.0.0/255.255.0.0"), (11, "host.example")]
    );
    assert_eq!(
        ig.invalid[1].2,
        "`host.example` is not an IPv4 or IPv6 address or network"
    );
    // The file written for nftsentry parses, with exactly these entries.
    let text = ig.file_text();
    let parsed = crate::config::ignore::parse(&text, "written").unwrap();
    assert_eq!(parsed, ig.cidrs());
    assert_eq!(parsed.len(), 3);

    // Listed as comments, and the bad lines reported with file:line.
    let out = convert(&conf(""), None, Some(&ig), None, &[]);
    assert!(
        out.toml.contains("#   192.0.2.0/24   # monitoring\n"),
        "{}",
        out.toml
    );
    assert!(out.toml.contains("198.51.100.4"));
    assert!(
        out.warnings
            .iter()
            .any(|w| w.starts_with("portsentry.ignore:11: `host.example` skipped: ")),
        "{:#?}",
        out.warnings
    );
}

#[test]
fn import_reads_files_and_writes_the_ignore_file() {
    let dir = std::env::temp_dir().join(format!("nftsentry-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ignore = dir.join("portsentry.ignore");
    let conf_path = dir.join("portsentry.conf");
    std::fs::write(
        &conf_path,
        format!("IGNORE_FILE=\"{}\"\nBLOCK_TCP=\"1\"\n", ignore.display()),
    )
    .unwrap();
    let default = dir.join("default");
    std::fs::write(&default, "TCP_MODE=\"stcp\"\n").unwrap();

    // Only the .static file (Debian before the first start): read that.
    let mut static_file = ignore.as_os_str().to_owned();
    static_file.push(".static");
    std::fs::write(&static_file, "192.0.2.7\n").unwrap();
    let written = dir.join("nftsentry-ignore");
    let out = import(&Options {
        conf: conf_path.clone(),
        ignore: None,
        default: Some(default.clone()),
        write_ignore: Some(written.clone()),
        ..Options::default()
    })
    .unwrap();
    let (path, text) = out.ignore_file.clone().unwrap();
    assert_eq!(path, written);
    write_file(&path, &text).unwrap();
    assert_eq!(
        crate::config::ignore::load(&written).unwrap().unwrap(),
        vec!["192.0.2.7".parse::<Cidr>().unwrap()]
    );
    let t: toml::Table = out.toml.parse().unwrap();
    assert_eq!(str_at(&t, "ignore_file"), written.display().to_string());
    assert!(out.warnings[0].contains(".static"), "{:#?}", out.warnings);

    // The file itself wins over .static.
    std::fs::write(&ignore, "192.0.2.8\n").unwrap();
    let out = import(&Options {
        conf: conf_path.clone(),
        ignore: None,
        default: Some(default.clone()),
        write_ignore: None,
        ..Options::default()
    })
    .unwrap();
    assert!(out.ignore_file.is_none());
    assert!(out.toml.contains("#   192.0.2.8\n"), "{}", out.toml);

    // Missing files named on the command line are errors naming them.
    let e = import(&Options {
        conf: dir.join("absent.conf"),
        ..Options::default()
    })
    .unwrap_err();
    assert_eq!(e.kind, crate::error::Kind::Config);
    assert!(e.message.contains("absent.conf: cannot read"), "{e}");
    let e = import(&Options {
        conf: conf_path,
        ignore: Some(dir.join("absent.ignore")),
        default: Some(default),
        write_ignore: None,
        ..Options::default()
    })
    .unwrap_err();
    assert!(e.message.contains("absent.ignore: cannot read"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
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

#[test]
fn fail2ban_jails_on_the_old_history_get_the_new_file() {
    let dir = std::env::temp_dir().join(format!("nftsentry-f2b-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("jail.d")).unwrap();
    let old = "/var/lib/portsentry/portsentry.history";
    // Debian's stock jail.conf, shortened; a second jail on the file with
    // the path on a continuation line; a jail on another file.
    std::fs::write(
        dir.join("jail.conf"),
        format!(
            "[DEFAULT]\nlogpath = {old}\n\n[sshd]\nport = ssh\nlogpath = %(sshd_log)s\n\n[portsentry]\nfilter = portsentry\nlogpath  = {old}\nmaxretry = 1\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("jail.d/mine.local"),
        format!("# [commented]\n[ps-watch]\nenabled = true\nlogpath = /var/log/x.log\n    {old}\n[other]\nlogpath = {old}.1\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("jail.d/ignored.txt"),
        format!("[txt]\nlogpath = {old}\n"),
    )
    .unwrap();
    assert_eq!(fail2ban_jails(&dir, old), ["portsentry", "ps-watch"]);
    let t = fail2ban_todo(&dir, old).unwrap();
    assert_eq!(
        t.commands[1],
        format!(
            "printf '[portsentry]\\nlogpath = /var/lib/nftsentry/history\\n[ps-watch]\\nlogpath = /var/lib/nftsentry/history\\n' > '{}/jail.d/nftsentry-history.local'",
            dir.display()
        )
    );
    assert!(fail2ban_todo(&dir, "/var/log/none").is_none());
    assert!(fail2ban_todo(&dir.join("absent"), old).is_none());
    // The printed block is a shell snippet: comments and commands, indented.
    let text = todo_text(&[t]);
    assert!(text.starts_with("nftsentry: to finish the migration, run as root:\n    # fail2ban: "));
    assert!(
        text.lines().skip(1).all(|l| l.starts_with("    ")),
        "{text}"
    );
    assert_eq!(todo_text(&[]), "");
    std::fs::remove_dir_all(&dir).unwrap();
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

#[test]
fn portsentry_services_debian_12_and_13() {
    let dir = std::env::temp_dir().join(format!("nftsentry-units-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let systemd = dir.join("systemd");
    let init = dir.join("init.d-portsentry");
    std::fs::create_dir_all(systemd.join("multi-user.target.wants")).unwrap();
    assert_eq!(find_services(&systemd, &init), Services::Unknown);
    assert_eq!(services_todo(&Services::Unknown), None);
    // Debian 12: the init script.
    std::fs::write(&init, "#!/bin/sh\n").unwrap();
    assert_eq!(find_services(&systemd, &init), Services::InitScript);
    assert_eq!(
        services_todo(&Services::InitScript).unwrap().commands,
        ["systemctl stop portsentry", "systemctl disable portsentry"]
    );
    // Debian 13: enabled instances win, and carry the modes.
    for u in ["portsentry@udp.service", "portsentry@stcp.service"] {
        std::os::unix::fs::symlink(
            "/usr/lib/systemd/system/portsentry@.service",
            systemd.join("multi-user.target.wants").join(u),
        )
        .unwrap();
    }
    let units = vec![
        "portsentry@stcp.service".to_string(),
        "portsentry@udp.service".to_string(),
    ];
    assert_eq!(
        find_services(&systemd, &init),
        Services::Units(units.clone())
    );
    assert_eq!(
        services_todo(&Services::Units(units.clone()))
            .unwrap()
            .commands,
        ["systemctl disable --now portsentry@stcp.service portsentry@udp.service"]
    );
    let d = DebianDefault::from_units(&units, "units");
    assert_eq!((d.tcp.mode(), d.udp.mode()), ("stealth", "connect"));
    assert!(d.warnings.is_empty());
    let out = convert(&conf("TCP_PORTS=\"1\"\n"), Some(&d), None, None, &[]);
    let t: toml::Table = out.toml.parse().unwrap();
    assert_eq!(str_at(&t, "tcp.mode"), "stealth");
    assert!(
        out.toml
            .contains("# portsentry@stcp.service (enabled): PortSentry's stealth mode.\n"),
        "{}",
        out.toml
    );
    // Two TCP modes at once: the first is converted, and said so.
    let d = DebianDefault::from_units(
        &[
            "portsentry@atcp.service".to_string(),
            "portsentry@tcp.service".to_string(),
            "portsentry@x.service".to_string(),
        ],
        "units",
    );
    assert_eq!(d.tcp.mode(), "advanced");
    assert_eq!(d.udp.mode(), "off");
    assert_eq!(d.warnings.len(), 2, "{:?}", d.warnings);
    let out = convert(&conf(""), Some(&d), None, None, &[]);
    assert!(
        out.toml
            .contains("# no portsentry@ unit for UDP enabled: PortSentry did not run for this\n"),
        "{}",
        out.toml
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
