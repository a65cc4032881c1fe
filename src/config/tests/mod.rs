//! Tests of the config schema, its defaults and its error messages, one
//! file each: the default file (`defaults`), the forms every key accepts
//! (`values`), and the errors, which name the file, the line and the key
//! (`errors`); and the helpers they share.

mod defaults;
mod errors;
mod values;

use super::*;
use crate::error::Kind;

const FILE: &str = "/etc/nftsentry/nftsentry.toml";

/// The error message for `text`, checked to be a config error.
fn err(text: &str) -> String {
    let e = Config::parse(text, FILE).expect_err("config was accepted");
    assert_eq!(e.kind, Kind::Config, "{e}");
    e.message
}

/// Assert that the message starts with `FILE:line: key `key``.
#[track_caller]
fn assert_at(msg: &str, line: usize, key: &str) {
    let want = format!("{FILE}:{line}: key `{key}`: ");
    assert!(msg.starts_with(&want), "want prefix {want:?}, got {msg:?}");
}

fn aware(proto: Proto) -> PortSet {
    PortSet::preset(Preset::Aware, proto)
}
