//! Tests of the errors: bad values, types, keys, durations and syntax each
//! name the file, the line and the key; unreadable files and garbage.

use super::*;

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
            "{FILE}:4: unknown key `tcp.port`; keys allowed at [tcp]: mode, ports, advanced_ports, advanced_exclude, block_mode, forgeable"
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
fn live_peer_mark_needs_two_bits() {
    for bad in [
        "0",
        "0x10000000",
        "0x70000000",
        "-1",
        "0x100000000",
        "\"3\"",
    ] {
        let msg = err(&format!("live_peer_mark = {bad}"));
        assert_at(&msg, 1, "live_peer_mark");
    }
    let msg = err("live_peer_mark = 0x10");
    assert!(msg.contains("exactly two"), "{msg}");
    let c = Config::parse(
        "live_peer_mark = 0x00000300\nprotect_live_peers = false",
        "f",
    )
    .unwrap();
    assert_eq!(c.live_peer_mark, 0x300);
    assert!(!c.protect_live_peers);
}

#[test]
fn bad_log_prefix_mode_and_ignore_file() {
    // 127 bytes with the NUL, less what live peers' tripwires add.
    let msg = err(&format!("log_prefix = \"{}\"", "x".repeat(117)));
    assert_at(&msg, 1, "log_prefix");
    assert!(msg.contains("117 bytes"), "{msg}");
    let ok = "x".repeat(116);
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
