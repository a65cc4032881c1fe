//! files: how nftsentry replaces a file that must survive a crash whole (the
//! state file, hosts.deny, files the importer writes): a new file created
//! next to it (never an existing one: `O_EXCL`, `O_NOFOLLOW`), written,
//! fsynced, renamed over the old one, and the directory fsynced, so a crash
//! leaves the old file or the new one, never a mix; and how the temporary
//! files of writers that died half-way are found and removed.
//!
//! Knows nothing of what the files hold.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Who the new file belongs to and its mode.
#[derive(Clone, Copy, Debug)]
pub struct Replace<'a> {
    /// Permission bits of the new file.
    pub mode: u32,
    /// Owner and group to give it (those of the file it replaces); `None`:
    /// the writer's, or the directory owner's when root writes into a
    /// directory that belongs to someone else (`give_to_dir_owner`).
    pub owner: Option<(u32, u32)>,
    /// Between the file's name and the writer's pid in the temporary
    /// file's name: `.<name><infix><pid>`.
    pub infix: &'a str,
    /// Create the directory (mode 0750) when it is missing.
    pub make_dir: bool,
}

/// The directory a path is in ("." for a bare name).
pub fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

fn temp_path(path: &Path, infix: &str) -> std::io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!("{infix}{}", std::process::id()));
    Ok(dir_of(path).join(tmp))
}

/// Why a replacement failed.
#[derive(Debug)]
pub enum ReplaceError {
    /// The temporary file could not be created (its path, the error).
    Create(PathBuf, std::io::Error),
    /// Writing, syncing or renaming it failed.
    Write(std::io::Error),
}

impl std::fmt::Display for ReplaceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplaceError::Create(tmp, e) => write!(f, "cannot create {}: {e}", tmp.display()),
            ReplaceError::Write(e) => write!(f, "{e}"),
        }
    }
}

impl From<ReplaceError> for std::io::Error {
    fn from(e: ReplaceError) -> std::io::Error {
        match e {
            ReplaceError::Create(_, e) | ReplaceError::Write(e) => e,
        }
    }
}

/// Replaces `path` with `bytes` atomically (see the module header) and
/// returns the new file, still open (its metadata identifies the version).
pub fn replace(
    path: &Path,
    bytes: &[u8],
    how: &Replace<'_>,
) -> std::result::Result<File, ReplaceError> {
    let dir = dir_of(path);
    let tmp = temp_path(path, how.infix).map_err(ReplaceError::Write)?;
    // A leftover of a crash of a process with our pid is ours to replace:
    // it is only unlinked, never followed.
    let _ = std::fs::remove_file(&tmp);
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_CLOEXEC | nix::libc::O_NOFOLLOW)
            .open(&tmp)
    };
    let made = match create() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && how.make_dir => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)
                .and_then(|()| create())
        }
        other => other,
    };
    let mut f = made.map_err(|e| ReplaceError::Create(tmp.clone(), e))?;
    let written = (|| -> std::io::Result<()> {
        match how.owner {
            Some((uid, gid)) => std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?,
            None => give_to_dir_owner(&f, dir)?,
        }
        f.set_permissions(std::fs::Permissions::from_mode(how.mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(ReplaceError::Write(e));
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ReplaceError::Write)?;
    Ok(f)
}

/// Root (the command line, while the daemon is stopped) makes files in a
/// directory that belongs to the daemon's user (systemd's StateDirectory
/// with DynamicUser): they are given to that user, or the daemon could not
/// read its own files at the next start.
pub fn give_to_dir_owner(f: &File, dir: &Path) -> std::io::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let m = std::fs::metadata(dir)?;
    if m.uid() == 0 {
        return Ok(());
    }
    let f_meta = f.metadata()?;
    if f_meta.uid() == m.uid() && f_meta.gid() == m.gid() {
        return Ok(());
    }
    nix::unistd::fchown(
        f,
        Some(nix::unistd::Uid::from_raw(m.uid())),
        Some(nix::unistd::Gid::from_raw(m.gid())),
    )
    .map_err(std::io::Error::from)
}

/// Removes the temporary files that writers of `target` left when they died
/// between creating and renaming them (kill -9, a crash, a power cut): the
/// names `.<file name><infix><pid>` next to it whose pid is not a live
/// process (a live one may be writing right now). Without this, each crash
/// in the middle of a write left a copy of the whole file behind for good
/// (seen in tests/crash.rs: 20 MB per kill with 100,000 bans). Returns what
/// it removed.
pub fn remove_dead_writers_files(target: &Path, infix: &str) -> Vec<PathBuf> {
    let Some(name) = target.file_name() else {
        return Vec::new();
    };
    let dir = dir_of(target);
    let mut prefix = b".".to_vec();
    prefix.extend_from_slice(name.as_bytes());
    prefix.extend_from_slice(infix.as_bytes());
    let Ok(listing) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in listing.flatten() {
        let file = entry.file_name();
        let Some(pid) = file.as_bytes().strip_prefix(prefix.as_slice()) else {
            continue;
        };
        let Some(pid) = std::str::from_utf8(pid)
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        // Regular files only: never follow or remove anything else.
        let regular = entry.file_type().is_ok_and(|t| t.is_file());
        if !alive && regular && std::fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}
