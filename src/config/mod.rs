//! The configuration: the TOML schema, every key's default (the embedded
//! `config/nftsentry.toml`), and validation whose errors name the file, the
//! line and the key. Submodules: the walk through the TOML document
//! (`walk`), the key names (`keys`), single values (`values`) and their
//! bounds (`limits`), modes (`mode`), the keys of actions (`actions`), port
//! sets and PortSentry's port lists (`ports`), durations (`duration`), the
//! ignore file (`ignore`), the `[crowdsec]` table (`crowdsec`).
//!
//! Knows nothing of sockets or nftables: it only says what was asked for.

mod actions;
mod control_group;
pub mod crowdsec;
mod duration;
pub mod ignore;
mod keys;
mod limits;
mod mode;
mod ports;
mod values;
mod walk;

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::DeTable;

use crate::error::Error;
// `actions` checks its values with the same type messages.
use values::describe;
use walk::{Doc, in_file_order};

pub use actions::{BlockMode, RouteMode, TEMPLATE_VARIABLES};
pub use control_group::ControlGroup;
pub use crowdsec::{CROWDSEC_KEYS, CrowdSec};
pub use duration::{format_duration, parse_duration};
pub use keys::{PROTOCOL_KEYS, TOP_KEYS};
pub use limits::{
    BAN_TIME_MAX, BAN_TIME_MIN, CHAIN_PRIORITY_MAX, CHAIN_PRIORITY_MIN, COMMAND_TIMEOUT_MAX,
    COMMAND_TIMEOUT_MIN, LIVE_PEER_MARK_DEFAULT, LIVE_PEER_SUFFIX, LOG_PREFIX_MAX,
    MAX_TRACKED_SOURCES_MAX, PORT_BANNER_MAX, SCAN_WINDOW_MAX, SCAN_WINDOW_MIN, SET_SIZE_MAX,
    TABLE_NAME_MAX, USER_NAME_MAX,
};
pub use mode::{Mode, Tripwires};
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
    /// `ban_prefix6`: the prefix length an IPv6 ban covers (48 to 128).
    pub ban_prefix6: u8,
    /// `escalate_after`: this many bans in one IPv4 /24 or IPv6 /56 or /48
    /// within `escalate_window` become one ban of the prefix; 0 = never.
    pub escalate_after: u32,
    /// `escalate_window`.
    pub escalate_window: Duration,
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
    /// `metrics_listen`: the address of the Prometheus endpoint; `None`
    /// when set to "" (the default: no endpoint).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `events_file`: one JSON object per probe, ban and unban; `None`
    /// when set to "" (the default).
    pub events_file: Option<PathBuf>,
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
    /// `storm_threshold`: weak-evidence bans per 10 s that start the storm
    /// guard; 0 = never.
    pub storm_threshold: u32,
    /// `storm_hold`: how long the storm guard stays on.
    pub storm_hold: Duration,
    /// `protect_live_peers`: a source with an established TCP connection to
    /// a service of this host is not banned on forgeable evidence.
    pub protect_live_peers: bool,
    /// `live_peer_mark`: the two bits of the conntrack mark that say a
    /// connection fed the live sets in the current period.
    pub live_peer_mark: u32,
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
    /// `[crowdsec]`: sharing bans through a CrowdSec Local API.
    pub crowdsec: CrowdSec,
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
    /// `forgeable`: what a probe that proves nothing of its source does.
    pub forgeable: Forgeable,
}

/// `[tcp]`/`[udp]` `forgeable`: whether a probe without a completed
/// handshake (stealth, advanced, a UDP datagram) may ban.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forgeable {
    /// It bans, as PortSentry's did.
    Ban,
    /// It is logged and counted; only a TCP handshake bans.
    Log,
}

impl Forgeable {
    pub const NAMES: &'static [&'static str] = &["ban", "log"];

    pub fn from_name(name: &str) -> Option<Forgeable> {
        match name {
            "ban" => Some(Forgeable::Ban),
            "log" => Some(Forgeable::Log),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Forgeable::Ban => "ban",
            Forgeable::Log => "log",
        }
    }
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
            doc.top_level_key(&mut c, k, v)?;
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
            forgeable: Forgeable::Ban,
        };
        Config {
            source: source.to_string(),
            table: "nftsentry".to_string(),
            chain_priority: -10,
            nflog_group: 7531,
            log_prefix: "nftsentry: ".to_string(),
            ban_time: Duration::from_secs(86_400),
            ban_prefix6: 64,
            escalate_after: 0,
            escalate_window: Duration::from_secs(3_600),
            set_size: 65_536,
            ignore_file: Some(PathBuf::from("/etc/nftsentry/ignore")),
            ignore_local: true,
            keep_table_on_exit: false,
            table_owner: true,
            control_socket: Some(PathBuf::from("/run/nftsentry/control")),
            control_group: None,
            metrics_listen: None,
            events_file: None,
            scan_trigger: 0,
            scan_window: Duration::from_secs(3_600),
            max_tracked_sources: 100_000,
            resolve_host: false,
            port_banner: String::new(),
            ban_requires_handshake: false,
            storm_threshold: 100,
            storm_hold: Duration::from_secs(600),
            protect_live_peers: true,
            live_peer_mark: LIVE_PEER_MARK_DEFAULT,
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
            crowdsec: CrowdSec::hardwired(),
        }
    }
}

#[cfg(test)]
mod tests;
