//! state: the state file of active bans and remembered repeat offenders, its
//! line format, its atomic replacement and the lock that the daemon and the
//! command line take before they change it (or hosts.deny).
//!
//! One ban per line, `ban <address>` and then `key=value` fields separated by
//! spaces, values percent-encoded (every byte outside `!`..`~`, and `%`),
//! ending with `crc=` and an FNV-1a checksum of everything before it:
//!
//! ```text
//! ban 192.0.2.2 scan=syn proto=tcp port=1 banned=1700000000123 expires=1700086400123 length=86400000 repeat=1 set=1 kill_route=0 command=0 route=blackhole hosts_deny=/etc/hosts.deny hosts_deny_line=ALL:%20192.0.2.2 crc=5f3c0a1e
//! ```
//!
//! Times are milliseconds since 1970 (wall clock: they must mean the same
//! after a reboot). A line that fails its checksum or does not parse is
//! reported and skipped; the others are kept. The file is replaced whole:
//! written to a temporary file in the same directory, fsynced, renamed over
//! the old one, and the directory fsynced, so a crash leaves the old file or
//! the new one, never a mix.
//!
//! Knows nothing of the kernel, of actions or of when the file is written.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::config::{Proto, RouteMode};

/// What is in force for one ban: each action that was applied and is not
/// undone yet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// An element in the kernel set blocked4/blocked6.
    pub set: bool,
    /// A native host route of this kind, with our protocol number.
    pub route: Option<RouteMode>,
    /// The legacy kill_route command ran (nothing to undo).
    pub kill_route: bool,
    /// A line that we added to a hosts.deny file (file, line).
    pub hosts_deny: Option<(PathBuf, String)>,
    /// The external command was started (nothing to undo).
    pub command: bool,
}

impl Applied {
    /// Nothing was applied.
    pub fn is_empty(&self) -> bool {
        *self == Applied::default()
    }

    /// Something that must be undone when the ban ends.
    pub fn needs_undo(&self) -> bool {
        self.route.is_some() || self.hosts_deny.is_some()
    }
}

/// One ban, active or ended (an ended one is kept to remember a repeat
/// offender, or until what it applied is undone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub addr: IpAddr,
    /// The scan that triggered it (`ScanType::key`), "manual" for
    /// `nftsentry block`, "adopted" for a ban found in the kernel table.
    pub scan: String,
    pub proto: Option<Proto>,
    /// The port that tripped; 0 when there is none.
    pub port: u16,
    /// Milliseconds since 1970.
    pub banned_at: u64,
    pub expires_at: u64,
    /// The ban's full length in milliseconds: the base of an escalation.
    pub length: u64,
    /// 1 for a first ban, n for the nth in a row.
    pub repeat: u32,
    pub applied: Applied,
}

impl Entry {
    pub fn is_active(&self, now_ms: u64) -> bool {
        self.expires_at > now_ms
    }
}

/// Every entry, by address.
pub type Entries = BTreeMap<IpAddr, Entry>;

/// The comment lines at the top of the file.
pub const HEADER: &str = "# nftsentry state file: active bans and repeat offenders (nftsentry.toml(5), state_file).\n\
# Replaced as a whole on every change; edit it only while nftsentry is stopped.\n";

/// FNV-1a, 32 bits: catches a truncated or garbled line.
fn checksum(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

fn encode(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if (0x21..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

fn decode(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad escape at `{}`", &s[i..]))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// One entry as its line, with the newline.
pub fn render_entry(e: &Entry) -> String {
    let mut s = format!("ban {} scan=", e.addr);
    encode(&mut s, e.scan.as_bytes());
    let proto = e.proto.map(Proto::as_str).unwrap_or("-");
    let _ = write!(
        s,
        " proto={proto} port={} banned={} expires={} length={} repeat={} set={} kill_route={} command={}",
        e.port,
        e.banned_at,
        e.expires_at,
        e.length,
        e.repeat,
        e.applied.set as u8,
        e.applied.kill_route as u8,
        e.applied.command as u8
    );
    if let Some(r) = e.applied.route {
        let _ = write!(s, " route={}", r.as_str());
    }
    if let Some((path, line)) = &e.applied.hosts_deny {
        s.push_str(" hosts_deny=");
        encode(&mut s, path.as_os_str().as_bytes());
        s.push_str(" hosts_deny_line=");
        encode(&mut s, line.as_bytes());
    }
    let crc = checksum(s.as_bytes());
    let _ = writeln!(s, " crc={crc:08x}");
    s
}

/// The whole file.
pub fn render<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> String {
    let mut s = HEADER.to_string();
    for e in entries {
        s.push_str(&render_entry(e));
    }
    s
}

/// One line (without its newline) as an entry.
pub fn parse_line(line: &str) -> Result<Entry, String> {
    let (body, crc) = line
        .rsplit_once(" crc=")
        .ok_or("no checksum (the line is cut short)")?;
    let crc = u32::from_str_radix(crc, 16).map_err(|_| format!("bad checksum `{crc}`"))?;
    if crc != checksum(body.as_bytes()) {
        return Err("checksum mismatch (the line is damaged)".to_string());
    }
    let mut words = body.split(' ');
    if words.next() != Some("ban") {
        return Err("does not start with `ban`".to_string());
    }
    let addr_text = words.next().ok_or("no address")?;
    let addr: IpAddr = addr_text
        .parse()
        .map_err(|_| format!("`{addr_text}` is not an address"))?;
    let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
    for w in words {
        let (k, v) = w
            .split_once('=')
            .ok_or_else(|| format!("`{w}` is not key=value"))?;
        if fields.insert(k, v).is_some() {
            return Err(format!("`{k}` given twice"));
        }
    }
    let mut take = |k: &str| fields.remove(k);
    fn need<'a>(v: Option<&'a str>, k: &str) -> Result<&'a str, String> {
        v.ok_or_else(|| format!("no `{k}`"))
    }
    fn num<T: std::str::FromStr>(v: &str, k: &str) -> Result<T, String> {
        v.parse()
            .map_err(|_| format!("`{k}={v}` is not a valid number"))
    }
    fn flag(v: &str, k: &str) -> Result<bool, String> {
        match v {
            "0" => Ok(false),
            "1" => Ok(true),
            _ => Err(format!("`{k}={v}` is not 0 or 1")),
        }
    }
    let text = |v: &str, k: &str| {
        decode(v).and_then(|b| String::from_utf8(b).map_err(|_| format!("`{k}` is not UTF-8")))
    };
    let scan = text(need(take("scan"), "scan")?, "scan")?;
    let proto = match need(take("proto"), "proto")? {
        "tcp" => Some(Proto::Tcp),
        "udp" => Some(Proto::Udp),
        "-" => None,
        other => return Err(format!("`proto={other}` is not tcp, udp or -")),
    };
    let port = num(need(take("port"), "port")?, "port")?;
    let banned_at = num(need(take("banned"), "banned")?, "banned")?;
    let expires_at: u64 = num(need(take("expires"), "expires")?, "expires")?;
    let length = num(need(take("length"), "length")?, "length")?;
    let repeat = num(need(take("repeat"), "repeat")?, "repeat")?;
    let set = flag(need(take("set"), "set")?, "set")?;
    let kill_route = flag(need(take("kill_route"), "kill_route")?, "kill_route")?;
    let command = flag(need(take("command"), "command")?, "command")?;
    let route = match take("route") {
        None => None,
        Some(r) => Some(
            RouteMode::from_name(r)
                .filter(|m| *m != RouteMode::Off)
                .ok_or_else(|| format!("`route={r}` is not a route kind"))?,
        ),
    };
    let hosts_deny = match (take("hosts_deny"), take("hosts_deny_line")) {
        (None, None) => None,
        (Some(p), Some(l)) => {
            let path = PathBuf::from(std::ffi::OsString::from_vec(decode(p)?));
            Some((path, text(l, "hosts_deny_line")?))
        }
        _ => return Err("`hosts_deny` and `hosts_deny_line` go together".to_string()),
    };
    if let Some(k) = fields.keys().next() {
        return Err(format!("unknown field `{k}`"));
    }
    if expires_at < banned_at {
        return Err("expires before it was banned".to_string());
    }
    if !scan
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        || scan.is_empty()
    {
        return Err(format!("`scan={scan}` is not a scan name"));
    }
    Ok(Entry {
        addr,
        scan,
        proto,
        port,
        banned_at,
        expires_at,
        length,
        repeat,
        applied: Applied {
            set,
            route,
            kill_route,
            hosts_deny,
            command,
        },
    })
}

/// Every valid entry of `bytes`, and one message per line that is not
/// (`source:LINE: why; entry dropped`). A later line for the same address
/// replaces an earlier one.
pub fn parse(bytes: &[u8], source: &str) -> (Entries, Vec<String>) {
    let mut entries = Entries::new();
    let mut problems = Vec::new();
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    // The text after the last newline: empty when the file ends properly.
    let last = lines.pop().unwrap_or_default();
    let cut_short = !last.is_empty();
    if cut_short {
        lines.push(last);
    }
    let total = lines.len();
    for (i, raw) in lines.into_iter().enumerate() {
        let n = i + 1;
        if raw.is_empty() || raw.starts_with(b"#") {
            continue;
        }
        let result = std::str::from_utf8(raw)
            .map_err(|_| "not text".to_string())
            .and_then(parse_line)
            .and_then(|e| {
                if cut_short && n == total {
                    Err("the file ends in the middle of this line".to_string())
                } else {
                    Ok(e)
                }
            });
        match result {
            Ok(e) => {
                if entries.insert(e.addr, e).is_some() {
                    problems.push(format!(
                        "{source}:{n}: a second entry for the same address; the later one kept"
                    ));
                }
            }
            Err(why) => problems.push(format!("{source}:{n}: {why}; entry dropped")),
        }
    }
    (entries, problems)
}

/// Identifies one version of the file: a rename by anyone else changes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileId {
    fn of(m: &std::fs::Metadata) -> FileId {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        }
    }
}

/// The file's current identity; `None` when it does not exist.
pub fn file_id(path: &Path) -> std::io::Result<Option<FileId>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(FileId::of(&m))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads the file: its entries, the problems met, and its identity. A
/// missing file is empty.
pub fn load(path: &Path) -> std::io::Result<(Entries, Vec<String>, Option<FileId>)> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Entries::new(), Vec::new(), None));
        }
        Err(e) => return Err(e),
    };
    let id = FileId::of(&f.metadata()?);
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut bytes)?;
    let (entries, problems) = parse(&bytes, &path.display().to_string());
    Ok((entries, problems, Some(id)))
}

/// Removes the temporary files that writers of `target` left when they died
/// between creating and renaming them (kill -9, a crash, a power cut): the
/// names `.<file name><infix><pid>` next to it whose pid is not a live
/// process (a live one may be writing right now). Without this, each crash
/// in the middle of a write left a copy of the whole file behind for good
/// (seen in tests/crash.rs: 20 MB per kill with 100,000 bans). Returns what
/// it removed.
pub fn remove_dead_writers_files(target: &Path, infix: &str) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
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

/// Replaces the file with `text` atomically (see the module header) and
/// returns the new file's identity. Creates the directory (0750) if missing.
/// Root (the command line, while the daemon is stopped) makes files in a
/// directory that belongs to the daemon's user (systemd's StateDirectory
/// with DynamicUser): they are given to that user, or the daemon could not
/// read its own state at the next start.
pub fn give_to_dir_owner(f: &File, dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
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

pub fn save(path: &Path, text: &str) -> std::io::Result<FileId> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_CLOEXEC | nix::libc::O_NOFOLLOW)
            .open(&tmp)
    };
    let mut f = match create() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)?;
            create()?
        }
        other => other?,
    };
    give_to_dir_owner(&f, dir)?;
    let written = f
        .write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let id = FileId::of(&f.metadata()?);
    File::open(dir)?.sync_all()?;
    Ok(id)
}

/// An exclusive lock on `<state_file>.lock`, held until dropped.
pub struct Lock {
    _flock: nix::fcntl::Flock<File>,
}

/// The lock file's path for a state file.
pub fn lock_path(state: &Path) -> PathBuf {
    let mut p = state.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Takes the lock (waits for it). Creates the lock file and its directory.
pub fn lock(state: &Path) -> std::io::Result<Lock> {
    let path = lock_path(state);
    let open = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(nix::libc::O_CLOEXEC | nix::libc::O_NOFOLLOW)
            .open(&path)
    };
    let f = match open() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o750)
                    .create(dir)?;
            }
            open()?
        }
        other => other?,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        give_to_dir_owner(&f, dir)?;
    }
    let flock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| std::io::Error::from(e))?;
    Ok(Lock { _flock: flock })
}

#[cfg(test)]
mod tests {

    #[test]
    fn root_gives_new_files_to_the_directory_owner() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the test suite runs as root"
        );
        let dir = std::env::temp_dir().join(format!("nftsentry-owner-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let nobody = nix::unistd::Uid::from_raw(65534);
        let nogroup = nix::unistd::Gid::from_raw(65534);
        nix::unistd::chown(&dir, Some(nobody), Some(nogroup)).unwrap();
        let state = dir.join("state");
        save(&state, "").unwrap();
        drop(lock(&state).unwrap());
        crate::journal::history::append(&dir.join("history"), "x").unwrap();
        use std::os::unix::fs::MetadataExt;
        for f in ["state", "state.lock", "history"] {
            let m = std::fs::metadata(dir.join(f)).unwrap();
            assert_eq!((m.uid(), m.gid()), (65534, 65534), "{f}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    use super::*;

    #[test]
    fn leftovers_of_dead_writers_go_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("nftsentry-left-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let state = dir.join("state");
        // A pid that is not running: above the kernel's pid_max.
        let dead = dir.join(".state.tmp.4194305");
        let mine = dir.join(format!(".state.tmp.{}", std::process::id()));
        let other = dir.join(".other.tmp.4194305");
        let odd = dir.join(".state.tmp.x");
        for f in [&dead, &mine, &other, &odd, &state] {
            std::fs::write(f, "x").unwrap();
        }
        let linked = dir.join(".state.tmp.4194306");
        std::os::unix::fs::symlink(&state, &linked).unwrap();
        assert_eq!(
            remove_dead_writers_files(&state, ".tmp."),
            vec![dead.clone()]
        );
        for f in [&mine, &other, &odd, &state, &linked] {
            assert!(
                std::fs::symlink_metadata(f).is_ok(),
                "{} removed",
                f.display()
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn entry(addr: &str) -> Entry {
        Entry {
            addr: addr.parse().unwrap(),
            scan: "syn".into(),
            proto: Some(Proto::Tcp),
            port: 1,
            banned_at: 1_700_000_000_123,
            expires_at: 1_700_086_400_123,
            length: 86_400_000,
            repeat: 1,
            applied: Applied {
                set: true,
                ..Applied::default()
            },
        }
    }

    #[test]
    fn round_trip_every_field() {
        let mut full = entry("2001:db8:1::2");
        full.scan = "unknown".into();
        full.proto = Some(Proto::Udp);
        full.port = 65535;
        full.repeat = 7;
        full.applied = Applied {
            set: true,
            route: Some(RouteMode::Prohibit),
            kill_route: true,
            hosts_deny: Some((
                PathBuf::from("/etc/hosts deny%\u{e9}"),
                "ALL: [2001:db8:1::2] : spawn (echo %h) \t=x".into(),
            )),
            command: true,
        };
        let mut manual = entry("198.51.100.7");
        manual.scan = "manual".into();
        manual.proto = None;
        manual.port = 0;
        manual.applied = Applied::default();
        let text = render([&full, &manual]);
        assert!(text.starts_with("# nftsentry state file"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(!line.contains('\t'), "{line}");
            assert!(line.is_ascii(), "{line}");
        }
        let (entries, problems) = parse(text.as_bytes(), "s");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[&full.addr], full);
        assert_eq!(entries[&manual.addr], manual);
    }

    #[test]
    fn line_format_is_stable() {
        let mut e = entry("192.0.2.2");
        e.applied.route = Some(RouteMode::Blackhole);
        e.applied.hosts_deny = Some(("/etc/hosts.deny".into(), "ALL: 192.0.2.2".into()));
        let line = render_entry(&e);
        let body = "ban 192.0.2.2 scan=syn proto=tcp port=1 banned=1700000000123 expires=1700086400123 length=86400000 repeat=1 set=1 kill_route=0 command=0 route=blackhole hosts_deny=/etc/hosts.deny hosts_deny_line=ALL:%20192.0.2.2";
        assert_eq!(
            line,
            format!("{body} crc={:08x}\n", checksum(body.as_bytes()))
        );
    }

    #[test]
    fn damaged_lines_are_dropped_and_named_the_rest_kept() {
        let a = render_entry(&entry("192.0.2.2"));
        let b = render_entry(&entry("192.0.2.3"));
        let c = render_entry(&entry("192.0.2.4"));
        // b garbled in the middle, c cut short at the end of the file.
        let garbled = b.replacen("port=1", "port=7", 1);
        let text = format!("{HEADER}{a}{garbled}\n# comment\n{}", &c[..c.len() - 20]);
        let (entries, problems) = parse(text.as_bytes(), "/var/lib/nftsentry/state");
        assert_eq!(
            entries.keys().map(|a| a.to_string()).collect::<Vec<_>>(),
            ["192.0.2.2"]
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(
            problems[0],
            "/var/lib/nftsentry/state:4: checksum mismatch (the line is damaged); entry dropped"
        );
        assert!(
            problems[1].starts_with("/var/lib/nftsentry/state:7: "),
            "{problems:?}"
        );
        // A whole line that only lacks its final newline is also suspect.
        let text = format!("{a}{}", b.trim_end());
        let (entries, problems) = parse(text.as_bytes(), "s");
        assert_eq!(entries.len(), 1);
        assert_eq!(
            problems,
            ["s:2: the file ends in the middle of this line; entry dropped"]
        );
    }

    #[test]
    fn semantic_errors() {
        let with = |f: &dyn Fn(&str) -> String| {
            let body = f(
                "ban 192.0.2.2 scan=syn proto=tcp port=1 banned=5 expires=9 length=4 repeat=1 set=1 kill_route=0 command=0",
            );
            format!("{body} crc={:08x}", checksum(body.as_bytes()))
        };
        for (edit, why) in [
            (
                &(|s: &str| s.replace("192.0.2.2", "192.0.2")) as &dyn Fn(&str) -> String,
                "is not an address",
            ),
            (
                &|s: &str| s.replace("port=1", "port=70000"),
                "not a valid number",
            ),
            (
                &|s: &str| s.replace("expires=9", "expires=4"),
                "expires before",
            ),
            (&|s: &str| s.replace("set=1", "set=yes"), "not 0 or 1"),
            (&|s: &str| s.replace(" repeat=1", ""), "no `repeat`"),
            (&|s: &str| format!("{s} color=red"), "unknown field `color`"),
            (&|s: &str| format!("{s} port=2"), "`port` given twice"),
            (&|s: &str| format!("{s} route=off"), "not a route kind"),
            (&|s: &str| format!("{s} hosts_deny=/x"), "go together"),
            (&|s: &str| s.replace("scan=syn", "scan=%41%4"), "bad escape"),
            (
                &|s: &str| s.replace("proto=tcp", "proto=icmp"),
                "not tcp, udp",
            ),
            (
                &|s: &str| s.replace("ban ", "bam "),
                "does not start with `ban`",
            ),
        ] {
            let line = with(edit);
            let e = parse_line(&line).expect_err(&line);
            assert!(e.contains(why), "{line}: {e}");
        }
        assert!(parse_line(&with(&|s: &str| s.to_string())).is_ok());
        assert!(
            parse_line("ban 192.0.2.2")
                .unwrap_err()
                .contains("no checksum")
        );
    }

    #[test]
    fn garbage_never_panics() {
        let good = render([&entry("192.0.2.2"), &entry("2001:db8::1")]);
        let bytes = good.as_bytes();
        for end in 0..=bytes.len() {
            let _ = parse(&bytes[..end], "p");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.to_vec();
            b[i] ^= 0x5a;
            let (entries, _) = parse(&b, "p");
            assert!(entries.len() <= 2);
        }
        for junk in [
            &b"\xff\xfe\n"[..],
            b"ban",
            b"ban  crc=",
            b"%",
            b"ban x crc=zz\n",
        ] {
            let _ = parse(junk, "j");
        }
    }

    #[test]
    fn save_replaces_atomically_and_load_reads_back() {
        let dir = std::env::temp_dir().join(format!("nftsentry-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("deeper").join("state");
        let (e, p, id) = load(&path).unwrap();
        assert!(e.is_empty() && p.is_empty() && id.is_none());
        let one = render([&entry("192.0.2.2")]);
        let id1 = save(&path, &one).unwrap();
        assert_eq!(file_id(&path).unwrap(), Some(id1));
        let (e, p, id) = load(&path).unwrap();
        assert_eq!((e.len(), p.len(), id), (1, 0, Some(id1)));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Someone else replacing the file changes its identity.
        let two = render([&entry("192.0.2.2"), &entry("192.0.2.3")]);
        let id2 = save(&path, &two).unwrap();
        assert_ne!(id1, id2);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), two);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|d| d.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("state")]);
        {
            let _l = lock(&path).unwrap();
            assert!(lock_path(&path).exists());
        }
        let _l = lock(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
