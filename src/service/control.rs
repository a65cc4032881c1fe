//! control: the daemon's control socket (a Unix stream socket, by default
//! /run/nftsentry/control) and its client. The daemon is the table's one
//! writer, so `list`, `block`, `unblock`, `flush`, `status` and `reload`
//! from the command line go to it when it runs.
//!
//! Wire format, one exchange per connection: the client sends one line of
//! words (`block 192.0.2.7 3600`) and closes its writing side; the daemon
//! answers with a line holding an exit code, then the text to print, and
//! closes. Access is the socket file's: mode 0660, owned by the daemon's
//! user and group.
//!
//! Knows nothing of what the commands do: the daemon hands in a handler.

use std::io::{ErrorKind, Read, Write};
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The longest request line: commands are a few words.
const MAX_REQUEST: usize = 4096;
/// A client that has not sent its line by then is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Clients connected and not yet answered, at most.
const MAX_PENDING: usize = 16;
/// How long writing an answer may take (a list of many bans to a client
/// that reads slowly); the loop waits at most this once.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// One request, as the command line sends it and the daemon serves it.
/// On the wire: one line of words (`block 192.0.2.7 3600`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Status {
        json: bool,
    },
    List {
        json: bool,
    },
    /// Ban `addr` for `secs` seconds.
    Block {
        addr: IpAddr,
        secs: u64,
    },
    Unblock {
        addr: IpAddr,
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
            a.parse::<IpAddr>()
                .map_err(|_| format!("{cmd}: `{a}` is not an address"))
        };
        match words.as_slice() {
            [] => Err("empty request".into()),
            ["status", args @ ..] => Ok(Request::Status { json: json(args) }),
            ["list", args @ ..] => Ok(Request::List { json: json(args) }),
            ["block", a, secs] => match (a.parse::<IpAddr>(), secs.parse::<u64>()) {
                (Ok(addr), Ok(secs)) => Ok(Request::Block { addr, secs }),
                _ => Err(format!("block: bad arguments {a} {secs}")),
            },
            ["unblock", a] => Ok(Request::Unblock {
                addr: addr("unblock", a)?,
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
            Request::List { json } => format!("list{}", flag(*json)),
            Request::Block { addr, secs } => format!("block {addr} {secs}"),
            Request::Unblock { addr } => format!("unblock {addr}"),
            Request::Flush => "flush".into(),
            Request::Reload => "reload".into(),
        }
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

    fn encode(&self) -> Vec<u8> {
        let mut v = format!("{}\n", self.code).into_bytes();
        v.extend_from_slice(self.body.as_bytes());
        v
    }

    fn decode(bytes: &[u8]) -> Option<Reply> {
        let text = String::from_utf8_lossy(bytes);
        let (code, body) = text.split_once('\n')?;
        Some(Reply {
            code: code.trim().parse().ok()?,
            body: body.to_string(),
        })
    }
}

struct Pending {
    stream: UnixStream,
    buf: Vec<u8>,
    since: Instant,
}

/// The listening socket and the clients being served.
pub struct ControlServer {
    path: PathBuf,
    listener: UnixListener,
    pending: Vec<Pending>,
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
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The listener, then every client waiting to be served.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut v = vec![self.listener.as_fd()];
        v.extend(self.pending.iter().map(|p| p.stream.as_fd()));
        v
    }

    /// The time until the oldest client times out, if any.
    pub fn next_deadline(&self, now: Instant) -> Option<Duration> {
        self.pending
            .iter()
            .map(|p| (p.since + REQUEST_TIMEOUT).saturating_duration_since(now))
            .min()
    }

    /// Accepts new clients, reads what they sent, and answers every
    /// complete request with `handler`. Never blocks on a client that has
    /// not sent its line; drops clients that take too long.
    pub fn serve(&mut self, now: Instant, mut handler: impl FnMut(&Request) -> Reply) {
        while self.pending.len() < MAX_PENDING {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_ok() {
                        self.pending.push(Pending {
                            stream,
                            buf: Vec::new(),
                            since: now,
                        });
                    }
                }
                Err(_) => break, // WouldBlock, or one failed connection
            }
        }
        let mut i = 0;
        while i < self.pending.len() {
            let p = &mut self.pending[i];
            let mut chunk = [0u8; 1024];
            let mut done = false;
            let mut drop_it = false;
            loop {
                match p.stream.read(&mut chunk) {
                    Ok(0) => {
                        done = true;
                        break;
                    }
                    Ok(n) => {
                        p.buf.extend_from_slice(&chunk[..n]);
                        if p.buf.contains(&b'\n') {
                            done = true;
                            break;
                        }
                        if p.buf.len() > MAX_REQUEST {
                            drop_it = true;
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => {
                        drop_it = true;
                        break;
                    }
                }
            }
            if !done && !drop_it && now.duration_since(p.since) > REQUEST_TIMEOUT {
                drop_it = true;
            }
            if drop_it {
                self.pending.swap_remove(i);
                continue;
            }
            if !done {
                i += 1;
                continue;
            }
            let p = self.pending.swap_remove(i);
            let line = String::from_utf8_lossy(&p.buf);
            let line = line.lines().next().unwrap_or("");
            let reply = match Request::parse(line) {
                Ok(req) => handler(&req),
                Err(why) => Reply {
                    code: 64,
                    body: format!("{why}\n"),
                },
            };
            let mut stream = p.stream;
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_write_timeout(Some(REPLY_TIMEOUT));
            let _ = stream.write_all(&reply.encode());
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Sends `req` to the daemon on `path`. `Ok(None)`: no daemon listens
/// there (no socket file, or a leftover one), so the caller acts itself.
pub fn request(path: &Path, req: &Request, timeout: Duration) -> Result<Option<Reply>> {
    let shown = path.display();
    let mut stream = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            return Ok(None);
        }
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            return Err(Error::new(
                crate::error::Kind::Privilege,
                format!(
                    "control socket {shown}: permission denied (run as root or as a member of the nftsentry service's group)"
                ),
            ));
        }
        Err(e) => return Err(Error::other(format!("control socket {shown}: {e}"))),
    };
    let io = |e: std::io::Error| Error::other(format!("control socket {shown}: {e}"));
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    stream
        .write_all(format!("{}\n", req.line()).as_bytes())
        .map_err(io)?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(|e| {
        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
            Error::other(format!(
                "control socket {shown}: no answer from the daemon within {}s",
                timeout.as_secs()
            ))
        } else {
            io(e)
        }
    })?;
    Reply::decode(&answer).map(Some).ok_or_else(|| {
        Error::other(format!(
            "control socket {shown}: the daemon closed the connection without an answer"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nftsentry-ctl-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("control")
    }

    /// Serves on a thread until `n` requests were answered.
    fn server(path: &Path, n: usize) -> std::thread::JoinHandle<Vec<Request>> {
        let mut s = ControlServer::bind(path).unwrap();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let start = Instant::now();
            while seen.len() < n && start.elapsed() < Duration::from_secs(10) {
                s.serve(Instant::now(), |r| {
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
        let r = request(&path, &req, Duration::from_secs(5))
            .unwrap()
            .unwrap();
        assert_eq!(r, Reply::ok("did block 192.0.2.7 3600\n"));
        let r = request(&path, &Request::Flush, Duration::from_secs(5))
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
                Duration::from_secs(1)
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
                Duration::from_secs(1)
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
        s.serve(t0, |_| Reply::ok(""));
        assert!(t0.elapsed() < Duration::from_millis(500), "serve blocked");
        assert_eq!(s.pending.len(), 1, "oversized dropped, silent waits");
        s.serve(t0 + REQUEST_TIMEOUT + Duration::from_secs(1), |_| {
            Reply::ok("")
        });
        assert!(s.pending.is_empty(), "silent client timed out");
        drop(s);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn garbage_replies_are_errors_not_panics() {
        assert_eq!(Reply::decode(b""), None);
        assert_eq!(Reply::decode(b"x\nbody"), None);
        assert_eq!(Reply::decode(b"300\n"), None);
        assert_eq!(Reply::decode(b"0\n").unwrap(), Reply::ok(""));
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
