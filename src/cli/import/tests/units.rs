//! Tests of how PortSentry is started: Debian 12's init script, Debian 13's
//! portsentry@MODE units and the modes their names carry.

use super::*;

#[test]
fn portsentry_services_debian_12_and_13() {
    let dir = std::env::temp_dir().join(format!("nftsentry-units-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let systemd = dir.join("systemd");
    let init = dir.join("init.d-portsentry");
    std::fs::create_dir_all(systemd.join("multi-user.target.wants")).unwrap();
    assert_eq!(find_services(&systemd, &init), Services::Unknown);
    assert_eq!(services_todo(&Services::Unknown), None);
    // Debian 12: the init script.
    std::fs::write(&init, "#!/bin/sh\n").unwrap();
    assert_eq!(find_services(&systemd, &init), Services::InitScript);
    assert_eq!(
        services_todo(&Services::InitScript).unwrap().commands,
        ["systemctl stop portsentry", "systemctl disable portsentry"]
    );
    // Debian 13: enabled instances win, and carry the modes.
    for u in ["portsentry@udp.service", "portsentry@stcp.service"] {
        std::os::unix::fs::symlink(
            "/usr/lib/systemd/system/portsentry@.service",
            systemd.join("multi-user.target.wants").join(u),
        )
        .unwrap();
    }
    let units = vec![
        "portsentry@stcp.service".to_string(),
        "portsentry@udp.service".to_string(),
    ];
    assert_eq!(
        find_services(&systemd, &init),
        Services::Units(units.clone())
    );
    assert_eq!(
        services_todo(&Services::Units(units.clone()))
            .unwrap()
            .commands,
        ["systemctl disable --now portsentry@stcp.service portsentry@udp.service"]
    );
    let d = DebianDefault::from_units(&units, "units");
    assert_eq!((d.tcp.mode(), d.udp.mode()), ("stealth", "connect"));
    assert!(d.warnings.is_empty());
    let out = convert(&conf("TCP_PORTS=\"1\"\n"), Some(&d), None, None, &[]);
    let t: toml::Table = out.toml.parse().unwrap();
    assert_eq!(str_at(&t, "tcp.mode"), "stealth");
    assert!(
        out.toml
            .contains("# portsentry@stcp.service (enabled): PortSentry's stealth mode.\n"),
        "{}",
        out.toml
    );
    // Two TCP modes at once: the first is converted, and said so.
    let d = DebianDefault::from_units(
        &[
            "portsentry@atcp.service".to_string(),
            "portsentry@tcp.service".to_string(),
            "portsentry@x.service".to_string(),
        ],
        "units",
    );
    assert_eq!(d.tcp.mode(), "advanced");
    assert_eq!(d.udp.mode(), "off");
    assert_eq!(d.warnings.len(), 2, "{:?}", d.warnings);
    let out = convert(&conf(""), Some(&d), None, None, &[]);
    assert!(
        out.toml
            .contains("# no portsentry@ unit for UDP enabled: PortSentry did not run for this\n"),
        "{}",
        out.toml
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
