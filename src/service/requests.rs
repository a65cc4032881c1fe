//! requests: what each control request does and the text it answers. The
//! daemon serves them all (`Daemon::serve_control`); the ban requests
//! (`list`, `block`, `unblock`, `flush`) are also what the command line
//! runs itself when no daemon answers, on a ledger it builds over the state
//! file (`cli::commands`): one implementation, two callers.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::format_duration;
use crate::error::{Error, Result};
use crate::respond::Ledger;
use crate::service::control::{Access, Reply, Request};
use crate::service::event_loop::Daemon;
use crate::table::bans::{Ban, BanSets, KernelBans};

/// The shortest ban `block --for` accepts.
pub const MIN_BAN: Duration = Duration::from_secs(1);

/// A ban request (`list`, `block`, `unblock`, `flush`) on `ledger` and the
/// kernel's `sets`, and its answer. `ignored` says whether an address is on
/// the ignore list (a block of one is noted: its packets are not dropped).
pub fn ban_request(
    req: &Request,
    ledger: &mut Ledger,
    sets: &mut dyn BanSets,
    ignored: &dyn Fn(&IpAddr) -> bool,
    now: Instant,
) -> Result<String> {
    match req {
        Request::List { json } => {
            let list = sets.list()?;
            Ok(if *json {
                list_json(&list)
            } else {
                list_text(&list)
            })
        }
        Request::Block { addr, secs } => {
            let timeout = Duration::from_secs(*secs);
            if timeout < MIN_BAN {
                return Err(Error::usage("--for: a ban must last at least 1s"));
            }
            let addr = crate::cidr::canonical(*addr);
            ledger.block(sets, addr, timeout, now)?;
            let mut out = format!("{addr} blocked for {}\n", format_duration(timeout));
            if ignored(&addr) {
                out.push_str(&format!(
                    "note: {addr} is in the ignore list (the built-in list, the ignore file or a local address); its packets are not dropped while it is ignored\n"
                ));
            }
            Ok(out)
        }
        Request::Unblock { addr } => {
            let addr = crate::cidr::canonical(*addr);
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

#[derive(Serialize)]
struct ListedBan {
    address: IpAddr,
    timeout: Option<u64>,
    expires_in: Option<u64>,
    /// What the ban dropped so far; null where the set counts nothing.
    packets: Option<u64>,
    bytes: Option<u64>,
}

/// `list --json`: one object per ban, times in seconds.
pub fn list_json(list: &[Ban]) -> String {
    let items: Vec<ListedBan> = list
        .iter()
        .map(|b| ListedBan {
            address: b.addr,
            timeout: b.timeout.map(|d| d.as_secs()),
            expires_in: b.expires_in.map(|d| d.as_secs()),
            packets: b.dropped.map(|d| d.0),
            bytes: b.dropped.map(|d| d.1),
        })
        .collect();
    let mut s = serde_json::to_string(&items).unwrap_or_else(|_| "[]".into());
    s.push('\n');
    s
}

/// `list`: a table for people.
pub fn list_text(list: &[Ban]) -> String {
    let dur = |d: Option<Duration>| {
        d.map(|d| format_duration(Duration::from_secs(d.as_secs())))
            .unwrap_or_else(|| "-".into())
    };
    let count = |d: Option<(u64, u64)>, bytes: bool| {
        d.map(|d| if bytes { d.1 } else { d.0 }.to_string())
            .unwrap_or_else(|| "-".into())
    };
    let mut out = format!(
        "{:<40} {:>12} {:>12} {:>12} {:>14}\n",
        "ADDRESS", "EXPIRES IN", "BAN TIME", "DROPPED PKTS", "DROPPED BYTES"
    );
    for b in list {
        out.push_str(&format!(
            "{:<40} {:>12} {:>12} {:>12} {:>14}\n",
            b.addr.to_string(),
            dur(b.expires_in),
            dur(b.timeout),
            count(b.dropped, false),
            count(b.dropped, true)
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
            _ => {
                let core = &mut self.core;
                let mut sets = KernelBans {
                    nft: &mut core.nft,
                    table: &core.cfg.table,
                };
                let detector = &core.detector;
                let r = ban_request(
                    req,
                    &mut core.ledger,
                    &mut sets,
                    &|a| detector.is_ignored(a),
                    Instant::now(),
                );
                // Recorded before the answer: a command that returned has
                // its ban in the state file.
                core.ledger.flush_file();
                if let (Ok(_), Request::Block { addr, secs }) = (&r, req) {
                    self.bans_manual += 1;
                    let addr = crate::cidr::canonical(*addr);
                    core.ban_event(addr, "control", None, Duration::from_secs(*secs));
                }
                r
            }
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
        let list = vec![Ban {
            addr: "192.0.2.7".parse().unwrap(),
            timeout: Some(Duration::from_secs(3600)),
            expires_in: None,
            dropped: None,
        }];
        assert_eq!(
            list_json(&list),
            "[{\"address\":\"192.0.2.7\",\"timeout\":3600,\"expires_in\":null,\"packets\":null,\"bytes\":null}]\n"
        );
        assert!(list_text(&list).contains("192.0.2.7"));
    }
}
