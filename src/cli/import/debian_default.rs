//! Debian's /etc/default/portsentry: the TCP_MODE and UDP_MODE that its
//! init script passed to PortSentry on the command line (-tcp, -stcp,
//! -atcp and the UDP ones), read as the plain shell assignments they are,
//! and nftsentry's mode for each.
//!
//! Knows nothing of portsentry.conf or of the nftsentry.toml written from
//! it, nor of Debian 13's units, whose names carry the modes (`units`).

use std::path::Path;

use super::shorten;
use crate::config::ignore::io_message;
use crate::error::{Error, Result};

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
