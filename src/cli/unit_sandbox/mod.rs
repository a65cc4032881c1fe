//! unit_sandbox: how the installed systemd unit will run the daemon, so that
//! `nftsentry check` judges the files of a config as the service will meet
//! them (its user, its read-only file system), not as the root who runs
//! `check`.
//!
//! The unit is read as systemd finds it: the first `nftsentry.service` on
//! the unit path, then its drop-ins (`nftsentry.service.d/*.conf` of every
//! directory on the path, a name in an earlier directory hiding the same
//! name in a later one, applied in the order of their names); a later line
//! overrides an earlier one and an empty assignment clears a list. Of the
//! settings, only those that decide who writes where are read: `User=`,
//! `Group=`, `DynamicUser=`, `SupplementaryGroups=`, `ProtectSystem=`,
//! `ProtectHome=`, `PrivateTmp=`, `ReadWritePaths=`, `ReadOnlyPaths=`,
//! `InaccessiblePaths=`, `StateDirectory=`, `RuntimeDirectory=`,
//! `CacheDirectory=`, `LogsDirectory=`, and `MemoryMax=` (against the
//! memory a config can take). Without an installed unit the daemon runs as
//! `nftsentry run` would: as root, or as `user`, without capabilities to
//! override file permissions.
//!
//! One file per concern: reading the unit, its drop-ins and the syntax of
//! their settings (`unit`), the accounts of /etc/passwd and /etc/group
//! (`accounts`), the sandbox those settings make (`sandbox`), and the
//! verdict on one file used one way (`verdict`). This file judges the files
//! of a config for `check`.
//!
//! Knows nothing of nftables; reads files, never changes any.

mod accounts;
mod sandbox;
mod unit;
mod verdict;

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, Result};
pub use sandbox::{Identity, Service};
pub use verdict::Use;

/// The unit's name.
pub const UNIT: &str = "nftsentry.service";

/// What the daemon's memory costs beyond the tracker and the bans.
const BASE_BYTES: u64 = 8 << 20;

/// What one ban costs in the daemon (its record, the set element it
/// mirrors, its line in the state file being rendered); measured: 0.7 KB
/// of resident memory per ban with 20000 bans, rounded up.
pub const BAN_BYTES: u64 = 1024;

/// The line (1-based) of `key = ...` at the top level of the config text.
fn key_line(text: &str, key: &str) -> Option<usize> {
    let mut top = true;
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if l.starts_with('[') {
            top = false;
        }
        if top
            && l.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
        {
            return Some(i + 1);
        }
    }
    None
}

/// Per tracked source, at most: the largest tracker entry and its index
/// slots (5 bytes at load 4/5) with slack.
const TRACKED_BYTES: u64 = crate::detect::Tracker::ENTRY_BYTES as u64 + 8;

/// The memory a config can make the daemon take, at most.
pub fn memory_bound(cfg: &Config) -> u64 {
    BASE_BYTES
        + cfg.max_tracked_sources as u64 * TRACKED_BYTES
        + 2 * u64::from(cfg.set_size) * BAN_BYTES
}

/// `check`'s judgement of the config's files under the installed unit (or
/// as `nftsentry run` would run): the lines to print, or a config error
/// naming each file the service could not use, with the key's line.
pub fn check(cfg: &Config, root: &Path) -> Result<Vec<String>> {
    let service =
        Service::installed(root).unwrap_or_else(|| Service::command_line(root, &cfg.user));
    let mut lines = vec![service.describe()];
    let mut errors = judge_files(cfg, &service);
    errors.extend(judge_config(cfg, &service));
    lines.extend(warnings(cfg, &service));
    if !errors.is_empty() {
        let mut msg = format!(
            "{} file{} the service cannot use ({}):",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            service.describe().trim_start_matches("service: ")
        );
        for e in errors {
            msg.push_str("\n  ");
            msg.push_str(&e);
        }
        return Err(Error::config(msg));
    }
    Ok(lines)
}

/// The files the daemon writes or reads, each judged as the daemon uses
/// it: one message per file the service cannot use, with the key's line
/// and, under the unit, where to keep the file instead.
fn judge_files(cfg: &Config, service: &Service) -> Vec<String> {
    let text = std::fs::read_to_string(&cfg.source).unwrap_or_default();
    let at = |key: &str| match key_line(&text, key) {
        Some(n) => format!("{}:{n}: {key}", cfg.source),
        None => format!("{}: {key}", cfg.source),
    };
    let mut errors = Vec::new();
    let mut judge = |key: &str, path: &Path, how: Use, hint: &str| match service.judge(path, how) {
        Ok(()) => {}
        Err(why) => errors.push(format!(
            "{} {:?}: the service cannot {} it: {why}{hint}",
            at(key),
            path.display().to_string(),
            match how {
                Use::Read => "read",
                Use::Append => "append to",
                Use::Replace => "replace",
                Use::Create => "create",
            }
        )),
    };
    let unit = !service.files.is_empty();
    let elsewhere = if unit {
        "; keep it in /var/lib/nftsentry, the service's state directory"
    } else {
        ""
    };
    if let Some(p) = &cfg.state_file {
        judge("state_file", p, Use::Replace, elsewhere);
    }
    if let Some(p) = &cfg.history_file {
        let hint = if unit {
            "; use history_file = \"/var/lib/nftsentry/history\" (the default) and point what reads the old file there"
        } else {
            ""
        };
        judge("history_file", p, Use::Append, hint);
    }
    if let Some(p) = &cfg.hosts_deny {
        let hint = if unit {
            "; use hosts_deny = \"/var/lib/nftsentry/hosts.deny\" with hosts_deny_line = \"$TARGET$\", and add once to /etc/hosts.deny the line \"ALL: /var/lib/nftsentry/hosts.deny\" (PRIVILEGES in nftsentry(8))"
        } else {
            ""
        };
        judge("hosts_deny", p, Use::Replace, hint);
    }
    if let Some(p) = &cfg.control_socket {
        judge("control_socket", p, Use::Create, elsewhere);
    }
    if let Some(p) = &cfg.ignore_file {
        if std::fs::metadata(service.real(p)).is_ok() {
            judge("ignore_file", p, Use::Read, "");
        }
    }
    errors
}

/// The config file itself, judged by its permissions only: the unit
/// reads /etc/nftsentry/nftsentry.toml, and `check` is often run on a copy
/// that goes there next (mv keeps the mode and owner).
fn judge_config(cfg: &Config, service: &Service) -> Option<String> {
    if cfg.source != crate::config::BUILTIN_SOURCE {
        let config = PathBuf::from(&cfg.source);
        let mut s = service.clone();
        s.mounts.clear();
        if let Err(why) = s.judge(&config, Use::Read) {
            return Some(format!(
                "{}: the service cannot read the config: {why}",
                cfg.source
            ));
        }
    }
    None
}

/// What the unit makes of the config without refusing it: a `user` it
/// overrides, a MemoryMax= the config can exceed.
fn warnings(cfg: &Config, service: &Service) -> Vec<String> {
    let mut lines = Vec::new();
    let unit = !service.files.is_empty();
    if unit && !cfg.user.is_empty() {
        lines.push(format!(
            "warning: user = {:?} is set, but {UNIT} chooses the service's user: leave user empty under the unit",
            cfg.user
        ));
    }
    if let Some(max) = service.memory_max {
        let bound = memory_bound(cfg);
        if bound > max {
            lines.push(format!(
                "warning: this config can take up to {} MiB (max_tracked_sources {} at {} bytes, 2 x set_size {} bans at about 1 KiB), more than MemoryMax={} MiB of {UNIT}: raise it with a drop-in (systemctl edit nftsentry)",
                bound >> 20,
                cfg.max_tracked_sources,
                TRACKED_BYTES,
                cfg.set_size,
                max >> 20
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests;
