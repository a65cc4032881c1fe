//! The conversion: from what PortSentry read (portsentry.conf, Debian's
//! modes, the ignore file) to the keys of nftsentry.toml, each with comment
//! lines that name the PortSentry setting it comes from and say where the
//! two differ, and the steps left to do by hand. Submodules: the detection
//! keys (`detection`), the actions on a ban (`actions`), the history,
//! blocked and ignore files (`files`), the [tcp] and [udp] tables
//! (`protocol`), and the text of the file (`render`).
//!
//! Reads no file; the keys it writes are those of nftsentry.toml(5), and
//! the tests check its output with the config parser.

mod actions;
mod detection;
mod files;
mod protocol;
mod render;

use std::path::Path;

use super::{
    DebianDefault, IgnoreImport, Import, KEYS, PortsentryConf, Todo, Token, atoi, shorten,
};
use crate::config::{PortSet, Preset, Proto};
use actions::convert_actions;
pub use actions::{HostsDenySplit, split_hosts_deny};
use detection::convert_detection;
use files::convert_files;
use protocol::convert_protocol;
pub(super) use render::comment_lines;
use render::render;

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
pub(super) fn needs_shell(cmd: &str) -> bool {
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
