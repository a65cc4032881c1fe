//! portsentry.conf as PortSentry 1.2 read it.
//!
//! PortSentry's reader (ConfigTokenRetrieve in portsentry_io.c) is copied
//! rule for rule, since an old config means what PortSentry made of it, not
//! what it looks like: lines are read in fgets() chunks of at most 1023
//! bytes; a chunk whose first byte is `#` is a comment; a key matches a
//! chunk that contains it anywhere when the byte at offset len(key) is `=`
//! or a space; the FIRST matching chunk decides, and if it has no `"` the
//! key is skipped ("Quotes missing"), even when a later line is quoted; the
//! value runs from the first `"` to the next `"` or unprintable byte (a tab,
//! CR, LF or any non-ASCII byte ends it). Numbers go through atoi().
//!
//! Knows nothing of what a key means to nftsentry: `convert` says that.

use std::path::Path;

use super::shorten;
use crate::config::ignore::io_message;
use crate::error::{Error, Result};

/// fgets(buffer, MAXBUF, ...) with PortSentry's MAXBUF of 1024.
const MAXBUF: usize = 1024;

/// Every key PortSentry 1.2 reads from portsentry.conf.
pub const KEYS: &[&str] = &[
    "TCP_PORTS",
    "UDP_PORTS",
    "ADVANCED_PORTS_TCP",
    "ADVANCED_PORTS_UDP",
    "ADVANCED_EXCLUDE_TCP",
    "ADVANCED_EXCLUDE_UDP",
    "IGNORE_FILE",
    "HISTORY_FILE",
    "BLOCKED_FILE",
    "RESOLVE_HOST",
    "BLOCK_UDP",
    "BLOCK_TCP",
    "KILL_ROUTE",
    "KILL_HOSTS_DENY",
    "KILL_RUN_CMD",
    "KILL_RUN_CMD_FIRST",
    "SCAN_TRIGGER",
    "PORT_BANNER",
];

/// What PortSentry's ConfigTokenRetrieve returns for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    /// No line has the key.
    Absent,
    /// The first line with the key has no `"`: PortSentry logged "Quotes
    /// missing from KEY token. Option skipped" and did not look further.
    Unquoted { line: usize },
    /// The value between the first `"` and the next `"` or unprintable byte.
    Value {
        value: String,
        line: usize,
        /// Text on the line after an unprintable byte ended the value
        /// early (a tab, a non-ASCII character): PortSentry dropped it.
        dropped: Option<String>,
    },
}

impl Token {
    pub fn line(&self) -> Option<usize> {
        match self {
            Token::Absent => None,
            Token::Unquoted { line } | Token::Value { line, .. } => Some(*line),
        }
    }

    pub fn value(&self) -> Option<&str> {
        match self {
            Token::Value { value, .. } => Some(value),
            _ => None,
        }
    }
}

/// One fgets() result: at most MAXBUF - 1 bytes, up to and including a LF.
#[derive(Clone, Debug)]
struct Chunk {
    /// 1-based line of the file the chunk starts on.
    line: usize,
    bytes: Vec<u8>,
}

impl Chunk {
    /// The chunk as C string functions see it: up to the first NUL.
    fn c_str(&self) -> &[u8] {
        let end = self
            .bytes
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.bytes.len());
        &self.bytes[..end]
    }

    fn is_comment(&self) -> bool {
        self.bytes.first() == Some(&b'#')
    }

    /// ConfigTokenRetrieve's test: not a comment, `key` somewhere in it, and
    /// `=` or a space at offset len(key) of the chunk.
    fn has_key(&self, key: &str) -> bool {
        let s = self.c_str();
        !self.is_comment()
            && find(s, key.as_bytes()).is_some()
            && matches!(s.get(key.len()), Some(b'=' | b' '))
    }

    fn is_blank(&self) -> bool {
        self.c_str().iter().all(|b| b.is_ascii_whitespace())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// isprint() in the C locale, which PortSentry never changes.
fn printable(b: u8) -> bool {
    (0x20..=0x7e).contains(&b)
}

/// A portsentry.conf split as PortSentry reads it.
#[derive(Clone, Debug)]
pub struct PortsentryConf {
    /// The file's name in messages and comments.
    pub source: String,
    chunks: Vec<Chunk>,
}

impl PortsentryConf {
    /// Split `bytes` into fgets() chunks; never fails: PortSentry read any
    /// bytes, and so does this.
    pub fn parse(bytes: &[u8], source: &str) -> PortsentryConf {
        let mut chunks = Vec::new();
        let mut line = 1;
        let mut rest = bytes;
        while !rest.is_empty() {
            let limit = rest.len().min(MAXBUF - 1);
            let len = match rest[..limit].iter().position(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => limit,
            };
            let (chunk, tail) = rest.split_at(len);
            chunks.push(Chunk {
                line,
                bytes: chunk.to_vec(),
            });
            if chunk.last() == Some(&b'\n') {
                line += 1;
            }
            rest = tail;
        }
        PortsentryConf {
            source: source.to_string(),
            chunks,
        }
    }

    /// Read a file; an unreadable file is a config error naming it.
    pub fn load(path: &Path) -> Result<PortsentryConf> {
        let source = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| {
            Error::config(format!(
                "{source}: cannot read the PortSentry config: {}",
                io_message(&e)
            ))
        })?;
        Ok(PortsentryConf::parse(&bytes, &source))
    }

    /// The value PortSentry 1.2 reads for `key`.
    pub fn token(&self, key: &str) -> Token {
        let Some(chunk) = self.chunks.iter().find(|c| c.has_key(key)) else {
            return Token::Absent;
        };
        let s = chunk.c_str();
        let Some(q) = s.iter().position(|&b| b == b'"') else {
            return Token::Unquoted { line: chunk.line };
        };
        let after = &s[q + 1..];
        let end = after
            .iter()
            .position(|&b| !printable(b) || b == b'"')
            .unwrap_or(after.len());
        // Printable ASCII only, so this is valid UTF-8.
        let value = String::from_utf8_lossy(&after[..end]).into_owned();
        let dropped = match after.get(end) {
            Some(b'"') | None => None,
            Some(_) => {
                let tail = &after[end..];
                let tail = match tail.iter().position(|&b| b == b'"') {
                    Some(i) => &tail[..i],
                    None => tail,
                };
                let text = String::from_utf8_lossy(tail);
                let text = text.trim_end_matches(['\r', '\n']);
                (!text.is_empty()).then(|| text.to_string())
            }
        };
        Token::Value {
            value,
            line: chunk.line,
            dropped,
        }
    }

    /// Lines PortSentry reads nothing from although they are not comments,
    /// and keys given again after the line that counts: one message each,
    /// `FILE:LINE: ...`.
    pub fn diagnostics(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.chunks {
            if c.is_comment() || c.is_blank() {
                continue;
            }
            let keys: Vec<&str> = KEYS.iter().copied().filter(|k| c.has_key(k)).collect();
            if keys.is_empty() {
                let text = String::from_utf8_lossy(c.c_str());
                let text = text.trim();
                let upper = text.to_ascii_uppercase();
                let hint = KEYS
                    .iter()
                    .find(|k| upper.starts_with(*k) && !text.starts_with(*k))
                    .map(|k| format!(" (keys are upper case: {k})"))
                    .unwrap_or_default();
                out.push(format!(
                    "{}:{}: PortSentry reads no setting from `{}`; ignored{hint}",
                    self.source,
                    c.line,
                    shorten(text)
                ));
                continue;
            }
            for k in keys {
                if let Some(first) = self.token(k).line() {
                    if first != c.line {
                        out.push(format!(
                            "{}:{}: {k} again: PortSentry uses only the first one, line {first}",
                            self.source, c.line
                        ));
                    }
                }
            }
        }
        out
    }
}

/// C's atoi(): leading white space, a sign, digits; anything after them is
/// ignored. Also says whether anything other than white space followed.
pub fn atoi(s: &str) -> (i64, bool) {
    let t = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let n_digits = digits.bytes().take_while(u8::is_ascii_digit).count();
    let mut n: i64 = 0;
    for b in digits[..n_digits].bytes() {
        // atoi overflows into undefined behaviour; an int holds no more.
        n = (n * 10 + i64::from(b - b'0')).min(i64::from(i32::MAX) + 1);
    }
    let n = if neg { -n } else { n.min(i64::from(i32::MAX)) };
    let clean = n_digits > 0 && digits[n_digits..].trim().is_empty();
    (n, clean)
}
