//! evidence: what a ban rests on, and how much that proves. Stealth probes
//! need no handshake, so their source can be forged: a single one proves
//! nothing, probes of several ports from one source cost a forger more, and
//! a completed TCP handshake proves the address. A full ban set gives way
//! to the strongest evidence, and a flood of the weakest cannot ban a
//! source by itself (the storm guard).
//!
//! Pure data.

use std::net::IpAddr;

use super::classify::ScanType;
use crate::cidr::Cidr;
pub use crate::strength::Strength;

/// The strength of a detection: `scan` with `ports` distinct ports
/// probed in the window.
pub fn strength_of(scan: ScanType, ports: u32) -> Strength {
    if scan == ScanType::TcpConnect {
        Strength::Handshake
    } else if ports >= 2 {
        Strength::Ports
    } else {
        Strength::Forgeable
    }
}

/// The evidence behind a ban.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// The source that probed.
    pub addr: IpAddr,
    /// What a ban covers: the source itself (IPv4), or its IPv6 prefix
    /// (`ban_prefix6`), or the source alone when that prefix holds an
    /// ignored address.
    pub net: Cidr,
    /// The prefix asked for (`ban_prefix6`, or the address's full length):
    /// `net` is longer when the prefix held an ignored address.
    pub wanted: u8,
    /// The prefixes around `net` a ban may escalate to (`escalate_after`),
    /// narrowest first: those that hold no ignored address.
    pub escalate: Vec<Cidr>,
    pub scan: ScanType,
    pub port: u16,
    /// $MODE$ for templates: PortSentry's name of the mode that saw it.
    pub mode: &'static str,
    pub strength: Strength,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strengths_order_and_names() {
        assert!(Strength::Forgeable < Strength::Ports);
        assert!(Strength::Ports < Strength::Handshake);
        assert!(Strength::Handshake < Strength::Manual);
        for n in Strength::NAMES {
            assert_eq!(Strength::from_name(n).unwrap().as_str(), n);
        }
        assert_eq!(strength_of(ScanType::TcpSynNormal, 1), Strength::Forgeable);
        assert_eq!(strength_of(ScanType::Udp, 3), Strength::Ports);
        assert_eq!(strength_of(ScanType::TcpConnect, 1), Strength::Handshake);
        assert!(!Strength::Ports.proves_source());
    }
}
