//! The walk through the parsed TOML document: each key of the top level and
//! of [tcp] and [udp] into its field of `Config`, in the order of the file,
//! then the checks across keys. Errors name the file, the line and the key
//! (`Doc`).
//!
//! Knows nothing of a value's own rules: `values`, `actions` and `ports`
//! check those.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::crowdsec::{self, CROWDSEC_KEYS, CrowdSec};
use super::keys::{PROTOCOL_KEYS, TOP_KEYS, suggestion};
use super::limits::{
    BAN_TIME_MAX, BAN_TIME_MIN, CHAIN_PRIORITY_MAX, CHAIN_PRIORITY_MIN, COMMAND_TIMEOUT_MAX,
    COMMAND_TIMEOUT_MIN, MAX_TRACKED_SOURCES_MAX, SCAN_WINDOW_MAX, SCAN_WINDOW_MIN, SET_SIZE_MAX,
    STORM_HOLD_MAX, STORM_HOLD_MIN, STORM_THRESHOLD_MAX,
};
use super::values::{
    boolean, describe, duration, ignore_file, integer, live_peer_mark, log_prefix, metrics_listen,
    mode, port_banner, string, table_name, user_name,
};
use super::{
    BlockMode, Config, Forgeable, PRESET_NAMES, PortSet, Proto, Protocol, actions, control_group,
    format_duration,
};
use crate::error::Error;

pub(super) type Key<'i> = Spanned<Cow<'i, str>>;
pub(super) type Value<'i> = Spanned<DeValue<'i>>;

/// The table's entries in the order the file wrote them (the parser keeps
/// them sorted by name), so the first error reported is the first in the
/// file.
pub(super) fn in_file_order<'t, 'i>(t: &'t DeTable<'i>) -> Vec<(&'t Key<'i>, &'t Value<'i>)> {
    let mut v: Vec<_> = t.iter().collect();
    v.sort_by_key(|(k, _)| k.span().start);
    v
}

/// The text being parsed and its name, to turn byte offsets into
/// `FILE:LINE:` prefixes.
pub(super) struct Doc<'a> {
    pub(super) text: &'a str,
    pub(super) source: &'a str,
}

impl Doc<'_> {
    /// One top-level key into `c`: the table, detection and the [tcp] and
    /// [udp] tables here, what happens on a ban in `action_key`.
    pub(super) fn top_level_key(
        &self,
        c: &mut Config,
        k: &Key<'_>,
        v: &Value<'_>,
    ) -> Result<(), Error> {
        let key: &str = k.get_ref();
        match key {
            "table" => c.table = self.check(v, key, |v| table_name(string(v)?))?,
            "chain_priority" => {
                c.chain_priority = self.check(v, key, |v| {
                    integer(v, CHAIN_PRIORITY_MIN.into(), CHAIN_PRIORITY_MAX.into())
                })? as i32
            }
            "nflog_group" => {
                c.nflog_group = self.check(v, key, |v| integer(v, 0, u16::MAX.into()))? as u16
            }
            "log_prefix" => c.log_prefix = self.check(v, key, |v| log_prefix(string(v)?))?,
            "set_size" => {
                c.set_size = self.check(v, key, |v| integer(v, 1, SET_SIZE_MAX.into()))? as u32
            }
            "keep_table_on_exit" => c.keep_table_on_exit = self.check(v, key, boolean)?,
            "table_owner" => c.table_owner = self.check(v, key, boolean)?,
            "control_socket" => {
                c.control_socket = self.check(v, key, |v| {
                    actions::file_path(string(v)?, "/run/nftsentry/control")
                })?
            }
            "control_group" => {
                c.control_group =
                    self.check(v, key, |v| control_group::control_group(string(v)?))?
            }
            "ban_prefix6" => c.ban_prefix6 = self.check(v, key, |v| integer(v, 48, 128))? as u8,
            "escalate_after" => {
                c.escalate_after = self.check(v, key, |v| integer(v, 0, 1000))? as u32
            }
            "escalate_window" => {
                c.escalate_window =
                    self.check(v, key, |v| duration(v, SCAN_WINDOW_MIN, SCAN_WINDOW_MAX))?
            }
            "metrics_listen" => {
                c.metrics_listen = self.check(v, key, |v| metrics_listen(string(v)?))?
            }
            "ban_time" => {
                c.ban_time = self.check(v, key, |v| duration(v, BAN_TIME_MIN, BAN_TIME_MAX))?
            }
            "scan_trigger" => {
                c.scan_trigger = self.check(v, key, |v| integer(v, 0, u32::MAX.into()))? as u32
            }
            "scan_window" => {
                c.scan_window =
                    self.check(v, key, |v| duration(v, SCAN_WINDOW_MIN, SCAN_WINDOW_MAX))?
            }
            "max_tracked_sources" => {
                c.max_tracked_sources =
                    self.check(v, key, |v| integer(v, 1, MAX_TRACKED_SOURCES_MAX as i64))? as usize
            }
            "resolve_host" => c.resolve_host = self.check(v, key, boolean)?,
            "ignore_file" => c.ignore_file = self.check(v, key, |v| ignore_file(string(v)?))?,
            "ignore_local" => c.ignore_local = self.check(v, key, boolean)?,
            "port_banner" => c.port_banner = self.check(v, key, |v| port_banner(string(v)?))?,
            "ban_requires_handshake" => c.ban_requires_handshake = self.check(v, key, boolean)?,
            "storm_threshold" => {
                c.storm_threshold =
                    self.check(v, key, |v| integer(v, 0, STORM_THRESHOLD_MAX.into()))? as u32
            }
            "storm_hold" => {
                c.storm_hold =
                    self.check(v, key, |v| duration(v, STORM_HOLD_MIN, STORM_HOLD_MAX))?
            }
            "protect_live_peers" => c.protect_live_peers = self.check(v, key, boolean)?,
            "live_peer_mark" => c.live_peer_mark = self.check(v, key, live_peer_mark)?,
            "user" => c.user = self.check(v, key, |v| user_name(string(v)?))?,
            "tcp" => c.tcp = self.protocol(v, Proto::Tcp, c.tcp.clone())?,
            "udp" => c.udp = self.protocol(v, Proto::Udp, c.udp.clone())?,
            "crowdsec" => c.crowdsec = self.crowdsec(v, c.crowdsec.clone())?,
            _ => return self.action_key(c, k, v),
        }
        Ok(())
    }

    /// The top-level keys of what happens on a ban (`actions`); any other
    /// key is unknown.
    fn action_key(&self, c: &mut Config, k: &Key<'_>, v: &Value<'_>) -> Result<(), Error> {
        let key: &str = k.get_ref();
        match key {
            "route" => c.route = self.check(v, key, |v| actions::route_mode(string(v)?))?,
            "kill_route" => {
                c.kill_route = self.check(v, key, |v| actions::kill_route(string(v)?))?
            }
            "hosts_deny" => {
                c.hosts_deny = self.check(v, key, |v| {
                    actions::file_path(string(v)?, "/etc/hosts.deny")
                })?
            }
            "hosts_deny_line" => {
                c.hosts_deny_line = self.check(v, key, |v| actions::hosts_deny_line(string(v)?))?
            }
            "command" => c.command = self.check(v, key, actions::command)?,
            "command_shell" => c.command_shell = self.check(v, key, boolean)?,
            "run_before_block" => c.run_before_block = self.check(v, key, boolean)?,
            "command_timeout" => {
                c.command_timeout = self.check(v, key, |v| {
                    duration(v, COMMAND_TIMEOUT_MIN, COMMAND_TIMEOUT_MAX)
                })?
            }
            "history_file" => {
                c.history_file = self.check(v, key, |v| {
                    actions::file_path(string(v)?, "/var/lib/nftsentry/history")
                })?
            }
            "events_file" => {
                c.events_file = self.check(v, key, |v| {
                    actions::file_path(string(v)?, "/var/lib/nftsentry/events.json")
                })?
            }
            "state_file" => {
                c.state_file = self.check(v, key, |v| {
                    actions::file_path(string(v)?, "/var/lib/nftsentry/state")
                })?
            }
            "ban_time_factor" => {
                c.ban_time_factor =
                    self.check(v, key, |v| integer(v, 1, actions::BAN_TIME_FACTOR_MAX))? as u32
            }
            "ban_time_max" => {
                c.ban_time_max = self.check(v, key, |v| duration(v, BAN_TIME_MIN, BAN_TIME_MAX))?
            }
            _ => return Err(self.unknown_key(k, None)),
        }
        Ok(())
    }

    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        1 + self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }

    fn error(&self, span: Range<usize>, key: &str, message: impl fmt::Display) -> Error {
        Error::config(format!(
            "{}:{}: key `{key}`: {message}",
            self.source,
            self.line(span.start)
        ))
    }

    pub(super) fn syntax_error(&self, e: &toml::de::Error) -> Error {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim_end();
        // The parser's span covers the offending token: quote it when it is
        // short enough to help (the duplicated key, a stray character).
        let token = self
            .text
            .get(span.clone())
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 40 && !t.contains('\n'));
        let message = match token {
            Some(t) => format!("{message} (at `{t}`)"),
            None => message.to_string(),
        };
        Error::config(format!(
            "{}:{}: TOML syntax error: {message}",
            self.source,
            self.line(span.start)
        ))
    }

    /// Run a value check; its message gets the value's line and the key.
    fn check<T>(
        &self,
        v: &Value<'_>,
        key: &str,
        f: impl FnOnce(&DeValue<'_>) -> Result<T, String>,
    ) -> Result<T, Error> {
        f(v.get_ref()).map_err(|m| self.error(v.span(), key, m))
    }

    /// `table` is `Some("tcp")` inside `[tcp]`.
    fn unknown_key(&self, k: &Key<'_>, table: Option<&str>) -> Error {
        let name: &str = k.get_ref();
        let (path, allowed, place) = match table {
            None => (name.to_string(), TOP_KEYS, "the top level".to_string()),
            Some("crowdsec") => (
                format!("crowdsec.{name}"),
                CROWDSEC_KEYS,
                "[crowdsec]".to_string(),
            ),
            Some(t) => (format!("{t}.{name}"), PROTOCOL_KEYS, format!("[{t}]")),
        };
        let hint = match suggestion(name, table.is_none()).filter(|_| table != Some("crowdsec")) {
            Some(s) => format!(" (did you mean `{s}`?)"),
            None => String::new(),
        };
        Error::config(format!(
            "{}:{}: unknown key `{path}`{hint}; keys allowed at {place}: {}",
            self.source,
            self.line(k.span().start),
            allowed.join(", ")
        ))
    }

    fn crowdsec(&self, v: &Value<'_>, mut c: CrowdSec) -> Result<CrowdSec, Error> {
        let DeValue::Table(t) = v.get_ref() else {
            return Err(self.error(
                v.span(),
                "crowdsec",
                format!(
                    "expected a table ([crowdsec] with `enabled`, `url`, ...), found {}",
                    describe(v.get_ref())
                ),
            ));
        };
        for (k, v) in in_file_order(t) {
            let name: &str = k.get_ref();
            match crowdsec::key(&mut c, name, v.get_ref()) {
                Ok(()) => {}
                Err(None) => return Err(self.unknown_key(k, Some("crowdsec"))),
                Err(Some(m)) => return Err(self.error(v.span(), &format!("crowdsec.{name}"), m)),
            }
        }
        Ok(c)
    }

    fn protocol(&self, v: &Value<'_>, proto: Proto, mut p: Protocol) -> Result<Protocol, Error> {
        let name = proto.as_str();
        let DeValue::Table(t) = v.get_ref() else {
            return Err(self.error(
                v.span(),
                name,
                format!(
                    "expected a table ([{name}] with `mode`, `ports`, ...), found {}",
                    describe(v.get_ref())
                ),
            ));
        };
        for (k, v) in in_file_order(t) {
            let key = format!("{name}.{}", k.get_ref());
            match k.get_ref().as_ref() {
                "mode" => p.mode = self.check(v, &key, mode)?,
                "ports" => p.ports = self.ports(v, &key, proto)?,
                "advanced_ports" => {
                    p.advanced_ports =
                        self.check(v, &key, |v| integer(v, 1, u16::MAX.into()))? as u16
                }
                "advanced_exclude" => p.advanced_exclude = self.ports(v, &key, proto)?,
                "block_mode" => {
                    p.block_mode = self.check(v, &key, |v| actions::block_mode(string(v)?))?
                }
                "forgeable" => {
                    p.forgeable = self.check(v, &key, |v| {
                        let s = string(v)?;
                        Forgeable::from_name(s)
                            .ok_or_else(|| format!("`{s}` is not one of \"ban\", \"log\""))
                    })?
                }
                _ => return Err(self.unknown_key(k, Some(name))),
            }
        }
        Ok(p)
    }

    /// A preset name or list in a string, or an array of ports, "a-b"
    /// ranges and preset names; each array item's own line in errors.
    fn ports(&self, v: &Value<'_>, key: &str, proto: Proto) -> Result<PortSet, Error> {
        match v.get_ref() {
            DeValue::String(s) => {
                PortSet::parse_for(s, proto).map_err(|m| self.error(v.span(), key, m))
            }
            DeValue::Array(items) => {
                let mut ranges = Vec::new();
                for item in items.iter() {
                    let found = match item.get_ref() {
                        DeValue::Integer(_) => integer(item.get_ref(), i64::MIN, i64::MAX)
                            .ok()
                            .and_then(|n| u16::try_from(n).ok())
                            .filter(|&p| p >= 1)
                            .map(|p| vec![(p, p)])
                            .ok_or_else(|| {
                                format!("port {} is out of range 1-65535", int_text(item))
                            }),
                        DeValue::String(s) => {
                            PortSet::parse_for(s, proto).map(|set| set.ranges().to_vec())
                        }
                        other => Err(format!(
                            "expected a port number, a range such as \"100-200\" or a preset name, found {}",
                            describe(other)
                        )),
                    };
                    ranges.extend(found.map_err(|m| self.error(item.span(), key, m))?);
                }
                Ok(PortSet::from_ranges(ranges))
            }
            other => Err(self.error(
                v.span(),
                key,
                format!(
                    "expected a preset name ({PRESET_NAMES}), a list such as \"1,11,100-200\" or an array such as [1, 11, \"100-200\"], found {}",
                    describe(other)
                ),
            )),
        }
    }
}

impl Doc<'_> {
    /// Checks that involve more than one key, once the whole file is read.
    pub(super) fn check_across_keys(&self, c: &Config, root: &DeTable<'_>) -> Result<(), Error> {
        // The line of `table.key`, or of a top-level `key`, if the file has it.
        let line_of = |table: Option<&str>, key: &str| {
            let t = match table {
                None => root,
                Some(name) => match root.get(name).map(|v| v.get_ref()) {
                    Some(DeValue::Table(t)) => t,
                    _ => return None,
                },
            };
            t.get(key).map(|v| self.line(v.span().start))
        };
        let at = |line: Option<usize>, key: &str, message: String| {
            Error::config(match line {
                Some(l) => format!("{}:{l}: key `{key}`: {message}", self.source),
                None => format!("{}: key `{key}`: {message}", self.source),
            })
        };
        for (proto, line) in [
            (Proto::Tcp, line_of(Some("tcp"), "block_mode")),
            (Proto::Udp, line_of(Some("udp"), "block_mode")),
        ] {
            if c.protocol(proto).block_mode == BlockMode::Command && c.command.is_empty() {
                return Err(at(
                    line,
                    &format!("{proto}.block_mode"),
                    "block mode \"command\" runs only the external command, and `command` is empty: set `command`".to_string(),
                ));
            }
        }
        if let Err((key, message)) = c.crowdsec.check() {
            return Err(at(
                line_of(Some("crowdsec"), key),
                &format!("crowdsec.{key}"),
                message,
            ));
        }
        if c.ban_time_factor > 1 && c.ban_time_max < c.ban_time {
            return Err(at(
                line_of(None, "ban_time_max"),
                "ban_time_max",
                format!(
                    "{} is shorter than ban_time ({}): escalated bans could not be longer than the first",
                    format_duration(c.ban_time_max),
                    format_duration(c.ban_time)
                ),
            ));
        }
        Ok(())
    }
}

fn int_text(v: &Value<'_>) -> String {
    match v.get_ref() {
        DeValue::Integer(i) => i.to_string(),
        other => describe(other),
    }
}
