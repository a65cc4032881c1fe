//! The error every fallible step returns: what kind of failure (callers
//! match on `Kind`, never on an errno), a message that says what was being
//! done, and the exit code a command ends with (sysexits.h numbering, as the
//! man page lists them).
//!
//! Kernel answers are sorted into kinds once, where the errno is read
//! (`Kind::from_errno`): not found, exists, not supported, permission, set
//! full, or another errno; the kernel's extended ack text, when it sent one,
//! is part of the message.

use std::fmt;

/// What kind of failure. Usage, Config and Privilege decide the exit code
/// (64, 78, 77); every other kind exits 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bad command line: exit 64 (EX_USAGE).
    Usage,
    /// Bad configuration or ignore file: exit 78 (EX_CONFIG).
    Config,
    /// Missing privilege (CAP_NET_ADMIN): exit 77 (EX_NOPERM).
    Privilege,
    /// The object is not there (ENOENT, ESRCH): a table, set, element, route.
    NotFound,
    /// The object is there already (EEXIST).
    Exists,
    /// The kernel does not know the feature (EOPNOTSUPP): a table flag.
    NotSupported,
    /// Refused although we hold our capabilities (EPERM, EACCES): a table
    /// owned by another process, a file we may not write.
    Permission,
    /// A set holds its `size` elements already (ENFILE, ENOSPC).
    SetFull,
    /// Another errno from the kernel or a system call.
    Errno(i32),
    /// Anything else: malformed answers, bad files, refused requests.
    Other,
}

impl Kind {
    /// The kind of a (positive) errno.
    pub fn from_errno(errno: i32) -> Kind {
        use nix::libc;
        match errno {
            libc::ENOENT | libc::ESRCH => Kind::NotFound,
            libc::EEXIST => Kind::Exists,
            libc::EOPNOTSUPP => Kind::NotSupported,
            libc::EPERM | libc::EACCES => Kind::Permission,
            libc::ENFILE | libc::ENOSPC => Kind::SetFull,
            e => Kind::Errno(e),
        }
    }

    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Usage => 64,
            Kind::Config => 78,
            Kind::Privilege => 77,
            _ => 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: Kind,
    pub message: String,
}

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }
    pub fn config(message: impl Into<String>) -> Error {
        Error::new(Kind::Config, message)
    }
    pub fn other(message: impl Into<String>) -> Error {
        Error::new(Kind::Other, message)
    }
    pub fn usage(message: impl Into<String>) -> Error {
        Error::new(Kind::Usage, message)
    }

    /// `what: <description of errno>`, of the errno's kind.
    pub fn from_errno(what: &str, errno: i32) -> Error {
        let desc = std::io::Error::from_raw_os_error(errno);
        Error::new(Kind::from_errno(errno), format!("{what}: {desc}"))
    }

    /// An I/O error of `what`, of its errno's kind when it has one.
    pub fn io(what: impl fmt::Display, e: &std::io::Error) -> Error {
        let kind = e.raw_os_error().map_or(Kind::Other, Kind::from_errno);
        Error::new(kind, format!("{what}: {e}"))
    }

    /// Prefix the message with what was being done.
    pub fn context(mut self, what: impl fmt::Display) -> Error {
        self.message = format!("{what}: {}", self.message);
        self
    }

    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_have_kinds_and_kinds_have_exit_codes() {
        use nix::libc;
        assert_eq!(Kind::from_errno(libc::ENOENT), Kind::NotFound);
        assert_eq!(Kind::from_errno(libc::EEXIST), Kind::Exists);
        assert_eq!(Kind::from_errno(libc::EOPNOTSUPP), Kind::NotSupported);
        assert_eq!(Kind::from_errno(libc::EPERM), Kind::Permission);
        assert_eq!(Kind::from_errno(libc::ENFILE), Kind::SetFull);
        assert_eq!(Kind::from_errno(libc::EBUSY), Kind::Errno(libc::EBUSY));
        assert_eq!(Error::usage("x").exit_code(), 64);
        assert_eq!(Error::config("x").exit_code(), 78);
        assert_eq!(Error::new(Kind::Privilege, "x").exit_code(), 77);
        assert_eq!(Error::new(Kind::SetFull, "x").exit_code(), 1);
        let e = Error::from_errno("deleting route", libc::ESRCH);
        assert_eq!(e.kind, Kind::NotFound);
        assert!(e.message.starts_with("deleting route: "), "{e}");
    }
}
