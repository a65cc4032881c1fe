//! actions::hosts_deny: one line per banned host in a tcp_wrappers file.
//!
//! The file is read, changed in memory and replaced: a new file in the same
//! directory (same owner and mode), fsynced, renamed over the old one, the
//! directory fsynced. A crash leaves the old file or the new one, never half
//! a line. A line is never added twice, and every other byte of the file,
//! comments and blank lines and a missing final newline included, stays as
//! it was: removing the line we added gives back the file as it was before.
//! A symbolic link, anything but a regular file, and a world-writable file
//! are refused: writing through them would let someone else choose what we
//! overwrite, or undo our lines.
//!
//! Knows nothing of bans or templates: it is given the finished line.

use crate::cidr::Cidr;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

use super::command::substitute;
use super::{Action, ActionKind, Context, End, Ensure, How, Target};

/// What `add` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// The line was added.
    Added,
    /// The same line was already in the file: left as it was.
    AlreadyThere,
}

fn fail(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::other(format!("hosts.deny file {}: {why}", path.display()))
}

/// Checks the file before we touch it. `Ok(None)` when it does not exist.
pub fn check(path: &Path) -> Result<Option<std::fs::Metadata>> {
    let m = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail(path, e)),
    };
    let ft = m.file_type();
    if ft.is_symlink() {
        return Err(fail(
            path,
            "is a symbolic link; refusing to write through it (set hosts_deny to the real file)",
        ));
    }
    if !ft.is_file() {
        return Err(fail(path, "is not a regular file; refusing to replace it"));
    }
    let mode = m.permissions().mode();
    if mode & 0o002 != 0 {
        return Err(fail(
            path,
            format!(
                "is world-writable (mode {:04o}); refusing to use it: anyone could add or remove lines (chmod o-w)",
                mode & 0o7777
            ),
        ));
    }
    Ok(Some(m))
}

/// Reads the file (without following a symbolic link); empty if missing.
/// The file stays open: what others append while we rewrite it is read
/// from it afterwards (`remove_lines`).
fn read(path: &Path) -> Result<(Vec<u8>, Option<Opened>)> {
    let Some(meta) = check(path)? else {
        return Ok((Vec::new(), None));
    };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| fail(path, e))?;
    same_file(path, &meta, &f)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::io::Read::read_to_end(&mut f, &mut bytes).map_err(|e| fail(path, e))?;
    Ok((bytes, Some((meta, f))))
}

/// A file as checked, and the descriptor it was read through.
type Opened = (std::fs::Metadata, std::fs::File);

/// The file opened is the one checked (nothing swapped it in between).
fn same_file(path: &Path, checked: &std::fs::Metadata, f: &std::fs::File) -> Result<()> {
    let m = f.metadata().map_err(|e| fail(path, e))?;
    if (m.dev(), m.ino()) != (checked.dev(), checked.ino()) || !m.is_file() {
        return Err(fail(path, "changed while it was being opened; left alone"));
    }
    Ok(())
}

fn check_line(path: &Path, line: &str) -> Result<()> {
    if line.contains(['\n', '\r', '\0']) || line.trim().is_empty() {
        return Err(fail(path, format!("{line:?} is not one line of text")));
    }
    Ok(())
}

/// Is `line` in the file (ignoring white space at the ends of lines)?
pub fn contains(path: &Path, line: &str) -> Result<bool> {
    let (bytes, _) = read(path)?;
    Ok(position(&bytes, trim_ws_end(line.as_bytes()), true).is_some())
}

/// Adds `line` unless the file has it already.
pub fn add(path: &Path, line: &str) -> Result<Added> {
    Ok(add_lines(path, &[line.to_string()])?[0])
}

/// Adds each of `lines` that the file does not have yet, in one write at
/// its end (O_APPEND: a line another writer appends at the same time is
/// never lost), or, when the file does not exist, by creating it whole.
/// Says for each line whether it was added.
pub fn add_lines(path: &Path, lines: &[String]) -> Result<Vec<Added>> {
    for l in lines {
        check_line(path, l)?;
    }
    let (bytes, open) = read(path)?;
    let mut result = Vec::with_capacity(lines.len());
    let mut fresh: Vec<&str> = Vec::new();
    let mut there = line_set(&bytes);
    for l in lines {
        if there.insert(trim_ws_end(l.as_bytes())) {
            fresh.push(l);
            result.push(Added::Added);
        } else {
            result.push(Added::AlreadyThere);
        }
    }
    if fresh.is_empty() {
        return Ok(result);
    }
    let Some((meta, _)) = open else {
        let mut content = Vec::new();
        for l in &fresh {
            content = with_line(&content, l).unwrap_or(content);
        }
        replace(path, &content, None)?;
        return Ok(result);
    };
    // A file without a final newline keeps having none, as `with_line`
    // writes it, so that removing the lines gives it back exactly.
    let mut tail = Vec::new();
    let ends_open = !bytes.is_empty() && !bytes.ends_with(b"\n");
    if ends_open {
        tail.push(b'\n');
    }
    tail.extend_from_slice(fresh.join("\n").as_bytes());
    if !ends_open {
        tail.push(b'\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| fail(path, format!("cannot append to it: {e}")))?;
    same_file(path, &meta, &f)?;
    f.write_all(&tail)
        .and_then(|()| f.sync_data())
        .map_err(|e| fail(path, format!("cannot append to it: {e}")))?;
    Ok(result)
}

/// Removes `line` (the last copy, exactly as given). Ok(false) if the file
/// or the line is not there.
pub fn remove(path: &Path, line: &str) -> Result<bool> {
    Ok(remove_lines(path, &[line.to_string()])?[0])
}

/// Removes each of `lines` (the last exact copy of each) in one rewrite,
/// and says for each whether it was there. What another writer appends
/// while the file is rewritten is read from the old file afterwards and
/// appended to the new one.
pub fn remove_lines(path: &Path, lines: &[String]) -> Result<Vec<bool>> {
    let (bytes, open) = read(path)?;
    let Some((meta, mut old)) = open else {
        return Ok(vec![false; lines.len()]);
    };
    let (content, result) = without_lines(&bytes, lines);
    if !result.contains(&true) {
        return Ok(result);
    }
    replace(path, &content, Some(&meta))?;
    let mut late = Vec::new();
    std::io::Read::read_to_end(&mut old, &mut late).map_err(|e| fail(path, e))?;
    if !late.is_empty() {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| fail(path, e))?;
        f.write_all(&late)
            .and_then(|()| f.sync_data())
            .map_err(|e| {
                fail(
                    path,
                    format!("cannot append what was written meanwhile: {e}"),
                )
            })?;
    }
    Ok(result)
}

/// `b` without the white space C's isspace() knows at its end (space, tab,
/// newline, vertical tab, form feed, carriage return). The same trimming on
/// both sides of a loose compare: trimming the line one way (str::trim_end,
/// Unicode) and the file's lines another (trim_ascii_end, which keeps a
/// vertical tab) made a line ending in a vertical tab or a no-break space
/// never match itself, and added again at every ban (found by fuzzing).
fn trim_ws_end(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r'))
        .map_or(0, |i| i + 1);
    &b[..end]
}

/// Index and length (without newline) of the line equal to `line`; the
/// last one when several are. `loose` ignores white space at line ends.
fn position(content: &[u8], line: &[u8], loose: bool) -> Option<(usize, usize)> {
    let mut found = None;
    let mut start = 0;
    while start < content.len() {
        let end = content[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(content.len(), |i| start + i);
        let text = &content[start..end];
        let same = if loose {
            trim_ws_end(text) == line
        } else {
            text == line
        };
        if same {
            found = Some((start, end - start));
        }
        start = end + 1;
    }
    found
}

/// The content with `line` added at the end, or `None` if a line equal to
/// it (ignoring white space at the ends) is already there. A file without
/// a final newline keeps having none, so that `without_line` can restore
/// it exactly.
pub fn with_line(content: &[u8], line: &str) -> Option<Vec<u8>> {
    if position(content, trim_ws_end(line.as_bytes()), true).is_some() {
        return None;
    }
    let mut out = Vec::with_capacity(content.len() + line.len() + 2);
    out.extend_from_slice(content);
    if content.is_empty() || content.ends_with(b"\n") {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    } else {
        out.push(b'\n');
        out.extend_from_slice(line.as_bytes());
    }
    Some(out)
}

/// The content without the last line exactly equal to `line`, or `None` if
/// there is none. The inverse of `with_line`.
pub fn without_line(content: &[u8], line: &str) -> Option<Vec<u8>> {
    let (start, len) = position(content, line.as_bytes(), false)?;
    let end = start + len;
    let mut out = Vec::with_capacity(content.len());
    if end < content.len() {
        // "line\n": drop it and its newline.
        out.extend_from_slice(&content[..start]);
        out.extend_from_slice(&content[end + 1..]);
    } else {
        // The last line, without a newline: drop the newline before it too.
        out.extend_from_slice(&content[..start.saturating_sub(1)]);
    }
    Some(out)
}

/// Each line of `content` (start, length without its newline).
fn lines_of(content: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= content.len() {
            return None;
        }
        let end = content[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(content.len(), |i| start + i);
        let line = (start, end - start);
        start = end + 1;
        Some(line)
    })
}

/// The lines of `content`, trimmed as `with_line` compares them: a lookup
/// per line instead of a scan of the file (a restart with 100,000 bans).
fn line_set(content: &[u8]) -> std::collections::HashSet<&[u8]> {
    lines_of(content)
        .map(|(s, l)| trim_ws_end(&content[s..s + l]))
        .collect()
}

/// `without_line` for each of `lines` in one pass over `content`: the last
/// exact copy of each goes, and says for each whether it was there. The
/// same bytes as removing them one by one.
pub fn without_lines(content: &[u8], lines: &[String]) -> (Vec<u8>, Vec<bool>) {
    let mut last: std::collections::HashMap<&[u8], usize> = std::collections::HashMap::new();
    let all: Vec<(usize, usize)> = lines_of(content).collect();
    for (i, &(s, l)) in all.iter().enumerate() {
        last.insert(&content[s..s + l], i);
    }
    let mut gone = vec![false; all.len()];
    let found: Vec<bool> = lines
        .iter()
        .map(|l| match last.remove(l.as_bytes()) {
            Some(i) => {
                gone[i] = true;
                true
            }
            None => false,
        })
        .collect();
    if !found.contains(&true) {
        return (content.to_vec(), found);
    }
    let mut out = Vec::with_capacity(content.len());
    for (i, &(s, l)) in all.iter().enumerate() {
        if !gone[i] {
            let end = (s + l + 1).min(content.len());
            out.extend_from_slice(&content[s..end]);
        }
    }
    // A file without a final newline keeps having none.
    if !content.ends_with(b"\n") && out.ends_with(b"\n") {
        out.pop();
    }
    (out, found)
}

/// Removes what writers that died left next to `path` (`.hosts.deny
/// .nftsentry.<pid>` of a pid that is gone); returns what it removed.
pub fn remove_leftovers(path: &Path) -> Vec<PathBuf> {
    crate::files::remove_dead_writers_files(path, LEFTOVER_INFIX)
}

/// In the names of our temporary files: `.hosts.deny.nftsentry.<pid>`.
const LEFTOVER_INFIX: &str = ".nftsentry.";

/// Replaces the file atomically with `bytes`, keeping the old file's owner
/// and mode (a new file is 0644).
fn replace(path: &Path, bytes: &[u8], old: Option<&std::fs::Metadata>) -> Result<()> {
    let how = crate::files::Replace {
        mode: old.map_or(0o644, |m| m.permissions().mode() & 0o7777),
        owner: old.map(|m| (m.uid(), m.gid())),
        infix: LEFTOVER_INFIX,
        make_dir: false,
    };
    match crate::files::replace(path, bytes, &how) {
        Ok(_) => Ok(()),
        Err(e @ crate::files::ReplaceError::Create(..)) => Err(fail(path, e)),
        Err(e) => Err(fail(path, format!("cannot replace it: {e}"))),
    }
}

/// The hosts.deny step: the configured line for each banned host, in the
/// configured file, under the state file's lock when the daemon edits it.
pub struct HostsDeny {
    path: PathBuf,
    template: String,
    /// The state file whose lock is taken around each edit; `None` when the
    /// caller holds it (the command line).
    lock: Option<PathBuf>,
}

/// `$TARGET$` in a hosts.deny line: tcp_wrappers matches an IPv6 client
/// only written in brackets (`[2001:db8::7]`), a prefix as
/// `[2001:db8::]/64`, an IPv4 network as `198.18.0.0/255.255.255.0`
/// (hosts_access(5)).
pub fn wrapped(addr: Cidr) -> String {
    addr.hosts_access()
}

impl HostsDeny {
    pub fn new(path: PathBuf, template: String, lock: Option<PathBuf>) -> HostsDeny {
        HostsDeny {
            path,
            template,
            lock,
        }
    }

    /// The line for `t`: the template with its variables replaced.
    pub fn line(&self, t: &Target) -> String {
        let with_target = self.template.replace("$TARGET$", &wrapped(t.addr));
        substitute(&with_target, &t.vars(), false)
    }

    /// The line 0.1.0 wrote for `t` (IPv6 without brackets), removed when
    /// the line of today is not there.
    fn old_line(&self, t: &Target) -> Option<String> {
        let old = substitute(&self.template, &t.vars(), false);
        (old != self.line(t)).then_some(old)
    }

    fn locked<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let _guard = match &self.lock {
            Some(p) => Some(crate::journal::state_file::lock(p)?),
            None => None,
        };
        f()
    }

    fn added(&self, t: &Target, line: &str, how: How) {
        if how == How::PutBack {
            log_notice!(
                "attackalert: Host {} has been blocked via wrappers with string: \"{line}\" (put back: it was missing from {})",
                t.addr,
                self.path.display()
            );
        } else {
            log_notice!(
                "attackalert: Host {} has been blocked via wrappers with string: \"{line}\"",
                t.addr
            );
        }
    }

    fn not_ours(&self, t: &Target, line: &str) {
        // Not ours: it stays when the ban ends.
        log_info!(
            "attackalert: Host {}: {} already has the line \"{line}\"; not added",
            t.addr,
            self.path.display()
        );
    }

    fn removed(&self, t: &Target, line: &str, was_there: bool) {
        if was_there {
            log_info!(
                "attackalert: Host {}: wrappers string \"{line}\" removed from {}",
                t.addr,
                self.path.display()
            );
        } else {
            log_info!(
                "attackalert: Host {}: wrappers string \"{line}\" was already gone from {}",
                t.addr,
                self.path.display()
            );
        }
    }
}

impl Action for HostsDeny {
    fn kind(&self) -> ActionKind {
        ActionKind::HostsDeny
    }

    fn apply(&mut self, _cx: &mut Context<'_>, t: &Target, how: How) -> Result<bool> {
        let line = self.line(t);
        match self.locked(|| add(&self.path, &line))? {
            Added::Added => {
                self.added(t, &line, how);
                Ok(true)
            }
            Added::AlreadyThere if how == How::New => {
                self.not_ours(t, &line);
                Ok(false)
            }
            Added::AlreadyThere => Ok(true),
        }
    }

    fn check(&mut self, _cx: &mut Context<'_>, t: &Target) -> Result<bool> {
        if contains(&self.path, &self.line(t))? {
            return Ok(true);
        }
        match self.old_line(t) {
            Some(old) => contains(&self.path, &old),
            None => Ok(false),
        }
    }

    fn undo(&mut self, cx: &mut Context<'_>, t: &Target, end: End) -> Result<bool> {
        self.undo_all(cx, &[t], end).remove(0)
    }

    fn failure(&self, t: &Target, e: &Error) -> String {
        format!(
            "attackalert: ERROR: could not block host {} via wrappers: {e}",
            t.addr
        )
    }

    fn remove_leftovers(&self) -> Vec<PathBuf> {
        self.locked(|| Ok(remove_leftovers(&self.path)))
            .unwrap_or_default()
    }

    fn ensure_all(&mut self, _cx: &mut Context<'_>, items: &[Ensure<'_>]) -> Vec<Result<bool>> {
        let outcome = self.locked(|| {
            let (bytes, _) = read(&self.path)?;
            let set = line_set(&bytes);
            let present = |l: &str| set.contains(trim_ws_end(l.as_bytes()));
            // A recorded ban whose line 0.1.0 wrote is in force as it is.
            let kept: Vec<bool> = items
                .iter()
                .map(|i| i.recorded && self.old_line(i.target).is_some_and(|o| present(&o)))
                .collect();
            let lines: Vec<String> = items.iter().map(|i| self.line(i.target)).collect();
            let wanted: Vec<String> = lines
                .iter()
                .zip(&kept)
                .filter(|(_, k)| !**k)
                .map(|(l, _)| l.clone())
                .collect();
            let mut added = add_lines(&self.path, &wanted)?.into_iter();
            Ok(kept
                .iter()
                .map(|k| if *k { None } else { added.next() })
                .collect::<Vec<Option<Added>>>())
        });
        match outcome {
            Err(e) => items.iter().map(|_| Err(e.clone())).collect(),
            Ok(outcome) => items
                .iter()
                .zip(outcome)
                .map(|(i, o)| {
                    let line = self.line(i.target);
                    Ok(match (o, i.how()) {
                        (None, _) => true,
                        (Some(Added::Added), how) => {
                            self.added(i.target, &line, how);
                            true
                        }
                        (Some(Added::AlreadyThere), How::New) => {
                            self.not_ours(i.target, &line);
                            false
                        }
                        (Some(Added::AlreadyThere), _) => true,
                    })
                })
                .collect(),
        }
    }

    fn undo_all(
        &mut self,
        _cx: &mut Context<'_>,
        targets: &[&Target],
        _end: End,
    ) -> Vec<Result<bool>> {
        let outcome = self.locked(|| {
            let lines: Vec<String> = targets.iter().map(|t| self.line(t)).collect();
            let mut gone = remove_lines(&self.path, &lines)?;
            // Lines 0.1.0 wrote (IPv6 without brackets), where today's
            // were not there.
            let old: Vec<(usize, String)> = targets
                .iter()
                .enumerate()
                .filter(|(i, _)| !gone[*i])
                .filter_map(|(i, t)| self.old_line(t).map(|l| (i, l)))
                .collect();
            if !old.is_empty() {
                let texts: Vec<String> = old.iter().map(|(_, l)| l.clone()).collect();
                for ((i, _), g) in old.iter().zip(remove_lines(&self.path, &texts)?) {
                    gone[*i] = g;
                }
            }
            Ok((lines, gone))
        });
        match outcome {
            Ok((lines, gone)) => targets
                .iter()
                .zip(lines.iter().zip(gone))
                .map(|(t, (line, g))| {
                    self.removed(t, line, g);
                    Ok(g)
                })
                .collect(),
            Err(e) => targets
                .iter()
                .map(|t| {
                    log_error!(
                        "adminalert: ERROR: could not remove the wrappers string of host {}: {e}",
                        t.addr
                    );
                    Err(e.clone())
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_many_lines_at_once_is_removing_them_one_by_one() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let words = [
            "ALL: 1", "ALL: 2", "ALL: 3", "# c", "", "ALL: 1 ", "sshd: 4",
        ];
        for _ in 0..2000 {
            let n = rnd(8);
            let mut content = Vec::new();
            for k in 0..n {
                content.extend_from_slice(words[rnd(7) as usize].as_bytes());
                if k + 1 < n || rnd(2) == 0 {
                    content.push(b'\n');
                }
            }
            let mut targets: Vec<String> = (0..rnd(4))
                .map(|_| words[rnd(7) as usize].to_string())
                .filter(|w| !w.is_empty())
                .collect();
            targets.dedup();
            targets.sort();
            targets.dedup();
            let mut one = content.clone();
            let mut found = Vec::new();
            for t in &targets {
                match without_line(&one, t) {
                    Some(o) => {
                        one = o;
                        found.push(true);
                    }
                    None => found.push(false),
                }
            }
            let (all, f) = without_lines(&content, &targets);
            assert_eq!(
                (String::from_utf8_lossy(&all), &f),
                (String::from_utf8_lossy(&one), &found),
                "{:?} minus {targets:?}",
                String::from_utf8_lossy(&content)
            );
        }
    }

    #[test]
    fn a_line_ending_in_odd_white_space_is_added_once_and_removed() {
        for line in [
            "ALL: 192.0.2.7\x0b",
            "ALL: 192.0.2.7\u{a0}",
            "ALL: 192.0.2.7 \x0c",
        ] {
            let once = with_line(b"# x\n", line).unwrap();
            assert_eq!(with_line(&once, line), None, "{line:?} added twice");
            assert_eq!(without_line(&once, line).as_deref(), Some(&b"# x\n"[..]));
        }
        // Trailing blanks on either side still do not count.
        assert_eq!(with_line(b"ALL: 192.0.2.7 \t\n", "ALL: 192.0.2.7"), None);
        assert_eq!(with_line(b"ALL: 192.0.2.7\n", "ALL: 192.0.2.7\x0b "), None);
    }

    const LINE: &str = "ALL: 192.0.2.2";

    #[test]
    fn add_then_remove_restores_every_byte() {
        for content in [
            "",
            "\n",
            "# comment\n",
            "# comment",
            "sshd: 10.0.0.0/8\r\n\n#x\n",
            "a\n\n\n",
            "ALL: 192.0.2.22\nALL: 192.0.2.2 \t# other\n",
        ] {
            let added =
                with_line(content.as_bytes(), LINE).unwrap_or_else(|| panic!("{content:?}"));
            assert!(added.starts_with(content.as_bytes()), "{content:?}");
            let text = String::from_utf8(added.clone()).unwrap();
            assert_eq!(
                text.matches(LINE).count(),
                content.matches(LINE).count() + 1
            );
            assert_eq!(
                without_line(&added, LINE).unwrap(),
                content.as_bytes(),
                "{content:?} -> {text:?}"
            );
        }
    }

    #[test]
    fn never_a_duplicate() {
        for content in [
            "ALL: 192.0.2.2\n",
            "# x\nALL: 192.0.2.2",
            "ALL: 192.0.2.2  \n# x\n",
            "ALL: 192.0.2.2\r\n",
        ] {
            assert_eq!(with_line(content.as_bytes(), LINE), None, "{content:?}");
        }
        let once = with_line(b"# head\n", LINE).unwrap();
        assert_eq!(with_line(&once, LINE), None);
    }

    #[test]
    fn remove_takes_only_the_exact_line() {
        assert_eq!(without_line(b"ALL: 192.0.2.22\n", LINE), None);
        assert_eq!(without_line(b"# ALL: 192.0.2.2\n", LINE), None);
        assert_eq!(without_line(b"", LINE), None);
        assert_eq!(
            without_line(b"ALL: 192.0.2.2\nx\nALL: 192.0.2.2\ny\n", LINE).unwrap(),
            b"ALL: 192.0.2.2\nx\ny\n"
        );
        assert_eq!(without_line(b"ALL: 192.0.2.2", LINE).unwrap(), b"");
        assert_eq!(without_line(b"ALL: 192.0.2.2\n", LINE).unwrap(), b"");
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nftsentry-hd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn file_round_trip_keeps_mode_and_content() {
        let d = tempdir("rt");
        let p = d.join("hosts.deny");
        let original = "# /etc/hosts.deny\n#\n# comments stay\nsshd: 203.0.113.9\n";
        std::fs::write(&p, original).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(add(&p, LINE).unwrap(), Added::Added);
        assert_eq!(add(&p, LINE).unwrap(), Added::AlreadyThere);
        assert!(contains(&p, LINE).unwrap());
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            format!("{original}{LINE}\n")
        );
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);
        assert!(remove(&p, LINE).unwrap());
        assert!(!remove(&p, LINE).unwrap());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), original);
        // A missing file is created (0644) and can become empty again.
        let q = d.join("new.deny");
        assert!(!remove(&q, LINE).unwrap());
        assert_eq!(add(&q, LINE).unwrap(), Added::Added);
        let mode = std::fs::metadata(&q).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o644);
        assert!(remove(&q, LINE).unwrap());
        assert_eq!(std::fs::read(&q).unwrap(), b"");
        // Nothing but the two files is left in the directory.
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 2);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn refuses_symlinks_other_files_and_world_writable() {
        let d = tempdir("bad");
        let real = d.join("real");
        std::fs::write(&real, "# real\n").unwrap();
        let link = d.join("hosts.deny");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = add(&link, LINE).unwrap_err();
        assert!(e.message.contains("is a symbolic link"), "{e}");
        assert!(e.message.contains(&link.display().to_string()), "{e}");
        assert!(remove(&link, LINE).is_err());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "# real\n");
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );

        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = add(&real, LINE).unwrap_err();
        assert!(e.message.contains("world-writable (mode 0666)"), "{e}");
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "# real\n");

        let e = add(&d, LINE).unwrap_err();
        assert!(e.message.contains("not a regular file"), "{e}");
        let e = add(&real, "two\nlines").unwrap_err();
        assert!(e.message.contains("not one line"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
