//! Tests of the KILL_ROUTE forms and of what each is converted to.

use super::*;

// Long: one table of commands and their kinds, read top to bottom.
#[test]
fn kill_route_forms_of_portsentry_conf() {
    use KillRoute::*;
    let cases: &[(&str, KillRoute)] = &[
        // The route examples of portsentry.conf 1.2.
        (
            "/sbin/route add $TARGET$ 333.444.555.666",
            Route("blackhole", ""),
        ),
        (
            "/sbin/route add -host $TARGET$ gw 333.444.555.666",
            Route("blackhole", ""),
        ),
        (
            "/sbin/route add -host $TARGET$ reject",
            Route("unreachable", ""),
        ),
        (
            "/usr/sbin/route add $TARGET$ 333.444.555.666 1",
            Route("blackhole", ""),
        ),
        (
            "/usr/etc/route add $TARGET$ 127.0.0.1 1",
            Route("blackhole", ""),
        ),
        (
            "route add -net $TARGET$ -netmask 255.255.255.255 127.0.0.1 -blackhole",
            Route("blackhole", ""),
        ),
        (
            "/sbin/route add -host -blackhole $TARGET$ 127.0.0.1",
            Route("blackhole", ""),
        ),
        // HP-UX's example routes a whole /24: not the same thing.
        (
            "/usr/sbin/route add net $TARGET$ netmask 255.255.255.0 127.0.0.1",
            Command,
        ),
        // The packet filter examples.
        ("/sbin/ipfwadm -I -i deny -S $TARGET$ -o", FilterDrop("")),
        ("/sbin/ipfwadm -I -i deny -S $TARGET$", FilterDrop("")),
        (
            "/sbin/ipchains -I input -s $TARGET$ -j DENY -l",
            FilterDrop(""),
        ),
        (
            "/sbin/ipchains -I input -s $TARGET$ -j DENY",
            FilterDrop(""),
        ),
        (
            "/sbin/iptables -I INPUT -s $TARGET$ -j DROP",
            FilterDrop(""),
        ),
        (
            "/sbin/iptables -I INPUT -s $TARGET$ -j DROP && /sbin/iptables -I INPUT -s $TARGET$ -m limit --limit 3/minute --limit-burst 5 -j LOG --log-level DEBUG --log-prefix 'Portsentry: dropping: '",
            Command,
        ),
        (
            "/sbin/ipfw add 1 deny all from $TARGET$:255.255.255.255 to any",
            FilterDrop(""),
        ),
        (
            "/bin/echo 'block in log on external_interface from $TARGET$/32 to any' | /sbin/ipf -f -",
            Command,
        ),
        // Linux's ip(8).
        (
            "/sbin/ip route add blackhole $TARGET$",
            Route("blackhole", ""),
        ),
        (
            "ip -4 ro add unreachable $TARGET$/32",
            Route("unreachable", ""),
        ),
        ("ip route replace prohibit $TARGET$", Route("prohibit", "")),
        ("ip route add $TARGET$ via 192.0.2.254", Command),
        // Other variants that do something else.
        ("/sbin/route add -host $TARGET$ gw 192.0.2.254", Command),
        ("iptables -I INPUT 1 -s $TARGET$ -j REJECT", FilterDrop("")),
        ("iptables -A INPUT -s $TARGET$ -p tcp -j DROP", Command),
        ("iptables -I FORWARD -s $TARGET$ -j DROP", Command),
        ("iptables -I INPUT -s 192.0.2.9 -j DROP $TARGET$", Command),
        ("/usr/local/bin/block $TARGET$", Command),
        ("/sbin/route add -host 192.0.2.9 reject", NoTarget),
        ("", NoTarget),
    ];
    for (cmd, want) in cases {
        let got = classify_kill_route(cmd);
        let same = match (&got, want) {
            (Route(a, _), Route(b, _)) => a == b,
            (FilterDrop(_), FilterDrop(_)) => true,
            (a, b) => a == b,
        };
        assert!(same, "{cmd}: got {got:?}, want {want:?}");
    }
    assert_eq!(
        classify_kill_route("iptables -I INPUT -s $TARGET$ -j REJECT"),
        FilterDrop("rejects")
    );
}

#[test]
fn kill_route_conversions() {
    let (_, t) = convert_text(
        "KILL_ROUTE=\"/sbin/route add $TARGET$ gw 333.444.555.666\"\n",
        None,
    );
    assert_eq!(str_at(&t, "route"), "blackhole");
    assert!(get(&t, "kill_route").is_none());

    let (out, t) = convert_text(
        "KILL_ROUTE=\"/sbin/iptables -I INPUT -s $TARGET$ -j DROP\"\n",
        None,
    );
    assert!(get(&t, "route").is_none() && get(&t, "kill_route").is_none());
    assert!(
        flat(&out.toml).contains("# Not converted: this packet filter rule drops the source"),
        "{}",
        out.toml
    );

    let (_, t) = convert_text("KILL_ROUTE=\"/usr/local/sbin/cut $TARGET$ $PORT$\"\n", None);
    assert_eq!(
        str_at(&t, "kill_route"),
        "/usr/local/sbin/cut $TARGET$ $PORT$"
    );
    assert!(get(&t, "command_shell").is_none());

    // Shell syntax: command_shell, as PortSentry's system(3).
    let cmd = "/bin/echo 'block in log on em0 from $TARGET$/32 to any' | /sbin/ipf -f -";
    let (_, t) = convert_text(&format!("KILL_ROUTE=\"{cmd}\"\n"), None);
    assert_eq!(str_at(&t, "kill_route"), cmd);
    assert_eq!(get(&t, "command_shell"), Some(&toml::Value::Boolean(true)));

    // Without $TARGET$ PortSentry skipped it; so do we.
    let (out, t) = convert_text(
        "KILL_ROUTE=\"/sbin/route add -host 192.0.2.1 reject\"\n",
        None,
    );
    assert!(get(&t, "route").is_none() && get(&t, "kill_route").is_none());
    assert!(
        flat(&out.toml).contains("PortSentry skipped it"),
        "{}",
        out.toml
    );
}
