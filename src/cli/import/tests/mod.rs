//! Tests of the importer, one file per concern as in the importer itself,
//! and the helpers they share: a portsentry.conf from text, and its
//! conversion checked with nftsentry's own config parser.
//! Debian's real files are tested in tests/import.rs, at test time.

mod convert;
mod debian_default;
mod ignore_file;
mod kill_route;
mod portsentry_conf;
mod todo;
mod units;

use super::*;
use crate::config::Config;

fn conf(text: &str) -> PortsentryConf {
    PortsentryConf::parse(text.as_bytes(), "/etc/portsentry/portsentry.conf")
}

fn value(text: &str, key: &str) -> Option<String> {
    conf(text).token(key).value().map(str::to_string)
}

/// The converted config for `text` (and a defaults file), as a TOML table,
/// after checking that nftsentry's own parser accepts it.
fn convert_text(text: &str, default: Option<&str>) -> (Import, toml::Table) {
    let d = default.map(|d| DebianDefault::parse(d, "/etc/default/portsentry").unwrap());
    let out = convert(&conf(text), d.as_ref(), None, None, &[]);
    if let Err(e) = Config::parse(&out.toml, "converted.toml") {
        panic!("{e}\n{}", out.toml);
    }
    let table: toml::Table = out.toml.parse().unwrap();
    (out, table)
}

/// The comments of `toml` with wrapped lines joined, to look for a phrase.
fn flat(toml: &str) -> String {
    toml.replace("\n#   ", " ")
}

fn get<'t>(t: &'t toml::Table, path: &str) -> Option<&'t toml::Value> {
    match path.split_once('.') {
        Some((table, key)) => t.get(table)?.as_table()?.get(key),
        None => t.get(path),
    }
}

fn str_at<'t>(t: &'t toml::Table, path: &str) -> &'t str {
    get(t, path)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("no string at {path}: {t:#?}"))
}
