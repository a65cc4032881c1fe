//! watch: follows the host's neighbourhood after start (SLAAC, DHCP, a
//! VPN coming up, resolvconf rewriting resolv.conf). It listens to the
//! kernel's address, route and nexthop events (`kernel::rtnetlink_events`)
//! and to inotify on the resolver files and their directories, and after a
//! burst (quiet for `QUIET`, or `MAX_DELAY` after its first event) gathers
//! the local ignore entries again (`ignores::local_labelled`). The caller
//! polls the two descriptors and asks `poll` when `next_due` says; it gets
//! the new list only when it differs from the one in force.
//!
//! Work is bounded whatever the rate of events: each turn reads a bounded
//! number of datagrams and inotify records, an event that cannot change
//! the list (an address already on it added again, a route without a
//! gateway, such as a ban's blackhole route) is dropped at once, a burst
//! costs one gathering, and gatherings are spaced by ten times what the
//! last one took. A gathering that fails is tried again, backing off to
//! `MAX_RETRY`.
//!
//! Knows nothing of nftables or of the detector: it hands over a list.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use crate::detect::{IgnoreList, Ignored, networks};
use crate::error::{Error, Result};
use crate::host::ignores;
use crate::host::resolvers::ResolverFiles;
use crate::kernel::rtnetlink_events::{Change, RouteEvents};

/// A burst is over when nothing relevant came for this long.
pub const QUIET: Duration = Duration::from_millis(200);
/// A burst that goes on is looked at this long after its first event.
pub const MAX_DELAY: Duration = Duration::from_secs(1);
/// Gatherings are spaced by this many times what the last one took.
const SPACING: u32 = 10;
/// The first retry after a failure, and the longest.
const FIRST_RETRY: Duration = Duration::from_secs(1);
pub const MAX_RETRY: Duration = Duration::from_secs(60);
/// inotify reads per turn (each up to a few KiB of records).
const INOTIFY_READS: usize = 16;

/// What `poll` found.
#[derive(Debug)]
pub enum Polled {
    /// Nothing to do now.
    Idle,
    /// Gathered: the same list as the one in force.
    Unchanged,
    /// Gathered: a list that differs from the one in force. The caller
    /// puts it in force and says so with `applied`, or `failed`.
    Changed(Vec<Ignored>),
    /// The gathering failed; it is tried again later.
    Failed(Error),
}

/// Counters since start, for `status` and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Netlink datagrams and inotify records read.
    pub events: u64,
    /// Of those, the ones that could change the list.
    pub relevant: u64,
    pub gatherings: u64,
    pub failures: u64,
}

pub struct LocalWatch {
    files: ResolverFiles,
    route: RouteEvents,
    inotify: FileWatch,
    /// The local list in force, as hosts and as networks.
    applied: Vec<Ignored>,
    hosts: HashSet<IpAddr>,
    covered: IgnoreList,
    /// The burst being waited out: its first and its last relevant event.
    first: Option<Instant>,
    last: Option<Instant>,
    /// No gathering before this (spacing, or a retry's back-off).
    not_before: Option<Instant>,
    retry: Duration,
    /// What the last gathering skipped (unreadable files), for the caller.
    pub notes: Vec<String>,
    pub stats: Stats,
}

impl LocalWatch {
    /// Starts following, with `applied` the local list in force (as the
    /// last gathering found it). Events from now on are seen: the caller
    /// should gather after this, or have gathered just before (a change in
    /// between is a race the next event of any kind ends).
    pub fn open(files: ResolverFiles, applied: Vec<Ignored>) -> Result<LocalWatch> {
        let route = RouteEvents::open()?;
        let inotify = FileWatch::arm(&files)?;
        let mut w = LocalWatch {
            files,
            route,
            inotify,
            applied: Vec::new(),
            hosts: HashSet::new(),
            covered: IgnoreList::default(),
            first: None,
            last: None,
            not_before: None,
            retry: FIRST_RETRY,
            notes: Vec::new(),
            stats: Stats::default(),
        };
        w.applied(applied);
        Ok(w)
    }

    /// The descriptors to poll for reading.
    pub fn fds(&self) -> [BorrowedFd<'_>; 2] {
        [self.route.as_fd(), self.inotify.inotify.as_fd()]
    }

    /// The local list in force.
    pub fn current(&self) -> &[Ignored] {
        &self.applied
    }

    /// Reads what is pending on both descriptors (bounded) and notes a
    /// relevant change.
    pub fn on_ready(&mut self, now: Instant) {
        let (hosts, covered) = (&self.hosts, &self.covered);
        let mut relevant = 0u64;
        let datagrams = self.route.drain(|c| {
            let matters =
                match c {
                    // Added again (a lifetime renewed, DAD done): already there.
                    Change::Address { added: true, addr }
                    | Change::Gateway { added: true, addr } => !covered.contains(&addr),
                    // Gone: only an entry of its own can go with it.
                    Change::Address { added: false, addr }
                    | Change::Gateway { added: false, addr } => hosts.contains(&addr),
                    Change::Unknown => true,
                };
            relevant += u64::from(matters);
        });
        let (records, file_relevant) = self.inotify.drain();
        self.stats.events += (datagrams + records) as u64;
        self.stats.relevant += relevant + file_relevant;
        if relevant + file_relevant > 0 {
            self.mark(now);
        }
    }

    /// Something may have changed: gather after the burst.
    pub fn mark(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// When `poll` has work, if it has any.
    pub fn due_at(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        let at = (last + QUIET).min(first + MAX_DELAY);
        Some(self.not_before.map_or(at, |nb| at.max(nb)))
    }

    pub fn next_due(&self, now: Instant) -> Option<Duration> {
        self.due_at().map(|t| t.saturating_duration_since(now))
    }

    /// Gathers when a burst is over; see `Polled`.
    pub fn poll(&mut self, now: Instant) -> Polled {
        if self.due_at().is_none_or(|t| t > now) {
            return Polled::Idle;
        }
        self.first = None;
        self.last = None;
        self.stats.gatherings += 1;
        let started = Instant::now();
        // Watches first, then the files: a change after the read is seen.
        let armed = FileWatch::arm(&self.files).map(|w| self.inotify = w);
        self.notes.clear();
        let gathered =
            armed.and_then(|()| ignores::local_labelled_noting(&self.files, &mut self.notes));
        let took = started.elapsed();
        let end = Instant::now();
        match gathered {
            Ok(list) => {
                self.not_before = Some(end + took * SPACING);
                if list == self.applied {
                    self.retry = FIRST_RETRY;
                    Polled::Unchanged
                } else {
                    Polled::Changed(list)
                }
            }
            Err(e) => {
                self.stats.failures += 1;
                self.failed(end);
                Polled::Failed(e)
            }
        }
    }

    /// `list` is in force now.
    pub fn applied(&mut self, list: Vec<Ignored>) {
        self.hosts = list
            .iter()
            .filter(|i| i.net.prefix() == if i.net.is_ipv4() { 32 } else { 128 })
            .map(|i| i.net.addr())
            .collect();
        self.covered = IgnoreList::new(networks(&list));
        self.applied = list;
        self.retry = FIRST_RETRY;
    }

    /// Putting the last list in force failed (or gathering it did): try
    /// again later, each time waiting twice as long, up to `MAX_RETRY`.
    pub fn failed(&mut self, now: Instant) {
        self.mark(now);
        self.not_before = Some(now + self.retry);
        self.retry = (self.retry * 2).min(MAX_RETRY);
    }
}

/// Which names in a watched directory matter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Filter {
    Any,
    Names(Vec<OsString>),
}

/// inotify on the resolver files (their inodes: a write in place, also
/// through a bind mount such as `ip netns exec` makes of resolv.conf) and
/// on their directories, or the nearest one that exists (a file replaced
/// by a rename, a symlink changed, a directory created later).
struct FileWatch {
    inotify: Inotify,
    dirs: HashMap<WatchDescriptor, Filter>,
}

const DIR_EVENTS: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_CLOSE_WRITE)
    .union(AddWatchFlags::IN_ATTRIB)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF)
    .union(AddWatchFlags::IN_ONLYDIR);
const FILE_EVENTS: AddWatchFlags = AddWatchFlags::IN_MODIFY
    .union(AddWatchFlags::IN_CLOSE_WRITE)
    .union(AddWatchFlags::IN_ATTRIB)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF);

impl FileWatch {
    fn arm(files: &ResolverFiles) -> Result<FileWatch> {
        let fail = |e: nix::Error| Error::other(format!("inotify: {e}"));
        let inotify =
            Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).map_err(fail)?;
        let mut wanted: Vec<(PathBuf, Filter)> = Vec::new();
        let mut want = |dir: &Path, name: Option<OsString>| {
            let (dir, filter) = nearest_existing(dir, name);
            match wanted.iter_mut().find(|(d, _)| *d == dir) {
                Some((_, f)) => merge(f, filter),
                None => wanted.push((dir, filter)),
            }
        };
        let mut file_paths = Vec::new();
        for f in files.files() {
            let mut seen = vec![f.to_path_buf()];
            // A symlink's target may be replaced in its own directory.
            if let Ok(real) = std::fs::canonicalize(f) {
                if real != f {
                    seen.push(real);
                }
            }
            for p in seen {
                if let (Some(dir), Some(name)) = (p.parent(), p.file_name()) {
                    want(dir, Some(name.to_os_string()));
                }
                file_paths.push(p);
            }
        }
        let dir = &files.dnsmasq_dir;
        want(dir, None);
        if let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) {
            want(parent, Some(name.to_os_string()));
        }
        let mut dirs = HashMap::new();
        for (dir, filter) in wanted {
            // A directory that vanished meanwhile: the next gathering's
            // arm looks again.
            if let Ok(wd) = inotify.add_watch(&dir, DIR_EVENTS) {
                let f = dirs.entry(wd).or_insert(filter.clone());
                merge(f, filter);
            }
        }
        for p in file_paths {
            // Missing: its directory's watch says when it comes.
            let _ = inotify.add_watch(&p, FILE_EVENTS);
        }
        Ok(FileWatch { inotify, dirs })
    }

    /// Reads pending records (bounded): how many, and how many matter.
    fn drain(&mut self) -> (usize, u64) {
        let (mut records, mut relevant) = (0, 0);
        for _ in 0..INOTIFY_READS {
            let events = match self.inotify.read_events() {
                Ok(e) if !e.is_empty() => e,
                Ok(_) | Err(nix::Error::EAGAIN) => break,
                Err(nix::Error::EINTR) => continue,
                // Cannot read: look at everything.
                Err(_) => {
                    relevant += 1;
                    break;
                }
            };
            for e in events {
                records += 1;
                let matters = match (self.dirs.get(&e.wd), &e.name) {
                    (Some(Filter::Names(names)), Some(n)) => names.contains(n),
                    // A file's own watch, a directory's own event, an
                    // overflow (IN_Q_OVERFLOW), a watch removed (IN_IGNORED).
                    _ => true,
                };
                relevant += u64::from(matters);
            }
        }
        (records, relevant)
    }
}

fn merge(into: &mut Filter, other: Filter) {
    match (into, other) {
        (f @ Filter::Names(_), Filter::Any) => *f = Filter::Any,
        (Filter::Names(a), Filter::Names(b)) => {
            for n in b {
                if !a.contains(&n) {
                    a.push(n);
                }
            }
        }
        (Filter::Any, _) => {}
    }
}

/// `dir` if it is a directory, else its nearest ancestor that is, with the
/// name (in that ancestor) on the way to `dir`; `name` is the name wanted
/// in `dir` (`None`: any).
fn nearest_existing(dir: &Path, name: Option<OsString>) -> (PathBuf, Filter) {
    let mut dir = dir.to_path_buf();
    let mut name = name;
    while !dir.is_dir() {
        match (dir.parent(), dir.file_name()) {
            (Some(parent), Some(n)) => {
                name = Some(n.to_os_string());
                dir = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let filter = match name {
        Some(n) => Filter::Names(vec![n]),
        None => Filter::Any,
    };
    (dir, filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_existing_directory_and_the_name_towards_the_file() {
        let (d, f) = nearest_existing(Path::new("/"), Some("x".into()));
        assert_eq!(
            (d, f),
            (PathBuf::from("/"), Filter::Names(vec!["x".into()]))
        );
        let base = std::env::temp_dir();
        let (d, f) = nearest_existing(&base.join("nftsentry-no/such/dir"), Some("f".into()));
        assert_eq!(d, base);
        assert_eq!(f, Filter::Names(vec!["nftsentry-no".into()]));
        let (d, f) = nearest_existing(&base, None);
        assert_eq!((d, f), (base, Filter::Any));
    }

    #[test]
    fn filters_merge() {
        let mut f = Filter::Names(vec!["a".into()]);
        merge(&mut f, Filter::Names(vec!["b".into(), "a".into()]));
        assert_eq!(f, Filter::Names(vec!["a".into(), "b".into()]));
        merge(&mut f, Filter::Any);
        assert_eq!(f, Filter::Any);
        merge(&mut f, Filter::Names(vec!["c".into()]));
        assert_eq!(f, Filter::Any);
    }

    /// Files written in place, replaced by a rename, created in a directory
    /// that did not exist: each is an event that matters; a file of no
    /// interest beside them is not.
    #[test]
    fn file_watch_sees_writes_renames_and_late_directories() {
        let root = std::env::temp_dir().join(format!("nftsentry-fw-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("etc")).unwrap();
        let files = ResolverFiles::under(&root);
        std::fs::write(&files.resolv_conf, "nameserver 192.0.2.1\n").unwrap();
        let settle = |w: &mut FileWatch| w.drain();
        let mut w = FileWatch::arm(&files).unwrap();
        assert_eq!(settle(&mut w).1, 0);
        // Beside it: nothing that matters.
        std::fs::write(root.join("etc/hosts"), "x\n").unwrap();
        assert_eq!(settle(&mut w).1, 0);
        // In place.
        std::fs::write(&files.resolv_conf, "nameserver 192.0.2.2\n").unwrap();
        assert!(settle(&mut w).1 > 0);
        // Replaced by a rename.
        let tmp = root.join("etc/resolv.conf.new");
        std::fs::write(&tmp, "nameserver 192.0.2.3\n").unwrap();
        settle(&mut w);
        std::fs::rename(&tmp, &files.resolv_conf).unwrap();
        assert!(settle(&mut w).1 > 0);
        // /run/systemd/resolve does not exist: its nearest ancestor is
        // watched, and its creation matters.
        std::fs::create_dir_all(root.join("run/systemd/resolve")).unwrap();
        assert!(settle(&mut w).1 > 0);
        let mut w = FileWatch::arm(&files).unwrap();
        std::fs::write(&files.resolved_upstream, "nameserver 192.0.2.4\n").unwrap();
        assert!(settle(&mut w).1 > 0);
        // Any file of dnsmasq.d, once it exists.
        std::fs::create_dir_all(&files.dnsmasq_dir).unwrap();
        assert!(settle(&mut w).1 > 0);
        let mut w = FileWatch::arm(&files).unwrap();
        std::fs::write(files.dnsmasq_dir.join("x.conf"), "server=192.0.2.5\n").unwrap();
        assert!(settle(&mut w).1 > 0);
        let _ = std::fs::remove_dir_all(&root);
    }
}
