//! Tests of the config schema, its defaults and its error messages.

use super::*;
use crate::error::Kind;

const FILE: &str = "/etc/nftsentry/nftsentry.toml";

/// The error message for `text`, checked to be a config error.
fn err(text: &str) -> String {
    let e = Config::parse(text, FILE).expect_err("config was accepted");
    assert_eq!(e.kind, Kind::Config, "{e}");
    e.message
}

/// Assert that the message starts with `FILE:line: key `key``.
#[track_caller]
fn assert_at(msg: &str, line: usize, key: &str) {
    let want = format!("{FILE}:{line}: key `{key}`: ");
    assert!(msg.starts_with(&want), "want prefix {want:?}, got {msg:?}");
}

fn aware(proto: Proto) -> PortSet {
    PortSet::preset(Preset::Aware, proto)
}

#[test]
fn builtin_default_parses_and_matches_the_code() {
    let c = Config::default();
    assert_eq!(c, Config::hardwired(BUILTIN_SOURCE));
    assert_eq!(c.source, "<built-in default>");
    assert_eq!(Config::load(None).unwrap(), c);
}

#[test]
fn every_key_has_its_documented_default() {
    // An empty file and the built-in text give the same values.
    let c = Config::parse("", "empty.toml").unwrap();
    assert_eq!(c.source, "empty.toml");
    assert_eq!(c.table, "nftsentry");
    assert_eq!(c.chain_priority, -10);
    assert_eq!(c.nflog_group, 7531);
    assert_eq!(c.log_prefix, "nftsentry: ");
    assert_eq!(c.ban_time, Duration::from_secs(86_400));
    assert_eq!(c.set_size, 65_536);
    assert_eq!(c.ignore_file, Some(PathBuf::from("/etc/nftsentry/ignore")));
    assert!(c.ignore_local);
    assert!(!c.keep_table_on_exit);
    assert_eq!(c.scan_trigger, 0);
    assert_eq!(c.scan_window, Duration::from_secs(3_600));
    assert_eq!(c.max_tracked_sources, 100_000);
    assert!(!c.resolve_host);
    assert_eq!(c.tcp.mode, Mode::STEALTH);
    assert_eq!(c.udp.mode, Mode::STEALTH);
    assert_eq!(c.route, RouteMode::Off);
    assert_eq!(c.kill_route, "");
    assert_eq!(c.hosts_deny, None);
    assert_eq!(c.hosts_deny_line, "ALL: $TARGET$");
    assert!(c.command.is_empty());
    assert!(!c.command_shell);
    assert!(!c.run_before_block);
    assert_eq!(c.command_timeout, Duration::from_secs(30));
    assert_eq!(
        c.history_file,
        Some(PathBuf::from("/var/lib/nftsentry/history"))
    );
    assert_eq!(
        c.state_file,
        Some(PathBuf::from("/var/lib/nftsentry/state"))
    );
    assert_eq!(c.ban_time_factor, 1);
    assert_eq!(c.ban_time_max, Duration::from_secs(30 * 86_400));
    assert_eq!(c.tcp.block_mode, BlockMode::Block);
    assert_eq!(c.udp.block_mode, BlockMode::Block);
    assert_eq!(c.tcp.mode, Mode::STEALTH);
    assert_eq!(c.udp.mode, Mode::STEALTH);
    assert_eq!(c.tcp.ports, aware(Proto::Tcp));
    assert_eq!(c.udp.ports, aware(Proto::Udp));
    assert_eq!(c.tcp.ports.len(), 26);
    assert_eq!(c.udp.ports.len(), 21);
    assert_eq!(
        Config {
            source: BUILTIN_SOURCE.into(),
            ..c
        },
        Config::default()
    );
}

/// The default file's `#key = value` lines, uncommented.
fn uncommented_defaults() -> String {
    Config::DEFAULT_TEXT
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn documented_defaults_are_the_real_defaults() {
    let text = uncommented_defaults();
    // Every key was uncommented: the count matches the schema.
    let active = text
        .lines()
        .filter(|l| l.contains(" = ") && !l.starts_with('#'))
        .count();
    assert_eq!(
        active,
        TOP_KEYS.len() - 2 + 2 * PROTOCOL_KEYS.len(),
        "{text}"
    );
    let c = Config::parse(&text, "uncommented").unwrap();
    assert_eq!(
        c,
        Config {
            source: "uncommented".into(),
            ..Config::default()
        }
    );
}

#[test]
fn every_config_field_is_documented_in_the_default_file() {
    // Destructured without `..`: a new field fails to compile here until it
    // is given its key, and so its documentation check.
    let Config {
        source: _,
        table: _,
        chain_priority: _,
        nflog_group: _,
        log_prefix: _,
        ban_time: _,
        set_size: _,
        ignore_file: _,
        ignore_local: _,
        keep_table_on_exit: _,
        table_owner: _,
        control_socket: _,
        control_group: _,
        scan_trigger: _,
        scan_window: _,
        max_tracked_sources: _,
        resolve_host: _,
        port_banner: _,
        ban_requires_handshake: _,
        route: _,
        kill_route: _,
        hosts_deny: _,
        hosts_deny_line: _,
        command: _,
        command_shell: _,
        run_before_block: _,
        command_timeout: _,
        history_file: _,
        state_file: _,
        ban_time_factor: _,
        ban_time_max: _,
        user: _,
        tcp:
            Protocol {
                mode: _,
                ports: _,
                advanced_ports: _,
                advanced_exclude: _,
                block_mode: _,
            },
        udp: _,
    } = Config::default();
    let keys = [
        "table",
        "chain_priority",
        "nflog_group",
        "log_prefix",
        "ban_time",
        "set_size",
        "ignore_file",
        "ignore_local",
        "keep_table_on_exit",
        "table_owner",
        "control_socket",
        "control_group",
        "scan_trigger",
        "scan_window",
        "max_tracked_sources",
        "resolve_host",
        "port_banner",
        "ban_requires_handshake",
        "route",
        "kill_route",
        "hosts_deny",
        "hosts_deny_line",
        "command",
        "command_shell",
        "run_before_block",
        "command_timeout",
        "history_file",
        "state_file",
        "ban_time_factor",
        "ban_time_max",
        "user",
    ];
    let text = Config::DEFAULT_TEXT;
    for key in keys {
        assert!(TOP_KEYS.contains(&key), "{key} missing from TOP_KEYS");
        let set = format!("\n#{key} = ");
        let active = format!("\n{key} = ");
        assert!(
            text.contains(&set) || text.contains(&active),
            "no `{key} = ` line"
        );
        assert!(
            text.contains(&format!("\n# {key} (")),
            "no documentation heading `# {key} (type)`"
        );
    }
    assert_eq!(keys.len() + 2, TOP_KEYS.len());
    // [tcp] and [udp] each hold a line for each of their keys.
    for proto in ["tcp", "udp"] {
        let header = format!("\n[{proto}]\n");
        let start = text.find(&header).expect("table header") + header.len();
        let body = &text[start..];
        let body = &body[..body.find("\n[").unwrap_or(body.len())];
        for key in PROTOCOL_KEYS {
            assert!(
                body.contains(&format!("#{key} = ")),
                "[{proto}] lacks {key}"
            );
            assert!(text.contains(&format!("\n# {key} (")), "{key} undocumented");
        }
    }
    // Each key names its PortSentry equivalent, or says there is none.
    let documented = text.matches("\n#   PortSentry: ").count();
    assert_eq!(documented, keys.len() + PROTOCOL_KEYS.len());
}

#[test]
fn documented_preset_lists_match_the_constants() {
    let text = Config::DEFAULT_TEXT;
    for (label, preset, proto) in [
        ("aware TCP:", Preset::Aware, Proto::Tcp),
        ("aware UDP:", Preset::Aware, Proto::Udp),
        ("paranoid TCP:", Preset::Paranoid, Proto::Tcp),
        ("paranoid UDP:", Preset::Paranoid, Proto::Udp),
        ("bare-bones TCP:", Preset::BareBones, Proto::Tcp),
        ("bare-bones UDP:", Preset::BareBones, Proto::Udp),
    ] {
        let at = text
            .find(label)
            .unwrap_or_else(|| panic!("{label} not documented"));
        let mut list = String::new();
        for (i, line) in text[at + label.len()..].lines().enumerate() {
            let line = line.trim_start_matches('#').trim();
            // Continuation lines start with a digit; the next label does not.
            if i > 0 && !line.starts_with(|c: char| c.is_ascii_digit()) {
                break;
            }
            list.push_str(line);
        }
        let documented = PortSet::parse(&list).unwrap_or_else(|e| panic!("{label} {e}"));
        assert_eq!(documented, PortSet::preset(preset, proto), "{label}");
    }
}

#[test]
fn every_key_can_be_set() {
    let text = r#"
table = "sentry-2"
chain_priority = -300
nflog_group = 0
log_prefix = ""
ban_time = "1h30m"
set_size = 16777216
ignore_file = ""
ignore_local = false
keep_table_on_exit = true
table_owner = false
control_socket = ""
scan_trigger = 2
scan_window = "500s"
max_tracked_sources = 1
resolve_host = true
port_banner = "GO AWAY\n"
ban_requires_handshake = true
route = "prohibit"
kill_route = "/sbin/route add -host $TARGET$ reject"
hosts_deny = "/etc/hosts.deny"
hosts_deny_line = "ALL: $TARGET$ : DENY"
command = ["/usr/local/bin/notify", "$TARGET$", "port $PORT$"]
command_shell = true
run_before_block = true
command_timeout = "2m"
history_file = ""
state_file = "/run/nftsentry/state"
ban_time_factor = 4
ban_time_max = "60d"
user = "nftsentry"

[tcp]
mode = "off"
ports = "1,11,100-200"
advanced_ports = 65535
advanced_exclude = "22,80-81"
block_mode = "command"

[udp]
ports = [1, 11, "100-200", "aware"]
advanced_ports = 1
advanced_exclude = []
block_mode = "log"
"#;
    let c = Config::parse(text, "x.toml").unwrap();
    assert_eq!(c.source, "x.toml");
    assert_eq!(c.table, "sentry-2");
    assert_eq!(c.chain_priority, -300);
    assert_eq!(c.nflog_group, 0);
    assert_eq!(c.log_prefix, "");
    assert_eq!(c.ban_time, Duration::from_secs(5400));
    assert_eq!(c.set_size, 16_777_216);
    assert_eq!(c.ignore_file, None);
    assert!(!c.ignore_local);
    assert!(c.keep_table_on_exit);
    assert!(!c.table_owner);
    assert_eq!(c.control_socket, None);
    assert_eq!(c.scan_trigger, 2);
    assert_eq!(c.scan_window, Duration::from_secs(500));
    assert_eq!(c.max_tracked_sources, 1);
    assert!(c.resolve_host);
    assert_eq!(c.tcp.mode, Mode::OFF);
    assert_eq!(c.tcp.ports.ranges(), &[(1, 1), (11, 11), (100, 200)]);
    assert_eq!(c.udp.mode, Mode::STEALTH);
    let want = aware(Proto::Udp).union(&PortSet::from_ranges([(1, 1), (11, 11), (100, 200)]));
    assert_eq!(c.udp.ports, want);
    assert_eq!(c.protocol(Proto::Tcp).mode, Mode::OFF);
    assert_eq!(c.port_banner, "GO AWAY\n");
    assert!(c.ban_requires_handshake);
    assert_eq!(c.user, "nftsentry");
    assert_eq!(c.tcp.advanced_ports, 65535);
    assert_eq!(c.tcp.advanced_exclude.ranges(), &[(22, 22), (80, 81)]);
    assert_eq!(c.udp.advanced_ports, 1);
    assert!(c.udp.advanced_exclude.is_empty());
    assert_eq!(c.route, RouteMode::Prohibit);
    assert_eq!(c.kill_route, "/sbin/route add -host $TARGET$ reject");
    assert_eq!(c.hosts_deny, Some(PathBuf::from("/etc/hosts.deny")));
    assert_eq!(c.hosts_deny_line, "ALL: $TARGET$ : DENY");
    assert_eq!(
        c.command,
        ["/usr/local/bin/notify", "$TARGET$", "port $PORT$"]
    );
    assert!(c.command_shell);
    assert!(c.run_before_block);
    assert_eq!(c.command_timeout, Duration::from_secs(120));
    assert_eq!(c.history_file, None);
    assert_eq!(c.state_file, Some(PathBuf::from("/run/nftsentry/state")));
    assert_eq!(c.ban_time_factor, 4);
    assert_eq!(c.ban_time_max, Duration::from_secs(60 * 86_400));
    assert_eq!(c.tcp.block_mode, BlockMode::Command);
    assert_eq!(c.udp.block_mode, BlockMode::Log);
}

#[test]
fn modes_and_what_they_watch() {
    let proto = |body: &str| Config::parse(&format!("[tcp]\n{body}"), FILE).map(|c| c.tcp);
    // Defaults: stealth on the aware list; advanced settings as PortSentry.
    let d = Config::default();
    assert_eq!(d.tcp.tripwire_ports(), aware(Proto::Tcp));
    assert!(d.tcp.connect_ports().is_empty());
    assert_eq!(d.tcp.advanced_ports, 1024);
    assert_eq!(d.tcp.advanced_exclude, PortSet::from_ports([113, 139]));
    assert_eq!(
        d.udp.advanced_exclude,
        PortSet::from_ports([67, 137, 138, 520])
    );

    let adv = proto("mode = \"advanced\"").unwrap();
    assert_eq!(adv.mode, Mode::ADVANCED);
    assert_eq!(
        adv.tripwire_ports().ranges(),
        &[(1, 112), (114, 138), (140, 1023)]
    );
    assert!(adv.connect_ports().is_empty());
    let adv = proto("mode = \"advanced\"\nadvanced_ports = 65535\nadvanced_exclude = \"1,65534\"")
        .unwrap();
    assert_eq!(adv.tripwire_ports().ranges(), &[(2, 65533)]);
    let adv = proto("mode = \"advanced\"\nadvanced_ports = 1").unwrap();
    assert!(adv.tripwire_ports().is_empty());

    let con = proto("mode = \"connect\"\nports = \"1,11\"").unwrap();
    assert_eq!(con.mode, Mode::CONNECT);
    assert!(con.tripwire_ports().is_empty());
    assert_eq!(con.connect_ports().ranges(), &[(1, 1), (11, 11)]);

    let both = proto("mode = [\"connect\", \"advanced\"]\nports = \"2000\"").unwrap();
    assert_eq!(both.mode.to_string(), "advanced+connect");
    assert_eq!(both.connect_ports().ranges(), &[(2000, 2000)]);
    assert_eq!(both.tripwire_ports().len(), 1023 - 2);

    let off = proto("mode = \"off\"").unwrap();
    assert!(off.tripwire_ports().is_empty() && off.connect_ports().is_empty());

    for (bad, want) in [
        ("[\"stealth\", \"connect\"]", "would both use `ports`"),
        ("[\"stealth\", \"advanced\"]", "alternatives"),
        ("[\"connect\", \"connect\"]", "listed twice"),
        ("[\"advanced\", \"advanced\"]", "listed twice"),
        ("[\"off\", \"connect\"]", "cannot be combined"),
        ("[]", "empty mode list"),
        ("[\"advanced\", 1]", "expected a string"),
        ("[\"advanced\", \"tcp\"]", "unknown mode `tcp`"),
        ("1", "expected a mode name"),
    ] {
        let msg = proto(&format!("mode = {bad}")).unwrap_err().message;
        assert_at(&msg, 2, "tcp.mode");
        assert!(msg.contains(want), "{bad}: {msg}");
    }
    for (bad, key, want) in [
        (
            "advanced_ports = 0",
            "tcp.advanced_ports",
            "out of range 1 to 65535",
        ),
        (
            "advanced_ports = 65536",
            "tcp.advanced_ports",
            "out of range",
        ),
        (
            "advanced_ports = \"1024\"",
            "tcp.advanced_ports",
            "expected an integer",
        ),
        (
            "advanced_exclude = \"70000\"",
            "tcp.advanced_exclude",
            "out of range",
        ),
    ] {
        let msg = proto(bad).unwrap_err().message;
        assert_at(&msg, 2, key);
        assert!(msg.contains(want), "{bad}: {msg}");
    }
    let msg = err(&format!("port_banner = \"{}\"", "x".repeat(1025)));
    assert_at(&msg, 1, "port_banner");
    let msg = err("ban_requires_handshake = \"1\"");
    assert_at(&msg, 1, "ban_requires_handshake");
}

#[test]
fn action_keys_forms_and_errors() {
    // A string command is split on white space, as PortSentry's KILL_RUN_CMD.
    let c = Config::parse("command = \"/bin/logger  -t x $TARGET$\"\n", "f").unwrap();
    assert_eq!(c.command, ["/bin/logger", "-t", "x", "$TARGET$"]);
    let c = Config::parse("command = \"\"\n", "f").unwrap();
    assert!(c.command.is_empty());
    let msg = err("\ncommand = [\"/bin/echo\", 5]\n");
    assert_at(&msg, 2, "command");
    assert!(msg.contains("argument 2"), "{msg}");
    let msg = err("command = [\"$TARGET$\"]\n");
    assert!(msg.contains("the program `$TARGET$` contains `$`"), "{msg}");
    let msg = err("command = [\"\"]\n");
    assert!(msg.contains("program (first argument) is empty"), "{msg}");
    let msg = err("command = 5\n");
    assert!(msg.contains("expected an array of arguments"), "{msg}");
    let msg = err("command = [\"/bin/echo\", \"a\\nb\"]\n");
    assert!(msg.contains("one line"), "{msg}");
    let msg = err("route = \"reject\"\n");
    assert_eq!(
        msg,
        format!(
            "{FILE}:1: key `route`: unknown route `reject`; valid routes: \"off\", \"blackhole\", \"unreachable\", \"prohibit\"; a PortSentry KILL_ROUTE command goes in `kill_route`"
        )
    );
    let msg = err("kill_route = \"/sbin/route add -host 1.2.3.4 reject\"\n");
    assert_at(&msg, 1, "kill_route");
    assert!(msg.contains("no $TARGET$"), "{msg}");
    let msg = err("hosts_deny_line = \"ALL: everybody\"\n");
    assert_at(&msg, 1, "hosts_deny_line");
    assert!(msg.contains("no $TARGET$"), "{msg}");
    let msg = err("hosts_deny_line = \"# $TARGET$\"\n");
    assert!(msg.contains("comment"), "{msg}");
    let msg = err("hosts_deny = \"hosts.deny\"\n");
    assert_at(&msg, 1, "hosts_deny");
    assert!(msg.contains("not an absolute path"), "{msg}");
    let msg = err("state_file = \"/var/lib/nftsentry/\"\n");
    assert_at(&msg, 1, "state_file");
    assert!(msg.contains("directory"), "{msg}");
    let msg = err("history_file = \"history\"\n");
    assert_at(&msg, 1, "history_file");
    let msg = err("ban_time_factor = 0\n");
    assert!(msg.ends_with("0 is out of range 1 to 1000"), "{msg}");
    let msg = err("ban_time_factor = 1001\n");
    assert_at(&msg, 1, "ban_time_factor");
    let msg = err("command_timeout = \"500ms\"\n");
    assert!(msg.ends_with("500ms is out of range 1s to 1d"), "{msg}");
    let msg = err("[udp]\nblock_mode = \"2\"\n");
    assert_at(&msg, 2, "udp.block_mode");
    assert!(
        msg.contains("valid block modes: \"block\", \"log\", \"command\""),
        "{msg}"
    );
    // Checks across keys name the key that has to change.
    let msg = err("[tcp]\n\nblock_mode = \"command\"\n");
    assert_at(&msg, 3, "tcp.block_mode");
    assert!(msg.contains("`command` is empty"), "{msg}");
    let c = Config::parse(
        "command = [\"/bin/true\"]\n[udp]\nblock_mode = \"command\"\n",
        "f",
    )
    .unwrap();
    assert_eq!(c.udp.block_mode, BlockMode::Command);
    let msg = err("ban_time = \"2d\"\nban_time_factor = 2\nban_time_max = \"1d\"\n");
    assert_at(&msg, 3, "ban_time_max");
    assert!(msg.contains("shorter than ban_time (2d)"), "{msg}");
    // Without escalation the cap does not matter.
    assert!(Config::parse("ban_time = \"60d\"\n", "f").is_ok());
    let msg = err("ban_time = \"60d\"\nban_time_factor = 2\n");
    assert_eq!(
        msg,
        format!(
            "{FILE}: key `ban_time_max`: 30d is shorter than ban_time (60d): escalated bans could not be longer than the first"
        )
    );
}

#[test]
fn user_names() {
    let user = |v: &str| Config::parse(&format!("user = {v}"), FILE).map(|c| c.user);
    assert_eq!(user("\"\"").unwrap(), "");
    assert_eq!(Config::default().user, "");
    for ok in ["nobody", "_nftsentry", "nft-sentry.1", &"u".repeat(32)] {
        assert_eq!(user(&format!("{ok:?}")).unwrap(), ok);
    }
    for (bad, want) in [
        ("\"-x\"", "not a valid user name"),
        ("\"a b\"", "not a valid user name"),
        ("\"root:0\"", "not a valid user name"),
        ("\"../x\"", "not a valid user name"),
        (&format!("{:?}", "u".repeat(33)), "not a valid user name"),
        ("0", "expected a string"),
    ] {
        let msg = user(bad).unwrap_err().message;
        assert_at(&msg, 1, "user");
        assert!(msg.contains(want), "{bad}: {msg}");
    }
}

#[test]
fn port_forms() {
    let ports = |spec: &str| {
        Config::parse(&format!("[udp]\nports = {spec}\n"), "p")
            .unwrap()
            .udp
            .ports
    };
    assert_eq!(
        ports("\"paranoid\""),
        PortSet::preset(Preset::Paranoid, Proto::Udp)
    );
    assert_eq!(
        ports("\"anal\""),
        PortSet::preset(Preset::Paranoid, Proto::Udp)
    );
    assert_eq!(
        ports("\"bare-bones\""),
        PortSet::preset(Preset::BareBones, Proto::Udp)
    );
    assert_eq!(ports("\"aware\""), aware(Proto::Udp));
    assert!(ports("[]").is_empty());
    assert!(ports("\"\"").is_empty());
    assert_eq!(ports("[65535, 1]").ranges(), &[(1, 1), (65535, 65535)]);
    assert_eq!(ports("[\"10-20\", \"15-30\", 31]").ranges(), &[(10, 31)]);
    assert_eq!(ports("\"1-65535\"").len(), 65535);
    // A preset plus extra ports, as a string or an array.
    let extra = aware(Proto::Udp).union(&PortSet::from_ports([8080]));
    assert_eq!(ports("\"aware,8080\""), extra);
    assert_eq!(ports("[\"aware\", 8080]"), extra);
    assert_eq!(ports("[\"1,2\", 3]").ranges(), &[(1, 3)]);
    // Dotted keys and inline tables are the same TOML.
    let c = Config::parse("tcp.ports = \"7\"\nudp = { mode = \"off\" }\n", "p").unwrap();
    assert_eq!(c.tcp.ports.ranges(), &[(7, 7)]);
    assert_eq!(c.tcp.mode, Mode::STEALTH);
    assert_eq!(c.udp.mode, Mode::OFF);
    assert_eq!(c.udp.ports, aware(Proto::Udp));
}

#[test]
fn bad_port_names_line_and_key() {
    let msg = err("# comment\n\nban_time = \"2d\"\n[tcp]\nports = \"1,70000\"\n");
    assert_eq!(
        msg,
        "/etc/nftsentry/nftsentry.toml:5: key `tcp.ports`: port 70000 is out of range 1-65535"
    );
    let msg = err("[udp]\nports = [1, 0]\n");
    assert_at(&msg, 2, "udp.ports");
    assert!(msg.ends_with("port 0 is out of range 1-65535"), "{msg}");
    let msg = err("[udp]\nports = [-3]\n");
    assert!(msg.ends_with("port -3 is out of range 1-65535"), "{msg}");
    let msg = err("[udp]\nports = [99999999999999999999]\n");
    assert!(msg.contains("is out of range 1-65535"), "{msg}");
    // In a multi-line array the item's own line is named.
    let msg = err("[tcp]\nports = [\n  1,\n  2,\n  \"http\",\n]\n");
    assert_at(&msg, 5, "tcp.ports");
    assert!(msg.contains("`http` is not a port"), "{msg}");
    let msg = err("[tcp]\nports = [1, true]\n");
    assert_at(&msg, 2, "tcp.ports");
    assert!(msg.contains("found the boolean true"), "{msg}");
    let msg = err("[tcp]\nports = 80\n");
    assert_at(&msg, 2, "tcp.ports");
    assert!(msg.contains("found the integer 80"), "{msg}");
    let msg = err("[tcp]\nports = \"lazy\"\n");
    assert!(msg.contains("`lazy` is not a port"), "{msg}");
}

#[test]
fn reversed_range_names_line_and_key() {
    let msg = err("\n[udp]\nmode = \"stealth\"\nports = \"1,200-100\"\n");
    assert_at(&msg, 4, "udp.ports");
    assert!(msg.contains("range 200-100 is reversed"), "{msg}");
    let msg = err("[tcp]\nports = [\"9-8\"]\n");
    assert_at(&msg, 2, "tcp.ports");
    assert!(msg.contains("range 9-8 is reversed"), "{msg}");
}

#[test]
fn wrong_type_names_line_and_key() {
    let msg = err("table = \"t\"\nnflog_group = \"7531\"\n");
    assert_eq!(
        msg,
        format!(
            "{FILE}:2: key `nflog_group`: expected an integer from 0 to 65535, found the string \"7531\""
        )
    );
    let msg = err("resolve_host = \"1\"\n");
    assert_at(&msg, 1, "resolve_host");
    assert!(msg.contains("without quotes"), "{msg}");
    let msg = err("ignore_local = 1\n");
    assert_at(&msg, 1, "ignore_local");
    assert!(
        msg.contains("expected true or false, found the integer 1"),
        "{msg}"
    );
    let msg = err("table = 5\n");
    assert_at(&msg, 1, "table");
    assert!(msg.contains("expected a string"), "{msg}");
    let msg = err("set_size = 1.5\n");
    assert_at(&msg, 1, "set_size");
    assert!(msg.contains("found the float 1.5"), "{msg}");
    let msg = err("\n\ntcp = \"off\"\n");
    assert_at(&msg, 3, "tcp");
    assert!(msg.contains("expected a table"), "{msg}");
    let msg = err("[[udp]]\nmode = \"off\"\n");
    assert_at(&msg, 1, "udp");
    let msg = err("[tcp]\nmode = false\n");
    assert_at(&msg, 2, "tcp.mode");
    let msg = err("ban_time = 1979-05-27\n");
    assert_at(&msg, 1, "ban_time");
    assert!(msg.contains("date-time"), "{msg}");
}

#[test]
fn portsentry_advanced_names_are_pointed_to_their_tables() {
    let msg = err("ADVANCED_PORTS_TCP = 1024\n");
    assert!(
        msg.contains("(did you mean `tcp.advanced_ports`?)"),
        "{msg}"
    );
    let msg = err("ADVANCED_EXCLUDE_UDP = \"67\"\n");
    assert!(
        msg.contains("(did you mean `udp.advanced_exclude`?)"),
        "{msg}"
    );
    let msg = err("PORT_BANNER = \"x\"\n");
    assert!(msg.contains("(did you mean `port_banner`?)"), "{msg}");
}

#[test]
fn unknown_keys_name_line_and_key() {
    let msg = err("table = \"t\"\nbogus = 1\n");
    assert!(
        msg.starts_with(&format!(
            "{FILE}:2: unknown key `bogus`; keys allowed at the top level: table, "
        )),
        "{msg}"
    );
    let msg = err("[tcp]\nmode = \"stealth\"\n\nport = 80\n");
    assert_eq!(
        msg,
        format!(
            "{FILE}:4: unknown key `tcp.port`; keys allowed at [tcp]: mode, ports, advanced_ports, advanced_exclude, block_mode"
        )
    );
    let msg = err("[udp]\n  Ports = \"1\"\n");
    assert!(
        msg.starts_with(&format!(
            "{FILE}:2: unknown key `udp.Ports` (did you mean `ports`?)"
        )),
        "{msg}"
    );
    // PortSentry's spellings get a pointer to ours.
    let msg = err("SCAN_TRIGGER = 0\n");
    assert!(
        msg.contains("`SCAN_TRIGGER` (did you mean `scan_trigger`?)"),
        "{msg}"
    );
    let msg = err("TCP_PORTS = \"1\"\n");
    assert!(msg.contains("(did you mean `tcp.ports`?)"), "{msg}");
    let msg = err("ban-time = \"1h\"\n");
    assert!(msg.contains("(did you mean `ban_time`?)"), "{msg}");
    let msg = err("mode = \"off\"\n");
    assert!(
        msg.contains("(did you mean `tcp.mode` or `udp.mode`?)"),
        "{msg}"
    );
    // An unknown table is an unknown key too, on its header's line.
    let msg = err("ban_time = \"1h\"\n\n[icmp]\nmode = \"off\"\n");
    assert!(
        msg.starts_with(&format!("{FILE}:3: unknown key `icmp`")),
        "{msg}"
    );
    // The first mistake in the file is the one reported, whatever its name.
    let msg = err("zzz = 1\naaa = 2\n");
    assert!(msg.contains("`zzz`"), "{msg}");
}

#[test]
fn bad_durations_name_line_and_key() {
    let msg = err("ban_time = \"1 day\"\n");
    assert_at(&msg, 1, "ban_time");
    let msg = err("\nscan_window = \"10\"\n");
    assert_at(&msg, 2, "scan_window");
    assert!(msg.contains("no unit"), "{msg}");
    let msg = err("ban_time = 3600\n");
    assert_at(&msg, 1, "ban_time");
    assert!(msg.contains("add a unit, e.g. \"3600s\""), "{msg}");
    let msg = err("ban_time = \"999ms\"\n");
    assert!(msg.ends_with("999ms is out of range 1s to 365d"), "{msg}");
    let msg = err("ban_time = \"366d\"\n");
    assert!(msg.ends_with("366d is out of range 1s to 365d"), "{msg}");
    let msg = err("scan_window = \"0s\"\n");
    assert_at(&msg, 1, "scan_window");
    assert_eq!(
        Config::parse("ban_time = \"365d\"", "f").unwrap().ban_time,
        Duration::from_secs(365 * 86_400)
    );
}

#[test]
fn bad_table_names() {
    for (name, why) in [
        ("", "empty table name"),
        ("1abc", "not a valid table name"),
        ("-x", "not a valid table name"),
        ("has space", "not a valid table name"),
        ("dot.ted", "not a valid table name"),
        ("ünicode", "not a valid table name"),
    ] {
        let msg = err(&format!("\n\ntable = \"{name}\"\n"));
        assert_at(&msg, 3, "table");
        assert!(msg.contains(why), "{name}: {msg}");
    }
    let long = "a".repeat(65);
    let msg = err(&format!("table = \"{long}\""));
    assert!(msg.contains("65 characters"), "{msg}");
    let ok = "a".repeat(64);
    assert_eq!(
        Config::parse(&format!("table = \"{ok}\""), "f")
            .unwrap()
            .table,
        ok
    );
    assert_eq!(
        Config::parse("table = \"A_b-9\"", "f").unwrap().table,
        "A_b-9"
    );
}

#[test]
fn integer_ranges() {
    for (text, key) in [
        ("chain_priority = -301", "chain_priority"),
        ("chain_priority = 301", "chain_priority"),
        ("nflog_group = 65536", "nflog_group"),
        ("nflog_group = -1", "nflog_group"),
        ("set_size = 0", "set_size"),
        ("set_size = 16777217", "set_size"),
        ("scan_trigger = -1", "scan_trigger"),
        ("scan_trigger = 4294967296", "scan_trigger"),
        ("max_tracked_sources = 0", "max_tracked_sources"),
        ("max_tracked_sources = 10000001", "max_tracked_sources"),
    ] {
        let msg = err(text);
        assert_at(&msg, 1, key);
        assert!(msg.contains("is out of range"), "{msg}");
    }
    let msg = err("nflog_group = 70000");
    assert!(msg.ends_with("70000 is out of range 0 to 65535"), "{msg}");
    // TOML's other integer spellings are integers too.
    let c = Config::parse("nflog_group = 0x1d6b\nchain_priority = -1_5", "f").unwrap();
    assert_eq!(c.nflog_group, 7531);
    assert_eq!(c.chain_priority, -15);
    let c = Config::parse("scan_trigger = 4294967295\nchain_priority = 300", "f").unwrap();
    assert_eq!(c.scan_trigger, u32::MAX);
    assert_eq!(c.chain_priority, 300);
    let msg = err("set_size = 99999999999999999999");
    assert!(msg.contains("out of range"), "{msg}");
}

#[test]
fn bad_log_prefix_mode_and_ignore_file() {
    let msg = err(&format!("log_prefix = \"{}\"", "x".repeat(128)));
    assert_at(&msg, 1, "log_prefix");
    assert!(msg.contains("128 bytes"), "{msg}");
    let ok = "x".repeat(127);
    assert_eq!(
        Config::parse(&format!("log_prefix = \"{ok}\""), "f")
            .unwrap()
            .log_prefix,
        ok
    );
    for bad in [
        r#""a\"b""#,
        r#""a\\b""#,
        r#""tab\there""#,
        r#""é""#,
        r#""nl\n""#,
    ] {
        let msg = err(&format!("log_prefix = {bad}"));
        assert_at(&msg, 1, "log_prefix");
        assert!(msg.contains("printable ASCII"), "{bad}: {msg}");
    }
    let msg = err("[tcp]\nmode = \"atcp\"\n");
    assert_eq!(
        msg,
        format!(
            "{FILE}:2: key `tcp.mode`: unknown mode `atcp`; valid modes: \"stealth\", \"advanced\", \"connect\", \"off\""
        )
    );
    let msg = err("ignore_file = \"ignore\"\n");
    assert_at(&msg, 1, "ignore_file");
    assert!(msg.contains("not an absolute path"), "{msg}");
    let msg = err("ignore_file = \"/a\\u0000b\"\n");
    assert!(msg.contains("NUL"), "{msg}");
    let c = Config::parse("ignore_file = \"/srv/ign\"", "f").unwrap();
    assert_eq!(c.ignore_file, Some(PathBuf::from("/srv/ign")));
}

#[test]
fn syntax_errors_name_the_line() {
    let msg = err("table = \"t\"\n\nnflog_group = \n");
    assert!(
        msg.starts_with(&format!("{FILE}:3: TOML syntax error: ")),
        "{msg}"
    );
    let msg = err("table = \"a\"\ntable = \"b\"\n");
    assert!(
        msg.starts_with(&format!("{FILE}:2: TOML syntax error: ")),
        "{msg}"
    );
    assert!(msg.contains("duplicate key (at `table`)"), "{msg}");
    let msg = err("[tcp]\n[tcp]\n");
    assert!(msg.starts_with(&format!("{FILE}:2: ")), "{msg}");
    let msg = err("table = \"unterminated\n");
    assert!(msg.starts_with(&format!("{FILE}:1: ")), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg:?}");
}

#[test]
fn load_reads_files_and_names_unreadable_ones() {
    let dir = std::env::temp_dir().join(format!("nftsentry-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("absent.toml");
    let e = Config::load(Some(&missing)).unwrap_err();
    assert_eq!(e.kind, Kind::Config);
    assert_eq!(
        e.message,
        format!(
            "{}: cannot read the config file: No such file or directory",
            missing.display()
        )
    );
    let f = dir.join("nftsentry.toml");
    std::fs::write(&f, "ban_time = \"2h\"\n[udp]\nmode = \"off\"\n").unwrap();
    let c = Config::load(Some(&f)).unwrap();
    assert_eq!(c.source, f.display().to_string());
    assert_eq!(c.ban_time, Duration::from_secs(7200));
    assert_eq!(c.udp.mode, Mode::OFF);
    std::fs::write(&f, "\nnflog_group = true\n").unwrap();
    let e = Config::load(Some(&f)).unwrap_err();
    assert!(
        e.message
            .starts_with(&format!("{}:2: key `nflog_group`: ", f.display())),
        "{e}"
    );
    // Not UTF-8: the line of the first bad byte.
    std::fs::write(&f, b"# ok\ntable = \"\xff\"\n").unwrap();
    let e = Config::load(Some(&f)).unwrap_err();
    assert_eq!(e.kind, Kind::Config);
    assert_eq!(
        e.message,
        format!(
            "{}:2: the file is not UTF-8 text (byte 0xff); TOML files are UTF-8",
            f.display()
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn garbage_never_panics() {
    // Cheap stand-in for the fuzz target: every prefix of a config that
    // exercises all value kinds either parses or errors.
    let text = "table = \"t\"\nchain_priority = -10\nban_time = \"1h30m\"\n\
                [tcp]\nports = [1, \"2-3\", \"aware\"]\nmode = \"off\"\n[udp]\nports = \"1,2\"\n";
    for end in 0..=text.len() {
        let _ = Config::parse(&text[..end], "prefix");
    }
    for junk in [
        "\u{0}",
        "[",
        "]]",
        "=",
        "a=",
        "\"",
        "tcp.ports.x = 1",
        "tcp = []",
        "[tcp.mode]",
    ] {
        assert!(Config::parse(junk, "junk").is_err(), "{junk:?} parsed");
    }
}
