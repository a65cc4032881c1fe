//! resolvers: the name servers this host's lookups go to, which a spoofer
//! would most like to see banned. `/etc/resolv.conf` first; when it names
//! systemd-resolved's stub (127.0.0.53, 127.0.0.54), also the upstream
//! servers resolved uses (`/run/systemd/resolve/resolv.conf`); when a
//! server it (or resolved) names is this host itself and dnsmasq is in
//! use, dnsmasq's upstreams: `/run/dnsmasq/resolv.conf` (what Debian's
//! dnsmasq is given by resolvconf) and the `server=` lines of
//! `/etc/dnsmasq.conf` and `/etc/dnsmasq.d/*`.
//!
//! Owns where those files are (`ResolverFiles`, which tests point at a
//! directory of their own), how each is read (bounded: no file beyond
//! `MAX_FILE_BYTES`, no more than `MAX_DIR_FILES` files of dnsmasq.d, never
//! a FIFO or a device) and parsed. Knows nothing of nftables or of when it
//! is called.

use std::ffi::OsString;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::host::localnet::parse_resolv_conf;

/// Bytes read of any one file; the rest is not looked at.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// Files of dnsmasq.d read, in name order.
pub const MAX_DIR_FILES: usize = 256;
/// Directory entries looked at in dnsmasq.d.
const MAX_DIR_ENTRIES: usize = 4096;

/// systemd-resolved's stub listeners: 127.0.0.53 (the stub) and
/// 127.0.0.54 (the proxy).
pub fn is_resolved_stub(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V4(a) if *a == Ipv4Addr::new(127, 0, 0, 53) || *a == Ipv4Addr::new(127, 0, 0, 54))
}

/// Where the resolver files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolverFiles {
    pub resolv_conf: PathBuf,
    /// systemd-resolved's list of its upstream servers.
    pub resolved_upstream: PathBuf,
    /// dnsmasq's upstream servers as resolvconf gives them (Debian).
    pub dnsmasq_resolv: PathBuf,
    pub dnsmasq_conf: PathBuf,
    pub dnsmasq_dir: PathBuf,
}

impl ResolverFiles {
    /// The system's.
    pub fn system() -> ResolverFiles {
        ResolverFiles::under(Path::new("/"))
    }

    /// The same paths below `root` (for tests).
    pub fn under(root: &Path) -> ResolverFiles {
        ResolverFiles {
            resolv_conf: root.join("etc/resolv.conf"),
            resolved_upstream: root.join("run/systemd/resolve/resolv.conf"),
            dnsmasq_resolv: root.join("run/dnsmasq/resolv.conf"),
            dnsmasq_conf: root.join("etc/dnsmasq.conf"),
            dnsmasq_dir: root.join("etc/dnsmasq.d"),
        }
    }

    /// Only `resolv_conf`; the others are paths that do not exist.
    pub fn only(resolv_conf: &Path) -> ResolverFiles {
        let none = Path::new("/nonexistent/nftsentry");
        ResolverFiles {
            resolv_conf: resolv_conf.to_path_buf(),
            ..ResolverFiles::under(none)
        }
    }

    /// The files whose content decides the resolvers (dnsmasq.d is a
    /// directory: any file in it).
    pub fn files(&self) -> [&Path; 4] {
        [
            &self.resolv_conf,
            &self.resolved_upstream,
            &self.dnsmasq_resolv,
            &self.dnsmasq_conf,
        ]
    }
}

/// Whose upstream a resolver is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upstream {
    SystemdResolved,
    Dnsmasq,
}

impl Upstream {
    pub fn name(self) -> &'static str {
        match self {
            Upstream::SystemdResolved => "systemd-resolved",
            Upstream::Dnsmasq => "dnsmasq",
        }
    }
}

/// One resolver and the file that names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolver {
    pub addr: IpAddr,
    pub file: PathBuf,
    /// `None` for resolv.conf's own servers.
    pub upstream_of: Option<Upstream>,
}

/// The resolvers, in this order: resolv.conf's, resolved's upstreams,
/// dnsmasq's upstreams (its resolv file, dnsmasq.conf, dnsmasq.d in name
/// order). `is_local` says whether an address is this host's (loopback
/// or an interface address). A missing file names no server; resolv.conf
/// that cannot be read is an error; any other file that cannot be read is
/// skipped and said in `notes` (the daemon may run without the right to
/// read a file of dnsmasq's: that must not stop it).
pub fn resolvers(
    files: &ResolverFiles,
    is_local: impl Fn(&IpAddr) -> bool,
    notes: &mut Vec<String>,
) -> Result<Vec<Resolver>> {
    let mut out = Vec::new();
    let push = |out: &mut Vec<Resolver>, ips: Vec<IpAddr>, file: &Path, up| {
        out.extend(ips.into_iter().map(|addr| Resolver {
            addr,
            file: file.to_path_buf(),
            upstream_of: up,
        }))
    };
    let main = match read_bounded(&files.resolv_conf)? {
        Some(text) => parse_resolv_conf(&text),
        None => Vec::new(),
    };
    let stub = main.iter().any(is_resolved_stub);
    push(&mut out, main, &files.resolv_conf, None);
    if stub {
        if let Some(text) = read_noting(&files.resolved_upstream, notes) {
            let ips = parse_resolv_conf(&text);
            push(
                &mut out,
                ips,
                &files.resolved_upstream,
                Some(Upstream::SystemdResolved),
            );
        }
    }
    // This host answers itself (and is not resolved's stub): dnsmasq, if
    // it is in use, forwards to its upstreams.
    let forwarder = out
        .iter()
        .any(|r| is_local(&r.addr) && !is_resolved_stub(&r.addr));
    if forwarder {
        let up = Some(Upstream::Dnsmasq);
        if let Some(text) = read_noting(&files.dnsmasq_resolv, notes) {
            push(
                &mut out,
                parse_resolv_conf(&text),
                &files.dnsmasq_resolv,
                up,
            );
        }
        if let Some(text) = read_noting(&files.dnsmasq_conf, notes) {
            push(
                &mut out,
                parse_dnsmasq_servers(&text),
                &files.dnsmasq_conf,
                up,
            );
        }
        for path in dnsmasq_dir_files(&files.dnsmasq_dir, notes) {
            if let Some(text) = read_noting(&path, notes) {
                push(&mut out, parse_dnsmasq_servers(&text), &path, up);
            }
        }
    }
    Ok(out)
}

/// The upstream servers of a dnsmasq configuration: the address of each
/// `server=` and `rev-server=` line, in file order. dnsmasq's syntax is
/// `server=[/domain/[domain/...]][address[%zone][#port][@interface][@source]]`;
/// `rev-server=network,address[#port]...`. A line without an address
/// (`server=/local/`, `server=/example.org/#`) names no server. Comments
/// (`#` at the start of a line) and blanks around the `=` and the value are
/// allowed; anything that does not parse is skipped.
pub fn parse_dnsmasq_servers(text: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let spec = match key.trim().trim_start_matches("--") {
            "server" => value.rsplit('/').next().unwrap_or(""),
            "rev-server" => match value.split_once(',') {
                Some((_, rest)) => rest,
                None => continue,
            },
            _ => continue,
        };
        // The address ends at its zone, the port, the interface or the source.
        let addr = spec
            .trim()
            .split(['%', '#', '@'])
            .next()
            .unwrap_or("")
            .trim();
        if let Ok(ip) = addr.parse::<IpAddr>() {
            out.push(ip);
        }
    }
    out
}

/// The files of dnsmasq.d that dnsmasq reads, as Debian runs it
/// (`-7 /etc/dnsmasq.d,.dpkg-dist,.dpkg-old,.dpkg-new`): every regular
/// file but those with these suffixes, dot files, backups (`~`) and
/// editor files (`#name#`); at most `MAX_DIR_FILES`, in name order.
fn dnsmasq_dir_files(dir: &Path, notes: &mut Vec<String>) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            notes.push(format!("cannot read {}: {e}", dir.display()));
            return Vec::new();
        }
    };
    let mut names: Vec<OsString> = entries
        .take(MAX_DIR_ENTRIES)
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .filter(|n| {
            let n = n.to_string_lossy();
            !(n.starts_with('.')
                || n.ends_with('~')
                || (n.starts_with('#') && n.ends_with('#'))
                || [".dpkg-dist", ".dpkg-old", ".dpkg-new"]
                    .iter()
                    .any(|s| n.ends_with(s)))
        })
        .collect();
    names.sort();
    if names.len() > MAX_DIR_FILES {
        notes.push(format!(
            "{} has {} files; only the first {MAX_DIR_FILES} are read",
            dir.display(),
            names.len()
        ));
        names.truncate(MAX_DIR_FILES);
    }
    names
        .into_iter()
        .map(|n| dir.join(n))
        .filter(|p| p.is_file())
        .collect()
}

/// A secondary file: missing or unreadable is `None`, unreadable also a note.
fn read_noting(path: &Path, notes: &mut Vec<String>) -> Option<String> {
    match read_bounded(path) {
        Ok(text) => text,
        Err(e) => {
            notes.push(e.to_string());
            None
        }
    }
}

/// The first `MAX_FILE_BYTES` of a regular file, as text (invalid UTF-8
/// replaced); `None` if it does not exist. Opened non-blocking, so a FIFO
/// put in its place cannot hang the caller; anything but a regular file is
/// an error.
pub fn read_bounded(path: &Path) -> Result<Option<String>> {
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |e: std::io::Error| Error::other(format!("cannot read {}: {e}", path.display()));
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail(e)),
    };
    if !file.metadata().map_err(fail)?.is_file() {
        return Err(Error::other(format!(
            "cannot read {}: not a regular file",
            path.display()
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    /// A directory of the test's, removed on drop.
    struct Root(PathBuf);

    impl Root {
        fn new(tag: &str) -> Root {
            let p = std::env::temp_dir()
                .join(format!("nftsentry-resolvers-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Root(p)
        }

        fn write(&self, rel: &str, text: &str) {
            let p = self.0.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }

        fn files(&self) -> ResolverFiles {
            ResolverFiles::under(&self.0)
        }
    }

    impl Drop for Root {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn loopback(ip: &IpAddr) -> bool {
        ip.is_loopback()
    }

    fn found(files: &ResolverFiles) -> Vec<(IpAddr, String, Option<Upstream>)> {
        let mut notes = Vec::new();
        resolvers(files, loopback, &mut notes)
            .unwrap()
            .into_iter()
            .map(|r| {
                let file = r.file.file_name().unwrap().to_string_lossy().into_owned();
                (r.addr, file, r.upstream_of)
            })
            .collect()
    }

    /// systemd-resolved's /run/systemd/resolve/resolv.conf as it writes it.
    const RESOLVED_UPSTREAM: &str = "\
# This is /run/systemd/resolve/resolv.conf managed by man:systemd-resolved(8).
# Do not edit.
#
# This file might be symlinked as /etc/resolv.conf. If you're looking at
# /etc/resolv.conf and seeing this text, you have followed the symlink.
#
# This is a dynamic resolv.conf file for connecting local clients directly to
# all known uplink DNS servers. This file lists all configured search domains.
#
# Third party programs should typically not access this file directly, but only
# through the symlink at /etc/resolv.conf. To manage man:resolv.conf(5) in a
# different way, replace this symlink by a static file or a different symlink.
#
# See man:systemd-resolved.service(8) for details about the supported modes of
# operation for /etc/resolv.conf.

nameserver 198.51.100.1
nameserver 2001:db8:53::1
nameserver fe80::1%eth0
search example.org
";

    /// Its stub-resolv.conf, what /etc/resolv.conf links to.
    const RESOLVED_STUB: &str = "\
# This is /run/systemd/resolve/stub-resolv.conf managed by man:systemd-resolved(8).
# Do not edit.
nameserver 127.0.0.53
options edns0 trust-ad
search example.org
";

    #[test]
    fn resolved_stub_brings_its_upstreams() {
        let root = Root::new("stub");
        root.write("etc/resolv.conf", RESOLVED_STUB);
        root.write("run/systemd/resolve/resolv.conf", RESOLVED_UPSTREAM);
        // dnsmasq's files are there but not used: the stub is resolved's.
        root.write("etc/dnsmasq.conf", "server=192.0.2.99\n");
        let up = Some(Upstream::SystemdResolved);
        assert_eq!(
            found(&root.files()),
            vec![
                (ips(&["127.0.0.53"])[0], "resolv.conf".into(), None),
                (ips(&["198.51.100.1"])[0], "resolv.conf".into(), up),
                (ips(&["2001:db8:53::1"])[0], "resolv.conf".into(), up),
                (ips(&["fe80::1"])[0], "resolv.conf".into(), up),
            ]
        );
        // The proxy address too; without a stub the upstream file is not read.
        root.write("etc/resolv.conf", "nameserver 127.0.0.54\n");
        assert_eq!(found(&root.files()).len(), 4);
        root.write("etc/resolv.conf", "nameserver 192.0.2.53\n");
        assert_eq!(
            found(&root.files()),
            vec![(ips(&["192.0.2.53"])[0], "resolv.conf".into(), None)]
        );
    }

    #[test]
    fn local_forwarder_brings_dnsmasq_upstreams() {
        let root = Root::new("dnsmasq");
        root.write("etc/resolv.conf", "nameserver 127.0.0.1\n");
        root.write(
            "run/dnsmasq/resolv.conf",
            "# Generated by resolvconf\nnameserver 192.0.2.10\nnameserver 2001:db8::10\n",
        );
        root.write(
            "etc/dnsmasq.conf",
            "# Configuration file for dnsmasq.\n#server=192.0.2.200\n\
             domain-needed\nbogus-priv\nserver=192.0.2.11\nserver = 192.0.2.12 \n\
             server=/example.org/198.51.100.13#5353\nserver=/local/\n\
             server=/example.com/#\nserver=2001:db8::14@eth0\n\
             server=198.51.100.15#53@eth0@192.0.2.1#5353\n\
             rev-server=192.0.2.0/24,198.51.100.16\nlocal=/lan/\n\
             no-resolv\nconf-dir=/etc/dnsmasq.d/,*.conf\n",
        );
        root.write("etc/dnsmasq.d/b.conf", "server=198.51.100.18\n");
        root.write("etc/dnsmasq.d/a.conf", "server=198.51.100.17\n");
        for skipped in [
            ".hidden",
            "c.conf~",
            "#c.conf#",
            "d.conf.dpkg-old",
            "e.dpkg-new",
        ] {
            root.write(&format!("etc/dnsmasq.d/{skipped}"), "server=192.0.2.250\n");
        }
        std::fs::create_dir_all(root.0.join("etc/dnsmasq.d/sub")).unwrap();
        let up = Some(Upstream::Dnsmasq);
        let got = found(&root.files());
        let want: Vec<(IpAddr, String, Option<Upstream>)> = [
            ("127.0.0.1", "resolv.conf", None),
            ("192.0.2.10", "resolv.conf", up),
            ("2001:db8::10", "resolv.conf", up),
            ("192.0.2.11", "dnsmasq.conf", up),
            ("192.0.2.12", "dnsmasq.conf", up),
            ("198.51.100.13", "dnsmasq.conf", up),
            ("2001:db8::14", "dnsmasq.conf", up),
            ("198.51.100.15", "dnsmasq.conf", up),
            ("198.51.100.16", "dnsmasq.conf", up),
            ("198.51.100.17", "a.conf", up),
            ("198.51.100.18", "b.conf", up),
        ]
        .iter()
        .map(|(a, f, u)| (a.parse().unwrap(), f.to_string(), *u))
        .collect();
        assert_eq!(got, want);
        // A resolver elsewhere: dnsmasq's files are not this host's resolvers.
        root.write("etc/resolv.conf", "nameserver 192.0.2.53\n");
        assert_eq!(found(&root.files()).len(), 1);
    }

    #[test]
    fn dnsmasq_server_lines() {
        assert_eq!(
            parse_dnsmasq_servers(
                "server=192.0.2.1\n  server=192.0.2.2  \n--server=192.0.2.3\n\
                 server=/a/b/c/192.0.2.4\nserver=fe80::1%eth0\nserver=\n\
                 server=dns.example.org\nservers=192.0.2.5\nxserver=192.0.2.6\n\
                 # server=192.0.2.7\nserver=192.0.2.300\nrev-server=192.0.2.0/24\n\
                 rev-server=2001:db8::/32,2001:db8::8#53\n\u{0}\u{ff}=\u{7f}\nserver\n"
            ),
            ips(&[
                "192.0.2.1",
                "192.0.2.2",
                "192.0.2.3",
                "192.0.2.4",
                "fe80::1",
                "2001:db8::8"
            ])
        );
    }

    #[test]
    fn unreadable_secondary_files_are_noted_not_fatal() {
        let root = Root::new("unreadable");
        root.write("etc/resolv.conf", "nameserver 127.0.0.53\n");
        // A directory where resolved's file should be.
        std::fs::create_dir_all(root.0.join("run/systemd/resolve/resolv.conf")).unwrap();
        let mut notes = Vec::new();
        let r = resolvers(&root.files(), loopback, &mut notes).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("not a regular file"), "{notes:?}");
        // resolv.conf itself unreadable is an error.
        let bad = ResolverFiles::only(&root.0.join("run"));
        assert!(resolvers(&bad, loopback, &mut notes).is_err());
    }

    #[test]
    fn reads_are_bounded_and_never_block() {
        let root = Root::new("bounded");
        let mut big = "nameserver 192.0.2.1\n".to_string();
        big.push_str(&"#".repeat(MAX_FILE_BYTES as usize));
        big.push_str("\nnameserver 192.0.2.2\n");
        root.write("etc/resolv.conf", &big);
        let r = found(&root.files());
        assert_eq!(r.len(), 1, "only the first MiB is read");
        // A FIFO in resolv.conf's place: an error at once, not a hang.
        let fifo = root.0.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(read_bounded(&fifo).is_err());
        assert_eq!(read_bounded(&root.0.join("missing")).unwrap(), None);
    }
}
