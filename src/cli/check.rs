//! check: `nftsentry check`, what the config and the ignore file ask for,
//! printed, with nothing changed.

use std::path::PathBuf;

use crate::config::{Config, RouteMode};
use crate::error::Result;
use crate::host::ignores;

pub fn check(cfg: &Config) -> Result<()> {
    let ignores = ignores::collect(cfg)?;
    // The files as the installed unit (or `run` by hand) will use them.
    let service = crate::cli::unit_sandbox::check(cfg, std::path::Path::new("/"))?;
    println!("config {}: OK", cfg.source);
    println!(
        "table inet {} at priority {}",
        cfg.table,
        crate::table::ruleset::render_priority(cfg.chain_priority)
    );
    for (name, p) in [("tcp", &cfg.tcp), ("udp", &cfg.udp)] {
        println!(
            "{name}: mode {}, {} ports watched by tripwires, {} ports listened on",
            p.mode,
            p.tripwire_ports().len(),
            p.connect_ports().len()
        );
    }
    println!(
        "ban time {}, at most {} bans per family",
        crate::config::format_duration(cfg.ban_time),
        cfg.set_size
    );
    println!("{} ignored networks", ignores.len());
    for w in crate::service::handshake_warnings(cfg) {
        println!("warning: {w}");
    }
    println!(
        "block mode: tcp {}, udp {}",
        cfg.tcp.block_mode, cfg.udp.block_mode
    );
    for line in describe_actions(cfg) {
        println!("{line}");
    }
    let path = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "none".into())
    };
    println!("history file: {}", path(&cfg.history_file));
    println!("state file: {}", path(&cfg.state_file));
    service.iter().for_each(|l| println!("{l}"));
    if cfg.crowdsec.enabled {
        // The secret files as the daemon will read them, and the TLS files
        // parsed; nothing is sent.
        let uid = match cfg.user.as_str() {
            "" => None,
            name => nix::unistd::User::from_name(name)
                .ok()
                .flatten()
                .map(|u| u.uid.as_raw()),
        };
        let secrets = crate::fleet::Secrets::load(&cfg.crowdsec, uid)?;
        crate::fleet::client::Client::new(&cfg.crowdsec, &secrets)
            .map_err(|e| crate::error::Error::config(format!("{}: [crowdsec]: {e}", cfg.source)))?;
        if cfg.crowdsec.push {
            let queue = crate::fleet::queue_file(cfg.state_file.as_deref());
            println!("crowdsec alert queue: {}", path(&queue));
        }
    }
    println!("{}", cfg.crowdsec.describe());
    Ok(())
}

/// The route kinds in use, for `nftsentry check`.
pub fn describe_actions(cfg: &Config) -> Vec<String> {
    let mut v = Vec::new();
    let native = (cfg.route != RouteMode::Off && cfg.kill_route.is_empty()).then_some(cfg.route);
    if let Some(r) = native {
        v.push(format!(
            "route: {r} (native, proto {})",
            crate::kernel::rtnetlink::RTPROT_NFTSENTRY
        ));
    }
    if !cfg.kill_route.is_empty() {
        v.push(format!("kill_route: {}", cfg.kill_route));
    }
    if let Some(p) = &cfg.hosts_deny {
        v.push(format!(
            "hosts.deny: {} (\"{}\")",
            p.display(),
            cfg.hosts_deny_line
        ));
    }
    if !cfg.command.is_empty() {
        v.push(format!(
            "command: {:?}{}{}",
            cfg.command,
            if cfg.command_shell {
                " through /bin/sh -c"
            } else {
                ""
            },
            if cfg.run_before_block {
                ", before the block"
            } else {
                ""
            }
        ));
    }
    v
}
