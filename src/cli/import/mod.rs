//! `nftsentry import-portsentry`: reads a PortSentry 1.2 portsentry.conf the
//! way PortSentry itself read it, Debian's /etc/default/portsentry (the
//! TCP_MODE and UDP_MODE its init script passed on the command line) and the
//! ignore file, and writes the nftsentry.toml that does the same job, with
//! comments saying which PortSentry line each key comes from and what has no
//! equivalent.
//!
//! PortSentry's reader (ConfigTokenRetrieve in portsentry_io.c) is copied
//! rule for rule, since an old config means what PortSentry made of it, not
//! what it looks like: lines are read in fgets() chunks of at most 1023
//! bytes; a chunk whose first byte is `#` is a comment; a key matches a
//! chunk that contains it anywhere when the byte at offset len(key) is `=`
//! or a space; the FIRST matching chunk decides, and if it has no `"` the
//! key is skipped ("Quotes missing"), even when a later line is quoted; the
//! value runs from the first `"` to the next `"` or unprintable byte (a tab,
//! CR, LF or any non-ASCII byte ends it). Numbers go through atoi().
//!
//! Knows nothing of sockets or nftables; the keys it writes are those of
//! nftsentry.toml(5), and the tests check its output with the config parser.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::cidr::Cidr;
use crate::config::ignore::io_message;
use crate::config::{PortSet, Preset, Proto};
use crate::error::{Error, Result};

/// Where PortSentry 1.2 and Debian keep the config (CONFIG_FILE, compiled in).
pub const DEFAULT_CONF: &str = "/etc/portsentry/portsentry.conf";
/// IGNORE_FILE of Debian's portsentry.conf, used when the config has none.
pub const DEFAULT_IGNORE: &str = "/etc/portsentry/portsentry.ignore";
/// Debian's file of TCP_MODE and UDP_MODE, read by /etc/init.d/portsentry.
pub const DEBIAN_DEFAULT: &str = "/etc/default/portsentry";
/// The hosts.deny PortSentry wrote to (WRAPPER_HOSTS_DENY, compiled in).
pub const HOSTS_DENY: &str = "/etc/hosts.deny";
/// The packaged unit's state directory: the one place (with /run/nftsentry)
/// where the service may write.
pub const SERVICE_DIR: &str = "/var/lib/nftsentry";
/// Where the converted hosts.deny action writes its addresses: a file that
/// /etc/hosts.deny includes, since /etc is read-only under the unit.
pub const SERVICE_HOSTS_DENY: &str = "/var/lib/nftsentry/hosts.deny";
/// nftsentry's default history file, in the state directory.
pub const SERVICE_HISTORY: &str = "/var/lib/nftsentry/history";
/// fail2ban's configuration, searched for jails that read the old history.
pub const FAIL2BAN_DIR: &str = "/etc/fail2ban";
/// Where `systemctl enable` puts the links of enabled units.
pub const SYSTEMD_DIR: &str = "/etc/systemd/system";
/// Debian's init script for PortSentry (Debian 12 and before).
pub const INIT_SCRIPT: &str = "/etc/init.d/portsentry";

/// fgets(buffer, MAXBUF, ...) with PortSentry's MAXBUF of 1024.
const MAXBUF: usize = 1024;
/// MAXSOCKS: PortSentry read at most this many ports of TCP_PORTS/UDP_PORTS.
const MAXSOCKS: usize = 64;
/// The dummy gateway of portsentry.conf's route examples.
const DUMMY_GATEWAY: &str = "333.444.555.666";

/// Every key PortSentry 1.2 reads from portsentry.conf.
pub const KEYS: &[&str] = &[
    "TCP_PORTS",
    "UDP_PORTS",
    "ADVANCED_PORTS_TCP",
    "ADVANCED_PORTS_UDP",
    "ADVANCED_EXCLUDE_TCP",
    "ADVANCED_EXCLUDE_UDP",
    "IGNORE_FILE",
    "HISTORY_FILE",
    "BLOCKED_FILE",
    "RESOLVE_HOST",
    "BLOCK_UDP",
    "BLOCK_TCP",
    "KILL_ROUTE",
    "KILL_HOSTS_DENY",
    "KILL_RUN_CMD",
    "KILL_RUN_CMD_FIRST",
    "SCAN_TRIGGER",
    "PORT_BANNER",
];

// ---------------------------------------------------------------------------
// portsentry.conf as PortSentry reads it
// ---------------------------------------------------------------------------

/// What PortSentry's ConfigTokenRetrieve returns for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    /// No line has the key.
    Absent,
    /// The first line with the key has no `"`: PortSentry logged "Quotes
    /// missing from KEY token. Option skipped" and did not look further.
    Unquoted { line: usize },
    /// The value between the first `"` and the next `"` or unprintable byte.
    Value {
        value: String,
        line: usize,
        /// Text on the line after an unprintable byte ended the value
        /// early (a tab, a non-ASCII character): PortSentry dropped it.
        dropped: Option<String>,
    },
}

impl Token {
    pub fn line(&self) -> Option<usize> {
        match self {
            Token::Absent => None,
            Token::Unquoted { line } | Token::Value { line, .. } => Some(*line),
        }
    }

    pub fn value(&self) -> Option<&str> {
        match self {
            Token::Value { value, .. } => Some(value),
            _ => None,
        }
    }
}

/// One fgets() result: at most MAXBUF - 1 bytes, up to and including a LF.
#[derive(Clone, Debug)]
struct Chunk {
    /// 1-based line of the file the chunk starts on.
    line: usize,
    bytes: Vec<u8>,
}

impl Chunk {
    /// The chunk as C string functions see it: up to the first NUL.
    fn c_str(&self) -> &[u8] {
        let end = self
            .bytes
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.bytes.len());
        &self.bytes[..end]
    }

    fn is_comment(&self) -> bool {
        self.bytes.first() == Some(&b'#')
    }

    /// ConfigTokenRetrieve's test: not a comment, `key` somewhere in it, and
    /// `=` or a space at offset len(key) of the chunk.
    fn has_key(&self, key: &str) -> bool {
        let s = self.c_str();
        !self.is_comment()
            && find(s, key.as_bytes()).is_some()
            && matches!(s.get(key.len()), Some(b'=' | b' '))
    }

    fn is_blank(&self) -> bool {
        self.c_str().iter().all(|b| b.is_ascii_whitespace())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// isprint() in the C locale, which PortSentry never changes.
fn printable(b: u8) -> bool {
    (0x20..=0x7e).contains(&b)
}

/// A portsentry.conf split as PortSentry reads it.
#[derive(Clone, Debug)]
pub struct PortsentryConf {
    /// The file's name in messages and comments.
    pub source: String,
    chunks: Vec<Chunk>,
}

impl PortsentryConf {
    /// Split `bytes` into fgets() chunks; never fails: PortSentry read any
    /// bytes, and so does this.
    pub fn parse(bytes: &[u8], source: &str) -> PortsentryConf {
        let mut chunks = Vec::new();
        let mut line = 1;
        let mut rest = bytes;
        while !rest.is_empty() {
            let limit = rest.len().min(MAXBUF - 1);
            let len = match rest[..limit].iter().position(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => limit,
            };
            let (chunk, tail) = rest.split_at(len);
            chunks.push(Chunk {
                line,
                bytes: chunk.to_vec(),
            });
            if chunk.last() == Some(&b'\n') {
                line += 1;
            }
            rest = tail;
        }
        PortsentryConf {
            source: source.to_string(),
            chunks,
        }
    }

    /// Read a file; an unreadable file is a config error naming it.
    pub fn load(path: &Path) -> Result<PortsentryConf> {
        let source = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| {
            Error::config(format!(
                "{source}: cannot read the PortSentry config: {}",
                io_message(&e)
            ))
        })?;
        Ok(PortsentryConf::parse(&bytes, &source))
    }

    /// The value PortSentry 1.2 reads for `key`.
    pub fn token(&self, key: &str) -> Token {
        let Some(chunk) = self.chunks.iter().find(|c| c.has_key(key)) else {
            return Token::Absent;
        };
        let s = chunk.c_str();
        let Some(q) = s.iter().position(|&b| b == b'"') else {
            return Token::Unquoted { line: chunk.line };
        };
        let after = &s[q + 1..];
        let end = after
            .iter()
            .position(|&b| !printable(b) || b == b'"')
            .unwrap_or(after.len());
        // Printable ASCII only, so this is valid UTF-8.
        let value = String::from_utf8_lossy(&after[..end]).into_owned();
        let dropped = match after.get(end) {
            Some(b'"') | None => None,
            Some(_) => {
                let tail = &after[end..];
                let tail = match tail.iter().position(|&b| b == b'"') {
                    Some(i) => &tail[..i],
                    None => tail,
                };
                let text = String::from_utf8_lossy(tail);
                let text = text.trim_end_matches(['\r', '\n']);
                (!text.is_empty()).then(|| text.to_string())
            }
        };
        Token::Value {
            value,
            line: chunk.line,
            dropped,
        }
    }

    /// Lines PortSentry reads nothing from although they are not comments,
    /// and keys given again after the line that counts: one message each,
    /// `FILE:LINE: ...`.
    pub fn diagnostics(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.chunks {
            if c.is_comment() || c.is_blank() {
                continue;
            }
            let keys: Vec<&str> = KEYS.iter().copied().filter(|k| c.has_key(k)).collect();
            if keys.is_empty() {
                let text = String::from_utf8_lossy(c.c_str());
                let text = text.trim();
                let upper = text.to_ascii_uppercase();
                let hint = KEYS
                    .iter()
                    .find(|k| upper.starts_with(*k) && !text.starts_with(*k))
                    .map(|k| format!(" (keys are upper case: {k})"))
                    .unwrap_or_default();
                out.push(format!(
                    "{}:{}: PortSentry reads no setting from `{}`; ignored{hint}",
                    self.source,
                    c.line,
                    shorten(text)
                ));
                continue;
            }
            for k in keys {
                if let Some(first) = self.token(k).line() {
                    if first != c.line {
                        out.push(format!(
                            "{}:{}: {k} again: PortSentry uses only the first one, line {first}",
                            self.source, c.line
                        ));
                    }
                }
            }
        }
        out
    }
}

fn shorten(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(MAX).collect::<String>())
    }
}

/// C's atoi(): leading white space, a sign, digits; anything after them is
/// ignored. Also says whether anything other than white space followed.
pub fn atoi(s: &str) -> (i64, bool) {
    let t = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let n_digits = digits.bytes().take_while(u8::is_ascii_digit).count();
    let mut n: i64 = 0;
    for b in digits[..n_digits].bytes() {
        // atoi overflows into undefined behaviour; an int holds no more.
        n = (n * 10 + i64::from(b - b'0')).min(i64::from(i32::MAX) + 1);
    }
    let n = if neg { -n } else { n.min(i64::from(i32::MAX)) };
    let clean = n_digits > 0 && digits[n_digits..].trim().is_empty();
    (n, clean)
}

// ---------------------------------------------------------------------------
// /etc/default/portsentry
// ---------------------------------------------------------------------------

/// One protocol's mode as Debian's init script starts PortSentry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModeSetting {
    /// The value as written: "tcp", "stcp", "atcp", "udp", "sudp", "audp" or "".
    pub value: String,
    /// The line of the (last) assignment; `None` when the file has none.
    pub line: Option<usize>,
    /// The enabled unit it comes from (Debian 13's portsentry@MODE.service)
    /// instead of a line of /etc/default/portsentry.
    pub unit: Option<String>,
}

impl ModeSetting {
    /// nftsentry's mode for it.
    pub fn mode(&self) -> &'static str {
        match self.value.as_str() {
            "tcp" | "udp" => "connect",
            "stcp" | "sudp" => "stealth",
            "atcp" | "audp" => "advanced",
            _ => "off",
        }
    }
}

/// Debian's /etc/default/portsentry: TCP_MODE and UDP_MODE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebianDefault {
    pub source: String,
    pub tcp: ModeSetting,
    pub udp: ModeSetting,
    /// Lines that are not simple assignments, skipped: `FILE:LINE: ...`.
    pub warnings: Vec<String>,
}

impl DebianDefault {
    /// The file is shell that the init script sources, so the last
    /// assignment wins. Only plain assignments are understood; TCP_MODE or
    /// UDP_MODE set in any other way, or to a mode the init script refuses,
    /// is an error (PortSentry did not start with it either).
    pub fn parse(text: &str, source: &str) -> Result<DebianDefault> {
        let mut d = DebianDefault {
            source: source.to_string(),
            tcp: ModeSetting {
                value: String::new(),
                line: None,
                unit: None,
            },
            udp: ModeSetting {
                value: String::new(),
                line: None,
                unit: None,
            },
            warnings: Vec::new(),
        };
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let l = l.strip_prefix("export ").map_or(l, str::trim_start);
            let parsed = l
                .split_once('=')
                .filter(|(name, _)| is_shell_name(name))
                .map(|(name, value)| (name, shell_word(value)));
            let mentions_mode = l.contains("TCP_MODE") || l.contains("UDP_MODE");
            match parsed {
                Some((name @ ("TCP_MODE" | "UDP_MODE"), Ok(value))) => {
                    let (setting, valid) = if name == "TCP_MODE" {
                        (&mut d.tcp, ["tcp", "stcp", "atcp", ""])
                    } else {
                        (&mut d.udp, ["udp", "sudp", "audp", ""])
                    };
                    if !valid.contains(&value.as_str()) {
                        return Err(Error::config(format!(
                            "{source}:{line}: {name}=\"{value}\" is not a mode: PortSentry's init script accepts {} (or nothing) and refused to start with anything else",
                            valid[..3].join(", ")
                        )));
                    }
                    *setting = ModeSetting {
                        value,
                        line: Some(line),
                        unit: None,
                    };
                }
                Some((name @ ("TCP_MODE" | "UDP_MODE"), Err(why))) => {
                    return Err(Error::config(format!(
                        "{source}:{line}: cannot read {name}: {why}; write it as {name}=\"{}\"",
                        if name == "TCP_MODE" { "stcp" } else { "sudp" }
                    )));
                }
                Some((_, _)) => {}
                None if mentions_mode => {
                    return Err(Error::config(format!(
                        "{source}:{line}: cannot read `{}`: only plain assignments such as TCP_MODE=\"stcp\" are understood",
                        shorten(l)
                    )));
                }
                None => d.warnings.push(format!(
                    "{source}:{line}: `{}` is not an assignment; skipped",
                    shorten(l)
                )),
            }
        }
        Ok(d)
    }

    pub fn load(path: &Path) -> Result<DebianDefault> {
        let source = path.display().to_string();
        let text = std::fs::read(path)
            .map_err(|e| Error::config(format!("{source}: cannot read: {}", io_message(&e))))?;
        DebianDefault::parse(&String::from_utf8_lossy(&text), &source)
    }

    /// The modes of Debian 13's enabled units (`portsentry@stcp.service`:
    /// TCP in stealth mode), which do not read /etc/default/portsentry.
    /// `source` names where they were found.
    pub fn from_units(units: &[String], source: &str) -> DebianDefault {
        let mut d = DebianDefault::parse("", source).unwrap_or_else(|_| unreachable!());
        for u in units {
            let Some(mode) = u
                .strip_prefix("portsentry@")
                .and_then(|m| m.strip_suffix(".service"))
            else {
                continue;
            };
            let setting = match mode {
                "tcp" | "stcp" | "atcp" => &mut d.tcp,
                "udp" | "sudp" | "audp" => &mut d.udp,
                _ => {
                    d.warnings.push(format!(
                        "{source}: {u} is not a PortSentry mode (tcp, stcp, atcp, udp, sudp, audp); left out"
                    ));
                    continue;
                }
            };
            if let Some(first) = &setting.unit {
                d.warnings.push(format!(
                    "{source}: {u} and {first} are both enabled: PortSentry ran both; converted {first} only"
                ));
                continue;
            }
            *setting = ModeSetting {
                value: mode.to_string(),
                line: None,
                unit: Some(u.clone()),
            };
        }
        d
    }
}

/// How PortSentry is started on this system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Services {
    /// Debian 13 (portsentry 1.2-15 and later): enabled instances of
    /// portsentry@.service, named by their mode, sorted.
    Units(Vec<String>),
    /// Debian 12 and before: the init script, modes in
    /// /etc/default/portsentry.
    InitScript,
    /// Neither (PortSentry not installed, or started some other way).
    Unknown,
}

/// PortSentry's units enabled in `systemd_dir` (links in its `*.wants`
/// directories), else its init script if there is one.
pub fn find_services(systemd_dir: &Path, init_script: &Path) -> Services {
    let mut units = Vec::new();
    if let Ok(rd) = std::fs::read_dir(systemd_dir) {
        for wants in rd.flatten() {
            if !wants.file_name().to_string_lossy().ends_with(".wants") {
                continue;
            }
            for e in std::fs::read_dir(wants.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("portsentry@") && name.ends_with(".service") {
                    units.push(name);
                }
            }
        }
    }
    units.sort();
    units.dedup();
    if !units.is_empty() {
        Services::Units(units)
    } else if init_script.exists() {
        Services::InitScript
    } else {
        Services::Unknown
    }
}

/// Stopping PortSentry for good, as its services are set up.
fn services_todo(services: &Services) -> Option<Todo> {
    match services {
        Services::Units(units) => Some(Todo {
            why: format!(
                "PortSentry: its units {} would start again at boot and take ports from nftsentry: disable them (and stop them, if they still run).",
                units.join(", ")
            ),
            commands: vec![format!("systemctl disable --now {}", units.join(" "))],
        }),
        Services::InitScript => Some(Todo {
            why: format!(
                "PortSentry: its init script {INIT_SCRIPT} would start it again at boot and take ports from nftsentry: disable it (and stop it, if it still runs; `systemctl disable --now` does not stop a service of an init script)."
            ),
            commands: vec![
                "systemctl stop portsentry".to_string(),
                "systemctl disable portsentry".to_string(),
            ],
        }),
        Services::Unknown => None,
    }
}

fn is_shell_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// The value of a plain shell assignment: one word, double-quoted without
/// expansions, single-quoted or bare, then an optional `# comment`.
fn shell_word(v: &str) -> std::result::Result<String, String> {
    let (word, rest) = match v.as_bytes().first() {
        Some(&q @ (b'"' | b'\'')) => {
            let q = q as char;
            let Some(end) = v[1..].find(q) else {
                return Err("no closing quote".to_string());
            };
            let word = &v[1..1 + end];
            if q == '"' && word.contains(['$', '`', '\\']) {
                return Err("the value uses shell expansion".to_string());
            }
            (word, &v[end + 2..])
        }
        _ => {
            let end = v.find([' ', '\t']).unwrap_or(v.len());
            let word = &v[..end];
            if word.contains(['$', '`', '\\', '"', '\'', ';', '&', '|', '(', ')', '<', '>']) {
                return Err("the value uses shell syntax".to_string());
            }
            (word, &v[end..])
        }
    };
    let rest = rest.trim_start();
    if !rest.is_empty() && !rest.starts_with('#') {
        return Err(format!("unexpected `{}` after the value", shorten(rest)));
    }
    Ok(word.to_string())
}

// ---------------------------------------------------------------------------
// The ignore file
// ---------------------------------------------------------------------------

/// PortSentry's ignore file, checked line by line with nftsentry's parser.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IgnoreImport {
    pub source: String,
    /// Valid entries as written (trailing comments kept), with their line.
    pub entries: Vec<(usize, String)>,
    /// Lines nftsentry cannot read: (line, text, why).
    pub invalid: Vec<(usize, String, String)>,
    /// Entries that Debian's portsentry-build-ignore-file copied from the
    /// host's interfaces: `ignore_local` covers them.
    pub local: Vec<String>,
}

/// The marker of the host-address section of Debian's generated file.
const DEBIAN_DYNAMIC: &str = "# dynamically fetched IPs";

impl IgnoreImport {
    pub fn parse(text: &str, source: &str) -> IgnoreImport {
        let mut out = IgnoreImport {
            source: source.to_string(),
            ..IgnoreImport::default()
        };
        let mut in_dynamic = false;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.starts_with(DEBIAN_DYNAMIC) {
                in_dynamic = true;
            }
            let entry = l.split_once('#').map_or(l, |(e, _)| e).trim();
            if entry.is_empty() {
                continue;
            }
            // The ignore parser on this one line; its message starts with
            // the source and line we give it, which are ours to strip.
            match crate::config::ignore::parse(l, "") {
                Ok(_) if in_dynamic => out.local.push(entry.to_string()),
                Ok(_) => out.entries.push((line, l.to_string())),
                Err(e) => {
                    let why = e
                        .message
                        .strip_prefix(":1: ")
                        .unwrap_or(&e.message)
                        .to_string();
                    out.invalid.push((line, l.to_string(), why));
                }
            }
        }
        out
    }

    /// The entries as parsed networks.
    pub fn cidrs(&self) -> Vec<Cidr> {
        self.entries
            .iter()
            .filter_map(|(_, l)| crate::config::ignore::parse(l, "").ok())
            .flatten()
            .collect()
    }

    /// The nftsentry ignore file with these entries.
    pub fn file_text(&self) -> String {
        let mut s = format!(
            "# nftsentry ignore file, written by `nftsentry import-portsentry` from\n\
             # {}: addresses and networks that are never banned, one per line\n\
             # (see ignore_file in nftsentry.toml(5)).\n",
            self.source
        );
        if !self.local.is_empty() {
            s.push_str(
                "# This host's own addresses are not listed: ignore_local = true covers them.\n",
            );
        }
        s.push('\n');
        for (_, e) in &self.entries {
            s.push_str(e);
            s.push('\n');
        }
        for (line, text, why) in &self.invalid {
            let _ = writeln!(s, "# skipped, line {line}: {text}   ({why})");
        }
        s
    }
}

// ---------------------------------------------------------------------------
// KILL_ROUTE
// ---------------------------------------------------------------------------

/// What a KILL_ROUTE command does, as far as nftsentry is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KillRoute {
    /// A route of this type (`route` key): "blackhole", "unreachable" or
    /// "prohibit"; the string says which PortSentry form it was.
    Route(&'static str, &'static str),
    /// A packet filter rule that drops or rejects the source: nftsentry's
    /// ban already does that.
    FilterDrop(&'static str),
    /// Anything else: kept as a command (`kill_route`).
    Command,
    /// No `$TARGET$`: PortSentry skipped it ("No target variable").
    NoTarget,
}

fn is_target(t: &str) -> bool {
    t == "$TARGET$" || t == "$TARGET$/32"
}

fn program(t: &str) -> &str {
    t.rsplit('/').next().unwrap_or(t)
}

/// Recognise the KILL_ROUTE forms of portsentry.conf and of Linux's `ip`.
pub fn classify_kill_route(cmd: &str) -> KillRoute {
    if !cmd.contains("$TARGET$") {
        return KillRoute::NoTarget;
    }
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let Some((&first, args)) = words.split_first() else {
        return KillRoute::NoTarget;
    };
    let recognised = match program(first) {
        "route" => classify_route(args),
        "ip" => classify_ip(args),
        "iptables" | "ip6tables" | "ipchains" => classify_iptables(args),
        "ipfwadm" => classify_ipfwadm(args),
        "ipfw" => classify_ipfw(args),
        _ => None,
    };
    recognised.unwrap_or(KillRoute::Command)
}

/// net-tools/BSD `route add`: `-host T reject`, `T gw G`, `T G [1]`,
/// `-blackhole` forms. A gateway counts only when it is PortSentry's dummy
/// 333.444.555.666 or 127.0.0.1, which its comments offer for "the same
/// effect": a route to a real host stays a command.
fn classify_route(args: &[&str]) -> Option<KillRoute> {
    let (&add, rest) = args.split_first()?;
    if add != "add" {
        return None;
    }
    let (mut target, mut reject, mut blackhole) = (false, false, false);
    let mut gateway: Option<&str> = None;
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            "-host" | "host" => {}
            "-net" | "net" => {}
            "-netmask" | "netmask" if rest.get(i + 1) == Some(&"255.255.255.255") => i += 1,
            "reject" | "-reject" => reject = true,
            "-blackhole" | "blackhole" => blackhole = true,
            "gw" => {
                gateway = Some(rest.get(i + 1)?);
                i += 1;
            }
            // Sun's and NEXTSTEP's metric after the gateway.
            "1" if gateway.is_some() => {}
            t if is_target(t) && !target => target = true,
            g if gateway.is_none() && (g == DUMMY_GATEWAY || g == "127.0.0.1") => gateway = Some(g),
            _ => return None,
        }
        i += 1;
    }
    if !target {
        return None;
    }
    match (reject, blackhole, gateway) {
        (true, false, None) => Some(KillRoute::Route("unreachable", "a reject route")),
        (false, true, _) => Some(KillRoute::Route("blackhole", "a blackhole route")),
        (false, false, Some(DUMMY_GATEWAY)) => Some(KillRoute::Route(
            "blackhole",
            "a route through the dummy gateway 333.444.555.666",
        )),
        (false, false, Some("127.0.0.1")) => Some(KillRoute::Route(
            "blackhole",
            "a route through the loopback address",
        )),
        _ => None,
    }
}

/// `ip [-4|-6] route add|replace blackhole|unreachable|prohibit T`.
fn classify_ip(args: &[&str]) -> Option<KillRoute> {
    let args = match args.first() {
        Some(&"-4" | &"-6") => &args[1..],
        _ => args,
    };
    let [obj, verb, kind, target] = args else {
        return None;
    };
    let is_route = !obj.is_empty() && "route".starts_with(obj);
    let is_add = ["add", "a", "replace", "r"].contains(verb);
    if !is_route || !is_add || !is_target(target) {
        return None;
    }
    match *kind {
        "blackhole" => Some(KillRoute::Route("blackhole", "an ip blackhole route")),
        "unreachable" => Some(KillRoute::Route("unreachable", "an ip unreachable route")),
        "prohibit" => Some(KillRoute::Route("prohibit", "an ip prohibit route")),
        _ => None,
    }
}

/// `iptables|ipchains -I|-A INPUT [n] -s T -j DROP|DENY|REJECT [-l] [-w]`.
fn classify_iptables(args: &[&str]) -> Option<KillRoute> {
    let (mut chain, mut source, mut verdict) = (false, false, None);
    let mut i = 0;
    while i < args.len() {
        match args[i] {
            "-I" | "-A" | "--insert" | "--append" => {
                if !matches!(args.get(i + 1), Some(&"INPUT" | &"input")) {
                    return None;
                }
                chain = true;
                i += 1;
                // -I INPUT 1: a rule position.
                if args.get(i + 1).is_some_and(|n| n.parse::<u32>().is_ok()) {
                    i += 1;
                }
            }
            "-s" | "--source" | "--src" => {
                if !args.get(i + 1).is_some_and(|t| is_target(t)) {
                    return None;
                }
                source = true;
                i += 1;
            }
            "-j" | "--jump" => {
                verdict = Some(*args.get(i + 1)?);
                i += 1;
            }
            "-l" | "-w" | "--wait" => {}
            _ => return None,
        }
        i += 1;
    }
    match (chain, source, verdict) {
        (true, true, Some("DROP" | "DENY")) => Some(KillRoute::FilterDrop("drops")),
        (true, true, Some("REJECT")) => Some(KillRoute::FilterDrop("rejects")),
        _ => None,
    }
}

/// `ipfwadm -I -i deny -S T [-o]`.
fn classify_ipfwadm(args: &[&str]) -> Option<KillRoute> {
    match args {
        ["-I", "-i", "deny" | "reject", "-S", t]
        | ["-I", "-i", "deny" | "reject", "-S", t, "-o"]
            if is_target(t) =>
        {
            Some(KillRoute::FilterDrop("drops"))
        }
        _ => None,
    }
}

/// `ipfw add [n] deny|drop all|ip from T[:255.255.255.255] to any`.
fn classify_ipfw(args: &[&str]) -> Option<KillRoute> {
    let args = match args {
        ["add", n, rest @ ..] if n.parse::<u32>().is_ok() => rest,
        ["add", rest @ ..] => rest,
        _ => return None,
    };
    match args {
        ["deny" | "drop", "all" | "ip", "from", t, "to", "any"]
            if is_target(t) || *t == "$TARGET$:255.255.255.255" =>
        {
            Some(KillRoute::FilterDrop("drops"))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// The conversion
// ---------------------------------------------------------------------------

/// What to read and where the ignore entries go.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// portsentry.conf.
    pub conf: PathBuf,
    /// The ignore file; `None`: IGNORE_FILE of the config.
    pub ignore: Option<PathBuf>,
    /// Debian's defaults file; `None`: /etc/default/portsentry if it exists.
    pub default: Option<PathBuf>,
    /// Write the ignore entries there (and point `ignore_file` at it)
    /// instead of listing them as comments.
    pub write_ignore: Option<PathBuf>,
    /// fail2ban's configuration directory; `None`: /etc/fail2ban.
    pub fail2ban: Option<PathBuf>,
    /// Where enabled units are linked, and PortSentry's init script;
    /// `None`: /etc/systemd/system and /etc/init.d/portsentry.
    pub systemd_dir: Option<PathBuf>,
    pub init_script: Option<PathBuf>,
}

/// The result: the config text, the ignore file to write (when asked
/// for), and warnings for standard error.
#[derive(Clone, Debug)]
pub struct Import {
    pub toml: String,
    /// (path, content) of the ignore file to write.
    pub ignore_file: Option<(PathBuf, String)>,
    pub warnings: Vec<String>,
    /// What is left to do by hand, as root, for the converted config to do
    /// PortSentry's job under the packaged unit (`todo_text`).
    pub todo: Vec<Todo>,
    /// PortSentry's history file, when the config writes nftsentry's
    /// instead (the service cannot write it).
    pub old_history: Option<String>,
}

/// One step left to do after the import: why, then shell commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Todo {
    pub why: String,
    pub commands: Vec<String>,
}

/// The steps as printed on standard error: a heading, then for each step
/// its reason as a `#` comment and its commands, indented, so that the
/// block can be pasted into a root shell as it is.
pub fn todo_text(todo: &[Todo]) -> String {
    if todo.is_empty() {
        return String::new();
    }
    let mut s = String::from("nftsentry: to finish the migration, run as root:\n");
    for t in todo {
        let mut c = String::new();
        comment_lines(&t.why, &mut c);
        for line in c.lines() {
            let _ = writeln!(s, "    {line}");
        }
        for cmd in &t.commands {
            let _ = writeln!(s, "    {cmd}");
        }
    }
    s
}

/// `s` as one word for /bin/sh: in single quotes, each `'` as `'\''`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Read the files `opts` names and convert them.
pub fn import(opts: &Options) -> Result<Import> {
    let conf = PortsentryConf::load(&opts.conf)?;

    let systemd_dir = opts
        .systemd_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(SYSTEMD_DIR));
    let services = find_services(
        &systemd_dir,
        opts.init_script
            .as_deref()
            .unwrap_or(Path::new(INIT_SCRIPT)),
    );
    let mut notes = Vec::new();
    // Debian 13's units carry the modes in their names and do not read
    // /etc/default/portsentry, which its postinst still writes.
    let default = match (&opts.default, &services) {
        (Some(p), _) => Some(DebianDefault::load(p)?),
        (None, Services::Units(units)) => {
            if Path::new(DEBIAN_DEFAULT).exists() {
                notes.push(format!(
                    "the modes come from the enabled units {}: PortSentry's systemd units do not read {DEBIAN_DEFAULT}",
                    units.join(", ")
                ));
            }
            Some(DebianDefault::from_units(
                units,
                &format!("{} (enabled units)", systemd_dir.display()),
            ))
        }
        (None, _) if Path::new(DEBIAN_DEFAULT).exists() => {
            Some(DebianDefault::load(Path::new(DEBIAN_DEFAULT))?)
        }
        (None, _) => None,
    };

    let ignore = match &opts.ignore {
        Some(p) => Some(load_ignore(p)?),
        None => {
            let named = match conf.token("IGNORE_FILE") {
                Token::Value { value, .. } if !value.is_empty() => absolute(&value),
                _ => DEFAULT_IGNORE.to_string(),
            };
            let static_file = format!("{named}.static");
            if Path::new(&named).exists() {
                Some(load_ignore(Path::new(&named))?)
            } else if Path::new(&static_file).exists() {
                // Debian builds portsentry.ignore from the .static file when
                // PortSentry starts; before the first start only .static is there.
                notes.push(format!(
                    "{named} does not exist; its entries were read from {static_file}, which Debian's init script builds it from"
                ));
                Some(load_ignore(Path::new(&static_file))?)
            } else {
                notes.push(format!(
                    "the ignore file {named} does not exist: no entries imported"
                ));
                None
            }
        }
    };

    let write_ignore = match &opts.write_ignore {
        Some(p) if p.is_absolute() => Some(p.clone()),
        Some(p) => Some(
            std::env::current_dir()
                .map_err(|e| Error::other(format!("current directory: {}", io_message(&e))))?
                .join(p),
        ),
        None => None,
    };
    let mut out = convert(
        &conf,
        default.as_ref(),
        ignore.as_ref(),
        write_ignore.as_deref(),
        &notes,
    );
    if let Some(t) = services_todo(&services) {
        out.todo.insert(0, t);
    }
    if let Some(old) = out.old_history.clone() {
        let dir = opts
            .fail2ban
            .clone()
            .unwrap_or_else(|| PathBuf::from(FAIL2BAN_DIR));
        if let Some(t) = fail2ban_todo(&dir, &old) {
            out.todo.push(t);
        }
    }
    if let (Some(path), Some(ig)) = (write_ignore, ignore.as_ref()) {
        out.ignore_file = Some((path, ig.file_text()));
    } else if let (Some(path), None) = (&opts.write_ignore, ignore.as_ref()) {
        out.warnings.push(format!(
            "no ignore file was read, so {} was not written",
            path.display()
        ));
    }
    Ok(out)
}

/// The jails of fail2ban's configuration in `dir` (jail.conf, jail.local,
/// jail.d/*.conf and *.local) whose `logpath` names `old`, in the order
/// found, each once.
pub fn fail2ban_jails(dir: &Path, old: &str) -> Vec<String> {
    let mut files = vec![dir.join("jail.conf"), dir.join("jail.local")];
    if let Ok(rd) = std::fs::read_dir(dir.join("jail.d")) {
        let mut more: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "conf" || x == "local"))
            .collect();
        more.sort();
        files.extend(more);
    }
    let mut jails: Vec<String> = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let mut section = String::new();
        // A logpath value may go on over indented lines.
        let mut in_logpath = false;
        for raw in text.lines() {
            let l = raw.trim();
            if l.starts_with('#') || l.starts_with(';') {
                continue;
            }
            if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                section = name.trim().to_string();
                in_logpath = false;
                continue;
            }
            let continued = in_logpath && raw.starts_with([' ', '\t']) && !l.is_empty();
            let value = match l.split_once(['=', ':']) {
                Some((k, v)) if !continued && k.trim() == "logpath" => {
                    in_logpath = true;
                    v
                }
                _ if continued => l,
                _ => {
                    in_logpath = false;
                    continue;
                }
            };
            let names = value.split_whitespace().any(|w| w == old);
            if names && section != "DEFAULT" && !section.is_empty() && !jails.contains(&section) {
                jails.push(section.clone());
            }
        }
    }
    jails
}

/// Point fail2ban's jails on PortSentry's history file at nftsentry's.
fn fail2ban_todo(dir: &Path, old: &str) -> Option<Todo> {
    let jails = fail2ban_jails(dir, old);
    if jails.is_empty() {
        return None;
    }
    let mut body = String::new();
    for j in &jails {
        let _ = write!(body, "[{j}]\\nlogpath = {SERVICE_HISTORY}\\n");
    }
    let file = dir.join("jail.d").join("nftsentry-history.local");
    Some(Todo {
        why: format!(
            "fail2ban: the jail{} {} read{} PortSentry's history file {old}; nftsentry writes the same lines to {SERVICE_HISTORY}, so point {} there (once nftsentry has started: the file is made for its user).",
            if jails.len() == 1 { "" } else { "s" },
            jails
                .iter()
                .map(|j| format!("[{j}]"))
                .collect::<Vec<_>>()
                .join(", "),
            if jails.len() == 1 { "s" } else { "" },
            if jails.len() == 1 { "it" } else { "them" },
        ),
        commands: vec![
            // fail2ban refuses a jail whose file does not exist: make it now,
            // for the service's user (the owner of the state directory once
            // nftsentry has started), as the daemon would at its first ban.
            format!(
                "[ -e {SERVICE_HISTORY} ] || install -m 600 -o \"$(stat -Lc %u {SERVICE_DIR})\" -g \"$(stat -Lc %g {SERVICE_DIR})\" /dev/null {SERVICE_HISTORY}"
            ),
            format!(
                "printf {} > {}",
                sh_quote(&body),
                sh_quote(&file.display().to_string())
            ),
            "systemctl try-reload-or-restart fail2ban".to_string(),
        ],
    })
}

/// Write the ignore file `import` produced: a new file renamed over the
/// old one, so an interrupted import leaves the old file whole.
pub fn write_file(path: &Path, text: &str) -> Result<()> {
    let how = crate::files::Replace {
        mode: 0o644,
        owner: None,
        infix: ".import-tmp.",
        make_dir: false,
    };
    crate::files::replace(path, text.as_bytes(), &how)
        .map(drop)
        .map_err(|e| {
            let e = std::io::Error::from(e);
            Error::other(format!(
                "{}: cannot write the ignore file: {}",
                path.display(),
                io_message(&e)
            ))
        })
}

fn load_ignore(path: &Path) -> Result<IgnoreImport> {
    let source = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        Error::config(format!(
            "{source}: cannot read the ignore file: {}",
            io_message(&e)
        ))
    })?;
    Ok(IgnoreImport::parse(
        &String::from_utf8_lossy(&bytes),
        &source,
    ))
}

/// PortSentry chdir()s to / before it opens its files: a relative path is
/// relative to /.
fn absolute(p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

/// One key of the generated file, with the comment lines above it.
struct Entry {
    comment: Vec<String>,
    /// `None`: a comment block only.
    line: Option<String>,
}

#[derive(Default)]
struct Out {
    top: Vec<Entry>,
    tcp: Vec<Entry>,
    udp: Vec<Entry>,
    no_equivalent: Vec<String>,
    warnings: Vec<String>,
    /// Whether `command` was written (block mode "command" needs one).
    has_command: bool,
    todo: Vec<Todo>,
    old_history: Option<String>,
}

impl Out {
    fn section(&mut self, proto: Option<Proto>) -> &mut Vec<Entry> {
        match proto {
            None => &mut self.top,
            Some(Proto::Tcp) => &mut self.tcp,
            Some(Proto::Udp) => &mut self.udp,
        }
    }

    fn key(&mut self, proto: Option<Proto>, comment: Vec<String>, key: &str, value: String) {
        self.section(proto).push(Entry {
            comment,
            line: Some(format!("{key} = {value}")),
        });
    }

    fn comment(&mut self, proto: Option<Proto>, comment: Vec<String>) {
        self.section(proto).push(Entry {
            comment,
            line: None,
        });
    }
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// `KEY="value" (portsentry.conf:12)` as PortSentry read it.
fn origin(conf: &PortsentryConf, key: &str, t: &Token) -> String {
    let file = Path::new(&conf.source)
        .file_name()
        .map_or(conf.source.clone(), |f| f.to_string_lossy().into_owned());
    match t {
        Token::Absent => format!("{key}: not set in {file}"),
        Token::Unquoted { line } => {
            format!("{key} ({file}:{line}): no quotes, so PortSentry skipped it")
        }
        Token::Value { value, line, .. } => format!("{key}=\"{value}\" ({file}:{line})"),
    }
}

/// Every note on a value that PortSentry cut short.
fn cut_warning(conf: &PortsentryConf, key: &str, t: &Token) -> Option<String> {
    match t {
        Token::Value {
            dropped: Some(d),
            line,
            value,
        } => Some(format!(
            "{}:{line}: {key}: PortSentry's value ends at an unprintable character (tab or non-ASCII): it read \"{value}\" and dropped `{}`",
            conf.source,
            shorten(d)
        )),
        Token::Unquoted { line } => Some(format!(
            "{}:{line}: {key} has no quotes: PortSentry skipped it (\"Quotes missing\")",
            conf.source
        )),
        _ => None,
    }
}

/// Ports of a PortSentry list (strtok on `,`, atoi each), with warnings for
/// items that are not plain ports.
fn port_list(value: &str, key: &str, line: usize, source: &str) -> (Vec<u16>, Vec<String>) {
    let mut ports = Vec::new();
    let mut warnings = Vec::new();
    for item in value.split(',').filter(|s| !s.is_empty()) {
        let (n, clean) = atoi(item);
        match u16::try_from(n) {
            Ok(p) if p >= 1 => {
                if !clean {
                    warnings.push(format!(
                        "{source}:{line}: {key}: `{}` is port {p} to PortSentry (it reads the leading digits only)",
                        item.trim()
                    ));
                }
                ports.push(p);
            }
            _ => warnings.push(format!(
                "{source}:{line}: {key}: `{}` is not a port from 1 to 65535; left out",
                item.trim()
            )),
        }
    }
    (ports, warnings)
}

/// A port set as nftsentry.toml writes it: a preset name when it is one.
fn ports_value(set: &PortSet, proto: Proto) -> (String, Option<&'static str>) {
    for preset in [Preset::Aware, Preset::Paranoid, Preset::BareBones] {
        if *set == PortSet::preset(preset, proto) {
            return (toml_str(preset.name()), Some(preset.name()));
        }
    }
    (toml_str(&set.to_string()), None)
}

/// Whether /bin/sh would do more with `cmd` than split it into words.
fn needs_shell(cmd: &str) -> bool {
    let plain = cmd
        .replace("$TARGET$", "")
        .replace("$PORT$", "")
        .replace("$MODE$", "");
    // `NAME=value cmd` sets a variable; `=` elsewhere is an ordinary byte.
    let assignment = plain
        .split_whitespace()
        .next()
        .is_some_and(|w| w.contains('='));
    assignment
        || plain.contains([
            '|', '&', ';', '<', '>', '(', ')', '$', '`', '\\', '"', '\'', '*', '?', '[', ']', '{',
            '}', '~', '#', '!',
        ])
}

/// Build the nftsentry.toml for a parsed PortSentry setup. `write_ignore`
/// is where the ignore entries will be written; without it they are listed
/// as comments. `notes` go into the header.
pub fn convert(
    conf: &PortsentryConf,
    default: Option<&DebianDefault>,
    ignore: Option<&IgnoreImport>,
    write_ignore: Option<&Path>,
    notes: &[String],
) -> Import {
    let mut o = Out::default();
    o.warnings.extend(conf.diagnostics());
    for k in KEYS {
        o.warnings.extend(cut_warning(conf, k, &conf.token(k)));
    }
    if let Some(d) = default {
        o.warnings.extend(d.warnings.iter().cloned());
    }

    convert_detection(conf, &mut o);
    convert_actions(conf, &mut o);
    convert_files(conf, ignore, write_ignore, &mut o);
    for proto in [Proto::Tcp, Proto::Udp] {
        convert_protocol(conf, default, proto, &mut o);
    }

    let mut header_notes: Vec<String> = notes.to_vec();
    header_notes.extend(o.warnings.iter().cloned());
    let toml = render(conf, default, ignore, write_ignore, &header_notes, &o);
    let mut warnings = notes.to_vec();
    warnings.extend(std::mem::take(&mut o.warnings));
    if let Some(ig) = ignore {
        for (line, text, why) in &ig.invalid {
            warnings.push(format!(
                "{}:{line}: `{}` skipped: {why}",
                ig.source,
                shorten(text)
            ));
        }
    }
    Import {
        toml,
        ignore_file: None,
        warnings,
        todo: o.todo,
        old_history: o.old_history,
    }
}

fn convert_detection(conf: &PortsentryConf, o: &mut Out) {
    let t = conf.token("SCAN_TRIGGER");
    let n = match t.value() {
        Some(v) => atoi(v).0,
        // PortSentry: "Could not read SCAN_TRIGGER ... Disabling SCAN
        // DETECTION TRIGGER", i.e. 0.
        None => 0,
    };
    // CheckStateEngine counts the probe at hand: the Nth probe from a
    // source acts, "1" like "0" on the first, and so does nftsentry's
    // scan_trigger; a negative value acts on the first probe too.
    let trigger = n.clamp(0, i64::from(u32::MAX));
    let mut c = vec![origin(conf, "SCAN_TRIGGER", &t)];
    c.push(format!(
        "The same meaning: probe number {} from a source is banned.",
        n.max(1)
    ));
    c.push(
        "PortSentry remembered the last 50 sources without time limit; nftsentry counts probes within scan_window (default 1h)."
            .to_string(),
    );
    o.key(None, c, "scan_trigger", trigger.to_string());

    let t = conf.token("RESOLVE_HOST");
    let on = t.value().is_some_and(|v| atoi(v).0 != 0);
    let mut c = vec![origin(conf, "RESOLVE_HOST", &t)];
    if let Some(v) = t.value() {
        if !matches!(v, "0" | "1") {
            c.push(format!(
                "PortSentry resolved names when atoi(\"{v}\") was not 0: {}.",
                if on { "it was" } else { "it was 0" }
            ));
        }
    }
    o.key(None, c, "resolve_host", on.to_string());

    let t = conf.token("PORT_BANNER");
    match t.value() {
        Some(v) => {
            let c = vec![
                origin(conf, "PORT_BANNER", &t),
                "Sent to clients of connect mode (TCP and UDP), as PortSentry's -tcp/-udp did."
                    .to_string(),
            ];
            o.key(None, c, "port_banner", toml_str(v));
        }
        None => o.comment(
            None,
            vec![origin(conf, "PORT_BANNER", &t) + ": no banner, as in nftsentry's default."],
        ),
    }
}

fn convert_actions(conf: &PortsentryConf, o: &mut Out) {
    // command_shell covers both kill_route and command: set it when either
    // needs /bin/sh, as PortSentry's system(3) gave them.
    let mut shell_for = Vec::new();

    // KILL_ROUTE.
    let t = conf.token("KILL_ROUTE");
    let mut c = vec![origin(conf, "KILL_ROUTE", &t)];
    match t.value().filter(|v| !v.trim().is_empty()) {
        None => {
            c.push("No route action, as in nftsentry's default (route = \"off\").".to_string());
            o.comment(None, c);
        }
        Some(cmd) => match classify_kill_route(cmd) {
            KillRoute::Route(kind, form) => {
                c.push(format!(
                    "This is {form}: nftsentry adds a native {kind} route for a banned source itself (rtnetlink, no command) and removes it when the ban ends."
                ));
                o.key(None, c, "route", toml_str(kind));
            }
            KillRoute::FilterDrop(what) => {
                // The nft ban drops every packet from the source before any
                // other rule sees it, so the filter rule would add nothing.
                c.push(format!(
                    "Not converted: this packet filter rule {what} the source, and nftsentry's ban already drops every packet from it in its own nftables table (and expires, where PortSentry's rule stayed until reboot)."
                ));
                if what == "rejects" {
                    c.push(
                        "REJECT answered with an ICMP error; nftsentry drops silently.".to_string(),
                    );
                }
                o.comment(None, c);
            }
            KillRoute::Command => {
                c.push(
                    "Not a form nftsentry turns into a native route, so kept as a command, run for each ban with $TARGET$, $PORT$ and $MODE$ replaced (and not undone when the ban ends, as with PortSentry)."
                        .to_string(),
                );
                if needs_shell(cmd) {
                    shell_for.push("KILL_ROUTE");
                }
                o.key(None, c, "kill_route", toml_str(cmd.trim()));
            }
            KillRoute::NoTarget => {
                c.push(
                    "Not converted: it has no $TARGET$, so PortSentry skipped it (\"No target variable specified\")."
                        .to_string(),
                );
                o.comment(None, c);
            }
        },
    }

    // KILL_HOSTS_DENY: the line template; the file was compiled in.
    let t = conf.token("KILL_HOSTS_DENY");
    let mut c = vec![origin(conf, "KILL_HOSTS_DENY", &t)];
    match t.value().filter(|v| !v.trim().is_empty()) {
        Some(line) if !line.contains("$TARGET$") => {
            c.push(
                "Not converted: it has no $TARGET$, so PortSentry skipped it (\"No target variable specified\")."
                    .to_string(),
            );
            o.comment(None, c);
        }
        Some(line) if line.trim_start().starts_with('#') => {
            c.push(
                "Not converted: the line is a comment in hosts.deny, so it blocked nothing."
                    .to_string(),
            );
            o.comment(None, c);
        }
        Some(line) => {
            let split = split_hosts_deny(line);
            c.push(format!(
                "PortSentry appended this line to {HOSTS_DENY} (its compiled-in path), duplicates included, and never removed it. The packaged systemd unit keeps /etc read-only, so nftsentry writes the addresses, one per ban and removed when the ban ends, to {SERVICE_HOSTS_DENY}, and one line in {HOSTS_DENY} makes tcp_wrappers read them (a pattern that starts with / names a file of addresses):"
            ));
            c.push(format!("  {}", split.include));
            c.push(
                "import-portsentry printed the command that adds it on standard error. Few services still read hosts.deny (current OpenSSH does not); the lines PortSentry added stay in /etc/hosts.deny until you remove them."
                    .to_string(),
            );
            c.push(format!(
                "Run as root without the unit, hosts_deny = \"{HOSTS_DENY}\" with hosts_deny_line = {} would write /etc/hosts.deny as PortSentry did.",
                toml_str(line)
            ));
            if let Some(n) = &split.note {
                c.push(n.clone());
            }
            o.key(None, c, "hosts_deny", toml_str(SERVICE_HOSTS_DENY));
            o.key(
                None,
                Vec::new(),
                "hosts_deny_line",
                toml_str(&split.file_line),
            );
            o.todo.push(Todo {
                why: format!(
                    "hosts.deny: nftsentry adds the banned addresses to {SERVICE_HOSTS_DENY}; this line, once in {HOSTS_DENY}, makes tcp_wrappers read them."
                ),
                commands: vec![format!(
                    "grep -qsxF {q} {HOSTS_DENY} || echo {q} >> {HOSTS_DENY}",
                    q = sh_quote(&split.include)
                )],
            });
        }
        None => {
            c.push(
                "No hosts.deny action, as in nftsentry's default (hosts_deny = \"\").".to_string(),
            );
            o.comment(None, c);
        }
    }

    // KILL_RUN_CMD and KILL_RUN_CMD_FIRST (read only when there is a command).
    let t = conf.token("KILL_RUN_CMD");
    let mut c = vec![origin(conf, "KILL_RUN_CMD", &t)];
    let first = conf.token("KILL_RUN_CMD_FIRST");
    match t.value().map(str::trim).filter(|v| !v.is_empty()) {
        Some(cmd)
            if cmd
                .split_whitespace()
                .next()
                .is_some_and(|p| p.contains('$')) =>
        {
            c.push(
                "Not converted: the program itself is a variable; nftsentry runs a fixed program. Put it in a script that takes $TARGET$ as an argument."
                    .to_string(),
            );
            o.comment(None, c);
        }
        Some(cmd) => {
            c.push(
                "Run for each ban with $TARGET$, $PORT$ and $MODE$ replaced in each word (and passed as TARGET, PORT and MODE in the environment)."
                    .to_string(),
            );
            o.has_command = true;
            if needs_shell(cmd) {
                shell_for.push("KILL_RUN_CMD");
                o.key(None, c, "command", toml_str(cmd));
            } else {
                let words: Vec<String> = cmd.split_whitespace().map(toml_str).collect();
                o.key(None, c, "command", format!("[{}]", words.join(", ")));
            }
            let run_first = first.value().is_some_and(|v| atoi(v).0 != 0);
            let mut c = vec![origin(conf, "KILL_RUN_CMD_FIRST", &first)];
            if first.value().is_none() {
                c.push("PortSentry ran the command after blocking then.".to_string());
            }
            o.key(None, c, "run_before_block", run_first.to_string());
        }
        None => {
            c.push("No external command, as in nftsentry's default (command = []).".to_string());
            if first.line().is_some() {
                c.push(format!(
                    "{}: without effect, PortSentry read it only with a KILL_RUN_CMD.",
                    origin(conf, "KILL_RUN_CMD_FIRST", &first)
                ));
            }
            o.comment(None, c);
        }
    }
    if !shell_for.is_empty() {
        o.key(
            None,
            vec![format!(
                "{} uses shell syntax (pipes, redirections, quotes, ...), so it runs through /bin/sh -c as PortSentry's system(3) ran it. nftsentry puts the replaced values in single quotes.",
                shell_for.join(" and ")
            )],
            "command_shell",
            "true".to_string(),
        );
    }

    o.no_equivalent.push(
        "PortSentry's blocks never expired. nftsentry's bans last ban_time (default 1d); set ban_time = \"365d\" for bans that practically do not end."
            .to_string(),
    );
}

/// A KILL_HOSTS_DENY template taken apart for a file that /etc/hosts.deny
/// includes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostsDenySplit {
    /// hosts_deny_line: the client part, e.g. `$TARGET$`.
    pub file_line: String,
    /// The line for /etc/hosts.deny: the daemon part, the file, the options.
    pub include: String,
    /// Why the template could not be kept whole, if so.
    pub note: Option<String>,
}

/// `DAEMONS : CLIENTS [: OPTIONS...]` (hosts_access(5), hosts_options(5)):
/// the file gets CLIENTS for each ban, /etc/hosts.deny gets
/// `DAEMONS: /var/lib/nftsentry/hosts.deny [: OPTIONS]` once.
pub fn split_hosts_deny(template: &str) -> HostsDenySplit {
    let fields: Vec<&str> = template.split(':').map(str::trim).collect();
    let plain = |clients: &str| {
        !clients.is_empty()
            && clients.contains("$TARGET$")
            && !clients
                .split_whitespace()
                .any(|w| w.eq_ignore_ascii_case("EXCEPT"))
    };
    if fields.len() >= 2 && !fields[0].is_empty() && plain(fields[1]) {
        let mut include = format!("{}: {SERVICE_HOSTS_DENY}", fields[0]);
        let options = fields[2..].join(" : ");
        if !options.trim().is_empty() {
            include.push_str(" : ");
            include.push_str(options.trim());
        }
        return HostsDenySplit {
            file_line: fields[1].to_string(),
            include,
            note: None,
        };
    }
    HostsDenySplit {
        file_line: "$TARGET$".to_string(),
        include: format!("ALL: {SERVICE_HOSTS_DENY}"),
        note: Some(format!(
            "The line is not of the form `DAEMONS : $TARGET$ [: OPTIONS]`, so its services and options were not kept: check the line for {HOSTS_DENY}."
        )),
    }
}

fn convert_files(
    conf: &PortsentryConf,
    ignore: Option<&IgnoreImport>,
    write_ignore: Option<&Path>,
    o: &mut Out,
) {
    // HISTORY_FILE: same line format, so the file can go on growing.
    let t = conf.token("HISTORY_FILE");
    let mut c = vec![origin(conf, "HISTORY_FILE", &t)];
    match t.value() {
        Some(v) if v.ends_with('/') => {
            c.push(
                "A directory: PortSentry could not open it and wrote no history; so none here."
                    .to_string(),
            );
            o.key(None, c, "history_file", toml_str(""));
        }
        Some(v) if !v.is_empty() => {
            let path = absolute(v);
            let service_may_write = [SERVICE_DIR, "/run/nftsentry"]
                .iter()
                .any(|d| Path::new(&path).starts_with(d) && Path::new(&path) != Path::new(d));
            if service_may_write {
                c.push(
                    "nftsentry appends the same lines (fail2ban's portsentry filter reads them)."
                        .to_string(),
                );
                o.key(None, c, "history_file", toml_str(&path));
            } else {
                c.push(format!(
                    "nftsentry appends the same lines (fail2ban's portsentry filter reads them), but to {SERVICE_HISTORY}: the packaged systemd unit lets the service write only {SERVICE_DIR} and /run/nftsentry (and purging Debian's portsentry package deletes {path})."
                ));
                c.push(
                    "A fail2ban jail or script that reads the old file must read this one: import-portsentry printed how on standard error for the jails it found."
                        .to_string(),
                );
                o.old_history = Some(path);
                o.key(None, c, "history_file", toml_str(SERVICE_HISTORY));
            }
        }
        Some(_) => {
            c.push(
                "Empty: PortSentry could not open it and wrote no history; so none here."
                    .to_string(),
            );
            o.key(None, c, "history_file", toml_str(""));
        }
        None => {
            c.push(
                "PortSentry refused to start without it; nftsentry's default history file applies."
                    .to_string(),
            );
            o.comment(None, c);
        }
    }

    let t = conf.token("BLOCKED_FILE");
    o.no_equivalent.push(format!(
        "{}: PortSentry emptied it at each start and listed that run's blocks; nftsentry keeps its active bans, with their time left, in state_file (its own format, default /var/lib/nftsentry/state), and `nftsentry list` shows them.",
        origin(conf, "BLOCKED_FILE", &t)
    ));

    // IGNORE_FILE: the entries move to nftsentry's own ignore file, since a
    // line PortSentry tolerated can be an error for nftsentry.
    let t = conf.token("IGNORE_FILE");
    let mut c = vec![origin(conf, "IGNORE_FILE", &t)];
    match (ignore, write_ignore) {
        (Some(ig), Some(path)) => {
            c.push(format!(
                "Its {} valid entries from {} were written to {}.",
                ig.entries.len(),
                ig.source,
                path.display()
            ));
            ignore_notes(ig, &mut c);
            o.key(
                None,
                c,
                "ignore_file",
                toml_str(&path.display().to_string()),
            );
        }
        (Some(ig), None) => {
            c.push(format!(
                "Its {} valid entries from {} are listed below: save them, without the comment signs, in /etc/nftsentry/ignore (the default ignore_file), or run the import again with --write-ignore /etc/nftsentry/ignore.",
                ig.entries.len(),
                ig.source
            ));
            ignore_notes(ig, &mut c);
            for (_, e) in &ig.entries {
                c.push(format!("  {e}"));
            }
            o.comment(None, c);
        }
        (None, _) => {
            c.push("No ignore file was read; the default ignore_file applies.".to_string());
            o.comment(None, c);
        }
    }
    o.comment(
        None,
        vec![
            "ignore_local = true (the default) also never bans this host's own addresses, loopback, its default gateways and its resolvers: Debian's init script copied the interface addresses into portsentry.ignore for the same purpose."
                .to_string(),
        ],
    );
}

fn ignore_notes(ig: &IgnoreImport, c: &mut Vec<String>) {
    if !ig.local.is_empty() {
        c.push(format!(
            "Left out: {} address(es) that Debian's portsentry-build-ignore-file copied from this host's interfaces ({}); ignore_local covers them.",
            ig.local.len(),
            ig.local.join(", ")
        ));
    }
    for (line, text, why) in &ig.invalid {
        c.push(format!("Left out, line {line}: `{}`: {why}", shorten(text)));
    }
}

fn convert_protocol(
    conf: &PortsentryConf,
    default: Option<&DebianDefault>,
    proto: Proto,
    o: &mut Out,
) {
    let p = Some(proto);
    let up = proto.as_str().to_ascii_uppercase();

    // mode, from Debian's TCP_MODE / UDP_MODE.
    match default {
        Some(d) => {
            let (setting, var) = match proto {
                Proto::Tcp => (&d.tcp, "TCP_MODE"),
                Proto::Udp => (&d.udp, "UDP_MODE"),
            };
            let file = Path::new(&d.source)
                .file_name()
                .map_or(d.source.clone(), |f| f.to_string_lossy().into_owned());
            let from = match (&setting.unit, setting.line) {
                (Some(unit), _) => format!("{unit} (enabled)"),
                (None, Some(line)) => format!("{var}=\"{}\" ({file}:{line})", setting.value),
                (None, None) if d.tcp.unit.is_some() || d.udp.unit.is_some() => {
                    format!("no portsentry@ unit for {} enabled", proto.as_str().to_ascii_uppercase())
                }
                (None, None) => format!("{var}: not set in {file}"),
            };
            let how = match setting.mode() {
                "connect" => "PortSentry's classic mode, real sockets on the ports",
                "stealth" => "PortSentry's stealth mode",
                "advanced" => "PortSentry's advanced stealth mode",
                _ if setting.unit.is_none() && (d.tcp.unit.is_some() || d.udp.unit.is_some()) => {
                    "PortSentry did not run for this protocol"
                }
                _ => "the init script started no PortSentry for this protocol",
            };
            o.key(
                p,
                vec![format!("{from}: {how}.")],
                "mode",
                toml_str(setting.mode()),
            );
        }
        None => o.comment(
            p,
            vec![format!(
                "mode: PortSentry took it from its command line (-{0}, -s{0}, -a{0}), which this import cannot see (no /etc/default/portsentry was read); nftsentry's default mode applies. \"connect\" is -{0}, \"stealth\" -s{0}, \"advanced\" -a{0}.",
                proto.as_str()
            )],
        ),
    }

    // ports.
    let key = format!("{up}_PORTS");
    let t = conf.token(&key);
    let mut c = vec![origin(conf, &key, &t)];
    match &t {
        Token::Value { value, line, .. } => {
            let (ports, warnings) = port_list(value, &key, *line, &conf.source);
            o.warnings.extend(warnings);
            if ports.len() > MAXSOCKS {
                c.push(format!(
                    "PortSentry watched only the first {MAXSOCKS} of these {} ports (its MAXSOCKS); nftsentry watches them all.",
                    ports.len()
                ));
            }
            let set = PortSet::from_ports(ports);
            let (value, preset) = ports_value(&set, proto);
            match preset {
                Some(name) => c.push(format!("PortSentry's \"{name}\" list.")),
                None if set.is_empty() => c.push(
                    "No ports: PortSentry's stealth and classic modes refused to start without one; nothing is watched."
                        .to_string(),
                ),
                None => {}
            }
            o.key(p, c, "ports", value);
        }
        _ => {
            c.push(
                "PortSentry's stealth and classic modes refused to start without it; nftsentry's default list applies."
                    .to_string(),
            );
            o.comment(p, c);
        }
    }

    // advanced_ports.
    let key = format!("ADVANCED_PORTS_{up}");
    let t = conf.token(&key);
    let mut c = vec![origin(conf, &key, &t)];
    let n = t.value().map_or(1024, |v| atoi(v).0);
    let advanced = if !(0..=65535).contains(&n) {
        c.push(
            "Beyond 65535 (a negative number wraps around in PortSentry), so every port: nftsentry's largest value, 65535, watches 1-65534."
                .to_string(),
        );
        65535
    } else if n == 0 {
        c.push("0: PortSentry's advanced mode watched no port; 1 does the same.".to_string());
        1
    } else {
        if t.value().is_none() {
            c.push("PortSentry assumed 1024.".to_string());
        }
        n
    };
    c.push(format!(
        "Advanced mode watches ports 1 to {} that have no listener.",
        advanced - 1
    ));
    o.key(p, c, "advanced_ports", advanced.to_string());

    // advanced_exclude: absent means nothing excluded in PortSentry, while
    // nftsentry's default excludes PortSentry's suggested ports.
    let key = format!("ADVANCED_EXCLUDE_{up}");
    let t = conf.token(&key);
    let mut c = vec![origin(conf, &key, &t)];
    let ports = match &t {
        Token::Value { value, line, .. } => {
            let (ports, warnings) = port_list(value, &key, *line, &conf.source);
            o.warnings.extend(warnings);
            ports
        }
        _ => {
            c.push(
                "PortSentry excluded no port then, unlike nftsentry's default; so none here."
                    .to_string(),
            );
            Vec::new()
        }
    };
    o.key(
        p,
        c,
        "advanced_exclude",
        toml_str(&PortSet::from_ports(ports).to_string()),
    );

    // block_mode from BLOCK_TCP / BLOCK_UDP: 1 block, 2 command only,
    // anything else (and absent: CheckFlag's FALSE) log only.
    let key = format!("BLOCK_{up}");
    let t = conf.token(&key);
    let mut c = vec![origin(conf, &key, &t)];
    let n = t.value().map_or(0, |v| atoi(v).0);
    let mode = match n {
        1 => {
            c.push(
                "1: block. nftsentry bans the source in its nftables set, then runs the actions above."
                    .to_string(),
            );
            "block"
        }
        2 if o.has_command => {
            c.push("2: run the external command only, no ban.".to_string());
            "command"
        }
        2 => {
            c.push(
                "2: run the external command only, but there is none to run, so PortSentry only logged; so does nftsentry."
                    .to_string(),
            );
            "log"
        }
        _ => {
            c.push(format!(
                "{}PortSentry only logged ({} scans were not blocked); so does nftsentry. Write block_mode = \"block\" to ban.",
                if t.value().is_none() {
                    "Absent, i.e. 0: ".to_string()
                } else {
                    format!("{n}: ")
                },
                up
            ));
            "log"
        }
    };
    o.key(p, c, "block_mode", toml_str(mode));
}

/// `text` as `# ` comment lines of at most about 78 columns; the lines after
/// the first are indented by two spaces.
fn comment_lines(text: &str, out: &mut String) {
    let text = &clean(text);
    // A line that starts with two spaces is a listing: kept as it is.
    if text.starts_with("  ") {
        let _ = writeln!(out, "# {text}");
        return;
    }
    let mut line = String::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        if line.is_empty() {
            line.push_str(word);
        } else if line.len() + 1 + word.len() > 76 {
            let _ = writeln!(out, "# {line}");
            line = format!("  {word}");
        } else {
            line.push(' ');
            line.push_str(word);
        }
    }
    if !line.is_empty() {
        let _ = writeln!(out, "# {line}");
    }
}

/// `s` without control characters, which would end a comment line early
/// (a file name can hold a newline).
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn render_entries(entries: &[Entry], out: &mut String) {
    for e in entries {
        // A key without a comment of its own belongs with the one above.
        if !e.comment.is_empty() {
            out.push('\n');
        }
        for c in &e.comment {
            comment_lines(c, out);
        }
        if let Some(l) = &e.line {
            out.push_str(l);
            out.push('\n');
        }
    }
}

fn render(
    conf: &PortsentryConf,
    default: Option<&DebianDefault>,
    ignore: Option<&IgnoreImport>,
    write_ignore: Option<&Path>,
    notes: &[String],
    o: &Out,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# nftsentry.toml converted from PortSentry by `nftsentry import-portsentry`\n# (nftsentry {}) from:",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(s, "#   {}", clean(&conf.source));
    match default {
        Some(d) => {
            let _ = writeln!(s, "#   {} (TCP_MODE, UDP_MODE)", clean(&d.source));
        }
        None => {
            let _ = writeln!(s, "#   (no {DEBIAN_DEFAULT}: modes not converted)");
        }
    }
    if let Some(ig) = ignore {
        let _ = writeln!(
            s,
            "#   {} ({} entries{})",
            clean(&ig.source),
            ig.entries.len(),
            match write_ignore {
                Some(p) => format!(", written to {}", clean(&p.display().to_string())),
                None => ", listed below".to_string(),
            }
        );
    }
    s.push_str(
        "#\n# Each key names the PortSentry setting it comes from. Keys not written\n\
         # here keep nftsentry's defaults, documented in nftsentry.toml(5). Check\n\
         # the file with `nftsentry -c FILE check` before you start nftsentry.\n",
    );
    if !notes.is_empty() {
        s.push_str("#\n# Notes on the PortSentry files:\n");
        for n in notes {
            comment_lines(&format!("- {n}"), &mut s);
        }
    }
    if !o.no_equivalent.is_empty() {
        s.push_str("#\n# No equivalent in nftsentry:\n");
        for n in &o.no_equivalent {
            comment_lines(&format!("- {n}"), &mut s);
        }
    }
    render_entries(&o.top, &mut s);
    s.push_str("\n[tcp]\n");
    render_entries(&o.tcp, &mut s);
    s.push_str("\n[udp]\n");
    render_entries(&o.udp, &mut s);
    s
}

#[cfg(test)]
mod tests;
