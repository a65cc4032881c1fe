//! How PortSentry is started on this system: Debian 13's portsentry@MODE
//! units (portsentry 1.2-15 and later), enabled by links in the `*.wants`
//! directories of /etc/systemd/system, whose names carry the modes and
//! which do not read /etc/default/portsentry; or, on Debian 12 and before,
//! the init script.
//!
//! Knows nothing of portsentry.conf, nor of what is left to do about the
//! services (`todo` says that).

use std::path::Path;

use super::{DebianDefault, ModeSetting};

/// How PortSentry is started on this system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Services {
    /// Debian 13 (portsentry 1.2-15 and later): enabled instances of
    /// portsentry@.service, named by their mode, sorted.
    Units(Vec<String>),
    /// Debian 12 and before: the init script, modes in
    /// /etc/default/portsentry.
    InitScript,
    /// Neither (PortSentry not installed, or started some other way).
    Unknown,
}

/// PortSentry's units enabled in `systemd_dir` (links in its `*.wants`
/// directories), else its init script if there is one.
pub fn find_services(systemd_dir: &Path, init_script: &Path) -> Services {
    let mut units = Vec::new();
    if let Ok(rd) = std::fs::read_dir(systemd_dir) {
        for wants in rd.flatten() {
            if !wants.file_name().to_string_lossy().ends_with(".wants") {
                continue;
            }
            for e in std::fs::read_dir(wants.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("portsentry@") && name.ends_with(".service") {
                    units.push(name);
                }
            }
        }
    }
    units.sort();
    units.dedup();
    if !units.is_empty() {
        Services::Units(units)
    } else if init_script.exists() {
        Services::InitScript
    } else {
        Services::Unknown
    }
}

impl DebianDefault {
    /// The modes of Debian 13's enabled units (`portsentry@stcp.service`:
    /// TCP in stealth mode), which do not read /etc/default/portsentry.
    /// `source` names where they were found.
    pub fn from_units(units: &[String], source: &str) -> DebianDefault {
        let mut d = DebianDefault::parse("", source).unwrap_or_else(|_| unreachable!());
        for u in units {
            let Some(mode) = u
                .strip_prefix("portsentry@")
                .and_then(|m| m.strip_suffix(".service"))
            else {
                continue;
            };
            let setting = match mode {
                "tcp" | "stcp" | "atcp" => &mut d.tcp,
                "udp" | "sudp" | "audp" => &mut d.udp,
                _ => {
                    d.warnings.push(format!(
                        "{source}: {u} is not a PortSentry mode (tcp, stcp, atcp, udp, sudp, audp); left out"
                    ));
                    continue;
                }
            };
            if let Some(first) = &setting.unit {
                d.warnings.push(format!(
                    "{source}: {u} and {first} are both enabled: PortSentry ran both; converted {first} only"
                ));
                continue;
            }
            *setting = ModeSetting {
                value: mode.to_string(),
                line: None,
                unit: Some(u.clone()),
            };
        }
        d
    }
}
