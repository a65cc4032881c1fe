//! convert::detection: SCAN_TRIGGER, RESOLVE_HOST and PORT_BANNER, the keys
//! of when a source counts as a scanner and what it is told.
//!
//! Knows nothing of the actions on a ban or of the [tcp] and [udp] tables.

use super::{Out, origin, toml_str};
use crate::cli::import::{PortsentryConf, atoi};

pub(super) fn convert_detection(conf: &PortsentryConf, o: &mut Out) {
    let t = conf.token("SCAN_TRIGGER");
    let n = match t.value() {
        Some(v) => atoi(v).0,
        // PortSentry: "Could not read SCAN_TRIGGER ... Disabling SCAN
        // DETECTION TRIGGER", i.e. 0.
        None => 0,
    };
    // CheckStateEngine counts the probe at hand: the Nth probe from a
    // source acts, "1" like "0" on the first, and so does nftsentry's
    // scan_trigger; a negative value acts on the first probe too.
    let trigger = n.clamp(0, i64::from(u32::MAX));
    let mut c = vec![origin(conf, "SCAN_TRIGGER", &t)];
    c.push(format!(
        "The same meaning: probe number {} from a source is banned.",
        n.max(1)
    ));
    c.push(
        "PortSentry remembered the last 50 sources without time limit; nftsentry counts probes within scan_window (default 1h)."
            .to_string(),
    );
    o.key(None, c, "scan_trigger", trigger.to_string());

    let t = conf.token("RESOLVE_HOST");
    let on = t.value().is_some_and(|v| atoi(v).0 != 0);
    let mut c = vec![origin(conf, "RESOLVE_HOST", &t)];
    if let Some(v) = t.value() {
        if !matches!(v, "0" | "1") {
            c.push(format!(
                "PortSentry resolved names when atoi(\"{v}\") was not 0: {}.",
                if on { "it was" } else { "it was 0" }
            ));
        }
    }
    o.key(None, c, "resolve_host", on.to_string());

    let t = conf.token("PORT_BANNER");
    match t.value() {
        Some(v) => {
            let c = vec![
                origin(conf, "PORT_BANNER", &t),
                "Sent to clients of connect mode (TCP and UDP), as PortSentry's -tcp/-udp did."
                    .to_string(),
            ];
            o.key(None, c, "port_banner", toml_str(v));
        }
        None => o.comment(
            None,
            vec![origin(conf, "PORT_BANNER", &t) + ": no banner, as in nftsentry's default."],
        ),
    }
}
