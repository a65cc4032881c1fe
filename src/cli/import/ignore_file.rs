//! PortSentry's ignore file, checked line by line with nftsentry's ignore
//! parser: the entries nftsentry reads, the lines it cannot, and the host
//! addresses Debian's portsentry-build-ignore-file copied in (which
//! `ignore_local` covers); and the nftsentry ignore file written from it.
//!
//! Knows nothing of portsentry.conf or of the nftsentry.toml written from it.

use std::fmt::Write as _;
use std::path::Path;

use crate::cidr::Cidr;
use crate::config::ignore::io_message;
use crate::error::{Error, Result};

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

pub(super) fn load_ignore(path: &Path) -> Result<IgnoreImport> {
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
