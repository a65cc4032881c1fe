//! convert::render: the text of the generated nftsentry.toml: the header
//! that names the PortSentry files and the notes on them, then the keys,
//! each under its comment lines wrapped at about 78 columns (the wrapping
//! serves the steps printed on standard error too).
//!
//! Knows nothing of PortSentry's keys: the entries are made in `convert`.

use std::fmt::Write as _;
use std::path::Path;

use super::{Entry, Out};
use crate::cli::import::{DEBIAN_DEFAULT, DebianDefault, IgnoreImport, PortsentryConf};

/// `text` as `# ` comment lines of at most about 78 columns; the lines after
/// the first are indented by two spaces.
pub(in crate::cli::import) fn comment_lines(text: &str, out: &mut String) {
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

pub(super) fn render(
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
