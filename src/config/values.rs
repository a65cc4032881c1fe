//! The checks of single values: a TOML value of the right type and range
//! (integers, strings, booleans, durations), and the keys whose text has
//! rules of its own (table name, log prefix, paths, banner, user, mode).
//! Each returns the message that `walk` prefixes with the file, the line
//! and the key.
//!
//! Knows nothing of which key a value belongs to; the keys of actions are
//! checked in `actions`, port sets in `ports`.

use std::path::PathBuf;
use std::time::Duration;

use toml::de::DeValue;

use super::limits::{LOG_PREFIX_MAX, PORT_BANNER_MAX, TABLE_NAME_MAX, USER_NAME_MAX};
use super::mode::{Mode, unknown_mode};
use super::{format_duration, parse_duration};

/// "the string \"x\"", "an integer (5)", ... for type errors.
pub(super) fn describe(v: &DeValue<'_>) -> String {
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

pub(super) fn integer(v: &DeValue<'_>, min: i64, max: i64) -> Result<i64, String> {
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

/// `live_peer_mark`: exactly two bits of the 32-bit conntrack mark.
pub(super) fn live_peer_mark(v: &DeValue<'_>) -> Result<u32, String> {
    let n = integer(v, 0, u32::MAX.into())? as u32;
    if n.count_ones() != 2 {
        return Err(format!(
            "{n:#x} has {} bits set; it must have exactly two (e.g. 0x30000000), the bits of the conntrack mark no other rule of this host uses",
            n.count_ones()
        ));
    }
    Ok(n)
}

pub(super) fn string<'v>(v: &'v DeValue<'_>) -> Result<&'v str, String> {
    match v {
        DeValue::String(s) => Ok(s),
        other => Err(format!("expected a string, found {}", describe(other))),
    }
}

/// `metrics_listen`: "" for none, else an address and port
/// (`127.0.0.1:9817`, `[::1]:9817`); port 0 is refused (the scrape config
/// must name the port).
pub(super) fn metrics_listen(s: &str) -> Result<Option<std::net::SocketAddr>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let a: std::net::SocketAddr = s.parse().map_err(|_| {
        format!("`{s}` is not an address and port (write \"127.0.0.1:9817\" or \"[::1]:9817\", or \"\" for none)")
    })?;
    if a.port() == 0 {
        return Err(format!("`{s}`: port 0 is not a port a scraper can be told"));
    }
    Ok(Some(a))
}

pub(super) fn boolean(v: &DeValue<'_>) -> Result<bool, String> {
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

pub(super) fn duration(v: &DeValue<'_>, min: Duration, max: Duration) -> Result<Duration, String> {
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

pub(super) fn table_name(s: &str) -> Result<String, String> {
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

pub(super) fn log_prefix(s: &str) -> Result<String, String> {
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

pub(super) fn ignore_file(s: &str) -> Result<Option<PathBuf>, String> {
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

pub(super) fn port_banner(s: &str) -> Result<String, String> {
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

/// An account name as useradd(8) allows it, or "" for none. Whether the
/// account exists is checked when the daemon starts, on that host.
pub(super) fn user_name(s: &str) -> Result<String, String> {
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
pub(super) fn mode(v: &DeValue<'_>) -> Result<Mode, String> {
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
