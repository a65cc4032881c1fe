//! PortSentry 1.2's names for probes and its attackalert lines, word for
//! word, so that admins and their log parsers read what they always read.
//!
//! Reference: PortSentry 1.2 `portsentry.c` ($Id: portsentry.c,v 1.40
//! 2003/05/23), functions `ReportPacketType` (the names and their flag tests),
//! `PortSentryStealthModeTCP` / `PortSentryStealthModeUDP` (the ACK/RST filter
//! and the Log() format strings) and `PortSentryModeTCP` (connect mode).

use std::fmt;
use std::net::IpAddr;

use crate::config::Proto;
use crate::detect::packet::{TcpFlags, Transport};

/// What kind of probe a packet (or an accepted connection) was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScanType {
    TcpSynNormal,
    TcpFin,
    TcpNull,
    TcpXmas,
    /// Any other combination of SYN/FIN/PSH/URG; carries the raw flags byte.
    TcpUnknown(TcpFlags),
    Udp,
    /// A completed TCP handshake on a connect-mode port.
    TcpConnect,
    /// A datagram received on a connect-mode UDP socket.
    UdpConnect,
}

impl ScanType {
    /// How many `key`s there are (TcpUnknown is one, whatever its flags).
    pub const KINDS: usize = 8;

    /// Every `key`, in `index` order.
    pub const KEYS: [&'static str; ScanType::KINDS] = [
        "syn",
        "fin",
        "null",
        "xmas",
        "unknown",
        "udp",
        "connect_tcp",
        "connect_udp",
    ];

    /// The position of `key` in `KEYS`: counters are arrays, not maps.
    pub fn index(&self) -> usize {
        match self {
            ScanType::TcpSynNormal => 0,
            ScanType::TcpFin => 1,
            ScanType::TcpNull => 2,
            ScanType::TcpXmas => 3,
            ScanType::TcpUnknown(_) => 4,
            ScanType::Udp => 5,
            ScanType::TcpConnect => 6,
            ScanType::UdpConnect => 7,
        }
    }

    /// The scan type of a `key` (TcpUnknown with no flags); `None` for a
    /// key that names no scan ("manual", "adopted").
    /// The scan type of `index` (as `index` gives), a TcpUnknown with
    /// `flags`: `story` keeps a note in a byte and the flags.
    pub(crate) fn from_index(index: usize, flags: TcpFlags) -> Option<ScanType> {
        Some(match index {
            4 => ScanType::TcpUnknown(flags),
            i => ScanType::from_key(ScanType::KEYS.get(i)?)?,
        })
    }

    /// The raw flags a TcpUnknown carries (0 for any other).
    pub(crate) fn flags(&self) -> TcpFlags {
        match self {
            ScanType::TcpUnknown(f) => *f,
            _ => TcpFlags(0),
        }
    }

    pub fn from_key(key: &str) -> Option<ScanType> {
        Some(match key {
            "syn" => ScanType::TcpSynNormal,
            "fin" => ScanType::TcpFin,
            "null" => ScanType::TcpNull,
            "xmas" => ScanType::TcpXmas,
            "unknown" => ScanType::TcpUnknown(TcpFlags(0)),
            "udp" => ScanType::Udp,
            "connect_tcp" => ScanType::TcpConnect,
            "connect_udp" => ScanType::UdpConnect,
            _ => return None,
        })
    }

    /// The protocol it came over.
    pub fn proto(&self) -> Proto {
        match self {
            ScanType::Udp | ScanType::UdpConnect => Proto::Udp,
            _ => Proto::Tcp,
        }
    }

    /// PortSentry's words for this probe, as they appear after
    /// "attackalert: ".
    pub fn name(&self) -> String {
        self.to_string()
    }

    /// Short stable identifier for statistics and JSON.
    pub fn key(&self) -> &'static str {
        ScanType::KEYS[self.index()]
    }

    /// "TCP" or "UDP", as in "to TCP port:" and the history file.
    pub fn protocol(&self) -> &'static str {
        match self {
            ScanType::Udp | ScanType::UdpConnect => "UDP",
            _ => "TCP",
        }
    }
}

impl ScanType {
    /// PortSentry's words for this probe when they are fixed (all but
    /// `TcpUnknown`, which names its flags): what `Display` writes.
    pub fn fixed_name(&self) -> Option<&'static str> {
        Some(match self {
            ScanType::TcpSynNormal => "TCP SYN/Normal scan",
            ScanType::TcpFin => "TCP FIN scan",
            // PortSentry 1.2 wrote " TCP NULL scan" with a stray leading
            // space (a double space after "attackalert:"); we follow the
            // name as documented, without the typo.
            ScanType::TcpNull => "TCP NULL scan",
            ScanType::TcpXmas => "TCP XMAS scan",
            ScanType::TcpUnknown(_) => return None,
            ScanType::Udp => "UDP scan",
            ScanType::TcpConnect | ScanType::UdpConnect => "Connect",
        })
    }
}

impl fmt::Display for ScanType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScanType::TcpUnknown(t) => write!(
                f,
                "Unknown Type: TCP Packet Flags: SYN: {} FIN: {} ACK: {} PSH: {} URG: {} RST: {}",
                t.syn() as u8,
                t.fin() as u8,
                t.ack() as u8,
                t.psh() as u8,
                t.urg() as u8,
                t.rst() as u8
            ),
            _ => f.write_str(self.fixed_name().unwrap_or_default()),
        }
    }
}

/// Name a logged packet, or `None` when it is not a probe.
///
/// ACK or RST set: not a probe. PortSentryStealthModeTCP skips these "to weed
/// out established connections" before anything else; the caller may log
/// them at debug level.
///
/// The rest follows ReportPacketType's tests in its order. It reads the six
/// classic flag bits only (Linux `struct tcphdr` keeps ECE/CWR in `res2`), so
/// an ECN-setup SYN (SYN|ECE|CWR, sent by e.g. `nmap -sT` with tcp_ecn=1) is
/// still a SYN/Normal scan:
/// 1. no flag at all → NULL;
/// 2. FIN and URG and PSH (whatever else) → XMAS;
/// 3. FIN alone → FIN;
/// 4. SYN alone → SYN/Normal;
/// 5. anything else → Unknown Type.
pub fn classify(t: Transport) -> Option<ScanType> {
    let flags = match t {
        Transport::Udp => return Some(ScanType::Udp),
        Transport::Tcp(flags) => flags,
    };
    if flags.ack() || flags.rst() {
        return None;
    }
    const SIX: u8 = TcpFlags::FIN
        | TcpFlags::SYN
        | TcpFlags::RST
        | TcpFlags::PSH
        | TcpFlags::ACK
        | TcpFlags::URG;
    let six = flags.0 & SIX;
    Some(if six == 0 {
        ScanType::TcpNull
    } else if flags.fin() && flags.urg() && flags.psh() {
        ScanType::TcpXmas
    } else if six == TcpFlags::FIN {
        ScanType::TcpFin
    } else if six == TcpFlags::SYN {
        ScanType::TcpSynNormal
    } else {
        ScanType::TcpUnknown(flags)
    })
}

/// `attackalert: <scan> from host: <name>/<ip> to <TCP|UDP> port: <port>`
/// (PortSentry: "attackalert: %s from host: %s/%s to TCP port: %d", and
/// "attackalert: Connect from host: %s/%s to TCP port: %d" in connect mode).
pub fn alert_line(scan: ScanType, host_name: &str, ip: IpAddr, port: u16) -> String {
    format!(
        "attackalert: {scan} from host: {host_name}/{ip} to {} port: {port}",
        scan.protocol()
    )
}

/// `attackalert: Host: <name>/<ip> is already blocked Ignoring`, the stealth
/// modes' wording. (PortSentry's connect modes wrote "Host: %s is already
/// blocked. Ignoring" with the address only; we use one wording everywhere.)
pub fn already_blocked_line(host_name: &str, ip: IpAddr) -> String {
    format!("attackalert: Host: {host_name}/{ip} is already blocked Ignoring")
}

/// The second line PortSentry logs when the IPv4 header carried options
/// (we also use it for IPv6 extension headers): `attackalert: Packet from
/// host: <name>/<ip> to TCP port: <port> has IP options set (detection
/// avoidance technique).`
pub fn ip_options_line(scan: ScanType, host_name: &str, ip: IpAddr, port: u16) -> String {
    format!(
        "attackalert: Packet from host: {host_name}/{ip} to {} port: {port} has IP options set (detection avoidance technique).",
        scan.protocol()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIN: u8 = TcpFlags::FIN;
    const SYN: u8 = TcpFlags::SYN;
    const RST: u8 = TcpFlags::RST;
    const PSH: u8 = TcpFlags::PSH;
    const ACK: u8 = TcpFlags::ACK;
    const URG: u8 = TcpFlags::URG;
    const ECE: u8 = TcpFlags::ECE;
    const CWR: u8 = TcpFlags::CWR;

    fn tcp(f: u8) -> Option<ScanType> {
        classify(Transport::Tcp(TcpFlags(f)))
    }

    #[test]
    fn keys_index_and_back() {
        for (i, key) in ScanType::KEYS.iter().enumerate() {
            let scan = ScanType::from_key(key).unwrap();
            assert_eq!((scan.index(), scan.key()), (i, *key));
        }
        assert_eq!(ScanType::from_key("manual"), None);
        assert_eq!(ScanType::UdpConnect.proto(), Proto::Udp);
        assert_eq!(ScanType::TcpXmas.proto(), Proto::Tcp);
    }

    #[test]
    fn named_scans() {
        assert_eq!(tcp(SYN), Some(ScanType::TcpSynNormal));
        assert_eq!(tcp(SYN | ECE | CWR), Some(ScanType::TcpSynNormal));
        assert_eq!(tcp(FIN), Some(ScanType::TcpFin));
        assert_eq!(tcp(FIN | ECE), Some(ScanType::TcpFin));
        assert_eq!(tcp(0), Some(ScanType::TcpNull));
        assert_eq!(tcp(ECE | CWR), Some(ScanType::TcpNull));
        assert_eq!(tcp(FIN | PSH | URG), Some(ScanType::TcpXmas));
        // XMAS wins over everything but ACK/RST, SYN included.
        assert_eq!(tcp(FIN | PSH | URG | SYN), Some(ScanType::TcpXmas));
        assert_eq!(tcp(FIN | PSH | URG | CWR), Some(ScanType::TcpXmas));
        assert_eq!(classify(Transport::Udp), Some(ScanType::Udp));
    }

    #[test]
    fn unknown_combinations() {
        for f in [
            SYN | FIN,
            PSH,
            URG,
            FIN | PSH,
            FIN | URG,
            PSH | URG,
            SYN | PSH,
            SYN | URG,
            SYN | FIN | PSH,
            SYN | PSH | URG,
        ] {
            assert_eq!(tcp(f), Some(ScanType::TcpUnknown(TcpFlags(f))), "{f:#04x}");
        }
    }

    #[test]
    fn ack_or_rst_is_not_a_probe() {
        for f in [
            ACK,
            RST,
            SYN | ACK,
            FIN | ACK,
            RST | ACK,
            FIN | PSH | URG | ACK,
            0xff,
            RST | SYN,
        ] {
            assert_eq!(tcp(f), None, "{f:#04x}");
        }
    }

    #[test]
    fn all_256_flag_values() {
        let mut counts = std::collections::HashMap::new();
        for f in 0..=255u8 {
            let got = tcp(f);
            let t = TcpFlags(f);
            assert_eq!(got.is_none(), t.ack() || t.rst(), "{f:#04x}");
            // ECE and CWR never change the verdict (ignoring the carried byte).
            let plain = tcp(f & 0x3f);
            match (got, plain) {
                (Some(ScanType::TcpUnknown(_)), Some(ScanType::TcpUnknown(_))) => {}
                (a, b) => assert_eq!(a, b, "{f:#04x}"),
            }
            if let Some(s) = got {
                let name = s.name();
                assert!(!name.is_empty());
                if let ScanType::TcpUnknown(_) = s {
                    assert!(name.contains("ACK: 0") && name.contains("RST: 0"), "{name}");
                }
                if f & 0xc0 == 0 {
                    *counts.entry(s.key()).or_insert(0) += 1;
                }
            }
        }
        // Of the 16 SYN/FIN/PSH/URG combinations: one each of NULL, FIN and
        // SYN, two XMAS (with and without SYN), the other 11 unknown.
        assert_eq!(counts["null"], 1);
        assert_eq!(counts["fin"], 1);
        assert_eq!(counts["syn"], 1);
        assert_eq!(counts["xmas"], 2);
        assert_eq!(counts["unknown"], 11);
    }

    #[test]
    fn names_and_keys() {
        assert_eq!(ScanType::TcpSynNormal.name(), "TCP SYN/Normal scan");
        assert_eq!(ScanType::TcpFin.name(), "TCP FIN scan");
        assert_eq!(ScanType::TcpNull.name(), "TCP NULL scan");
        assert_eq!(ScanType::TcpXmas.name(), "TCP XMAS scan");
        assert_eq!(ScanType::Udp.name(), "UDP scan");
        assert_eq!(ScanType::TcpConnect.name(), "Connect");
        assert_eq!(ScanType::UdpConnect.name(), "Connect");
        assert_eq!(
            ScanType::TcpUnknown(TcpFlags(SYN | FIN)).name(),
            "Unknown Type: TCP Packet Flags: SYN: 1 FIN: 1 ACK: 0 PSH: 0 URG: 0 RST: 0"
        );
        assert_eq!(
            ScanType::TcpUnknown(TcpFlags(PSH | URG | ACK | RST)).name(),
            "Unknown Type: TCP Packet Flags: SYN: 0 FIN: 0 ACK: 1 PSH: 1 URG: 1 RST: 1"
        );
        let all = [
            ScanType::TcpSynNormal,
            ScanType::TcpFin,
            ScanType::TcpNull,
            ScanType::TcpXmas,
            ScanType::TcpUnknown(TcpFlags(PSH)),
            ScanType::Udp,
            ScanType::TcpConnect,
            ScanType::UdpConnect,
        ];
        let keys: std::collections::HashSet<_> = all.iter().map(|s| s.key()).collect();
        assert_eq!(keys.len(), all.len(), "keys must be distinct");
        assert_eq!(
            ScanType::TcpUnknown(TcpFlags(0x08)).key(),
            ScanType::TcpUnknown(TcpFlags(0x20)).key()
        );
    }

    #[test]
    fn lines() {
        let v4: IpAddr = "192.0.2.2".parse().unwrap();
        let v6: IpAddr = "2001:db8:1::2".parse().unwrap();
        assert_eq!(
            alert_line(ScanType::TcpSynNormal, "192.0.2.2", v4, 22),
            "attackalert: TCP SYN/Normal scan from host: 192.0.2.2/192.0.2.2 to TCP port: 22"
        );
        assert_eq!(
            alert_line(ScanType::Udp, "attacker.example", v6, 31337),
            "attackalert: UDP scan from host: attacker.example/2001:db8:1::2 to UDP port: 31337"
        );
        assert_eq!(
            alert_line(ScanType::TcpConnect, "192.0.2.2", v4, 1),
            "attackalert: Connect from host: 192.0.2.2/192.0.2.2 to TCP port: 1"
        );
        assert_eq!(
            alert_line(ScanType::UdpConnect, "192.0.2.2", v4, 69),
            "attackalert: Connect from host: 192.0.2.2/192.0.2.2 to UDP port: 69"
        );
        assert_eq!(
            alert_line(ScanType::TcpUnknown(TcpFlags(PSH)), "h", v4, 5),
            "attackalert: Unknown Type: TCP Packet Flags: SYN: 0 FIN: 0 ACK: 0 PSH: 1 URG: 0 RST: 0 from host: h/192.0.2.2 to TCP port: 5"
        );
        assert_eq!(
            already_blocked_line("192.0.2.2", v4),
            "attackalert: Host: 192.0.2.2/192.0.2.2 is already blocked Ignoring"
        );
        assert_eq!(
            ip_options_line(ScanType::TcpFin, "192.0.2.2", v4, 79),
            "attackalert: Packet from host: 192.0.2.2/192.0.2.2 to TCP port: 79 has IP options set (detection avoidance technique)."
        );
        assert_eq!(
            ip_options_line(ScanType::Udp, "h", v6, 7),
            "attackalert: Packet from host: h/2001:db8:1::2 to UDP port: 7 has IP options set (detection avoidance technique)."
        );
    }
}
