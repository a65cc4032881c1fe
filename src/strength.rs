//! strength: how much a ban's evidence proves. Stealth probes need no
//! handshake, so their source can be forged: a single one proves nothing,
//! probes of several ports from one source cost a forger more, and a
//! completed TCP handshake proves the address. Detection finds it, the
//! ledger orders bans by it (a full ban set gives way to stronger
//! evidence), the state file records it.
//!
//! Pure data.

/// How much a ban's evidence proves, weakest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Strength {
    /// One probe without a handshake (stealth, advanced, UDP): forgeable.
    Forgeable,
    /// Probes of two or more ports from the source within the window:
    /// forgeable too, but not by one packet.
    Ports,
    /// A completed TCP handshake with a connect-mode port.
    Handshake,
    /// `nftsentry block`: the admin's word.
    Manual,
}

impl Strength {
    pub const NAMES: [&'static str; 4] = ["forgeable", "ports", "handshake", "manual"];

    pub fn as_str(self) -> &'static str {
        Strength::NAMES[self as usize]
    }

    pub fn from_name(name: &str) -> Option<Strength> {
        Some(match name {
            "forgeable" => Strength::Forgeable,
            "ports" => Strength::Ports,
            "handshake" => Strength::Handshake,
            "manual" => Strength::Manual,
            _ => return None,
        })
    }

    /// What a ban recorded without its evidence (by nftsentry 0.1.0) rests
    /// on, from the scan that made it.
    pub fn of_scan(scan: &str) -> Strength {
        match scan {
            "manual" => Strength::Manual,
            "connect_tcp" => Strength::Handshake,
            _ => Strength::Forgeable,
        }
    }

    /// It proves the source's address.
    pub fn proves_source(self) -> bool {
        self >= Strength::Handshake
    }
}
