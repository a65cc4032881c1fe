//! The names of the config's keys, at the top level and in [tcp] and
//! [udp], and the near miss an unknown key is pointed to.
//!
//! Knows nothing of the keys' values.

/// Keys of the top level, in the order the default file documents them.
pub const TOP_KEYS: &[&str] = &[
    "table",
    "chain_priority",
    "nflog_group",
    "log_prefix",
    "set_size",
    "keep_table_on_exit",
    "table_owner",
    "control_socket",
    "control_group",
    "metrics_listen",
    "ban_time",
    "ban_prefix6",
    "escalate_after",
    "escalate_window",
    "scan_trigger",
    "scan_window",
    "max_tracked_sources",
    "resolve_host",
    "ignore_file",
    "ignore_local",
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
    "tcp",
    "udp",
    "crowdsec",
];
/// Keys of `[tcp]` and `[udp]`.
pub const PROTOCOL_KEYS: &[&str] = &[
    "mode",
    "ports",
    "advanced_ports",
    "advanced_exclude",
    "block_mode",
    "forgeable",
];

/// A near miss of a known key: another case, `-` for `_`, PortSentry's
/// names (`SCAN_TRIGGER`, `TCP_PORTS`), or a [tcp]/[udp] key at the top.
pub(super) fn suggestion(name: &str, top_level: bool) -> Option<String> {
    let norm = name.to_ascii_lowercase().replace('-', "_");
    let allowed = if top_level { TOP_KEYS } else { PROTOCOL_KEYS };
    if let Some(k) = allowed.iter().find(|k| **k == norm) {
        return Some(k.to_string());
    }
    if !top_level {
        return None;
    }
    if let Some((proto, rest)) = norm.split_once('_') {
        if (proto == "tcp" || proto == "udp") && PROTOCOL_KEYS.contains(&rest) {
            return Some(format!("{proto}.{rest}"));
        }
    }
    // PortSentry's ADVANCED_PORTS_TCP is [tcp] advanced_ports.
    if let Some((rest, proto)) = norm.rsplit_once('_') {
        if (proto == "tcp" || proto == "udp") && PROTOCOL_KEYS.contains(&rest) {
            return Some(format!("{proto}.{rest}"));
        }
    }
    if PROTOCOL_KEYS.contains(&norm.as_str()) {
        return Some(format!("tcp.{norm}` or `udp.{norm}"));
    }
    None
}
