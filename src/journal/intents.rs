//! intents: what a ban is about to do, written down before it does it. The
//! state file is written some time after a ban (by a thread, at most a
//! fiftieth of the time); a daemon killed in between would leave the route
//! and the hosts.deny line of its last bans behind for good, since the next
//! start would not know them. So before those actions run, the ban's entry
//! is appended here (one write, no fsync: a killed process loses nothing
//! the kernel already has); once a state file write covers it, the line
//! goes. At start, an intent whose address is not banned any more says
//! which actions to undo.
//!
//! The file is `<state_file>.intent`, lines in the state file's format.
//!
//! Knows nothing of why a ban is made or what its actions are.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::journal::state::{self, Entries, Entry};

/// The intent file of a state file.
pub fn path_of(state: &Path) -> PathBuf {
    let mut p = state.as_os_str().to_owned();
    p.push(".intent");
    PathBuf::from(p)
}

/// Opens `path` to append, refusing anything but a regular file of ours
/// with one link.
fn open(path: &Path) -> std::io::Result<File> {
    let f = std::fs::OpenOptions::new()
        .append(true)
        .read(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)?;
    let m = f.metadata()?;
    if !m.is_file() || m.nlink() != 1 || m.uid() != nix::unistd::geteuid().as_raw() {
        return Err(std::io::Error::other(format!(
            "{} is not a file of ours (a link, or another owner); not used",
            path.display()
        )));
    }
    Ok(f)
}

/// The intents left by the last run (empty when there is no file).
pub fn load(state: &Path) -> (Entries, Vec<String>) {
    let path = path_of(state);
    match std::fs::read(&path) {
        Ok(bytes) => state::parse(&bytes, &path.display().to_string()),
        Err(_) => (Entries::new(), Vec::new()),
    }
}

/// The open intent file and how much of it the state file does not cover.
pub struct Intents {
    path: PathBuf,
    file: Option<File>,
    /// Bytes written to it.
    len: u64,
}

impl Intents {
    pub fn new(state: &Path) -> Intents {
        Intents {
            path: path_of(state),
            file: None,
            len: 0,
        }
    }

    /// Where the file ends now: a state write rendered now covers what is
    /// before it.
    pub fn mark(&self) -> u64 {
        self.len
    }

    /// Appends `e` (what its ban is about to do).
    pub fn note(&mut self, e: &Entry) -> std::io::Result<()> {
        if self.file.is_none() {
            let f = open(&self.path)?;
            self.len = f.metadata()?.len();
            self.file = Some(f);
        }
        let line = state::render_entry(e);
        let f = self.file.as_mut().expect("just opened");
        f.write_all(line.as_bytes())?;
        self.len += line.len() as u64;
        Ok(())
    }

    /// A state file write rendered at `mark` reached the disk: what was
    /// noted before it goes. What was noted after it stays.
    pub fn covered(&mut self, mark: u64) -> std::io::Result<()> {
        if mark == 0 && self.len == 0 {
            // Nothing noted by this process: a file left by the last run
            // is covered by the first write too (its bans are restored or
            // undone by then).
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        if mark >= self.len {
            f.set_len(0)?;
            self.len = 0;
            return Ok(());
        }
        // Keep the part after `mark`: read it, write it back at the start.
        use std::io::{Read, Seek, SeekFrom};
        let mut rest = Vec::new();
        f.seek(SeekFrom::Start(mark))?;
        f.read_to_end(&mut rest)?;
        f.set_len(0)?;
        f.write_all(&rest)?;
        self.len = rest.len() as u64;
        Ok(())
    }
}
