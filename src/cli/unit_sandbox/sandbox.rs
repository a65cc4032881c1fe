//! unit_sandbox::sandbox: the service as the unit (or the command line)
//! will run it: its identity (a dynamic user, or `User=` and `Group=` with
//! their groups), and how each directory is mounted for it (ProtectSystem=,
//! ProtectHome=, PrivateTmp=, ReadWritePaths= and the like, and the
//! directories the unit makes and gives to its user), as systemd.exec(5)
//! says; and the service in a line for `check`.
//!
//! Knows nothing of a file's permissions: `verdict` weighs them.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use super::UNIT;
use super::accounts::{lookup_group, lookup_user, member_of};
use super::unit::{Settings, boolean, bytes, setting_path, words};

/// The identity the service has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// `DynamicUser=yes`: a user allocated at start, who owns nothing but
    /// the unit's state, runtime, cache and logs directories.
    Dynamic,
    /// `User=` (with `Group=`), or root when neither is set.
    User { name: String, uid: u32, gid: u32 },
}

/// How a directory is mounted for the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mount {
    Writable,
    ReadOnly,
    Inaccessible,
    /// PrivateTmp=: writable, but seen by no one else and emptied at stop.
    Private,
    /// A directory of the unit (StateDirectory= ...): writable, owned by
    /// the service's user.
    Owned,
}

/// The service as the unit (or the command line) will run it.
#[derive(Clone, Debug)]
pub struct Service {
    /// The unit file and its drop-ins; empty without an installed unit.
    pub files: Vec<PathBuf>,
    pub identity: Identity,
    pub(super) supplementary: Vec<String>,
    /// Longest prefix wins; on a tie, the later entry.
    pub(super) mounts: Vec<(PathBuf, Mount, String)>,
    /// The directories the unit makes and gives to the service's user.
    pub(super) owned: Vec<PathBuf>,
    pub memory_max: Option<u64>,
    /// The config file of ExecStart= (`-c FILE`), if it names one.
    pub exec_config: Option<PathBuf>,
    /// Where files are looked for: "/" but in tests.
    pub(super) root: PathBuf,
}

/// Lexically normalised absolute path (`.` and `..` resolved).
pub(super) fn normal(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

impl Service {
    /// The service from the unit's text (the unit file, then its drop-ins).
    pub fn from_unit(root: &Path, files: Vec<PathBuf>, texts: &[String]) -> Service {
        let s = Settings::new(texts);
        let dynamic = s.last("DynamicUser").and_then(|v| boolean(&v)) == Some(true);
        let identity = identity(&s, root, dynamic);
        // In this order: on a tie of prefixes the later entry wins.
        let mut mounts = Mounts::new();
        protect_system(&s, dynamic, &mut mounts);
        protect_home(&s, dynamic, &mut mounts);
        private_tmp(&s, dynamic, &mut mounts);
        path_settings(&s, &mut mounts);
        let owned = unit_directories(&s, &mut mounts);
        let exec_config = exec_config(&s);
        Service {
            files,
            identity,
            supplementary: s.all("SupplementaryGroups"),
            mounts,
            owned,
            memory_max: s.last("MemoryMax").and_then(|v| bytes(&v)),
            exec_config,
            root: root.to_path_buf(),
        }
    }

    /// The daemon started from the command line as `user` (or root): no
    /// sandbox, and no capability to override file permissions.
    pub fn command_line(root: &Path, user: &str) -> Service {
        let name = if user.is_empty() { "root" } else { user };
        let (uid, gid) = lookup_user(root, name).unwrap_or((u32::MAX, u32::MAX));
        Service {
            files: Vec::new(),
            identity: Identity::User {
                name: name.to_string(),
                uid,
                gid,
            },
            supplementary: Vec::new(),
            mounts: Vec::new(),
            owned: Vec::new(),
            memory_max: None,
            exec_config: None,
            root: root.to_path_buf(),
        }
    }

    /// Who the service runs as, and where it may write, in a line.
    pub fn describe(&self) -> String {
        let who = match &self.identity {
            Identity::Dynamic => "a user allocated at start (DynamicUser=yes)".to_string(),
            Identity::User { name, uid, .. } => format!("{name} (uid {uid})"),
        };
        let Some(unit) = self.files.first() else {
            return format!(
                "service: no {UNIT} installed: judged as `nftsentry run` started by hand, as {who}"
            );
        };
        let mut s = format!("service: {UNIT} ({}", self.shown(unit).display());
        for d in &self.files[1..] {
            let _ = write!(s, ", {}", self.shown(d).display());
        }
        let _ = write!(s, ") runs it as {who}");
        let mut writable: Vec<String> = self
            .mounts
            .iter()
            .filter(|(_, m, _)| matches!(m, Mount::Owned | Mount::Writable))
            .filter(|(p, _, _)| !["/dev", "/proc", "/sys"].contains(&p.to_str().unwrap_or("")))
            .map(|(p, _, _)| p.display().to_string())
            .collect();
        writable.dedup();
        if self
            .mounts
            .iter()
            .any(|(p, m, _)| p == Path::new("/") && *m == Mount::ReadOnly)
        {
            let _ = write!(
                s,
                ", on a read-only file system but for {}",
                writable.join(", ")
            );
        }
        s
    }

    /// `p` as the system names it (without the test root).
    fn shown(&self, p: &Path) -> PathBuf {
        match p.strip_prefix(&self.root) {
            Ok(r) => Path::new("/").join(r),
            Err(_) => p.to_path_buf(),
        }
    }

    /// The mount that decides for `path`.
    pub(super) fn mount(&self, path: &Path) -> (Mount, &str) {
        let mut best: Option<(usize, Mount, &str)> = None;
        for (p, m, why) in &self.mounts {
            if path.starts_with(p) {
                let n = p.components().count();
                if best.is_none_or(|(b, _, _)| n >= b) {
                    best = Some((n, *m, why));
                }
            }
        }
        best.map(|(_, m, w)| (m, w))
            .unwrap_or((Mount::Writable, ""))
    }

    /// The uid, and the gids, the service has for `path`: a dynamic user is
    /// the owner of the unit's directory holding it (systemd gives the
    /// directory to it), and owns nothing elsewhere.
    pub(super) fn ids_for(&self, path: &Path) -> (Option<u32>, Vec<u32>) {
        let mut gids: Vec<u32> = self
            .supplementary
            .iter()
            .filter_map(|g| lookup_group(&self.root, g))
            .collect();
        match &self.identity {
            Identity::User { name, uid, gid } => {
                gids.push(*gid);
                gids.extend(member_of(&self.root, name));
                (Some(*uid), gids)
            }
            Identity::Dynamic => {
                let dir = self.owned.iter().find(|d| path.starts_with(d));
                match dir.and_then(|d| std::fs::metadata(self.real(d)).ok()) {
                    Some(m) => {
                        gids.push(m.gid());
                        (Some(m.uid()), gids)
                    }
                    None => (None, gids),
                }
            }
        }
    }

    pub(super) fn real(&self, p: &Path) -> PathBuf {
        self.root.join(p.strip_prefix("/").unwrap_or(p))
    }

    pub(super) fn who(&self) -> String {
        match &self.identity {
            Identity::Dynamic => "the service's dynamic user".to_string(),
            Identity::User { name, uid, .. } => format!("uid {uid} ({name})"),
        }
    }

    pub(super) fn writable_dirs(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .mounts
            .iter()
            .filter(|(p, m, _)| {
                matches!(m, Mount::Owned | Mount::Writable)
                    && !["/dev", "/proc", "/sys"].contains(&p.to_str().unwrap_or(""))
            })
            .map(|(p, _, _)| p.display().to_string())
            .collect();
        v.dedup();
        v
    }

    /// The directory that holds `path`, or the nearest one above it that
    /// exists (the daemon creates missing ones).
    pub(super) fn nearest_dir(&self, path: &Path) -> PathBuf {
        let mut dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        while std::fs::metadata(self.real(&dir)).is_err() {
            if self.owned.contains(&dir) {
                break;
            }
            match dir.parent() {
                Some(p) => dir = p.to_path_buf(),
                None => break,
            }
        }
        dir
    }
}

/// The mounts of the unit's settings, each with the setting it comes from.
type Mounts = Vec<(PathBuf, Mount, String)>;

/// A fixed directory mounted as `m` because of `why`.
fn base(mounts: &mut Mounts, p: &str, m: Mount, why: &str) {
    mounts.push((PathBuf::from(p), m, why.to_string()));
}

/// `DynamicUser=yes`, else `User=` (root when unset) and `Group=`, as
/// /etc/passwd and /etc/group number them.
fn identity(s: &Settings, root: &Path, dynamic: bool) -> Identity {
    if dynamic {
        Identity::Dynamic
    } else {
        let name = s.last("User").unwrap_or_else(|| "root".to_string());
        let (uid, mut gid) = lookup_user(root, &name).unwrap_or(if name == "root" {
            (0, 0)
        } else {
            (u32::MAX, u32::MAX)
        });
        if let Some(g) = s.last("Group").and_then(|g| lookup_group(root, &g)) {
            gid = g;
        }
        Identity::User { name, uid, gid }
    }
}

/// ProtectSystem=: /usr, /boot and /efi read-only ("yes"), /etc too
/// ("full"), or all but the API file systems ("strict").
fn protect_system(s: &Settings, dynamic: bool, mounts: &mut Mounts) {
    // DynamicUser= implies ProtectSystem=strict, ProtectHome=read-only
    // and PrivateTmp= (systemd.exec(5)).
    let protect_system = s
        .last("ProtectSystem")
        .map(|v| v.to_ascii_lowercase())
        .unwrap_or_default();
    let protect_system = match protect_system.as_str() {
        "strict" => "strict",
        "full" => "full",
        v if boolean(v) == Some(true) => "yes",
        _ if dynamic => "strict",
        _ => "",
    };
    let why_system = format!("ProtectSystem={protect_system}");
    match protect_system {
        "strict" => base(mounts, "/", Mount::ReadOnly, &why_system),
        "full" => {
            for p in ["/usr", "/boot", "/efi", "/etc"] {
                base(mounts, p, Mount::ReadOnly, &why_system);
            }
        }
        "yes" => {
            for p in ["/usr", "/boot", "/efi"] {
                base(mounts, p, Mount::ReadOnly, &why_system);
            }
        }
        _ => {}
    }
    if protect_system == "strict" {
        // API file systems stay as they are.
        for p in ["/dev", "/proc", "/sys"] {
            base(mounts, p, Mount::Writable, "an API file system");
        }
    }
}

/// ProtectHome=: /home, /root and /run/user read-only, private or
/// inaccessible.
fn protect_home(s: &Settings, dynamic: bool, mounts: &mut Mounts) {
    let protect_home = s
        .last("ProtectHome")
        .map(|v| v.to_ascii_lowercase())
        .unwrap_or_default();
    let home = match protect_home.as_str() {
        "read-only" => Some(Mount::ReadOnly),
        "tmpfs" => Some(Mount::Private),
        v if boolean(v) == Some(true) => Some(Mount::Inaccessible),
        // DynamicUser= implies ProtectHome=read-only.
        _ if dynamic => Some(Mount::ReadOnly),
        _ => None,
    };
    if let Some(m) = home {
        let why = format!(
            "ProtectHome={}",
            if protect_home.is_empty() {
                "read-only"
            } else {
                &protect_home
            }
        );
        for p in ["/home", "/root", "/run/user"] {
            base(mounts, p, m, &why);
        }
    }
}

/// PrivateTmp=: a private /tmp and /var/tmp.
fn private_tmp(s: &Settings, dynamic: bool, mounts: &mut Mounts) {
    // DynamicUser= implies PrivateTmp=.
    let private_tmp = s
        .last("PrivateTmp")
        .and_then(|v| boolean(&v))
        .unwrap_or(dynamic);
    if private_tmp {
        for p in ["/tmp", "/var/tmp"] {
            base(mounts, p, Mount::Private, "PrivateTmp=yes");
        }
    }
}

/// ReadWritePaths=, ReadOnlyPaths= and InaccessiblePaths=.
fn path_settings(s: &Settings, mounts: &mut Mounts) {
    for (key, m) in [
        ("ReadWritePaths", Mount::Writable),
        ("ReadOnlyPaths", Mount::ReadOnly),
        ("InaccessiblePaths", Mount::Inaccessible),
    ] {
        for w in s.all(key) {
            if let Some(p) = setting_path(&w) {
                mounts.push((normal(&p), m, format!("{key}={}", p.display())));
            }
        }
    }
}

/// StateDirectory=, RuntimeDirectory=, CacheDirectory= and LogsDirectory=:
/// directories the unit makes and gives to the service's user; returned.
fn unit_directories(s: &Settings, mounts: &mut Mounts) -> Vec<PathBuf> {
    let mut owned = Vec::new();
    for (key, dir) in [
        ("StateDirectory", "/var/lib"),
        ("RuntimeDirectory", "/run"),
        ("CacheDirectory", "/var/cache"),
        ("LogsDirectory", "/var/log"),
    ] {
        for w in s.all(key) {
            let name = w.split(':').next().unwrap_or(&w).trim_matches('/');
            if name.is_empty() {
                continue;
            }
            let p = normal(&Path::new(dir).join(name));
            mounts.push((p.clone(), Mount::Owned, format!("{key}={name}")));
            owned.push(p);
        }
    }
    owned
}

/// The config file ExecStart= names with `-c FILE`, `--config FILE` or
/// `--config=FILE`.
fn exec_config(s: &Settings) -> Option<PathBuf> {
    s.last("ExecStart").and_then(|v| {
        let w = words(&v);
        w.iter()
            .position(|x| x == "-c" || x == "--config")
            .and_then(|i| w.get(i + 1))
            .map(PathBuf::from)
            .or_else(|| {
                w.iter()
                    .find_map(|x| x.strip_prefix("--config="))
                    .map(PathBuf::from)
            })
    })
}
