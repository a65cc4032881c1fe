//! How one protocol is watched: the tripwire half of a mode (none, stealth,
//! advanced), connect mode's real sockets, and the combinations the config
//! file may write (`["advanced", "connect"]`).
//!
//! Knows nothing of TOML or of which ports a mode ends up watching:
//! `Protocol` says that.

use std::fmt;

/// The tripwire half of a mode: which ports the kernel logs probes of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tripwires {
    None,
    /// The ports in `ports` (PortSentry's -stcp/-sudp).
    Stealth,
    /// Every port below `advanced_ports` but the excluded ones (-atcp/-audp).
    Advanced,
}

/// How one protocol is watched: tripwires, real sockets (`connect`, as
/// PortSentry's -tcp/-udp), both, or nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    pub tripwires: Tripwires,
    pub connect: bool,
}

impl Mode {
    pub const OFF: Mode = Mode {
        tripwires: Tripwires::None,
        connect: false,
    };
    pub const STEALTH: Mode = Mode {
        tripwires: Tripwires::Stealth,
        connect: false,
    };
    pub const ADVANCED: Mode = Mode {
        tripwires: Tripwires::Advanced,
        connect: false,
    };
    pub const CONNECT: Mode = Mode {
        tripwires: Tripwires::None,
        connect: true,
    };

    /// The names the config file accepts.
    pub const NAMES: &'static [&'static str] = &["stealth", "advanced", "connect", "off"];

    pub fn is_off(self) -> bool {
        self == Mode::OFF
    }

    pub fn from_name(name: &str) -> Option<Mode> {
        match name {
            "off" => Some(Mode::OFF),
            "stealth" => Some(Mode::STEALTH),
            "advanced" => Some(Mode::ADVANCED),
            "connect" => Some(Mode::CONNECT),
            _ => None,
        }
    }

    /// The mode of several names, e.g. `["advanced", "connect"]`. Stealth
    /// and connect both use `ports`, which would leave the tripwires only
    /// ports that nftsentry itself listens on: refused with the alternative.
    pub fn combine(names: &[&str]) -> Result<Mode, String> {
        let mut m = Mode::OFF;
        if names.is_empty() {
            return Err("empty mode list: write \"off\" to watch nothing".into());
        }
        for &name in names {
            let one = Mode::from_name(name).ok_or_else(|| unknown_mode(name))?;
            if one.is_off() {
                return Err("\"off\" cannot be combined with another mode".into());
            }
            let same_wires = one.tripwires != Tripwires::None && one.tripwires == m.tripwires;
            if (one.connect && m.connect) || same_wires {
                return Err(format!("mode `{name}` is listed twice"));
            }
            if one.tripwires != Tripwires::None && m.tripwires != Tripwires::None {
                return Err("\"stealth\" and \"advanced\" are alternatives: pick one".to_string());
            }
            m.connect |= one.connect;
            if one.tripwires != Tripwires::None {
                m.tripwires = one.tripwires;
            }
        }
        if m.connect && m.tripwires == Tripwires::Stealth {
            return Err("\"stealth\" and \"connect\" would both use `ports`, and a port nftsentry listens on is never a tripwire: use [\"advanced\", \"connect\"] to listen on `ports` and watch every other port below `advanced_ports`".to_string());
        }
        Ok(m)
    }
}

pub(super) fn unknown_mode(s: &str) -> String {
    format!(
        "unknown mode `{s}`; valid modes: {}",
        Mode::NAMES
            .iter()
            .map(|m| format!("\"{m}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wires = match self.tripwires {
            Tripwires::None => None,
            Tripwires::Stealth => Some("stealth"),
            Tripwires::Advanced => Some("advanced"),
        };
        match (wires, self.connect) {
            (None, false) => f.write_str("off"),
            (None, true) => f.write_str("connect"),
            (Some(w), false) => f.write_str(w),
            (Some(w), true) => write!(f, "{w}+connect"),
        }
    }
}
