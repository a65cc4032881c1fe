//! neighbours: the ignore list follows the host after start. With
//! `ignore_local`, the daemon's loop polls `host::watch::LocalWatch`
//! (address, route and nexthop events, the resolver files); when the
//! local entries changed, the kernel's ignore sets get the new list in
//! one transaction (`table::ignores::replace`), the detector gets it with
//! its reasons, and one line says so (at most one every `LINE_INTERVAL`;
//! changes held back meanwhile are summed up in the next one). Nothing
//! else of the table changes: the bans stay. A failure is logged (once a
//! minute) and tried again; detection goes on with the list in force.
//!
//! The ignore file's entries are kept as start or the last reload read
//! them: only the local part is gathered again.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::cidr::Cidr;
use crate::config::Config;
use crate::detect::{Ignored, networks};
use crate::error::Result;
use crate::host::ignores;
use crate::host::resolvers::ResolverFiles;
use crate::host::watch::{LocalWatch, Polled};
use crate::logging::Gate;
use crate::service::event_loop::Daemon;
use crate::table::ruleset::ignore_ranges;

/// At most one "local addresses changed" line this often.
const LINE_INTERVAL: Duration = Duration::from_secs(10);
/// At most one failure line this often.
const FAILURE_INTERVAL: Duration = Duration::from_secs(60);
/// Networks named in a change line, at most.
const NAMED: usize = 8;

/// The ignore list in two parts: what the config gives (the ignore file)
/// and what this host's neighbourhood gives (`ignore_local`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IgnoreParts {
    pub configured: Vec<Ignored>,
    pub local: Vec<Ignored>,
}

impl IgnoreParts {
    /// Both, the config's entries first (their reason is the one named).
    pub fn all(&self) -> Vec<Ignored> {
        let mut all = self.configured.clone();
        all.extend(self.local.iter().cloned());
        all
    }

    /// What `cfg` ignores on this host now.
    pub fn gather(cfg: &Config) -> Result<IgnoreParts> {
        let configured = ignores::configured_labelled(cfg)?;
        let local = if cfg.ignore_local {
            ignores::local_labelled(&ResolverFiles::system())?
        } else {
            Vec::new()
        };
        Ok(IgnoreParts { configured, local })
    }
}

/// The watch and what goes with it.
pub struct Neighbours {
    watch: LocalWatch,
    configured: Vec<Ignored>,
    /// Changes not said yet (a line was due too soon): networks added and
    /// removed, and when the next line may go.
    held: Option<(usize, usize)>,
    line_at: Option<Instant>,
    failures: Gate,
    /// Notes of the last gathering that were logged (said once each).
    notes: Vec<String>,
    /// Lists put in force since start.
    pub changes: u64,
}

impl Neighbours {
    pub fn fds(&self) -> [std::os::fd::BorrowedFd<'_>; 2] {
        self.watch.fds()
    }

    pub fn next_due(&self, now: Instant) -> Option<Duration> {
        let line = self
            .held
            .and(self.line_at)
            .map(|t| t.saturating_duration_since(now));
        [self.watch.next_due(now), line].into_iter().flatten().min()
    }

    pub fn stats(&self) -> crate::host::watch::Stats {
        self.watch.stats
    }

    /// A line for a change of `added` and `removed` networks, `total` now,
    /// naming some of them; or held back and summed into the next one.
    fn say(&mut self, total: usize, added: &[(Cidr, String)], removed: &[Cidr], now: Instant) {
        let (a, r) = self.held.take().unwrap_or((0, 0));
        let (a, r) = (a + added.len(), r + removed.len());
        if self.line_at.is_some_and(|t| now < t) {
            self.held = Some((a, r));
            return;
        }
        self.line_at = Some(now + LINE_INTERVAL);
        let mut named: Vec<String> = added
            .iter()
            .map(|(net, why)| format!("+{net} ({why})"))
            .chain(removed.iter().map(|net| format!("-{net}")))
            .collect();
        let more = named.len().saturating_sub(NAMED);
        named.truncate(NAMED);
        if more > 0 {
            named.push(format!("and {more} more"));
        }
        let earlier = if a + r > added.len() + removed.len() {
            " since the last such line"
        } else {
            ""
        };
        let tail = if named.is_empty() {
            String::new()
        } else {
            format!(": {}", named.join(", "))
        };
        log_notice!(
            "adminalert: local addresses changed: {total} ignored networks now (+{a}, -{r}{earlier}){tail}"
        );
    }

    /// The held-back summary, when it is due.
    fn flush_line(&mut self, now: Instant) {
        if self.held.is_some() && self.line_at.is_some_and(|t| now >= t) {
            let total = networks(&all_of(&self.configured, self.watch.current())).len();
            self.say(total, &[], &[], now);
        }
    }

    fn note(&mut self) {
        if self.watch.notes != self.notes {
            for n in &self.watch.notes {
                if !self.notes.contains(n) {
                    log_warning!("adminalert: WARNING: local addresses: {n}");
                }
            }
            self.notes = self.watch.notes.clone();
        }
    }
}

impl Daemon {
    /// Follows the neighbourhood from now on with `parts` the list in
    /// force (at start, and after a reload), if the config asks for it
    /// (`ignore_local`). A watch that cannot be set up is logged: the list
    /// of start stays, detection goes on.
    pub fn follow_neighbours(&mut self, parts: IgnoreParts) {
        if !self.core.cfg.ignore_local {
            self.neighbours = None;
            return;
        }
        let now = Instant::now();
        if let Some(n) = &mut self.neighbours {
            n.configured = parts.configured;
            n.watch.applied(parts.local);
            return;
        }
        match LocalWatch::open(ResolverFiles::system(), parts.local) {
            Ok(mut watch) => {
                // Whatever changed between the gathering of start and now
                // (a long restore) is found by one look soon.
                watch.mark(now);
                self.neighbours = Some(Neighbours {
                    watch,
                    configured: parts.configured,
                    held: None,
                    line_at: None,
                    failures: Gate::new(FAILURE_INTERVAL),
                    notes: Vec::new(),
                    changes: 0,
                });
            }
            Err(e) => log_error!(
                "adminalert: ERROR: cannot follow changes of local addresses ({e}): the list of start stays until a reload"
            ),
        }
    }

    /// One turn of the loop: read what is ready, and when a burst is over,
    /// put a changed list in force.
    pub fn neighbours_turn(&mut self, ready: bool) {
        let Some(n) = &mut self.neighbours else {
            return;
        };
        let now = Instant::now();
        if ready {
            n.watch.on_ready(now);
        }
        n.flush_line(now);
        let local = match n.watch.poll(now) {
            Polled::Idle => return,
            Polled::Unchanged => {
                n.note();
                return;
            }
            Polled::Failed(e) => {
                n.failures.error(format!(
                    "adminalert: ERROR: local addresses: {e}; the ignore list in force is kept, trying again"
                ));
                return;
            }
            Polled::Changed(local) => {
                n.note();
                local
            }
        };
        self.apply_neighbours(local, now);
    }

    fn apply_neighbours(&mut self, local: Vec<Ignored>, now: Instant) {
        let Some(n) = &mut self.neighbours else {
            return;
        };
        let before: Vec<Cidr> = networks(&all_of(&n.configured, n.watch.current()));
        let all = all_of(&n.configured, &local);
        let after = networks(&all);
        let (v4, v6) = ignore_ranges(&after);
        if v4 != self.ruleset.ignore4 || v6 != self.ruleset.ignore6 {
            let table = &self.core.cfg.table;
            if let Err(e) = crate::table::ignores::replace(&mut self.core.nft, table, &v4, &v6) {
                n.failures.error(format!(
                    "adminalert: ERROR: local addresses changed, but the ignore sets of table inet {table} could not be updated ({e}); the list in force is kept, trying again"
                ));
                n.watch.failed(now);
                return;
            }
            self.ruleset.ignore4 = v4;
            self.ruleset.ignore6 = v6;
        }
        let added: Vec<(Cidr, String)> = after
            .iter()
            .filter(|c| before.binary_search(c).is_err())
            .map(|c| (*c, reason(&all, &c.addr()).to_string()))
            .collect();
        let removed: Vec<Cidr> = before
            .iter()
            .filter(|c| after.binary_search(c).is_err())
            .copied()
            .collect();
        n.watch.applied(local);
        n.changes += 1;
        if !added.is_empty() || !removed.is_empty() {
            n.say(after.len(), &added, &removed, now);
        }
        self.core.detector.reconfigure(&self.core.cfg, all);
    }
}

fn all_of(configured: &[Ignored], local: &[Ignored]) -> Vec<Ignored> {
    let mut all = configured.to_vec();
    all.extend_from_slice(local);
    all
}

fn reason<'a>(list: &'a [Ignored], ip: &IpAddr) -> &'a str {
    crate::detect::why(list, ip).unwrap_or("ignore list")
}
