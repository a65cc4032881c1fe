//! Tests of the forms each key accepts: every key set at once, modes and
//! what they watch, the action keys, user names and port sets.

use super::*;

// Long: one file that sets every key, then one assertion per key.
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

// Long: each mode and what it watches, then two tables of bad values.
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
