//! unit_sandbox::verdict: whether the service can use one file as the
//! daemon does (read it, append to it, replace it, create a socket beside
//! it): the mount that decides for it, search permission on the
//! directories above it, write permission on the one that holds it, and
//! the file's own mode and owner, as for a process without
//! CAP_DAC_OVERRIDE; the reason when it cannot.
//!
//! Knows nothing of the config's keys: `check` names them.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::sandbox::{Mount, normal};
use super::{Service, UNIT};

/// How the daemon uses a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// Read (the config, the ignore file).
    Read,
    /// Opened for appending, created if missing (history, state lock).
    Append,
    /// A new file in the same directory renamed over it (state, hosts.deny),
    /// keeping the old file's owner and group.
    Replace,
    /// A socket made in the directory (the control socket).
    Create,
}

impl Service {
    /// Whether the service can use `path` as `how` says; the reason if not.
    pub fn judge(&self, path: &Path, how: Use) -> std::result::Result<(), String> {
        let path = normal(path);
        self.judge_mount(&path, how)?;
        let (uid, gids) = self.ids_for(&path);
        self.judge_search(&path, uid, &gids)?;
        let meta = std::fs::symlink_metadata(self.real(&path)).ok();
        self.judge_dir(&path, how, meta.is_none(), uid, &gids)?;
        match meta {
            Some(m) => self.judge_file(&m, how, uid, &gids),
            None => Ok(()),
        }
    }

    /// The mount that decides for `path`: inaccessible, private, or
    /// read-only for a use that writes.
    fn judge_mount(&self, path: &Path, how: Use) -> std::result::Result<(), String> {
        let (mount, why) = self.mount(path);
        let unit = self.files.first().map(|_| UNIT).unwrap_or("the daemon");
        let writes = how != Use::Read;
        match mount {
            Mount::Inaccessible => {
                return Err(format!("it is not accessible under {unit} ({why})"));
            }
            Mount::Private => {
                return Err(format!(
                    "{unit} gives the service a private {} ({why}) that no one else sees and that is emptied when it stops",
                    self.mounts
                        .iter()
                        .filter(|(p, m, w)| *m == Mount::Private && w == why && path.starts_with(p))
                        .map(|(p, _, _)| p.display().to_string())
                        .next_back()
                        .unwrap_or_default()
                ));
            }
            Mount::ReadOnly if writes => {
                let writable = self.writable_dirs();
                return Err(format!(
                    "{} is read-only under {unit} ({why}; the service may write {})",
                    path.parent().unwrap_or(Path::new("/")).display(),
                    writable.join(" and ")
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// Search permission on every directory above `path`, up to a directory
    /// the unit manages (systemd opens the way to those).
    fn judge_search(
        &self,
        path: &Path,
        uid: Option<u32>,
        gids: &[u32],
    ) -> std::result::Result<(), String> {
        let managed = self.owned.iter().find(|d| path.starts_with(d));
        let mut dir = path.parent();
        while let Some(d) = dir {
            // Above a directory of the unit, systemd opens the way (with
            // DynamicUser=, /var/lib/private is root's and mode 0700).
            if managed.is_some_and(|m| !d.starts_with(m)) {
                break;
            }
            if let Ok(m) = std::fs::metadata(self.real(d)) {
                if !allowed(&m, uid, gids, 0o1) {
                    return Err(format!(
                        "{} cannot enter {} (mode {:o}, owner uid {})",
                        self.who(),
                        d.display(),
                        m.mode() & 0o7777,
                        m.uid()
                    ));
                }
            }
            dir = d.parent();
        }
        Ok(())
    }

    /// Write permission on the directory that holds `path` (or the nearest
    /// one that exists), for a use that makes a file there.
    fn judge_dir(
        &self,
        path: &Path,
        how: Use,
        missing: bool,
        uid: Option<u32>,
        gids: &[u32],
    ) -> std::result::Result<(), String> {
        let need_dir = match how {
            Use::Read => false,
            Use::Append => missing,
            Use::Replace | Use::Create => true,
        };
        if need_dir {
            let dir = self.nearest_dir(path);
            // A directory the unit makes at start is the service's.
            let made = self.owned.iter().any(|o| dir.starts_with(o))
                && std::fs::metadata(self.real(&dir)).is_err();
            if !made {
                if let Ok(m) = std::fs::metadata(self.real(&dir)) {
                    if !allowed(&m, uid, gids, 0o3) {
                        return Err(format!(
                            "{} cannot create files in {} (mode {:o}, owner uid {}, group gid {})",
                            self.who(),
                            dir.display(),
                            m.mode() & 0o7777,
                            m.uid(),
                            m.gid()
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The existing file's own mode and owner.
    fn judge_file(
        &self,
        m: &std::fs::Metadata,
        how: Use,
        uid: Option<u32>,
        gids: &[u32],
    ) -> std::result::Result<(), String> {
        match how {
            Use::Read if !allowed(m, uid, gids, 0o4) => {
                return Err(format!(
                    "{} cannot read it (mode {:o}, owner uid {})",
                    self.who(),
                    m.mode() & 0o7777,
                    m.uid()
                ));
            }
            Use::Append if !allowed(m, uid, gids, 0o2) => {
                return Err(format!(
                    "{} cannot write it (mode {:o}, owner uid {})",
                    self.who(),
                    m.mode() & 0o7777,
                    m.uid()
                ));
            }
            Use::Replace if uid != Some(m.uid()) => {
                return Err(format!(
                    "it is owned by uid {} and replacing it keeps its owner, which {} cannot give away (chown it to the directory's owner)",
                    m.uid(),
                    self.who()
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

/// Whether `bits` (r=4, w=2, x=1, combined) are granted to uid/gids by
/// `m`'s mode, as for a process without CAP_DAC_OVERRIDE.
fn allowed(m: &std::fs::Metadata, uid: Option<u32>, gids: &[u32], bits: u32) -> bool {
    let mode = m.mode();
    let granted = if uid == Some(m.uid()) {
        (mode >> 6) & 7
    } else if gids.contains(&m.gid()) {
        (mode >> 3) & 7
    } else {
        mode & 7
    };
    granted & bits == bits
}
