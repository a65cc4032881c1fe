//! claim: one nftsentry per table and network namespace. Before anything
//! changes, the daemon claims its table's name: refused while another
//! nftsentry holds it, and refused when a table of that name exists that
//! nftsentry did not create (it lacks `ruleset::TABLE_COMMENT`).
//!
//! The claim is a lock on a file that only root and the service may make:
//! `CLAIM_DIR/netns-INODE.inet.TABLE.lock`, named by the network namespace
//! (the inode of `/proc/thread-self/ns/net`, as the kernel keeps tables per
//! namespace) and the table. The directory is the unit's RuntimeDirectory
//! (the service's user, 0750), or root's (0755, made here when root runs
//! `nftsentry run` by hand); a directory that group or others may write is
//! refused, and so is a claim file that is a link, not a regular file, or
//! of a third user (`files::open_private`). The lock is a POSIX record lock
//! (`F_SETLK`): the kernel drops it when the process ends, however it ends,
//! and tells others its holder's pid (`F_GETLK`) without taking it, so the
//! command line's question never makes a starting daemon fail. The holder
//! writes its pid into the file too (for a holder in another pid
//! namespace, and for people). An abstract unix socket name, used before,
//! could be bound first by any local user, and no daemon could start.
//!
//! Knows nothing of what the table holds.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::files;
use crate::kernel::nft::NftSocket;
use crate::table::ruleset::TABLE_COMMENT;

/// Where the claim files are: the packaged unit's RuntimeDirectory.
pub const CLAIM_DIR: &str = "/run/nftsentry";

/// Claims this process holds (POSIX locks belong to the process: it must
/// never open and close one of these files itself, which would drop the
/// lock; `holder` answers from here instead).
static HELD: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn held() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    HELD.lock().unwrap_or_else(|p| p.into_inner())
}

/// Held while the daemon runs: the lock on the claim file. Dropped, it
/// removes the file when it may (a daemon that switched to `user` may not
/// in root's directory; the file is then reused by the next start).
pub struct TableClaim {
    file: File,
    path: PathBuf,
    /// A table nftsentry left behind is there; `run` replaces it.
    pub leftover: bool,
}

impl TableClaim {
    /// The claim file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TableClaim {
    fn drop(&mut self) {
        // Removed while still locked, and only if the name is still ours: a
        // daemon that opened the file meanwhile finds the name gone once it
        // has the lock, and makes a new one.
        let ours = match (std::fs::symlink_metadata(&self.path), self.file.metadata()) {
            (Ok(a), Ok(b)) => files::same_file(&a, &b),
            _ => false,
        };
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
        held().retain(|p| p != &self.path);
    }
}

/// The inode of this thread's network namespace.
fn netns_inode() -> std::io::Result<u64> {
    std::fs::metadata("/proc/thread-self/ns/net")
        .or_else(|_| std::fs::metadata("/proc/self/ns/net"))
        .map(|m| m.ino())
}

/// The claim file of `table` in this thread's network namespace.
pub fn claim_path(table: &str) -> Result<PathBuf> {
    claim_path_in(Path::new(CLAIM_DIR), table)
}

fn claim_path_in(dir: &Path, table: &str) -> Result<PathBuf> {
    if table.is_empty() || table.contains('/') {
        return Err(Error::other(format!("{table:?} is not a table name")));
    }
    let ino = netns_inode()
        .map_err(|e| Error::io("cannot read the network namespace (/proc/self/ns/net)", &e))?;
    Ok(dir.join(format!("netns-{ino}.inet.{table}.lock")))
}

/// Makes `dir` (0755) if it is missing, and refuses one that someone other
/// than root, this process's user or, for root, the service (the unit's
/// RuntimeDirectory belongs to its user) could fill: not a directory, or
/// group or others may write it.
fn prepare_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o755).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let m = std::fs::symlink_metadata(dir)?;
    if !m.is_dir() {
        return Err(files::refused("it is not a directory".to_string()));
    }
    if m.mode() & 0o022 != 0 {
        return Err(files::refused(format!(
            "its mode is {:04o}: group or others may write it, and could hold the claim",
            m.mode() & 0o7777
        )));
    }
    let euid = nix::unistd::geteuid();
    if !euid.is_root() && m.uid() != 0 && m.uid() != euid.as_raw() {
        return Err(files::refused(format!(
            "it belongs to uid {}, not to root or to uid {euid} (this process)",
            m.uid()
        )));
    }
    Ok(())
}

/// A whole-file write lock, for `F_SETLK` and `F_GETLK`.
fn whole_file(kind: i32) -> nix::libc::flock {
    // SAFETY: flock is plain data; every field is set or zero is meant.
    let mut l: nix::libc::flock = unsafe { std::mem::zeroed() };
    l.l_type = kind as _;
    l.l_whence = nix::libc::SEEK_SET as _;
    l
}

/// Whether another process holds a lock on `f`, and its pid if the kernel
/// or the file says (`Some(None)`: held, pid unknown).
fn lock_holder(f: &File) -> Option<Option<i32>> {
    let mut l = whole_file(nix::libc::F_WRLCK);
    nix::fcntl::fcntl(f, nix::fcntl::FcntlArg::F_GETLK(&mut l)).ok()?;
    if i32::from(l.l_type) == nix::libc::F_UNLCK {
        return None;
    }
    if l.l_pid > 0 {
        return Some(Some(l.l_pid));
    }
    // In another pid namespace: what it wrote.
    let mut buf = [0u8; 16];
    let n = f.read_at(&mut buf, 0).ok()?;
    Some(
        std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|&p| p > 0),
    )
}

/// What taking the lock found.
enum Taken {
    Ours(File),
    /// Another process holds it (its pid, if known).
    Held(Option<i32>),
}

/// Takes the lock on the claim file `path` (made if missing).
fn take(path: &Path) -> std::io::Result<Taken> {
    let how = files::Private {
        append: false,
        mode: 0o600,
        make_dir: false,
    };
    // The name is looked at again once the lock is ours: a holder removes
    // it on the way out, and one that did so meanwhile leaves us an
    // unnamed file.
    for _ in 0..8 {
        let f = files::open_private(path, &how)?;
        let l = whole_file(nix::libc::F_WRLCK);
        match nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_SETLK(&l)) {
            Ok(_) => {}
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => {
                match lock_holder(&f) {
                    Some(pid) => return Ok(Taken::Held(pid)),
                    // Released meanwhile: try again.
                    None => continue,
                }
            }
            Err(e) => return Err(e.into()),
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if files::same_file(&m, &f.metadata()?) => {}
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
        if f.metadata()?.mode() & 0o077 != 0 {
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        f.set_len(0)?;
        f.write_all_at(format!("{}\n", std::process::id()).as_bytes(), 0)?;
        return Ok(Taken::Ours(f));
    }
    Err(std::io::Error::other(
        "it was removed and made again while it was locked, several times; giving up",
    ))
}

/// The claim on `table` in `dir`: the lock, or why not.
fn claim_in(dir: &Path, table: &str) -> Result<TableClaim> {
    let path = claim_path_in(dir, table)?;
    let cannot = |e: std::io::Error| {
        Error::io(
            format!(
                "cannot claim table inet {table} (claim file {})",
                path.display()
            ),
            &e,
        )
    };
    let in_use = |who: String| {
        Error::other(format!(
            "table inet {table} is in use by another nftsentry in this network namespace ({who}); \
             stop it first, or give this one another `table` (and `nflog_group`)"
        ))
    };
    if held().contains(&path) {
        return Err(in_use(format!("pid {}, this process", std::process::id())));
    }
    prepare_dir(dir).map_err(|e| {
        Error::io(
            format!("cannot claim table inet {table} in {}", dir.display()),
            &e,
        )
    })?;
    match take(&path).map_err(cannot)? {
        Taken::Ours(file) => {
            held().push(path.clone());
            Ok(TableClaim {
                file,
                path,
                leftover: false,
            })
        }
        Taken::Held(pid) => Err(in_use(match pid {
            Some(pid) => format!("pid {pid}"),
            None => "its pid could not be read".to_string(),
        })),
    }
}

/// Refuses to go on when another nftsentry runs with `table` in this network
/// namespace, or when a table of that name exists that nftsentry did not
/// create (it lacks `ruleset::TABLE_COMMENT`): replacing either would take
/// another daemon's bans, or someone's ruleset, away. A table nftsentry left
/// (killed, or `keep_table_on_exit`) is fine: `run` replaces it. Call it
/// before switching to `user`: the claim file is then root's, which that
/// user cannot take, and the lock stays with the process.
pub fn claim_table(nft: &mut NftSocket, table: &str) -> Result<TableClaim> {
    // Without CAP_NET_ADMIN this fails, saying so, before any file is
    // touched.
    nft.table_info(table)?;
    let mut claim = claim_in(Path::new(CLAIM_DIR), table)?;
    // Looked at again under the claim: what it is now is what counts.
    if let Some(info) = nft.table_info(table)? {
        if info.comment.as_deref() != Some(TABLE_COMMENT) {
            let found = match info.comment {
                Some(c) => format!("its comment is {c:?}"),
                None => "it has no comment".to_string(),
            };
            return Err(Error::other(format!(
                "table inet {table} exists and was not created by nftsentry ({found}, not \"{}\"); \
                 it is left as it is. Set `table` to another name, or, if it is yours to drop, \
                 remove it with `nft delete table inet {table}`",
                TABLE_COMMENT
            )));
        }
        claim.leftover = true;
    }
    Ok(claim)
}

/// The pid of the nftsentry that holds the claim on `table` in this network
/// namespace, if one runs (`None` also when its pid cannot be read).
pub fn holder(table: &str) -> Option<i32> {
    holder_in(Path::new(CLAIM_DIR), table)
}

fn holder_in(dir: &Path, table: &str) -> Option<i32> {
    let path = claim_path_in(dir, table).ok()?;
    if held().contains(&path) {
        return i32::try_from(std::process::id()).ok();
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_CLOEXEC | nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(&path)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    lock_holder(&f).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nftsentry-claim-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_claim_names_its_holder_and_goes_with_it() {
        let d = dir("own");
        let c = claim_in(&d, "t1").unwrap();
        let path = c.path().to_path_buf();
        assert!(path.starts_with(&d), "{}", path.display());
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            name.starts_with("netns-") && name.ends_with(".inet.t1.lock"),
            "{name}"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Held by this process: a second claim is refused, and `holder`
        // answers without touching the file (which would drop the lock).
        let e = claim_in(&d, "t1").err().unwrap();
        assert!(
            e.message.contains(&format!(
                "table inet t1 is in use by another nftsentry in this network namespace (pid {}",
                std::process::id()
            )),
            "{}",
            e.message
        );
        assert_eq!(holder_in(&d, "t1"), Some(std::process::id() as i32));
        assert_eq!(holder_in(&d, "t2"), None);
        drop(c);
        assert!(!path.exists(), "the claim file stays");
        assert_eq!(holder_in(&d, "t1"), None);
        // A leftover file (a daemon killed) is taken over.
        std::fs::write(&path, "4194305\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = claim_in(&d, "t1").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        drop(c);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn links_and_open_directories_are_refused() {
        let d = dir("links");
        std::fs::create_dir_all(&d).unwrap();
        let path = claim_path_in(&d, "t").unwrap();
        let target = d.join("target");
        std::fs::write(&target, "x").unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let e = claim_in(&d, "t").err().unwrap();
        assert!(
            e.message.contains("refused: it is a symbolic link"),
            "{}",
            e.message
        );
        std::fs::remove_file(&path).unwrap();
        std::fs::hard_link(&target, &path).unwrap();
        let e = claim_in(&d, "t").err().unwrap();
        assert!(
            e.message.contains("refused: it has 2 hard links"),
            "{}",
            e.message
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "x");
        std::fs::remove_file(&path).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = claim_in(&d, "t").err().unwrap();
        assert!(
            e.message
                .contains("its mode is 0777: group or others may write it"),
            "{}",
            e.message
        );
        assert!(claim_in(&d, "a/b").is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
