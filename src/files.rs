//! files: how nftsentry replaces a file that must survive a crash whole (the
//! state file, hosts.deny, files the importer writes): a new file created
//! next to it (never an existing one: `O_EXCL`, `O_NOFOLLOW`), written,
//! fsynced, renamed over the old one, and the directory fsynced, so a crash
//! leaves the old file or the new one, never a mix; how the temporary
//! files of writers that died half-way are found and removed; and how a
//! file that is kept and written in place (a lock file, the history file)
//! is opened (`open_private`) without ever writing through a link or a file
//! someone else planted.
//!
//! Root writes into directories that belong to the daemon's user (the
//! command line while the service is stopped): whoever owns the directory
//! may put a symbolic link, a hard link or a file of their own where
//! nftsentry expects its file. So a file is created exclusively (`O_EXCL`,
//! and only a file created so is ever given to the directory's owner), a
//! link is never followed (`O_NOFOLLOW`), and a file found in place is used
//! only when it is a regular file with one link that belongs to root, this
//! process's user or the directory's owner (`refusal`).
//!
//! Knows nothing of what the files hold.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
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
    // `f` is the file just created (O_EXCL): the owner given to it and
    // everything written go to that file, whatever the name points to by
    // now. Only the rename is done by name: it must still be our file.
    let written = (|| -> std::io::Result<()> {
        match how.owner {
            Some((uid, gid)) => std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?,
            None => give_to_dir_owner(&f, dir)?,
        }
        f.set_permissions(std::fs::Permissions::from_mode(how.mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        if !same_file(&std::fs::symlink_metadata(&tmp)?, &f.metadata()?) {
            return Err(std::io::Error::other(format!(
                "{} was replaced by another file while it was written; not renamed",
                tmp.display()
            )));
        }
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
/// read its own files at the next start. Only for a file this process has
/// just created exclusively (`O_EXCL`): a file found in place is never
/// given away (it could be a hard link to any file).
fn give_to_dir_owner(f: &File, dir: &Path) -> std::io::Result<()> {
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

/// The same file (device and inode).
pub fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// "a directory", "a FIFO" ...: what a file that is not a regular file is.
fn kind_of(t: std::fs::FileType) -> &'static str {
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// Why a file found where nftsentry keeps one (its metadata `m`, from the
/// open descriptor) must not be used, if it must not: it is not a regular
/// file, it has more than one link (another name of it could be any file
/// on the file system), or it belongs to someone other than root, this
/// process's user or `dir_owner`, the owner of its directory (who may put
/// anything there anyway). `None`: it may be used.
pub fn refusal(m: &std::fs::Metadata, dir_owner: u32) -> Option<String> {
    if !m.file_type().is_file() {
        return Some(format!(
            "it is {}, not a regular file",
            kind_of(m.file_type())
        ));
    }
    if m.nlink() != 1 {
        return Some(format!(
            "it has {} hard links, and nftsentry uses a file only under its one name (another name could be any file)",
            m.nlink()
        ));
    }
    let euid = nix::unistd::geteuid().as_raw();
    let owner = m.uid();
    if owner != 0 && owner != euid && owner != dir_owner {
        let mut trusted = vec!["root".to_string()];
        if euid != 0 {
            trusted.push(format!("uid {euid} (this process)"));
        }
        if dir_owner != 0 && dir_owner != euid {
            trusted.push(format!("uid {dir_owner} (the owner of its directory)"));
        }
        return Some(format!(
            "it belongs to uid {owner}, not to {}",
            trusted.join(" or ")
        ));
    }
    None
}

/// Why opening `path` with `O_NOFOLLOW` and `O_NONBLOCK` failed with `e`,
/// when what is there is the reason (a symbolic link, a FIFO ...).
pub fn open_refusal(path: &Path, e: &std::io::Error) -> Option<String> {
    use nix::libc::{EISDIR, ELOOP, ENXIO};
    if !matches!(e.raw_os_error(), Some(ELOOP | ENXIO | EISDIR)) {
        return None;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_file() => Some(format!(
            "it is {}, not a regular file",
            kind_of(m.file_type())
        )),
        _ => None,
    }
}

/// The error for a file that is there but must not be used.
pub fn refused(why: String) -> std::io::Error {
    std::io::Error::other(format!("refused: {why}"))
}

/// How `open_private` opens a file.
#[derive(Clone, Copy, Debug)]
pub struct Private {
    /// Append only (the history file); else read and write (a lock file).
    pub append: bool,
    /// Permission bits of a new file (less the umask).
    pub mode: u32,
    /// Create the directory (mode 0750) when it is missing.
    pub make_dir: bool,
}

/// Opens the file nftsentry keeps at `path` and writes in place (a lock
/// file, the history file), creating it when it is missing. A new file is
/// created exclusively and, when root makes it in another user's
/// directory, given to that user; a file found there is used only when
/// `refusal` finds nothing wrong with it, and is never given away. Nothing
/// is followed: a symbolic link is refused, and so are a FIFO or a device
/// (opened without blocking, then refused). The error says what is wrong,
/// without the path (the caller names it).
pub fn open_private(path: &Path, how: &Private) -> std::io::Result<File> {
    let dir = dir_of(path);
    let mut options = std::fs::OpenOptions::new();
    if how.append {
        options.append(true);
    } else {
        options.read(true).write(true);
    }
    options
        .mode(how.mode)
        .custom_flags(nix::libc::O_CLOEXEC | nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK);
    let mut made_dir = false;
    // A file removed between the two opens is looked for again, a few times.
    for _ in 0..4 {
        match options.clone().create_new(true).open(path) {
            Ok(f) => {
                give_to_dir_owner(&f, dir)?;
                return Ok(f);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && how.make_dir && !made_dir => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o750)
                    .create(dir)?;
                made_dir = true;
                continue;
            }
            Err(e) => return Err(e),
        }
        match options.open(path) {
            Ok(f) => {
                let dir_owner = std::fs::metadata(dir)?.uid();
                if let Some(why) = refusal(&f.metadata()?, dir_owner) {
                    return Err(refused(why));
                }
                return Ok(f);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(open_refusal(path, &e).map_or(e, refused)),
        }
    }
    Err(std::io::Error::other(
        "it was removed and made again while it was opened, several times; giving up",
    ))
}

/// Reads at most `max` bytes of the file nftsentry keeps at `path` (the
/// fleet's alert queue), judged as `open_private` judges it: a symbolic
/// link, a FIFO, a file with other names or of a third user is refused,
/// never read through. `None` when there is no file.
pub fn read_private(path: &Path, max: u64) -> std::io::Result<Option<String>> {
    use std::io::Read as _;
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_CLOEXEC | nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(open_refusal(path, &e).map_or(e, refused)),
    };
    let dir_owner = std::fs::metadata(dir_of(path))?.uid();
    if let Some(why) = refusal(&f.metadata()?, dir_owner) {
        return Err(refused(why));
    }
    let mut s = String::new();
    f.take(max).read_to_string(&mut s)?;
    Ok(Some(s))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_private_reads_a_plain_file_and_refuses_links() {
        let d = dir("readpriv");
        std::fs::create_dir_all(&d).unwrap();
        assert!(read_private(&d.join("none"), 100).unwrap().is_none());
        let plain = d.join("plain");
        std::fs::write(&plain, "a\nb\n").unwrap();
        assert_eq!(
            read_private(&plain, 100).unwrap().as_deref(),
            Some("a\nb\n")
        );
        assert_eq!(read_private(&plain, 1).unwrap().as_deref(), Some("a"));
        let secret = d.join("secret");
        std::fs::write(&secret, "not ours\n").unwrap();
        let link = d.join("link");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        let e = read_private(&link, 100).unwrap_err().to_string();
        assert!(e.contains("refused: it is a symbolic link"), "{e}");
        let hard = d.join("hard");
        std::fs::hard_link(&secret, &hard).unwrap();
        let e = read_private(&hard, 100).unwrap_err().to_string();
        assert!(e.contains("hard links"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nftsentry-files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    const APPEND: Private = Private {
        append: true,
        mode: 0o640,
        make_dir: true,
    };

    #[test]
    fn open_private_makes_a_file_and_uses_it_again() {
        let d = dir("make");
        let p = d.join("sub").join("history");
        open_private(&p, &APPEND)
            .unwrap()
            .write_all(b"a\n")
            .unwrap();
        open_private(&p, &APPEND)
            .unwrap()
            .write_all(b"b\n")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a\nb\n");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn open_private_refuses_links_and_special_files_without_touching_them() {
        let d = dir("refuse");
        std::fs::create_dir_all(&d).unwrap();
        let target = d.join("target");
        std::fs::write(&target, "x").unwrap();
        let p = d.join("history");
        let refused = |p: &Path| open_private(p, &APPEND).err().unwrap().to_string();
        std::os::unix::fs::symlink(&target, &p).unwrap();
        assert_eq!(
            refused(&p),
            "refused: it is a symbolic link, not a regular file"
        );
        std::fs::remove_file(&p).unwrap();
        std::fs::hard_link(&target, &p).unwrap();
        assert!(
            refused(&p).starts_with("refused: it has 2 hard links"),
            "{}",
            refused(&p)
        );
        std::fs::remove_file(&p).unwrap();
        // A FIFO without a reader: refused at once, not waited on.
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(refused(&p), "refused: it is a FIFO, not a regular file");
        let rw = Private {
            append: false,
            mode: 0o600,
            make_dir: false,
        };
        assert_eq!(
            open_private(&p, &rw).err().unwrap().to_string(),
            "refused: it is a FIFO, not a regular file"
        );
        std::fs::remove_file(&p).unwrap();
        std::fs::create_dir(&p).unwrap();
        assert_eq!(
            refused(&p),
            "refused: it is a directory, not a regular file"
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "x");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn refusal_names_the_owners_it_would_take() {
        let d = dir("owner");
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("f");
        std::fs::write(&p, "x").unwrap();
        let m = std::fs::metadata(&p).unwrap();
        // Ours: fine, whoever owns the directory.
        assert_eq!(refusal(&m, 4242), None);
        assert!(
            refusal(&std::fs::metadata(&d).unwrap(), 0)
                .unwrap()
                .starts_with("it is a directory")
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn replace_never_writes_through_a_planted_temporary_file() {
        let d = dir("replace");
        std::fs::create_dir_all(&d).unwrap();
        let target = d.join("target");
        std::fs::write(&target, "x").unwrap();
        let path = d.join("state");
        let how = Replace {
            mode: 0o600,
            owner: None,
            infix: ".tmp.",
            make_dir: false,
        };
        let tmp = temp_path(&path, how.infix).unwrap();
        std::os::unix::fs::symlink(&target, &tmp).unwrap();
        replace(&path, b"new\n", &how).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "x");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        assert!(std::fs::symlink_metadata(&tmp).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
