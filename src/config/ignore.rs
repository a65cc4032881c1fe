//! The ignore file: addresses and networks nftsentry never bans.
//!
//! One IPv4 or IPv6 address or CIDR network per line, `#` starts a comment
//! (whole line or trailing), blank lines are skipped. PortSentry's
//! portsentry.ignore parses unchanged (`127.0.0.1/32`, `0.0.0.0`).
//!
//! Knows nothing of local interfaces, gateways or resolvers: the caller adds
//! those when `ignore_local` is on.

use std::io;
use std::net::IpAddr;
use std::path::Path;

use crate::cidr::Cidr;
use crate::error::Error;

/// Every entry of an ignore file, in file order. `source` names the file in
/// errors: `FILE:LINE: `garbage` is not an IPv4 or IPv6 address or network`.
pub fn parse(text: &str, source: &str) -> Result<Vec<Cidr>, Error> {
    Ok(parse_lines(text, source)?
        .into_iter()
        .map(|(c, _)| c)
        .collect())
}

/// The same, each entry with its line number (`why` names the line).
pub fn parse_lines(text: &str, source: &str) -> Result<Vec<(Cidr, usize)>, Error> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let entry = match line.split_once('#') {
            Some((before, _)) => before,
            None => line,
        }
        .trim();
        if entry.is_empty() {
            continue;
        }
        let lineno = i + 1;
        out.push((
            parse_entry(entry).map_err(|m| Error::config(format!("{source}:{lineno}: {m}")))?,
            lineno,
        ));
    }
    Ok(out)
}

fn parse_entry(entry: &str) -> Result<Cidr, String> {
    if entry.split_whitespace().nth(1).is_some() {
        return Err(format!(
            "`{entry}`: one address or network per line (`#` starts a comment)"
        ));
    }
    let addr = entry.split_once('/').map_or(entry, |(a, _)| a);
    if addr.parse::<IpAddr>().is_err() {
        return Err(format!(
            "`{entry}` is not an IPv4 or IPv6 address or network"
        ));
    }
    // The address is good, so what Cidr rejects is the prefix length; its
    // message says which lengths are allowed.
    entry.parse::<Cidr>().map_err(|e| e.to_string())
}

/// Read and parse the ignore file. `Ok(None)` when it does not exist (the
/// caller warns and goes on: a missing ignore file must not stop the
/// daemon); any other read error, and any bad line, is an error.
pub fn load(path: &Path) -> Result<Option<Vec<Cidr>>, Error> {
    Ok(load_lines(path)?.map(|v| v.into_iter().map(|(c, _)| c).collect()))
}

/// The same, each entry with its line number.
pub fn load_lines(path: &Path) -> Result<Option<Vec<(Cidr, usize)>>, Error> {
    let source = path.display().to_string();
    match std::fs::read(path) {
        // Bytes that are not UTF-8 (a Latin-1 comment, say) are harmless in
        // a comment; in an entry they make that line an error with its
        // number, rather than the whole file unreadable.
        Ok(bytes) => parse_lines(&String::from_utf8_lossy(&bytes), &source).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::config(format!(
            "{source}: cannot read the ignore file: {}",
            io_message(&e)
        ))),
    }
}

/// An io::Error without Rust's "(os error N)" suffix, as admins read it.
pub(crate) fn io_message(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(v: &[Cidr]) -> Vec<String> {
        v.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn portsentry_ignore_file_parses() {
        // Debian's portsentry.ignore.static, abridged: its comments and both
        // of its entries.
        let text = "# /etc/portsentry/portsentry.ignore.static\n#\n\
                    # Keep 127.0.0.1 and 0.0.0.0 to keep people from playing games.\n\
                    # 192.168.2.0/24\n#\n\n127.0.0.1/32\n0.0.0.0\n";
        let v = parse(text, "portsentry.ignore").unwrap();
        assert_eq!(cidrs(&v), ["127.0.0.1", "0.0.0.0"]);
    }

    #[test]
    fn comments_blanks_and_both_families() {
        let text = "  192.0.2.0/24   # test net\r\n\n\t\n2001:db8::/32#doc\n::1\n198.51.100.7\n";
        let v = parse(text, "f").unwrap();
        assert_eq!(
            cidrs(&v),
            ["192.0.2.0/24", "2001:db8::/32", "::1", "198.51.100.7"]
        );
        assert!(v[0].contains(&"192.0.2.200".parse().unwrap()));
        assert_eq!(parse("", "f").unwrap(), vec![]);
        assert_eq!(parse("# nothing\n", "f").unwrap(), vec![]);
    }

    #[test]
    fn bad_line_names_file_and_line() {
        let e = parse("127.0.0.1\n# ok\ngarbage\n", "/etc/nftsentry/ignore").unwrap_err();
        assert_eq!(e.kind, crate::error::Kind::Config);
        assert_eq!(
            e.message,
            "/etc/nftsentry/ignore:3: `garbage` is not an IPv4 or IPv6 address or network"
        );
        let e = parse("\n192.0.2.0/33\n", "ign").unwrap_err();
        assert!(e.message.starts_with("ign:2: "), "{e}");
        assert!(e.message.contains("0 to 32"), "{e}");
        let e = parse("2001:db8::/129", "ign").unwrap_err();
        assert!(
            e.message.starts_with("ign:1: ") && e.message.contains("128"),
            "{e}"
        );
        let e = parse("192.0.2.1 192.0.2.2\n", "ign").unwrap_err();
        assert!(e.message.contains("one address"), "{e}");
        for bad in [
            "192.0.2",
            "192.0.2.0/",
            "192.0.2.0/x",
            "host.example",
            "/24",
            "256.0.0.1",
        ] {
            let e = parse(bad, "ign").unwrap_err();
            assert!(e.message.starts_with("ign:1: "), "{bad}: {e}");
        }
    }

    #[test]
    fn load_missing_is_none_and_unreadable_is_error() {
        let dir = std::env::temp_dir().join(format!("nftsentry-ignore-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(load(&dir.join("absent")).unwrap(), None);
        // A directory cannot be read as a file: an error naming it.
        let e = load(&dir).unwrap_err();
        assert!(
            e.message
                .starts_with(&format!("{}: cannot read", dir.display())),
            "{e}"
        );
        let f = dir.join("ignore");
        std::fs::write(&f, "192.0.2.9\n").unwrap();
        assert_eq!(cidrs(&load(&f).unwrap().unwrap()), ["192.0.2.9"]);
        std::fs::write(&f, "192.0.2.9\nnope\n").unwrap();
        let e = load(&f).unwrap_err();
        assert!(
            e.message.starts_with(&format!("{}:2: ", f.display())),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bytes_that_are_not_utf8_only_spoil_their_own_line() {
        let dir = std::env::temp_dir().join(format!("nftsentry-ign8-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("ignore");
        std::fs::write(&f, b"# caf\xe9 network\n192.0.2.9\n").unwrap();
        assert_eq!(cidrs(&load(&f).unwrap().unwrap()), ["192.0.2.9"]);
        std::fs::write(&f, b"192.0.2.9\n198.51.100.\xff\n").unwrap();
        let e = load(&f).unwrap_err();
        assert!(
            e.message.starts_with(&format!("{}:2: ", f.display())),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn example_file_parses() {
        let v = parse(include_str!("../../config/ignore"), "config/ignore").unwrap();
        assert!(v.contains(&"127.0.0.0/8".parse().unwrap()));
        assert!(v.contains(&"::1".parse().unwrap()));
        // The documentation addresses are shown as comments, never active.
        assert!(!v.iter().any(|c| c.contains(&"192.0.2.1".parse().unwrap())));
    }
}
