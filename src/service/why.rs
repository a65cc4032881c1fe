//! why: `nftsentry why ADDR`, the daemon's answer to "why is this address
//! banned?" and "why is that one not?", as text and JSON.
//!
//! From what the daemon already holds: the ledger's record of a ban in
//! force (when, how long, on what evidence, which actions ran), the probes
//! that led to it (kept with the ban, at most `detect::story::NOTES`), the
//! element's counter (what it dropped); for a source not banned, the ignore
//! entry that holds it, its count towards the trigger in the window, the
//! last decision detection took (withheld for lack of a handshake, held back
//! by the storm guard), or that it was never seen (or pushed out of the
//! bounded memory by other sources since).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::format_duration;
use crate::detect::story::{Decision, Note};
use crate::service::event_loop::Daemon;
use crate::service::status::now_secs;
use crate::table::bans::{BanSets, KernelBans};

#[derive(Serialize, Debug, Default)]
pub struct Why {
    pub address: String,
    /// banned, ignored, counting, withheld, storm_held, not_banned,
    /// never_seen.
    pub verdict: &'static str,
    /// One sentence.
    pub reason: String,
    pub ban: Option<WhyBan>,
    /// The ignore entry that holds it.
    pub ignored_by: Option<String>,
    pub trigger: Option<WhyTrigger>,
    /// Its last probes, oldest first.
    pub probes: Vec<WhyProbe>,
    /// The storm guard is on now.
    pub storm_guard: bool,
}

#[derive(Serialize, Debug, Default)]
pub struct WhyBan {
    /// Seconds since 1970.
    pub since: u64,
    pub until: u64,
    pub length: u64,
    pub repeat: u32,
    /// What made it: "scan_trigger", "manual" (`nftsentry block`),
    /// "adopted" (found in the kernel table at start).
    pub rule: String,
    pub scan_type: String,
    pub port: u16,
    pub evidence: &'static str,
    /// The actions that ran: set, hosts_deny, route:KIND, kill_route,
    /// command.
    pub actions: Vec<String>,
    pub dropped_packets: Option<u64>,
    pub dropped_bytes: Option<u64>,
}

#[derive(Serialize, Debug, Default)]
pub struct WhyTrigger {
    pub count: u32,
    pub needed: u32,
    /// Seconds until the window of the count ends.
    pub window_ends_in: u64,
}

#[derive(Serialize, Debug)]
pub struct WhyProbe {
    /// Seconds since 1970.
    pub at: u64,
    pub port: u16,
    pub scan_type: &'static str,
    pub evidence: &'static str,
}

fn probes(notes: &[Note], now: Instant) -> Vec<WhyProbe> {
    let wall = now_secs();
    notes
        .iter()
        .map(|n| WhyProbe {
            at: wall.saturating_sub(now.saturating_duration_since(n.at).as_secs()),
            port: n.port,
            scan_type: n.scan.key(),
            evidence: n.strength.as_str(),
        })
        .collect()
}

impl Daemon {
    /// `why ADDR`. Long: the reasons an address is or is not banned, tried
    /// in the order the daemon applies them, so the first that holds is
    /// the answer.
    pub fn why(&mut self, addr: IpAddr) -> Why {
        let addr = crate::cidr::canonical(addr);
        let now = Instant::now();
        let core = &mut self.core;
        let storm_guard = core.detector.storm().is_some();
        let mut w = Why {
            address: addr.to_string(),
            storm_guard,
            ..Why::default()
        };
        // The ban of the address itself, or of a prefix holding it.
        let net = core
            .ledger
            .covering_ban(&crate::cidr::Cidr::host(addr))
            .unwrap_or(crate::cidr::Cidr::host(addr));
        if let Some(e) = core.ledger.ban_entry(net).cloned() {
            let dropped = KernelBans {
                nft: &mut core.nft,
                table: &core.cfg.table,
                prefix6: core.cfg.ban_prefix6,
            }
            .dropped(net)
            .ok()
            .flatten();
            let mut actions = Vec::new();
            let a = &e.applied;
            if a.set {
                actions.push("set".to_string());
            }
            if a.hosts_deny {
                actions.push("hosts_deny".into());
            }
            if let Some(r) = a.route {
                actions.push(format!("route:{r}"));
            }
            if a.kill_route {
                actions.push("kill_route".into());
            }
            if a.command {
                actions.push("command".into());
            }
            let rule = match e.scan.as_str() {
                "manual" => "manual",
                "adopted" => "adopted",
                "escalated" => "escalation",
                _ => "scan_trigger",
            };
            let notes = core.ban_notes.get(&net).cloned().unwrap_or_default();
            w.probes = probes(&notes, now);
            w.verdict = "banned";
            let why = match rule {
                "manual" => "banned by `nftsentry block`".to_string(),
                "adopted" => "banned: found in the kernel table at start".to_string(),
                "escalation" => format!(
                    "banned: {} bans inside {net} within escalate_window (escalate_after) were replaced with one ban of the prefix",
                    core.cfg.escalate_after
                ),
                _ => format!(
                    "banned: {} to port {} reached scan_trigger {} (evidence: {})",
                    e.scan,
                    e.port,
                    core.cfg.scan_trigger,
                    e.evidence.as_str()
                ),
            };
            w.reason = if net.is_host() {
                why
            } else {
                format!("{why}; the ban covers {net}")
            };
            w.ban = Some(WhyBan {
                since: e.banned_at / 1000,
                until: e.expires_at / 1000,
                length: e.length / 1000,
                repeat: e.repeat,
                rule: rule.into(),
                scan_type: e.scan.clone(),
                port: e.port,
                evidence: e.evidence.as_str(),
                actions,
                dropped_packets: dropped.map(|d| d.0),
                dropped_bytes: dropped.map(|d| d.1),
            });
            return w;
        }
        // A fleet decision: enforced here, or vetoed by the ignore list.
        let fleet = core.fleet.as_ref().and_then(|f| {
            f.held.covering(&addr).map(|(id, h)| {
                let left = format_duration(Duration::from_secs(
                    h.until.saturating_duration_since(now).as_secs().max(1),
                ));
                format!(
                    "the fleet's decision {id} on {} ({}/{}), {left} left",
                    h.net, h.origin, h.scenario
                )
            })
        });
        if let Some(reason) = core.detector.ignored_because(&addr) {
            w.verdict = "ignored";
            w.reason = match &fleet {
                Some(d) => {
                    format!("never banned: on the ignore list ({reason}); {d} is vetoed here")
                }
                None => format!("never banned: on the ignore list ({reason})"),
            };
            w.ignored_by = Some(reason.to_string());
            return w;
        }
        if let Some(d) = fleet {
            w.verdict = "fleet";
            w.reason = format!("dropped by {d}, not by a ban of this host");
            return w;
        }
        let story = core.detector.story(&addr);
        if let Some(s) = &story {
            w.probes = probes(&s.notes, now);
        }
        let progress = core.detector.progress(addr, now);
        w.trigger = progress.map(|p| WhyTrigger {
            count: p.count,
            needed: p.needed,
            window_ends_in: p.window_left.as_secs(),
        });
        match (story.map(|s| s.last), progress) {
            (Some(Decision::Withheld), _) => {
                w.verdict = "withheld";
                w.reason = "not banned: it reached the trigger, but ban_requires_handshake (or forgeable = \"log\") is set and it completed no TCP handshake".into();
            }
            (Some(Decision::Spared), _) => {
                w.verdict = "spared";
                w.reason = "not banned: it reached the trigger, but it is a live peer (an established TCP connection to this host) and the evidence could be forged".into();
            }
            (Some(Decision::StormHeld), _) => {
                w.verdict = "storm_held";
                w.reason = "not banned: it reached the trigger on forgeable evidence while the storm guard held such bans back".into();
            }
            (_, Some(p)) => {
                w.verdict = "counting";
                w.reason = format!(
                    "not banned yet: {} of {} probes in the window, which ends in {}",
                    p.count,
                    p.needed,
                    format_duration(Duration::from_secs(p.window_left.as_secs().max(1)))
                );
            }
            (Some(_), None) => {
                w.verdict = "not_banned";
                w.reason =
                    "not banned: its probes are older than scan_window (or its ban ended)".into();
            }
            (None, None) => {
                w.verdict = "never_seen";
                w.reason = "never seen: no probe from it since start (or since other sources pushed it out of the bounded memory)".into();
            }
        }
        w
    }
}

impl Why {
    pub fn json(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_else(|_| "{}".into());
        s.push('\n');
        s
    }

    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "{}: {}", self.address, self.reason);
        if let Some(b) = &self.ban {
            let now = now_secs();
            let _ = writeln!(
                o,
                "  since {} ago, for {} ({} left), ban number {} in a row",
                format_duration(Duration::from_secs(now.saturating_sub(b.since).max(1))),
                format_duration(Duration::from_secs(b.length.max(1))),
                format_duration(Duration::from_secs(b.until.saturating_sub(now).max(1))),
                b.repeat
            );
            let _ = writeln!(
                o,
                "  actions: {}",
                if b.actions.is_empty() {
                    "none".to_string()
                } else {
                    b.actions.join(", ")
                }
            );
            if let (Some(p), Some(by)) = (b.dropped_packets, b.dropped_bytes) {
                let _ = writeln!(o, "  dropped so far: {p} packets ({by} bytes)");
            }
        }
        if let Some(t) = &self.trigger {
            if self.verdict != "counting" {
                let _ = writeln!(
                    o,
                    "  count: {} of {} probes, window ends in {}",
                    t.count,
                    t.needed,
                    format_duration(Duration::from_secs(t.window_ends_in.max(1)))
                );
            }
        }
        if !self.probes.is_empty() {
            let _ = writeln!(o, "  last probes:");
            let now = now_secs();
            for p in &self.probes {
                let _ = writeln!(
                    o,
                    "    {} ago: {} to port {} (evidence: {})",
                    format_duration(Duration::from_secs(now.saturating_sub(p.at).max(1))),
                    p.scan_type,
                    p.port,
                    p.evidence
                );
            }
        }
        if self.storm_guard {
            let _ = writeln!(o, "  the storm guard is on");
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renderings_name_the_reason() {
        let w = Why {
            address: "198.51.100.7".into(),
            verdict: "counting",
            reason: "not banned yet: 1 of 3 probes in the window, which ends in 59m".into(),
            trigger: Some(WhyTrigger {
                count: 1,
                needed: 3,
                window_ends_in: 3540,
            }),
            ..Why::default()
        };
        assert!(w.text().starts_with("198.51.100.7: not banned yet: 1 of 3"));
        let j: serde_json::Value = serde_json::from_str(&w.json()).unwrap();
        assert_eq!(j["verdict"], "counting");
        assert_eq!(j["trigger"]["needed"], 3);
    }
}
