//! The namespace helpers themselves: a pair can ping itself and is gone after drop.
mod common;
use common::*;

#[test]
fn pair_connects_and_cleans_up() {
    let name;
    {
        let p = Pair::new("smoke");
        name = p.victim.name.clone();
        p.attacker.sh(&format!("ping -c1 -W2 {VICTIM4} >/dev/null"));
        p.attacker
            .sh(&format!("ping -6 -c1 -W2 {VICTIM6} >/dev/null"));
        let inside = p
            .victim
            .enter(|| std::fs::read_to_string("/proc/self/net/dev").unwrap());
        assert!(inside.contains("eth0"));
    }
    let list =
        String::from_utf8(run_ok(std::process::Command::new("ip").args(["netns", "list"])).stdout)
            .unwrap();
    assert!(!list.contains(&name), "namespace {name} left behind");
}
