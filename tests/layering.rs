//! layering: each folder of src/ imports only the layers below it
//! (ARCHITECTURE.md, "Layers"). The kernel layer knows nothing of scans,
//! bans or the config; detection does no I/O; only the command line may
//! use everything. A forbidden import fails this test with the file and
//! the line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What each part of the crate may use besides itself.
fn allowed(part: &str) -> Option<&'static [&'static str]> {
    Some(match part {
        "error" | "cidr" | "files" | "logging" | "strength" => &[],
        "config" => &["error", "cidr", "strength"],
        // Routes of a prefix ban name a network.
        "kernel" => &["error", "logging", "cidr"],
        "table" => &["error", "logging", "kernel", "config", "cidr", "files"],
        "host" => &["error", "logging", "kernel", "config", "cidr", "detect"],
        "detect" => &["error", "logging", "config", "cidr", "strength"],
        "journal" => &["error", "logging", "config", "cidr", "files", "strength"],
        "fleet" => &["error", "logging", "config", "cidr", "files", "strength"],
        "respond" => &[
            "error", "logging", "config", "cidr", "files", "kernel", "table", "detect", "journal",
            "strength",
        ],
        "service" => &[
            "error", "logging", "config", "cidr", "files", "kernel", "table", "host", "detect",
            "respond", "journal", "strength", "fleet",
        ],
        "cli" => &[
            "error", "logging", "config", "cidr", "files", "kernel", "table", "host", "detect",
            "respond", "journal", "service", "strength", "fleet",
        ],
        _ => return None,
    })
}

/// Text that means I/O, which detection must not do.
const IO: &[&str] = &[
    "std::fs",
    "std::net::UdpSocket",
    "std::net::TcpStream",
    "std::net::TcpListener",
    "std::os::unix::net",
    "std::process",
    "std::thread",
    "std::io::Read",
    "std::io::Write",
    "nix::sys::socket",
    "netlink_",
    "File::",
];

/// The code of a file without its test module (tests come last).
fn code(source: &str) -> &str {
    match source.find("#[cfg(test)]") {
        Some(i) => &source[..i],
        None => source,
    }
}

/// Every `crate::X` a source names, with its line.
fn uses(source: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in code(source).lines().enumerate() {
        let line = line.split("//").next().unwrap_or("");
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push((n + 1, name));
            }
            rest = after;
        }
        // `use crate::{a, b}` names several.
        if let Some(i) = line.find("crate::{") {
            let inner = &line[i + "crate::{".len()..];
            let inner = inner.split('}').next().unwrap_or("");
            for part in inner.split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push((n + 1, name));
                }
            }
        }
    }
    out
}

/// What is wrong with `source`, a file of `part`.
fn violations(file: &str, part: &str, source: &str) -> Vec<String> {
    let Some(ok) = allowed(part) else {
        return vec![format!("{file}: `{part}` is not a known part of the crate")];
    };
    let mut v = Vec::new();
    for (line, used) in uses(source) {
        if used != part && !ok.contains(&used.as_str()) {
            v.push(format!(
                "{file}:{line}: `{part}` must not use `crate::{used}`"
            ));
        }
    }
    if part == "detect" {
        for (n, line) in code(source).lines().enumerate() {
            for io in IO {
                if line.contains(io) {
                    v.push(format!(
                        "{file}:{}: detection does no I/O, but names `{io}`",
                        n + 1
                    ));
                }
            }
        }
    }
    v
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_folder_imports_only_the_layers_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut parts = BTreeSet::new();
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let part = first.trim_end_matches(".rs").to_string();
        if part == "main" || part == "lib" {
            continue;
        }
        parts.insert(part.clone());
        let text = std::fs::read_to_string(f).unwrap();
        wrong.extend(violations(&rel.display().to_string(), &part, &text));
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
    // Every part is known: a new folder gets its rule here.
    for p in &parts {
        assert!(allowed(p).is_some(), "no layering rule for src/{p}");
    }
    assert!(parts.len() >= 12, "{parts:?}");
}

#[test]
fn a_forbidden_import_is_caught() {
    let kernel = "use crate::error::Result;\nuse crate::detect::ScanType;\n";
    assert_eq!(
        violations("kernel/x.rs", "kernel", kernel),
        ["kernel/x.rs:2: `kernel` must not use `crate::detect`"]
    );
    let grouped = "use crate::{config, service};\n";
    assert_eq!(
        violations("table/x.rs", "table", grouped),
        ["table/x.rs:1: `table` must not use `crate::service`"]
    );
    let io =
        "fn f() { let _ = std::fs::read(\"/etc/x\"); }\n#[cfg(test)]\nmod tests { use std::fs; }\n";
    assert_eq!(
        violations("detect/x.rs", "detect", io),
        ["detect/x.rs:1: detection does no I/O, but names `std::fs`"]
    );
    let inline = "fn f() { crate::respond::Ledger::new(); }\n";
    assert_eq!(
        violations("journal/x.rs", "journal", inline),
        ["journal/x.rs:1: `journal` must not use `crate::respond`"]
    );
    // Comments do not count.
    assert!(violations("kernel/x.rs", "kernel", "// crate::detect\n").is_empty());
}
