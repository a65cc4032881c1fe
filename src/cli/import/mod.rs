//! `nftsentry import-portsentry`: reads a PortSentry 1.2 portsentry.conf the
//! way PortSentry itself read it, Debian's /etc/default/portsentry (the
//! TCP_MODE and UDP_MODE its init script passed on the command line) and the
//! ignore file, and writes the nftsentry.toml that does the same job, with
//! comments saying which PortSentry line each key comes from and what has no
//! equivalent.
//!
//! One file per concern: portsentry.conf as PortSentry read it
//! (`portsentry_conf`), Debian's defaults file (`debian_default`), how
//! PortSentry is started, Debian 13's portsentry@MODE units or the init
//! script before them (`units`), the ignore file (`ignore_file`), the
//! KILL_ROUTE forms (`kill_route`), the conversion to nftsentry.toml and its
//! text (`convert`), and the steps left to do by hand, printed on standard
//! error (`todo`). This file reads the files the command line names and
//! writes the ignore file.
//!
//! Knows nothing of sockets or nftables; the keys it writes are those of
//! nftsentry.toml(5), and the tests check its output with the config parser.

mod convert;
mod debian_default;
mod ignore_file;
mod kill_route;
mod portsentry_conf;
mod todo;
mod units;

use std::path::{Path, PathBuf};

use crate::config::ignore::io_message;
use crate::error::{Error, Result};
pub use convert::{HostsDenySplit, convert, split_hosts_deny};
pub use debian_default::{DebianDefault, ModeSetting};
pub use ignore_file::IgnoreImport;
use ignore_file::load_ignore;
pub use kill_route::{KillRoute, classify_kill_route};
pub use portsentry_conf::{KEYS, PortsentryConf, Token, atoi};
pub use todo::{Todo, fail2ban_jails, todo_text};
use todo::{fail2ban_todo, services_todo};
pub use units::{Services, find_services};

/// Where PortSentry 1.2 and Debian keep the config (CONFIG_FILE, compiled in).
pub const DEFAULT_CONF: &str = "/etc/portsentry/portsentry.conf";
/// IGNORE_FILE of Debian's portsentry.conf, used when the config has none.
pub const DEFAULT_IGNORE: &str = "/etc/portsentry/portsentry.ignore";
/// Debian's file of TCP_MODE and UDP_MODE, read by /etc/init.d/portsentry.
pub const DEBIAN_DEFAULT: &str = "/etc/default/portsentry";
/// The hosts.deny PortSentry wrote to (WRAPPER_HOSTS_DENY, compiled in).
pub const HOSTS_DENY: &str = "/etc/hosts.deny";
/// The packaged unit's state directory: the one place (with /run/nftsentry)
/// where the service may write.
pub const SERVICE_DIR: &str = "/var/lib/nftsentry";
/// Where the converted hosts.deny action writes its addresses: a file that
/// /etc/hosts.deny includes, since /etc is read-only under the unit.
pub const SERVICE_HOSTS_DENY: &str = "/var/lib/nftsentry/hosts.deny";
/// nftsentry's default history file, in the state directory.
pub const SERVICE_HISTORY: &str = "/var/lib/nftsentry/history";
/// fail2ban's configuration, searched for jails that read the old history.
pub const FAIL2BAN_DIR: &str = "/etc/fail2ban";
/// Where `systemctl enable` puts the links of enabled units.
pub const SYSTEMD_DIR: &str = "/etc/systemd/system";
/// Debian's init script for PortSentry (Debian 12 and before).
pub const INIT_SCRIPT: &str = "/etc/init.d/portsentry";

/// What to read and where the ignore entries go.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// portsentry.conf.
    pub conf: PathBuf,
    /// The ignore file; `None`: IGNORE_FILE of the config.
    pub ignore: Option<PathBuf>,
    /// Debian's defaults file; `None`: /etc/default/portsentry if it exists.
    pub default: Option<PathBuf>,
    /// Write the ignore entries there (and point `ignore_file` at it)
    /// instead of listing them as comments.
    pub write_ignore: Option<PathBuf>,
    /// fail2ban's configuration directory; `None`: /etc/fail2ban.
    pub fail2ban: Option<PathBuf>,
    /// Where enabled units are linked, and PortSentry's init script;
    /// `None`: /etc/systemd/system and /etc/init.d/portsentry.
    pub systemd_dir: Option<PathBuf>,
    pub init_script: Option<PathBuf>,
}

/// The result: the config text, the ignore file to write (when asked
/// for), and warnings for standard error.
#[derive(Clone, Debug)]
pub struct Import {
    pub toml: String,
    /// (path, content) of the ignore file to write.
    pub ignore_file: Option<(PathBuf, String)>,
    pub warnings: Vec<String>,
    /// What is left to do by hand, as root, for the converted config to do
    /// PortSentry's job under the packaged unit (`todo_text`).
    pub todo: Vec<Todo>,
    /// PortSentry's history file, when the config writes nftsentry's
    /// instead (the service cannot write it).
    pub old_history: Option<String>,
}

/// Read the files `opts` names and convert them.
pub fn import(opts: &Options) -> Result<Import> {
    let conf = PortsentryConf::load(&opts.conf)?;

    let systemd_dir = opts
        .systemd_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(SYSTEMD_DIR));
    let services = find_services(
        &systemd_dir,
        opts.init_script
            .as_deref()
            .unwrap_or(Path::new(INIT_SCRIPT)),
    );
    let mut notes = Vec::new();
    let default = read_modes(opts, &services, &systemd_dir, &mut notes)?;
    let ignore = read_ignore(opts, &conf, &mut notes)?;
    let write_ignore = write_ignore_path(opts)?;
    let mut out = convert(
        &conf,
        default.as_ref(),
        ignore.as_ref(),
        write_ignore.as_deref(),
        &notes,
    );
    add_todo(opts, &services, &mut out);
    if let (Some(path), Some(ig)) = (write_ignore, ignore.as_ref()) {
        out.ignore_file = Some((path, ig.file_text()));
    } else if let (Some(path), None) = (&opts.write_ignore, ignore.as_ref()) {
        out.warnings.push(format!(
            "no ignore file was read, so {} was not written",
            path.display()
        ));
    }
    Ok(out)
}

/// The modes: from the defaults file the command line names, else from
/// Debian 13's enabled units, else from /etc/default/portsentry if it
/// exists. Debian 13's units carry the modes in their names and do not
/// read /etc/default/portsentry, which its postinst still writes.
fn read_modes(
    opts: &Options,
    services: &Services,
    systemd_dir: &Path,
    notes: &mut Vec<String>,
) -> Result<Option<DebianDefault>> {
    Ok(match (&opts.default, services) {
        (Some(p), _) => Some(DebianDefault::load(p)?),
        (None, Services::Units(units)) => {
            if Path::new(DEBIAN_DEFAULT).exists() {
                notes.push(format!(
                    "the modes come from the enabled units {}: PortSentry's systemd units do not read {DEBIAN_DEFAULT}",
                    units.join(", ")
                ));
            }
            Some(DebianDefault::from_units(
                units,
                &format!("{} (enabled units)", systemd_dir.display()),
            ))
        }
        (None, _) if Path::new(DEBIAN_DEFAULT).exists() => {
            Some(DebianDefault::load(Path::new(DEBIAN_DEFAULT))?)
        }
        (None, _) => None,
    })
}

/// The ignore file the command line names, else IGNORE_FILE of the config
/// (or Debian's), else the `.static` file Debian builds it from.
fn read_ignore(
    opts: &Options,
    conf: &PortsentryConf,
    notes: &mut Vec<String>,
) -> Result<Option<IgnoreImport>> {
    Ok(match &opts.ignore {
        Some(p) => Some(load_ignore(p)?),
        None => {
            let named = match conf.token("IGNORE_FILE") {
                Token::Value { value, .. } if !value.is_empty() => absolute(&value),
                _ => DEFAULT_IGNORE.to_string(),
            };
            let static_file = format!("{named}.static");
            if Path::new(&named).exists() {
                Some(load_ignore(Path::new(&named))?)
            } else if Path::new(&static_file).exists() {
                // Debian builds portsentry.ignore from the .static file when
                // PortSentry starts; before the first start only .static is there.
                notes.push(format!(
                    "{named} does not exist; its entries were read from {static_file}, which Debian's init script builds it from"
                ));
                Some(load_ignore(Path::new(&static_file))?)
            } else {
                notes.push(format!(
                    "the ignore file {named} does not exist: no entries imported"
                ));
                None
            }
        }
    })
}

/// `--write-ignore` as an absolute path: relative to the current directory.
fn write_ignore_path(opts: &Options) -> Result<Option<PathBuf>> {
    Ok(match &opts.write_ignore {
        Some(p) if p.is_absolute() => Some(p.clone()),
        Some(p) => Some(
            std::env::current_dir()
                .map_err(|e| Error::other(format!("current directory: {}", io_message(&e))))?
                .join(p),
        ),
        None => None,
    })
}

/// The steps the conversion does not know of: stopping PortSentry's
/// services first, fail2ban's jails on the old history file last.
fn add_todo(opts: &Options, services: &Services, out: &mut Import) {
    if let Some(t) = services_todo(services) {
        out.todo.insert(0, t);
    }
    if let Some(old) = out.old_history.clone() {
        let dir = opts
            .fail2ban
            .clone()
            .unwrap_or_else(|| PathBuf::from(FAIL2BAN_DIR));
        if let Some(t) = fail2ban_todo(&dir, &old) {
            out.todo.push(t);
        }
    }
}

/// Write the ignore file `import` produced: a new file renamed over the
/// old one, so an interrupted import leaves the old file whole.
pub fn write_file(path: &Path, text: &str) -> Result<()> {
    let how = crate::files::Replace {
        mode: 0o644,
        owner: None,
        infix: ".import-tmp.",
        make_dir: false,
    };
    crate::files::replace(path, text.as_bytes(), &how)
        .map(drop)
        .map_err(|e| {
            let e = std::io::Error::from(e);
            Error::other(format!(
                "{}: cannot write the ignore file: {}",
                path.display(),
                io_message(&e)
            ))
        })
}

/// PortSentry chdir()s to / before it opens its files: a relative path is
/// relative to /.
fn absolute(p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

fn shorten(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(MAX).collect::<String>())
    }
}

#[cfg(test)]
mod tests;
