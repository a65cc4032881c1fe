//! convert::protocol: the [tcp] and [udp] tables: the mode from Debian's
//! TCP_MODE and UDP_MODE (or Debian 13's enabled units), and TCP_PORTS,
//! ADVANCED_PORTS_TCP, ADVANCED_EXCLUDE_TCP, BLOCK_TCP and their UDP twins.
//!
//! Knows nothing of the top-level keys, except whether a command was
//! written (block mode 2 needs one).

use std::path::Path;

use super::{Out, origin, port_list, ports_value, toml_str};
use crate::cli::import::{DebianDefault, PortsentryConf, Token, atoi};
use crate::config::{PortSet, Proto};

/// MAXSOCKS: PortSentry read at most this many ports of TCP_PORTS/UDP_PORTS.
const MAXSOCKS: usize = 64;

pub(super) fn convert_protocol(
    conf: &PortsentryConf,
    default: Option<&DebianDefault>,
    proto: Proto,
    o: &mut Out,
) {
    mode(default, proto, o);
    ports(conf, proto, o);
    advanced_ports(conf, proto, o);
    advanced_exclude(conf, proto, o);
    block_mode(conf, proto, o);
}

/// mode, from Debian's TCP_MODE / UDP_MODE or Debian 13's enabled units.
fn mode(default: Option<&DebianDefault>, proto: Proto, o: &mut Out) {
    let p = Some(proto);
    match default {
        Some(d) => {
            let (setting, var) = match proto {
                Proto::Tcp => (&d.tcp, "TCP_MODE"),
                Proto::Udp => (&d.udp, "UDP_MODE"),
            };
            let file = Path::new(&d.source)
                .file_name()
                .map_or(d.source.clone(), |f| f.to_string_lossy().into_owned());
            let from = match (&setting.unit, setting.line) {
                (Some(unit), _) => format!("{unit} (enabled)"),
                (None, Some(line)) => format!("{var}=\"{}\" ({file}:{line})", setting.value),
                (None, None) if d.tcp.unit.is_some() || d.udp.unit.is_some() => {
                    format!("no portsentry@ unit for {} enabled", proto.as_str().to_ascii_uppercase())
                }
                (None, None) => format!("{var}: not set in {file}"),
            };
            let how = match setting.mode() {
                "connect" => "PortSentry's classic mode, real sockets on the ports",
                "stealth" => "PortSentry's stealth mode",
                "advanced" => "PortSentry's advanced stealth mode",
                _ if setting.unit.is_none() && (d.tcp.unit.is_some() || d.udp.unit.is_some()) => {
                    "PortSentry did not run for this protocol"
                }
                _ => "the init script started no PortSentry for this protocol",
            };
            o.key(
                p,
                vec![format!("{from}: {how}.")],
                "mode",
                toml_str(setting.mode()),
            );
        }
        None => o.comment(
            p,
            vec![format!(
                "mode: PortSentry took it from its command line (-{0}, -s{0}, -a{0}), which this import cannot see (no /etc/default/portsentry was read); nftsentry's default mode applies. \"connect\" is -{0}, \"stealth\" -s{0}, \"advanced\" -a{0}.",
                proto.as_str()
            )],
        ),
    }
}

/// ports, from TCP_PORTS / UDP_PORTS.
fn ports(conf: &PortsentryConf, proto: Proto, o: &mut Out) {
    let p = Some(proto);
    let up = proto.as_str().to_ascii_uppercase();
    let key = format!("{up}_PORTS");
    let t = conf.token(&key);
    let mut c = vec![origin(conf, &key, &t)];
    match &t {
        Token::Value { value, line, .. } => {
            let (ports, warnings) = port_list(value, &key, *line, &conf.source);
            o.warnings.extend(warnings);
            if ports.len() > MAXSOCKS {
                c.push(format!(
                    "PortSentry watched only the first {MAXSOCKS} of these {} ports (its MAXSOCKS); nftsentry watches them all.",
                    ports.len()
                ));
            }
            let set = PortSet::from_ports(ports);
            let (value, preset) = ports_value(&set, proto);
            match preset {
                Some(name) => c.push(format!("PortSentry's \"{name}\" list.")),
                None if set.is_empty() => c.push(
                    "No ports: PortSentry's stealth and classic modes refused to start without one; nothing is watched."
                        .to_string(),
                ),
                None => {}
            }
            o.key(p, c, "ports", value);
        }
        _ => {
            c.push(
                "PortSentry's stealth and classic modes refused to start without it; nftsentry's default list applies."
                    .to_string(),
            );
            o.comment(p, c);
        }
    }
}

/// advanced_ports, from ADVANCED_PORTS_TCP / ADVANCED_PORTS_UDP.
fn advanced_ports(conf: &PortsentryConf, proto: Proto, o: &mut Out) {
    let p = Some(proto);
    let up = proto.as_str().to_ascii_uppercase();
    let key = format!("ADVANCED_PORTS_{up}");
    let t = conf.token(&key);
    let mut c = vec![origin(conf, &key, &t)];
    let n = t.value().map_or(1024, |v| atoi(v).0);
    let advanced = if !(0..=65535).contains(&n) {
        c.push(
            "Beyond 65535 (a negative number wraps around in PortSentry), so every port: nftsentry's largest value, 65535, watches 1-65534."
                .to_string(),
        );
        65535
    } else if n == 0 {
        c.push("0: PortSentry's advanced mode watched no port; 1 does the same.".to_string());
        1
    } else {
        if t.value().is_none() {
            c.push("PortSentry assumed 1024.".to_string());
        }
        n
    };
    c.push(format!(
        "Advanced mode watches ports 1 to {} that have no listener.",
        advanced - 1
    ));
    o.key(p, c, "advanced_ports", advanced.to_string());
}

/// advanced_exclude: absent means nothing excluded in PortSentry, while
/// nftsentry's default excludes PortSentry's suggested ports.
fn advanced_exclude(conf: &PortsentryConf, proto: Proto, o: &mut Out) {
    let p = Some(proto);
    let up = proto.as_str().to_ascii_uppercase();
    let key = format!("ADVANCED_EXCLUDE_{up}");
    let t = conf.token(&key);
    let mut c = vec![origin(conf, &key, &t)];
    let ports = match &t {
        Token::Value { value, line, .. } => {
            let (ports, warnings) = port_list(value, &key, *line, &conf.source);
            o.warnings.extend(warnings);
            ports
        }
        _ => {
            c.push(
                "PortSentry excluded no port then, unlike nftsentry's default; so none here."
                    .to_string(),
            );
            Vec::new()
        }
    };
    o.key(
        p,
        c,
        "advanced_exclude",
        toml_str(&PortSet::from_ports(ports).to_string()),
    );
}

/// block_mode from BLOCK_TCP / BLOCK_UDP: 1 block, 2 command only,
/// anything else (and absent: CheckFlag's FALSE) log only.
fn block_mode(conf: &PortsentryConf, proto: Proto, o: &mut Out) {
    let p = Some(proto);
    let up = proto.as_str().to_ascii_uppercase();
    let key = format!("BLOCK_{up}");
    let t = conf.token(&key);
    let mut c = vec![origin(conf, &key, &t)];
    let n = t.value().map_or(0, |v| atoi(v).0);
    let mode = match n {
        1 => {
            c.push(
                "1: block. nftsentry bans the source in its nftables set, then runs the actions above."
                    .to_string(),
            );
            "block"
        }
        2 if o.has_command => {
            c.push("2: run the external command only, no ban.".to_string());
            "command"
        }
        2 => {
            c.push(
                "2: run the external command only, but there is none to run, so PortSentry only logged; so does nftsentry."
                    .to_string(),
            );
            "log"
        }
        _ => {
            c.push(format!(
                "{}PortSentry only logged ({} scans were not blocked); so does nftsentry. Write block_mode = \"block\" to ban.",
                if t.value().is_none() {
                    "Absent, i.e. 0: ".to_string()
                } else {
                    format!("{n}: ")
                },
                up
            ));
            "log"
        }
    };
    o.key(p, c, "block_mode", toml_str(mode));
}
