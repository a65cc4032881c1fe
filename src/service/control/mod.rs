//! control: the daemon's control socket (a Unix stream socket, by default
//! /run/nftsentry/control) and its client. The daemon is the table's one
//! writer, so `list`, `block`, `unblock`, `flush`, `status` and `reload`
//! from the command line go to it when it runs.
//!
//! Wire format, one exchange per connection: the client sends one line of
//! words (`block 192.0.2.7 3600`) and closes its writing side; the daemon
//! answers with a line holding an exit code and the length of the text,
//! then the text to print, and closes. (Daemons before the length sent the
//! code alone; the client takes both.)
//!
//! Who may connect is the socket file's mode (0660, owned by the daemon's
//! user and group). Who may change state (`block`, `unblock`, `flush`,
//! `reload`) is decided per connection from the peer's credentials
//! (`SO_PEERCRED`, `SO_PEERGROUPS`): root, or a member of the configured
//! group (`Access`), never the daemon's own user unless it is root.
//!
//! The server never blocks on a client: it reads what has come, answers
//! one request per turn of the loop, writes what the socket takes and waits
//! for POLLOUT for the rest; a client that has not sent its line within
//! `REQUEST_TIMEOUT`, or not taken its answer within `REPLY_TIMEOUT`, is
//! dropped. The client reads at most the amount its caller allows, within
//! one total deadline, and strips control characters from the answer.
//!
//! Knows nothing of what the commands do: the daemon hands in a handler.

mod client;
pub use client::request;

use crate::cidr::Cidr;
use std::borrow::Cow;
use std::io::{ErrorKind, Read};
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::PollFlags;
use nix::sys::socket::{MsgFlags, getsockopt, send, sockopt};

use crate::error::{Error, Kind, Result};
use crate::logging::Gate;

/// The longest request line: commands are a few words.
const MAX_REQUEST: usize = 4096;
/// A client that has not sent its line this long after it connected is
/// dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// A client that has not taken its whole answer this long after the answer
/// was ready is dropped. A client that reads as it should takes the list of
/// two full sets of the default size (24 MiB at most) in milliseconds.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Clients connected and not yet answered, at most; more wait in the
/// listen backlog.
const MAX_PENDING: usize = 16;
/// Clients answered that have not taken all of their answer yet, at most
/// (apart from those): a further `list` is told the daemon is busy, and a
/// further answer the socket does not take at once is dropped.
const MAX_WRITING: usize = 64;
/// Bytes of answers still to be written, at most, before a further `list`
/// is answered with "busy" instead of a new copy of the list: clients that
/// do not read cannot make the daemon hold many copies of a long list.
const MAX_PENDING_BYTES: usize = 16 << 20;
/// How often refused requests are logged, at most.
const REFUSED_INTERVAL: Duration = Duration::from_secs(60);

/// One request, as the command line sends it and the daemon serves it.
/// On the wire: one line of words (`block 192.0.2.7 3600`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Status {
        json: bool,
    },
    /// The metrics in Prometheus' text format (`metrics_listen`'s text).
    Metrics,
    /// Why `addr` is banned, or why not.
    Why {
        addr: IpAddr,
        json: bool,
    },
    List {
        json: bool,
    },
    /// Ban `addr` (an address or a prefix) for `secs` seconds.
    Block {
        addr: Cidr,
        secs: u64,
    },
    /// Lift the ban on `addr` (an address or a prefix); `fleet`: delete
    /// its decisions on the Local API too.
    Unblock {
        addr: Cidr,
        fleet: bool,
    },
    Flush,
    Reload,
}

impl Request {
    /// The request of one line; the error is the reply's text.
    pub fn parse(line: &str) -> std::result::Result<Request, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let json = |args: &[&str]| args.contains(&"--json");
        let addr = |cmd: &str, a: &str| {
            a.parse::<Cidr>()
                .map_err(|_| format!("{cmd}: `{a}` is not an address or prefix"))
        };
        match words.as_slice() {
            [] => Err("empty request".into()),
            ["status", args @ ..] => Ok(Request::Status { json: json(args) }),
            ["metrics"] => Ok(Request::Metrics),
            ["why", a, args @ ..] => Ok(Request::Why {
                addr: a
                    .parse::<IpAddr>()
                    .map_err(|_| format!("why: `{a}` is not an address"))?,
                json: json(args),
            }),
            ["list", args @ ..] => Ok(Request::List { json: json(args) }),
            ["block", a, secs] => match (a.parse::<Cidr>(), secs.parse::<u64>()) {
                (Ok(addr), Ok(secs)) => Ok(Request::Block { addr, secs }),
                _ => Err(format!("block: bad arguments {a} {secs}")),
            },
            ["unblock", a] => Ok(Request::Unblock {
                addr: addr("unblock", a)?,
                fleet: false,
            }),
            ["unblock", "--fleet", a] => Ok(Request::Unblock {
                addr: addr("unblock", a)?,
                fleet: true,
            }),
            ["flush"] => Ok(Request::Flush),
            ["reload"] => Ok(Request::Reload),
            [cmd, ..] => Err(format!("unknown control command `{cmd}`")),
        }
    }

    /// Its line on the wire.
    pub fn line(&self) -> String {
        let flag = |json: bool| if json { " --json" } else { "" };
        match self {
            Request::Status { json } => format!("status{}", flag(*json)),
            Request::Metrics => "metrics".into(),
            Request::Why { addr, json } => format!("why {addr}{}", flag(*json)),
            Request::List { json } => format!("list{}", flag(*json)),
            Request::Block { addr, secs } => format!("block {addr} {secs}"),
            Request::Unblock { addr, fleet } => {
                format!("unblock {}{addr}", if *fleet { "--fleet " } else { "" })
            }
            Request::Flush => "flush".into(),
            Request::Reload => "reload".into(),
        }
    }

    /// Its command's name.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status { .. } => "status",
            Request::Metrics => "metrics",
            Request::Why { .. } => "why",
            Request::List { .. } => "list",
            Request::Block { .. } => "block",
            Request::Unblock { .. } => "unblock",
            Request::Flush => "flush",
            Request::Reload => "reload",
        }
    }

    /// Whether it changes the daemon's state (bans, configuration): only
    /// for root and the control group. `status`, `metrics` and `list`
    /// only read.
    pub fn changes_state(&self) -> bool {
        !matches!(
            self,
            Request::Status { .. } | Request::Metrics | Request::Why { .. } | Request::List { .. }
        )
    }
}

/// An answer: the exit code the client should end with and its output
/// (stdout when the code is 0, stderr otherwise).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u8,
    pub body: String,
}

impl Reply {
    pub fn ok(body: impl Into<String>) -> Reply {
        Reply {
            code: 0,
            body: body.into(),
        }
    }

    pub fn error(e: &Error) -> Reply {
        Reply {
            code: e.kind.exit_code() as u8,
            body: format!("{e}\n"),
        }
    }

    /// `CODE LENGTH\n` then the body of LENGTH bytes: a client can tell an
    /// answer cut short (a daemon that dropped it) from a whole one.
    fn encode(&self) -> Vec<u8> {
        let mut v = format!("{} {}\n", self.code, self.body.len()).into_bytes();
        v.extend_from_slice(self.body.as_bytes());
        v
    }

    /// The length `header` announces, or none (`CODE` alone, as daemons
    /// before the length sent it); the error says what is wrong.
    fn announced(header: &[u8]) -> std::result::Result<(u8, Option<usize>), String> {
        let text = String::from_utf8_lossy(header);
        let mut words = text.split_whitespace();
        let code = words.next().and_then(|w| w.parse().ok());
        let len = words.next().map(|w| w.parse::<usize>().ok());
        match (code, len, words.next()) {
            (Some(code), None, None) => Ok((code, None)),
            (Some(code), Some(Some(len)), None) => Ok((code, Some(len))),
            _ => Err(format!(
                "the answer does not start with an exit code and a length, but with {:?}",
                printable(&text)
            )),
        }
    }

    /// The answer in `bytes`, its text made printable (see `printable`).
    fn decode(bytes: &[u8]) -> std::result::Result<Reply, String> {
        let Some(end) = bytes.iter().position(|&b| b == b'\n') else {
            return Err("the daemon closed the connection without an answer".into());
        };
        let (code, len) = Reply::announced(&bytes[..end])?;
        let body = &bytes[end + 1..];
        match len {
            Some(len) if body.len() < len => {
                return Err(format!(
                    "the answer was cut short: {} of {len} bytes came (the daemon drops a client that does not take its answer within {}s)",
                    body.len(),
                    REPLY_TIMEOUT.as_secs()
                ));
            }
            Some(len) if body.len() > len => {
                return Err(format!(
                    "the answer is longer than the {len} bytes it announced"
                ));
            }
            _ => {}
        }
        Ok(Reply {
            code,
            body: printable(&String::from_utf8_lossy(body)).into_owned(),
        })
    }
}

/// `text` without control characters but newline and tab: what another
/// process sent cannot move the cursor, retitle or reprogram the terminal
/// it is printed on (escape sequences lose their ESC, CSI and OSC bytes,
/// carriage returns cannot overwrite a line).
pub fn printable(text: &str) -> Cow<'_, str> {
    let keep = |c: char| !c.is_control() || c == '\n' || c == '\t';
    if text.chars().all(keep) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.chars().filter(|&c| keep(c)).collect())
    }
}

/// Who is at the other end of a connection, as the kernel recorded it
/// when the client connected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
    /// Its supplementary groups (`SO_PEERGROUPS`, Linux 4.13 and later;
    /// empty on older kernels, where only `gid` counts).
    pub groups: Vec<u32>,
}

/// SO_PEERGROUPS, which the libc crate does not have for every target.
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const SO_PEERGROUPS: nix::libc::c_int = 0x3d;
#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
const SO_PEERGROUPS: nix::libc::c_int = 59;
/// Linux's NGROUPS_MAX.
const NGROUPS_MAX: usize = 65_536;

/// The supplementary groups of the process that connected `fd`, or none
/// if the kernel cannot tell (before 4.13).
fn peer_groups(fd: BorrowedFd<'_>) -> Vec<u32> {
    let mut groups: Vec<nix::libc::gid_t> = vec![0; 64];
    loop {
        let mut len =
            (groups.len() * std::mem::size_of::<nix::libc::gid_t>()) as nix::libc::socklen_t;
        // SAFETY: the buffer holds `len` bytes, and the kernel writes at
        // most that many; it sets `len` to what it wrote or, on ERANGE, to
        // the size it needs.
        let r = unsafe {
            nix::libc::getsockopt(
                fd.as_raw_fd(),
                nix::libc::SOL_SOCKET,
                SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<nix::libc::gid_t>();
        if r == 0 {
            groups.truncate(n.min(groups.len()));
            return groups;
        }
        let errno = nix::errno::Errno::last();
        if errno == nix::errno::Errno::ERANGE && n > groups.len() && n <= NGROUPS_MAX {
            groups.resize(n, 0);
            continue;
        }
        return Vec::new();
    }
}

impl Peer {
    /// The credentials of `stream`'s peer; `None` if the kernel gives none.
    fn of(stream: &UnixStream) -> Option<Peer> {
        let cred = getsockopt(stream, sockopt::PeerCredentials).ok()?;
        Some(Peer {
            pid: cred.pid(),
            uid: cred.uid(),
            gid: cred.gid(),
            groups: peer_groups(stream.as_fd()),
        })
    }

    fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// Who may change state through the socket: root, and the members of
/// `group` (a name and its id) but the daemon's own user (`own_uid`),
/// which the programs it runs share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub group: Option<(String, u32)>,
    pub own_uid: u32,
}

impl Access {
    /// For a daemon running as its effective user now.
    pub fn new(group: Option<(String, u32)>) -> Access {
        Access {
            group,
            own_uid: nix::unistd::geteuid().as_raw(),
        }
    }

    pub fn admits(&self, peer: &Peer, req: &Request) -> bool {
        if !req.changes_state() || peer.uid == 0 {
            return true;
        }
        peer.uid != self.own_uid && self.group.as_ref().is_some_and(|(_, g)| peer.in_group(*g))
    }

    /// The answer to a request `admits` refused: who may.
    fn refusal(&self, peer: &Peer, req: &Request) -> Reply {
        let what = match req {
            Request::Reload => "reload the configuration",
            _ => "change bans",
        };
        let who = match &self.group {
            Some((name, _)) => format!("only root or members of group {name} may {what}"),
            None => format!("only root may {what} (control_group names a group that may too)"),
        };
        let own = if peer.uid == self.own_uid {
            format!(
                "; uid {} is the daemon's own user, which the programs it runs share, and is never let through",
                peer.uid
            )
        } else {
            String::new()
        };
        Reply::error(&Error::new(
            Kind::Privilege,
            format!("{}: permission denied: {who}{own}", req.name()),
        ))
    }
}

/// Where a client is in its exchange.
enum Stage {
    /// Reading its request line.
    Reading(Vec<u8>),
    /// Its line is in; waiting for its turn to be answered.
    Ready(String),
    /// Writing its answer, `sent` bytes of `out` are out (`out` may be
    /// shared with other clients that asked the same).
    Writing { out: Arc<[u8]>, sent: usize },
}

struct Client {
    stream: UnixStream,
    peer: Peer,
    stage: Stage,
    /// When it is dropped unless its exchange is over (none while it waits
    /// for its answer: that is the daemon's time, not its own).
    deadline: Instant,
}

/// What a step on a client came to.
enum Step {
    Wait,
    Done,
    Drop,
}

impl Client {
    /// Reads what it sent; `Done` once its line (or its end) is in.
    fn read(&mut self) -> Step {
        let Stage::Reading(buf) = &mut self.stage else {
            return Step::Wait;
        };
        let mut chunk = [0u8; 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.contains(&b'\n') {
                        break;
                    }
                    if buf.len() > MAX_REQUEST {
                        return Step::Drop;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Wait,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return Step::Drop,
            }
        }
        let text = String::from_utf8_lossy(buf);
        let line = text.lines().next().unwrap_or("").to_string();
        self.stage = Stage::Ready(line);
        Step::Done
    }

    /// Writes what the socket takes of its answer; `Done` once all is out.
    fn write(&mut self) -> Step {
        let Stage::Writing { out, sent } = &mut self.stage else {
            return Step::Wait;
        };
        // The answer comes after the lines its request wrote (a burst may
        // still hold them).
        if *sent == 0 {
            crate::logging::flush();
        }
        while *sent < out.len() {
            let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
            match send(self.stream.as_raw_fd(), &out[*sent..], flags) {
                Ok(0) => return Step::Drop,
                Ok(n) => *sent += n,
                Err(nix::errno::Errno::EAGAIN) => return Step::Wait,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return Step::Drop,
            }
        }
        Step::Done
    }
}

/// The listening socket and the clients being served.
pub struct ControlServer {
    path: PathBuf,
    listener: UnixListener,
    pending: Vec<Client>,
    refused_lines: Gate,
}

/// Whether a daemon answers on `path` (a leftover socket file of a killed
/// daemon refuses connections).
fn live(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
}

impl ControlServer {
    /// Listens on `path` (mode 0660). A socket file left by a killed daemon
    /// is replaced; one that a running daemon answers on is an error.
    pub fn bind(path: &Path) -> Result<ControlServer> {
        let shown = path.display();
        if let Some(dir) = path.parent() {
            if !dir.exists() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    Error::other(format!("control socket directory {}: {e}", dir.display()))
                })?;
                let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
            }
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) => {
                use std::os::unix::fs::FileTypeExt;
                if !m.file_type().is_socket() {
                    return Err(Error::other(format!(
                        "control socket {shown}: exists and is not a socket; remove it"
                    )));
                }
                if live(path) {
                    return Err(Error::other(format!(
                        "control socket {shown}: another nftsentry answers on it (two instances need different `control_socket` and `table`)"
                    )));
                }
                std::fs::remove_file(path)
                    .map_err(|e| Error::other(format!("control socket {shown}: {e}")))?;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::other(format!("control socket {shown}: {e}"))),
        }
        // Bound with a umask that leaves no window with wider permissions.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o117));
        let bound = UnixListener::bind(path);
        nix::sys::stat::umask(old);
        let listener = bound.map_err(|e| Error::other(format!("control socket {shown}: {e}")))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(|e| Error::other(format!("control socket {shown}: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::other(format!("control socket {shown}: {e}")))?;
        Ok(ControlServer {
            path: path.to_path_buf(),
            listener,
            pending: Vec::new(),
            refused_lines: Gate::new(REFUSED_INTERVAL),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What to poll, and for what: the listener while there is room for
    /// another client, clients sending their request (POLLIN), clients
    /// with an answer still to take (POLLOUT). A client waiting for its
    /// answer is not polled: `next_deadline` is then zero.
    pub fn fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        let mut v = Vec::new();
        if self.unanswered() < MAX_PENDING {
            v.push((self.listener.as_fd(), PollFlags::POLLIN));
        }
        for c in &self.pending {
            match c.stage {
                Stage::Reading(_) => v.push((c.stream.as_fd(), PollFlags::POLLIN)),
                Stage::Writing { .. } => v.push((c.stream.as_fd(), PollFlags::POLLOUT)),
                Stage::Ready(_) => {}
            }
        }
        v
    }

    /// The time until the next client must be served or dropped, if any:
    /// zero while a request waits for its answer.
    pub fn next_deadline(&self, now: Instant) -> Option<Duration> {
        self.pending
            .iter()
            .map(|c| match c.stage {
                Stage::Ready(_) => Duration::ZERO,
                _ => c.deadline.saturating_duration_since(now),
            })
            .min()
    }

    /// Accepts new clients, reads what they sent, writes what their
    /// sockets take of their answers, and answers one complete request with
    /// `handler` (one per call: the loop handles probes between two long
    /// answers; the same `status` or `list` from clients waiting at that
    /// moment gets the same answer). Never blocks on a client; drops those
    /// past their deadline.
    /// Requests that change state reach `handler` only from a peer that
    /// `access` admits; the others get exit status 77.
    pub fn serve(
        &mut self,
        now: Instant,
        access: &Access,
        mut handler: impl FnMut(&Request) -> Reply,
    ) {
        // Those done or past their deadline make room for new ones, which
        // may have sent their line already.
        self.step(now);
        if self.accept(now) {
            self.step(now);
        }
        let Some(i) = self
            .pending
            .iter()
            .position(|c| matches!(c.stage, Stage::Ready(_)))
        else {
            return;
        };
        let Stage::Ready(line) = &self.pending[i].stage else {
            return;
        };
        let line = line.clone();
        let peer = self.pending[i].peer.clone();
        let request = Request::parse(&line);
        let reply = self.answer(request.clone(), &peer, now, access, &mut handler);
        let out: Arc<[u8]> = reply.encode().into();
        // The same request to read from others waiting now: the same
        // answer, made once (one copy of a long list, however many ask).
        let shared = request.is_ok_and(|r| !r.changes_state());
        // The daemon's time (a long list, a reload) is not the client's.
        let deadline = now.max(Instant::now()) + REPLY_TIMEOUT;
        for (k, c) in self.pending.iter_mut().enumerate() {
            if k == i || (shared && matches!(&c.stage, Stage::Ready(l) if *l == line)) {
                c.deadline = deadline;
                c.stage = Stage::Writing {
                    out: out.clone(),
                    sent: 0,
                };
            }
        }
        // What the sockets take at once; the rest on POLLOUT.
        self.pending.retain_mut(|c| match c.stage {
            Stage::Writing { sent: 0, .. } => matches!(c.write(), Step::Wait),
            _ => true,
        });
        // Too many that do not take their answer: the newest go.
        while self.writing() > MAX_WRITING {
            let newest = (0..self.pending.len())
                .filter(|&k| matches!(self.pending[k].stage, Stage::Writing { .. }))
                .max_by_key(|&k| self.pending[k].deadline);
            match newest {
                Some(k) => drop(self.pending.swap_remove(k)),
                None => break,
            }
        }
    }

    /// Clients not answered yet: reading their request, or waiting.
    fn unanswered(&self) -> usize {
        self.pending.len() - self.writing()
    }

    /// Clients whose answer is being written.
    fn writing(&self) -> usize {
        self.pending
            .iter()
            .filter(|c| matches!(c.stage, Stage::Writing { .. }))
            .count()
    }

    /// Takes in waiting clients while there is room; whether any came.
    fn accept(&mut self, now: Instant) -> bool {
        let before = self.pending.len();
        while self.unanswered() < MAX_PENDING {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    // A peer the kernel gives no credentials for is no one
                    // we can admit or refuse: dropped.
                    let Some(peer) = Peer::of(&stream) else {
                        continue;
                    };
                    if stream.set_nonblocking(true).is_ok() {
                        self.pending.push(Client {
                            stream,
                            peer,
                            stage: Stage::Reading(Vec::new()),
                            deadline: now + REQUEST_TIMEOUT,
                        });
                    }
                }
                Err(_) => break, // WouldBlock, or one failed connection
            }
        }
        self.pending.len() > before
    }

    /// Reads requests and writes answers as far as the sockets let; drops
    /// the clients whose exchange is over or whose time is up.
    fn step(&mut self, now: Instant) {
        self.pending.retain_mut(|c| {
            let step = match c.stage {
                Stage::Reading(_) => c.read(),
                Stage::Writing { .. } => c.write(),
                Stage::Ready(_) => return true,
            };
            match step {
                Step::Drop => false,
                // Written out: closing it ends the exchange.
                Step::Done => !matches!(c.stage, Stage::Writing { .. }),
                Step::Wait => now < c.deadline,
            }
        });
    }

    /// The answer to one request line (`request`, parsed) from `peer`.
    fn answer(
        &mut self,
        request: std::result::Result<Request, String>,
        peer: &Peer,
        now: Instant,
        access: &Access,
        handler: &mut impl FnMut(&Request) -> Reply,
    ) -> Reply {
        match request {
            Err(why) => Reply {
                code: 64,
                body: format!("{why}\n"),
            },
            Ok(req) if !access.admits(peer, &req) => {
                if let Some(held) = self.refused_lines.admit(now) {
                    let more = match held {
                        0 => String::new(),
                        n => format!(" ({n} more refused since the last report)"),
                    };
                    log_warning!(
                        "adminalert: control socket: `{}` refused to uid {} gid {} (pid {}): not root or in control_group{more}",
                        req.name(),
                        peer.uid,
                        peer.gid,
                        peer.pid
                    );
                }
                access.refusal(peer, &req)
            }
            Ok(Request::List { .. })
                if self.unsent() >= MAX_PENDING_BYTES || self.writing() >= MAX_WRITING =>
            {
                Reply::error(&Error::other(format!(
                    "list: the daemon is busy: {} clients have not taken their answers yet ({} bytes); try again in a few seconds",
                    self.writing(),
                    self.unsent()
                )))
            }
            Ok(req) => handler(&req),
        }
    }

    /// Bytes of the answers still being written, each shared answer
    /// counted once and whole (what the daemon holds for them).
    fn unsent(&self) -> usize {
        let mut seen: Vec<*const u8> = Vec::new();
        let mut n = 0;
        for c in &self.pending {
            if let Stage::Writing { out, .. } = &c.stage {
                let at = out.as_ptr();
                if !seen.contains(&at) {
                    seen.push(at);
                    n += out.len();
                }
            }
        }
        n
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests;
