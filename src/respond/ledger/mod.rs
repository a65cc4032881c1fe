//! ledger: the one owner of ban state. Every ban, whoever makes it (a
//! detection, `nftsentry block`, a restart that restores it, a table put
//! back), every lift (`unblock`, `flush`, the end of its time) and every
//! repeat offender goes through these methods, in the daemon and in the
//! command line's fallback alike (which builds a ledger over the state file:
//! load, act, save). The actions carry a ban out (`actions`); the state file
//! records it (`journal::state_file`).
//!
//! A ban's life: `ban` (or `block`) applies the actions and records what is
//! in force; a timer per ban ends it (`tick`): the kernel has dropped the
//! element by itself, the route and hosts.deny line are undone. An ended
//! ban is remembered until `ban_time_max` after its end when bans escalate
//! (`ban_time_factor`), so a repeat offender's next ban is longer, or until
//! an undo that failed is retried.
//!
//! Start-up (`restore`, then `after_install`): the state file's ended bans
//! are undone; its live bans, and those of a table that survived the last
//! run, go back into the kernel set with the time they have left, in the
//! transaction that installs the table; their route and hosts.deny line are
//! put back if missing.
//!
//! Knows nothing of packets, sockets or netlink: it is handed the kernel's
//! ban sets (`BanSets`).

use crate::cidr::Cidr;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use std::time::{Duration, Instant, SystemTime};

use crate::config::format_duration;
use crate::config::{BlockMode, Config, Proto};
use crate::detect::{BanInForce, Bans, Evidence};
use crate::error::Result;
use crate::journal::state::{Applied, Entry};
use crate::journal::state_file::StateFile;
use crate::strength::Strength;
use crate::table::bans::BanSets;

use super::actions::{Actions, End, Target};

mod drops;
mod escalate;
mod in_set;
mod policy;
mod restore;

use in_set::InSet;
use policy::Policy;

/// After a failed undo, the next try.
const RETRY: Duration = Duration::from_secs(60);

/// Milliseconds since 1970, from the wall clock.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A history line to write once the host's name is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryDue {
    /// Seconds since 1970 of the ban.
    pub epoch: i64,
    pub port: u16,
    /// "TCP" or "UDP".
    pub protocol: &'static str,
}

/// What `Ledger::ban` did.
#[derive(Debug)]
pub enum BanResult {
    /// Block mode "log": nothing but the alert.
    LogOnly,
    /// At least one action took effect: the source is banned.
    Banned {
        length: Duration,
        history: Option<HistoryDue>,
        set_error: Option<crate::error::Error>,
    },
    /// Nothing took effect.
    Failed {
        set_error: Option<crate::error::Error>,
    },
}

/// A ban to put into the kernel set: its full length and the time left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restored {
    pub addr: Cidr,
    pub timeout: Duration,
    pub remaining: Duration,
}

struct Record {
    entry: Entry,
    /// When this ban was made (its kernel element added).
    since: Instant,
    /// When it ends; for an ended record, when it is forgotten.
    until: Instant,
    ended: bool,
}

/// Counts for the start-up line.
#[derive(Default)]
struct RestoreReport {
    from_file: usize,
    adopted: usize,
    undone: usize,
    dropped: usize,
}

pub struct Ledger {
    policy: Policy,
    /// The config in force, for what the state file of an older release
    /// did not record.
    config: Config,
    actions: Actions,
    /// By address: the state file's order.
    records: BTreeMap<Cidr, Record>,
    /// Each record's end (or forgetting); stale entries are skipped.
    heap: BinaryHeap<Reverse<(Instant, Cidr)>>,
    file: Option<StateFile>,
    /// The bans with a kernel set element, weakest evidence first.
    in_set: InSet,
    evictions: u64,
    /// Addresses whose ban ended or was lifted since the last `released`.
    released: Vec<Cidr>,
    report: RestoreReport,
    /// Per family, the prefix lengths some record has had (never cleared:
    /// a superset only costs `covering` a lookup).
    lengths4: Lengths,
    lengths6: Lengths,
    /// When to read what a ban dropped, shortly before its end: the kernel
    /// removes the element (and its counter) by itself when the time is
    /// over. Stale entries (a ban renewed or lifted) are skipped.
    reads: BinaryHeap<Reverse<(Instant, Cidr)>>,
    /// What each ban in force dropped as last read (packets, bytes).
    dropped: std::collections::HashMap<Cidr, (u64, u64)>,
}

/// Prefix lengths (0 to 128) as bits: `covering` visits only the lengths
/// some ban has had, with no walk over the others (a probe asks once).
#[derive(Clone, Copy, Default)]
pub(super) struct Lengths([u64; 3]);

impl Lengths {
    pub(super) fn set(&mut self, p: u8) {
        self.0[usize::from(p / 64)] |= 1 << (p % 64);
    }

    /// The lengths set, from `max` down to 0.
    fn down_from(self, max: u8) -> impl Iterator<Item = u8> {
        let mut words = self.0;
        // Nothing above `max`.
        let top = usize::from(max / 64);
        let keep = max % 64;
        words[top] &= if keep == 63 {
            u64::MAX
        } else {
            (2u64 << keep) - 1
        };
        for w in words.iter_mut().skip(top + 1) {
            *w = 0;
        }
        let mut i = top;
        std::iter::from_fn(move || {
            loop {
                if words[i] != 0 {
                    let bit = 63 - words[i].leading_zeros() as u8;
                    words[i] &= !(1u64 << bit);
                    return Some(i as u8 * 64 + bit);
                }
                if i == 0 {
                    return None;
                }
                i -= 1;
            }
        })
    }
}

/// How long before a ban's end its counter is read (half the ban, for a
/// ban shorter than twice this): what it drops after that is not in the
/// end-of-ban line.
pub const DROP_READ_LEAD: Duration = Duration::from_secs(1);
/// Past this many bans ending at once, their counters come from one dump.
const READS_ONE_BY_ONE: usize = 32;

/// $MODE$ of a ban made without a detection.
pub const MANUAL_MODE: &str = "manual";

impl Ledger {
    /// An empty ledger for `cfg`. The daemon's (`daemon = true`) takes the
    /// state file's lock around each hosts.deny edit and writes the file
    /// when bans change; the command line holds the lock throughout.
    pub fn new(cfg: &Config, daemon: bool) -> Ledger {
        let lock = if daemon { cfg.state_file.clone() } else { None };
        Ledger {
            policy: Policy::of(cfg),
            config: cfg.clone(),
            actions: Actions::new(cfg, &cfg.table, lock),
            records: BTreeMap::new(),
            heap: BinaryHeap::new(),
            file: cfg.state_file.clone().map(StateFile::new),
            in_set: InSet::default(),
            evictions: 0,
            released: Vec::new(),
            report: RestoreReport::default(),
            lengths4: Lengths::default(),
            lengths6: Lengths::default(),
            reads: BinaryHeap::new(),
            dropped: std::collections::HashMap::new(),
        }
    }

    /// New settings (reload): ban times, escalation, block modes, actions.
    /// The table and the state file stay (a reload refuses to change them);
    /// bans in force keep their own length. When the hosts.deny file or
    /// line changes, the lines of bans in force move: removed as the old
    /// settings wrote them, added as the new ones write them (the state
    /// file says only that a line is in force, so the old settings are the
    /// only way to find the old lines).
    pub fn reconfigure(&mut self, cfg: &Config, sets: &mut dyn BanSets, now: Instant) {
        let moved = (&cfg.hosts_deny, &cfg.hosts_deny_line)
            != (&self.config.hosts_deny, &self.config.hosts_deny_line);
        let affected: Vec<Cidr> = if moved {
            self.records
                .iter()
                .filter(|(_, r)| r.entry.applied.hosts_deny)
                .map(|(a, _)| *a)
                .collect()
        } else {
            Vec::new()
        };
        let items: Vec<(Target, Applied)> = affected
            .iter()
            .map(|a| {
                let only = Applied {
                    hosts_deny: true,
                    ..Applied::default()
                };
                (Self::target(&self.records[a].entry), only)
            })
            .collect();
        let left = self.actions.undo_all(sets, &items, now);
        for (addr, left) in affected.iter().zip(left) {
            if let Some(r) = self.records.get_mut(addr) {
                r.entry.applied.hosts_deny = left.hosts_deny;
            }
            self.changed(*addr, now);
        }
        self.policy = Policy::of(cfg);
        self.config = cfg.clone();
        let lock = self.file.as_ref().map(|f| f.path().to_path_buf());
        self.actions.reconfigure(cfg, &cfg.table, lock);
        let live: Vec<Cidr> = affected
            .into_iter()
            .filter(|a| !self.records[a].ended)
            .collect();
        let mut items: Vec<(Target, Applied, bool)> = live
            .iter()
            .map(|a| {
                let r = &self.records[a];
                (Self::target(&r.entry), r.entry.applied.clone(), false)
            })
            .collect();
        self.actions.ensure_all(sets, &mut items, now);
        for (addr, (_, applied, _)) in live.into_iter().zip(items) {
            if let Some(r) = self.records.get_mut(&addr) {
                r.entry.applied = applied;
            }
        }
    }

    /// Every record goes in through here; the one it replaced comes back.
    fn put(&mut self, addr: Cidr, r: Record) -> Option<Record> {
        self.note_length(&addr);
        self.records.insert(addr, r)
    }

    fn changed(&mut self, addr: Cidr, now: Instant) {
        if let Some(f) = self.file.as_mut() {
            f.changed(addr, now);
        }
    }

    fn target(e: &Entry) -> Target {
        Target {
            addr: e.addr,
            port: e.port,
            mode: e.mode.clone(),
            length: Duration::from_millis(e.length),
        }
    }

    /// The bans that should be in the kernel set now, with their full
    /// length and the time left: what a table put back after someone
    /// deleted it must hold.
    pub fn kernel_bans(&self) -> Vec<Restored> {
        let now_ms = wall_ms();
        self.records
            .values()
            .filter(|r| !r.ended && r.entry.applied.set && r.entry.expires_at > now_ms)
            .map(|r| Restored {
                addr: r.entry.addr,
                timeout: Duration::from_millis(r.entry.length.max(1)),
                remaining: Duration::from_millis(r.entry.expires_at - now_ms),
            })
            .collect()
    }

    /// How many `kernel_bans` there are, without listing them.
    pub fn kernel_ban_count(&self) -> usize {
        self.in_set.total()
    }

    /// Bans in force (any block mode), for the service manager's status.
    pub fn active_bans(&self) -> usize {
        self.records.values().filter(|r| !r.ended).count()
    }

    /// The scan recorded for a ban in force ("manual" for `block`).
    pub fn scan_of(&self, addr: Cidr) -> Option<&str> {
        self.records
            .get(&addr)
            .filter(|r| !r.ended)
            .map(|r| r.entry.scan.as_str())
    }

    /// The record of the ban in force on `net` (`why`).
    pub fn ban_entry(&self, net: Cidr) -> Option<&Entry> {
        self.records
            .get(&net)
            .filter(|r| !r.ended)
            .map(|r| &r.entry)
    }

    /// Is `addr` banned (in any block mode)?
    pub fn is_banned(&self, addr: Cidr) -> bool {
        self.records.get(&addr).is_some_and(|r| !r.ended)
    }

    /// The ban in force on `net` itself or on a wider network holding it.
    /// One lookup per prefix length that some ban has: few in practice
    /// (/32 and /64, a narrowed or an escalated one now and then).
    fn covering(&self, net: &Cidr) -> Option<&Record> {
        let lengths = if net.is_ipv4() {
            &self.lengths4
        } else {
            &self.lengths6
        };
        lengths
            .down_from(net.prefix())
            .find_map(|p| self.records.get(&net.widen(p)).filter(|r| !r.ended))
    }

    /// The ban in force that covers `net` (itself or wider), for `unblock`
    /// and `list` to name.
    pub fn covering_ban(&self, net: &Cidr) -> Option<Cidr> {
        self.covering(net).map(|r| r.entry.addr)
    }

    /// Addresses whose ban ended or was lifted since the last call: the
    /// detector forgets them.
    pub fn released(&mut self) -> Vec<Cidr> {
        let out = std::mem::take(&mut self.released);
        // A ban lifted after its counter was read leaves nothing behind.
        for a in &out {
            self.dropped.remove(a);
        }
        out
    }

    /// PIDs of commands still running.
    pub fn running_commands(&self) -> Vec<u32> {
        self.actions.runner.pids()
    }

    /// Reaps children that ended (SIGCHLD).
    pub fn on_child_exit(&mut self, now: Instant) {
        self.actions.reap(now);
    }

    /// Acts on a detection.
    pub fn ban(&mut self, sets: &mut dyn BanSets, ev: &Evidence, now: Instant) -> BanResult {
        let mode = self.policy.block_mode(ev.scan.proto());
        if mode == BlockMode::Log {
            log_notice!(
                "attackalert: Ignoring {} response per configuration file setting.",
                ev.scan.protocol()
            );
            return BanResult::LogOnly;
        }
        let prev = self.records.get(&ev.net);
        let (length, repeat, offence) = self.policy.length_for(prev);
        let in_kernel = prev.is_some_and(|r| !r.ended && r.entry.applied.set);
        // What is still in force: a live ban's actions, or what an ended
        // one could not undo (ours, so found again rather than added).
        let already = prev.map(|r| r.entry.applied.clone()).unwrap_or_default();
        let target = Target {
            addr: ev.net,
            port: ev.port,
            mode: ev.mode.to_string(),
            length,
        };
        let now_ms = wall_ms();
        let entry = |applied: Applied| Entry {
            addr: ev.net,
            scan: ev.scan.key().to_string(),
            proto: Some(ev.scan.proto()),
            mode: ev.mode.to_string(),
            port: ev.port,
            banned_at: now_ms,
            expires_at: now_ms.saturating_add(ms(length)),
            length: ms(length),
            repeat,
            evidence: ev.strength,
            applied,
        };
        if mode == BlockMode::Block {
            if let Err(e) = self.make_room(sets, ev.net, in_kernel, ev.strength, now) {
                return BanResult::Failed { set_error: Some(e) };
            }
        }
        let undoable = self.actions.undoable_in(mode);
        if undoable.needs_undo() {
            self.intend(entry(undoable));
        }
        let out = self.actions.ban(sets, &target, mode, &already, now);
        if out.applied.is_empty() || out.set_error.is_some() {
            return BanResult::Failed {
                set_error: out.set_error,
            };
        }
        let addr = ev.net;
        if offence {
            log_notice!(
                "attackalert: Host {addr} is a repeat offender (ban {repeat}); banned for {}",
                format_duration(length)
            );
        }
        self.insert(entry(out.applied), now, length);
        if mode == BlockMode::Block {
            self.escalate(sets, &ev.escalate, now);
        }
        BanResult::Banned {
            length,
            history: self.policy.history.then(|| HistoryDue {
                epoch: (now_ms / 1000) as i64,
                port: ev.port,
                protocol: ev.scan.protocol(),
            }),
            set_error: out.set_error,
        }
    }

    /// Notes what a ban is about to do, when it does something to undo and
    /// there is a state file to cover it later (see `journal::intents`).
    fn intend(&mut self, e: Entry) {
        if e.applied.needs_undo() {
            if let Some(f) = self.file.as_mut() {
                f.intend(&e);
            }
        }
    }

    fn insert(&mut self, entry: Entry, now: Instant, length: Duration) {
        let addr = entry.addr;
        self.heap.push(Reverse((now + length, addr)));
        self.read_before_end(addr, now, now + length);
        let key = entry
            .applied
            .set
            .then_some((entry.evidence, entry.banned_at));
        let record = Record {
            entry,
            since: now,
            until: now + length,
            ended: false,
        };
        // One descent of the map for both: the record replaced tells which
        // index entry to take out (a ban's path is a few lookups in total).
        if let Some(old) = self.put(addr, record) {
            if !old.ended && old.entry.applied.set {
                self.in_set
                    .remove(old.entry.evidence, old.entry.banned_at, addr);
            }
        }
        if let Some((strength, banned_at)) = key {
            self.in_set.add(strength, banned_at, addr);
        }
        self.changed(addr, now);
    }

    /// Takes `addr`'s record out of the index of bans in the kernel set.
    fn unindex(&mut self, addr: &Cidr) {
        if let Some(r) = self.records.get(addr) {
            if !r.ended && r.entry.applied.set {
                self.in_set
                    .remove(r.entry.evidence, r.entry.banned_at, *addr);
            }
        }
    }

    /// The index rebuilt from the records (after a restore).
    pub(super) fn reindex(&mut self) {
        self.in_set.clear();
        for (addr, r) in &self.records {
            if !r.ended && r.entry.applied.set {
                self.in_set.add(r.entry.evidence, r.entry.banned_at, *addr);
            }
        }
    }

    /// Room in the kernel set for a ban of `addr` on `strength`: when the
    /// set of its family holds `set_size` bans, the one on the weakest and
    /// oldest evidence is lifted, if that evidence is not stronger. A flood
    /// of forged probes thus cannot keep a scanner that completed a
    /// handshake out, and fills the set only with its own kind. `Err` when
    /// every ban in the set rests on stronger evidence.
    /// `in_kernel`: `addr` already holds an element (its caller looked).
    fn make_room(
        &mut self,
        sets: &mut dyn BanSets,
        addr: Cidr,
        in_kernel: bool,
        strength: Strength,
        now: Instant,
    ) -> Result<()> {
        if in_kernel || self.in_set.len(&addr) < self.policy.set_size as usize {
            return Ok(());
        }
        let Some((weakest, _, victim)) = self.in_set.weakest(&addr) else {
            return Ok(());
        };
        if weakest > strength {
            return Err(crate::error::Error::new(
                crate::error::Kind::SetFull,
                format!(
                    "the set of bans is full (set_size {}) and every ban in it rests on evidence stronger than {}",
                    self.policy.set_size,
                    strength.as_str()
                ),
            ));
        }
        log_notice!(
            "attackalert: Host {victim} unblocked to make room for {addr}: the set of bans is full (set_size {}), and {victim}'s ban rested on the weakest, oldest evidence ({})",
            self.policy.set_size,
            weakest.as_str()
        );
        self.evictions += 1;
        self.lift(sets, victim, now)
    }

    /// Ends the ban of `addr` now: its element, route and line go; it is
    /// remembered as an ended ban (a repeat offender).
    fn lift(&mut self, sets: &mut dyn BanSets, addr: Cidr, now: Instant) -> Result<()> {
        let Some(r) = self.records.get(&addr) else {
            return Ok(());
        };
        let target = Self::target(&r.entry);
        let applied = r.entry.applied.clone();
        let undone = self.actions.undo(sets, &target, &applied, End::Lift, now)?;
        self.unindex(&addr);
        if let Some(r) = self.records.get_mut(&addr) {
            r.ended = true;
            r.entry.expires_at = wall_ms().min(r.entry.expires_at);
            r.entry.applied = Applied::default();
        }
        self.released.push(addr);
        self.settle_ended(addr, undone.left, now);
        Ok(())
    }

    /// The kernel set is the only action (`Actions::set_only`): bans may
    /// be queued until the end of a burst.
    pub fn queues_bans(&self) -> bool {
        self.actions.set_only()
    }

    /// The kernel refused the element of a ban made from a queue
    /// (`table::bans::BanQueue`): it is not in force, and ends now as if
    /// lifted (a probe from it counts afresh).
    pub fn refused(&mut self, sets: &mut dyn BanSets, addr: Cidr, now: Instant) {
        if let Err(e) = self.lift(sets, addr, now) {
            log_error!("attackalert: ERROR: undoing the refused ban of {addr}: {e}");
        }
    }

    /// Bans given up for stronger evidence since start.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// `nftsentry block ADDR --for LENGTH`: the kernel element, then the
    /// hosts.deny line and native route where configured (no command: there
    /// is no detection to report).
    pub fn block(
        &mut self,
        sets: &mut dyn BanSets,
        addr: Cidr,
        length: Duration,
        now: Instant,
    ) -> Result<()> {
        let in_kernel = self
            .records
            .get(&addr)
            .is_some_and(|r| !r.ended && r.entry.applied.set);
        self.make_room(
            sets,
            addr,
            in_kernel,
            crate::strength::Strength::Manual,
            now,
        )?;
        sets.add(addr, length)?;
        let prev = self.records.get(&addr);
        let active = prev.filter(|r| !r.ended);
        let already = active.map(|r| r.entry.applied.clone()).unwrap_or_default();
        let repeat = match (prev, active) {
            (_, Some(r)) => r.entry.repeat.max(1),
            (Some(r), None) => r.entry.repeat.saturating_add(1),
            (None, None) => 1,
        };
        let target = Target {
            addr,
            port: 0,
            mode: MANUAL_MODE.into(),
            length,
        };
        let now_ms = wall_ms();
        let entry = |applied: Applied| Entry {
            addr,
            scan: "manual".into(),
            proto: None,
            mode: MANUAL_MODE.into(),
            port: 0,
            banned_at: now_ms,
            expires_at: now_ms.saturating_add(ms(length)),
            length: ms(length),
            repeat,
            evidence: crate::strength::Strength::Manual,
            applied,
        };
        self.intend(entry(self.actions.undoable_in(BlockMode::Block)));
        let mut applied = self.actions.ensure(sets, &target, &already, false, now);
        applied.set = true;
        self.insert(entry(applied), now, length);
        Ok(())
    }

    /// `nftsentry unblock ADDR`: the kernel element removed (if the table is
    /// there), the route and hosts.deny line undone, the address forgotten
    /// (also as a repeat offender). Ok(false) if it was not banned.
    pub fn unblock(&mut self, sets: &mut dyn BanSets, addr: Cidr, now: Instant) -> Result<bool> {
        let (target, applied, was_banned) = match self.records.get(&addr) {
            Some(r) => (Self::target(&r.entry), r.entry.applied.clone(), !r.ended),
            None => {
                // No record (a state file turned off, or lost): our route, if
                // any, still goes; only routes we tagged can be removed.
                let applied = Applied {
                    route: self.actions.native_route(),
                    ..Applied::default()
                };
                let target = Target {
                    addr,
                    port: 0,
                    mode: MANUAL_MODE.into(),
                    length: Duration::ZERO,
                };
                (target, applied, false)
            }
        };
        let undone = self.actions.undo(sets, &target, &applied, End::Lift, now)?;
        self.unindex(&addr);
        if let Some(r) = self.records.remove(&addr) {
            if undone.left.needs_undo() {
                // Kept as ended so the daemon (or the next start) tries again.
                self.keep_ended(r.entry, undone.left, now, now + RETRY);
            }
            self.changed(addr, now);
        }
        if was_banned {
            self.released.push(addr);
        }
        Ok(undone.lifted || was_banned)
    }

    /// `nftsentry flush`: every ban lifted, its route and hosts.deny line
    /// undone. Returns how many bans there were.
    pub fn flush(&mut self, sets: &mut dyn BanSets, now: Instant) -> Result<usize> {
        let in_kernel = sets.flush()?;
        let records = std::mem::take(&mut self.records);
        self.in_set.clear();
        let mut active = 0;
        let mut items = Vec::with_capacity(records.len());
        let mut entries = Vec::with_capacity(records.len());
        for (addr, r) in records {
            if !r.ended {
                active += 1;
                self.released.push(addr);
            }
            items.push((Self::target(&r.entry), r.entry.applied.clone()));
            entries.push(r.entry);
            self.changed(addr, now);
        }
        let left = self.actions.undo_all(sets, &items, now);
        for (entry, left) in entries.into_iter().zip(left) {
            if left.needs_undo() {
                self.keep_ended(entry, left, now, now + RETRY);
            }
        }
        Ok(in_kernel.unwrap_or(active))
    }

    /// Records `entry` as ended at `now` with `left` still in force, until
    /// `until`.
    fn keep_ended(&mut self, entry: Entry, left: Applied, now: Instant, until: Instant) {
        let addr = entry.addr;
        let entry = Entry {
            expires_at: wall_ms().min(entry.expires_at),
            applied: left,
            ..entry
        };
        self.heap.push(Reverse((until, addr)));
        self.put(
            addr,
            Record {
                entry,
                since: now,
                until,
                ended: true,
            },
        );
    }

    /// Ends bans that are due, times commands out, writes the state file
    /// when due. Returns the time until the next thing to do.
    pub fn tick(&mut self, sets: &mut dyn BanSets, now: Instant) -> Option<Duration> {
        self.read_counters(sets, now);
        let mut due = Vec::new();
        while let Some(Reverse((until, addr))) = self.heap.peek().copied() {
            if until > now {
                break;
            }
            self.heap.pop();
            due.push((addr, until));
        }
        if !due.is_empty() {
            self.due(sets, &due, now);
        }
        // SIGCHLD can coalesce or be missed; reaping also here is cheap.
        self.actions.reap(now);
        let commands = self.actions.tick(now);
        let write = match self.file.as_mut() {
            Some(f) => {
                f.tick(now, self.records.values().map(|r| &r.entry), |a| {
                    self.records.get(a).map(|r| &r.entry)
                });
                f.due().map(|t| t.saturating_duration_since(now))
            }
            None => None,
        };
        let next_ban = self
            .heap
            .peek()
            .map(|Reverse((t, _))| t.saturating_duration_since(now));
        let next_read = self
            .reads
            .peek()
            .map(|Reverse((t, _))| t.saturating_duration_since(now));
        [next_ban, next_read, commands, write]
            .into_iter()
            .flatten()
            .min()
    }

    /// Heap entries that came due: bans that end (their actions undone
    /// together: a flood's bans end together, and hosts.deny is then
    /// rewritten once), ended ones to forget, undos to retry.
    fn due(&mut self, sets: &mut dyn BanSets, due: &[(Cidr, Instant)], now: Instant) {
        let mut undo: Vec<(Cidr, (Target, Applied))> = Vec::new();
        for &(addr, until) in due {
            // A renewed ban pushed a later entry; only the current one counts.
            if self.records.get(&addr).is_none_or(|r| r.until != until) {
                continue;
            }
            self.unindex(&addr);
            let r = self.records.get_mut(&addr).expect("looked up above");
            if !r.ended {
                r.ended = true;
                // Its counter as read just before the end (the kernel
                // removes the element by itself when the time is over).
                let dropped = self.dropped.remove(&addr);
                match dropped {
                    Some((p, b)) => {
                        log_info!("ban of {addr} expired; it dropped {p} packets ({b} bytes)")
                    }
                    None => log_info!("ban of {addr} expired"),
                }
                self.released.push(addr);
            }
            let applied = std::mem::take(&mut r.entry.applied);
            undo.push((addr, (Self::target(&r.entry), applied)));
        }
        let items: Vec<(Target, Applied)> = undo.iter().map(|(_, i)| i.clone()).collect();
        let left = self.actions.undo_all(sets, &items, now);
        for ((addr, _), left) in undo.into_iter().zip(left) {
            self.settle_ended(addr, left, now);
        }
    }

    /// An ended record whose undo left `left` in force: retried later, or
    /// remembered as a repeat offender, or forgotten.
    pub(super) fn settle_ended(&mut self, addr: Cidr, left: Applied, now: Instant) {
        let Some(r) = self.records.get_mut(&addr) else {
            return;
        };
        if left.needs_undo() {
            r.entry.applied = left;
            r.until = now + RETRY;
            self.heap.push(Reverse((r.until, addr)));
        } else {
            r.entry.applied = Applied::default();
            let forget = self.policy.memory(&r.entry, wall_ms());
            if forget.is_zero() {
                self.records.remove(&addr);
            } else {
                r.until = now + forget;
                self.heap.push(Reverse((r.until, addr)));
            }
        }
        self.changed(addr, now);
    }

    /// From now on the state file is written by a thread of its own (after
    /// the privilege drop).
    pub fn start_writer(&mut self) {
        if let Some(f) = self.file.as_mut() {
            f.start_writer();
        }
    }

    /// Writes the state file now if anything changed, and waits for it.
    pub fn flush_file(&mut self) {
        if let Some(f) = self.file.as_mut() {
            f.flush(self.records.values().map(|r| &r.entry), |a| {
                self.records.get(a).map(|r| &r.entry)
            });
        }
    }

    /// At exit: the state file written, children left to finish alone.
    pub fn shutdown(&mut self) {
        self.flush_file();
        let pids = self.actions.runner.pids();
        if !pids.is_empty() {
            log_warning!(
                "adminalert: {} external commands still running at exit (PIDs {:?}); not waited for",
                pids.len(),
                pids
            );
        }
    }
}

impl Bans for Ledger {
    fn ban_on(&self, net: Cidr, proto: Proto, now: Instant) -> Option<BanInForce> {
        let r = self.covering(&net)?;
        Some(BanInForce {
            age: now.saturating_duration_since(r.since),
            in_kernel: r.entry.applied.set,
            // A command-only ban (block mode "command" on the other
            // protocol) meets a protocol in block mode: PortSentry's TCP and
            // UDP processes blocked independently.
            upgradable: !r.entry.applied.set && self.policy.block_mode(proto) == BlockMode::Block,
        })
    }
}

#[cfg(test)]
mod tests;
