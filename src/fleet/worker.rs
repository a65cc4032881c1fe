//! worker: the fleet thread. It owns the HTTP client and the queue of
//! alerts; the event loop sends it bans (`ToFleet`) and reads what it found
//! (`FromFleet`) when the wake socket is readable. A LAPI that is down,
//! slow or answering garbage only ever delays this thread: a local ban
//! never waits for it.
//!
//! Push: alerts are sent in batches, retried with a backoff that doubles up
//! to five minutes, the queue (at most `queue_size`, the oldest dropped and
//! counted) kept in a file beside the state file after each change, so it
//! survives a restart. Pull: `startup=true` first and after any failure (a
//! full re-sync), then the changes every `pull_interval`.

use std::collections::VecDeque;
use std::io::Write as _;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use super::client::{CallError, Client};
use super::lapi::{self, BanReport, Skip};
use super::secrets::Secrets;
use crate::config::CrowdSec;
use crate::logging::Gate;

/// Alerts per POST.
const BATCH: usize = 50;
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Errors of one kind are logged at most this often.
const ERROR_LINES: Duration = Duration::from_secs(60);
/// Largest queue file read back.
const QUEUE_FILE_MAX: u64 = 256 * 1024 * 1024;

/// From the event loop to the fleet thread.
#[derive(Debug)]
pub enum ToFleet {
    /// A local ban to push.
    Ban(BanReport),
    /// Delete the decisions on this address fleet-wide (`unblock --fleet`).
    Delete(crate::cidr::Cidr),
}

/// From the fleet thread to the event loop.
#[derive(Debug)]
pub enum FromFleet {
    /// A stream answer: `full` replaces everything held.
    Decisions {
        full: bool,
        new: Vec<lapi::Usable>,
        deleted: Vec<i64>,
        skipped: Vec<(Skip, String)>,
    },
    Status(FleetStatus),
}

/// What `status` shows of the LAPI.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetStatus {
    /// Seconds since the epoch of the last successful push and pull.
    pub last_push: Option<u64>,
    pub last_pull: Option<u64>,
    /// The last pull (or push, without pull) succeeded.
    pub reachable: bool,
    pub queued: usize,
    pub pushed: u64,
    /// Alerts dropped because the queue was full.
    pub dropped: u64,
    pub push_errors: u64,
    pub pull_errors: u64,
    pub last_error: Option<String>,
}

/// The event loop's end of the fleet thread.
pub struct Fleet {
    tx: Sender<ToFleet>,
    rx: Receiver<FromFleet>,
    wake: UnixStream,
}

impl Fleet {
    /// Starts the thread; `queue_file` keeps unsent alerts (none: in memory
    /// only). Call after the privilege drop: the thread inherits it.
    pub fn start(
        cfg: &CrowdSec,
        secrets: &Secrets,
        queue_file: Option<PathBuf>,
    ) -> Result<Fleet, String> {
        let client = Client::new(cfg, secrets)?;
        let (tx, worker_rx) = mpsc::channel();
        let (worker_tx, rx) = mpsc::channel();
        let (wake, worker_wake) =
            UnixStream::pair().map_err(|e| format!("fleet thread socket: {e}"))?;
        wake.set_nonblocking(true)
            .and_then(|()| worker_wake.set_nonblocking(true))
            .map_err(|e| format!("fleet thread socket: {e}"))?;
        let mut w = Worker {
            cfg: cfg.clone(),
            client,
            rx: worker_rx,
            tx: worker_tx,
            wake: worker_wake,
            queue: VecDeque::new(),
            queue_file,
            status: FleetStatus::default(),
            need_full: true,
            next_pull: Instant::now(),
            next_push: Instant::now(),
            backoff: BACKOFF_MIN,
            push_lines: Gate::new(ERROR_LINES),
            pull_lines: Gate::new(ERROR_LINES),
        };
        w.load_queue();
        std::thread::Builder::new()
            .name("nftsentry-fleet".into())
            .spawn(move || w.run())
            .map_err(|e| format!("starting the fleet thread: {e}"))?;
        Ok(Fleet { tx, rx, wake })
    }

    /// Never blocks: the thread takes it when it can.
    pub fn send(&self, m: ToFleet) {
        let _ = self.tx.send(m);
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// What the thread sent since the last call.
    pub fn drain(&mut self) -> Vec<FromFleet> {
        let mut buf = [0u8; 256];
        while matches!(std::io::Read::read(&mut self.wake, &mut buf), Ok(n) if n > 0) {}
        self.rx.try_iter().collect()
    }
}

struct Worker {
    cfg: CrowdSec,
    client: Client,
    rx: Receiver<ToFleet>,
    tx: Sender<FromFleet>,
    wake: UnixStream,
    queue: VecDeque<BanReport>,
    queue_file: Option<PathBuf>,
    status: FleetStatus,
    need_full: bool,
    next_pull: Instant,
    next_push: Instant,
    backoff: Duration,
    push_lines: Gate,
    pull_lines: Gate,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Worker {
    fn run(mut self) {
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            if self.cfg.pull {
                due.push(self.next_pull);
            }
            if self.cfg.push && !self.queue.is_empty() {
                due.push(self.next_push);
            }
            let wait = due
                .into_iter()
                .min()
                .map_or(Duration::from_secs(3600), |t| {
                    t.saturating_duration_since(now)
                });
            let first = match self.rx.recv_timeout(wait) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                // The daemon is gone: the queue is on disk already.
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut changed = false;
            for m in first
                .into_iter()
                .chain(self.rx.try_iter().collect::<Vec<_>>())
            {
                match m {
                    ToFleet::Ban(r) => {
                        if self.cfg.push {
                            if self.queue.len() >= self.cfg.queue_size {
                                self.queue.pop_front();
                                self.status.dropped += 1;
                            }
                            self.queue.push_back(r);
                            changed = true;
                        }
                    }
                    ToFleet::Delete(addr) => {
                        self.delete(addr);
                        // The deletion comes back in the next pull: now.
                        self.next_pull = Instant::now();
                    }
                }
            }
            if changed {
                self.save_queue();
                self.report();
            }
            let now = Instant::now();
            if self.cfg.push && !self.queue.is_empty() && now >= self.next_push {
                self.push();
            }
            if self.cfg.pull && Instant::now() >= self.next_pull {
                self.pull();
                self.next_pull = Instant::now() + self.cfg.pull_interval;
            }
        }
    }

    fn report(&mut self) {
        self.status.queued = self.queue.len();
        self.send(FromFleet::Status(self.status.clone()));
    }

    fn send(&mut self, m: FromFleet) {
        if self.tx.send(m).is_ok() {
            let _ = self.wake.write(&[1]);
        }
    }

    fn push(&mut self) {
        while !self.queue.is_empty() {
            let n = self.queue.len().min(BATCH);
            let alerts: Vec<_> = self
                .queue
                .iter()
                .take(n)
                .map(|r| lapi::alert(r, &self.cfg.scenario, &self.cfg.machine_id))
                .collect();
            match self.client.push(&alerts) {
                Ok(()) => {
                    self.queue.drain(..n);
                    self.status.pushed += n as u64;
                    self.status.last_push = Some(now_secs());
                    if !self.cfg.pull {
                        self.status.reachable = true;
                    }
                    if self.backoff > BACKOFF_MIN {
                        log_notice!(
                            "adminalert: crowdsec: alerts pushed again to {} ({} waiting)",
                            self.cfg.url,
                            self.queue.len()
                        );
                    }
                    self.backoff = BACKOFF_MIN;
                    self.save_queue();
                }
                Err(e) => {
                    self.status.push_errors += 1;
                    let wait = self.backoff;
                    self.next_push = Instant::now() + wait;
                    self.backoff = (wait * 2).min(BACKOFF_MAX);
                    let queued = self.queue.len();
                    self.error(
                        true,
                        &e,
                        &format!("{queued} alerts kept, next try in {}s", wait.as_secs()),
                    );
                    break;
                }
            }
        }
        self.report();
    }

    fn pull(&mut self) {
        let full = self.need_full;
        match self
            .client
            .stream(full, &self.cfg.origins, &self.cfg.scenarios)
        {
            Ok(s) => {
                let mut new = Vec::new();
                let mut skipped = Vec::new();
                for d in s.new.unwrap_or_default() {
                    match d.usable() {
                        Ok(u) => new.push(u),
                        Err(why) => {
                            skipped.push((why, format!("{}:{} ({})", d.scope, d.value, d.kind)))
                        }
                    }
                }
                let deleted = s.deleted.unwrap_or_default().iter().map(|d| d.id).collect();
                if full && self.status.pull_errors > 0 && !self.status.reachable {
                    log_notice!(
                        "adminalert: crowdsec: Local API {} reachable again; full re-sync",
                        self.cfg.url
                    );
                }
                self.need_full = false;
                self.status.reachable = true;
                self.status.last_pull = Some(now_secs());
                self.send(FromFleet::Decisions {
                    full,
                    new,
                    deleted,
                    skipped,
                });
            }
            Err(e) => {
                self.need_full = true;
                self.status.reachable = false;
                self.status.pull_errors += 1;
                self.error(false, &e, "decisions in force stay until they expire");
            }
        }
        self.report();
    }

    fn delete(&mut self, addr: crate::cidr::Cidr) {
        match self.client.delete(&addr) {
            Ok(n) => {
                log_notice!("adminalert: crowdsec: {n} decisions on {addr} deleted fleet-wide")
            }
            Err(e) => log_error!(
                "adminalert: ERROR: crowdsec: deleting the decisions on {addr} fleet-wide: {e}"
            ),
        }
    }

    /// One line per kind a minute at most, with the count of the others.
    fn error(&mut self, push: bool, e: &CallError, then: &str) {
        self.status.last_error = Some(e.message.clone());
        let gate = if push {
            &mut self.push_lines
        } else {
            &mut self.pull_lines
        };
        let suffix = match gate.admit(Instant::now()) {
            None => return,
            Some(0) => String::new(),
            Some(n) => format!(" ({n} more errors since the last report)"),
        };
        log_error!(
            "adminalert: ERROR: crowdsec: Local API {}: {e}; {then}{suffix}",
            self.cfg.url
        );
    }

    fn load_queue(&mut self) {
        let Some(path) = &self.queue_file else {
            return;
        };
        // Beside the state file, where only root and the service write; a
        // link or a file planted there is refused, never read through.
        let text = match crate::files::read_private(path, QUEUE_FILE_MAX) {
            Ok(Some(t)) => t,
            Ok(None) => return,
            Err(e) => {
                log_warning!(
                    "adminalert: WARNING: crowdsec: the alert queue {} cannot be read ({e}); starting empty",
                    path.display()
                );
                return;
            }
        };
        let mut bad = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<BanReport>(line) {
                Ok(r) => self.queue.push_back(r),
                Err(_) => bad += 1,
            }
        }
        while self.queue.len() > self.cfg.queue_size {
            self.queue.pop_front();
            self.status.dropped += 1;
        }
        if bad > 0 {
            log_warning!(
                "adminalert: WARNING: crowdsec: {bad} unreadable lines of {} skipped",
                path.display()
            );
        }
        if !self.queue.is_empty() {
            log_notice!(
                "adminalert: crowdsec: {} alerts not pushed before the restart are queued",
                self.queue.len()
            );
        }
        self.status.queued = self.queue.len();
    }

    fn save_queue(&mut self) {
        let Some(path) = &self.queue_file else {
            return;
        };
        let mut text = String::new();
        for r in &self.queue {
            if let Ok(l) = serde_json::to_string(r) {
                text.push_str(&l);
                text.push('\n');
            }
        }
        let how = crate::files::Replace {
            mode: 0o600,
            owner: None,
            infix: ".tmp",
            make_dir: false,
        };
        if let Err(e) = crate::files::replace(path, text.as_bytes(), &how) {
            self.status.last_error = Some(format!("writing {}: {e}", path.display()));
            if self.push_lines.admit(Instant::now()).is_some() {
                log_error!(
                    "adminalert: ERROR: crowdsec: writing the alert queue {}: {e}",
                    path.display()
                );
            }
        }
    }
}
