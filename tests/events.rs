//! `events_file`: one JSON object per probe, ban and unban, after a real
//! nmap scan from another namespace, an unblock and a rotation (the file
//! moved away is reopened at its path).
mod common;
use common::scene::*;
use common::*;
use std::time::Duration;

fn events(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn probes_bans_and_unbans_as_json_lines_across_a_rotation() {
    let dir = TempDir::new("evf");
    let path = dir.path.join("events.json");
    let s = Scene::new("evts", &format!("events_file = \"{}\"\n", path.display()));
    s.nmap("-sS", false, "1");
    assert!(s.wait_banned(ATTACKER4), "no ban: {}", s.log());
    let mut got = Vec::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            got = events(&path);
            got.iter().any(|e| e["event"] == "ban")
        }),
        "{got:?}\n{}",
        s.log()
    );
    let probe = got.iter().find(|e| e["event"] == "probe").unwrap();
    assert_eq!(probe["source"], ATTACKER4);
    assert_eq!(probe["port"], 1);
    assert_eq!(probe["protocol"], "tcp");
    assert_eq!(probe["scan_type"], "syn");
    assert_eq!(probe["action"], "ban");
    assert!(probe["time"].as_f64().unwrap() > 1.7e9);
    let ban = got.iter().find(|e| e["event"] == "ban").unwrap();
    assert_eq!(ban["source"], ATTACKER4);
    assert_eq!(ban["origin"], "detection");
    assert_eq!(ban["length"], 86400);
    assert_eq!(ban["evidence"], "forgeable");
    // Rotated: the next events go to a new file at the path.
    let rotated = dir.path.join("events.json.1");
    std::fs::rename(&path, &rotated).unwrap();
    let o = s.cli(&["unblock", ATTACKER4]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = s.cli(&["block", "198.51.100.7", "--for", "1m"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        wait_until(Duration::from_secs(5), || events(&path).len() >= 2),
        "{:?}",
        events(&path)
    );
    let after = events(&path);
    assert_eq!(after[0]["event"], "unban", "{after:?}");
    assert_eq!(after[0]["source"], ATTACKER4);
    assert_eq!(after[1]["event"], "ban");
    assert_eq!(after[1]["origin"], "control");
    assert_eq!(after[1]["length"], 60);
    assert_eq!(events(&rotated).len(), got.len());
}
