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

use crate::cidr::Cidr;
use std::borrow::Cow;
use std::net::IpAddr;

use std::io::{ErrorKind, Read, Write};
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

/// Sends `req` to the daemon on `path` and reads its answer: at most
/// `max_reply` bytes (more is an error), all within `timeout`. `Ok(None)`:
/// no daemon listens there (no socket file, or a leftover one), so the
/// caller acts itself. The answer's text has no control characters but
/// newline and tab (`printable`).
pub fn request(
    path: &Path,
    req: &Request,
    timeout: Duration,
    max_reply: usize,
) -> Result<Option<Reply>> {
    let shown = path.display();
    let deadline = Instant::now() + timeout;
    let mut stream = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            return Ok(None);
        }
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            return Err(Error::new(
                Kind::Privilege,
                format!(
                    "control socket {shown}: permission denied (run as root or as a member of the nftsentry service's group)"
                ),
            ));
        }
        Err(e) => return Err(Error::other(format!("control socket {shown}: {e}"))),
    };
    let io = |e: std::io::Error| Error::other(format!("control socket {shown}: {e}"));
    let late = || {
        Error::other(format!(
            "control socket {shown}: no complete answer from the daemon within {}s",
            timeout.as_secs()
        ))
    };
    let left = |deadline: Instant| {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    };
    stream
        .set_write_timeout(Some(left(deadline).ok_or_else(late)?))
        .map_err(io)?;
    stream
        .write_all(format!("{}\n", req.line()).as_bytes())
        .map_err(io)?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    // The length the first line announces, once it is in.
    let mut header: Option<usize> = None;
    loop {
        let rest = left(deadline).ok_or_else(late)?;
        stream.set_read_timeout(Some(rest)).map_err(io)?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                let start = answer.len();
                answer.extend_from_slice(&chunk[..n]);
                // A length announced beyond the cap is refused at once.
                if header.is_none() {
                    if let Some(i) = chunk[..n].iter().position(|&b| b == b'\n') {
                        let announced = Reply::announced(&answer[..start + i]);
                        header = Some(announced.ok().and_then(|(_, len)| len).unwrap_or(0));
                    }
                }
                if answer.len() > max_reply || header.is_some_and(|len| len > max_reply) {
                    return Err(Error::other(format!(
                        "control socket {shown}: the answer to `{}` is longer than {max_reply} bytes, the most this command reads; stopped reading (is it the nftsentry daemon that listens there?)",
                        req.name()
                    )));
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(late());
            }
            Err(e) => return Err(io(e)),
        }
    }
    Reply::decode(&answer)
        .map(Some)
        .map_err(|why| Error::other(format!("control socket {shown}: {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nftsentry-ctl-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("control")
    }

    /// Lets this test process change state, whoever runs the tests: its
    /// own group is the control group, and its uid is not the "daemon's".
    fn us() -> Access {
        Access {
            group: Some(("ours".into(), nix::unistd::getegid().as_raw())),
            own_uid: u32::MAX,
        }
    }

    const MAX: usize = 1 << 20;

    /// Serves on a thread until `n` requests were answered.
    fn server(path: &Path, n: usize) -> std::thread::JoinHandle<Vec<Request>> {
        let mut s = ControlServer::bind(path).unwrap();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let start = Instant::now();
            while seen.len() < n && start.elapsed() < Duration::from_secs(10) {
                s.serve(Instant::now(), &us(), |r| {
                    seen.push(r.clone());
                    match r {
                        Request::Flush => Reply::error(&Error::config("bad thing")),
                        _ => Reply::ok(format!("did {}\n", r.line())),
                    }
                });
                std::thread::sleep(Duration::from_millis(5));
            }
            seen
        })
    }

    #[test]
    fn round_trip_and_errors() {
        let path = temp_path("rt");
        let h = server(&path, 2);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let req = Request::parse("block 192.0.2.7 3600").unwrap();
        let r = request(&path, &req, Duration::from_secs(5), MAX)
            .unwrap()
            .unwrap();
        assert_eq!(r, Reply::ok("did block 192.0.2.7 3600\n"));
        let r = request(&path, &Request::Flush, Duration::from_secs(5), MAX)
            .unwrap()
            .unwrap();
        assert_eq!(r.code, 78);
        assert!(r.body.contains("bad thing"), "{r:?}");
        let seen = h.join().unwrap();
        assert_eq!(
            seen[0],
            Request::Block {
                addr: "192.0.2.7".parse().unwrap(),
                secs: 3600
            }
        );
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn no_daemon_means_none_and_a_stale_socket_is_replaced() {
        let path = temp_path("stale");
        assert_eq!(
            request(
                &path,
                &Request::parse("list").unwrap(),
                Duration::from_secs(1),
                MAX
            )
            .unwrap(),
            None
        );
        // A socket file whose listener is gone, as after kill -9.
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        assert_eq!(
            request(
                &path,
                &Request::parse("list").unwrap(),
                Duration::from_secs(1),
                MAX
            )
            .unwrap(),
            None
        );
        let s = ControlServer::bind(&path).unwrap();
        // A second daemon on the same path is refused while the first runs.
        let e = ControlServer::bind(&path).err().unwrap();
        assert!(e.to_string().contains("another nftsentry"), "{e}");
        drop(s);
        assert!(!path.exists(), "the socket file goes with the server");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn silent_and_oversized_clients_do_not_hold_the_server() {
        let path = temp_path("slow");
        let mut s = ControlServer::bind(&path).unwrap();
        let _silent = UnixStream::connect(&path).unwrap();
        let mut big = UnixStream::connect(&path).unwrap();
        big.write_all(&vec![b'x'; MAX_REQUEST + 10]).unwrap();
        let t0 = Instant::now();
        s.serve(t0, &us(), |_| Reply::ok(""));
        assert!(t0.elapsed() < Duration::from_millis(500), "serve blocked");
        assert_eq!(s.pending.len(), 1, "oversized dropped, silent waits");
        s.serve(t0 + REQUEST_TIMEOUT + Duration::from_secs(1), &us(), |_| {
            Reply::ok("")
        });
        assert!(s.pending.is_empty(), "silent client timed out");
        drop(s);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// A client that sent `line` and reads nothing.
    fn stalled(path: &Path, line: &str) -> UnixStream {
        let mut c = UnixStream::connect(path).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(line.as_bytes()).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        c
    }

    #[test]
    fn clients_that_never_read_their_answer_do_not_hold_the_server() {
        let path = temp_path("noread");
        let mut s = ControlServer::bind(&path).unwrap();
        // Far more than a socket buffer takes.
        let long = "x".repeat(4 << 20);
        let clients: Vec<_> = (0..MAX_PENDING).map(|_| stalled(&path, "list\n")).collect();
        let t0 = Instant::now();
        let mut answered = 0;
        for _ in 0..3 {
            s.serve(Instant::now(), &us(), |_| {
                answered += 1;
                Reply::ok(long.clone())
            });
        }
        let took = t0.elapsed();
        assert!(took < Duration::from_millis(500), "serve blocked {took:?}");
        // Asked at once, made once, one copy for all.
        assert_eq!(answered, 1);
        assert_eq!(s.pending.len(), MAX_PENDING);
        assert!(s.unsent() <= long.len() + 16, "{}", s.unsent());
        // They wait for POLLOUT, and there is room for new clients.
        let fds = s.fds();
        assert_eq!(fds.len(), MAX_PENDING + 1);
        assert_eq!(fds[0].0.as_raw_fd(), s.listener.as_raw_fd());
        assert!(fds[1..].iter().all(|(_, e)| *e == PollFlags::POLLOUT));
        let mut status = stalled(&path, "status\n");
        s.serve(Instant::now(), &us(), |_| Reply::ok("up\n"));
        let mut got = String::new();
        status.read_to_string(&mut got).unwrap();
        assert_eq!(Reply::decode(got.as_bytes()), Ok(Reply::ok("up\n")));
        // Past their deadline they are dropped; the next client is served.
        let mut next = stalled(&path, "status\n");
        let later = Instant::now() + REPLY_TIMEOUT + Duration::from_secs(1);
        s.serve(later, &us(), |_| Reply::ok("fine\n"));
        assert!(s.pending.is_empty(), "{} clients left", s.pending.len());
        let mut got = String::new();
        next.read_to_string(&mut got).unwrap();
        assert_eq!(Reply::decode(got.as_bytes()), Ok(Reply::ok("fine\n")));
        // A dropped client reads what was sent, then the end.
        let mut c = clients.into_iter().next().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        assert!(got.len() < long.len(), "{}", got.len());

        // Asked one after the other: past the budget of unsent bytes the
        // rest are told the daemon is busy, without a copy of the list.
        let mut answered = 0;
        let mut clients = Vec::new();
        for _ in 0..MAX_PENDING {
            clients.push(stalled(&path, "list\n"));
            s.serve(Instant::now(), &us(), |_| {
                answered += 1;
                Reply::ok(long.clone())
            });
        }
        // (The socket buffers hold a little of each answer.)
        let fit = MAX_PENDING_BYTES / long.len();
        assert!(
            (fit..MAX_PENDING).contains(&answered),
            "{answered} lists made"
        );
        assert!(
            s.unsent() <= MAX_PENDING_BYTES + long.len(),
            "{}",
            s.unsent()
        );
        let mut last = clients.pop().unwrap();
        let mut got = String::new();
        last.read_to_string(&mut got).unwrap();
        let r = Reply::decode(got.as_bytes()).unwrap();
        assert_eq!(r.code, 1);
        assert!(r.body.starts_with("list: the daemon is busy: "), "{r:?}");
        drop(s);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn at_most_max_writing_clients_hold_an_answer() {
        let path = temp_path("writers");
        let mut s = ControlServer::bind(&path).unwrap();
        let long = "w".repeat(1 << 20);
        let mut clients = Vec::new();
        for n in 0..MAX_WRITING + 8 {
            // Each its own answer: a different request line every time.
            clients.push(stalled(
                &path,
                &format!("status{}\n", " --json".repeat(n % 2)),
            ));
            s.serve(Instant::now(), &us(), |_| Reply::ok(long.clone()));
            assert!(s.writing() <= MAX_WRITING, "{}", s.writing());
        }
        assert_eq!(s.writing(), MAX_WRITING);
        // The dropped ones were the newest: they report an answer cut short.
        let mut last = clients.pop().unwrap();
        let mut got = Vec::new();
        last.read_to_end(&mut got).unwrap();
        let e = Reply::decode(&got).unwrap_err();
        assert!(e.starts_with("the answer was cut short"), "{e}");
        drop(s);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_client_that_reads_slowly_gets_all_of_a_long_answer() {
        let path = temp_path("slowread");
        let mut s = ControlServer::bind(&path).unwrap();
        let long = "y".repeat(8 << 20);
        let want = long.clone();
        let reader = std::thread::spawn({
            let path = path.clone();
            move || {
                request(
                    &path,
                    &Request::List { json: false },
                    Duration::from_secs(20),
                    16 << 20,
                )
            }
        });
        let start = Instant::now();
        while !reader.is_finished() && start.elapsed() < Duration::from_secs(20) {
            s.serve(Instant::now(), &us(), |_| Reply::ok(long.clone()));
            std::thread::sleep(Duration::from_millis(1));
        }
        let r = reader.join().unwrap().unwrap().unwrap();
        assert_eq!((r.code, r.body.len()), (0, want.len()));
        drop(s);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    fn peer(uid: u32, gid: u32, groups: &[u32]) -> Peer {
        Peer {
            pid: 1,
            uid,
            gid,
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn state_changes_need_root_or_the_control_group_and_never_the_daemons_user() {
        let nobody = 65534;
        let only_root = Access {
            group: None,
            own_uid: nobody,
        };
        let group = Access {
            group: Some(("nftadmin".into(), 4000)),
            own_uid: nobody,
        };
        let changes = [
            Request::Block {
                addr: "192.0.2.7".parse().unwrap(),
                secs: 60,
            },
            Request::Unblock {
                addr: "192.0.2.7".parse().unwrap(),
                fleet: false,
            },
            Request::Unblock {
                addr: "192.0.2.7".parse().unwrap(),
                fleet: true,
            },
            Request::Flush,
            Request::Reload,
        ];
        let reads = [
            Request::Status { json: false },
            Request::List { json: true },
        ];
        for (access, p, may) in [
            (&only_root, peer(0, 0, &[]), true),
            (&only_root, peer(nobody, nobody, &[]), false),
            (&only_root, peer(1000, 4000, &[4000]), false),
            (&group, peer(0, 0, &[]), true),
            (&group, peer(1000, 4000, &[]), true),
            (&group, peer(1000, 100, &[27, 4000]), true),
            (&group, peer(1000, 100, &[27]), false),
            // The daemon's own user: its commands run as it.
            (&group, peer(nobody, 4000, &[4000]), false),
        ] {
            for r in &changes {
                assert_eq!(access.admits(&p, r), may, "{p:?} {r:?}");
            }
            for r in &reads {
                assert!(access.admits(&p, r), "{p:?} {r:?}");
            }
        }
        let r = only_root.refusal(&peer(1000, 1000, &[]), &Request::Flush);
        assert_eq!(r.code, 77);
        assert_eq!(
            r.body,
            "flush: permission denied: only root may change bans (control_group names a group that may too)\n"
        );
        let r = group.refusal(&peer(nobody, 4000, &[]), &changes[0]);
        assert!(
            r.body.starts_with("block: permission denied: only root or members of group nftadmin may change bans; uid 65534 is the daemon's own user"),
            "{}",
            r.body
        );
        let r = group.refusal(&peer(1000, 1000, &[]), &Request::Reload);
        assert_eq!(
            r.body,
            "reload: permission denied: only root or members of group nftadmin may reload the configuration\n"
        );
    }

    #[test]
    fn a_refused_request_never_reaches_the_handler() {
        let path = temp_path("refuse");
        let mut s = ControlServer::bind(&path).unwrap();
        let nobody_may = Access {
            group: None,
            own_uid: u32::MAX,
        };
        let root = nix::unistd::geteuid().is_root();
        let mut c = stalled(&path, "flush\n");
        let mut seen = Vec::new();
        for _ in 0..3 {
            s.serve(Instant::now(), &nobody_may, |r| {
                seen.push(r.clone());
                Reply::ok("flushed\n")
            });
        }
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        if root {
            assert_eq!(Reply::decode(got.as_bytes()), Ok(Reply::ok("flushed\n")));
        } else {
            let r = Reply::decode(got.as_bytes()).unwrap();
            assert_eq!(r.code, 77);
            assert!(r.body.starts_with("flush: permission denied"), "{r:?}");
            assert!(seen.is_empty(), "{seen:?}");
        }
        let mut c = stalled(&path, "status\n");
        s.serve(Instant::now(), &nobody_may, |_| Reply::ok("up\n"));
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        assert_eq!(Reply::decode(got.as_bytes()), Ok(Reply::ok("up\n")));
        drop(s);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn the_peer_is_who_connected() {
        let (a, _b) = UnixStream::pair().unwrap();
        let p = Peer::of(&a).unwrap();
        assert_eq!(p.pid, std::process::id() as i32);
        assert_eq!(p.uid, nix::unistd::geteuid().as_raw());
        assert_eq!(p.gid, nix::unistd::getegid().as_raw());
        let mut want: Vec<u32> = nix::unistd::getgroups()
            .unwrap()
            .iter()
            .map(|g| g.as_raw())
            .collect();
        let mut got = p.groups.clone();
        want.sort();
        got.sort();
        assert_eq!(got, want, "SO_PEERGROUPS");
    }

    #[test]
    fn answers_are_capped_and_printable() {
        assert_eq!(printable("a\tb\nc"), "a\tb\nc");
        assert_eq!(
            printable("\u{1b}[2J\u{1b}]0;owned\u{7}x\r\u{9b}31my\u{7f}\u{0}"),
            "[2J]0;ownedx31my"
        );
        let r = Reply::decode(b"0\n\x1b[31mred\x1b[0m\r\n").unwrap();
        assert_eq!(r.body, "[31mred[0m\n");
        // A "daemon" that sends more than allowed.
        let path = temp_path("cap");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let l = UnixListener::bind(&path).unwrap();
        let fake = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let _ = c.write_all(b"0\n");
            let chunk = vec![b'z'; 64 * 1024];
            let mut sent = 0;
            while sent < 64 << 20 && c.write_all(&chunk).is_ok() {
                sent += chunk.len();
            }
            sent
        });
        let e = request(
            &path,
            &Request::Status { json: false },
            Duration::from_secs(10),
            100_000,
        )
        .unwrap_err();
        assert!(
            e.message
                .contains("the answer to `status` is longer than 100000 bytes"),
            "{e}"
        );
        assert!(fake.join().unwrap() < 16 << 20, "the client read on");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_trickling_daemon_cannot_hold_the_client_past_its_deadline() {
        let path = temp_path("trickle");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let l = UnixListener::bind(&path).unwrap();
        let fake = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            for _ in 0..40 {
                if c.write_all(b"0").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let t0 = Instant::now();
        let e = request(
            &path,
            &Request::Status { json: false },
            Duration::from_secs(1),
            MAX,
        )
        .unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        assert!(e.message.contains("no complete answer"), "{e}");
        fake.join().unwrap();
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn garbage_replies_are_errors_not_panics() {
        assert_eq!(Reply::decode(b"").ok(), None);
        assert_eq!(Reply::decode(b"x\nbody").ok(), None);
        assert_eq!(Reply::decode(b"300\n").ok(), None);
        assert_eq!(Reply::decode(b"0 1 2\n").ok(), None);
        assert_eq!(Reply::decode(b"0 x\n").ok(), None);
        // A daemon from before the length: the code alone.
        assert_eq!(Reply::decode(b"0\n").unwrap(), Reply::ok(""));
        assert_eq!(Reply::decode(b"0 3\nabc").unwrap(), Reply::ok("abc"));
        let r = Reply::ok("four");
        assert_eq!(Reply::decode(&r.encode()).unwrap(), r);
        let e = Reply::decode(b"0 10\nabc").unwrap_err();
        assert!(
            e.starts_with("the answer was cut short: 3 of 10 bytes came"),
            "{e}"
        );
        let e = Reply::decode(b"0 1\nabc").unwrap_err();
        assert!(e.contains("longer than the 1 bytes it announced"), "{e}");
        assert_eq!(Request::parse("  "), Err("empty request".into()));
    }

    #[test]
    fn requests_parse_once_and_round_trip() {
        for line in [
            "status",
            "status --json",
            "list --json",
            "block 2001:db8::7 60",
            "unblock 192.0.2.7",
            "flush",
            "reload",
        ] {
            let r = Request::parse(line).unwrap();
            assert_eq!(r.line(), line);
        }
        for (line, why) in [
            ("block 192.0.2.7", "unknown control command `block`"),
            ("block 192.0.2.7 soon", "block: bad arguments"),
            ("unblock x", "unblock: `x` is not an address"),
            ("reboot", "unknown control command `reboot`"),
            ("flush now", "unknown control command `flush`"),
        ] {
            let e = Request::parse(line).unwrap_err();
            assert!(e.starts_with(why), "{line}: {e}");
        }
    }
}
