//! unit_sandbox::accounts: users and groups as /etc/passwd and /etc/group
//! under the root name them: a user's uid and gid, a group's gid, and the
//! groups a user is a member of.
//!
//! Knows nothing of units or of the files judged.

use std::path::Path;

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

pub(super) fn lookup_user(root: &Path, name: &str) -> Option<(u32, u32)> {
    let by_number = name.parse::<u32>().ok();
    db(root, "etc/passwd")
        .into_iter()
        .find(|f| f[0] == name || by_number.is_some_and(|n| f[2] == n.to_string()))
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
}

pub(super) fn lookup_group(root: &Path, name: &str) -> Option<u32> {
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    db(root, "etc/group")
        .into_iter()
        .find(|f| f[0] == name)
        .and_then(|f| f[2].parse().ok())
}

/// The groups `user` is a member of in /etc/group (what initgroups gives).
pub(super) fn member_of(root: &Path, user: &str) -> Vec<u32> {
    db(root, "etc/group")
        .into_iter()
        .filter(|f| f[3].split(',').any(|m| m == user))
        .filter_map(|f| f[2].parse().ok())
        .collect()
}
