//! control::client: the command line's side of the control socket: one
//! request, an answer read within a cap and a deadline.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Reply, Request};
use crate::error::{Error, Kind, Result};

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
