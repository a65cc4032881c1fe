//! Tests of the defaults: the built-in config/nftsentry.toml parses, each
//! key is documented there, and its commented-out values are the code's.

use super::*;

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
    assert_eq!(c.metrics_listen, None);
    assert_eq!(c.events_file, None);
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
        TOP_KEYS.len() - 3 + 2 * PROTOCOL_KEYS.len() + CROWDSEC_KEYS.len(),
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

// Long: two tables, every field of Config and every key of the file.
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
        ban_prefix6: _,
        escalate_after: _,
        escalate_window: _,
        set_size: _,
        ignore_file: _,
        ignore_local: _,
        keep_table_on_exit: _,
        table_owner: _,
        control_socket: _,
        control_group: _,
        metrics_listen: _,
        events_file: _,
        scan_trigger: _,
        scan_window: _,
        max_tracked_sources: _,
        resolve_host: _,
        port_banner: _,
        ban_requires_handshake: _,
        storm_threshold: _,
        storm_hold: _,
        protect_live_peers: _,
        live_peer_mark: _,
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
                forgeable: _,
            },
        udp: _,
        crowdsec:
            CrowdSec {
                enabled: _,
                url: _,
                push: _,
                pull: _,
                machine_id: _,
                password_file: _,
                api_key_file: _,
                scenario: _,
                push_evidence: _,
                origins: _,
                scenarios: _,
                pull_interval: _,
                timeout: _,
                queue_size: _,
                ca_file: _,
                cert_file: _,
                key_file: _,
            },
    } = Config::default();
    let keys = [
        "table",
        "chain_priority",
        "nflog_group",
        "log_prefix",
        "ban_time",
        "ban_prefix6",
        "escalate_after",
        "escalate_window",
        "set_size",
        "ignore_file",
        "ignore_local",
        "keep_table_on_exit",
        "table_owner",
        "control_socket",
        "control_group",
        "metrics_listen",
        "scan_trigger",
        "scan_window",
        "max_tracked_sources",
        "resolve_host",
        "port_banner",
        "ban_requires_handshake",
        "storm_threshold",
        "storm_hold",
        "protect_live_peers",
        "live_peer_mark",
        "route",
        "kill_route",
        "hosts_deny",
        "hosts_deny_line",
        "command",
        "command_shell",
        "run_before_block",
        "command_timeout",
        "history_file",
        "events_file",
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
    assert_eq!(keys.len() + 3, TOP_KEYS.len());
    // [crowdsec] holds a line for each of its keys, each documented.
    let header = "\n[crowdsec]\n";
    let start = text.find(header).expect("[crowdsec] header") + header.len();
    for key in CROWDSEC_KEYS {
        assert!(
            text[start - 1..].contains(&format!("\n#{key} = ")),
            "[crowdsec] lacks {key}"
        );
        assert!(text.contains(&format!("\n# {key} (")), "{key} undocumented");
    }
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
