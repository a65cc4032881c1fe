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

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use crate::config::format_duration;
use crate::config::{BlockMode, Config, Proto};
use crate::detect::{BanInForce, Bans, Evidence};
use crate::error::Result;
use crate::journal::state::{Applied, Entries, Entry};
use crate::journal::state_file::{self, StateFile};
use crate::table::bans::{Ban, BanSets};

use super::actions::{Actions, End, Target};

/// Damaged state file lines logged one by one at start; a file of garbage
/// (a disk error, the wrong file) must not flood the log with a line each.
const MAX_PROBLEMS_LOGGED: usize = 20;
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
    pub addr: IpAddr,
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

/// How long bans last and what they do, from the config.
struct Policy {
    ban_time: Duration,
    factor: u32,
    max: Duration,
    set_size: u32,
    modes: [BlockMode; 2],
    history: bool,
}

impl Policy {
    fn of(cfg: &Config) -> Policy {
        Policy {
            ban_time: cfg.ban_time,
            factor: cfg.ban_time_factor,
            max: cfg.ban_time_max,
            set_size: cfg.set_size,
            modes: [cfg.tcp.block_mode, cfg.udp.block_mode],
            history: cfg.history_file.is_some(),
        }
    }

    fn block_mode(&self, proto: Proto) -> BlockMode {
        match proto {
            Proto::Tcp => self.modes[0],
            Proto::Udp => self.modes[1],
        }
    }

    /// The length and repeat count of a ban of a source whose last record
    /// is `prev`, and whether it is a repeat offence. A ban still in force
    /// (renewed because the kernel lost it, or a command-only ban that
    /// becomes a block) keeps its length and count.
    fn length_for(&self, prev: Option<&Record>) -> (Duration, u32, bool) {
        match prev {
            None => (self.ban_time, 1, false),
            Some(r) if !r.ended => (
                Duration::from_millis(r.entry.length).max(Duration::from_secs(1)),
                r.entry.repeat.max(1),
                false,
            ),
            Some(r) => {
                let repeat = r.entry.repeat.saturating_add(1);
                if self.factor > 1 {
                    let last = Duration::from_millis(r.entry.length);
                    let next = last
                        .saturating_mul(self.factor)
                        .min(self.max)
                        .max(self.ban_time);
                    (next, repeat, true)
                } else {
                    (self.ban_time, repeat, true)
                }
            }
        }
    }

    /// How long an ended ban is remembered from `now_ms`: until
    /// `ban_time_max` after its end with escalation, else not at all.
    fn memory(&self, e: &Entry, now_ms: u64) -> Duration {
        if self.factor > 1 {
            Duration::from_millis(e.expires_at)
                .saturating_add(self.max)
                .saturating_sub(Duration::from_millis(now_ms))
        } else {
            Duration::ZERO
        }
    }
}

pub struct Ledger {
    policy: Policy,
    /// The config in force, for what the state file of an older release
    /// did not record.
    config: Config,
    actions: Actions,
    /// By address: the state file's order.
    records: BTreeMap<IpAddr, Record>,
    /// Each record's end (or forgetting); stale entries are skipped.
    heap: BinaryHeap<Reverse<(Instant, IpAddr)>>,
    file: Option<StateFile>,
    /// Addresses whose ban ended or was lifted since the last `released`.
    released: Vec<IpAddr>,
    report: RestoreReport,
}

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
            released: Vec::new(),
            report: RestoreReport::default(),
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
        let affected: Vec<IpAddr> = if moved {
            self.records
                .iter()
                .filter(|(_, r)| r.entry.applied.hosts_deny)
                .map(|(a, _)| *a)
                .collect()
        } else {
            Vec::new()
        };
        for addr in &affected {
            let r = &self.records[addr];
            let target = Self::target(&r.entry);
            let only = Applied {
                hosts_deny: true,
                ..Applied::default()
            };
            let left = self
                .actions
                .undo(sets, &target, &only, End::SetGone, now)
                .map(|u| u.left.hosts_deny)
                .unwrap_or(true);
            if let Some(r) = self.records.get_mut(addr) {
                r.entry.applied.hosts_deny = left;
            }
            self.changed(*addr, now);
        }
        self.policy = Policy::of(cfg);
        self.config = cfg.clone();
        let lock = self.file.as_ref().map(|f| f.path().to_path_buf());
        self.actions.reconfigure(cfg, &cfg.table, lock);
        for addr in affected {
            let r = &self.records[&addr];
            if r.ended {
                continue;
            }
            let target = Self::target(&r.entry);
            let already = r.entry.applied.clone();
            let applied = self.actions.ensure(sets, &target, &already, false, now);
            if let Some(r) = self.records.get_mut(&addr) {
                r.entry.applied = applied;
            }
        }
    }

    fn changed(&mut self, addr: IpAddr, now: Instant) {
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

    /// Bans in force (any block mode), for the service manager's status.
    pub fn active_bans(&self) -> usize {
        self.records.values().filter(|r| !r.ended).count()
    }

    /// Is `addr` banned (in any block mode)?
    pub fn is_banned(&self, addr: IpAddr) -> bool {
        self.records.get(&addr).is_some_and(|r| !r.ended)
    }

    /// Addresses whose ban ended or was lifted since the last call: the
    /// detector forgets them.
    pub fn released(&mut self) -> Vec<IpAddr> {
        std::mem::take(&mut self.released)
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
        let prev = self.records.get(&ev.addr);
        let (length, repeat, offence) = self.policy.length_for(prev);
        // What is still in force: a live ban's actions, or what an ended
        // one could not undo (ours, so found again rather than added).
        let already = prev.map(|r| r.entry.applied.clone()).unwrap_or_default();
        let target = Target {
            addr: ev.addr,
            port: ev.port,
            mode: ev.mode.to_string(),
            length,
        };
        let out = self.actions.ban(sets, &target, mode, &already, now);
        if out.applied.is_empty() {
            return BanResult::Failed {
                set_error: out.set_error,
            };
        }
        let now_ms = wall_ms();
        let addr = ev.addr;
        if offence {
            log_notice!(
                "attackalert: Host {addr} is a repeat offender (ban {repeat}); banned for {}",
                format_duration(length)
            );
        }
        self.insert(
            Entry {
                addr,
                scan: ev.scan.key().to_string(),
                proto: Some(ev.scan.proto()),
                mode: ev.mode.to_string(),
                port: ev.port,
                banned_at: now_ms,
                expires_at: now_ms.saturating_add(ms(length)),
                length: ms(length),
                repeat,
                applied: out.applied,
            },
            now,
            length,
        );
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

    fn insert(&mut self, entry: Entry, now: Instant, length: Duration) {
        let addr = entry.addr;
        self.heap.push(Reverse((now + length, addr)));
        self.records.insert(
            addr,
            Record {
                entry,
                since: now,
                until: now + length,
                ended: false,
            },
        );
        self.changed(addr, now);
    }

    /// `nftsentry block ADDR --for LENGTH`: the kernel element, then the
    /// hosts.deny line and native route where configured (no command: there
    /// is no detection to report).
    pub fn block(
        &mut self,
        sets: &mut dyn BanSets,
        addr: IpAddr,
        length: Duration,
        now: Instant,
    ) -> Result<()> {
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
        let mut applied = self.actions.ensure(sets, &target, &already, false, now);
        applied.set = true;
        let now_ms = wall_ms();
        self.insert(
            Entry {
                addr,
                scan: "manual".into(),
                proto: None,
                mode: MANUAL_MODE.into(),
                port: 0,
                banned_at: now_ms,
                expires_at: now_ms.saturating_add(ms(length)),
                length: ms(length),
                repeat,
                applied,
            },
            now,
            length,
        );
        Ok(())
    }

    /// `nftsentry unblock ADDR`: the kernel element removed (if the table is
    /// there), the route and hosts.deny line undone, the address forgotten
    /// (also as a repeat offender). Ok(false) if it was not banned.
    pub fn unblock(&mut self, sets: &mut dyn BanSets, addr: IpAddr, now: Instant) -> Result<bool> {
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
        let mut active = 0;
        for (addr, r) in records {
            if !r.ended {
                active += 1;
                self.released.push(addr);
            }
            let target = Self::target(&r.entry);
            let undone = self
                .actions
                .undo(sets, &target, &r.entry.applied, End::SetGone, now)?;
            if undone.left.needs_undo() {
                self.keep_ended(r.entry, undone.left, now, now + RETRY);
            }
            self.changed(addr, now);
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
        self.records.insert(
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
        while let Some(Reverse((until, addr))) = self.heap.peek().copied() {
            if until > now {
                break;
            }
            self.heap.pop();
            self.due(sets, addr, until, now);
        }
        // SIGCHLD can coalesce or be missed; reaping also here is cheap.
        self.actions.reap(now);
        let commands = self.actions.tick(now);
        let write = match self.file.as_mut() {
            Some(f) => {
                f.tick(now, self.records.values().map(|r| &r.entry));
                f.due().map(|t| t.saturating_duration_since(now))
            }
            None => None,
        };
        let next_ban = self
            .heap
            .peek()
            .map(|Reverse((t, _))| t.saturating_duration_since(now));
        [next_ban, commands, write].into_iter().flatten().min()
    }

    /// A heap entry for `addr` came due.
    fn due(&mut self, sets: &mut dyn BanSets, addr: IpAddr, until: Instant, now: Instant) {
        let Some(r) = self.records.get_mut(&addr) else {
            return;
        };
        // A renewed ban pushed a later entry; only the current one counts.
        if r.until != until {
            return;
        }
        if !r.ended {
            r.ended = true;
            log_info!("ban of {addr} expired");
            self.released.push(addr);
        }
        let target = Self::target(&r.entry);
        let applied = std::mem::take(&mut r.entry.applied);
        let left = match self
            .actions
            .undo(sets, &target, &applied, End::SetGone, now)
        {
            Ok(u) => u.left,
            Err(_) => applied,
        };
        let r = self.records.get_mut(&addr).expect("looked up above");
        if left.needs_undo() {
            r.entry.applied = left;
            r.until = now + RETRY;
            self.heap.push(Reverse((r.until, addr)));
        } else {
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
            self.records.insert(addr, r);
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

    /// The in-memory record of an entry read from the file at `now`.
    fn record_for(&self, mut e: Entry, now: Instant, now_ms: u64) -> Record {
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
    pub fn restore(
        &mut self,
        sets: &mut dyn BanSets,
        kernel: Option<Vec<Ban>>,
        now: Instant,
    ) -> Result<Vec<Restored>> {
        let now_ms = wall_ms();
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
        let mut report = RestoreReport::default();
        for (addr, e) in file {
            // Written again whether kept or not: the file holds only what
            // the restore kept, in the current form.
            self.changed(addr, now);
            let mut r = self.record_for(e, now, now_ms);
            if !r.ended {
                if r.entry.applied.set {
                    report.from_file += 1;
                }
            } else if !r.entry.applied.is_empty() {
                if r.entry.applied.needs_undo() {
                    report.undone += 1;
                }
                let target = Self::target(&r.entry);
                let applied = std::mem::take(&mut r.entry.applied);
                r.entry.applied =
                    match self
                        .actions
                        .undo(sets, &target, &applied, End::SetGone, now)
                    {
                        Ok(u) => u.left,
                        Err(_) => applied,
                    };
                if !r.entry.applied.needs_undo() {
                    r.until = now + self.policy.memory(&r.entry, now_ms);
                }
            }
            let keep = !r.ended || r.entry.applied.needs_undo() || r.until > now;
            if keep {
                self.records.insert(addr, r);
            }
        }
        for b in kernel.unwrap_or_default() {
            let addr = crate::table::bans::canonical(b.addr);
            let timeout = b.timeout.unwrap_or(self.policy.ban_time);
            let remaining = b.expires_in.unwrap_or(timeout).min(timeout);
            if remaining.is_zero() {
                continue;
            }
            let until = now + remaining;
            let expires_at = now_ms.saturating_add(ms(remaining));
            match self.records.get_mut(&addr) {
                Some(r) if !r.ended => {
                    // The kernel's clock is the one that counts.
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
                    let repeat = prev.map_or(1, |r| r.entry.repeat.max(1));
                    let banned_at = expires_at.saturating_sub(ms(timeout));
                    let entry = Entry {
                        addr,
                        scan: "adopted".into(),
                        proto: None,
                        mode: MANUAL_MODE.into(),
                        port: 0,
                        banned_at,
                        expires_at,
                        length: ms(timeout),
                        repeat,
                        applied: Applied {
                            set: true,
                            ..prev.map(|r| r.entry.applied.clone()).unwrap_or_default()
                        },
                    };
                    let since = now
                        .checked_sub(timeout.saturating_sub(remaining))
                        .unwrap_or(now);
                    self.records.insert(
                        addr,
                        Record {
                            entry,
                            since,
                            until,
                            ended: false,
                        },
                    );
                }
            }
        }
        // What goes back into the kernel, per family at most set_size (the
        // longest left first): more would fail the whole transaction.
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
        live.sort_by_key(|b| (b.addr.is_ipv6(), Reverse(b.remaining), b.addr));
        let mut out = Vec::with_capacity(live.len());
        let (mut n4, mut n6) = (0u32, 0u32);
        for b in live {
            let n = if b.addr.is_ipv4() { &mut n4 } else { &mut n6 };
            if *n < self.policy.set_size {
                *n += 1;
                out.push(b);
            } else {
                report.dropped += 1;
                if let Some(r) = self.records.remove(&b.addr) {
                    let target = Self::target(&r.entry);
                    let _ = self
                        .actions
                        .undo(sets, &target, &r.entry.applied, End::SetGone, now);
                }
            }
        }
        if report.dropped > 0 {
            log_error!(
                "adminalert: ERROR: {} bans not restored: more than set_size ({}) per address family",
                report.dropped,
                self.policy.set_size
            );
        }
        let addrs: Vec<(IpAddr, Instant)> =
            self.records.iter().map(|(a, r)| (*a, r.until)).collect();
        for (addr, until) in addrs {
            self.heap.push(Reverse((until, addr)));
            self.changed(addr, now);
        }
        self.report = report;
        Ok(out)
    }

    /// After the table is in: puts back missing routes and hosts.deny lines
    /// of live bans, writes the state file, logs what was restored.
    pub fn after_install(&mut self, sets: &mut dyn BanSets, now: Instant) {
        let live: Vec<IpAddr> = self
            .records
            .iter()
            .filter(|(_, r)| !r.ended && r.entry.applied.set)
            .map(|(a, _)| *a)
            .collect();
        for addr in live {
            let r = &self.records[&addr];
            let target = Self::target(&r.entry);
            let adopted = r.entry.scan == "adopted";
            let already = r.entry.applied.clone();
            let applied = self.actions.ensure(sets, &target, &already, adopted, now);
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
        self.flush_file();
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
            f.flush(self.records.values().map(|r| &r.entry));
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
    fn ban_on(&self, addr: IpAddr, proto: Proto, now: Instant) -> Option<BanInForce> {
        let r = self.records.get(&addr).filter(|r| !r.ended)?;
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
mod tests {
    //! The ledger over a fake kernel set: no root, no netlink.

    use super::*;
    use crate::detect::ScanType;
    use std::collections::HashMap;

    /// The kernel's ban sets, in memory.
    #[derive(Default)]
    struct FakeSets(HashMap<IpAddr, Duration>);

    impl BanSets for FakeSets {
        fn add(&mut self, addr: IpAddr, timeout: Duration) -> Result<()> {
            self.0.insert(addr, timeout);
            Ok(())
        }
        fn contains(&mut self, addr: IpAddr) -> Result<bool> {
            Ok(self.0.contains_key(&addr))
        }
        fn remove(&mut self, addr: IpAddr) -> Result<bool> {
            Ok(self.0.remove(&addr).is_some())
        }
        fn flush(&mut self) -> Result<Option<usize>> {
            let n = self.0.len();
            self.0.clear();
            Ok(Some(n))
        }
        fn list(&mut self) -> Result<Vec<Ban>> {
            Ok(self
                .0
                .iter()
                .map(|(a, t)| Ban {
                    addr: *a,
                    timeout: Some(*t),
                    expires_in: Some(*t),
                })
                .collect())
        }
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nftsentry-ledger-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn config(dir: Option<&std::path::Path>) -> Config {
        Config {
            state_file: dir.map(|d| d.join("state")),
            history_file: None,
            ban_time: Duration::from_secs(2),
            ban_time_factor: 3,
            ban_time_max: Duration::from_secs(30),
            ..Config::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn evidence(addr: &str, scan: ScanType) -> Evidence {
        Evidence {
            addr: ip(addr),
            scan,
            port: 1,
            mode: "stcp",
        }
    }

    fn record(length_ms: u64, repeat: u32, ended: bool) -> Record {
        let now = Instant::now();
        Record {
            entry: Entry {
                addr: ip("192.0.2.2"),
                scan: "syn".into(),
                proto: Some(Proto::Tcp),
                mode: "stcp".into(),
                port: 1,
                banned_at: 0,
                expires_at: 0,
                length: length_ms,
                repeat,
                applied: Applied::default(),
            },
            since: now,
            until: now,
            ended,
        }
    }

    #[test]
    fn repeat_offenders_escalate_to_the_cap() {
        let p = Policy::of(&config(None));
        let s = Duration::from_secs;
        assert_eq!(p.length_for(None), (s(2), 1, false));
        assert_eq!(p.length_for(Some(&record(2000, 1, true))), (s(6), 2, true));
        assert_eq!(
            p.length_for(Some(&record(18000, 3, true))),
            (s(30), 4, true)
        );
        // A shorter (manual) ban escalates from its length, never below ban_time.
        assert_eq!(p.length_for(Some(&record(500, 1, true))), (s(2), 2, true));
        // A ban still in force is renewed as it was.
        assert_eq!(
            p.length_for(Some(&record(6000, 2, false))),
            (s(6), 2, false)
        );
        // Without escalation the count still goes up.
        let cfg = Config {
            ban_time_factor: 1,
            ..config(None)
        };
        let p = Policy::of(&cfg);
        assert_eq!(p.length_for(Some(&record(2000, 4, true))), (s(2), 5, true));
    }

    #[test]
    fn a_ban_is_in_the_set_and_the_ledger_until_it_ends() {
        let mut l = Ledger::new(&config(None), true);
        let mut sets = FakeSets::default();
        let t0 = Instant::now();
        let r = l.ban(
            &mut sets,
            &evidence("192.0.2.2", ScanType::TcpSynNormal),
            t0,
        );
        assert!(matches!(r, BanResult::Banned { .. }), "{r:?}");
        assert_eq!(sets.0[&ip("192.0.2.2")], Duration::from_secs(2));
        assert!(l.is_banned(ip("192.0.2.2")));
        let b = l
            .ban_on(ip("192.0.2.2"), Proto::Tcp, t0 + Duration::from_secs(1))
            .unwrap();
        assert_eq!(
            b,
            BanInForce {
                age: Duration::from_secs(1),
                in_kernel: true,
                upgradable: false
            }
        );
        assert_eq!(l.kernel_bans().len(), 1);
        // The kernel expires the element; the ledger's timer ends the ban.
        sets.0.clear();
        let next = l.tick(&mut sets, t0 + Duration::from_secs(3));
        assert!(!l.is_banned(ip("192.0.2.2")));
        assert_eq!(l.released(), vec![ip("192.0.2.2")]);
        // Remembered as a repeat offender until ban_time_max after the end.
        assert!(next.is_some());
        let again = l.ban(
            &mut sets,
            &evidence("192.0.2.2", ScanType::TcpSynNormal),
            t0,
        );
        assert!(
            matches!(again, BanResult::Banned { length, .. } if length == Duration::from_secs(6))
        );
    }

    #[test]
    fn block_unblock_and_flush_go_through_the_same_ledger() {
        let mut l = Ledger::new(&config(None), true);
        let mut sets = FakeSets::default();
        let t0 = Instant::now();
        l.block(&mut sets, ip("198.51.100.7"), Duration::from_secs(60), t0)
            .unwrap();
        l.ban(&mut sets, &evidence("2001:db8::7", ScanType::Udp), t0);
        assert_eq!(l.active_bans(), 2);
        assert!(l.unblock(&mut sets, ip("198.51.100.7"), t0).unwrap());
        assert!(!sets.0.contains_key(&ip("198.51.100.7")));
        assert!(!l.unblock(&mut sets, ip("198.51.100.7"), t0).unwrap());
        assert_eq!(l.released(), vec![ip("198.51.100.7")]);
        assert_eq!(l.flush(&mut sets, t0).unwrap(), 1);
        assert_eq!(l.active_bans(), 0);
        assert!(sets.0.is_empty());
        assert_eq!(l.released(), vec![ip("2001:db8::7")]);
    }

    #[test]
    fn log_mode_records_nothing() {
        let dir = tempdir("log");
        let mut cfg = config(Some(&dir));
        cfg.udp.block_mode = BlockMode::Log;
        let mut l = Ledger::new(&cfg, true);
        let mut sets = FakeSets::default();
        let res = l.ban(
            &mut sets,
            &evidence("192.0.2.9", ScanType::Udp),
            Instant::now(),
        );
        assert!(matches!(res, BanResult::LogOnly));
        assert!(sets.0.is_empty());
        assert!(!l.is_banned(ip("192.0.2.9")));
        l.flush_file();
        assert!(!dir.join("state").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn entry(addr: &str, expires_in_ms: i64, set: bool) -> Entry {
        let now = wall_ms() as i64;
        Entry {
            addr: addr.parse().unwrap(),
            scan: "syn".into(),
            proto: Some(Proto::Tcp),
            mode: "stcp".into(),
            port: 1,
            banned_at: (now - 1000) as u64,
            expires_at: (now + expires_in_ms) as u64,
            length: 60_000,
            repeat: 1,
            applied: Applied {
                set,
                command: !set,
                ..Applied::default()
            },
        }
    }

    #[test]
    fn restore_merges_the_file_and_a_surviving_table() {
        let dir = tempdir("restore");
        let cfg = Config {
            ban_time_factor: 1,
            ..config(Some(&dir))
        };
        let live = entry("192.0.2.2", 30_000, true);
        let ended = entry("192.0.2.3", -1_000, true);
        let command_only = entry("2001:db8::3", 30_000, false);
        let both = entry("192.0.2.4", 30_000, true);
        state_file::save(&dir.join("state"), [&live, &ended, &command_only, &both]).unwrap();
        let kernel = vec![
            // Also in the file: the kernel's time wins.
            Ban {
                addr: both.addr,
                timeout: Some(Duration::from_secs(60)),
                expires_in: Some(Duration::from_secs(10)),
            },
            // Only in the kernel: adopted.
            Ban {
                addr: ip("2001:db8::9"),
                timeout: Some(Duration::from_secs(100)),
                expires_in: Some(Duration::from_secs(40)),
            },
        ];
        let mut l = Ledger::new(&cfg, true);
        let mut sets = FakeSets::default();
        let now = Instant::now();
        let back = l.restore(&mut sets, Some(kernel), now).unwrap();
        let by: HashMap<IpAddr, Restored> = back.iter().map(|b| (b.addr, *b)).collect();
        assert_eq!(by.len(), 3, "{back:?}");
        let near = |d: Duration, secs: u64| d.as_millis().abs_diff(u128::from(secs) * 1000) < 1500;
        assert!(near(by[&live.addr].remaining, 30), "{:?}", by[&live.addr]);
        assert_eq!(by[&live.addr].timeout, Duration::from_secs(60));
        assert!(near(by[&both.addr].remaining, 10), "{:?}", by[&both.addr]);
        let adopted = ip("2001:db8::9");
        assert!(near(by[&adopted].remaining, 40));
        assert_eq!(by[&adopted].timeout, Duration::from_secs(100));
        // The ended ban is gone (no escalation to remember it for); the
        // command-only one is still a ban, without a kernel element.
        assert!(!l.is_banned(ended.addr));
        assert!(l.is_banned(command_only.addr));
        assert!(!by.contains_key(&command_only.addr));
        l.after_install(&mut sets, now);
        let (file, problems) = state_file::load(&dir.join("state")).unwrap();
        assert!(problems.is_empty());
        let mut addrs: Vec<String> = file.keys().map(|a| a.to_string()).collect();
        addrs.sort();
        assert_eq!(
            addrs,
            ["192.0.2.2", "192.0.2.4", "2001:db8::3", "2001:db8::9"]
        );
        assert_eq!(file[&adopted].scan, "adopted");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_first_release_entry_gets_the_mode_the_config_would_give_it() {
        let dir = tempdir("mode");
        let mut cfg = config(Some(&dir));
        cfg.tcp.mode = crate::config::Mode::ADVANCED;
        let mut old = entry("192.0.2.2", 30_000, true);
        old.mode = String::new();
        state_file::save(&dir.join("state"), [&old]).unwrap();
        let mut l = Ledger::new(&cfg, true);
        l.restore(&mut FakeSets::default(), None, Instant::now())
            .unwrap();
        assert_eq!(l.records[&old.addr].entry.mode, "atcp");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
