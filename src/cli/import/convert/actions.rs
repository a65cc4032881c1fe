//! convert::actions: KILL_ROUTE, KILL_HOSTS_DENY, KILL_RUN_CMD and
//! KILL_RUN_CMD_FIRST, the actions PortSentry took on a scan, whether their
//! commands need /bin/sh, and the hosts.deny template taken apart for the
//! file of addresses that /etc/hosts.deny includes under the packaged unit.
//!
//! Knows nothing of block modes (`protocol` reads BLOCK_TCP and BLOCK_UDP)
//! beyond whether a command was written.

use super::{Out, needs_shell, origin, toml_str};
use crate::cli::import::todo::hosts_deny_todo;
use crate::cli::import::{
    HOSTS_DENY, KillRoute, PortsentryConf, SERVICE_HOSTS_DENY, atoi, classify_kill_route,
};

pub(super) fn convert_actions(conf: &PortsentryConf, o: &mut Out) {
    // command_shell covers both kill_route and command: set it when either
    // needs /bin/sh, as PortSentry's system(3) gave them.
    let mut shell_for = Vec::new();
    kill_route(conf, o, &mut shell_for);
    hosts_deny(conf, o);
    run_cmd(conf, o, &mut shell_for);
    if !shell_for.is_empty() {
        o.key(
            None,
            vec![format!(
                "{} uses shell syntax (pipes, redirections, quotes, ...), so it runs through /bin/sh -c as PortSentry's system(3) ran it. nftsentry puts the replaced values in single quotes.",
                shell_for.join(" and ")
            )],
            "command_shell",
            "true".to_string(),
        );
    }

    o.no_equivalent.push(
        "PortSentry's blocks never expired. nftsentry's bans last ban_time (default 1d); set ban_time = \"365d\" for bans that practically do not end."
            .to_string(),
    );
}

/// KILL_ROUTE: a native route, a filter rule that the ban already is, or
/// a command kept as `kill_route`.
fn kill_route(conf: &PortsentryConf, o: &mut Out, shell_for: &mut Vec<&'static str>) {
    let t = conf.token("KILL_ROUTE");
    let mut c = vec![origin(conf, "KILL_ROUTE", &t)];
    match t.value().filter(|v| !v.trim().is_empty()) {
        None => {
            c.push("No route action, as in nftsentry's default (route = \"off\").".to_string());
            o.comment(None, c);
        }
        Some(cmd) => match classify_kill_route(cmd) {
            KillRoute::Route(kind, form) => {
                c.push(format!(
                    "This is {form}: nftsentry adds a native {kind} route for a banned source itself (rtnetlink, no command) and removes it when the ban ends."
                ));
                o.key(None, c, "route", toml_str(kind));
            }
            KillRoute::FilterDrop(what) => {
                // The nft ban drops every packet from the source before any
                // other rule sees it, so the filter rule would add nothing.
                c.push(format!(
                    "Not converted: this packet filter rule {what} the source, and nftsentry's ban already drops every packet from it in its own nftables table (and expires, where PortSentry's rule stayed until reboot)."
                ));
                if what == "rejects" {
                    c.push(
                        "REJECT answered with an ICMP error; nftsentry drops silently.".to_string(),
                    );
                }
                o.comment(None, c);
            }
            KillRoute::Command => {
                c.push(
                    "Not a form nftsentry turns into a native route, so kept as a command, run for each ban with $TARGET$, $PORT$ and $MODE$ replaced (and not undone when the ban ends, as with PortSentry)."
                        .to_string(),
                );
                if needs_shell(cmd) {
                    shell_for.push("KILL_ROUTE");
                }
                o.key(None, c, "kill_route", toml_str(cmd.trim()));
            }
            KillRoute::NoTarget => {
                c.push(
                    "Not converted: it has no $TARGET$, so PortSentry skipped it (\"No target variable specified\")."
                        .to_string(),
                );
                o.comment(None, c);
            }
        },
    }
}

/// KILL_HOSTS_DENY: the line template; the file was compiled in.
fn hosts_deny(conf: &PortsentryConf, o: &mut Out) {
    let t = conf.token("KILL_HOSTS_DENY");
    let mut c = vec![origin(conf, "KILL_HOSTS_DENY", &t)];
    match t.value().filter(|v| !v.trim().is_empty()) {
        Some(line) if !line.contains("$TARGET$") => {
            c.push(
                "Not converted: it has no $TARGET$, so PortSentry skipped it (\"No target variable specified\")."
                    .to_string(),
            );
            o.comment(None, c);
        }
        Some(line) if line.trim_start().starts_with('#') => {
            c.push(
                "Not converted: the line is a comment in hosts.deny, so it blocked nothing."
                    .to_string(),
            );
            o.comment(None, c);
        }
        Some(line) => {
            let split = split_hosts_deny(line);
            c.push(format!(
                "PortSentry appended this line to {HOSTS_DENY} (its compiled-in path), duplicates included, and never removed it. The packaged systemd unit keeps /etc read-only, so nftsentry writes the addresses, one per ban and removed when the ban ends, to {SERVICE_HOSTS_DENY}, and one line in {HOSTS_DENY} makes tcp_wrappers read them (a pattern that starts with / names a file of addresses):"
            ));
            c.push(format!("  {}", split.include));
            c.push(
                "import-portsentry printed the command that adds it on standard error. Few services still read hosts.deny (current OpenSSH does not); the lines PortSentry added stay in /etc/hosts.deny until you remove them."
                    .to_string(),
            );
            c.push(format!(
                "Run as root without the unit, hosts_deny = \"{HOSTS_DENY}\" with hosts_deny_line = {} would write /etc/hosts.deny as PortSentry did.",
                toml_str(line)
            ));
            if let Some(n) = &split.note {
                c.push(n.clone());
            }
            o.key(None, c, "hosts_deny", toml_str(SERVICE_HOSTS_DENY));
            o.key(
                None,
                Vec::new(),
                "hosts_deny_line",
                toml_str(&split.file_line),
            );
            o.todo.push(hosts_deny_todo(&split.include));
        }
        None => {
            c.push(
                "No hosts.deny action, as in nftsentry's default (hosts_deny = \"\").".to_string(),
            );
            o.comment(None, c);
        }
    }
}

/// KILL_RUN_CMD and KILL_RUN_CMD_FIRST (read only when there is a command).
fn run_cmd(conf: &PortsentryConf, o: &mut Out, shell_for: &mut Vec<&'static str>) {
    let t = conf.token("KILL_RUN_CMD");
    let mut c = vec![origin(conf, "KILL_RUN_CMD", &t)];
    let first = conf.token("KILL_RUN_CMD_FIRST");
    match t.value().map(str::trim).filter(|v| !v.is_empty()) {
        Some(cmd)
            if cmd
                .split_whitespace()
                .next()
                .is_some_and(|p| p.contains('$')) =>
        {
            c.push(
                "Not converted: the program itself is a variable; nftsentry runs a fixed program. Put it in a script that takes $TARGET$ as an argument."
                    .to_string(),
            );
            o.comment(None, c);
        }
        Some(cmd) => {
            c.push(
                "Run for each ban with $TARGET$, $PORT$ and $MODE$ replaced in each word (and passed as TARGET, PORT and MODE in the environment)."
                    .to_string(),
            );
            o.has_command = true;
            if needs_shell(cmd) {
                shell_for.push("KILL_RUN_CMD");
                o.key(None, c, "command", toml_str(cmd));
            } else {
                let words: Vec<String> = cmd.split_whitespace().map(toml_str).collect();
                o.key(None, c, "command", format!("[{}]", words.join(", ")));
            }
            let run_first = first.value().is_some_and(|v| atoi(v).0 != 0);
            let mut c = vec![origin(conf, "KILL_RUN_CMD_FIRST", &first)];
            if first.value().is_none() {
                c.push("PortSentry ran the command after blocking then.".to_string());
            }
            o.key(None, c, "run_before_block", run_first.to_string());
        }
        None => {
            c.push("No external command, as in nftsentry's default (command = []).".to_string());
            if first.line().is_some() {
                c.push(format!(
                    "{}: without effect, PortSentry read it only with a KILL_RUN_CMD.",
                    origin(conf, "KILL_RUN_CMD_FIRST", &first)
                ));
            }
            o.comment(None, c);
        }
    }
}

/// A KILL_HOSTS_DENY template taken apart for a file that /etc/hosts.deny
/// includes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostsDenySplit {
    /// hosts_deny_line: the client part, e.g. `$TARGET$`.
    pub file_line: String,
    /// The line for /etc/hosts.deny: the daemon part, the file, the options.
    pub include: String,
    /// Why the template could not be kept whole, if so.
    pub note: Option<String>,
}

/// `DAEMONS : CLIENTS [: OPTIONS...]` (hosts_access(5), hosts_options(5)):
/// the file gets CLIENTS for each ban, /etc/hosts.deny gets
/// `DAEMONS: /var/lib/nftsentry/hosts.deny [: OPTIONS]` once.
pub fn split_hosts_deny(template: &str) -> HostsDenySplit {
    let fields: Vec<&str> = template.split(':').map(str::trim).collect();
    let plain = |clients: &str| {
        !clients.is_empty()
            && clients.contains("$TARGET$")
            && !clients
                .split_whitespace()
                .any(|w| w.eq_ignore_ascii_case("EXCEPT"))
    };
    if fields.len() >= 2 && !fields[0].is_empty() && plain(fields[1]) {
        let mut include = format!("{}: {SERVICE_HOSTS_DENY}", fields[0]);
        let options = fields[2..].join(" : ");
        if !options.trim().is_empty() {
            include.push_str(" : ");
            include.push_str(options.trim());
        }
        return HostsDenySplit {
            file_line: fields[1].to_string(),
            include,
            note: None,
        };
    }
    HostsDenySplit {
        file_line: "$TARGET$".to_string(),
        include: format!("ALL: {SERVICE_HOSTS_DENY}"),
        note: Some(format!(
            "The line is not of the form `DAEMONS : $TARGET$ [: OPTIONS]`, so its services and options were not kept: check the line for {HOSTS_DENY}."
        )),
    }
}
