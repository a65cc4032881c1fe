//! fleet: the event loop's side of `[crowdsec]`. Local bans go to the
//! fleet thread as reports (only those whose evidence is at least
//! `push_evidence`); the decisions it pulls are held here and written into
//! the fleet's sets of our table, each range with the time the LAPI gives
//! it, in one transaction per sync that changed something (a full sync
//! renews every timeout, a deletion removes the element). Our own decisions coming back are
//! counted, not added again; decisions over sources this host never bans
//! are logged once (the table's rule lets those sources through anyway);
//! decisions a firewall cannot use are skipped and counted.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Instant;

use crate::cidr::Cidr;
use crate::config::Config;
use crate::detect::Evidence;
use crate::fleet::lapi::Skip;
use crate::fleet::{BanReport, Fleet, FleetStatus, FromFleet, HeldDecisions, Secrets, ToFleet};
use crate::kernel::nft::NftSocket;
use crate::logging::Gate;
use crate::table::ruleset::{Ruleset, fleet_batch};

/// Failed writes of the fleet's sets are logged at most this often.
const SET_ERROR_LINES: std::time::Duration = std::time::Duration::from_secs(60);

pub struct FleetSide {
    pub fleet: Fleet,
    pub held: HeldDecisions,
    pub status: FleetStatus,
    /// Decisions over a source this host never bans, since start.
    pub vetoed: u64,
    /// Our own bans coming back.
    pub own: u64,
    /// Decisions skipped: type not ban, scope not Ip/Range, bad value.
    pub skipped_type: u64,
    pub skipped_scope: u64,
    pub skipped_value: u64,
    pub set_errors: u64,
    set_lines: Gate,
    push_min: crate::strength::Strength,
    push: bool,
    pull: bool,
    scenario: String,
}

impl FleetSide {
    /// Starts the fleet thread (after the privilege drop).
    pub fn start(cfg: &Config, secrets: &Secrets) -> crate::error::Result<FleetSide> {
        let c = &cfg.crowdsec;
        let fleet = Fleet::start(
            c,
            secrets,
            crate::fleet::queue_file(cfg.state_file.as_deref()),
        )
        .map_err(|e| crate::error::Error::config(format!("[crowdsec]: {e}")))?;
        log_notice!("adminalert: {}", c.describe());
        Ok(FleetSide {
            fleet,
            held: HeldDecisions::default(),
            status: FleetStatus::default(),
            vetoed: 0,
            own: 0,
            skipped_type: 0,
            skipped_scope: 0,
            skipped_value: 0,
            set_errors: 0,
            set_lines: Gate::new(SET_ERROR_LINES),
            push_min: c.push_evidence,
            push: c.push,
            pull: c.pull,
            scenario: c.scenario.clone(),
        })
    }

    /// A local ban was made: tell the fleet if its evidence is strong
    /// enough. Never blocks.
    pub fn banned(&self, ev: &Evidence, length: std::time::Duration) {
        if !self.push || ev.strength < self.push_min {
            return;
        }
        self.fleet.send(ToFleet::Ban(BanReport {
            addr: ev.net,
            length,
            scan: ev.scan.name().to_string(),
            port: ev.port,
            strength: ev.strength.as_str().to_string(),
            at: crate::service::status::now_secs(),
        }));
    }

    /// `nftsentry block ADDR`: pushed as manual evidence.
    pub fn manual(&self, addr: crate::cidr::Cidr, length: std::time::Duration) {
        if !self.push || crate::strength::Strength::Manual < self.push_min {
            return;
        }
        self.fleet.send(ToFleet::Ban(BanReport {
            addr,
            length,
            scan: "manual block".to_string(),
            port: 0,
            strength: "manual".to_string(),
            at: crate::service::status::now_secs(),
        }));
    }

    /// Whether `unblock --fleet` can work: deleting takes a machine login.
    pub fn can_delete(&self) -> bool {
        self.push
    }

    /// `unblock --fleet`.
    pub fn delete(&self, addr: crate::cidr::Cidr) {
        self.fleet.send(ToFleet::Delete(addr));
    }

    /// What the thread sent: held decisions updated and the sets rewritten.
    /// `is_local` tells a local ban in force.
    pub fn turn(
        &mut self,
        nft: &mut NftSocket,
        ruleset: &Ruleset,
        is_local: &dyn Fn(IpAddr) -> bool,
    ) {
        let mut changed = false;
        for m in self.fleet.drain() {
            match m {
                FromFleet::Status(s) => self.status = s,
                FromFleet::Decisions {
                    full,
                    new,
                    deleted,
                    skipped,
                } => {
                    for (why, what) in skipped {
                        let n = match why {
                            Skip::Type => &mut self.skipped_type,
                            Skip::Scope => &mut self.skipped_scope,
                            Skip::Value => &mut self.skipped_value,
                        };
                        *n += 1;
                        log_debug!("crowdsec: decision {what} skipped: a firewall cannot use it");
                    }
                    let now = Instant::now();
                    let added = self.held.apply(full, new, &deleted, now);
                    for (id, h) in &added {
                        if let Some(why) = ignored_overlap(ruleset, &h.net) {
                            if self.held.note_once(id.to_owned()) {
                                self.vetoed += 1;
                                log_notice!(
                                    "adminalert: crowdsec: decision {id} ({}/{}) on {} not enforced for {why}: this host never bans it",
                                    h.origin,
                                    h.scenario,
                                    h.net
                                );
                            }
                        }
                    }
                    // A full sync rewrites the sets with the time the LAPI
                    // gives each decision now (refreshed, not kept from
                    // when it was first seen); a change set rewrites them
                    // when it changed something. An empty answer costs the
                    // kernel nothing (100,000 decisions take about a second
                    // to write: benches/fleet.rs).
                    changed |= full || !added.is_empty() || !deleted.is_empty();
                }
            }
        }
        if changed && self.pull {
            self.write_sets(nft, ruleset, is_local);
        }
    }

    /// Our own decisions: our scenario, on an address we ban locally now.
    fn own_ids(&mut self, is_local: &dyn Fn(IpAddr) -> bool) -> HashSet<i64> {
        let mut own = HashSet::new();
        let mut fresh = 0;
        for (id, h) in &self.held.by_id {
            if h.scenario == self.scenario
                && h.net.prefix() == max_prefix(&h.net)
                && is_local(h.net.addr())
            {
                own.insert(*id);
            }
        }
        for id in &own {
            if self.held.note_once(*id) {
                fresh += 1;
            }
        }
        self.own += fresh;
        own
    }

    /// Puts the held decisions into the fleet's sets (after a sync, or
    /// after the table was put back or replaced by a reload).
    pub fn write_sets(
        &mut self,
        nft: &mut NftSocket,
        ruleset: &Ruleset,
        is_local: &dyn Fn(IpAddr) -> bool,
    ) {
        if !ruleset.fleet {
            return;
        }
        let now = Instant::now();
        self.held.expire(now);
        let own = self.own_ids(is_local);
        let v4 = self.held.segments(false, now, &own);
        let v6 = self.held.segments(true, now, &own);
        if let Err(e) = nft.commit(&fleet_batch(&ruleset.table, &v4, &v6)) {
            self.set_errors += 1;
            if self.set_lines.admit(now).is_some() {
                log_error!(
                    "adminalert: ERROR: crowdsec: writing the fleet's {} decisions into table inet {}: {e}",
                    self.held.len(),
                    ruleset.table
                );
            }
        }
    }

    /// The line `status` shows.
    pub fn status_line(&self) -> String {
        let s = &self.status;
        let when = |t: Option<u64>| match t {
            Some(t) => format!(
                "{}s ago",
                crate::service::status::now_secs().saturating_sub(t)
            ),
            None => "never".to_string(),
        };
        format!(
            "crowdsec: Local API {}; last push {}, last pull {}; {} alerts queued, {} pushed, {} dropped (queue full); {} fleet decisions held, {} vetoed by the ignore list, {} our own; skipped {} (type), {} (scope), {} (value); errors: {} push, {} pull, {} set{}",
            if s.reachable {
                "reachable"
            } else {
                "unreachable"
            },
            when(s.last_push),
            when(s.last_pull),
            s.queued,
            s.pushed,
            s.dropped,
            self.held.len(),
            self.vetoed,
            self.own,
            self.skipped_type,
            self.skipped_scope,
            self.skipped_value,
            s.push_errors,
            s.pull_errors,
            self.set_errors,
            match &s.last_error {
                Some(e) => format!("; last error: {e}"),
                None => String::new(),
            }
        )
    }

    /// The same for `status --json`.
    pub fn status_json(&self) -> serde_json::Value {
        let s = &self.status;
        serde_json::json!({
            "reachable": s.reachable,
            "last_push": s.last_push,
            "last_pull": s.last_pull,
            "queued": s.queued,
            "pushed": s.pushed,
            "dropped": s.dropped,
            "decisions_held": self.held.len(),
            "vetoed": self.vetoed,
            "own": self.own,
            "skipped": {"type": self.skipped_type, "scope": self.skipped_scope, "value": self.skipped_value},
            "errors": {"push": s.push_errors, "pull": s.pull_errors, "set": self.set_errors},
            "last_error": s.last_error,
        })
    }
}

fn max_prefix(c: &Cidr) -> u8 {
    if c.is_ipv4() { 32 } else { 128 }
}

/// The part of `net` this host never bans, described, if any.
fn ignored_overlap(ruleset: &Ruleset, net: &Cidr) -> Option<String> {
    let ranges = if net.is_ipv4() {
        &ruleset.ignore4
    } else {
        &ruleset.ignore6
    };
    let (s, e) = net.range();
    // Merged, sorted: the first range ending at or after `s`.
    let i = ranges.partition_point(|&(_, end)| end < s);
    let &(rs, re) = ranges.get(i)?;
    if rs > e {
        return None;
    }
    if rs <= s && re >= e {
        Some("all of it".to_string())
    } else {
        Some("the part on the ignore list".to_string())
    }
}
