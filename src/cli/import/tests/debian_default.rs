//! Tests of Debian's /etc/default/portsentry: TCP_MODE and UDP_MODE.

use super::*;

#[test]
fn debian_default_modes() {
    let cases = [
        ("TCP_MODE=\"tcp\"\nUDP_MODE=\"udp\"\n", "connect", "connect"),
        (
            "TCP_MODE=\"stcp\"\nUDP_MODE=\"sudp\"\n",
            "stealth",
            "stealth",
        ),
        (
            "TCP_MODE=\"atcp\"\nUDP_MODE=\"audp\"\n",
            "advanced",
            "advanced",
        ),
        ("TCP_MODE=\"\"\nUDP_MODE=\"\"\n", "off", "off"),
        ("# nothing\n", "off", "off"),
        // Shell: the last assignment wins; quotes of every kind.
        (
            "TCP_MODE=\"tcp\"\nTCP_MODE='atcp'  # changed\nexport UDP_MODE=sudp\n",
            "advanced",
            "stealth",
        ),
    ];
    for (text, tcp, udp) in cases {
        let d = DebianDefault::parse(text, "default").unwrap();
        assert_eq!((d.tcp.mode(), d.udp.mode()), (tcp, udp), "{text}");
        let (_, t) = convert_text("", Some(text));
        assert_eq!(str_at(&t, "tcp.mode"), tcp);
        assert_eq!(str_at(&t, "udp.mode"), udp);
    }
    let d = DebianDefault::parse("TCP_MODE=\"stcp\"\r\nfoo bar\n", "default").unwrap();
    assert_eq!(d.tcp.line, Some(1));
    assert_eq!(
        d.warnings,
        ["default:2: `foo bar` is not an assignment; skipped"]
    );
}

#[test]
fn debian_default_errors() {
    for (text, want) in [
        (
            "TCP_MODE=\"udp\"\n",
            "default:1: TCP_MODE=\"udp\" is not a mode: PortSentry's init script accepts tcp, stcp, atcp",
        ),
        (
            "UDP_MODE=\"$X\"\n",
            "default:1: cannot read UDP_MODE: the value uses shell expansion",
        ),
        (
            "TCP_MODE=\"stcp\n",
            "default:1: cannot read TCP_MODE: no closing quote",
        ),
        (
            "TCP_MODE=stcp; echo\n",
            "default:1: cannot read TCP_MODE: the value uses shell syntax",
        ),
        (
            "[ -x y ] && TCP_MODE=stcp\n",
            "default:1: cannot read `[ -x y ] && TCP_MODE=stcp`",
        ),
    ] {
        let e = DebianDefault::parse(text, "default").unwrap_err();
        assert_eq!(e.kind, crate::error::Kind::Config);
        assert!(e.message.starts_with(want), "{text}: {e}");
    }
}
