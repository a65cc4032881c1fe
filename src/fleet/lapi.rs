//! lapi: the CrowdSec Local API's bodies as nftsentry reads and writes
//! them: the login answer, the decision stream, an alert with its decision;
//! Go's duration strings; a decision turned into what a firewall can use
//! (`Usable`), or the reason it cannot.
//!
//! Pure: no I/O. What comes from the network is untrusted: every field is
//! checked, a missing or malformed one is an error naming it.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::cidr::Cidr;

/// The answer of `POST /v1/watchers/login`.
#[derive(Debug, Deserialize)]
pub struct Login {
    pub token: String,
}

/// The answer of `GET /v1/decisions/stream`. CrowdSec 1.4.6 writes `null`
/// for an empty list.
#[derive(Debug, Default, Deserialize)]
pub struct Stream {
    #[serde(default)]
    pub new: Option<Vec<Decision>>,
    #[serde(default)]
    pub deleted: Option<Vec<Decision>>,
}

/// One decision as the LAPI streams it; unknown fields are ignored (newer
/// versions add `uuid`, `until`, `simulated`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Decision {
    pub id: i64,
    #[serde(default)]
    pub origin: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub scope: String,
    pub value: String,
    #[serde(default)]
    pub duration: String,
    #[serde(default)]
    pub scenario: String,
}

/// A decision a firewall can enforce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usable {
    pub id: i64,
    pub net: Cidr,
    /// Time left as the LAPI said it when it was read.
    pub left: Duration,
    pub origin: String,
    pub scenario: String,
}

/// Why a decision is skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Skip {
    /// A type other than `ban` (`captcha`, ...).
    Type,
    /// A scope other than `Ip` and `Range` (`Country`, `AS`, ...).
    Scope,
    /// A value that is no address or network, or an expired duration.
    Value,
}

impl Decision {
    /// What the firewall does with it.
    pub fn usable(&self) -> Result<Usable, Skip> {
        if !self.kind.eq_ignore_ascii_case("ban") {
            return Err(Skip::Type);
        }
        let net = match self.scope.to_ascii_lowercase().as_str() {
            "ip" => self
                .value
                .parse::<IpAddr>()
                .map(Cidr::host)
                .map_err(|_| Skip::Value)?,
            "range" => self.value.parse::<Cidr>().map_err(|_| Skip::Value)?,
            _ => return Err(Skip::Scope),
        };
        let left = go_duration(&self.duration).ok_or(Skip::Value)?;
        if left <= 0 {
            return Err(Skip::Value);
        }
        Ok(Usable {
            id: self.id,
            net,
            left: Duration::from_nanos(left.min(u64::MAX as i128) as u64),
            origin: self.origin.clone(),
            scenario: self.scenario.clone(),
        })
    }
}

/// Go's `time.Duration` text (`3h59m58.873s`, `1.5s`, `250ms`, `-2m`) in
/// nanoseconds; `None` when it is not one.
pub fn go_duration(s: &str) -> Option<i128> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() || rest.len() > 64 {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_end);
        if num.is_empty() || num.matches('.').count() > 1 || num == "." {
            return None;
        }
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        let int: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut value = int.checked_mul(scale)?;
        let mut div = 1i128;
        for d in frac.bytes().take(18) {
            div *= 10;
            value += i128::from(d - b'0') * scale / div;
        }
        total = total.checked_add(value)?;
        rest = tail;
    }
    Some(if neg { -total } else { total })
}

/// Go's duration text for a whole number of seconds, as the LAPI takes it.
pub fn duration_text(d: Duration) -> String {
    let s = d.as_secs().max(1);
    format!("{}h{}m{}s", s / 3600, s / 60 % 60, s % 60)
}

/// What a local ban tells the fleet (a line of the queue file).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct BanReport {
    /// The ban: an address (scope Ip) or a prefix (scope Range).
    pub addr: Cidr,
    pub length: Duration,
    /// PortSentry's name of the scan ("TCP SYN/Normal scan").
    pub scan: String,
    pub port: u16,
    /// Evidence strength ("ports", "handshake", ...).
    pub strength: String,
    /// Seconds since the epoch of the probe that banned.
    pub at: u64,
}

/// RFC 3339 in UTC for seconds since the epoch.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The alert for `r`, with its decision (scope Ip for an address, Range
/// for a prefix ban; the ban's length).
pub fn alert(r: &BanReport, scenario: &str, machine: &str) -> Value {
    let at = rfc3339(r.at);
    let value = r.addr.to_string();
    let (scope, source) = if r.addr.is_host() {
        ("Ip", json!({"scope": "Ip", "value": value, "ip": value}))
    } else {
        (
            "Range",
            json!({"scope": "Range", "value": value, "range": value}),
        )
    };
    let meta = json!([
        {"key": "scan_type", "value": r.scan},
        {"key": "port", "value": r.port.to_string()},
        {"key": "evidence", "value": r.strength},
        {"key": "first_probe", "value": at},
        {"key": "last_probe", "value": at},
        {"key": "source_ip", "value": value},
        {"key": "service", "value": "nftsentry"},
    ]);
    json!({
        "scenario": scenario,
        "scenario_hash": "",
        "scenario_version": env!("CARGO_PKG_VERSION"),
        "message": format!("{machine}: {value} banned by nftsentry: {} on port {} ({} evidence)", r.scan, r.port, r.strength),
        "events_count": 1,
        "start_at": at,
        "stop_at": at,
        "capacity": 0,
        "leakspeed": "0",
        "simulated": false,
        "remediation": true,
        "events": [{"timestamp": at, "meta": meta}],
        "source": source,
        "decisions": [{
            "origin": "nftsentry",
            "type": "ban",
            "scope": scope,
            "value": value,
            "duration": duration_text(r.length),
            "scenario": scenario,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_as_go_writes_them() {
        assert_eq!(go_duration("3h59m58.873s"), Some(14_398_873_000_000));
        assert_eq!(go_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(go_duration("250ms"), Some(250_000_000));
        assert_eq!(go_duration("-1m0.5s"), Some(-60_500_000_000));
        assert_eq!(go_duration("0"), Some(0));
        assert_eq!(go_duration("12µs"), Some(12_000));
        for bad in ["", "s", "5", "1.2.3s", "5d", "abc", "1h-5m", "."] {
            assert_eq!(go_duration(bad), None, "{bad}");
        }
        assert_eq!(duration_text(Duration::from_secs(90_061)), "25h1m1s");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_128_119), "2026-12-01T12:28:39Z");
    }

    #[test]
    fn streams_from_crowdsec_1_4_6_and_later_parse() {
        let s: Stream = serde_json::from_str(r#"{"deleted":null,"new":[{"duration":"1m28.98s","id":1,"origin":"nftsentry","scenario":"nftsentry/port-scan","scope":"Ip","type":"ban","value":"198.51.100.7","uuid":"x","simulated":false}]}"#).unwrap();
        let new = s.new.unwrap();
        assert!(s.deleted.is_none());
        let u = new[0].usable().unwrap();
        assert_eq!(u.net, "198.51.100.7".parse().unwrap());
        assert_eq!(u.left, Duration::from_millis(88_980));
        let d = |kind: &str, scope: &str, value: &str, duration: &str| Decision {
            id: 2,
            origin: "cscli".into(),
            kind: kind.into(),
            scope: scope.into(),
            value: value.into(),
            duration: duration.into(),
            scenario: "manual".into(),
        };
        assert_eq!(
            d("ban", "Range", "203.0.113.0/24", "1h")
                .usable()
                .unwrap()
                .net,
            "203.0.113.0/24".parse().unwrap()
        );
        assert_eq!(
            d("captcha", "Ip", "192.0.2.1", "1h").usable(),
            Err(Skip::Type)
        );
        assert_eq!(d("ban", "Country", "FR", "1h").usable(), Err(Skip::Scope));
        assert_eq!(d("ban", "Ip", "not-an-ip", "1h").usable(), Err(Skip::Value));
        assert_eq!(
            d("ban", "Ip", "192.0.2.1", "-3s").usable(),
            Err(Skip::Value)
        );
        assert_eq!(
            d("ban", "Range", "192.0.2.1/33", "1h").usable(),
            Err(Skip::Value)
        );
        // Garbage is an error, not a panic or an empty answer.
        assert!(serde_json::from_str::<Stream>("<html>").is_err());
        assert!(serde_json::from_str::<Stream>(r#"{"new":[{"id":"x"}]}"#).is_err());
    }

    #[test]
    fn an_alert_carries_its_decision_with_scope_ip_and_the_ban_length() {
        let r = BanReport {
            addr: "198.51.100.7".parse().unwrap(),
            length: Duration::from_secs(3600),
            scan: "TCP SYN/Normal scan".into(),
            port: 22,
            strength: "ports".into(),
            at: 0,
        };
        let a = alert(&r, "nftsentry/port-scan", "web1");
        assert_eq!(a["decisions"][0]["scope"], "Ip");
        assert_eq!(a["decisions"][0]["duration"], "1h0m0s");
        assert_eq!(a["source"]["ip"], "198.51.100.7");
        assert_eq!(a["events"][0]["meta"][2]["value"], "ports");
        // A prefix ban is a Range decision.
        let r = BanReport {
            addr: "2001:db8:7::/64".parse().unwrap(),
            ..r
        };
        let a = alert(&r, "nftsentry/port-scan", "web1");
        assert_eq!(a["decisions"][0]["scope"], "Range");
        assert_eq!(a["decisions"][0]["value"], "2001:db8:7::/64");
        assert_eq!(a["source"]["range"], "2001:db8:7::/64");
        // The queue file's line reads back.
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<BanReport>(&line).unwrap(), r);
    }
}
