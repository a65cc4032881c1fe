//! The hosts.deny reader and editor (actions::hosts_deny::with_line and
//! without_line) on an arbitrary file and line: a line is never added
//! twice, and removing the line we added gives back the file byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nftsentry::respond::actions::hosts_deny::{with_line, without_line};

/// Without isspace() bytes at the end.
fn trim(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r'))
        .map_or(0, |i| i + 1);
    &b[..end]
}

fuzz_target!(|data: &[u8]| {
    // The file, then the line after the first NUL.
    let (content, line) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"ALL: 198.51.100.7"[..]),
    };
    let Ok(line) = std::str::from_utf8(line) else {
        return;
    };
    // What `add` accepts: one line of text.
    if line.contains(['\n', '\r', '\0']) || line.trim().is_empty() {
        return;
    }
    match with_line(content, line) {
        Some(added) => {
            assert!(added.len() > content.len());
            assert!(added.starts_with(content));
            assert_eq!(with_line(&added, line), None, "added twice");
            assert_eq!(
                without_line(&added, line).as_deref(),
                Some(content),
                "removing the added line does not restore the file"
            );
        }
        None => {
            // Already there (ignoring C's white space at line ends).
            let want = trim(line.as_bytes());
            assert!(
                content.split(|&b| b == b'\n').any(|l| trim(l) == want),
                "with_line said the line is there, it is not"
            );
        }
    }
    if let Some(removed) = without_line(content, line) {
        assert!(removed.len() < content.len());
    }
});
