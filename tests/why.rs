//! `nftsentry why ADDR` against a running daemon after real nmap scans: a
//! banned source (its probes, actions, drops), an ignored one (the ignore
//! file's line), one below the trigger, one withheld for lack of a
//! handshake, and one never seen; text and JSON.
mod common;
use common::scene::*;
use common::*;

fn why(s: &Scene, addr: &str) -> serde_json::Value {
    let o = s.cli(&["why", addr, "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn why_text(s: &Scene, addr: &str) -> String {
    let o = s.cli(&["why", addr]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn banned_ignored_and_never_seen() {
    let s = Scene::build("whyb", "", "# test ignore file\n198.51.100.0/24\n", |_| {});
    s.nmap("-sS", false, "1");
    assert!(s.wait_banned(ATTACKER4), "no ban: {}", s.log());
    let _ = s
        .pair
        .attacker
        .cmd("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "1", VICTIM4])
        .output();
    let w = why(&s, ATTACKER4);
    assert_eq!(w["verdict"], "banned", "{w}");
    assert_eq!(w["ban"]["rule"], "scan_trigger", "{w}");
    assert_eq!(w["ban"]["scan_type"], "syn", "{w}");
    assert_eq!(w["ban"]["port"], 1, "{w}");
    assert!(
        w["ban"]["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "set"),
        "{w}"
    );
    assert!(w["ban"]["dropped_packets"].as_u64().unwrap() >= 3, "{w}");
    let probes = w["probes"].as_array().unwrap();
    assert!(
        probes
            .iter()
            .any(|p| p["port"] == 1 && p["scan_type"] == "syn"),
        "{w}"
    );
    let t = why_text(&s, ATTACKER4);
    assert!(
        t.starts_with(&format!("{ATTACKER4}: banned: syn to port 1")),
        "{t}"
    );
    assert!(t.contains("dropped so far: "), "{t}");

    let w = why(&s, "198.51.100.9");
    assert_eq!(w["verdict"], "ignored", "{w}");
    let by = w["ignored_by"].as_str().unwrap();
    assert!(
        by.starts_with("ignore file ") && by.ends_with("/ignore:2"),
        "{w}"
    );

    let w = why(&s, "192.0.2.99");
    assert_eq!(w["verdict"], "never_seen", "{w}");
    assert!(why_text(&s, "192.0.2.99").contains("never seen"));
    // A malformed address is a usage error from the command line.
    let o = s.cli(&["why", "not-an-address"]);
    assert_eq!(o.status.code(), Some(64));
}

#[test]
fn below_the_trigger_counts_n_of_m() {
    let s = Scene::new("whyt", "scan_trigger = 3\n");
    s.nmap("-sS", false, "1");
    let mut w = serde_json::Value::Null;
    assert!(wait_until(std::time::Duration::from_secs(5), || {
        w = why(&s, ATTACKER4);
        w["verdict"] == "counting"
    }));
    assert_eq!(w["trigger"]["count"], 1, "{w}");
    assert_eq!(w["trigger"]["needed"], 3, "{w}");
    assert!(
        w["trigger"]["window_ends_in"].as_u64().unwrap() > 3000,
        "{w}"
    );
    assert!(!s.banned(ATTACKER4));
    let t = why_text(&s, ATTACKER4);
    assert!(t.contains("1 of 3 probes in the window"), "{t}");
}

#[test]
fn a_source_without_a_handshake_is_withheld() {
    let s = Scene::new("whyh", "ban_requires_handshake = true\n");
    s.nmap("-sS", false, "1");
    let mut w = serde_json::Value::Null;
    assert!(wait_until(std::time::Duration::from_secs(5), || {
        w = why(&s, ATTACKER4);
        w["verdict"] == "withheld"
    }));
    assert!(w["reason"].as_str().unwrap().contains("handshake"), "{w}");
    assert!(!s.banned(ATTACKER4));
}
