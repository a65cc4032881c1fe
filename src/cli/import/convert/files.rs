//! convert::files: HISTORY_FILE, BLOCKED_FILE and IGNORE_FILE, where the
//! history goes under the packaged unit, and where the imported ignore
//! entries go.
//!
//! Knows nothing of the actions on a ban or of the [tcp] and [udp] tables.

use std::path::Path;

use super::{Out, origin, toml_str};
use crate::cli::import::{
    IgnoreImport, PortsentryConf, SERVICE_DIR, SERVICE_HISTORY, absolute, shorten,
};

pub(super) fn convert_files(
    conf: &PortsentryConf,
    ignore: Option<&IgnoreImport>,
    write_ignore: Option<&Path>,
    o: &mut Out,
) {
    history_file(conf, o);
    blocked_file(conf, o);
    ignore_file(conf, ignore, write_ignore, o);
}

/// HISTORY_FILE: same line format, so the file can go on growing; but
/// where the packaged unit lets the service write.
fn history_file(conf: &PortsentryConf, o: &mut Out) {
    let t = conf.token("HISTORY_FILE");
    let mut c = vec![origin(conf, "HISTORY_FILE", &t)];
    match t.value() {
        Some(v) if v.ends_with('/') => {
            c.push(
                "A directory: PortSentry could not open it and wrote no history; so none here."
                    .to_string(),
            );
            o.key(None, c, "history_file", toml_str(""));
        }
        Some(v) if !v.is_empty() => {
            let path = absolute(v);
            let service_may_write = [SERVICE_DIR, "/run/nftsentry"]
                .iter()
                .any(|d| Path::new(&path).starts_with(d) && Path::new(&path) != Path::new(d));
            if service_may_write {
                c.push(
                    "nftsentry appends the same lines (fail2ban's portsentry filter reads them)."
                        .to_string(),
                );
                o.key(None, c, "history_file", toml_str(&path));
            } else {
                c.push(format!(
                    "nftsentry appends the same lines (fail2ban's portsentry filter reads them), but to {SERVICE_HISTORY}: the packaged systemd unit lets the service write only {SERVICE_DIR} and /run/nftsentry (and purging Debian's portsentry package deletes {path})."
                ));
                c.push(
                    "A fail2ban jail or script that reads the old file must read this one: import-portsentry printed how on standard error for the jails it found."
                        .to_string(),
                );
                o.old_history = Some(path);
                o.key(None, c, "history_file", toml_str(SERVICE_HISTORY));
            }
        }
        Some(_) => {
            c.push(
                "Empty: PortSentry could not open it and wrote no history; so none here."
                    .to_string(),
            );
            o.key(None, c, "history_file", toml_str(""));
        }
        None => {
            c.push(
                "PortSentry refused to start without it; nftsentry's default history file applies."
                    .to_string(),
            );
            o.comment(None, c);
        }
    }
}

/// BLOCKED_FILE: no equivalent, nftsentry's state file is its own.
fn blocked_file(conf: &PortsentryConf, o: &mut Out) {
    let t = conf.token("BLOCKED_FILE");
    o.no_equivalent.push(format!(
        "{}: PortSentry emptied it at each start and listed that run's blocks; nftsentry keeps its active bans, with their time left, in state_file (its own format, default /var/lib/nftsentry/state), and `nftsentry list` shows them.",
        origin(conf, "BLOCKED_FILE", &t)
    ));
}

/// IGNORE_FILE: the entries move to nftsentry's own ignore file, since a
/// line PortSentry tolerated can be an error for nftsentry.
fn ignore_file(
    conf: &PortsentryConf,
    ignore: Option<&IgnoreImport>,
    write_ignore: Option<&Path>,
    o: &mut Out,
) {
    let t = conf.token("IGNORE_FILE");
    let mut c = vec![origin(conf, "IGNORE_FILE", &t)];
    match (ignore, write_ignore) {
        (Some(ig), Some(path)) => {
            c.push(format!(
                "Its {} valid entries from {} were written to {}.",
                ig.entries.len(),
                ig.source,
                path.display()
            ));
            ignore_notes(ig, &mut c);
            o.key(
                None,
                c,
                "ignore_file",
                toml_str(&path.display().to_string()),
            );
        }
        (Some(ig), None) => {
            c.push(format!(
                "Its {} valid entries from {} are listed below: save them, without the comment signs, in /etc/nftsentry/ignore (the default ignore_file), or run the import again with --write-ignore /etc/nftsentry/ignore.",
                ig.entries.len(),
                ig.source
            ));
            ignore_notes(ig, &mut c);
            for (_, e) in &ig.entries {
                c.push(format!("  {e}"));
            }
            o.comment(None, c);
        }
        (None, _) => {
            c.push("No ignore file was read; the default ignore_file applies.".to_string());
            o.comment(None, c);
        }
    }
    o.comment(
        None,
        vec![
            "ignore_local = true (the default) also never bans this host's own addresses, loopback, its default gateways and its resolvers: Debian's init script copied the interface addresses into portsentry.ignore for the same purpose."
                .to_string(),
        ],
    );
}

fn ignore_notes(ig: &IgnoreImport, c: &mut Vec<String>) {
    if !ig.local.is_empty() {
        c.push(format!(
            "Left out: {} address(es) that Debian's portsentry-build-ignore-file copied from this host's interfaces ({}); ignore_local covers them.",
            ig.local.len(),
            ig.local.join(", ")
        ));
    }
    for (line, text, why) in &ig.invalid {
        c.push(format!("Left out, line {line}: `{}`: {why}", shorten(text)));
    }
}
