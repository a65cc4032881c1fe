//! restore: the ledger at start. The state file's entries (and, for the
//! daemon, the bans of a table that survived the last run) become records
//! again: ended bans are undone, live ones go back into the kernel set with
//! the time they have left, in the transaction that installs the table, and
//! their route and hosts.deny line are put back if missing. The records,
//! the heaps and the kernel-set index are built in one pass each (a million
//! bans); the state file is written again whole by the writer thread.

use crate::cidr::Cidr;
use std::cmp::Reverse;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::journal::state::{Applied, Entries, Entry};
use crate::journal::state_file;
use crate::table::bans::{Ban, BanSets};

use super::{Ledger, MANUAL_MODE, RETRY, Record, RestoreReport, Restored, ms, wall_ms};
use crate::config::BlockMode;
use crate::respond::actions::Target;

/// Damaged state file lines logged one by one at start; a file of garbage
/// (a disk error, the wrong file) must not flood the log with a line each.
const MAX_PROBLEMS_LOGGED: usize = 20;

impl Ledger {
    /// The state file's bans, read under its lock, for the command line:
    /// ended ones kept as they are (to remember repeat offenders).
    pub fn load(&mut self, now: Instant) -> Result<()> {
        let Some(path) = self.file.as_ref().map(|f| f.path().to_path_buf()) else {
            return Ok(());
        };
        let (entries, problems) = state_file::load(&path)?;
        for p in problems {
            log_warning!("state file {p}");
        }
        let now_ms = wall_ms();
        for (addr, e) in entries {
            let r = self.record_for(e, now, now_ms);
            self.heap.push(Reverse((r.until, addr)));
            self.put(addr, r);
        }
        Ok(())
    }

    /// Writes the state file now (the command line, holding the lock).
    pub fn save(&mut self) -> Result<()> {
        match &self.file {
            Some(f) => state_file::save(f.path(), self.records.values().map(|r| &r.entry)),
            None => Ok(()),
        }
    }

    /// The state file's path, whose lock the command line takes.
    pub fn state_file(&self) -> Option<PathBuf> {
        self.file.as_ref().map(|f| f.path().to_path_buf())
    }

    /// The in-memory record of an entry read from the file at `now`. Its
    /// times are bounded first: a length at most the longest ban a config
    /// can ask for, a start not in the future, an end at most its length
    /// from now. A line written while the clock was far ahead (or forged)
    /// thus restores a ban of its own length, not one of decades that the
    /// kernel refuses (ERANGE) or keeps for ever.
    fn record_for(&self, mut e: Entry, now: Instant, now_ms: u64) -> Record {
        let longest = ms(crate::config::BAN_TIME_MAX);
        e.length = e.length.clamp(1, longest);
        e.banned_at = e.banned_at.min(now_ms);
        let latest = now_ms.saturating_add(e.length);
        if e.expires_at > latest {
            log_warning!(
                "adminalert: WARNING: the state file's ban of {} claims to end more than its length ({}) from now; restored for its length",
                e.addr,
                crate::config::format_duration(Duration::from_millis(e.length))
            );
            e.expires_at = latest;
        }
        if e.mode.is_empty() {
            // A file of the first release did not say: the mode that would
            // see such a scan now.
            e.mode = crate::detect::mode_of_key(&self.config, &e.scan).into();
        }
        if e.is_active(now_ms) {
            let remaining = Duration::from_millis(e.expires_at - now_ms);
            let age = Duration::from_millis(now_ms.saturating_sub(e.banned_at));
            Record {
                since: now.checked_sub(age).unwrap_or(now),
                until: now + remaining,
                ended: false,
                entry: e,
            }
        } else {
            let until = if e.applied.needs_undo() {
                now + RETRY
            } else {
                now + self.policy.memory(&e, now_ms)
            };
            Record {
                entry: e,
                since: now,
                until,
                ended: true,
            }
        }
    }

    /// Reads the state file and merges the bans of a table that survived
    /// (`kernel`), undoes ended bans, and returns the live bans to put into
    /// the kernel set in the transaction that installs the table.
    pub fn restore(&mut self, kernel: Option<Vec<Ban>>, now: Instant) -> Result<Vec<Restored>> {
        let now_ms = wall_ms();
        let file = self.read_file()?;
        // Written again whole, kept or not: the file holds only what the
        // restore kept, in the current form.
        if let Some(f) = self.file.as_mut() {
            f.changed_all(now);
        }
        let mut report = RestoreReport::default();
        let mut kept = Vec::with_capacity(file.len());
        for (addr, e) in file {
            if let Some(r) = self.take_entry(e, now, now_ms, &mut report) {
                kept.push((addr, r));
            }
        }
        if self.records.is_empty() {
            // In the file's order: the map is built in one pass.
            for (addr, _) in &kept {
                self.note_length(addr);
            }
            self.records = kept.into_iter().collect();
        } else {
            for (addr, r) in kept {
                self.put(addr, r);
            }
        }
        for b in kernel.unwrap_or_default() {
            self.adopt(b, now, now_ms, &mut report);
        }
        self.take_intents(now, &mut report);
        let out = self.within_set_size(now, &mut report);
        self.in_set = super::InSet::rebuilt(
            self.records
                .iter()
                .filter(|(_, r)| !r.ended && r.entry.applied.set)
                .map(|(a, r)| (r.entry.evidence, r.entry.banned_at, *a)),
        );
        let addrs: Vec<(Cidr, Instant)> = self.records.iter().map(|(a, r)| (*a, r.until)).collect();
        self.heap.reserve(addrs.len());
        self.heap
            .extend(addrs.iter().map(|&(addr, until)| Reverse((until, addr))));
        self.reads.reserve(addrs.len());
        for (addr, until) in addrs {
            self.read_before_end(addr, now, until);
        }
        self.report = report;
        Ok(out)
    }

    /// Bans the kernel refused to take back (see
    /// `table::install::install_keeping_what_fits`): ended now, their
    /// route and hosts.deny line undone after the install.
    pub fn not_restored(&mut self, addrs: &[Cidr], now: Instant) {
        if addrs.is_empty() {
            return;
        }
        for addr in addrs {
            if let Some(r) = self.records.get_mut(addr) {
                r.ended = true;
                r.entry.applied.set = false;
                r.entry.expires_at = wall_ms().min(r.entry.expires_at);
                r.until = now;
                self.heap.push(Reverse((now, *addr)));
            }
            self.changed(*addr, now);
        }
        self.reindex();
    }

    /// The state file's entries, read under its lock; damaged lines are
    /// logged (at most `MAX_PROBLEMS_LOGGED` one by one), temporary files of
    /// writes that were cut short are removed.
    fn read_file(&mut self) -> Result<Entries> {
        let mut file = Entries::new();
        if let Some(path) = self.state_file() {
            let _lock = state_file::lock(&path)?;
            let (entries, problems) = state_file::load(&path)?;
            for p in problems.iter().take(MAX_PROBLEMS_LOGGED) {
                log_error!("adminalert: ERROR: state file {p}");
            }
            if problems.len() > MAX_PROBLEMS_LOGGED {
                log_error!(
                    "adminalert: ERROR: state file {}: {} more damaged lines not shown; every valid line was read",
                    path.display(),
                    problems.len() - MAX_PROBLEMS_LOGGED
                );
            }
            file = entries;
            for left in state_file::remove_leftovers(&path) {
                log_notice!(
                    "adminalert: removed {}, left by a write that was cut short (kill -9 or a crash)",
                    left.display()
                );
            }
        }
        for left in self.actions.remove_leftovers() {
            log_notice!(
                "adminalert: removed {}, left by a write that was cut short (kill -9 or a crash)",
                left.display()
            );
        }
        Ok(file)
    }

    /// One entry of the state file: a live ban is kept, an ended one has
    /// its actions undone and is kept only to remember a repeat offender or
    /// to retry an undo that failed. The record to keep, if any.
    fn take_entry(
        &mut self,
        e: Entry,
        now: Instant,
        now_ms: u64,
        report: &mut RestoreReport,
    ) -> Option<Record> {
        let mut r = self.record_for(e, now, now_ms);
        if !r.ended {
            if r.entry.applied.set {
                report.from_file += 1;
            }
        } else if r.entry.applied.needs_undo() {
            // Undone by `after_install`, after the privilege drop: the
            // daemon writes files with no more rights at start than at a ban.
            report.undone += 1;
        } else {
            r.entry.applied = Applied::default();
            r.until = now + self.policy.memory(&r.entry, now_ms);
        }
        let keep = !r.ended || r.entry.applied.needs_undo() || r.until > now;
        keep.then_some(r)
    }

    /// What bans of the last run were about to do and the state file does
    /// not know (the daemon was killed before it wrote them): for an address
    /// not banned now, those actions are undone with the others
    /// (`after_install`).
    fn take_intents(&mut self, now: Instant, report: &mut RestoreReport) {
        let Some(path) = self.state_file() else {
            return;
        };
        let (intents, problems) = crate::journal::intents::load(&path);
        for p in problems.iter().take(MAX_PROBLEMS_LOGGED) {
            log_error!("adminalert: ERROR: intent file {p}");
        }
        let mut orphans = 0;
        for (addr, mut e) in intents {
            // The state file has this ban (or a later one): it is covered.
            let covered = self
                .records
                .get(&addr)
                .is_some_and(|r| !r.ended || r.entry.banned_at >= e.banned_at);
            if covered || !e.applied.needs_undo() {
                continue;
            }
            e.applied.set = false;
            e.applied.kill_route = false;
            e.applied.command = false;
            let known = self.records.contains_key(&addr);
            if !known {
                orphans += 1;
            }
            let r = self.records.entry(addr).or_insert_with(|| Record {
                entry: Entry {
                    applied: Applied::default(),
                    ..e.clone()
                },
                since: now,
                until: now + RETRY,
                ended: true,
            });
            r.entry.applied.hosts_deny |= e.applied.hosts_deny;
            r.entry.applied.route = r.entry.applied.route.or(e.applied.route);
            self.changed(addr, now);
        }
        if orphans > 0 {
            report.undone += orphans;
            log_notice!(
                "adminalert: {orphans} bans of the last run never reached the state file (it was killed); their routes and hosts.deny lines are undone"
            );
        }
    }

    /// A ban of a table that survived the last run: the kernel's clock is
    /// the one that counts; a ban the file does not know is adopted.
    fn adopt(&mut self, b: Ban, now: Instant, now_ms: u64, report: &mut RestoreReport) {
        let addr = b.addr;
        if !addr.is_bannable_width() {
            return;
        }
        let timeout = b.timeout.unwrap_or(self.policy.ban_time);
        let remaining = b.expires_in.unwrap_or(timeout).min(timeout);
        if remaining.is_zero() {
            return;
        }
        let until = now + remaining;
        let expires_at = now_ms.saturating_add(ms(remaining));
        match self.records.get_mut(&addr) {
            Some(r) if !r.ended => {
                if !r.entry.applied.set {
                    r.entry.applied.set = true;
                    report.from_file += 1;
                }
                r.until = until;
                r.entry.expires_at = expires_at;
            }
            prev => {
                report.adopted += 1;
                let prev = prev.map(|r| &*r);
                let entry = Entry {
                    addr,
                    scan: "adopted".into(),
                    proto: None,
                    mode: MANUAL_MODE.into(),
                    port: 0,
                    banned_at: expires_at.saturating_sub(ms(timeout)),
                    expires_at,
                    length: ms(timeout),
                    repeat: prev.map_or(1, |r| r.entry.repeat.max(1)),
                    // What it rested on died with the last run.
                    evidence: prev
                        .map_or(crate::strength::Strength::Forgeable, |r| r.entry.evidence),
                    applied: Applied {
                        set: true,
                        ..prev.map(|r| r.entry.applied.clone()).unwrap_or_default()
                    },
                };
                let since = now
                    .checked_sub(timeout.saturating_sub(remaining))
                    .unwrap_or(now);
                let record = Record {
                    entry,
                    since,
                    until,
                    ended: false,
                };
                self.put(addr, record);
            }
        }
    }

    /// What goes back into the kernel: per family at most `set_size` (the
    /// longest left first), since more would fail the whole transaction;
    /// the rest are dropped, their actions undone.
    fn within_set_size(&mut self, now: Instant, report: &mut RestoreReport) -> Vec<Restored> {
        let mut live: Vec<Restored> = self
            .records
            .values()
            .filter(|r| !r.ended && r.entry.applied.set)
            .map(|r| {
                let remaining = r
                    .until
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(1));
                Restored {
                    addr: r.entry.addr,
                    timeout: Duration::from_millis(r.entry.length).max(remaining),
                    remaining,
                }
            })
            .collect();
        let v4 = live.iter().filter(|b| b.addr.is_ipv4()).count();
        let size = self.policy.set_size as usize;
        if v4 <= size && live.len() - v4 <= size {
            // All of them fit: in the records' order.
            return live;
        }
        live.sort_unstable_by_key(|b| (b.addr.is_ipv6(), Reverse(b.remaining), b.addr));
        let mut out = Vec::with_capacity(live.len());
        let mut over = Vec::new();
        let (mut n4, mut n6) = (0u32, 0u32);
        for b in live {
            let n = if b.addr.is_ipv4() { &mut n4 } else { &mut n6 };
            if *n < self.policy.set_size {
                *n += 1;
                out.push(b);
            } else {
                report.dropped += 1;
                over.push(b.addr);
            }
        }
        self.not_restored(&over, now);
        if report.dropped > 0 {
            log_error!(
                "adminalert: ERROR: {} bans not restored: more than set_size ({}) per address family",
                report.dropped,
                self.policy.set_size
            );
        }
        out
    }

    /// After the table is in: puts back missing routes and hosts.deny lines
    /// of live bans, writes the state file, logs what was restored.
    pub fn after_install(&mut self, sets: &mut dyn BanSets, now: Instant) {
        // Ended bans: their routes and lines go, all in one go.
        let ended: Vec<Cidr> = self
            .records
            .iter()
            .filter(|(_, r)| r.ended && r.entry.applied.needs_undo())
            .map(|(a, _)| *a)
            .collect();
        let items: Vec<(Target, Applied)> = ended
            .iter()
            .map(|a| {
                let r = &self.records[a];
                (Self::target(&r.entry), r.entry.applied.clone())
            })
            .collect();
        let left = self.actions.undo_all(sets, &items, now);
        for (addr, left) in ended.into_iter().zip(left) {
            self.settle_ended(addr, left, now);
        }
        // Live bans: their routes and lines put back where missing (none
        // to put back when no action of the config leaves one).
        let ensures = self.actions.undoable_in(BlockMode::Block).needs_undo();
        let live: Vec<Cidr> = self
            .records
            .iter()
            .filter(|(_, r)| ensures && !r.ended && r.entry.applied.set)
            .map(|(a, _)| *a)
            .collect();
        let mut items: Vec<(Target, Applied, bool)> = live
            .iter()
            .map(|a| {
                let r = &self.records[a];
                let adopted = r.entry.scan == "adopted";
                (Self::target(&r.entry), r.entry.applied.clone(), adopted)
            })
            .collect();
        self.actions.ensure_all(sets, &mut items, now);
        for (addr, (_, applied, _)) in live.into_iter().zip(items) {
            if let Some(r) = self.records.get_mut(&addr) {
                if r.entry.applied != applied {
                    r.entry.applied = applied;
                    self.changed(addr, now);
                }
            }
        }
        let r = &self.report;
        if r.from_file + r.adopted + r.undone > 0 {
            log_notice!(
                "adminalert: {} bans restored with the time they had left ({} from the state file, {} adopted from the table that was still in the kernel); {} ended bans undone",
                r.from_file + r.adopted,
                r.from_file,
                r.adopted,
                r.undone
            );
        }
        // The state file is written by the writer thread, which starts
        // next (`start_writer`): the first write is due at once. Until it
        // is done the old file and the intents stay, and a restore from
        // them gives the same bans.
    }
}

impl Ledger {
    /// `put`'s note of the prefix length, for records that go in whole.
    pub(super) fn note_length(&mut self, addr: &Cidr) {
        if addr.is_ipv4() {
            self.lengths4.set(addr.prefix());
        } else {
            self.lengths6.set(addr.prefix());
        }
    }
}
