//! unit_sandbox::unit: the unit as systemd finds it, the first
//! `nftsentry.service` on the unit path and its drop-ins, and the syntax of
//! their settings: the `[Service]` assignments in order (a line ending in
//! a backslash goes on), booleans, sizes, paths and word lists.
//!
//! Knows nothing of what a setting does to the service: `sandbox` says that.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Service, UNIT};

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

/// The unit's settings that matter here, as assignments in order.
pub(super) fn assignments(text: &str) -> Vec<(String, String)> {
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

/// The settings of the unit and its drop-ins, in order: a later line
/// adds to a list, an empty assignment clears it.
pub(super) struct Settings(BTreeMap<String, Vec<String>>);

impl Settings {
    pub(super) fn new(texts: &[String]) -> Settings {
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
        Settings(s)
    }

    /// The last value of `k`: a setting of one value.
    pub(super) fn last(&self, k: &str) -> Option<String> {
        self.0.get(k).and_then(|v| v.last()).cloned()
    }

    /// The words of every value of `k`: a list setting.
    pub(super) fn all(&self, k: &str) -> Vec<String> {
        self.0
            .get(k)
            .map(|v| v.iter().flat_map(|x| words(x)).collect())
            .unwrap_or_default()
    }
}

pub(super) fn boolean(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Some(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Some(false),
        _ => None,
    }
}

/// `1G`, `256M`, `512K`, bytes, or infinity (None); a percentage is of
/// physical memory, which is not ours to know here: ignored.
pub(super) fn bytes(v: &str) -> Option<u64> {
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
pub(super) fn setting_path(word: &str) -> Option<PathBuf> {
    let w = word.trim_start_matches(['-', '+']);
    let w = w.split(':').next().unwrap_or(w);
    w.starts_with('/').then(|| PathBuf::from(w))
}

/// The words of a list setting, `"..."` kept together.
pub(super) fn words(v: &str) -> Vec<String> {
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
}
