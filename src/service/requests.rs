//! requests: what each control request does and the text it answers. The
//! daemon serves them all (`Daemon::serve_control`); the ban requests
//! (`list`, `block`, `unblock`, `flush`) are also what the command line
//! runs itself when no daemon answers, on a ledger it builds over the state
//! file (`cli::commands`): one implementation, two callers.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cidr::Cidr;
use crate::config::format_duration;
use crate::error::{Error, Result};
use crate::respond::Ledger;
use crate::service::control::{Access, Reply, Request};
use crate::service::event_loop::Daemon;
use crate::table::bans::{BanSets, KernelBans};

/// The shortest ban `block --for` accepts.
pub const MIN_BAN: Duration = Duration::from_secs(1);

/// A ban request (`list`, `block`, `unblock`, `flush`) on `ledger` and the
/// kernel's `sets`, and its answer. `ignored` says whether a network holds
/// an address of the ignore list: a block of an ignored address is noted
/// (its packets are not dropped); a prefix that holds one is refused.
/// Long: one arm per request, each with the checks that explain a refusal.
pub fn ban_request(
    req: &Request,
    ledger: &mut Ledger,
    sets: &mut dyn BanSets,
    ignored: &dyn Fn(&Cidr) -> bool,
    now: Instant,
) -> Result<String> {
    match req {
        Request::List { json } => {
            let list = sets.list()?;
            let origin = |a: &Cidr| match ledger.scan_of(*a) {
                Some(s) if s == crate::respond::ledger::MANUAL_MODE => "manual".to_string(),
                _ => "local".to_string(),
            };
            let rows: Vec<Row> = list
                .iter()
                .map(|b| Row {
                    address: b.addr,
                    timeout: b.timeout,
                    expires_in: b.expires_in,
                    origin: origin(&b.addr),
                    dropped: b.dropped,
                })
                .collect();
            Ok(if *json {
                list_json(&rows)
            } else {
                list_text(&rows)
            })
        }
        Request::Block { addr, secs } => {
            let timeout = Duration::from_secs(*secs);
            if timeout < MIN_BAN {
                return Err(Error::usage("--for: a ban must last at least 1s"));
            }
            let addr = host_canonical(*addr);
            if !addr.is_bannable_width() {
                return Err(Error::usage(format!(
                    "block: {addr} is wider than a ban may be (/{} for IPv4, /{} for IPv6)",
                    crate::cidr::WIDEST_BAN4,
                    crate::cidr::WIDEST_BAN6
                )));
            }
            if !addr.is_host() && ignored(&addr) {
                return Err(Error::usage(format!(
                    "block: {addr} holds an address of the ignore list (the built-in list, the ignore file or a local address); ban a narrower prefix or single addresses"
                )));
            }
            if let Some(wider) = ledger.covering_ban(&addr).filter(|w| *w != addr) {
                return Err(Error::other(format!(
                    "block: {addr} is inside the ban of {wider} already"
                )));
            }
            ledger.block(sets, addr, timeout, now)?;
            let mut out = format!("{addr} blocked for {}\n", format_duration(timeout));
            if ignored(&addr) {
                out.push_str(&format!(
                    "note: {addr} is in the ignore list (the built-in list, the ignore file or a local address); its packets are not dropped while it is ignored\n"
                ));
            }
            Ok(out)
        }
        Request::Unblock { addr, fleet } => {
            if *fleet {
                return Err(Error::other(
                    "unblock --fleet needs the running daemon with [crowdsec] push on (it holds the Local API login)",
                ));
            }
            let addr = host_canonical(*addr);
            if let Some(wider) = ledger.covering_ban(&addr).filter(|w| *w != addr) {
                return Err(covered(addr, wider));
            }
            if ledger.unblock(sets, addr, now)? {
                Ok(format!("{addr} unblocked\n"))
            } else {
                Err(Error::other(format!("{addr} is not blocked")))
            }
        }
        Request::Flush => {
            let n = ledger.flush(sets, now)?;
            Ok(format!("{n} bans lifted\n"))
        }
        Request::Status { .. } | Request::Metrics | Request::Why { .. } | Request::Reload => Err(
            Error::other(format!("`{}` needs the running daemon", req.line())),
        ),
    }
}

/// `unblock` of an address inside a prefix ban: lifting the whole prefix
/// because one address inside it was named would be a surprise, so say
/// which ban it is.
fn covered(addr: Cidr, wider: Cidr) -> Error {
    Error::other(format!(
        "{addr} is not banned by itself: the ban of {wider} covers it (`nftsentry unblock {wider}` lifts that ban)"
    ))
}

/// An IPv4-mapped IPv6 address named on the command line is its IPv4 host.
fn host_canonical(net: Cidr) -> Cidr {
    if net.is_host() {
        Cidr::host(crate::cidr::canonical(net.addr()))
    } else {
        net
    }
}

/// One line of `list`: a ban of this host (origin "local" or "manual")
/// or a fleet decision ("fleet ORIGIN/SCENARIO"), an address or a network.
pub struct Row {
    pub address: Cidr,
    pub timeout: Option<Duration>,
    pub expires_in: Option<Duration>,
    pub origin: String,
    /// What it dropped so far (packets, bytes); `None` where its set
    /// counts nothing (the fleet's).
    pub dropped: Option<(u64, u64)>,
}

#[derive(Serialize)]
struct ListedBan<'a> {
    /// The address, or the prefix (`2001:db8::/64`).
    address: Cidr,
    /// Its prefix length (32 or 128 for a single address).
    prefix: u8,
    timeout: Option<u64>,
    expires_in: Option<u64>,
    /// What the ban dropped so far; null where the set counts nothing.
    packets: Option<u64>,
    bytes: Option<u64>,
    origin: &'a str,
}

/// `list --json`: one object per ban, times in seconds.
pub fn list_json(list: &[Row]) -> String {
    let items: Vec<ListedBan> = list
        .iter()
        .map(|b| ListedBan {
            address: b.address,
            prefix: b.address.prefix(),
            timeout: b.timeout.map(|d| d.as_secs()),
            expires_in: b.expires_in.map(|d| d.as_secs()),
            packets: b.dropped.map(|d| d.0),
            bytes: b.dropped.map(|d| d.1),
            origin: &b.origin,
        })
        .collect();
    let mut s = serde_json::to_string(&items).unwrap_or_else(|_| "[]".into());
    s.push('\n');
    s
}

/// `list`: a table for people.
pub fn list_text(list: &[Row]) -> String {
    let dur = |d: Option<Duration>| {
        d.map(|d| format_duration(Duration::from_secs(d.as_secs())))
            .unwrap_or_else(|| "-".into())
    };
    let count = |d: Option<(u64, u64)>, bytes: bool| {
        d.map(|d| if bytes { d.1 } else { d.0 }.to_string())
            .unwrap_or_else(|| "-".into())
    };
    let mut out = format!(
        "{:<43} {:>12} {:>12} {:>12} {:>14} ORIGIN\n",
        "ADDRESS", "EXPIRES IN", "BAN TIME", "DROPPED PKTS", "DROPPED BYTES"
    );
    for b in list {
        out.push_str(&format!(
            "{:<43} {:>12} {:>12} {:>12} {:>14} {}\n",
            b.address.to_string(),
            dur(b.expires_in),
            dur(b.timeout),
            count(b.dropped, false),
            count(b.dropped, true),
            b.origin
        ));
    }
    out
}

impl Daemon {
    /// Answers the control socket's clients (never blocks on one). Only
    /// root and members of `control_group` may change state; the socket
    /// checks each client's credentials before `answer` sees its request.
    pub fn serve_control(&mut self) {
        let Some(mut control) = self.io.control.take() else {
            return;
        };
        let group = self
            .core
            .cfg
            .control_group
            .as_ref()
            .map(|g| (g.name.clone(), g.gid));
        let access = Access::new(group);
        control.serve(Instant::now(), &access, |req| self.answer(req));
        self.io.control = Some(control);
        self.core.forget_released();
    }

    /// The ban request on this daemon's ledger and table.
    fn local_request(&mut self, req: &Request) -> Result<String> {
        let core = &mut self.core;
        let mut sets = KernelBans {
            nft: &mut core.nft,
            table: &core.cfg.table,
            prefix6: core.cfg.ban_prefix6,
        };
        let detector = &core.detector;
        let r = ban_request(
            req,
            &mut core.ledger,
            &mut sets,
            &|a| detector.covers_ignored(a),
            Instant::now(),
        );
        // Recorded before the answer: a command that returned has its ban
        // in the state file.
        core.ledger.flush_file();
        r
    }

    /// `list`: this host's bans, then the fleet's decisions it enforces.
    fn list(&mut self, json: bool) -> Result<String> {
        let core = &mut self.core;
        let mut sets = KernelBans {
            nft: &mut core.nft,
            table: &core.cfg.table,
            prefix6: core.cfg.ban_prefix6,
        };
        let mut rows: Vec<Row> = sets
            .list()?
            .into_iter()
            .map(|b| Row {
                address: b.addr,
                timeout: b.timeout,
                expires_in: b.expires_in,
                origin: match core.ledger.scan_of(b.addr) {
                    Some(s) if s == crate::respond::ledger::MANUAL_MODE => "manual".into(),
                    _ => "local".into(),
                },
                dropped: b.dropped,
            })
            .collect();
        if let Some(f) = &core.fleet {
            let now = Instant::now();
            for (id, h) in &f.held.by_id {
                rows.push(Row {
                    address: h.net,
                    timeout: None,
                    expires_in: Some(h.until.saturating_duration_since(now)),
                    origin: format!("fleet {}/{} (decision {id})", h.origin, h.scenario),
                    dropped: None,
                });
            }
        }
        Ok(if json {
            list_json(&rows)
        } else {
            list_text(&rows)
        })
    }

    /// `unblock [--fleet] ADDR`: a fleet decision is lifted only fleet-wide,
    /// and only when asked.
    fn unblock(&mut self, addr: Cidr, fleet: bool) -> Result<String> {
        let addr = host_canonical(addr);
        let covering = self
            .core
            .fleet
            .as_ref()
            .and_then(|f| f.held.covering(&addr.addr()).map(|(id, h)| (id, h.clone())));
        let local = self.core.ledger.is_banned(addr);
        if let Some(wider) = self.core.ledger.covering_ban(&addr).filter(|w| *w != addr) {
            return Err(covered(addr, wider));
        }
        let mut out = String::new();
        if local {
            out = self.local_request(&Request::Unblock { addr, fleet: false })?;
            // Our own decision on it was left out of the fleet's sets while
            // the local ban held it: from now on the fleet's decides.
            self.fleet_rewrite();
        }
        if fleet {
            let Some(f) = self.core.fleet.as_ref().filter(|f| f.can_delete()) else {
                return Err(Error::other(
                    "unblock --fleet needs [crowdsec] with push on: the Local API deletes decisions only for a machine",
                ));
            };
            f.delete(addr);
            out.push_str(&format!(
                "{addr}: its decisions on the Local API are being deleted fleet-wide (see the log)\n"
            ));
            return Ok(out);
        }
        match covering {
            Some((id, h)) => {
                let what = format!(
                    "{addr} is dropped by the fleet's decision {id} on {} ({}/{}), not by a ban of this host: `nftsentry unblock --fleet {addr}` or `cscli decisions delete --ip {addr}` lifts it fleet-wide",
                    h.net, h.origin, h.scenario
                );
                if local {
                    out.push_str(&format!("note: {what}\n"));
                    Ok(out)
                } else {
                    Err(Error::other(what))
                }
            }
            None if local => Ok(out),
            None => Err(Error::other(format!("{addr} is not blocked"))),
        }
    }

    /// One control-socket request.
    fn answer(&mut self, req: &Request) -> Reply {
        let result = match req {
            Request::Status { json } => {
                let snap = self.snapshot();
                Ok(if *json { snap.json() } else { snap.text() })
            }
            Request::Metrics => Ok(self.figures().exposition()),
            Request::Why { addr, json } => {
                let w = self.why(*addr);
                Ok(if *json { w.json() } else { w.text() })
            }
            Request::Reload => self.reload(),
            Request::List { json } => self.list(*json),
            Request::Unblock { addr, fleet } => self.unblock(*addr, *fleet),
            Request::Block { addr, secs } => {
                let r = self.local_request(req);
                if r.is_ok() {
                    self.bans_manual += 1;
                    let net = host_canonical(*addr);
                    let length = Duration::from_secs(*secs);
                    self.core.ban_event(&net, "control", None, length);
                    // The admin's word is the strongest evidence: pushed.
                    if let Some(f) = &self.core.fleet {
                        f.manual(net, length);
                    }
                }
                r
            }
            _ => self.local_request(req),
        };
        match result {
            Ok(text) => Reply::ok(text),
            Err(e) => Reply::error(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_renderings() {
        let list = vec![Row {
            address: "192.0.2.7".parse().unwrap(),
            timeout: Some(Duration::from_secs(3600)),
            expires_in: None,
            origin: "local".into(),
            dropped: None,
        }];
        assert_eq!(
            list_json(&list),
            "[{\"address\":\"192.0.2.7\",\"prefix\":32,\"timeout\":3600,\"expires_in\":null,\"packets\":null,\"bytes\":null,\"origin\":\"local\"}]\n"
        );
        assert!(list_text(&list).contains("192.0.2.7"));
        assert!(list_text(&list).contains(" local\n"));
    }
}
