//! `[crowdsec]`: sharing bans through a CrowdSec Local API (LAPI), as a
//! detector (push: each local ban becomes an alert with its decision) and as
//! a bouncer (pull: the fleet's decisions go into our table). Off by
//! default. The secrets (the machine's password, the bouncer's API key) are
//! never in this file: only the paths of files holding them, read when the
//! daemon starts (`fleet::Secrets`).
//!
//! Knows nothing of HTTP: it checks the values and says what was asked for.

use std::path::PathBuf;
use std::time::Duration;

use toml::de::DeValue;

use super::values::{boolean, describe, duration, integer, string};
use crate::strength::Strength;

/// Keys of `[crowdsec]`, in the order the default file documents them.
pub const CROWDSEC_KEYS: &[&str] = &[
    "enabled",
    "url",
    "push",
    "pull",
    "machine_id",
    "password_file",
    "api_key_file",
    "scenario",
    "push_evidence",
    "origins",
    "scenarios",
    "pull_interval",
    "timeout",
    "queue_size",
    "ca_file",
    "cert_file",
    "key_file",
];

pub const PULL_INTERVAL_MIN: Duration = Duration::from_secs(1);
pub const PULL_INTERVAL_MAX: Duration = Duration::from_secs(3_600);
pub const TIMEOUT_MIN: Duration = Duration::from_secs(1);
pub const TIMEOUT_MAX: Duration = Duration::from_secs(300);
pub const QUEUE_SIZE_MAX: i64 = 1_000_000;
/// Longest origin, scenario or machine id accepted.
const NAME_MAX: usize = 128;

/// The `[crowdsec]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrowdSec {
    /// `enabled`.
    pub enabled: bool,
    /// `url`: the LAPI's base URL, without a trailing `/`.
    pub url: String,
    /// `push`: send local bans as alerts.
    pub push: bool,
    /// `pull`: enforce the fleet's decisions.
    pub pull: bool,
    /// `machine_id`: the watcher's login (`cscli machines add`).
    pub machine_id: String,
    /// `password_file`: holds the machine's password.
    pub password_file: Option<PathBuf>,
    /// `api_key_file`: holds the bouncer's key (`cscli bouncers add`).
    pub api_key_file: Option<PathBuf>,
    /// `scenario`: the alerts' scenario name.
    pub scenario: String,
    /// `push_evidence`: the weakest evidence whose bans are pushed.
    pub push_evidence: Strength,
    /// `origins`: decisions of these origins only; empty = every origin.
    pub origins: Vec<String>,
    /// `scenarios`: decisions whose scenario contains one of these only;
    /// empty = every scenario.
    pub scenarios: Vec<String>,
    /// `pull_interval`.
    pub pull_interval: Duration,
    /// `timeout`: of each HTTP request, connection to last byte.
    pub timeout: Duration,
    /// `queue_size`: alerts kept while the LAPI cannot take them.
    pub queue_size: usize,
    /// `ca_file`: PEM certificates the LAPI's must chain to; `None`: the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// `cert_file`, `key_file`: a client certificate for TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl CrowdSec {
    pub(super) fn hardwired() -> CrowdSec {
        CrowdSec {
            enabled: false,
            url: "http://127.0.0.1:8080".to_string(),
            push: true,
            pull: true,
            machine_id: String::new(),
            password_file: Some(PathBuf::from("/etc/nftsentry/crowdsec-password")),
            api_key_file: Some(PathBuf::from("/etc/nftsentry/crowdsec-api-key")),
            scenario: "nftsentry/port-scan".to_string(),
            push_evidence: Strength::Handshake,
            origins: Vec::new(),
            scenarios: Vec::new(),
            pull_interval: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
            queue_size: 10_000,
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }

    /// Whether the LAPI is reached over TLS.
    pub fn tls(&self) -> bool {
        self.url.starts_with("https://")
    }

    /// One line for `check` and the start-up log: what it would connect to.
    pub fn describe(&self) -> String {
        if !self.enabled {
            return "crowdsec: off".to_string();
        }
        let mut roles = Vec::new();
        if self.push {
            roles.push(format!(
                "push bans of {} evidence or stronger as machine {:?} (scenario {})",
                self.push_evidence.as_str(),
                self.machine_id,
                self.scenario
            ));
        }
        if self.pull {
            let origins = if self.origins.is_empty() {
                "every origin".to_string()
            } else {
                format!("origins {}", self.origins.join(","))
            };
            roles.push(format!(
                "pull decisions of {origins} every {}",
                super::format_duration(self.pull_interval)
            ));
        }
        let tls = if self.tls() {
            match &self.ca_file {
                Some(ca) => format!(", TLS with CA {}", ca.display()),
                None => ", TLS with the system's roots".to_string(),
            }
        } else {
            String::new()
        };
        let client = match &self.cert_file {
            Some(c) => format!(", client certificate {}", c.display()),
            None => String::new(),
        };
        format!(
            "crowdsec: Local API {}{tls}{client}: {}",
            self.url,
            roles.join("; ")
        )
    }

    /// The checks across keys, once the table is read: (key, message).
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        if !self.enabled {
            return Ok(());
        }
        if !self.push && !self.pull {
            return Err((
                "enabled",
                "push and pull are both false: nothing to do; set enabled = false".to_string(),
            ));
        }
        if self.push && self.machine_id.is_empty() {
            return Err((
                "machine_id",
                "push = true needs the machine's name (cscli machines add NAME --password ...)"
                    .to_string(),
            ));
        }
        if self.push && self.password_file.is_none() {
            return Err((
                "password_file",
                "push = true needs the file holding the machine's password".to_string(),
            ));
        }
        if self.pull && self.api_key_file.is_none() {
            return Err((
                "api_key_file",
                "pull = true needs the file holding the bouncer's API key (cscli bouncers add NAME)"
                    .to_string(),
            ));
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            let key = if self.cert_file.is_some() {
                "key_file"
            } else {
                "cert_file"
            };
            return Err((
                key,
                "a client certificate needs both cert_file and key_file".to_string(),
            ));
        }
        if !self.tls() {
            for (key, set) in [
                ("ca_file", self.ca_file.is_some()),
                ("cert_file", self.cert_file.is_some()),
            ] {
                if set {
                    return Err((
                        key,
                        format!(
                            "{} is plain HTTP: TLS settings need an https:// url",
                            self.url
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One key of `[crowdsec]` into `c`; `Err(None)` for an unknown key.
pub(super) fn key(c: &mut CrowdSec, key: &str, v: &DeValue<'_>) -> Result<(), Option<String>> {
    let r: Result<(), String> = (|| {
        match key {
            "enabled" => c.enabled = boolean(v)?,
            "url" => c.url = url(string(v)?)?,
            "push" => c.push = boolean(v)?,
            "pull" => c.pull = boolean(v)?,
            "machine_id" => c.machine_id = name(string(v)?, "a machine id", true)?,
            "password_file" => c.password_file = path(string(v)?)?,
            "api_key_file" => c.api_key_file = path(string(v)?)?,
            "scenario" => c.scenario = name(string(v)?, "a scenario name", false)?,
            "push_evidence" => {
                let s = string(v)?;
                c.push_evidence = Strength::from_name(s).ok_or_else(|| {
                    format!(
                        "`{s}` is not one of {}",
                        Strength::NAMES.map(|n| format!("\"{n}\"")).join(", ")
                    )
                })?
            }
            "origins" => c.origins = names(v, "an origin")?,
            "scenarios" => c.scenarios = names(v, "a scenario")?,
            "pull_interval" => c.pull_interval = duration(v, PULL_INTERVAL_MIN, PULL_INTERVAL_MAX)?,
            "timeout" => c.timeout = duration(v, TIMEOUT_MIN, TIMEOUT_MAX)?,
            "queue_size" => c.queue_size = integer(v, 1, QUEUE_SIZE_MAX)? as usize,
            "ca_file" => c.ca_file = path(string(v)?)?,
            "cert_file" => c.cert_file = path(string(v)?)?,
            "key_file" => c.key_file = path(string(v)?)?,
            _ => return Err(String::new()),
        }
        Ok(())
    })();
    match r {
        Ok(()) => Ok(()),
        Err(m) if m.is_empty() => Err(None),
        Err(m) => Err(Some(m)),
    }
}

/// `http://host[:port][/path]` or `https://...`, no query, no user info;
/// kept without a trailing `/`.
pub(super) fn url(s: &str) -> Result<String, String> {
    let example = "e.g. \"http://127.0.0.1:8080\" or \"https://lapi.example.org:8080\"";
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| format!("{s:?} is not an http:// or https:// URL ({example})"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let bad = |why: &str| {
        Err(format!(
            "{s:?} is not a usable Local API URL: {why} ({example})"
        ))
    };
    if authority.is_empty() {
        return bad("no host");
    }
    if authority.contains('@') {
        return bad("no user or password in the URL: the credentials go in their files");
    }
    if s.contains(['?', '#']) || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("no query, fragment, spaces or control characters");
    }
    // The port, if any, after the host (an IPv6 host is in brackets).
    let port = if let Some(v6) = authority.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            return bad("an IPv6 address needs its closing `]`");
        };
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return bad("the bracketed host is not an IPv6 address");
        }
        match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return bad("junk after the IPv6 address"),
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => Some(p),
            Some(_) => {
                return bad("an IPv6 address goes in brackets, e.g. http://[2001:db8::1]:8080");
            }
            None => None,
        }
    };
    if let Some(p) = port {
        if !p.parse::<u16>().is_ok_and(|p| p > 0) {
            return bad("the port is not a number from 1 to 65535");
        }
    }
    Ok(format!("{}{}", &s[..s.len() - rest.len()], authority) + path.trim_end_matches('/'))
}

fn path(s: &str) -> Result<Option<PathBuf>, String> {
    super::actions::file_path(s, "/etc/nftsentry/crowdsec-api-key")
}

/// A machine id, scenario or origin: printable ASCII without spaces.
fn name(s: &str, what: &str, may_be_empty: bool) -> Result<String, String> {
    if s.is_empty() && may_be_empty {
        return Ok(String::new());
    }
    if s.is_empty() || s.len() > NAME_MAX || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{s:?} is not {what}: 1 to {NAME_MAX} printable ASCII characters, no spaces"
        ));
    }
    Ok(s.to_string())
}

fn names(v: &DeValue<'_>, what: &str) -> Result<Vec<String>, String> {
    let DeValue::Array(items) = v else {
        return Err(format!(
            "expected an array of strings such as [\"crowdsec\", \"cscli\"], found {}",
            describe(v)
        ));
    };
    items
        .iter()
        .map(|i| name(string(i.get_ref())?, what, false))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn urls_are_checked_and_kept_without_a_trailing_slash() {
        assert_eq!(
            url("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            url("https://lapi.example.org").unwrap(),
            "https://lapi.example.org"
        );
        assert_eq!(
            url("http://[2001:db8::1]:8080").unwrap(),
            "http://[2001:db8::1]:8080"
        );
        assert_eq!(url("https://h:1/base/").unwrap(), "https://h:1/base");
        for bad in [
            "ftp://h",
            "127.0.0.1:8080",
            "http://",
            "http://u:p@h",
            "http://h:0",
            "http://h:99999",
            "http://h:x",
            "http://2001:db8::1:8080",
            "http://[2001:db8::1",
            "http://h/?a=b",
            "http://h /",
        ] {
            assert!(url(bad).is_err(), "{bad}");
        }
    }

    // Long: the defaults, then one table of keys that only make sense together.
    #[test]
    fn off_by_default_and_checked_across_keys_when_on() {
        let c = Config::parse("", "t.toml").unwrap();
        assert!(!c.crowdsec.enabled);
        assert_eq!(c.crowdsec.describe(), "crowdsec: off");
        let ok = "[crowdsec]\nenabled = true\nmachine_id = \"web1\"\nurl = \"https://lapi:8080/\"\nca_file = \"/etc/ca.pem\"\n";
        let c = Config::parse(ok, "t.toml").unwrap();
        assert_eq!(c.crowdsec.url, "https://lapi:8080");
        let d = c.crowdsec.describe();
        assert!(
            d.contains("Local API https://lapi:8080, TLS with CA /etc/ca.pem"),
            "{d}"
        );
        assert!(d.contains("machine \"web1\""), "{d}");
        for (text, line, key, why) in [
            (
                "[crowdsec]\nenabled = true\n",
                "",
                "crowdsec.machine_id",
                "push = true needs the machine's name",
            ),
            (
                "[crowdsec]\nenabled = true\npush = false\napi_key_file = \"\"\n",
                ":4",
                "crowdsec.api_key_file",
                "pull = true needs",
            ),
            (
                "[crowdsec]\nenabled = true\npush = false\npull = false\n",
                ":2",
                "crowdsec.enabled",
                "nothing to do",
            ),
            (
                "[crowdsec]\nenabled = true\npush = false\nca_file = \"/ca\"\n",
                ":4",
                "crowdsec.ca_file",
                "need an https:// url",
            ),
            (
                "[crowdsec]\nenabled = true\npush = false\nurl = \"https://h\"\ncert_file = \"/c\"\n",
                "",
                "crowdsec.key_file",
                "needs both cert_file and key_file",
            ),
            (
                "[crowdsec]\nurl = \"gopher://h\"\n",
                ":2",
                "crowdsec.url",
                "not an http:// or https:// URL",
            ),
            (
                "[crowdsec]\npush_evidence = \"strong\"\n",
                ":2",
                "crowdsec.push_evidence",
                "not one of \"forgeable\", \"ports\", \"handshake\", \"manual\"",
            ),
            (
                "[crowdsec]\norigins = \"cscli\"\n",
                ":2",
                "crowdsec.origins",
                "expected an array of strings",
            ),
            (
                "[crowdsec]\npull_interval = \"0s\"\n",
                ":2",
                "crowdsec.pull_interval",
                "out of range",
            ),
            (
                "[crowdsec]\napi_key = \"abc\"\n",
                ":2",
                "crowdsec.api_key",
                "unknown key",
            ),
            ("crowdsec = 1\n", ":1", "crowdsec", "expected a table"),
        ] {
            let e = Config::parse(text, "/etc/n.toml").unwrap_err();
            assert!(
                e.message.starts_with(&format!("/etc/n.toml{line}: "))
                    && e.message.contains(key)
                    && e.message.contains(why),
                "{text}: {e}"
            );
        }
    }
}
