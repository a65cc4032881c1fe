//! client: the HTTP calls to the Local API, synchronous (ureq over
//! rustls), on the fleet thread only. Every call has a timeout from
//! connecting to the last byte, every answer a size cap, and an answer that
//! is not what the API documents is an error that says what came back.
//! The machine's token is kept and renewed on 401.

use std::time::Duration;

use serde_json::Value;
use ureq::Agent;
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

use super::lapi::{Login, Stream};
use super::secrets::Secrets;
use crate::config::CrowdSec;

/// Largest answer read: a stream of 100,000 decisions is about 25 MB.
const STREAM_MAX: u64 = 64 * 1024 * 1024;
/// Largest answer of the other calls.
const SMALL_MAX: u64 = 1024 * 1024;
/// The system's roots on Debian.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What went wrong, in words for the log; `auth` for a refused credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub message: String,
    pub auth: bool,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn err(message: String) -> CallError {
    CallError {
        message,
        auth: false,
    }
}

pub struct Client {
    agent: Agent,
    base: String,
    machine_id: String,
    password: Option<String>,
    api_key: Option<String>,
    scenario: String,
    token: Option<String>,
}

impl Client {
    pub fn new(c: &CrowdSec, secrets: &Secrets) -> Result<Client, String> {
        let mut tls = TlsConfig::builder();
        if c.tls() {
            let roots = match &secrets.ca {
                Some(pem) => {
                    let certs = certificates(pem).map_err(|e| format!("crowdsec.ca_file: {e}"))?;
                    RootCerts::new_with_certs(&certs)
                }
                None => match std::fs::read(SYSTEM_ROOTS).ok().map(|p| certificates(&p)) {
                    Some(Ok(certs)) => RootCerts::new_with_certs(&certs),
                    _ => RootCerts::WebPki,
                },
            };
            tls = tls.root_certs(roots);
            if let Some((cert, key)) = &secrets.client {
                let certs = certificates(cert).map_err(|e| format!("crowdsec.cert_file: {e}"))?;
                let key = private_key(key).map_err(|e| format!("crowdsec.key_file: {e}"))?;
                tls = tls.client_cert(Some(ClientCert::new_with_certs(&certs, key)));
            }
        }
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(c.timeout))
            .timeout_connect(Some(c.timeout.min(Duration::from_secs(5))))
            .max_redirects(0)
            // A new connection per call: calls are seconds apart, and a
            // pooled connection the LAPI closed while idle cannot fail one.
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .max_response_header_size(64 * 1024)
            .user_agent(format!("nftsentry/{}", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            .build();
        Ok(Client {
            agent: config.new_agent(),
            base: c.url.clone(),
            machine_id: c.machine_id.clone(),
            password: secrets.password.clone(),
            api_key: secrets.api_key.clone(),
            scenario: c.scenario.clone(),
            token: None,
        })
    }

    /// Reads an answer: its status and at most `max` bytes of body.
    fn finish(
        &self,
        what: &str,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        max: u64,
    ) -> Result<(u16, Vec<u8>), CallError> {
        let mut resp = r.map_err(|e| err(format!("{what}: {}", describe(&e))))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(max)
            .read_to_vec()
            .map_err(|e| err(format!("{what}: reading the answer: {}", describe(&e))))?;
        Ok((status, body))
    }

    /// `POST /v1/watchers/login`: a fresh token.
    pub fn login(&mut self) -> Result<(), CallError> {
        let Some(password) = &self.password else {
            return Err(err("login: no password".into()));
        };
        let body = serde_json::json!({
            "machine_id": self.machine_id,
            "password": password,
            "scenarios": [self.scenario],
        });
        let url = format!("{}/v1/watchers/login", self.base);
        let r = self
            .agent
            .post(&url)
            .content_type("application/json")
            .send(body.to_string().as_bytes());
        let (status, bytes) = self.finish("login", r, SMALL_MAX)?;
        match status {
            200 => {}
            401 | 403 => {
                return Err(CallError {
                    message: format!(
                        "login as machine {:?} refused (HTTP {status}: {}): check machine_id and password_file (cscli machines list)",
                        self.machine_id,
                        excerpt(&bytes)
                    ),
                    auth: true,
                });
            }
            s => {
                return Err(err(format!(
                    "login: HTTP {s} from the Local API: {}",
                    excerpt(&bytes)
                )));
            }
        }
        let login: Login = serde_json::from_slice(&bytes).map_err(|e| {
            err(format!(
                "login: the answer is not a Local API login ({e}): {}",
                excerpt(&bytes)
            ))
        })?;
        if login.token.is_empty() || login.token.len() > 16 * 1024 {
            return Err(err("login: the answer holds no usable token".into()));
        }
        self.token = Some(login.token);
        Ok(())
    }

    /// `POST /v1/alerts`, logging in first or again on 401.
    pub fn push(&mut self, alerts: &[Value]) -> Result<(), CallError> {
        for attempt in 0..2 {
            if self.token.is_none() {
                self.login()?;
            }
            let token = self.token.clone().unwrap_or_default();
            let url = format!("{}/v1/alerts", self.base);
            let r = self
                .agent
                .post(&url)
                .header("Authorization", &format!("Bearer {token}"))
                .content_type("application/json")
                .send(Value::from(alerts.to_vec()).to_string().as_bytes());
            let (status, bytes) = self.finish("pushing alerts", r, SMALL_MAX)?;
            match status {
                200 | 201 => {
                    // The ids of the alerts made: an array.
                    return match serde_json::from_slice::<Value>(&bytes) {
                        Ok(Value::Array(_)) => Ok(()),
                        _ => Err(err(format!(
                            "pushing alerts: HTTP {status} but the answer is not a list of alert ids: {}",
                            excerpt(&bytes)
                        ))),
                    };
                }
                401 if attempt == 0 => self.token = None,
                s => {
                    return Err(CallError {
                        message: format!(
                            "pushing alerts: HTTP {s} from the Local API: {}",
                            excerpt(&bytes)
                        ),
                        auth: s == 401 || s == 403,
                    });
                }
            }
        }
        Err(err("pushing alerts: refused after a new login".into()))
    }

    /// `DELETE /v1/decisions?ip=ADDR` (`?range=NET` for a prefix): lifts
    /// the decisions on `addr` fleet-wide; returns how many the LAPI
    /// deleted.
    pub fn delete(&mut self, addr: &crate::cidr::Cidr) -> Result<u64, CallError> {
        let (key, value) = if addr.is_host() {
            ("ip", addr.addr().to_string())
        } else {
            ("range", addr.to_string())
        };
        for attempt in 0..2 {
            if self.token.is_none() {
                self.login()?;
            }
            let token = self.token.clone().unwrap_or_default();
            let url = format!("{}/v1/decisions", self.base);
            let r = self
                .agent
                .delete(&url)
                .query(key, &value)
                .header("Authorization", &format!("Bearer {token}"))
                .call();
            let (status, bytes) = self.finish("deleting decisions", r, SMALL_MAX)?;
            match status {
                200 => {
                    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    return Ok(v["nbDeleted"]
                        .as_str()
                        .and_then(|n| n.parse().ok())
                        .or_else(|| v["nbDeleted"].as_u64())
                        .unwrap_or(0));
                }
                401 if attempt == 0 => self.token = None,
                s => {
                    return Err(err(format!(
                        "deleting decisions: HTTP {s}: {}",
                        excerpt(&bytes)
                    )));
                }
            }
        }
        Err(err("deleting decisions: refused after a new login".into()))
    }

    /// `GET /v1/decisions/stream`: every decision (`startup`) or the
    /// changes since the last call.
    pub fn stream(
        &mut self,
        startup: bool,
        origins: &[String],
        scenarios: &[String],
    ) -> Result<Stream, CallError> {
        let Some(key) = &self.api_key else {
            return Err(err("pull: no API key".into()));
        };
        let url = format!("{}/v1/decisions/stream", self.base);
        let mut req = self
            .agent
            .get(&url)
            .header("X-Api-Key", key)
            .query("startup", if startup { "true" } else { "false" })
            .query("scopes", "ip,range");
        if !origins.is_empty() {
            req = req.query("origins", origins.join(","));
        }
        if !scenarios.is_empty() {
            req = req.query("scenarios_containing", scenarios.join(","));
        }
        let (status, bytes) = self.finish("pulling decisions", req.call(), STREAM_MAX)?;
        match status {
            200 => serde_json::from_slice(&bytes).map_err(|e| {
                err(format!(
                    "pulling decisions: the answer is not a Local API decision stream ({e}): {}",
                    excerpt(&bytes)
                ))
            }),
            401 | 403 => Err(CallError {
                message: format!(
                    "pulling decisions: API key refused (HTTP {status}): check api_key_file (cscli bouncers list)"
                ),
                auth: true,
            }),
            s => Err(err(format!(
                "pulling decisions: HTTP {s} from the Local API: {}",
                excerpt(&bytes)
            ))),
        }
    }
}

/// The start of an answer, printable, for an error message.
fn excerpt(b: &[u8]) -> String {
    let s: String = String::from_utf8_lossy(&b[..b.len().min(120)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.trim().is_empty() {
        "empty answer".to_string()
    } else {
        format!("{:?}", s.trim())
    }
}

fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("no answer in time ({t})"),
        ureq::Error::HostNotFound => "host not found".to_string(),
        ureq::Error::ConnectionFailed => "cannot connect".to_string(),
        ureq::Error::BodyExceedsLimit(n) => format!("answer larger than {n} bytes"),
        ureq::Error::Io(io) => format!("{io}"),
        other => other.to_string(),
    }
}

fn certificates(pem: &[u8]) -> Result<Vec<Certificate<'static>>, String> {
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(c)) => out.push(c),
            Ok(_) => {}
            Err(e) => return Err(format!("not PEM: {e}")),
        }
    }
    if out.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(out)
}

fn private_key(pem: &[u8]) -> Result<PrivateKey<'static>, String> {
    PrivateKey::from_pem(pem).map_err(|e| format!("no PEM private key in it: {e}"))
}
