//! respond: the life of a ban. Which actions a detection gets (block mode
//! per protocol), how long the ban lasts (repeat offenders escalate), the
//! history line it earns, when it ends (a timer per ban) and what is undone
//! then, and the state file that carries all of it across restarts.
//!
//! Start-up (`restore`, then `after_install`): the state file's ended bans
//! are undone (route, hosts.deny line); its live bans, and those of a table
//! that survived the last run, go back into the kernel set with the time
//! they have left, in the same transaction that installs the table; their
//! route and hosts.deny line are put back if missing.
//!
//! The command line changes bans too (`nftsentry block`, `unblock`,
//! `flush`: functions at the end). Both sides change the state file and
//! hosts.deny only under the state file's lock, and the daemon reloads the
//! file when it finds that someone else replaced it (before it writes, and
//! before it acts on a ban or an expiry): a ban the command line lifted is
//! then forgotten, one it added is taken over. Until then the daemon's
//! view can lag; the actions were already undone by the command line, and
//! undoing a route or line that is gone is harmless.
//!
//! Knows nothing of packets or sockets other than through `bans` and
//! `actions`.

pub mod actions;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{BlockMode, Config, Proto, RouteMode};
use crate::detect::ScanType;
use crate::error::{Error, Result};
use crate::journal::history;
use crate::journal::state::{self, Applied, Entries, Entry, FileId};
use crate::kernel::nft::NftSocket;
use crate::logging;
use crate::respond::actions::{Actions, Target};
use crate::table::bans::{self, Ban};
use crate::table::ruleset;

/// State file writes take at most 1/50 of the time: after a write that took
/// t, the next waits 50 t (20,000 bans: 10-20 ms, so 0.5-1 s), and at most
/// MAX_WRITE_DELAY, which bounds how long a change can wait for the disk
/// (a slow fsync must not leave bans unrecorded for long).
const WRITE_DELAY_FACTOR: u32 = 50;
const MAX_WRITE_DELAY: Duration = Duration::from_secs(5);
/// Damaged state file lines logged one by one at start; a file of garbage
/// (a disk error, the wrong file) must not flood the log with a line each.
const MAX_PROBLEMS_LOGGED: usize = 20;
/// After a failed write or undo, the next try.
const RETRY: Duration = Duration::from_secs(60);
/// File errors are logged at most this often.
const ERROR_REPORT_INTERVAL: Duration = Duration::from_secs(60);

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

/// A detection that acts.
#[derive(Clone, Debug)]
pub struct Trigger {
    pub addr: IpAddr,
    pub scan: ScanType,
    pub proto: Proto,
    pub port: u16,
    /// $MODE$ for templates: PortSentry's detection type ("stcp", "sudp").
    pub mode: String,
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

/// What `Responder::ban` did.
#[derive(Debug)]
pub enum BanResult {
    /// Block mode "log": nothing but the alert.
    LogOnly,
    /// At least one action took effect: the source is banned.
    Banned {
        length: Duration,
        history: Option<HistoryDue>,
        set_error: Option<Error>,
    },
    /// Nothing took effect.
    Failed { set_error: Option<Error> },
}

/// A ban to put back into the kernel set at start.
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

/// A state file write handed to the writer thread: the lock taken (and
/// the file read back) by the loop, the text it rendered.
struct Job {
    lock: state::Lock,
    path: PathBuf,
    text: String,
}

/// The thread that fsyncs and renames state files, so a probe never waits
/// behind the disk (measured: a synchronous write put the probe->ban p99
/// at 2.5 ms, against 0.3 ms without a state file).
struct Writer {
    jobs: std::sync::mpsc::Sender<Job>,
    /// Each write's result and how long the disk took.
    done: std::sync::mpsc::Receiver<(std::io::Result<FileId>, Duration)>,
    /// The records each write in flight carried as changed: if it fails
    /// they are changed again (the file does not have them).
    in_flight: std::collections::VecDeque<HashSet<IpAddr>>,
}

impl Writer {
    fn start() -> std::io::Result<Writer> {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let (tx, done) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || {
                for job in rx {
                    let t = Instant::now();
                    let r = state::save(&job.path, &job.text);
                    // The result before the lock: whoever takes the lock
                    // next finds it waiting, with the file's new identity.
                    let sent = tx.send((r, t.elapsed()));
                    drop(job.lock);
                    if sent.is_err() {
                        break;
                    }
                }
            })?;
        Ok(Writer {
            jobs,
            done,
            in_flight: Default::default(),
        })
    }
}

pub struct Responder {
    table: String,
    ban_time: Duration,
    factor: u32,
    max: Duration,
    set_size: u32,
    modes: [BlockMode; 2],
    pub actions: Actions,
    history: Option<PathBuf>,
    state: Option<PathBuf>,
    /// By address: the state file's order.
    records: BTreeMap<IpAddr, Record>,
    /// Each record's state file line, as last written: only changed
    /// records are rendered again (20,000 bans, measured: a write after one
    /// change 10-20 ms, 30 ms when every line is rendered).
    lines: HashMap<IpAddr, String>,
    heap: BinaryHeap<Reverse<(Instant, IpAddr)>>,
    /// Changed since the last write: ours wins over the file for these.
    dirty: HashSet<IpAddr>,
    /// The file as we last wrote or read it.
    written: Option<FileId>,
    /// No write before this (throttle); `None`: no write pending.
    write_at: Option<Instant>,
    not_before: Option<Instant>,
    /// Writes the state file off the event loop once the daemon allows a
    /// thread (after dropping privileges); `None`: writes are synchronous.
    writer: Option<Writer>,
    released: Vec<IpAddr>,
    last_error_report: Option<Instant>,
    report: RestoreReport,
}

fn proto_index(p: Proto) -> usize {
    match p {
        Proto::Tcp => 0,
        Proto::Udp => 1,
    }
}

impl Responder {
    pub fn new(cfg: &Config) -> Responder {
        Responder {
            table: cfg.table.clone(),
            ban_time: cfg.ban_time,
            factor: cfg.ban_time_factor,
            max: cfg.ban_time_max,
            set_size: cfg.set_size,
            modes: [cfg.tcp.block_mode, cfg.udp.block_mode],
            actions: Actions::new(cfg, true),
            history: cfg.history_file.clone(),
            state: cfg.state_file.clone(),
            records: BTreeMap::new(),
            lines: HashMap::new(),
            heap: BinaryHeap::new(),
            dirty: HashSet::new(),
            written: None,
            write_at: None,
            not_before: None,
            writer: None,
            released: Vec::new(),
            last_error_report: None,
            report: RestoreReport::default(),
        }
    }

    /// New settings (reload): ban times, escalation, block modes, actions
    /// and the history file. The table and the state file stay (a reload
    /// refuses to change them); bans in force keep their own length.
    pub fn reconfigure(&mut self, cfg: &Config) {
        self.ban_time = cfg.ban_time;
        self.factor = cfg.ban_time_factor;
        self.max = cfg.ban_time_max;
        self.set_size = cfg.set_size;
        self.modes = [cfg.tcp.block_mode, cfg.udp.block_mode];
        self.actions.reconfigure(cfg);
        self.history = cfg.history_file.clone();
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

    /// The block mode for a protocol.
    pub fn block_mode(&self, proto: Proto) -> BlockMode {
        self.modes[proto_index(proto)]
    }

    /// Bans in force (any block mode), for the service manager's status.
    pub fn active_bans(&self) -> usize {
        self.records.values().filter(|r| !r.ended).count()
    }

    /// Is `addr` banned (in any block mode)?
    pub fn is_banned(&self, addr: IpAddr) -> bool {
        self.records.get(&addr).is_some_and(|r| !r.ended)
    }

    /// Should a probe from `addr` on `proto` count afresh although `addr` is
    /// banned? Yes when the ban is command-only (block mode "command" on
    /// the other protocol) and `proto` is in block mode: PortSentry's TCP
    /// and UDP processes blocked independently.
    pub fn upgrades(&self, addr: IpAddr, proto: Proto) -> bool {
        self.block_mode(proto) == BlockMode::Block
            && self
                .records
                .get(&addr)
                .is_some_and(|r| !r.ended && !r.entry.applied.set)
    }

    /// Is `addr` banned in the kernel set since longer than `age`? Then a
    /// probe from it means the element is gone (lifted or flushed).
    pub fn kernel_ban_older_than(&self, addr: IpAddr, now: Instant, age: Duration) -> bool {
        self.records.get(&addr).is_some_and(|r| {
            !r.ended && r.entry.applied.set && now.saturating_duration_since(r.since) > age
        })
    }

    /// Addresses whose ban ended or was lifted since the last call: the
    /// detector forgets them.
    pub fn released(&mut self) -> Vec<IpAddr> {
        std::mem::take(&mut self.released)
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

    /// Acts on a detection. `set` adds `addr` to the kernel set for the
    /// given time.
    pub fn ban(
        &mut self,
        t: &Trigger,
        now: Instant,
        set: &mut dyn FnMut(IpAddr, Duration) -> Result<()>,
    ) -> BanResult {
        let mode = self.block_mode(t.proto);
        if mode == BlockMode::Log {
            logging::notice(&format!(
                "attackalert: Ignoring {} response per configuration file setting.",
                t.scan.protocol()
            ));
            return BanResult::LogOnly;
        }
        self.sync_external();
        let prev = self.records.get(&t.addr);
        let (length, repeat, offence) = self.length_for(prev);
        // What is still in force: a live ban's actions, or what an ended
        // one could not undo (ours, so found again rather than added).
        let already = prev.map(|r| r.entry.applied.clone()).unwrap_or_default();
        let target = Target {
            addr: t.addr,
            port: t.port,
            mode: t.mode.clone(),
        };
        let label = format!(
            "nftables set {} in table inet {} for {}",
            bans::set_for(&t.addr),
            self.table,
            ruleset::nft_duration(length)
        );
        let addr = t.addr;
        let out = self.actions.ban(
            &target,
            mode,
            &already,
            &mut || set(addr, length),
            &label,
            now,
        );
        if out.applied.is_empty() {
            return BanResult::Failed {
                set_error: out.set_error,
            };
        }
        let now_ms = wall_ms();
        let entry = Entry {
            addr,
            scan: t.scan.key().to_string(),
            proto: Some(t.proto),
            port: t.port,
            banned_at: now_ms,
            expires_at: now_ms.saturating_add(ms(length)),
            length: ms(length),
            repeat,
            applied: out.applied,
        };
        if offence {
            logging::notice(&format!(
                "attackalert: Host {addr} is a repeat offender (ban {repeat}); banned for {}",
                ruleset::nft_duration(length)
            ));
        }
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
        self.dirty.insert(addr);
        self.schedule_write(now);
        BanResult::Banned {
            length,
            history: self.history.as_ref().map(|_| HistoryDue {
                epoch: (now_ms / 1000) as i64,
                port: t.port,
                protocol: t.scan.protocol(),
            }),
            set_error: out.set_error,
        }
    }

    /// Writes the history line of a ban, naming the host `name`.
    pub fn write_history(&mut self, name: &str, ip: IpAddr, h: &HistoryDue) {
        let Some(path) = &self.history else {
            return;
        };
        let line = history::line_at(h.epoch, name, ip, h.port, h.protocol);
        if let Err(e) = history::append(path, &line) {
            let msg = format!(
                "adminalert: ERROR: cannot write history file {}: {e}",
                path.display()
            );
            self.report_error(&msg);
        }
    }

    fn report_error(&mut self, msg: &str) {
        let now = Instant::now();
        if self
            .last_error_report
            .is_none_or(|t| now.duration_since(t) >= ERROR_REPORT_INTERVAL)
        {
            self.last_error_report = Some(now);
            logging::error(msg);
        }
    }

    /// Reaps children that ended (SIGCHLD).
    pub fn on_child_exit(&mut self, now: Instant) {
        self.actions.reap(now);
    }

    /// Ends bans that are due, times commands out, writes the state file
    /// when due. Returns the time until the next thing to do.
    pub fn tick(&mut self, now: Instant) -> Option<Duration> {
        if self
            .heap
            .peek()
            .is_some_and(|Reverse((until, _))| *until <= now)
        {
            self.sync_external();
        }
        while let Some(Reverse((until, addr))) = self.heap.peek().copied() {
            if until > now {
                break;
            }
            self.heap.pop();
            self.due(addr, until, now);
        }
        // SIGCHLD can coalesce or be missed; reaping also here is cheap.
        self.actions.reap(now);
        let commands = self.actions.tick(now);
        if self.write_at.is_some_and(|t| t <= now) {
            self.write(now);
        }
        let next_ban = self
            .heap
            .peek()
            .map(|Reverse((t, _))| t.saturating_duration_since(now));
        let next_write = self.write_at.map(|t| t.saturating_duration_since(now));
        [next_ban, commands, next_write].into_iter().flatten().min()
    }

    /// A heap entry for `addr` came due.
    fn due(&mut self, addr: IpAddr, until: Instant, now: Instant) {
        let Some(r) = self.records.get_mut(&addr) else {
            return;
        };
        // A renewed ban pushed a later entry; only the current one counts.
        if r.until != until {
            return;
        }
        if !r.ended {
            r.ended = true;
            logging::info(&format!("ban of {addr} expired"));
            self.released.push(addr);
        }
        let applied = std::mem::take(&mut r.entry.applied);
        let left = self.actions.undo(addr, &applied);
        let r = self.records.get_mut(&addr).expect("looked up above");
        self.dirty.insert(addr);
        if left.needs_undo() {
            r.entry.applied = left;
            r.until = now + RETRY;
            self.heap.push(Reverse((r.until, addr)));
        } else if self.factor > 1 {
            // Remembered for escalation until ban_time_max after the end.
            let forget = Duration::from_millis(r.entry.expires_at)
                .saturating_add(self.max)
                .saturating_sub(Duration::from_millis(wall_ms()));
            if forget.is_zero() {
                self.records.remove(&addr);
            } else {
                r.until = now + forget;
                self.heap.push(Reverse((r.until, addr)));
            }
        } else {
            self.records.remove(&addr);
        }
        self.schedule_write(now);
    }

    fn schedule_write(&mut self, now: Instant) {
        if self.state.is_none() {
            self.dirty.clear();
            return;
        }
        if self.write_at.is_none() {
            self.write_at = Some(self.not_before.map_or(now, |t| t.max(now)));
        }
    }

    /// Takes over, now, what `block`, `unblock` or `flush` of the command
    /// line wrote to the state file (the daemon runs them for the control
    /// socket the same way).
    pub fn take_over(&mut self) {
        self.sync_external();
    }

    /// Bans lifted by `unblock` (`Some`) or `flush` (`None`) whose actions
    /// were already undone: forgotten now, also without a state file to
    /// learn it from.
    pub fn lifted(&mut self, addrs: Option<&[IpAddr]>) {
        let gone: Vec<IpAddr> = match addrs {
            Some(a) => a.to_vec(),
            None => self.records.keys().copied().collect(),
        };
        for addr in gone {
            self.lines.remove(&addr);
            self.dirty.remove(&addr);
            if let Some(r) = self.records.remove(&addr) {
                if !r.ended {
                    self.released.push(addr);
                }
            }
        }
    }

    /// Writes the state file now if anything changed, and waits for it (at
    /// exit, and before a command of the control socket writes it too).
    pub fn flush(&mut self) {
        self.collect_writes(true);
        if self.write_at.is_some() {
            let writer = self.writer.take();
            self.write(Instant::now());
            self.writer = writer;
        }
    }

    /// From now on state files are written by a thread of their own. The
    /// daemon calls this after dropping privileges (capabilities are per
    /// thread, and the drop refuses a second thread).
    pub fn start_writer(&mut self) {
        if self.state.is_none() || self.writer.is_some() {
            return;
        }
        match Writer::start() {
            Ok(w) => self.writer = Some(w),
            Err(e) => logging::warning(&format!(
                "adminalert: WARNING: no state writer thread ({e}); the state file is written by the event loop"
            )),
        }
    }

    /// Results of writes the thread finished; with `wait`, all of them.
    fn collect_writes(&mut self, wait: bool) {
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        let mut results = Vec::new();
        while !w.in_flight.is_empty() {
            let r = if wait {
                match w.done.recv() {
                    Ok(r) => r,
                    Err(_) => break,
                }
            } else {
                match w.done.try_recv() {
                    Ok(r) => r,
                    Err(_) => break,
                }
            };
            let dirty = w.in_flight.pop_front().expect("in flight");
            results.push((r, dirty));
        }
        for ((r, cost), dirty) in results {
            self.wrote(r, cost, Instant::now(), Some(dirty));
        }
    }

    /// Book-keeping after a write: `dirty` is what an asynchronous write
    /// carried (changed again if it failed).
    fn wrote(
        &mut self,
        result: std::io::Result<FileId>,
        cost: Duration,
        now: Instant,
        dirty: Option<HashSet<IpAddr>>,
    ) {
        match result {
            Ok(id) => {
                self.written = Some(id);
                // The loop does not wait for the disk any more, but the
                // disk is still spared: 1/50 of the time at most.
                self.not_before = Some(now + (cost * WRITE_DELAY_FACTOR).min(MAX_WRITE_DELAY));
            }
            Err(e) => {
                let path = self.state.clone().unwrap_or_default();
                let msg = format!(
                    "adminalert: ERROR: cannot write state file {}: {e} (bans go on; trying again in {}s)",
                    path.display(),
                    RETRY.as_secs()
                );
                self.report_error(&msg);
                if let Some(d) = dirty {
                    self.dirty.extend(d);
                }
                self.write_at = Some(now + RETRY);
            }
        }
    }

    fn write(&mut self, now: Instant) {
        let Some(path) = self.state.clone() else {
            return;
        };
        self.collect_writes(false);
        if self.writer.is_some() {
            // The loop takes the lock, reads what the command line may have
            // written, renders; the thread writes and releases the lock.
            let started = Instant::now();
            let job = (|| -> std::io::Result<Job> {
                let lock = state::lock(&path)?;
                // The last write's identity is known now (see Writer):
                // the file need not be read back.
                self.collect_writes(false);
                self.sync_locked(&path);
                let text = self.render();
                Ok(Job {
                    lock,
                    path: path.clone(),
                    text,
                })
            })();
            match job {
                Ok(job) => {
                    let w = self.writer.as_mut().expect("writer");
                    if w.jobs.send(job).is_ok() {
                        w.in_flight.push_back(std::mem::take(&mut self.dirty));
                        self.write_at = None;
                        // Until the thread says how long it took.
                        self.not_before = Some(now + Duration::from_millis(50));
                        return;
                    }
                    // The thread is gone: write here from now on.
                    self.writer = None;
                }
                Err(e) => {
                    self.wrote(Err(e), started.elapsed(), now, None);
                    return;
                }
            }
        }
        let started = Instant::now();
        let result = (|| -> std::io::Result<FileId> {
            let _lock = state::lock(&path)?;
            self.sync_locked(&path);
            let text = self.render();
            state::save(&path, &text)
        })();
        match result {
            Ok(id) => {
                self.written = Some(id);
                self.dirty.clear();
                self.write_at = None;
                let cost = started.elapsed();
                self.not_before =
                    Some(Instant::now() + (cost * WRITE_DELAY_FACTOR).min(MAX_WRITE_DELAY));
            }
            Err(e) => {
                let msg = format!(
                    "adminalert: ERROR: cannot write state file {}: {e} (bans go on; trying again in {}s)",
                    path.display(),
                    RETRY.as_secs()
                );
                self.report_error(&msg);
                self.write_at = Some(now + RETRY);
            }
        }
    }

    /// The state file's text; lines of unchanged records come from the
    /// cache.
    fn render(&mut self) -> String {
        if self.lines.len() > self.records.len() {
            let records = &self.records;
            self.lines.retain(|a, _| records.contains_key(a));
        }
        let mut text = String::with_capacity(state::HEADER.len() + 160 * self.records.len());
        text.push_str(state::HEADER);
        for (addr, r) in &self.records {
            let line = match self.lines.get(addr) {
                Some(l) if !self.dirty.contains(addr) => l,
                _ => {
                    self.lines.insert(*addr, state::render_entry(&r.entry));
                    &self.lines[addr]
                }
            };
            text.push_str(line);
        }
        text
    }

    /// Takes over what someone else (the command line) wrote to the state
    /// file since we last wrote or read it.
    fn sync_external(&mut self) {
        let Some(path) = self.state.clone() else {
            return;
        };
        self.collect_writes(false);
        if state::file_id(&path).ok().flatten() == self.written {
            return;
        }
        match state::lock(&path) {
            Ok(_lock) => self.sync_locked(&path),
            Err(e) => {
                let msg = format!(
                    "adminalert: ERROR: cannot lock {}: {e}",
                    state::lock_path(&path).display()
                );
                self.report_error(&msg);
            }
        }
    }

    /// `sync_external` with the lock held.
    fn sync_locked(&mut self, path: &std::path::Path) {
        let id = state::file_id(path).ok().flatten();
        if id == self.written {
            return;
        }
        let (file, problems, id) = match state::load(path) {
            Ok(x) => x,
            Err(e) => {
                let msg = format!(
                    "adminalert: ERROR: cannot read state file {}: {e}",
                    path.display()
                );
                self.report_error(&msg);
                return;
            }
        };
        for p in problems {
            logging::error(&format!("adminalert: ERROR: state file {p}"));
        }
        self.written = id;
        let now = Instant::now();
        let now_ms = wall_ms();
        // Lifted by someone else: forget (they undid the actions).
        let gone: Vec<IpAddr> = self
            .records
            .keys()
            .filter(|a| !file.contains_key(a) && !self.dirty.contains(a))
            .copied()
            .collect();
        for addr in gone {
            self.lines.remove(&addr);
            if let Some(r) = self.records.remove(&addr) {
                if !r.ended {
                    logging::info(&format!(
                        "ban of {addr} lifted (state file changed by nftsentry unblock or flush)"
                    ));
                    self.released.push(addr);
                }
            }
        }
        // Added or changed by someone else: take over.
        for (addr, e) in file {
            if self.dirty.contains(&addr) {
                continue;
            }
            if self.records.get(&addr).is_some_and(|r| r.entry == e) {
                continue;
            }
            let was_banned = self.records.get(&addr).is_some_and(|r| !r.ended);
            self.lines.remove(&addr);
            let r = record_for(&e, now, now_ms, self.factor, self.max);
            if was_banned && r.ended {
                self.released.push(addr);
            }
            self.heap.push(Reverse((r.until, addr)));
            self.records.insert(addr, Record { entry: e, ..r });
        }
    }

    /// Reads the state file and merges the bans of a table that survived
    /// (`kernel`), undoes ended bans, and returns the live bans to put into
    /// the kernel set in the transaction that installs the table.
    pub fn restore(&mut self, kernel: Option<Vec<Ban>>, now: Instant) -> Result<Vec<Restored>> {
        let now_ms = wall_ms();
        let mut file = Entries::new();
        if let Some(path) = self.state.clone() {
            let _lock = state::lock(&path).map_err(|e| {
                Error::other(format!(
                    "cannot lock {}: {e}",
                    state::lock_path(&path).display()
                ))
            })?;
            let (entries, problems, id) = state::load(&path).map_err(|e| {
                Error::other(format!("cannot read state file {}: {e}", path.display()))
            })?;
            for p in problems.iter().take(MAX_PROBLEMS_LOGGED) {
                logging::error(&format!("adminalert: ERROR: state file {p}"));
            }
            if problems.len() > MAX_PROBLEMS_LOGGED {
                logging::error(&format!(
                    "adminalert: ERROR: state file {}: {} more damaged lines not shown; every valid line was read",
                    path.display(),
                    problems.len() - MAX_PROBLEMS_LOGGED
                ));
            }
            file = entries;
            self.written = id;
            for left in state::remove_dead_writers_files(&path, ".tmp.") {
                logging::notice(&format!(
                    "adminalert: removed {}, left by a write that was cut short (kill -9 or a crash)",
                    left.display()
                ));
            }
        }
        for left in self.actions.remove_leftovers() {
            logging::notice(&format!(
                "adminalert: removed {}, left by a write that was cut short (kill -9 or a crash)",
                left.display()
            ));
        }
        let mut report = RestoreReport::default();
        for (addr, mut e) in file {
            if e.is_active(now_ms) {
                if e.applied.set {
                    report.from_file += 1;
                }
            } else if !e.applied.is_empty() {
                if e.applied.needs_undo() {
                    report.undone += 1;
                }
                e.applied = self.actions.undo(addr, &e.applied);
            }
            let r = record_for(&e, now, now_ms, self.factor, self.max);
            let keep = !r.ended || e.applied.needs_undo() || r.until > now;
            if keep {
                self.records.insert(addr, Record { entry: e, ..r });
            }
        }
        for b in kernel.unwrap_or_default() {
            let addr = bans::canonical(b.addr);
            let timeout = b.timeout.unwrap_or(self.ban_time);
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
            if *n < self.set_size {
                *n += 1;
                out.push(b);
            } else {
                report.dropped += 1;
                if let Some(r) = self.records.remove(&b.addr) {
                    self.actions.undo(b.addr, &r.entry.applied);
                }
            }
        }
        if report.dropped > 0 {
            logging::error(&format!(
                "adminalert: ERROR: {} bans not restored: more than set_size ({}) per address family",
                report.dropped, self.set_size
            ));
        }
        for (addr, r) in &self.records {
            self.heap.push(Reverse((r.until, *addr)));
            self.dirty.insert(*addr);
        }
        self.report = report;
        Ok(out)
    }

    /// After the table is in: puts back missing routes and hosts.deny lines
    /// of live bans, writes the state file, logs what was restored.
    pub fn after_install(&mut self, now: Instant) {
        let live: Vec<IpAddr> = self
            .records
            .iter()
            .filter(|(_, r)| !r.ended && r.entry.applied.set)
            .map(|(a, _)| *a)
            .collect();
        for addr in live {
            let r = &self.records[&addr];
            let t = Target {
                addr,
                port: r.entry.port,
                mode: mode_name(r.entry.proto),
            };
            let adopted = r.entry.scan == "adopted";
            let applied = self.actions.ensure(&t, &r.entry.applied.clone(), adopted);
            if let Some(r) = self.records.get_mut(&addr) {
                r.entry.applied = applied;
            }
        }
        let r = &self.report;
        if r.from_file + r.adopted + r.undone > 0 {
            logging::notice(&format!(
                "adminalert: {} bans restored with the time they had left ({} from the state file, {} adopted from the table that was still in the kernel); {} ended bans undone",
                r.from_file + r.adopted,
                r.from_file,
                r.adopted,
                r.undone
            ));
        }
        self.schedule_write(now);
        self.write(now);
    }

    /// At exit: the state file written, children left to finish alone.
    pub fn shutdown(&mut self) {
        self.flush();
        let pids = self.actions.runner.pids();
        if !pids.is_empty() {
            logging::warning(&format!(
                "adminalert: {} external commands still running at exit (PIDs {:?}); not waited for",
                pids.len(),
                pids
            ));
        }
    }
}

/// The in-memory record of an entry read from the file at `now`.
fn record_for(e: &Entry, now: Instant, now_ms: u64, factor: u32, max: Duration) -> Record {
    if e.is_active(now_ms) {
        let remaining = Duration::from_millis(e.expires_at - now_ms);
        let age = Duration::from_millis(now_ms.saturating_sub(e.banned_at));
        Record {
            entry: e.clone(),
            since: now.checked_sub(age).unwrap_or(now),
            until: now + remaining,
            ended: false,
        }
    } else {
        // Ended: remembered until ban_time_max after its end (with
        // escalation), or until its undo is retried.
        let forget = if factor > 1 {
            Duration::from_millis(e.expires_at)
                .saturating_add(max)
                .saturating_sub(Duration::from_millis(now_ms))
        } else {
            Duration::ZERO
        };
        let until = if e.applied.needs_undo() {
            now + RETRY
        } else {
            now + forget
        };
        Record {
            entry: e.clone(),
            since: now,
            until,
            ended: true,
        }
    }
}

/// PortSentry's detection type for $MODE$ of a stealth-mode detection.
pub fn mode_name(proto: Option<Proto>) -> String {
    match proto {
        Some(Proto::Tcp) => "stcp".into(),
        Some(Proto::Udp) => "sudp".into(),
        None => "manual".into(),
    }
}

// The command line's side: the kernel first (so that a missing privilege
// is reported as such), then, under the state file's lock, the route,
// hosts.deny and the state file, so the daemon never writes in between.

fn lock_state(cfg: &Config) -> Result<Option<state::Lock>> {
    match &cfg.state_file {
        None => Ok(None),
        Some(p) => state::lock(p).map(Some).map_err(|e| {
            Error::other(format!(
                "cannot lock {}: {e}",
                state::lock_path(p).display()
            ))
        }),
    }
}

fn load_state(cfg: &Config) -> Result<Entries> {
    let Some(path) = &cfg.state_file else {
        return Ok(Entries::new());
    };
    let (entries, problems, _) = state::load(path)
        .map_err(|e| Error::other(format!("cannot read state file {}: {e}", path.display())))?;
    for p in problems {
        logging::warning(&format!("state file {p}"));
    }
    Ok(entries)
}

fn save_state(cfg: &Config, entries: &Entries) -> Result<()> {
    let Some(path) = &cfg.state_file else {
        return Ok(());
    };
    let mut v: Vec<&Entry> = entries.values().collect();
    v.sort_by_key(|e| (e.addr.is_ipv6(), e.addr));
    state::save(path, &state::render(v))
        .map(|_| ())
        .map_err(|e| Error::other(format!("cannot write state file {}: {e}", path.display())))
}

/// `nftsentry block ADDR --for TIMEOUT`: the kernel element, then the
/// hosts.deny line and native route where configured (no command: there
/// is no detection to report), recorded in the state file.
pub fn block(cfg: &Config, nft: &mut NftSocket, addr: IpAddr, timeout: Duration) -> Result<()> {
    let addr = bans::canonical(addr);
    bans::add(nft, &cfg.table, addr, timeout, None)?;
    let _lock = lock_state(cfg)?;
    let mut entries = load_state(cfg)?;
    let now_ms = wall_ms();
    let prev = entries.get(&addr);
    let active = prev.filter(|e| e.is_active(now_ms));
    let already = active.map(|e| e.applied.clone()).unwrap_or_default();
    let repeat = match (prev, active) {
        (_, Some(e)) => e.repeat.max(1),
        (Some(e), None) => e.repeat.saturating_add(1),
        (None, None) => 1,
    };
    let mut actions = Actions::new(cfg, false);
    let t = Target {
        addr,
        port: 0,
        mode: mode_name(None),
    };
    let mut applied = actions.ensure(&t, &already, false);
    applied.set = true;
    entries.insert(
        addr,
        Entry {
            addr,
            scan: "manual".into(),
            proto: None,
            port: 0,
            banned_at: now_ms,
            expires_at: now_ms.saturating_add(ms(timeout)),
            length: ms(timeout),
            repeat,
            applied,
        },
    );
    save_state(cfg, &entries)
}

/// `nftsentry unblock ADDR`: the kernel element removed (if the table is
/// there), the route and hosts.deny line undone, the address forgotten
/// (also as a repeat offender). Ok(false) if it was not banned.
pub fn unblock(cfg: &Config, nft: &mut NftSocket, addr: IpAddr) -> Result<bool> {
    let addr = bans::canonical(addr);
    let in_kernel = if nft.table_exists(&cfg.table)? {
        bans::remove(nft, &cfg.table, addr)?
    } else {
        false
    };
    let _lock = lock_state(cfg)?;
    let mut entries = load_state(cfg)?;
    let now_ms = wall_ms();
    let mut actions = Actions::new(cfg, false);
    let mut was_banned = false;
    match entries.remove(&addr) {
        Some(e) => {
            was_banned = e.is_active(now_ms);
            let left = actions.undo(addr, &e.applied);
            if left.needs_undo() {
                // Kept as ended so the daemon (or the next start) tries again.
                entries.insert(
                    addr,
                    Entry {
                        expires_at: now_ms,
                        applied: left,
                        ..e
                    },
                );
            }
        }
        None => {
            // No record (a state file turned off, or lost): our route, if
            // any, still goes; only routes we tagged can be removed.
            if let Some(kind) = actions.native_route() {
                let applied = Applied {
                    route: Some(kind),
                    ..Applied::default()
                };
                actions.undo(addr, &applied);
            }
        }
    }
    save_state(cfg, &entries)?;
    Ok(in_kernel || was_banned)
}

/// `nftsentry flush`: every ban lifted, its route and hosts.deny line
/// undone. Returns how many bans there were.
pub fn flush(cfg: &Config, nft: &mut NftSocket) -> Result<usize> {
    let in_kernel = if nft.table_exists(&cfg.table)? {
        Some(bans::flush(nft, &cfg.table)?)
    } else {
        None
    };
    let _lock = lock_state(cfg)?;
    let entries = load_state(cfg)?;
    let now_ms = wall_ms();
    let mut actions = Actions::new(cfg, false);
    let mut kept = Entries::new();
    let mut active = 0;
    for (addr, e) in entries {
        active += usize::from(e.is_active(now_ms));
        let left = actions.undo(addr, &e.applied);
        if left.needs_undo() {
            kept.insert(
                addr,
                Entry {
                    expires_at: now_ms,
                    applied: left,
                    ..e
                },
            );
        }
    }
    save_state(cfg, &kept)?;
    Ok(in_kernel.unwrap_or(active))
}

/// The route kinds in use, for `nftsentry check`.
pub fn describe_actions(cfg: &Config) -> Vec<String> {
    let mut v = Vec::new();
    let native = (cfg.route != RouteMode::Off && cfg.kill_route.is_empty()).then_some(cfg.route);
    if let Some(r) = native {
        v.push(format!(
            "route: {r} (native, proto {})",
            crate::respond::actions::route::RTPROT_NFTSENTRY
        ));
    }
    if !cfg.kill_route.is_empty() {
        v.push(format!("kill_route: {}", cfg.kill_route));
    }
    if let Some(p) = &cfg.hosts_deny {
        v.push(format!(
            "hosts.deny: {} (\"{}\")",
            p.display(),
            cfg.hosts_deny_line
        ));
    }
    if !cfg.command.is_empty() {
        v.push(format!(
            "command: {:?}{}{}",
            cfg.command,
            if cfg.command_shell {
                " through /bin/sh -c"
            } else {
                ""
            },
            if cfg.run_before_block {
                ", before the block"
            } else {
                ""
            }
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("nftsentry-respond-{tag}-{}", std::process::id()));
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

    fn record(length_ms: u64, repeat: u32, ended: bool) -> Record {
        let now = Instant::now();
        Record {
            entry: Entry {
                addr: "192.0.2.2".parse().unwrap(),
                scan: "syn".into(),
                proto: Some(Proto::Tcp),
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
        let r = Responder::new(&config(None));
        let s = Duration::from_secs;
        assert_eq!(r.length_for(None), (s(2), 1, false));
        assert_eq!(r.length_for(Some(&record(2000, 1, true))), (s(6), 2, true));
        assert_eq!(
            r.length_for(Some(&record(18000, 3, true))),
            (s(30), 4, true)
        );
        // A shorter (manual) ban escalates from its length, never below ban_time.
        assert_eq!(r.length_for(Some(&record(500, 1, true))), (s(2), 2, true));
        // A ban still in force is renewed as it was.
        assert_eq!(
            r.length_for(Some(&record(6000, 2, false))),
            (s(6), 2, false)
        );
        // Without escalation the count still goes up.
        let cfg = Config {
            ban_time_factor: 1,
            ..config(None)
        };
        let r = Responder::new(&cfg);
        assert_eq!(r.length_for(Some(&record(2000, 4, true))), (s(2), 5, true));
    }

    fn entry(addr: &str, expires_in_ms: i64, set: bool) -> Entry {
        let now = wall_ms() as i64;
        Entry {
            addr: addr.parse().unwrap(),
            scan: "syn".into(),
            proto: Some(Proto::Tcp),
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
        let text = state::render([&live, &ended, &command_only, &both]);
        state::save(&dir.join("state"), &text).unwrap();
        let kernel = vec![
            // Also in the file: the kernel's time wins.
            Ban {
                addr: both.addr,
                timeout: Some(Duration::from_secs(60)),
                expires_in: Some(Duration::from_secs(10)),
            },
            // Only in the kernel: adopted.
            Ban {
                addr: "2001:db8::9".parse().unwrap(),
                timeout: Some(Duration::from_secs(100)),
                expires_in: Some(Duration::from_secs(40)),
            },
        ];
        let mut r = Responder::new(&cfg);
        let now = Instant::now();
        let back = r.restore(Some(kernel), now).unwrap();
        let by: HashMap<IpAddr, Restored> = back.iter().map(|b| (b.addr, *b)).collect();
        assert_eq!(by.len(), 3, "{back:?}");
        let near = |d: Duration, secs: u64| d.as_millis().abs_diff(u128::from(secs) * 1000) < 1500;
        assert!(near(by[&live.addr].remaining, 30), "{:?}", by[&live.addr]);
        assert_eq!(by[&live.addr].timeout, Duration::from_secs(60));
        assert!(near(by[&both.addr].remaining, 10), "{:?}", by[&both.addr]);
        let adopted: IpAddr = "2001:db8::9".parse().unwrap();
        assert!(near(by[&adopted].remaining, 40));
        assert_eq!(by[&adopted].timeout, Duration::from_secs(100));
        // The ended ban is gone (no escalation to remember it for); the
        // command-only one is still a ban, without a kernel element.
        assert!(!r.is_banned(ended.addr));
        assert!(r.is_banned(command_only.addr));
        assert!(!by.contains_key(&command_only.addr));
        r.after_install(now);
        let (file, problems, _) = state::load(&dir.join("state")).unwrap();
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
    fn changes_by_the_command_line_are_taken_over() {
        let dir = tempdir("sync");
        let cfg = config(Some(&dir));
        let path = dir.join("state");
        let a = entry("192.0.2.2", 30_000, true);
        let b = entry("192.0.2.3", 30_000, true);
        state::save(&path, &state::render([&a, &b])).unwrap();
        let mut r = Responder::new(&cfg);
        let now = Instant::now();
        r.restore(None, now).unwrap();
        r.after_install(now);
        assert!(r.is_banned(a.addr) && r.is_banned(b.addr));
        // `nftsentry unblock 192.0.2.2` and `block 198.51.100.7`, elsewhere.
        let c = entry("198.51.100.7", 20_000, true);
        {
            let _lock = state::lock(&path).unwrap();
            state::save(&path, &state::render([&b, &c])).unwrap();
        }
        // The daemon notices when it next writes (here: after a ban).
        let t = Trigger {
            addr: "192.0.2.9".parse().unwrap(),
            scan: ScanType::TcpSynNormal,
            proto: Proto::Tcp,
            port: 1,
            mode: "stcp".into(),
        };
        let res = r.ban(&t, now, &mut |_, _| Ok(()));
        assert!(matches!(res, BanResult::Banned { .. }), "{res:?}");
        assert!(!r.is_banned(a.addr));
        assert!(r.is_banned(c.addr));
        assert_eq!(r.released(), vec![a.addr]);
        r.flush();
        let (file, _, _) = state::load(&path).unwrap();
        let mut addrs: Vec<String> = file.keys().map(|a| a.to_string()).collect();
        addrs.sort();
        assert_eq!(addrs, ["192.0.2.3", "192.0.2.9", "198.51.100.7"]);
        // Our own write is recognised: the next ban reads nothing back.
        assert_eq!(state::file_id(&path).unwrap(), r.written);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn log_mode_records_nothing() {
        let dir = tempdir("log");
        let mut cfg = config(Some(&dir));
        cfg.udp.block_mode = BlockMode::Log;
        let mut r = Responder::new(&cfg);
        let t = Trigger {
            addr: "192.0.2.9".parse().unwrap(),
            scan: ScanType::Udp,
            proto: Proto::Udp,
            port: 7,
            mode: "sudp".into(),
        };
        let res = r.ban(&t, Instant::now(), &mut |_, _| {
            panic!("log mode must not touch the set")
        });
        assert!(matches!(res, BanResult::LogOnly));
        assert!(!r.is_banned(t.addr));
        r.flush();
        assert!(!dir.join("state").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
