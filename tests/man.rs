//! The man pages: mandoc finds nothing to complain about, nftsentry.toml(5)
//! has an entry for every key the parser accepts (with its default and its
//! PortSentry equivalent), and nftsentry(8) one for every subcommand and
//! flag that the built binary's --help lists. The key and flag lists come
//! from the code, so a new key or flag without documentation fails here.
//!
//! Needs mandoc; no root, no network.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nftsentry::config::{CROWDSEC_KEYS, Config, PROTOCOL_KEYS, Proto, TOP_KEYS};

const BIN: &str = env!("CARGO_BIN_EXE_nftsentry");

fn page(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("man").join(name)
}

fn source(name: &str) -> String {
    std::fs::read_to_string(page(name)).unwrap_or_else(|e| panic!("man/{name}: {e}"))
}

fn mandoc(args: &[&str], name: &str) -> Output {
    Command::new("mandoc")
        .args(args)
        .arg(page(name))
        .output()
        .unwrap_or_else(|e| panic!("cannot run mandoc (apt-get install mandoc): {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The page as a reader sees it, one paragraph per line (very wide, so no
/// word is split across lines), without the overstrike bold/underline.
fn rendered(name: &str) -> String {
    let o = mandoc(&["-Tascii", "-O", "width=1000"], name);
    assert!(
        o.status.success(),
        "mandoc -Tascii {name}: {}",
        text(&o.stderr)
    );
    let out = text(&o.stdout);
    let mut plain = String::with_capacity(out.len());
    for c in out.chars() {
        if c == '\u{8}' {
            // "x\bx" is bold x, "_\bx" underlined x: keep the last one.
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    plain
}

/// Messages that depend on which other manuals this machine has installed
/// (nft(8), portsentry(8), an up-to-date mandoc.db), not on our pages.
fn depends_on_installed_manuals(line: &str) -> bool {
    line.contains("referenced manual not found") || line.contains("mandoc.db")
}

fn lint(name: &str, level: &str) -> (Option<i32>, Vec<String>) {
    let o = mandoc(&["-Tlint", "-W", level], name);
    let lines = text(&o.stdout)
        .lines()
        .chain(text(&o.stderr).lines())
        .filter(|l| !depends_on_installed_manuals(l))
        .map(str::to_string)
        .collect();
    (o.status.code(), lines)
}

#[test]
fn mandoc_lint_reports_nothing() {
    for name in ["nftsentry.8", "nftsentry.toml.5"] {
        // Warnings and worse: nothing at all, whatever is installed.
        let (code, lines) = lint(name, "warning");
        assert_eq!(
            lines,
            Vec::<String>::new(),
            "mandoc -Tlint -W warning {name}"
        );
        assert_eq!(code, Some(0), "mandoc -Tlint -W warning {name}");
        // Style messages too, except those about other manuals.
        let (_, lines) = lint(name, "style");
        assert_eq!(lines, Vec::<String>::new(), "mandoc -Tlint -W style {name}");
    }
}

/// The `.It` entries of the page's lists whose tag starts with `macro word`
/// (e.g. `.It Ic ban_time Pq ...`): (word, tag line, body up to the next
/// entry of the same list).
fn entries(src: &str, macro_name: &str) -> Vec<(String, String, String)> {
    let lines: Vec<&str> = src.lines().collect();
    let prefix = format!(".It {macro_name} ");
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let word = rest.split_whitespace().next().unwrap_or("").to_string();
        // The body runs to the next .It or .El of this list, skipping over
        // nested lists.
        let mut depth = 0;
        let mut body = String::new();
        for l in &lines[i + 1..] {
            if l.starts_with(".Bl") {
                depth += 1;
            } else if l.starts_with(".El") {
                if depth == 0 {
                    break;
                }
                depth -= 1;
            } else if l.starts_with(".It") && depth == 0 {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        out.push((word, line.to_string(), body));
    }
    out
}

/// `#key = value` lines of the default config, the documented defaults,
/// with the value's quotes removed: ("ban_time", "1d").
fn documented_defaults() -> Vec<(String, String)> {
    Config::DEFAULT_TEXT
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

#[test]
fn config_page_documents_every_key() {
    let src = source("nftsentry.toml.5");
    let documented = entries(&src, "Ic");
    let defaults = documented_defaults();
    let tables = [Proto::Tcp.as_str(), Proto::Udp.as_str()];
    assert!(!TOP_KEYS.is_empty() && !PROTOCOL_KEYS.is_empty());
    let mut missing = Vec::new();
    for key in TOP_KEYS.iter().chain(PROTOCOL_KEYS).chain(CROWDSEC_KEYS) {
        let matching: Vec<_> = documented.iter().filter(|(w, _, _)| w == key).collect();
        let Some((_, tag, body)) = matching.first() else {
            missing.push(format!("{key}: no `.It Ic {key}` entry"));
            continue;
        };
        if matching.len() > 1 {
            missing.push(format!("{key}: {} entries", matching.len()));
        }
        if !body.contains("PortSentry") && !CROWDSEC_KEYS.contains(key) {
            missing.push(format!("{key}: entry does not say what PortSentry had"));
        }
        // The tag gives the type in parentheses and, for a value, the default
        // that config/nftsentry.toml documents.
        if !tag.contains(" Pq ") {
            missing.push(format!("{key}: tag `{tag}` gives no type"));
        }
        if tables.contains(key) || *key == "crowdsec" {
            if !tag.contains("table") {
                missing.push(format!("{key}: tag `{tag}` does not say it is a table"));
            }
            continue;
        }
        match defaults.iter().find(|(k, _)| k == key) {
            Some((_, value))
                if tag.contains(&format!("default {value}"))
                    || tag.contains(&format!("default Qq {value}"))
                    || tag.contains(&format!("default Qq \"{value}\"")) => {}
            Some((_, value)) => missing.push(format!(
                "{key}: tag `{tag}` does not give the default {value}"
            )),
            None => missing.push(format!(
                "{key}: config/nftsentry.toml has no `#{key} = ...` default line"
            )),
        }
    }
    assert!(
        missing.is_empty(),
        "nftsentry.toml.5:\n{}",
        missing.join("\n")
    );
}

/// Every key either page names with `Ic` (`ban_time`, `[tcp]`,
/// `tcp.ports`) is one the parser accepts: a renamed or removed key leaves
/// no stale documentation behind.
#[test]
fn pages_name_only_real_keys() {
    let mut stale = Vec::new();
    let mut seen = 0;
    for name in ["nftsentry.8", "nftsentry.toml.5"] {
        for line in source(name).lines().filter(|l| l.starts_with('.')) {
            let words: Vec<&str> = line.split_whitespace().collect();
            for pair in words.windows(2).filter(|w| w[0] == "Ic" || w[0] == ".Ic") {
                seen += 1;
                let key = pair[1].trim_start_matches('[').trim_end_matches(']');
                let known = match key.split_once('.') {
                    Some((table, k)) => {
                        [Proto::Tcp.as_str(), Proto::Udp.as_str()].contains(&table)
                            && PROTOCOL_KEYS.contains(&k)
                    }
                    None => {
                        TOP_KEYS.contains(&key)
                            || PROTOCOL_KEYS.contains(&key)
                            || CROWDSEC_KEYS.contains(&key)
                    }
                };
                if !known {
                    stale.push(format!("{name}: `{line}`: `{key}` is not a config key"));
                }
            }
        }
    }
    assert!(seen > TOP_KEYS.len(), "found only {seen} Ic macros");
    assert!(stale.is_empty(), "{}", stale.join("\n"));
}

/// The commands and the flags (`-c`, `--config`) in one clap help text.
fn parse_help(help: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut commands = Vec::new();
    let mut options = Vec::new();
    let mut section = "";
    for line in help.lines() {
        if !line.starts_with(' ') {
            section = line.trim_end();
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match section {
            "Commands:" => commands.extend(words.first().map(|w| w.to_string())),
            "Options:" => options.push(
                words
                    .iter()
                    .take_while(|w| w.starts_with('-') || w.starts_with('<'))
                    .filter(|w| w.starts_with('-'))
                    .map(|w| w.trim_end_matches(',').to_string())
                    .collect(),
            ),
            _ => {}
        }
    }
    (commands, options)
}

fn help(args: &[&str]) -> String {
    let o = Command::new(BIN)
        .args(args)
        .output()
        .expect("run nftsentry");
    assert!(
        o.status.success(),
        "nftsentry {args:?}: {}",
        text(&o.stderr)
    );
    text(&o.stdout)
}

#[test]
fn command_page_documents_every_command_and_flag() {
    let (commands, mut options) = parse_help(&help(&["--help"]));
    // clap's own `help` command takes no options of its own.
    for cmd in commands.iter().filter(|c| *c != "help") {
        let (sub, opts) = parse_help(&help(&[cmd, "--help"]));
        assert!(sub.is_empty(), "{cmd} has subcommands: {sub:?}");
        options.extend(opts);
    }
    // Guard against a help format this parser no longer understands.
    assert!(commands.len() > 1, "no commands found in --help");
    assert!(
        options.iter().any(|o| o.contains(&"--help".to_string())),
        "no options found in --help: {options:?}"
    );

    let src = source("nftsentry.8");
    let page = rendered("nftsentry.8");
    // Entries of option lists, not the tags of commands that merely show
    // their options (`.It Cm list Op Fl -json`).
    let tags: Vec<&str> = src.lines().filter(|l| l.starts_with(".It Fl ")).collect();
    let mut missing = Vec::new();

    let documented: Vec<String> = entries(&src, "Cm").into_iter().map(|e| e.0).collect();
    for cmd in &commands {
        if !documented.contains(cmd) {
            missing.push(format!("command {cmd}: no `.It Cm {cmd}` entry"));
        }
        if !page.contains(&format!("nftsentry [-c file] {cmd}")) && cmd != "help" {
            missing.push(format!("command {cmd}: not in the SYNOPSIS"));
        }
    }
    for flags in &options {
        // `-c` is `Fl c` and `--config` is `Fl -config` in mdoc: the entry
        // that describes the option names all of its spellings.
        let macros: Vec<String> = flags.iter().map(|f| format!("Fl {}", &f[1..])).collect();
        let has_entry = tags.iter().any(|t| {
            macros.iter().all(|m| {
                t.match_indices(m.as_str()).any(|(i, _)| {
                    let after = t[i + m.len()..].chars().next();
                    !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                })
            })
        });
        if !has_entry {
            missing.push(format!(
                "option {}: no `.It Fl` entry with {macros:?}",
                flags.join(", ")
            ));
        }
    }
    assert!(missing.is_empty(), "nftsentry.8:\n{}", missing.join("\n"));
}

/// The parsers above find what they should, so the tests above cannot pass
/// by finding nothing.
#[test]
fn parsers_find_what_is_there() {
    let help = "About\n\nUsage: x [OPTIONS] <COMMAND>\n\nCommands:\n  run      Do it\n  help     Print\n\n\
                Options:\n  -c, --config <FILE>  Config\n      --for <DURATION>  How\n  -h, --help  Print help\n";
    let (commands, options) = parse_help(help);
    assert_eq!(commands, ["run", "help"]);
    assert_eq!(
        options,
        [vec!["-c", "--config"], vec!["--for"], vec!["-h", "--help"]]
    );

    let src = ".Bl -tag\n.It Ic a Pq int , default 1\nA.\n.Bl -tag\n.It x\ny\n.El\nPortSentry: A.\n.It Ic b\nB.\n.El\n";
    let e = entries(src, "Ic");
    assert_eq!(e.len(), 2);
    assert_eq!(e[0].0, "a");
    assert!(e[0].2.contains("PortSentry: A.") && !e[0].2.contains("B."));
    assert_eq!(e[1].2, "B.\n");

    let defaults = documented_defaults();
    assert!(defaults.contains(&("ban_time".to_string(), "1d".to_string())));
    assert!(defaults.contains(&("mode".to_string(), "stealth".to_string())));
}
