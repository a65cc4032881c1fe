//! state_file: the state file on disk: read under its lock at start,
//! written by a thread of its own once the daemon allows one, never more
//! often than the disk allows. The file is a journal (line format in
//! `state`): a write appends the lines of the entries that changed and an
//! `end` record for each that went (O_APPEND to the file this writer made,
//! then fdatasync), so a write costs the bytes that changed, not the file
//! (a million bans: a file of 160 MB). It is rewritten whole
//! (`files::replace`: the live entries only, one line each) at the first
//! write of the daemon's life, after a failed write, when the file at the
//! path is not the one the writer made as it left it (replaced, removed,
//! linked, written by someone else: checked under the lock before every
//! append), and when its dead bytes (lines a later record replaced or
//! ended, the `end` records) would pass its live ones and 1 MiB: the file
//! stays under twice its live size plus 1 MiB, a file that only grows is
//! never rewritten, and over time the bytes written stay within about three
//! times the bytes of the lines that changed. The command line's `save`
//! rewrites it whole too.
//! The loop hands the writer thread only what changed (the entries by
//! value, or every entry once after a restore); the thread keeps each line
//! as last written and renders the changed ones, so no write costs the loop
//! work in the number of bans.
//! The lock (`<state_file>.lock`) is taken by every writer: the daemon
//! around each write and each hosts.deny edit, the command line around its
//! whole read-change-write when no daemon runs. The event loop never waits
//! for it: a write that comes due while the last one is still on the
//! writer thread (which holds the lock until the disk is done), or while
//! someone else holds it, is looked at again `BUSY_RETRY` later.
//!
//! Knows nothing of why entries change: it is told which did.

use crate::cidr::Cidr;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::files;
use crate::journal::intents::{self, Intents};
use crate::journal::state::{self, Entries, Entry};
use crate::logging::Gate;

/// Writes take at most 1/50 of the time: after a write that took t, the
/// next waits 50 t (20,000 bans: 10-20 ms, so 0.5-1 s), and at most
/// MAX_WRITE_DELAY, which bounds how long a change can wait for the disk
/// (a slow fsync must not leave bans unrecorded for long).
const WRITE_DELAY_FACTOR: u32 = 50;
const MAX_WRITE_DELAY: Duration = Duration::from_secs(5);
/// After a failed write, the next try.
const RETRY: Duration = Duration::from_secs(60);
/// A write due while the last one is still on the writer thread (which
/// holds the lock until it is done), or while someone else holds the lock:
/// the loop looks again this much later rather than wait.
const BUSY_RETRY: Duration = Duration::from_millis(10);
/// In the names of our temporary files: `.state.tmp.<pid>`.
const LEFTOVER_INFIX: &str = ".tmp.";

/// An exclusive lock on `<state_file>.lock`, held until dropped.
pub struct Lock {
    _flock: nix::fcntl::Flock<File>,
}

/// The lock file's path for a state file.
pub fn lock_path(state: &Path) -> PathBuf {
    let mut p = state.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

fn lock_io(state: &Path, how: nix::fcntl::FlockArg) -> std::io::Result<Lock> {
    let private = files::Private {
        append: false,
        mode: 0o600,
        make_dir: true,
    };
    let f = files::open_private(&lock_path(state), &private)?;
    let flock = nix::fcntl::Flock::lock(f, how).map_err(|(_, e)| std::io::Error::from(e))?;
    Ok(Lock { _flock: flock })
}

/// The lock if nobody holds it now (`None`: taken): the event loop never
/// waits for it.
fn try_lock(state: &Path) -> Result<Option<Lock>> {
    match lock_io(state, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(Error::io(
            format!("cannot lock {}", lock_path(state).display()),
            &e,
        )),
    }
}

/// Takes the lock of the state file `state` (waits for it). Creates the
/// lock file and its directory; a lock file that is a link or belongs to a
/// third user is refused (`files::open_private`).
pub fn lock(state: &Path) -> Result<Lock> {
    lock_io(state, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|e| Error::io(format!("cannot lock {}", lock_path(state).display()), &e))
}

/// Why the state file, open at `f`, must not be trusted, if it must not:
/// what `files::refusal` refuses, a file group or others may write, or a
/// directory they may write (without the sticky bit, anyone who may write
/// there may put any file of the same file system under this name).
fn distrust(f: &File, dir: &Path) -> std::io::Result<Option<String>> {
    use std::os::unix::fs::MetadataExt;
    let m = f.metadata()?;
    let d = std::fs::metadata(dir)?;
    if let Some(why) = files::refusal(&m, d.uid()) {
        return Ok(Some(why));
    }
    if m.mode() & 0o022 != 0 {
        return Ok(Some(format!(
            "its mode is {:04o}: group or others may write it",
            m.mode() & 0o7777
        )));
    }
    if d.mode() & 0o022 != 0 && d.mode() & 0o1000 == 0 {
        return Ok(Some(format!(
            "its directory {} has mode {:04o}: group or others may put any file there",
            dir.display(),
            d.mode() & 0o7777
        )));
    }
    Ok(None)
}

/// Where a refused state file is moved: `<state_file>.refused`.
pub fn refused_path(state: &Path) -> PathBuf {
    let mut p = state.as_os_str().to_owned();
    p.push(".refused");
    PathBuf::from(p)
}

/// Reads the file, under its lock: its entries and one message per
/// damaged line. A missing file is empty. A file that could have been
/// planted (a link, a FIFO, a file of a third user, one that group or
/// others may write, see `distrust`) is not read: no entry, one message
/// that says why, and the file moved to `refused_path`; nothing fails.
pub fn load(path: &Path) -> Result<(Entries, Vec<String>)> {
    let cannot =
        |e: std::io::Error| Error::io(format!("cannot read state file {}", path.display()), &e);
    // Moved aside, so that nothing at start trips over it (the privilege
    // check of the state file) and whoever looks finds it; the link itself
    // when it is one, never its target.
    let refused = |why: &str| {
        let aside = refused_path(path);
        let fate = match std::fs::rename(path, &aside) {
            Ok(()) => format!("moved to {}", aside.display()),
            Err(e) => format!("left in place ({e}); the next write replaces it"),
        };
        let msg = format!(
            "{}: refused, no ban is read from it: {why}; {fate}",
            path.display()
        );
        Ok((Entries::new(), vec![msg]))
    };
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_CLOEXEC | nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path);
    let mut f = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Entries::new(), Vec::new()));
        }
        Err(e) => {
            return match files::open_refusal(path, &e) {
                Some(why) => refused(&why),
                None => Err(cannot(e)),
            };
        }
    };
    if let Some(why) = distrust(&f, files::dir_of(path)).map_err(cannot)? {
        return refused(&why);
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut bytes).map_err(cannot)?;
    Ok(state::parse(&bytes, &path.display().to_string()))
}

/// Writes `entries` now, replacing the file whole: one line each, no `end`
/// record (for the command line, which holds the lock).
pub fn save<'a>(path: &Path, entries: impl IntoIterator<Item = &'a Entry>) -> Result<()> {
    write_text(path, &state::render(entries))
        .map_err(|e| Error::io(format!("cannot write state file {}", path.display()), &e))
}

fn write_text(path: &Path, text: &str) -> std::io::Result<()> {
    replace_file(path, text).map(drop)
}

/// Replaces the file whole with `text`; the new file, still open.
fn replace_file(path: &Path, text: &str) -> std::io::Result<File> {
    let how = files::Replace {
        mode: 0o600,
        owner: None,
        infix: LEFTOVER_INFIX,
        make_dir: true,
    };
    files::replace(path, text.as_bytes(), &how).map_err(std::io::Error::from)
}

/// Removes the temporary files of writes that were cut short (kill -9 or a
/// crash); returns what went.
pub fn remove_leftovers(path: &Path) -> Vec<PathBuf> {
    files::remove_dead_writers_files(path, LEFTOVER_INFIX)
}

/// What changed since the last write, by value: the entries as they are
/// now (`None`: gone). The loop clones only these; rendering is the
/// writer's.
enum Changes {
    Some(Vec<(Cidr, Option<Entry>)>),
    /// Every entry (a restore changed them all, or the writer's copy was
    /// lost): the copy is replaced.
    All(Vec<Entry>),
}

/// A rewrite waits until the file holds more dead bytes (lines a later one
/// replaced, lines of entries that went, `end` records) than live ones,
/// and at least this many: a file of a few bans is not rewritten at every
/// change, and one that only grows (a flood of new bans) not at all.
const COMPACT_FLOOR: u64 = 1 << 20;

/// Room for one line (most are 150 to 190 bytes): a new line is not grown
/// by reallocation.
const LINE: usize = 192;

/// The file as this writer last wrote it, open to append.
struct Appending {
    /// The file `files::replace` made (O_EXCL, O_NOFOLLOW, mode 0600),
    /// switched to O_APPEND.
    file: File,
    /// Its length as written.
    len: u64,
}

/// The writer's side: each entry's line as last rendered, in the file's
/// order (by address), what a rewrite writes, and the file it appends to
/// until then. A write appends the lines of the entries that changed and
/// an `end` record for each that went; it rewrites the file whole
/// (`files::replace`) when it has no file to append to (the first write,
/// after a failed one), when the file at the path is not the one it wrote
/// (replaced, removed, written by someone else), when every entry changed,
/// or when the dead bytes would pass the live ones (`COMPACT_FLOOR`). It
/// lives on the writer thread once there is one; before, the loop writes
/// through it itself.
struct Written {
    lines: BTreeMap<Cidr, String>,
    /// Bytes of a rewrite: the header and every line.
    live: u64,
    /// `None`: the next write rewrites the file.
    file: Option<Appending>,
    /// Dead bytes allowed before a rewrite, at least (`COMPACT_FLOOR`).
    floor: u64,
}

impl Default for Written {
    fn default() -> Written {
        Written {
            lines: BTreeMap::new(),
            live: state::HEADER.len() as u64,
            file: None,
            floor: COMPACT_FLOOR,
        }
    }
}

impl Written {
    /// Applies `changes` to the lines; with `tail`, appends to it what the
    /// file must get for them (each changed line, an `end` record for each
    /// entry that went).
    fn apply(&mut self, changes: Changes, mut tail: Option<&mut String>) {
        match changes {
            Changes::Some(v) => {
                if let Some(t) = tail.as_deref_mut() {
                    t.reserve(v.len() * LINE);
                }
                for (addr, e) in v {
                    match e {
                        Some(e) => {
                            let line = self
                                .lines
                                .entry(addr)
                                .or_insert_with(|| String::with_capacity(LINE));
                            self.live -= line.len() as u64;
                            line.clear();
                            state::render_entry_into(line, &e);
                            self.live += line.len() as u64;
                            if let Some(t) = tail.as_deref_mut() {
                                t.push_str(line);
                            }
                        }
                        None => {
                            if let Some(line) = self.lines.remove(&addr) {
                                self.live -= line.len() as u64;
                                if let Some(t) = tail.as_deref_mut() {
                                    state::render_end_into(t, &addr);
                                }
                            }
                        }
                    }
                }
            }
            Changes::All(v) => {
                self.lines = v
                    .into_iter()
                    .map(|e| (e.addr, state::render_entry(&e)))
                    .collect();
                self.live = state::HEADER.len() as u64
                    + self.lines.values().map(|l| l.len() as u64).sum::<u64>();
            }
        }
    }

    fn text(&self) -> String {
        let mut text = String::with_capacity(self.live as usize);
        text.push_str(state::HEADER);
        for line in self.lines.values() {
            text.push_str(line);
        }
        text
    }

    /// Applies `changes` and writes them: appended, or the file rewritten
    /// (see `Written`). A failed write leaves no file to append to: the
    /// next one rewrites it with everything.
    fn write(&mut self, path: &Path, changes: Changes) -> std::io::Result<()> {
        let whole = matches!(changes, Changes::All(_));
        let mut tail = String::new();
        self.apply(changes, (!whole).then_some(&mut tail));
        let appendable = match &self.file {
            _ if whole => false,
            None => false,
            Some(f) => {
                let dead = (f.len + tail.len() as u64).saturating_sub(self.live);
                dead <= self.live.max(self.floor)
            }
        };
        if appendable && tail.is_empty() {
            return Ok(());
        }
        let r = if appendable && self.still_ours(path) {
            self.append(tail.as_bytes())
        } else {
            self.rewrite(path)
        };
        if r.is_err() {
            self.file = None;
        }
        r
    }

    /// The file at `path` is the one this writer wrote, as it wrote it: the
    /// same inode, its only name, the length it left, no write allowed to
    /// group or others. Anything else (replaced, removed, a link, appended
    /// to or cut by someone else) is rewritten, never appended to.
    fn still_ours(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Some(f) = &self.file else {
            return false;
        };
        let (Ok(at_path), Ok(open)) = (std::fs::symlink_metadata(path), f.file.metadata()) else {
            return false;
        };
        files::same_file(&at_path, &open)
            && open.file_type().is_file()
            && open.nlink() == 1
            && open.len() == f.len
            && open.mode() & 0o022 == 0
    }

    /// Appends `tail` to the file and waits for the disk (fdatasync).
    fn append(&mut self, tail: &[u8]) -> std::io::Result<()> {
        use std::io::Write as _;
        let f = self.file.as_mut().expect("a file to append to");
        let written = f.file.write_all(tail).and_then(|()| f.file.sync_data());
        match written {
            Ok(()) => {
                f.len += tail.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Best effort: no torn line left for a reader before the
                // rewrite that follows.
                let _ = f.file.set_len(f.len);
                Err(e)
            }
        }
    }

    /// Replaces the file with every line, and keeps it open to append.
    fn rewrite(&mut self, path: &Path) -> std::io::Result<()> {
        self.file = None;
        let text = self.text();
        let file = replace_file(path, &text)?;
        let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_APPEND;
        nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(flags))?;
        self.file = Some(Appending {
            file,
            len: text.len() as u64,
        });
        Ok(())
    }
}

/// A write handed to the writer thread: the lock taken by the loop, what
/// changed since the last job.
struct Job {
    lock: Lock,
    changes: Changes,
}

/// The thread that renders and appends (or rewrites) the file, so a probe never
/// waits behind the disk (measured: a synchronous write put the probe->ban
/// p99 at 2.5 ms, against 0.3 ms without a state file) nor behind the
/// rendering of every ban (a million bans: a file of 160 MB).
struct Writer {
    jobs: mpsc::Sender<Job>,
    /// Each write's result and how long the disk took.
    done: mpsc::Receiver<(std::io::Result<()>, Duration)>,
    /// How much of the intent file each write in flight covers.
    in_flight: VecDeque<u64>,
}

impl Writer {
    fn start(path: PathBuf, mut copy: Written) -> std::io::Result<Writer> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (tx, done) = mpsc::channel();
        std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || {
                for job in rx {
                    let t = Instant::now();
                    let r = copy.write(&path, job.changes);
                    // The result before the lock: whoever takes the lock
                    // next finds the file written.
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
            in_flight: VecDeque::new(),
        })
    }
}

/// The daemon's state file: what changed since the last write, when the
/// next write is due. A write costs the loop the entries that changed
/// (cloned) and the lock; the rendering and the disk are the writer's.
pub struct StateFile {
    path: PathBuf,
    /// Changed since the last write.
    dirty: HashSet<Cidr>,
    /// Every entry changed: the next write carries them all.
    all_dirty: bool,
    /// No write before this (throttle); `None`: no write pending.
    write_at: Option<Instant>,
    not_before: Option<Instant>,
    /// The lines as last written, while the loop writes itself (before the
    /// writer thread starts, or if it is gone); the thread has it after.
    copy: Option<Written>,
    /// Writes the file off the event loop once the daemon allows a thread
    /// (after dropping privileges); `None`: writes are synchronous.
    writer: Option<Writer>,
    errors: Gate,
    /// What bans are about to do, until a write covers it.
    intents: Intents,
}

impl StateFile {
    pub fn new(path: PathBuf) -> StateFile {
        StateFile {
            intents: Intents::new(&path),
            path,
            dirty: HashSet::new(),
            all_dirty: false,
            write_at: None,
            not_before: None,
            copy: Some(Written::default()),
            writer: None,
            errors: Gate::new(RETRY),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn schedule(&mut self, now: Instant) {
        if self.write_at.is_none() {
            self.write_at = Some(self.not_before.map_or(now, |t| t.max(now)));
        }
    }

    /// The entry of `addr` changed (or went): written at the next write,
    /// which is scheduled.
    pub fn changed(&mut self, addr: Cidr, now: Instant) {
        if !self.all_dirty {
            self.dirty.insert(addr);
        }
        self.schedule(now);
    }

    /// Every entry changed (a restore): the next write carries them all,
    /// with no book-keeping per entry.
    pub fn changed_all(&mut self, now: Instant) {
        self.all_dirty = true;
        self.dirty = HashSet::new();
        self.schedule(now);
    }

    /// Notes what the ban `e` is about to do, before it does it (see
    /// `intents`). A failure is logged: the ban goes on.
    pub fn intend(&mut self, e: &Entry) {
        if let Err(err) = self.intents.note(e) {
            if self.errors.admit(Instant::now()).is_some() {
                log_error!(
                    "adminalert: ERROR: cannot write {}: {err} (bans go on)",
                    intents::path_of(&self.path).display()
                );
            }
        }
    }

    /// When the next write is due, if one is pending.
    pub fn due(&self) -> Option<Instant> {
        self.write_at
    }

    /// From now on writes go to a thread of their own. The daemon calls
    /// this after dropping privileges (capabilities are per thread, and the
    /// drop refuses a second thread).
    pub fn start_writer(&mut self) {
        if self.writer.is_some() {
            return;
        }
        let copy = self.copy.take().unwrap_or_default();
        match Writer::start(self.path.clone(), copy) {
            Ok(w) => self.writer = Some(w),
            Err(e) => {
                // The copy went with the closure: the next write has it all.
                self.copy = Some(Written::default());
                self.all_dirty = true;
                log_warning!(
                    "adminalert: WARNING: no state writer thread ({e}); the state file is written by the event loop"
                );
            }
        }
    }

    /// Writes when a write is due at `now`. `all`: every entry, in the
    /// file's order (read only when every entry changed); `get`: the entry
    /// of an address.
    pub fn tick<'a>(
        &mut self,
        now: Instant,
        all: impl Iterator<Item = &'a Entry>,
        get: impl Fn(&Cidr) -> Option<&'a Entry>,
    ) {
        self.collect(false, now);
        if self.write_at.is_some_and(|t| t <= now) {
            if self
                .writer
                .as_ref()
                .is_some_and(|w| !w.in_flight.is_empty())
            {
                self.write_at = Some(now + BUSY_RETRY);
                return;
            }
            self.write(now, all, get, false);
        }
    }

    /// Writes now if anything changed, and waits for it (at exit).
    pub fn flush<'a>(
        &mut self,
        all: impl Iterator<Item = &'a Entry>,
        get: impl Fn(&Cidr) -> Option<&'a Entry>,
    ) {
        let now = Instant::now();
        self.collect(true, now);
        if self.write_at.is_some() {
            self.write(now, all, get, true);
        }
    }

    /// Results of writes the thread finished; with `wait`, all of them.
    fn collect(&mut self, wait: bool, now: Instant) {
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        let mut results = Vec::new();
        while !w.in_flight.is_empty() {
            let r = if wait {
                w.done.recv().ok()
            } else {
                w.done.try_recv().ok()
            };
            let Some(r) = r else {
                if wait {
                    // The thread is gone with its copy of the lines.
                    self.writer_gone();
                }
                break;
            };
            let mark = w.in_flight.pop_front().expect("in flight");
            results.push((r, mark));
        }
        for ((result, cost), mark) in results {
            self.wrote(result, cost, now, mark);
        }
    }

    /// The writer thread is gone (it panicked): the loop writes from now
    /// on, everything at the next write.
    fn writer_gone(&mut self) {
        log_error!(
            "adminalert: ERROR: the state writer thread is gone; the event loop writes {} from now on",
            self.path.display()
        );
        self.writer = None;
        self.copy = Some(Written::default());
        self.all_dirty = true;
        self.dirty = HashSet::new();
    }

    /// Book-keeping after a write that covered the intent file up to
    /// `mark`. A failed write needs no entry again: the copy has them, the
    /// retry writes it.
    fn wrote(&mut self, result: std::io::Result<()>, cost: Duration, now: Instant, mark: u64) {
        match result {
            // The disk is spared: 1/50 of the time at most.
            Ok(()) => {
                self.not_before = Some(now + (cost * WRITE_DELAY_FACTOR).min(MAX_WRITE_DELAY));
                if let Err(e) = self.intents.covered(mark) {
                    log_error!(
                        "adminalert: ERROR: cannot shorten {}: {e}",
                        intents::path_of(&self.path).display()
                    );
                }
            }
            Err(e) => {
                if self.errors.admit(now).is_some() {
                    log_error!(
                        "adminalert: ERROR: cannot write state file {}: {e} (bans go on; trying again in {}s)",
                        self.path.display(),
                        RETRY.as_secs()
                    );
                }
                self.write_at = Some(now + RETRY);
            }
        }
    }

    /// What changed, by value: O(changed), or every entry when all did.
    fn take_changes<'a>(
        &mut self,
        all: impl Iterator<Item = &'a Entry>,
        get: impl Fn(&Cidr) -> Option<&'a Entry>,
    ) -> Changes {
        if std::mem::take(&mut self.all_dirty) {
            self.dirty = HashSet::new();
            return Changes::All(all.cloned().collect());
        }
        let changed = self
            .dirty
            .drain()
            .map(|addr| (addr, get(&addr).cloned()))
            .collect();
        Changes::Some(changed)
    }

    fn write<'a>(
        &mut self,
        now: Instant,
        all: impl Iterator<Item = &'a Entry>,
        get: impl Fn(&Cidr) -> Option<&'a Entry>,
        wait: bool,
    ) {
        let started = Instant::now();
        let locked = if wait {
            lock(&self.path).map(Some)
        } else {
            try_lock(&self.path)
        };
        let lock = match locked {
            Ok(Some(l)) => l,
            Ok(None) => {
                self.write_at = Some(now + BUSY_RETRY);
                return;
            }
            Err(e) => {
                // What changed stays marked for the retry.
                let err = std::io::Error::other(e.message);
                self.write_at = None;
                self.wrote(Err(err), started.elapsed(), now, 0);
                return;
            }
        };
        let changes = self.take_changes(all, get);
        let mark = self.intents.mark();
        self.write_at = None;
        if let Some(w) = self.writer.as_mut() {
            match w.jobs.send(Job { lock, changes }) {
                Ok(()) => {
                    w.in_flight.push_back(mark);
                    // Until the thread says how long it took.
                    self.not_before = Some(now + Duration::from_millis(50));
                    if wait {
                        self.collect(true, now);
                    }
                    return;
                }
                Err(mpsc::SendError(job)) => {
                    // The thread is gone, and its copy: what this job
                    // carries is not all that the file lacks.
                    drop(job);
                    self.writer_gone();
                    self.schedule(now);
                    return;
                }
            }
        }
        let copy = self.copy.get_or_insert_with(Written::default);
        let r = copy.write(&self.path, changes);
        drop(lock);
        self.wrote(r, started.elapsed(), Instant::now(), mark);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::state::Applied;

    fn entry(addr: &str) -> Entry {
        Entry {
            addr: addr.parse().unwrap(),
            scan: "syn".into(),
            proto: Some(crate::config::Proto::Tcp),
            mode: "stcp".into(),
            port: 1,
            banned_at: 1_700_000_000_123,
            expires_at: 1_700_086_400_123,
            length: 86_400_000,
            repeat: 1,
            evidence: crate::strength::Strength::Forgeable,
            applied: Applied {
                set: true,
                ..Applied::default()
            },
        }
    }

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nftsentry-sf-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn save_replaces_atomically_and_load_reads_back() {
        let d = dir("save");
        let path = d.join("deeper").join("state");
        let (e, p) = load(&path).unwrap();
        assert!(e.is_empty() && p.is_empty());
        save(&path, [&entry("192.0.2.2")]).unwrap();
        let (e, p) = load(&path).unwrap();
        assert_eq!((e.len(), p.len()), (1, 0));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        save(&path, [&entry("192.0.2.2"), &entry("192.0.2.3")]).unwrap();
        assert_eq!(load(&path).unwrap().0.len(), 2);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|d| d.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("state")]);
        {
            let _l = lock(&path).unwrap();
            assert!(lock_path(&path).exists());
        }
        let _l = lock(&path).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_state_file_others_could_have_planted_is_moved_aside_unread() {
        use std::os::unix::fs::PermissionsExt;
        let d = dir("distrust");
        let path = d.join("state");
        save(&path, [&entry("192.0.2.2")]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let (e, p) = load(&path).unwrap();
        assert!(e.is_empty());
        assert_eq!(
            p,
            [format!(
                "{}: refused, no ban is read from it: its mode is 0666: group or others may write it; moved to {}",
                path.display(),
                refused_path(&path).display()
            )]
        );
        assert!(!path.exists());
        assert_eq!(std::fs::read_to_string(refused_path(&path)).unwrap(), text);
        // A link: the link is moved, its target stays as it is.
        let target = d.join("elsewhere");
        std::fs::write(&target, &text).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let (e, p) = load(&path).unwrap();
        assert!(e.is_empty());
        assert!(
            p[0].contains("refused, no ban is read from it: it is a symbolic link"),
            "{p:?}"
        );
        assert!(
            std::fs::symlink_metadata(refused_path(&path))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), text);
        // A directory others may write.
        std::fs::remove_file(refused_path(&path)).unwrap();
        save(&path, [&entry("192.0.2.2")]).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o775)).unwrap();
        let (e, p) = load(&path).unwrap();
        assert!(
            e.is_empty() && p[0].contains("has mode 0775: group or others may put any file there"),
            "{p:?}"
        );
        // Sticky, as /tmp: others may add names, not replace ours.
        std::fs::rename(refused_path(&path), &path).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(load(&path).unwrap().0.len(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    fn get<'a>(entries: &'a [&'a Entry]) -> impl Fn(&Cidr) -> Option<&'a Entry> {
        move |a| entries.iter().copied().find(|e| e.addr == *a)
    }

    #[test]
    fn a_state_file_renders_changed_lines_and_drops_gone_ones() {
        let d = dir("render");
        let path = d.join("state");
        let mut f = StateFile::new(path.clone());
        let t0 = Instant::now();
        let a = entry("192.0.2.2");
        let mut b = entry("192.0.2.3");
        f.changed(a.addr, t0);
        f.changed(b.addr, t0);
        assert_eq!(f.due(), Some(t0));
        let both = [&a, &b];
        f.tick(t0, both.into_iter(), get(&both));
        assert_eq!(f.due(), None);
        assert_eq!(load(&path).unwrap().0.len(), 2);
        // b changes, a goes: the next write has b's new line and no a.
        b.port = 7;
        f.changed(b.addr, t0);
        f.changed(a.addr, t0);
        let only = [&b];
        f.flush(only.into_iter(), get(&only));
        let (e, _) = load(&path).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[&b.addr].port, 7);
        assert_eq!(f.copy.as_ref().unwrap().lines.len(), 1);
        // Every entry changed (a restore): all of them, in order.
        let c = entry("2001:db8::1");
        f.changed_all(t0);
        let all = [&b, &c];
        f.flush(all.into_iter(), |_| panic!("no lookup when all changed"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, state::render(all));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn with_the_writer_thread_the_loop_renders_nothing() {
        let d = dir("thread");
        let path = d.join("state");
        let mut f = StateFile::new(path.clone());
        f.start_writer();
        let entries: Vec<Entry> = (0..1000u32)
            .map(|i| entry(&std::net::Ipv4Addr::from(0xC612_0000 + i).to_string()))
            .collect();
        let refs: Vec<&Entry> = entries.iter().collect();
        let t0 = Instant::now();
        let before = state::RENDERED.with(|n| n.get());
        // A restore: every entry, then a ban.
        f.changed_all(t0);
        f.tick(t0, refs.iter().copied(), get(&refs));
        f.changed(entries[7].addr, t0);
        f.flush(refs.iter().copied(), get(&refs));
        assert_eq!(
            state::RENDERED.with(|n| n.get()),
            before,
            "the loop's thread rendered state lines"
        );
        let (e, p) = load(&path).unwrap();
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(e.len(), 1000);
        // Gone and changed ones reach the file too.
        let mut changed = entries[3].clone();
        changed.port = 9;
        let left: Vec<&Entry> = [&changed]
            .into_iter()
            .chain(refs[10..].iter().copied())
            .collect();
        for e in &entries[..10] {
            f.changed(e.addr, t0);
        }
        f.flush(left.iter().copied(), get(&left));
        let (e, _) = load(&path).unwrap();
        assert_eq!(e.len(), 991);
        assert_eq!(e[&changed.addr].port, 9);
        assert!(!e.contains_key(&entries[4].addr));
        assert_eq!(state::RENDERED.with(|n| n.get()), before);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_failed_write_is_retried_with_everything() {
        let d = dir("retry");
        std::fs::create_dir_all(&d).unwrap();
        // The state file's place is a directory: the rename fails.
        let path = d.join("state");
        std::fs::create_dir_all(path.join("x")).unwrap();
        let mut f = StateFile::new(path.clone());
        f.start_writer();
        let a = entry("192.0.2.2");
        let t0 = Instant::now();
        f.changed(a.addr, t0);
        f.flush([&a].into_iter(), get(&[&a]));
        // Failed: the retry is scheduled, with no change left to send.
        let retry = f.due().expect("a retry");
        assert!(retry >= t0 + RETRY, "{retry:?}");
        std::fs::remove_dir_all(&path).unwrap();
        let b = entry("192.0.2.3");
        f.changed(b.addr, t0);
        f.tick(retry, [&a, &b].into_iter(), get(&[&a, &b]));
        f.flush([&a, &b].into_iter(), get(&[&a, &b]));
        assert_eq!(load(&path).unwrap().0.len(), 2);
        std::fs::remove_dir_all(&d).unwrap();
    }

    fn ino(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(path).unwrap().ino()
    }

    fn len(path: &Path) -> u64 {
        std::fs::symlink_metadata(path).unwrap().len()
    }

    fn host(i: u32) -> Entry {
        entry(&std::net::Ipv4Addr::from(0xC612_0000 + i).to_string())
    }

    /// A state file with the writer thread and `n` entries written (the
    /// restore's first write: the file rewritten whole).
    fn written(path: &Path, n: u32) -> (StateFile, BTreeMap<Cidr, Entry>) {
        let mut f = StateFile::new(path.to_path_buf());
        f.start_writer();
        let entries: BTreeMap<Cidr, Entry> = (0..n).map(|i| (host(i).addr, host(i))).collect();
        f.changed_all(Instant::now());
        f.flush(entries.values(), |a| entries.get(a));
        assert_eq!(
            std::fs::read_to_string(path).unwrap(),
            state::render(entries.values())
        );
        (f, entries)
    }

    fn flush(f: &mut StateFile, entries: &BTreeMap<Cidr, Entry>) {
        f.flush(entries.values(), |a| entries.get(a));
    }

    #[test]
    fn the_loop_never_waits_for_the_lock() {
        let d = dir("busy");
        let path = d.join("state");
        let (mut f, mut entries) = written(&path, 10);
        // Someone holds the lock: the writer thread in the middle of a
        // write, or a command.
        let held = lock(&path).unwrap();
        let e = host(50);
        entries.insert(e.addr, e.clone());
        let now = Instant::now() + Duration::from_secs(60);
        f.changed(e.addr, now);
        let (tx, rx) = mpsc::channel();
        let loop_thread = std::thread::spawn(move || {
            f.tick(now, entries.values(), |a| entries.get(a));
            tx.send(()).unwrap();
            (f, entries)
        });
        let waited = rx.recv_timeout(Duration::from_secs(2)).is_err();
        drop(held);
        let (mut f, entries) = loop_thread.join().unwrap();
        assert!(!waited, "the loop waited for the lock");
        // Looked at again shortly, and written once the lock is free.
        assert_eq!(f.due(), Some(now + BUSY_RETRY));
        f.tick(now + BUSY_RETRY, entries.values(), |a| entries.get(a));
        flush(&mut f, &entries);
        let (loaded, problems) = load(&path).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(loaded, entries);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_write_appends_only_the_changed_lines_to_the_same_file() {
        let d = dir("append");
        let path = d.join("state");
        let (mut f, mut entries) = written(&path, 100);
        let (inode, before) = (ino(&path), len(&path));
        // One changed, one new: two lines appended, nothing else touched.
        let mut changed = host(7);
        changed.port = 9;
        let new = host(500);
        let now = Instant::now();
        for e in [&changed, &new] {
            entries.insert(e.addr, e.clone());
            f.changed(e.addr, now);
        }
        flush(&mut f, &entries);
        assert_eq!(ino(&path), inode, "the file was replaced");
        let text = std::fs::read(&path).unwrap();
        let tail = std::str::from_utf8(&text[before as usize..]).unwrap();
        let mut got: Vec<&str> = tail.split_inclusive('\n').collect();
        got.sort();
        let mut want = [state::render_entry(&changed), state::render_entry(&new)];
        want.sort();
        assert_eq!(got, want);
        // One gone: an `end` record, and the removal survives a reload.
        let before = len(&path);
        entries.remove(&host(3).addr);
        f.changed(host(3).addr, now);
        flush(&mut f, &entries);
        assert_eq!(ino(&path), inode);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut end = String::new();
        state::render_end_into(&mut end, &host(3).addr);
        assert_eq!(&text[before as usize..], end);
        let (loaded, problems) = load(&path).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(loaded, entries);
        // An entry that was never written goes with no record; nothing
        // changed, nothing written.
        let before = len(&path);
        f.changed(host(900).addr, now);
        flush(&mut f, &entries);
        assert_eq!((ino(&path), len(&path)), (inode, before));
        // The command line's `save` rewrites it compact.
        save(&path, entries.values()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            state::render(entries.values())
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_file_is_rewritten_compact_once_dead_lines_pass_live_ones() {
        let d = dir("compact");
        let path = d.join("state");
        let mut f = StateFile::new(path.clone());
        f.copy.as_mut().unwrap().floor = 4096;
        f.start_writer();
        let mut entries: BTreeMap<Cidr, Entry> = (0..50).map(|i| (host(i).addr, host(i))).collect();
        f.changed_all(Instant::now());
        flush(&mut f, &entries);
        let live = len(&path);
        let mut inode = ino(&path);
        // Growth alone leaves nothing dead: appended, never rewritten.
        for i in 50..150 {
            entries.insert(host(i).addr, host(i));
            f.changed(host(i).addr, Instant::now());
            flush(&mut f, &entries);
        }
        assert_eq!(ino(&path), inode, "a growing file was rewritten");
        assert_eq!(len(&path), state::render(entries.values()).len() as u64);
        // Changes and removals: appended until the dead bytes pass the live
        // ones (and the floor), then rewritten: the live lines only.
        let mut appends = 0;
        let mut round = 0u16;
        while ino(&path) == inode {
            round += 1;
            assert!(round < 1000, "never rewritten");
            let before = len(&path);
            for i in 0..20 {
                let e = entries.get_mut(&host(i).addr).unwrap();
                e.port = round;
                f.changed(e.addr, Instant::now());
            }
            let gone = host(150 - u32::from(round));
            entries.remove(&gone.addr);
            f.changed(gone.addr, Instant::now());
            flush(&mut f, &entries);
            if ino(&path) == inode {
                appends += 1;
                assert!(len(&path) > before);
                // Never more dead than live (or the floor), before the
                // write that would pass it.
                let live_now = state::render(entries.values()).len() as u64;
                assert!(len(&path) - live_now <= live_now.max(4096));
            }
        }
        assert!(appends > 5, "{appends} appends before the rewrite");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, state::render(entries.values()));
        assert!(!text.contains("\nend "), "{text}");
        assert!(live < 2 * len(&path));
        // And appended to again after it.
        inode = ino(&path);
        f.changed(host(0).addr, Instant::now());
        flush(&mut f, &entries);
        assert_eq!(ino(&path), inode);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_file_replaced_or_touched_behind_the_writers_back_is_rewritten_not_appended_to() {
        let d = dir("behind");
        let path = d.join("state");
        let (mut f, mut entries) = written(&path, 20);
        let ours = d.join("ours");
        let foreign = state::render([&entry("198.51.100.1")]);
        let mut n = 100;
        // Each way the file at the path stops being the one written.
        let ways: [(&str, &dyn Fn()); 6] = [
            ("replaced", &|| {
                std::fs::rename(&path, &ours).unwrap();
                std::fs::write(&path, &foreign).unwrap();
            }),
            ("removed", &|| std::fs::remove_file(&path).unwrap()),
            ("a symbolic link", &|| {
                std::fs::rename(&path, &ours).unwrap();
                std::os::unix::fs::symlink(&ours, &path).unwrap();
            }),
            ("given a second name", &|| {
                let _ = std::fs::remove_file(&ours);
                std::fs::hard_link(&path, &ours).unwrap();
            }),
            ("appended to", &|| {
                use std::io::Write as _;
                let mut o = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .unwrap();
                o.write_all(b"# a note\n").unwrap();
            }),
            ("made writable by others", &|| {
                use std::os::unix::fs::PermissionsExt;
                let p = std::fs::Permissions::from_mode(0o666);
                std::fs::set_permissions(&path, p).unwrap();
            }),
        ];
        for (how, touch) in ways {
            let _ = std::fs::remove_file(&ours);
            touch();
            let old = std::fs::symlink_metadata(&ours).ok().map(|m| {
                use std::os::unix::fs::MetadataExt;
                (m.ino(), m.len())
            });
            n += 1;
            entries.insert(host(n).addr, host(n));
            f.changed(host(n).addr, Instant::now());
            flush(&mut f, &entries);
            let m = std::fs::symlink_metadata(&path).unwrap();
            assert!(m.file_type().is_file(), "{how}");
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                state::render(entries.values()),
                "{how}"
            );
            // What was at the path, or had our file's inode, got nothing.
            if let Some((ino_then, len_then)) = old {
                use std::os::unix::fs::MetadataExt;
                let m = std::fs::symlink_metadata(&ours).unwrap();
                assert_eq!((m.ino(), m.len()), (ino_then, len_then), "{how}");
            }
            // Ours again: the next write appends.
            let inode = ino(&path);
            n += 1;
            entries.insert(host(n).addr, host(n));
            f.changed(host(n).addr, Instant::now());
            flush(&mut f, &entries);
            assert_eq!(ino(&path), inode, "{how}");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_failed_append_is_retried_as_a_rewrite() {
        let d = dir("append-fails");
        let path = d.join("state");
        // The loop writes (no thread): its copy is at hand.
        let mut f = StateFile::new(path.clone());
        let mut entries: BTreeMap<Cidr, Entry> = (0..10).map(|i| (host(i).addr, host(i))).collect();
        let t0 = Instant::now();
        f.changed_all(t0);
        flush(&mut f, &entries);
        let inode = ino(&path);
        // The descriptor it appends to refuses writes (as a full disk or an
        // I/O error would): the same file, opened read-only.
        let copy = f.copy.as_mut().unwrap();
        copy.file.as_mut().unwrap().file = File::open(&path).unwrap();
        entries.insert(host(20).addr, host(20));
        f.changed(host(20).addr, t0);
        flush(&mut f, &entries);
        let retry = f.due().expect("a retry");
        assert!(retry >= t0 + RETRY, "{retry:?}");
        assert_eq!(ino(&path), inode);
        assert!(!load(&path).unwrap().0.contains_key(&host(20).addr));
        // The retry rewrites the file with everything, and appends after.
        entries.insert(host(21).addr, host(21));
        f.changed(host(21).addr, t0);
        f.tick(retry, entries.values(), |a| entries.get(a));
        assert_ne!(ino(&path), inode, "the retry appended");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            state::render(entries.values())
        );
        let inode = ino(&path);
        entries.insert(host(22).addr, host(22));
        f.changed(host(22).addr, retry);
        flush(&mut f, &entries);
        assert_eq!(ino(&path), inode);
        assert_eq!(load(&path).unwrap().0, entries);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_torn_last_append_loses_only_that_record_and_the_next_daemon_rewrites_the_file() {
        let d = dir("torn");
        let path = d.join("state");
        let (mut f, mut entries) = written(&path, 10);
        let whole = len(&path);
        let mut changed = host(4);
        changed.port = 9;
        entries.insert(changed.addr, changed.clone());
        f.changed(changed.addr, Instant::now());
        flush(&mut f, &entries);
        drop(f);
        // Killed in the middle of that append: half the line made it.
        let appended = len(&path) - whole;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(whole + appended / 2)
            .unwrap();
        let (loaded, problems) = load(&path).unwrap();
        assert_eq!(loaded.len(), 10);
        assert_eq!(loaded[&changed.addr], host(4), "the torn line counted");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains(":13: the file ends in the middle of this line")
                || problems[0].contains(":13: no checksum"),
            "{problems:?}"
        );
        // The next daemon's first write (its restore's) rewrites the file:
        // nothing is appended after a torn line.
        let mut f = StateFile::new(path.clone());
        f.start_writer();
        f.changed_all(Instant::now());
        flush(&mut f, &loaded);
        let (again, problems) = load(&path).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(again, loaded);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn leftovers_of_dead_writers_go_and_nothing_else() {
        let d = dir("left");
        std::fs::create_dir_all(&d).unwrap();
        let state = d.join("state");
        // A pid that is not running: above the kernel's pid_max.
        let dead = d.join(".state.tmp.4194305");
        let mine = d.join(format!(".state.tmp.{}", std::process::id()));
        let other = d.join(".other.tmp.4194305");
        let odd = d.join(".state.tmp.x");
        for f in [&dead, &mine, &other, &odd, &state] {
            std::fs::write(f, "x").unwrap();
        }
        let linked = d.join(".state.tmp.4194306");
        std::os::unix::fs::symlink(&state, &linked).unwrap();
        assert_eq!(remove_leftovers(&state), vec![dead.clone()]);
        for f in [&mine, &other, &odd, &state, &linked] {
            assert!(
                std::fs::symlink_metadata(f).is_ok(),
                "{} removed",
                f.display()
            );
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}
