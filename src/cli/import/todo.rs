//! What is left to do by hand, as root, once the config is converted, for
//! nftsentry to do PortSentry's job under the packaged unit: stop and
//! disable PortSentry's services, point fail2ban's jails on PortSentry's
//! history file at nftsentry's, and include nftsentry's hosts.deny file in
//! /etc/hosts.deny; and the text of these steps on standard error, a block
//! of comments and commands to paste into a root shell.
//!
//! Knows nothing of portsentry.conf: the conversion says which steps there
//! are; this file says how each is done.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::convert::comment_lines;
use super::{HOSTS_DENY, INIT_SCRIPT, SERVICE_DIR, SERVICE_HISTORY, SERVICE_HOSTS_DENY, Services};

/// One step left to do after the import: why, then shell commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Todo {
    pub why: String,
    pub commands: Vec<String>,
}

/// The steps as printed on standard error: a heading, then for each step
/// its reason as a `#` comment and its commands, indented, so that the
/// block can be pasted into a root shell as it is.
pub fn todo_text(todo: &[Todo]) -> String {
    if todo.is_empty() {
        return String::new();
    }
    let mut s = String::from("nftsentry: to finish the migration, run as root:\n");
    for t in todo {
        let mut c = String::new();
        comment_lines(&t.why, &mut c);
        for line in c.lines() {
            let _ = writeln!(s, "    {line}");
        }
        for cmd in &t.commands {
            let _ = writeln!(s, "    {cmd}");
        }
    }
    s
}

/// `s` as one word for /bin/sh: in single quotes, each `'` as `'\''`.
pub(super) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Stopping PortSentry for good, as its services are set up.
pub(super) fn services_todo(services: &Services) -> Option<Todo> {
    match services {
        Services::Units(units) => Some(Todo {
            why: format!(
                "PortSentry: its units {} would start again at boot and take ports from nftsentry: disable them (and stop them, if they still run).",
                units.join(", ")
            ),
            commands: vec![format!("systemctl disable --now {}", units.join(" "))],
        }),
        Services::InitScript => Some(Todo {
            why: format!(
                "PortSentry: its init script {INIT_SCRIPT} would start it again at boot and take ports from nftsentry: disable it (and stop it, if it still runs; `systemctl disable --now` does not stop a service of an init script)."
            ),
            commands: vec![
                "systemctl stop portsentry".to_string(),
                "systemctl disable portsentry".to_string(),
            ],
        }),
        Services::Unknown => None,
    }
}

/// Make tcp_wrappers read nftsentry's file of banned addresses: `include`,
/// the line for /etc/hosts.deny (`HostsDenySplit::include`), added once.
pub(super) fn hosts_deny_todo(include: &str) -> Todo {
    Todo {
        why: format!(
            "hosts.deny: nftsentry adds the banned addresses to {SERVICE_HOSTS_DENY}; this line, once in {HOSTS_DENY}, makes tcp_wrappers read them."
        ),
        commands: vec![format!(
            "grep -qsxF {q} {HOSTS_DENY} || echo {q} >> {HOSTS_DENY}",
            q = sh_quote(include)
        )],
    }
}

/// The jails of fail2ban's configuration in `dir` (jail.conf, jail.local,
/// jail.d/*.conf and *.local) whose `logpath` names `old`, in the order
/// found, each once.
pub fn fail2ban_jails(dir: &Path, old: &str) -> Vec<String> {
    let mut files = vec![dir.join("jail.conf"), dir.join("jail.local")];
    if let Ok(rd) = std::fs::read_dir(dir.join("jail.d")) {
        let mut more: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "conf" || x == "local"))
            .collect();
        more.sort();
        files.extend(more);
    }
    let mut jails: Vec<String> = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let mut section = String::new();
        // A logpath value may go on over indented lines.
        let mut in_logpath = false;
        for raw in text.lines() {
            let l = raw.trim();
            if l.starts_with('#') || l.starts_with(';') {
                continue;
            }
            if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                section = name.trim().to_string();
                in_logpath = false;
                continue;
            }
            let continued = in_logpath && raw.starts_with([' ', '\t']) && !l.is_empty();
            let value = match l.split_once(['=', ':']) {
                Some((k, v)) if !continued && k.trim() == "logpath" => {
                    in_logpath = true;
                    v
                }
                _ if continued => l,
                _ => {
                    in_logpath = false;
                    continue;
                }
            };
            let names = value.split_whitespace().any(|w| w == old);
            if names && section != "DEFAULT" && !section.is_empty() && !jails.contains(&section) {
                jails.push(section.clone());
            }
        }
    }
    jails
}

/// Point fail2ban's jails on PortSentry's history file at nftsentry's.
pub(super) fn fail2ban_todo(dir: &Path, old: &str) -> Option<Todo> {
    let jails = fail2ban_jails(dir, old);
    if jails.is_empty() {
        return None;
    }
    let mut body = String::new();
    for j in &jails {
        let _ = write!(body, "[{j}]\\nlogpath = {SERVICE_HISTORY}\\n");
    }
    let file = dir.join("jail.d").join("nftsentry-history.local");
    Some(Todo {
        why: format!(
            "fail2ban: the jail{} {} read{} PortSentry's history file {old}; nftsentry writes the same lines to {SERVICE_HISTORY}, so point {} there (once nftsentry has started: the file is made for its user).",
            if jails.len() == 1 { "" } else { "s" },
            jails
                .iter()
                .map(|j| format!("[{j}]"))
                .collect::<Vec<_>>()
                .join(", "),
            if jails.len() == 1 { "s" } else { "" },
            if jails.len() == 1 { "it" } else { "them" },
        ),
        commands: vec![
            // fail2ban refuses a jail whose file does not exist: make it now,
            // for the service's user (the owner of the state directory once
            // nftsentry has started), as the daemon would at its first ban.
            format!(
                "[ -e {SERVICE_HISTORY} ] || install -m 600 -o \"$(stat -Lc %u {SERVICE_DIR})\" -g \"$(stat -Lc %g {SERVICE_DIR})\" /dev/null {SERVICE_HISTORY}"
            ),
            format!(
                "printf {} > {}",
                sh_quote(&body),
                sh_quote(&file.display().to_string())
            ),
            "systemctl try-reload-or-restart fail2ban".to_string(),
        ],
    })
}
