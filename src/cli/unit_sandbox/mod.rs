//! unit_sandbox: how the installed systemd unit will run the daemon, so that
//! `nftsentry check` judges the files of a config as the service will meet
//! them (its user, its read-only file system), not as the root who runs
//! `check`.
//!
//! The unit is read as systemd finds it: the first `nftsentry.service` on
//! the unit path, then its drop-ins (`nftsentry.service.d/*.conf` of every
//! directory on the path, a name in an earlier directory hiding the same
//! name in a later one, applied in the order of their names); a later line
//! overrides an earlier one and an empty assignment clears a list. Of the
//! settings, only those that decide who writes where are read: `User=`,
//! `Group=`, `DynamicUser=`, `SupplementaryGroups=`, `ProtectSystem=`,
//! `ProtectHome=`, `PrivateTmp=`, `ReadWritePaths=`, `ReadOnlyPaths=`,
//! `InaccessiblePaths=`, `StateDirectory=`, `RuntimeDirectory=`,
//! `CacheDirectory=`, `LogsDirectory=`, and `MemoryMax=` (against the
//! memory a config can take). Without an installed unit the daemon runs as
//! `nftsentry run` would: as root, or as `user`, without capabilities to
//! override file permissions.
//!
//! Knows nothing of nftables; reads files, never changes any.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, Result};

/// The unit's name.
pub const UNIT: &str = "nftsentry.service";

/// systemd's system unit path, most important first (systemd.unit(5)).
const UNIT_DIRS: &[&str] = &[
    "etc/systemd/system.control",
    "run/systemd/system.control",
    "etc/systemd/system",
    "run/systemd/system",
    "usr/local/lib/systemd/system",
    "usr/lib/systemd/system",
    "lib/systemd/system",
];

/// What the daemon's memory costs beyond the tracker and the bans.
const BASE_BYTES: u64 = 8 << 20;
/// What one ban costs in the daemon (its record, the set element it
/// mirrors, its line in the state file being rendered); measured: 0.7 KB
/// of resident memory per ban with 20000 bans, rounded up.
pub const BAN_BYTES: u64 = 1024;

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
enum Mount {
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
    supplementary: Vec<String>,
    /// Longest prefix wins; on a tie, the later entry.
    mounts: Vec<(PathBuf, Mount, String)>,
    /// The directories the unit makes and gives to the service's user.
    owned: Vec<PathBuf>,
    pub memory_max: Option<u64>,
    /// The config file of ExecStart= (`-c FILE`), if it names one.
    pub exec_config: Option<PathBuf>,
    /// Where files are looked for: "/" but in tests.
    root: PathBuf,
}

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

/// The unit's settings that matter here, as assignments in order.
fn assignments(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        // A line ending in a backslash goes on.
        if let Some(head) = line.strip_suffix('\\') {
            if !(line.starts_with('#') || line.starts_with(';')) {
                pending.push_str(head);
                pending.push(' ');
                continue;
            }
        }
        let line = std::mem::take(&mut pending) + line;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).to_string();
            continue;
        }
        if section != "Service" {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

fn boolean(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Some(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Some(false),
        _ => None,
    }
}

/// `1G`, `256M`, `512K`, bytes, or infinity (None); a percentage is of
/// physical memory, which is not ours to know here: ignored.
fn bytes(v: &str) -> Option<u64> {
    let v = v.trim();
    if v.is_empty() || v == "infinity" || v.ends_with('%') {
        return None;
    }
    let (num, mult) = match v.as_bytes()[v.len() - 1] {
        b'K' => (&v[..v.len() - 1], 1u64 << 10),
        b'M' => (&v[..v.len() - 1], 1 << 20),
        b'G' => (&v[..v.len() - 1], 1 << 30),
        b'T' => (&v[..v.len() - 1], 1 << 40),
        _ => (v, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

/// A path of a setting: `-` (ignore if missing), `+` (relative to the
/// root directory, none here) and `:` options stripped.
fn setting_path(word: &str) -> Option<PathBuf> {
    let w = word.trim_start_matches(['-', '+']);
    let w = w.split(':').next().unwrap_or(w);
    w.starts_with('/').then(|| PathBuf::from(w))
}

/// The words of a list setting, `"..."` kept together.
fn words(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in v.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Lexically normalised absolute path (`.` and `..` resolved).
fn normal(p: &Path) -> PathBuf {
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

/// `/etc/passwd` (or `/etc/group`) entries: name, then the fields.
fn db(root: &Path, file: &str) -> Vec<Vec<String>> {
    std::fs::read_to_string(root.join(file))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect()
}

fn lookup_user(root: &Path, name: &str) -> Option<(u32, u32)> {
    let by_number = name.parse::<u32>().ok();
    db(root, "etc/passwd")
        .into_iter()
        .find(|f| f[0] == name || by_number.is_some_and(|n| f[2] == n.to_string()))
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
}

fn lookup_group(root: &Path, name: &str) -> Option<u32> {
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    db(root, "etc/group")
        .into_iter()
        .find(|f| f[0] == name)
        .and_then(|f| f[2].parse().ok())
}

/// The groups `user` is a member of in /etc/group (what initgroups gives).
fn member_of(root: &Path, user: &str) -> Vec<u32> {
    db(root, "etc/group")
        .into_iter()
        .filter(|f| f[3].split(',').any(|m| m == user))
        .filter_map(|f| f[2].parse().ok())
        .collect()
}

impl Service {
    /// The installed unit under `root` ("/"), or `None` when there is none.
    /// A masked unit (linked to /dev/null) counts as none.
    pub fn installed(root: &Path) -> Option<Service> {
        let main = UNIT_DIRS
            .iter()
            .map(|d| root.join(d).join(UNIT))
            .find(|p| std::fs::symlink_metadata(p).is_ok())?;
        if std::fs::canonicalize(&main).is_ok_and(|p| p == Path::new("/dev/null"))
            || std::fs::metadata(&main).is_ok_and(|m| m.len() == 0)
        {
            return None;
        }
        let mut files = vec![main];
        // Drop-ins: one per name, the first directory's.
        let mut dropins: BTreeMap<String, PathBuf> = BTreeMap::new();
        for d in UNIT_DIRS {
            let dir = root.join(d).join(format!("{UNIT}.d"));
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".conf") {
                    dropins.entry(name).or_insert_with(|| e.path());
                }
            }
        }
        files.extend(dropins.into_values());
        let texts: Vec<String> = files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap_or_default())
            .collect();
        Some(Service::from_unit(root, files, &texts))
    }

    /// The service from the unit's text (the unit file, then its drop-ins).
    pub fn from_unit(root: &Path, files: Vec<PathBuf>, texts: &[String]) -> Service {
        let mut s: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for text in texts {
            for (k, v) in assignments(text) {
                let list = s.entry(k).or_default();
                if v.is_empty() {
                    list.clear();
                } else {
                    list.push(v);
                }
            }
        }
        let last = |k: &str| s.get(k).and_then(|v| v.last()).cloned();
        let all = |k: &str| -> Vec<String> {
            s.get(k)
                .map(|v| v.iter().flat_map(|x| words(x)).collect())
                .unwrap_or_default()
        };
        let dynamic = last("DynamicUser").and_then(|v| boolean(&v)) == Some(true);
        let identity = if dynamic {
            Identity::Dynamic
        } else {
            let name = last("User").unwrap_or_else(|| "root".to_string());
            let (uid, mut gid) = lookup_user(root, &name).unwrap_or(if name == "root" {
                (0, 0)
            } else {
                (u32::MAX, u32::MAX)
            });
            if let Some(g) = last("Group").and_then(|g| lookup_group(root, &g)) {
                gid = g;
            }
            Identity::User { name, uid, gid }
        };

        let mut mounts: Vec<(PathBuf, Mount, String)> = Vec::new();
        let mut base = |p: &str, m: Mount, why: &str| {
            mounts.push((PathBuf::from(p), m, why.to_string()));
        };
        // DynamicUser= implies ProtectSystem=strict, ProtectHome=read-only
        // and PrivateTmp= (systemd.exec(5)).
        let protect_system = last("ProtectSystem")
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
            "strict" => base("/", Mount::ReadOnly, &why_system),
            "full" => {
                for p in ["/usr", "/boot", "/efi", "/etc"] {
                    base(p, Mount::ReadOnly, &why_system);
                }
            }
            "yes" => {
                for p in ["/usr", "/boot", "/efi"] {
                    base(p, Mount::ReadOnly, &why_system);
                }
            }
            _ => {}
        }
        if protect_system == "strict" {
            // API file systems stay as they are.
            for p in ["/dev", "/proc", "/sys"] {
                base(p, Mount::Writable, "an API file system");
            }
        }
        let protect_home = last("ProtectHome")
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
                base(p, m, &why);
            }
        }
        // DynamicUser= implies PrivateTmp=.
        let private_tmp = last("PrivateTmp")
            .and_then(|v| boolean(&v))
            .unwrap_or(dynamic);
        if private_tmp {
            for p in ["/tmp", "/var/tmp"] {
                base(p, Mount::Private, "PrivateTmp=yes");
            }
        }
        for (key, m) in [
            ("ReadWritePaths", Mount::Writable),
            ("ReadOnlyPaths", Mount::ReadOnly),
            ("InaccessiblePaths", Mount::Inaccessible),
        ] {
            for w in all(key) {
                if let Some(p) = setting_path(&w) {
                    mounts.push((normal(&p), m, format!("{key}={}", p.display())));
                }
            }
        }
        let mut owned = Vec::new();
        for (key, dir) in [
            ("StateDirectory", "/var/lib"),
            ("RuntimeDirectory", "/run"),
            ("CacheDirectory", "/var/cache"),
            ("LogsDirectory", "/var/log"),
        ] {
            for w in all(key) {
                let name = w.split(':').next().unwrap_or(&w).trim_matches('/');
                if name.is_empty() {
                    continue;
                }
                let p = normal(&Path::new(dir).join(name));
                mounts.push((p.clone(), Mount::Owned, format!("{key}={name}")));
                owned.push(p);
            }
        }
        let exec_config = last("ExecStart").and_then(|v| {
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
        });
        Service {
            files,
            identity,
            supplementary: all("SupplementaryGroups"),
            mounts,
            owned,
            memory_max: last("MemoryMax").and_then(|v| bytes(&v)),
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
    fn mount(&self, path: &Path) -> (Mount, &str) {
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
    fn ids_for(&self, path: &Path) -> (Option<u32>, Vec<u32>) {
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

    fn real(&self, p: &Path) -> PathBuf {
        self.root.join(p.strip_prefix("/").unwrap_or(p))
    }

    fn who(&self) -> String {
        match &self.identity {
            Identity::Dynamic => "the service's dynamic user".to_string(),
            Identity::User { name, uid, .. } => format!("uid {uid} ({name})"),
        }
    }

    /// Whether the service can use `path` as `how` says; the reason if not.
    pub fn judge(&self, path: &Path, how: Use) -> std::result::Result<(), String> {
        let path = normal(path);
        let (mount, why) = self.mount(&path);
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
        let (uid, gids) = self.ids_for(&path);
        // Search permission on every directory above it, up to a directory
        // the unit manages (systemd opens the way to those).
        let managed = self.owned.iter().find(|d| path.starts_with(d));
        let mut dir = path.parent();
        while let Some(d) = dir {
            // Above a directory of the unit, systemd opens the way (with
            // DynamicUser=, /var/lib/private is root's and mode 0700).
            if managed.is_some_and(|m| !d.starts_with(m)) {
                break;
            }
            if let Ok(m) = std::fs::metadata(self.real(d)) {
                if !allowed(&m, uid, &gids, 0o1) {
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
        let meta = std::fs::symlink_metadata(self.real(&path)).ok();
        let need_dir = match how {
            Use::Read => false,
            Use::Append => meta.is_none(),
            Use::Replace | Use::Create => true,
        };
        if need_dir {
            let dir = self.nearest_dir(&path);
            // A directory the unit makes at start is the service's.
            let made = self.owned.iter().any(|o| dir.starts_with(o))
                && std::fs::metadata(self.real(&dir)).is_err();
            if !made {
                if let Ok(m) = std::fs::metadata(self.real(&dir)) {
                    if !allowed(&m, uid, &gids, 0o3) {
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
        if let Some(m) = meta {
            match how {
                Use::Read if !allowed(&m, uid, &gids, 0o4) => {
                    return Err(format!(
                        "{} cannot read it (mode {:o}, owner uid {})",
                        self.who(),
                        m.mode() & 0o7777,
                        m.uid()
                    ));
                }
                Use::Append if !allowed(&m, uid, &gids, 0o2) => {
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
        }
        Ok(())
    }

    fn writable_dirs(&self) -> Vec<String> {
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
    fn nearest_dir(&self, path: &Path) -> PathBuf {
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

/// The line (1-based) of `key = ...` at the top level of the config text.
fn key_line(text: &str, key: &str) -> Option<usize> {
    let mut top = true;
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if l.starts_with('[') {
            top = false;
        }
        if top
            && l.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
        {
            return Some(i + 1);
        }
    }
    None
}

/// The memory a config can make the daemon take, at most.
pub fn memory_bound(cfg: &Config) -> u64 {
    let tracker = crate::detect::Tracker::ENTRY_BYTES as u64 + 8;
    BASE_BYTES + cfg.max_tracked_sources as u64 * tracker + 2 * u64::from(cfg.set_size) * BAN_BYTES
}

/// `check`'s judgement of the config's files under the installed unit (or
/// as `nftsentry run` would run): the lines to print, or a config error
/// naming each file the service could not use, with the key's line.
pub fn check(cfg: &Config, root: &Path) -> Result<Vec<String>> {
    let service =
        Service::installed(root).unwrap_or_else(|| Service::command_line(root, &cfg.user));
    let mut lines = vec![service.describe()];
    let text = std::fs::read_to_string(&cfg.source).unwrap_or_default();
    let at = |key: &str| match key_line(&text, key) {
        Some(n) => format!("{}:{n}: {key}", cfg.source),
        None => format!("{}: {key}", cfg.source),
    };
    let mut errors = Vec::new();
    let mut judge = |key: &str, path: &Path, how: Use, hint: &str| match service.judge(path, how) {
        Ok(()) => {}
        Err(why) => errors.push(format!(
            "{} {:?}: the service cannot {} it: {why}{hint}",
            at(key),
            path.display().to_string(),
            match how {
                Use::Read => "read",
                Use::Append => "append to",
                Use::Replace => "replace",
                Use::Create => "create",
            }
        )),
    };
    let unit = !service.files.is_empty();
    let elsewhere = if unit {
        "; keep it in /var/lib/nftsentry, the service's state directory"
    } else {
        ""
    };
    if let Some(p) = &cfg.state_file {
        judge("state_file", p, Use::Replace, elsewhere);
    }
    if let Some(p) = &cfg.history_file {
        let hint = if unit {
            "; use history_file = \"/var/lib/nftsentry/history\" (the default) and point what reads the old file there"
        } else {
            ""
        };
        judge("history_file", p, Use::Append, hint);
    }
    if let Some(p) = &cfg.hosts_deny {
        let hint = if unit {
            "; use hosts_deny = \"/var/lib/nftsentry/hosts.deny\" with hosts_deny_line = \"$TARGET$\", and add once to /etc/hosts.deny the line \"ALL: /var/lib/nftsentry/hosts.deny\" (PRIVILEGES in nftsentry(8))"
        } else {
            ""
        };
        judge("hosts_deny", p, Use::Replace, hint);
    }
    if let Some(p) = &cfg.control_socket {
        judge("control_socket", p, Use::Create, elsewhere);
    }
    if let Some(p) = &cfg.ignore_file {
        if std::fs::metadata(service.real(p)).is_ok() {
            judge("ignore_file", p, Use::Read, "");
        }
    }
    // The config file itself is judged by its permissions only: the unit
    // reads /etc/nftsentry/nftsentry.toml, and `check` is often run on a
    // copy that goes there next (mv keeps the mode and owner).
    if cfg.source != crate::config::BUILTIN_SOURCE {
        let config = PathBuf::from(&cfg.source);
        let mut s = service.clone();
        s.mounts.clear();
        if let Err(why) = s.judge(&config, Use::Read) {
            errors.push(format!(
                "{}: the service cannot read the config: {why}",
                cfg.source
            ));
        }
    }
    if unit && !cfg.user.is_empty() {
        lines.push(format!(
            "warning: user = {:?} is set, but {UNIT} chooses the service's user: leave user empty under the unit",
            cfg.user
        ));
    }
    if let Some(max) = service.memory_max {
        let bound = memory_bound(cfg);
        if bound > max {
            lines.push(format!(
                "warning: this config can take up to {} MiB (max_tracked_sources {} at 48 bytes, 2 x set_size {} bans at about 1 KiB), more than MemoryMax={} MiB of {UNIT}: raise it with a drop-in (systemctl edit nftsentry)",
                bound >> 20,
                cfg.max_tracked_sources,
                cfg.set_size,
                max >> 20
            ));
        }
    }
    if !errors.is_empty() {
        let mut msg = format!(
            "{} file{} the service cannot use ({}):",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            service.describe().trim_start_matches("service: ")
        );
        for e in errors {
            msg.push_str("\n  ");
            msg.push_str(&e);
        }
        return Err(Error::config(msg));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests;
