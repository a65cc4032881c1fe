//! status: what `nftsentry status` shows of a running daemon, as text for
//! people and JSON for scripts, from a snapshot the daemon fills in.
//!
//! The figures come from the daemon (`Daemon::snapshot`); the rendering
//! knows nothing of where they come from.

use crate::cidr::Cidr;
use std::fmt::Write as _;
use std::time::Duration;

use crate::config::Proto;
use crate::table::install::flags_text;
use crate::table::sets::OurSet;

use crate::config::format_duration;
use serde::Serialize;

/// One protocol's settings as running.
#[derive(Clone, Debug)]
pub struct ProtoStatus {
    pub name: &'static str,
    pub mode: String,
    pub tripwire_ports: usize,
    pub listening_ports: usize,
    pub block_mode: String,
}

/// One of the last bans.
#[derive(Clone, Debug)]
pub struct LastBan {
    /// Seconds since 1970.
    pub at: u64,
    pub addr: Cidr,
    pub scan: String,
    pub port: u16,
}

#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub version: &'static str,
    pub pid: u32,
    pub uptime: Duration,
    pub config: String,
    pub table: String,
    /// "owner, persist", "owner" or "none".
    pub table_flags: String,
    pub nflog_group: u16,
    pub protocols: Vec<ProtoStatus>,
    pub bans_v4: u32,
    pub bans_v6: u32,
    pub bans_since_start: u64,
    pub ban_errors: u64,
    pub withheld: u64,
    /// Probes by scan type key, sorted by key.
    pub probes: Vec<(String, u64)>,
    pub not_probes: u64,
    pub ignored: u64,
    pub undecodable: u64,
    pub lost_overruns: u64,
    pub lost_seq_gaps: u64,
    pub tracked_sources: usize,
    pub top_sources: Vec<(Cidr, u32)>,
    pub last_bans: Vec<LastBan>,
    pub reloads: u64,
    pub table_restores: u64,
    /// Bans given up for stronger evidence in a full set.
    pub evictions: u64,
    /// Packets from IPv4-mapped IPv6 sources (forged).
    pub bogus: u64,
    /// `protect_live_peers`: sources in the live sets now, and live peers
    /// not banned on forgeable evidence since start.
    pub live_peers: Option<u32>,
    pub spared: u64,
    /// The storm guard, when on: how long it has been on, how long it
    /// stays on at least, the bans it held back.
    pub storm: Option<(Duration, Duration, u64)>,
    /// `[crowdsec]`: its status line and JSON object, when on.
    pub crowdsec: Option<(String, serde_json::Value)>,
}

impl Snapshot {
    /// `status` for people. Long: one line per figure, in the order
    /// printed.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "nftsentry {} running for {} (pid {}), config {}",
            self.version,
            format_duration(Duration::from_secs(self.uptime.as_secs().max(1))),
            self.pid,
            self.config
        );
        let _ = writeln!(
            o,
            "table inet {} (flags: {}), NFLOG group {}, reloads {}, table restored {} times",
            self.table, self.table_flags, self.nflog_group, self.reloads, self.table_restores
        );
        for p in &self.protocols {
            let _ = writeln!(
                o,
                "{}: mode {}, {} ports watched by tripwires, {} listened on, block mode {}",
                p.name, p.mode, p.tripwire_ports, p.listening_ports, p.block_mode
            );
        }
        let _ = writeln!(
            o,
            "bans active: {} ({} IPv4, {} IPv6); since start: {} bans, {} failed, {} not banned for lack of a handshake",
            self.bans_v4 + self.bans_v6,
            self.bans_v4,
            self.bans_v6,
            self.bans_since_start,
            self.ban_errors,
            self.withheld
        );
        let _ = match self.live_peers {
            Some(n) => writeln!(
                o,
                "live peers: {n} sources with an established TCP connection; {} not banned on forgeable evidence since start",
                self.spared
            ),
            None => writeln!(o, "live peers: not protected (protect_live_peers = false)"),
        };
        let _ = match self.storm {
            Some((on, left, held)) => writeln!(
                o,
                "storm guard: on for {}, at least {} more; {held} bans on forgeable evidence held back; {} bans given up for stronger evidence since start",
                format_duration(Duration::from_secs(on.as_secs().max(1))),
                format_duration(Duration::from_secs(left.as_secs().max(1))),
                self.evictions
            ),
            None => writeln!(
                o,
                "storm guard: off; {} bans given up for stronger evidence since start",
                self.evictions
            ),
        };
        let probes: Vec<String> = self
            .probes
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(
            o,
            "probes by scan type: {}; not probes {}, from ignored sources {}, undecodable {}, forged (IPv4-mapped) {}",
            if probes.is_empty() {
                "none".to_string()
            } else {
                probes.join(", ")
            },
            self.not_probes,
            self.ignored,
            self.undecodable,
            self.bogus
        );
        let _ = writeln!(
            o,
            "events lost: {} (sequence gaps; the receive buffer overflowed {} times)",
            self.lost_seq_gaps, self.lost_overruns
        );
        if let Some((line, _)) = &self.crowdsec {
            let _ = writeln!(o, "{line}");
        }
        let _ = writeln!(o, "sources tracked: {}", self.tracked_sources);
        if !self.top_sources.is_empty() {
            let _ = writeln!(o, "top sources (not banned):");
            for (ip, n) in &self.top_sources {
                let _ = writeln!(o, "  {ip:<39} {n} probes");
            }
        }
        if !self.last_bans.is_empty() {
            let _ = writeln!(o, "last bans:");
            for b in &self.last_bans {
                let ago = now_secs().saturating_sub(b.at);
                let _ = writeln!(
                    o,
                    "  {:<39} {} port {}, {} ago",
                    b.addr.to_string(),
                    b.scan,
                    b.port,
                    format_duration(Duration::from_secs(ago.max(1)))
                );
            }
        }
        o
    }

    /// The same for scripts: one JSON object (nftsentry(8), STATUS). Long:
    /// one field per figure, the object's layout as the man page lists it.
    pub fn json(&self) -> String {
        let protocols: serde_json::Map<String, serde_json::Value> = self
            .protocols
            .iter()
            .map(|p| {
                (
                    p.name.to_string(),
                    serde_json::to_value(JsonProtocol {
                        mode: &p.mode,
                        tripwire_ports: p.tripwire_ports,
                        listening_ports: p.listening_ports,
                        block_mode: &p.block_mode,
                    })
                    .unwrap_or_default(),
                )
            })
            .collect();
        let probes: serde_json::Map<String, serde_json::Value> = self
            .probes
            .iter()
            .map(|(k, n)| (k.clone(), (*n).into()))
            .collect();
        let j = JsonStatus {
            version: self.version,
            pid: self.pid,
            uptime: self.uptime.as_secs(),
            config: &self.config,
            table: &self.table,
            table_flags: &self.table_flags,
            nflog_group: self.nflog_group,
            reloads: self.reloads,
            table_restores: self.table_restores,
            protocols,
            bans: JsonBans {
                active: self.bans_v4 + self.bans_v6,
                ipv4: self.bans_v4,
                ipv6: self.bans_v6,
                since_start: self.bans_since_start,
                failed: self.ban_errors,
                withheld: self.withheld,
            },
            probes,
            not_probes: self.not_probes,
            ignored: self.ignored,
            undecodable: self.undecodable,
            // Every event lost leaves a gap in the sequence numbers; an
            // overrun is one overflow of the buffer, with any number lost.
            events_lost: JsonLost {
                total: self.lost_seq_gaps,
                overruns: self.lost_overruns,
                sequence_gaps: self.lost_seq_gaps,
            },
            tracked_sources: self.tracked_sources,
            crowdsec: self.crowdsec.as_ref().map(|(_, j)| j.clone()),
            storm_guard: match self.storm {
                Some((on, left, held)) => JsonStorm {
                    on: true,
                    on_for: on.as_secs(),
                    ends_in: left.as_secs(),
                    held,
                },
                None => JsonStorm {
                    on: false,
                    on_for: 0,
                    ends_in: 0,
                    held: 0,
                },
            },
            evictions: self.evictions,
            bogus: self.bogus,
            live_peers: JsonLive {
                protected: self.live_peers.is_some(),
                sources: self.live_peers.unwrap_or(0),
                spared: self.spared,
            },
            top_sources: self
                .top_sources
                .iter()
                .map(|(ip, n)| JsonSource {
                    address: *ip,
                    probes: *n,
                })
                .collect(),
            last_bans: self
                .last_bans
                .iter()
                .map(|b| JsonBan {
                    at: b.at,
                    address: b.addr,
                    scan: &b.scan,
                    port: b.port,
                })
                .collect(),
        };
        let mut out = serde_json::to_string(&j).unwrap_or_else(|_| "{}".into());
        out.push('\n');
        out
    }
}

// The JSON of `status --json`, field by field in its order.
#[derive(Serialize)]
struct JsonStatus<'a> {
    version: &'a str,
    pid: u32,
    uptime: u64,
    config: &'a str,
    table: &'a str,
    table_flags: &'a str,
    nflog_group: u16,
    reloads: u64,
    table_restores: u64,
    protocols: serde_json::Map<String, serde_json::Value>,
    bans: JsonBans,
    probes: serde_json::Map<String, serde_json::Value>,
    not_probes: u64,
    ignored: u64,
    undecodable: u64,
    events_lost: JsonLost,
    tracked_sources: usize,
    storm_guard: JsonStorm,
    #[serde(skip_serializing_if = "Option::is_none")]
    crowdsec: Option<serde_json::Value>,
    evictions: u64,
    bogus: u64,
    live_peers: JsonLive,
    top_sources: Vec<JsonSource>,
    last_bans: Vec<JsonBan<'a>>,
}

#[derive(Serialize)]
struct JsonProtocol<'a> {
    mode: &'a str,
    tripwire_ports: usize,
    listening_ports: usize,
    block_mode: &'a str,
}

#[derive(Serialize)]
struct JsonBans {
    active: u32,
    ipv4: u32,
    ipv6: u32,
    since_start: u64,
    failed: u64,
    withheld: u64,
}

#[derive(Serialize)]
struct JsonStorm {
    on: bool,
    /// Seconds it has been on, and at least stays on.
    on_for: u64,
    ends_in: u64,
    held: u64,
}

#[derive(Serialize)]
struct JsonLive {
    protected: bool,
    /// Sources in the live sets now.
    sources: u32,
    /// Live peers not banned on forgeable evidence since start.
    spared: u64,
}

#[derive(Serialize)]
struct JsonLost {
    total: u64,
    overruns: u64,
    sequence_gaps: u64,
}

#[derive(Serialize)]
struct JsonSource {
    address: Cidr,
    probes: u32,
}

#[derive(Serialize)]
struct JsonBan<'a> {
    at: u64,
    address: Cidr,
    scan: &'a str,
    port: u16,
}

impl crate::service::event_loop::Daemon {
    /// What `status` shows now.
    pub fn snapshot(&mut self) -> Snapshot {
        let core = &mut self.core;
        let table = core.cfg.table.clone();
        let mut count = |set: OurSet| {
            core.nft
                .set_info(&table, set.name())
                .ok()
                .and_then(|i| i.count)
                .unwrap_or(0)
        };
        // Addresses and prefixes: every ban set of the family.
        let bans_v4 = count(OurSet::Blocked4) + count(OurSet::Blocked4Net);
        let bans_v6 =
            count(OurSet::Blocked6) + count(OurSet::Blocked6Prefix) + count(OurSet::Blocked6Net);
        let live_peers = self
            .ruleset
            .live_mark
            .map(|_| count(OurSet::Live4) + count(OurSet::Live6));
        let st = self.io.nflog.stats();
        let c = &core.detector.counts;
        let probes = c
            .by_scan()
            .into_iter()
            .map(|(k, n)| (k.to_string(), n))
            .collect();
        let protocols = [(Proto::Tcp, &core.cfg.tcp), (Proto::Udp, &core.cfg.udp)]
            .into_iter()
            .map(|(proto, p)| ProtoStatus {
                name: proto.as_str(),
                mode: p.mode.to_string(),
                tripwire_ports: p.tripwire_ports().len(),
                listening_ports: self.io.connect.ports(proto).len(),
                block_mode: p.block_mode.to_string(),
            })
            .collect();
        Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            pid: std::process::id(),
            uptime: self.started.elapsed(),
            config: core.cfg.source.clone(),
            table,
            table_flags: flags_text(self.ruleset.flags),
            nflog_group: core.cfg.nflog_group,
            protocols,
            bans_v4,
            bans_v6,
            bans_since_start: core.bans,
            ban_errors: core.ban_errors,
            withheld: c.withheld,
            probes,
            not_probes: c.not_probes,
            ignored: c.ignored,
            undecodable: c.undecodable,
            lost_overruns: st.overruns,
            lost_seq_gaps: st.seq_gaps,
            tracked_sources: core.detector.tracked(),
            top_sources: core.detector.top(10),
            last_bans: core.last_bans.iter().rev().cloned().collect(),
            reloads: self.reloads,
            table_restores: self.table_restores,
            evictions: core.ledger.evictions(),
            bogus: c.bogus,
            crowdsec: core
                .fleet
                .as_ref()
                .map(|f| (f.status_line(), f.status_json())),
            live_peers,
            spared: c.spared,
            storm: core.detector.storm().map(|s| {
                let now = std::time::Instant::now();
                (
                    now.saturating_duration_since(s.since),
                    s.until.saturating_duration_since(now),
                    s.held,
                )
            }),
        }
    }
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_well_formed_and_text_names_everything() {
        let s = Snapshot {
            version: "0.1.0",
            pid: 7,
            uptime: Duration::from_secs(90),
            config: "/etc/nftsentry/nftsentry.toml".into(),
            table: "nftsentry".into(),
            table_flags: "owner, persist".into(),
            nflog_group: 7531,
            protocols: vec![ProtoStatus {
                name: "tcp",
                mode: "advanced+connect".into(),
                tripwire_ports: 1021,
                listening_ports: 2,
                block_mode: "block".into(),
            }],
            bans_v4: 2,
            bans_v6: 1,
            live_peers: Some(4),
            spared: 2,
            probes: vec![("syn".into(), 5)],
            top_sources: vec![("198.51.100.7".parse().unwrap(), 3)],
            last_bans: vec![LastBan {
                at: now_secs() - 5,
                addr: "192.0.2.9".parse().unwrap(),
                scan: "TCP SYN/Normal scan".into(),
                port: 1,
            }],
            ..Snapshot::default()
        };
        let j = s.json();
        assert_eq!(j.matches('{').count(), j.matches('}').count());
        assert_eq!(j.matches('[').count(), j.matches(']').count());
        for key in [
            "\"uptime\":90",
            "\"active\":3",
            "\"syn\":5",
            "\"address\":\"198.51.100.7\",\"probes\":3",
            "\"events_lost\":{\"total\":0",
            "\"mode\":\"advanced+connect\"",
            "\"live_peers\":{\"protected\":true,\"sources\":4,\"spared\":2}",
        ] {
            assert!(j.contains(key), "{key} in {j}");
        }
        let t = s.text();
        for part in [
            "running for 1m30s",
            "tcp: mode advanced+connect",
            "bans active: 3 (2 IPv4, 1 IPv6)",
            "syn 5",
            "198.51.100.7",
            "192.0.2.9",
            "events lost: 0",
            "live peers: 4 sources with an established TCP connection; 2 not banned",
        ] {
            assert!(t.contains(part), "{part} in\n{t}");
        }
    }
}
