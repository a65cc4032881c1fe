//! The configuration: the TOML schema, every key's default (the embedded
//! `config/nftsentry.toml`), and validation whose errors name the file, the
//! line and the key. Submodules: port sets and PortSentry's port lists
//! (`ports`), durations (`duration`), the ignore file (`ignore`).
//!
//! Knows nothing of sockets or nftables: it only says what was asked for.

mod actions;
mod control_group;
mod duration;
pub mod ignore;
mod ports;

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::Error;

pub use actions::{BlockMode, RouteMode, TEMPLATE_VARIABLES};
pub use control_group::ControlGroup;
pub use duration::{format_duration, parse_duration};
pub use ports::{
    PORTSENTRY_TCP_AWARE, PORTSENTRY_TCP_BARE_BONES, PORTSENTRY_TCP_PARANOID, PORTSENTRY_UDP_AWARE,
    PORTSENTRY_UDP_BARE_BONES, PORTSENTRY_UDP_PARANOID, PRESET_NAMES, PortSet, Preset, Proto,
};

/// `Config::source` of the configuration built into the binary.
pub const BUILTIN_SOURCE: &str = "<built-in default>";

/// What nftsentry was asked to do. Field comments give the TOML key; the
/// defaults and their meaning are documented in `config/nftsentry.toml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The path it was read from, or `<built-in default>`.
    pub source: String,
    /// `table`: name of our table in the inet family.
    pub table: String,
    /// `chain_priority`: offset from nft's `filter` priority (0).
    pub chain_priority: i32,
    /// `nflog_group`.
    pub nflog_group: u16,
    /// `log_prefix`: printable ASCII without `"` or `\`, at most 127 bytes.
    pub log_prefix: String,
    /// `ban_time`.
    pub ban_time: Duration,
    /// `set_size`: most bans per address family.
    pub set_size: u32,
    /// `ignore_file`; `None` when set to "".
    pub ignore_file: Option<PathBuf>,
    /// `ignore_local`: never ban local addresses, loopback, default gateways,
    /// resolvers in /etc/resolv.conf.
    pub ignore_local: bool,
    /// `keep_table_on_exit`.
    pub keep_table_on_exit: bool,
    /// `table_owner`: create the table with nftables' owner flag.
    pub table_owner: bool,
    /// `control_socket`; `None` when set to "".
    pub control_socket: Option<PathBuf>,
    /// `control_group`: besides root, who may block, unblock, flush and
    /// reload through the control socket; `None` when set to "".
    pub control_group: Option<ControlGroup>,
    /// `scan_trigger`: probes tolerated before a ban (0 = the first acts).
    pub scan_trigger: u32,
    /// `scan_window`: probes older than this do not count.
    pub scan_window: Duration,
    /// `max_tracked_sources`.
    pub max_tracked_sources: usize,
    /// `resolve_host`.
    pub resolve_host: bool,
    /// `port_banner`: sent to connect-mode clients; empty = nothing.
    pub port_banner: String,
    /// `ban_requires_handshake`: only a completed TCP handshake bans.
    pub ban_requires_handshake: bool,
    /// `route`: native host route added for a banned source.
    pub route: RouteMode,
    /// `kill_route`: legacy command template, run instead of a native route
    /// when not empty.
    pub kill_route: String,
    /// `hosts_deny`; `None` when set to "".
    pub hosts_deny: Option<PathBuf>,
    /// `hosts_deny_line`: the line template.
    pub hosts_deny_line: String,
    /// `command`: argv template; empty = no command.
    pub command: Vec<String>,
    /// `command_shell`: run `command` (and `kill_route`) through /bin/sh -c.
    pub command_shell: bool,
    /// `run_before_block`.
    pub run_before_block: bool,
    /// `command_timeout`.
    pub command_timeout: Duration,
    /// `history_file`; `None` when set to "".
    pub history_file: Option<PathBuf>,
    /// `state_file`; `None` when set to "".
    pub state_file: Option<PathBuf>,
    /// `ban_time_factor`: 1 = no escalation.
    pub ban_time_factor: u32,
    /// `ban_time_max`: cap of escalated bans.
    pub ban_time_max: Duration,
    /// `user`: the account the daemon switches to once set up; "" = stay.
    pub user: String,
    /// `[tcp]`.
    pub tcp: Protocol,
    /// `[udp]`.
    pub udp: Protocol,
}

/// One `[tcp]` or `[udp]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protocol {
    /// `mode`.
    pub mode: Mode,
    /// `ports`: the stealth tripwires and the connect-mode sockets.
    pub ports: PortSet,
    /// `advanced_ports`: advanced mode watches ports 1 to this - 1.
    pub advanced_ports: u16,
    /// `advanced_exclude`: never watched in advanced mode.
    pub advanced_exclude: PortSet,
    /// `block_mode`.
    pub block_mode: BlockMode,
}

impl Protocol {
    /// The ports whose packets the tripwire rules log: `ports` in stealth
    /// mode, 1 to `advanced_ports` - 1 but `advanced_exclude` in advanced
    /// mode, none otherwise. Ports with a socket are skipped by the kernel
    /// per packet (the ruleset's `socket` rules), not removed here.
    pub fn tripwire_ports(&self) -> PortSet {
        match self.mode.tripwires {
            Tripwires::None => PortSet::default(),
            Tripwires::Stealth => self.ports.clone(),
            Tripwires::Advanced if self.advanced_ports <= 1 => PortSet::default(),
            Tripwires::Advanced => PortSet::from_ranges([(1, self.advanced_ports - 1)])
                .difference(&self.advanced_exclude),
        }
    }

    /// The ports nftsentry listens on itself (connect mode), else none.
    pub fn connect_ports(&self) -> PortSet {
        if self.mode.connect {
            self.ports.clone()
        } else {
            PortSet::default()
        }
    }
}

/// The tripwire half of a mode: which ports the kernel logs probes of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tripwires {
    None,
    /// The ports in `ports` (PortSentry's -stcp/-sudp).
    Stealth,
    /// Every port below `advanced_ports` but the excluded ones (-atcp/-audp).
    Advanced,
}

/// How one protocol is watched: tripwires, real sockets (`connect`, as
/// PortSentry's -tcp/-udp), both, or nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    pub tripwires: Tripwires,
    pub connect: bool,
}

impl Mode {
    pub const OFF: Mode = Mode {
        tripwires: Tripwires::None,
        connect: false,
    };
    pub const STEALTH: Mode = Mode {
        tripwires: Tripwires::Stealth,
        connect: false,
    };
    pub const ADVANCED: Mode = Mode {
        tripwires: Tripwires::Advanced,
        connect: false,
    };
    pub const CONNECT: Mode = Mode {
        tripwires: Tripwires::None,
        connect: true,
    };

    /// The names the config file accepts.
    pub const NAMES: &'static [&'static str] = &["stealth", "advanced", "connect", "off"];

    pub fn is_off(self) -> bool {
        self == Mode::OFF
    }

    pub fn from_name(name: &str) -> Option<Mode> {
        match name {
            "off" => Some(Mode::OFF),
            "stealth" => Some(Mode::STEALTH),
            "advanced" => Some(Mode::ADVANCED),
            "connect" => Some(Mode::CONNECT),
            _ => None,
        }
    }

    /// The mode of several names, e.g. `["advanced", "connect"]`. Stealth
    /// and connect both use `ports`, which would leave the tripwires only
    /// ports that nftsentry itself listens on: refused with the alternative.
    pub fn combine(names: &[&str]) -> Result<Mode, String> {
        let mut m = Mode::OFF;
        if names.is_empty() {
            return Err("empty mode list: write \"off\" to watch nothing".into());
        }
        for &name in names {
            let one = Mode::from_name(name).ok_or_else(|| unknown_mode(name))?;
            if one.is_off() {
                return Err("\"off\" cannot be combined with another mode".into());
            }
            let same_wires = one.tripwires != Tripwires::None && one.tripwires == m.tripwires;
            if (one.connect && m.connect) || same_wires {
                return Err(format!("mode `{name}` is listed twice"));
            }
            if one.tripwires != Tripwires::None && m.tripwires != Tripwires::None {
                return Err("\"stealth\" and \"advanced\" are alternatives: pick one".to_string());
            }
            m.connect |= one.connect;
            if one.tripwires != Tripwires::None {
                m.tripwires = one.tripwires;
            }
        }
        if m.connect && m.tripwires == Tripwires::Stealth {
            return Err("\"stealth\" and \"connect\" would both use `ports`, and a port nftsentry listens on is never a tripwire: use [\"advanced\", \"connect\"] to listen on `ports` and watch every other port below `advanced_ports`".to_string());
        }
        Ok(m)
    }
}

fn unknown_mode(s: &str) -> String {
    format!(
        "unknown mode `{s}`; valid modes: {}",
        Mode::NAMES
            .iter()
            .map(|m| format!("\"{m}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wires = match self.tripwires {
            Tripwires::None => None,
            Tripwires::Stealth => Some("stealth"),
            Tripwires::Advanced => Some("advanced"),
        };
        match (wires, self.connect) {
            (None, false) => f.write_str("off"),
            (None, true) => f.write_str("connect"),
            (Some(w), false) => f.write_str(w),
            (Some(w), true) => write!(f, "{w}+connect"),
        }
    }
}

// Limits. Each says why it is where it is.

/// nft accepts longer names; 64 keeps `nft list` output and our log lines
/// readable and leaves room for suffixes.
pub const TABLE_NAME_MAX: usize = 64;
/// nft's named priorities for the input hook run from raw (-300) to
/// security (50); an offset beyond ±300 is a typo, not a plan.
pub const CHAIN_PRIORITY_MIN: i32 = -300;
pub const CHAIN_PRIORITY_MAX: i32 = 300;
/// NF_LOG_PREFIXLEN is 128 bytes including the terminating NUL.
pub const LOG_PREFIX_MAX: usize = 127;
pub const BAN_TIME_MIN: Duration = Duration::from_secs(1);
pub const BAN_TIME_MAX: Duration = Duration::from_secs(365 * 86_400);
pub const SCAN_WINDOW_MIN: Duration = Duration::from_secs(1);
pub const SCAN_WINDOW_MAX: Duration = Duration::from_secs(365 * 86_400);
/// 2^24: far more bans than any host sees; the bound turns a typo (an
/// extra zero or three) into an error instead of a huge kernel set.
pub const SET_SIZE_MAX: u32 = 16_777_216;
pub const MAX_TRACKED_SOURCES_MAX: usize = 10_000_000;
pub const COMMAND_TIMEOUT_MIN: Duration = Duration::from_secs(1);
pub const COMMAND_TIMEOUT_MAX: Duration = Duration::from_secs(86_400);

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
    "ban_time",
    "scan_trigger",
    "scan_window",
    "max_tracked_sources",
    "resolve_host",
    "ignore_file",
    "ignore_local",
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
    "tcp",
    "udp",
];
/// Keys of `[tcp]` and `[udp]`.
pub const PROTOCOL_KEYS: &[&str] = &[
    "mode",
    "ports",
    "advanced_ports",
    "advanced_exclude",
    "block_mode",
];

impl Default for Config {
    /// The configuration built into the binary: `DEFAULT_TEXT`, parsed. A
    /// unit test proves that it parses, so this cannot panic.
    fn default() -> Config {
        match Config::parse(Config::DEFAULT_TEXT, BUILTIN_SOURCE) {
            Ok(c) => c,
            Err(e) => panic!("the built-in config/nftsentry.toml is invalid: {e}"),
        }
    }
}

impl Config {
    /// config/nftsentry.toml, the documented defaults.
    pub const DEFAULT_TEXT: &'static str = include_str!("../../config/nftsentry.toml");

    /// Read a config file; `None` gives the built-in default. A file that
    /// cannot be read is a config error naming it.
    pub fn load(path: Option<&Path>) -> Result<Config, Error> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let source = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| {
            Error::config(format!(
                "{source}: cannot read the config file: {}",
                ignore::io_message(&e)
            ))
        })?;
        // TOML is UTF-8: say where it is not, as for any other error.
        let text = String::from_utf8(bytes).map_err(|e| {
            let bytes = e.as_bytes();
            let at = e.utf8_error().valid_up_to();
            let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count();
            Error::config(format!(
                "{source}:{line}: the file is not UTF-8 text (byte {:#04x}); TOML files are UTF-8",
                bytes[at]
            ))
        })?;
        Config::parse(&text, &source)
    }

    /// Parse and validate `text`; `source` names it in errors and is kept in
    /// `Config::source`. Keys that are absent keep their defaults.
    pub fn parse(text: &str, source: &str) -> Result<Config, Error> {
        let doc = Doc { text, source };
        let root = DeTable::parse(text).map_err(|e| doc.syntax_error(&e))?;
        let mut c = Config::hardwired(source);
        for (k, v) in in_file_order(root.get_ref()) {
            let key: &str = k.get_ref();
            match key {
                "table" => c.table = doc.check(v, key, |v| table_name(string(v)?))?,
                "chain_priority" => {
                    c.chain_priority = doc.check(v, key, |v| {
                        integer(v, CHAIN_PRIORITY_MIN.into(), CHAIN_PRIORITY_MAX.into())
                    })? as i32
                }
                "nflog_group" => {
                    c.nflog_group = doc.check(v, key, |v| integer(v, 0, u16::MAX.into()))? as u16
                }
                "log_prefix" => c.log_prefix = doc.check(v, key, |v| log_prefix(string(v)?))?,
                "set_size" => {
                    c.set_size = doc.check(v, key, |v| integer(v, 1, SET_SIZE_MAX.into()))? as u32
                }
                "keep_table_on_exit" => c.keep_table_on_exit = doc.check(v, key, boolean)?,
                "table_owner" => c.table_owner = doc.check(v, key, boolean)?,
                "control_socket" => {
                    c.control_socket = doc.check(v, key, |v| {
                        actions::file_path(string(v)?, "/run/nftsentry/control")
                    })?
                }
                "control_group" => {
                    c.control_group =
                        doc.check(v, key, |v| control_group::control_group(string(v)?))?
                }
                "ban_time" => {
                    c.ban_time = doc.check(v, key, |v| duration(v, BAN_TIME_MIN, BAN_TIME_MAX))?
                }
                "scan_trigger" => {
                    c.scan_trigger = doc.check(v, key, |v| integer(v, 0, u32::MAX.into()))? as u32
                }
                "scan_window" => {
                    c.scan_window =
                        doc.check(v, key, |v| duration(v, SCAN_WINDOW_MIN, SCAN_WINDOW_MAX))?
                }
                "max_tracked_sources" => {
                    c.max_tracked_sources = doc
                        .check(v, key, |v| integer(v, 1, MAX_TRACKED_SOURCES_MAX as i64))?
                        as usize
                }
                "resolve_host" => c.resolve_host = doc.check(v, key, boolean)?,
                "ignore_file" => c.ignore_file = doc.check(v, key, |v| ignore_file(string(v)?))?,
                "ignore_local" => c.ignore_local = doc.check(v, key, boolean)?,
                "port_banner" => c.port_banner = doc.check(v, key, |v| port_banner(string(v)?))?,
                "ban_requires_handshake" => {
                    c.ban_requires_handshake = doc.check(v, key, boolean)?
                }
                "route" => c.route = doc.check(v, key, |v| actions::route_mode(string(v)?))?,
                "kill_route" => {
                    c.kill_route = doc.check(v, key, |v| actions::kill_route(string(v)?))?
                }
                "hosts_deny" => {
                    c.hosts_deny = doc.check(v, key, |v| {
                        actions::file_path(string(v)?, "/etc/hosts.deny")
                    })?
                }
                "hosts_deny_line" => {
                    c.hosts_deny_line =
                        doc.check(v, key, |v| actions::hosts_deny_line(string(v)?))?
                }
                "command" => c.command = doc.check(v, key, actions::command)?,
                "command_shell" => c.command_shell = doc.check(v, key, boolean)?,
                "run_before_block" => c.run_before_block = doc.check(v, key, boolean)?,
                "command_timeout" => {
                    c.command_timeout = doc.check(v, key, |v| {
                        duration(v, COMMAND_TIMEOUT_MIN, COMMAND_TIMEOUT_MAX)
                    })?
                }
                "history_file" => {
                    c.history_file = doc.check(v, key, |v| {
                        actions::file_path(string(v)?, "/var/lib/nftsentry/history")
                    })?
                }
                "state_file" => {
                    c.state_file = doc.check(v, key, |v| {
                        actions::file_path(string(v)?, "/var/lib/nftsentry/state")
                    })?
                }
                "ban_time_factor" => {
                    c.ban_time_factor =
                        doc.check(v, key, |v| integer(v, 1, actions::BAN_TIME_FACTOR_MAX))? as u32
                }
                "ban_time_max" => {
                    c.ban_time_max =
                        doc.check(v, key, |v| duration(v, BAN_TIME_MIN, BAN_TIME_MAX))?
                }
                "user" => c.user = doc.check(v, key, |v| user_name(string(v)?))?,
                "tcp" => c.tcp = doc.protocol(v, Proto::Tcp, c.tcp)?,
                "udp" => c.udp = doc.protocol(v, Proto::Udp, c.udp)?,
                _ => return Err(doc.unknown_key(k, None)),
            }
        }
        doc.check_across_keys(&c, root.get_ref())?;
        Ok(c)
    }

    /// The `[tcp]` or `[udp]` settings.
    pub fn protocol(&self, proto: Proto) -> &Protocol {
        match proto {
            Proto::Tcp => &self.tcp,
            Proto::Udp => &self.udp,
        }
    }

    /// Every key's default as the code knows it. The default file documents
    /// the same values as commented-out lines; a test holds the two equal.
    fn hardwired(source: &str) -> Config {
        // PortSentry's ADVANCED_EXCLUDE_TCP/UDP defaults: ident and NetBIOS
        // session; RIP, NetBIOS datagram and name, and DHCP (bootps),
        // whose broadcasts reach every host on a LAN.
        let protocol = |proto| Protocol {
            mode: Mode::STEALTH,
            ports: PortSet::preset(Preset::Aware, proto),
            advanced_ports: 1024,
            advanced_exclude: match proto {
                Proto::Tcp => PortSet::from_ports([113, 139]),
                Proto::Udp => PortSet::from_ports([520, 138, 137, 67]),
            },
            block_mode: BlockMode::Block,
        };
        Config {
            source: source.to_string(),
            table: "nftsentry".to_string(),
            chain_priority: -10,
            nflog_group: 7531,
            log_prefix: "nftsentry: ".to_string(),
            ban_time: Duration::from_secs(86_400),
            set_size: 65_536,
            ignore_file: Some(PathBuf::from("/etc/nftsentry/ignore")),
            ignore_local: true,
            keep_table_on_exit: false,
            table_owner: true,
            control_socket: Some(PathBuf::from("/run/nftsentry/control")),
            control_group: None,
            scan_trigger: 0,
            scan_window: Duration::from_secs(3_600),
            max_tracked_sources: 100_000,
            resolve_host: false,
            port_banner: String::new(),
            ban_requires_handshake: false,
            route: RouteMode::Off,
            kill_route: String::new(),
            hosts_deny: None,
            hosts_deny_line: "ALL: $TARGET$".to_string(),
            command: Vec::new(),
            command_shell: false,
            run_before_block: false,
            command_timeout: Duration::from_secs(30),
            history_file: Some(PathBuf::from("/var/lib/nftsentry/history")),
            state_file: Some(PathBuf::from("/var/lib/nftsentry/state")),
            ban_time_factor: 1,
            ban_time_max: Duration::from_secs(30 * 86_400),
            user: String::new(),
            tcp: protocol(Proto::Tcp),
            udp: protocol(Proto::Udp),
        }
    }
}

type Key<'i> = Spanned<Cow<'i, str>>;
type Value<'i> = Spanned<DeValue<'i>>;

/// The table's entries in the order the file wrote them (the parser keeps
/// them sorted by name), so the first error reported is the first in the
/// file.
fn in_file_order<'t, 'i>(t: &'t DeTable<'i>) -> Vec<(&'t Key<'i>, &'t Value<'i>)> {
    let mut v: Vec<_> = t.iter().collect();
    v.sort_by_key(|(k, _)| k.span().start);
    v
}

/// The text being parsed and its name, to turn byte offsets into
/// `FILE:LINE:` prefixes.
struct Doc<'a> {
    text: &'a str,
    source: &'a str,
}

impl Doc<'_> {
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

    fn syntax_error(&self, e: &toml::de::Error) -> Error {
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
            Some(t) => (format!("{t}.{name}"), PROTOCOL_KEYS, format!("[{t}]")),
        };
        let hint = match suggestion(name, table.is_none()) {
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
    fn check_across_keys(&self, c: &Config, root: &DeTable<'_>) -> Result<(), Error> {
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

/// A near miss of a known key: another case, `-` for `_`, PortSentry's
/// names (`SCAN_TRIGGER`, `TCP_PORTS`), or a [tcp]/[udp] key at the top.
fn suggestion(name: &str, top_level: bool) -> Option<String> {
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

/// "the string \"x\"", "an integer (5)", ... for type errors.
fn describe(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("the string {:?}", s.as_ref()),
        DeValue::Integer(i) => format!("the integer {i}"),
        DeValue::Float(f) => format!("the float {f}"),
        DeValue::Boolean(b) => format!("the boolean {b}"),
        DeValue::Datetime(d) => format!("the date-time {d}"),
        DeValue::Array(_) => "an array".to_string(),
        DeValue::Table(_) => "a table".to_string(),
    }
}

fn int_text(v: &Value<'_>) -> String {
    match v.get_ref() {
        DeValue::Integer(i) => i.to_string(),
        other => describe(other),
    }
}

fn integer(v: &DeValue<'_>, min: i64, max: i64) -> Result<i64, String> {
    let DeValue::Integer(i) = v else {
        return Err(format!(
            "expected an integer from {min} to {max}, found {}",
            describe(v)
        ));
    };
    match i64::from_str_radix(i.as_str(), i.radix()) {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("{i} is out of range {min} to {max}")),
    }
}

fn string<'v>(v: &'v DeValue<'_>) -> Result<&'v str, String> {
    match v {
        DeValue::String(s) => Ok(s),
        other => Err(format!("expected a string, found {}", describe(other))),
    }
}

fn boolean(v: &DeValue<'_>) -> Result<bool, String> {
    match v {
        DeValue::Boolean(b) => Ok(*b),
        // PortSentry wrote "1" and "0"; say how TOML spells it.
        DeValue::String(s) => Err(format!(
            "expected true or false, found the string {:?} (write true or false without quotes)",
            s.as_ref()
        )),
        other => Err(format!("expected true or false, found {}", describe(other))),
    }
}

fn duration(v: &DeValue<'_>, min: Duration, max: Duration) -> Result<Duration, String> {
    let range = format!("{} to {}", format_duration(min), format_duration(max));
    let s = match v {
        DeValue::String(s) => s,
        DeValue::Integer(i) => {
            return Err(format!(
                "expected a duration such as \"90s\", \"15m\", \"1h\" or \"2d\", found the bare number {i}: add a unit, e.g. \"{i}s\""
            ));
        }
        other => {
            return Err(format!(
                "expected a duration such as \"90s\", \"15m\", \"1h\" or \"2d\", found {}",
                describe(other)
            ));
        }
    };
    let d = parse_duration(s)?;
    if d < min || d > max {
        return Err(format!("{} is out of range {range}", s.trim()));
    }
    Ok(d)
}

fn table_name(s: &str) -> Result<String, String> {
    let rule = format!(
        "a table name is 1 to {TABLE_NAME_MAX} letters, digits, `_` or `-`, starting with a letter"
    );
    if s.is_empty() {
        return Err(format!("empty table name: {rule}"));
    }
    if s.len() > TABLE_NAME_MAX {
        return Err(format!(
            "table name is {} characters long: {rule}",
            s.chars().count()
        ));
    }
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok_chars || !s.as_bytes()[0].is_ascii_alphabetic() {
        return Err(format!("`{s}` is not a valid table name: {rule}"));
    }
    Ok(s.to_string())
}

fn log_prefix(s: &str) -> Result<String, String> {
    if s.len() > LOG_PREFIX_MAX {
        return Err(format!(
            "log prefix is {} bytes long; the kernel takes at most {LOG_PREFIX_MAX}",
            s.len()
        ));
    }
    // nft syntax quotes the prefix and has no escapes inside the quotes.
    if let Some(c) = s
        .chars()
        .find(|&c| !(' '..='~').contains(&c) || c == '"' || c == '\\')
    {
        return Err(format!(
            "log prefix may hold only printable ASCII other than `\"` and `\\`, found {c:?}"
        ));
    }
    Ok(s.to_string())
}

fn ignore_file(s: &str) -> Result<Option<PathBuf>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    if s.contains('\0') {
        return Err("a path cannot contain a NUL character".to_string());
    }
    // The daemon runs with / as its working directory: a relative path
    // would mean something else there than in the admin's shell.
    if !s.starts_with('/') {
        return Err(format!(
            "`{s}` is not an absolute path: write the full path, e.g. \"/etc/nftsentry/ignore\", or \"\" for no ignore file"
        ));
    }
    Ok(Some(PathBuf::from(s)))
}

/// PortSentry's banner buffer was MAXBUF (1024) bytes; a longer banner is
/// almost certainly a pasted file, and NUL would end it early in PortSentry.
pub const PORT_BANNER_MAX: usize = 1024;

fn port_banner(s: &str) -> Result<String, String> {
    if s.len() > PORT_BANNER_MAX {
        return Err(format!(
            "the banner is {} bytes long; at most {PORT_BANNER_MAX}",
            s.len()
        ));
    }
    if s.contains('\0') {
        return Err("the banner cannot contain a NUL character".to_string());
    }
    Ok(s.to_string())
}

/// Longest user name useradd(8) accepts by default.
pub const USER_NAME_MAX: usize = 32;

/// An account name as useradd(8) allows it, or "" for none. Whether the
/// account exists is checked when the daemon starts, on that host.
fn user_name(s: &str) -> Result<String, String> {
    let rule = format!(
        "a user name is 1 to {USER_NAME_MAX} letters, digits, `_`, `.` or `-`, not starting with `-`; \"\" keeps the user nftsentry was started as"
    );
    if s.is_empty() {
        return Ok(String::new());
    }
    let ok = s.len() <= USER_NAME_MAX
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !ok {
        return Err(format!("{s:?} is not a valid user name: {rule}"));
    }
    Ok(s.to_string())
}

/// A mode name, or an array of names to combine.
fn mode(v: &DeValue<'_>) -> Result<Mode, String> {
    match v {
        DeValue::String(s) => Mode::from_name(s).ok_or_else(|| unknown_mode(s)),
        DeValue::Array(items) => {
            let names = items
                .iter()
                .map(|i| string(i.get_ref()))
                .collect::<Result<Vec<&str>, String>>()?;
            Mode::combine(&names)
        }
        other => Err(format!(
            "expected a mode name such as \"stealth\" or an array such as [\"advanced\", \"connect\"], found {}",
            describe(other)
        )),
    }
}

#[cfg(test)]
mod tests;
