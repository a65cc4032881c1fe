//! secrets: the machine's password, the bouncer's API key and the TLS
//! files of `[crowdsec]`, read once at start (as root, before the switch to
//! `user`). A secret file must be a regular file, not a link, that belongs
//! to root or to the service's user and that nobody else may read (group
//! read only for group root): anything else is refused, naming the file and
//! what to do. What the files hold is never logged, and `Debug` hides it.

use std::io::Read as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::config::CrowdSec;
use crate::error::Error;

/// Largest secret file read (a key or password is a line; a PEM key is a
/// few KiB); the CA and certificate files may be larger.
const SECRET_MAX: u64 = 64 * 1024;
const PEM_MAX: u64 = 1024 * 1024;

/// What the files hold.
#[derive(Clone, Default)]
pub struct Secrets {
    pub password: Option<String>,
    pub api_key: Option<String>,
    /// PEM text of `ca_file`.
    pub ca: Option<Vec<u8>>,
    /// PEM text of `cert_file` and `key_file`.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("api_key", &self.api_key.as_ref().map(|_| "<hidden>"))
            .field("ca", &self.ca.as_ref().map(Vec::len))
            .field("client", &self.client.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl Secrets {
    /// Reads what `c` needs; `service_uid` is the account the daemon will
    /// run as (`user`), whose files are accepted beside root's.
    pub fn load(c: &CrowdSec, service_uid: Option<u32>) -> Result<Secrets, Error> {
        let mut s = Secrets::default();
        if !c.enabled {
            return Ok(s);
        }
        if c.push {
            if let Some(p) = &c.password_file {
                s.password = Some(line("crowdsec.password_file", p, service_uid)?);
            }
        }
        if c.pull {
            if let Some(p) = &c.api_key_file {
                s.api_key = Some(line("crowdsec.api_key_file", p, service_uid)?);
            }
        }
        if let Some(p) = &c.ca_file {
            s.ca = Some(read("crowdsec.ca_file", p, None, PEM_MAX)?);
        }
        if let (Some(cert), Some(key)) = (&c.cert_file, &c.key_file) {
            s.client = Some((
                read("crowdsec.cert_file", cert, None, PEM_MAX)?,
                read("crowdsec.key_file", key, Some(service_uid), SECRET_MAX)?,
            ));
        }
        Ok(s)
    }
}

/// A secret of one line, without its newline.
fn line(key: &str, path: &Path, service_uid: Option<u32>) -> Result<String, Error> {
    let bytes = read(key, path, Some(service_uid), SECRET_MAX)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::config(format!("{key} {}: not UTF-8 text", path.display())))?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(Error::config(format!(
            "{key} {}: the file is empty",
            path.display()
        )));
    }
    if value.contains(['\n', '\r']) || value.chars().any(char::is_control) {
        return Err(Error::config(format!(
            "{key} {}: the secret must be one line of printable text",
            path.display()
        )));
    }
    Ok(value.to_string())
}

/// Reads a file; `private` is `Some(service uid)` for a secret, which must
/// belong to root or that user and be unreadable by others.
fn read(key: &str, path: &Path, private: Option<Option<u32>>, max: u64) -> Result<Vec<u8>, Error> {
    let name = path.display();
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            let why = if e.raw_os_error() == Some(nix::libc::ELOOP) {
                "it is a symbolic link; name the file itself".to_string()
            } else {
                e.to_string()
            };
            Error::config(format!("{key} {name}: cannot read it: {why}"))
        })?;
    let m = f
        .metadata()
        .map_err(|e| Error::config(format!("{key} {name}: {e}")))?;
    if !m.file_type().is_file() {
        return Err(Error::config(format!("{key} {name}: not a regular file")));
    }
    if let Some(service_uid) = private {
        // Root's, the `user`'s, or this process's own (a systemd
        // credential, LoadCredential=, belongs to the unit's DynamicUser).
        let me = nix::unistd::geteuid().as_raw();
        if m.uid() != 0 && m.uid() != me && Some(m.uid()) != service_uid {
            return Err(Error::config(format!(
                "{key} {name}: refused: it belongs to uid {}; a secret must belong to root or the service's user (chown root {name})",
                m.uid()
            )));
        }
        let mode = m.mode() & 0o777;
        let group_ok = m.gid() == 0 || mode & 0o070 == 0;
        if mode & 0o007 != 0 || !group_ok {
            return Err(Error::config(format!(
                "{key} {name}: refused: mode {mode:04o} lets other users read the secret (chmod 600 {name})"
            )));
        }
    }
    if m.len() > max {
        return Err(Error::config(format!(
            "{key} {name}: {} bytes, more than the {max} a {key} may hold",
            m.len()
        )));
    }
    let mut out = Vec::new();
    (&mut f)
        .take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::config(format!("{key} {name}: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn secrets_readable_by_others_or_links_are_refused_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("nftsentry-secrets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("key");
        std::fs::write(&key, "abc123\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let e = line("crowdsec.api_key_file", &key, Some(me)).unwrap_err();
        assert!(
            e.message.contains("refused: mode 0644") && e.message.contains(&*key.to_string_lossy()),
            "{e}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            line("crowdsec.api_key_file", &key, Some(me)).unwrap(),
            "abc123"
        );
        let link = dir.join("link");
        std::os::unix::fs::symlink(&key, &link).unwrap();
        let e = line("crowdsec.api_key_file", &link, Some(me)).unwrap_err();
        assert!(e.message.contains("symbolic link"), "{e}");
        std::fs::write(&key, "\n").unwrap();
        assert!(
            line("k", &key, Some(me))
                .unwrap_err()
                .message
                .contains("empty")
        );
        std::fs::write(&key, "a\nb\n").unwrap();
        assert!(
            line("k", &key, Some(me))
                .unwrap_err()
                .message
                .contains("one line")
        );
        let s = Secrets {
            password: Some("hunter2".into()),
            ..Secrets::default()
        };
        assert!(!format!("{s:?}").contains("hunter2"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
