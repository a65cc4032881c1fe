//! commands: `list`, `block`, `unblock` and `flush` as they act on the
//! table, with the text they print. The daemon runs them on its own
//! netlink socket when they come through the control socket (it owns the
//! table); the command line runs them itself when no daemon answers.
//!
//! Knows nothing of sockets other than the nftables one it is handed.

use std::net::IpAddr;
use std::time::Duration;

use crate::config::Config;
use crate::detect::IgnoreList;
use crate::error::{Error, Result};
use crate::kernel::nft::NftSocket;
use crate::respond;
use crate::table::bans;
use crate::table::ruleset::nft_duration;

/// The shortest ban `block --for` accepts.
pub const MIN_BAN: Duration = Duration::from_secs(1);

/// Bans `addr` for `timeout` (element, route and hosts.deny line where
/// configured, state file). `ignored`: the address is on the ignore list,
/// which the admin is told, since the ignore rule comes first.
pub fn block(
    cfg: &Config,
    nft: &mut NftSocket,
    addr: IpAddr,
    timeout: Duration,
    ignored: &IgnoreList,
) -> Result<String> {
    if timeout < MIN_BAN {
        return Err(Error::usage("--for: a ban must last at least 1s"));
    }
    respond::block(cfg, nft, addr, timeout)?;
    let addr = bans::canonical(addr);
    let mut out = format!("{addr} blocked for {}\n", nft_duration(timeout));
    if ignored.contains(&addr) {
        out.push_str(&format!(
            "note: {addr} is in the ignore list (ignore file or a local address); its packets are not dropped while it is ignored\n"
        ));
    }
    Ok(out)
}

pub fn unblock(cfg: &Config, nft: &mut NftSocket, addr: IpAddr) -> Result<String> {
    let addr = bans::canonical(addr);
    if respond::unblock(cfg, nft, addr)? {
        Ok(format!("{addr} unblocked\n"))
    } else {
        Err(Error::other(format!("{addr} is not blocked")))
    }
}

pub fn flush(cfg: &Config, nft: &mut NftSocket) -> Result<String> {
    let n = respond::flush(cfg, nft)?;
    Ok(format!("{n} bans lifted\n"))
}

pub fn list(cfg: &Config, nft: &mut NftSocket, json: bool) -> Result<String> {
    let list = bans::list(nft, &cfg.table)?;
    Ok(if json {
        list_json(&list)
    } else {
        list_text(&list)
    })
}

fn secs(d: Option<Duration>) -> String {
    d.map(|d| d.as_secs().to_string())
        .unwrap_or_else(|| "null".into())
}

pub fn list_json(list: &[bans::Ban]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|b| {
            format!(
                "{{\"address\":\"{}\",\"timeout\":{},\"expires_in\":{}}}",
                b.addr,
                secs(b.timeout),
                secs(b.expires_in)
            )
        })
        .collect();
    format!("[{}]\n", items.join(","))
}

pub fn list_text(list: &[bans::Ban]) -> String {
    let dur = |d: Option<Duration>| {
        d.map(|d| nft_duration(Duration::from_secs(d.as_secs())))
            .unwrap_or_else(|| "-".into())
    };
    let mut out = format!(
        "{:<40} {:>12} {:>12}\n",
        "ADDRESS", "EXPIRES IN", "BAN TIME"
    );
    for b in list {
        out.push_str(&format!(
            "{:<40} {:>12} {:>12}\n",
            b.addr.to_string(),
            dur(b.expires_in),
            dur(b.timeout)
        ));
    }
    out
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn list_renderings() {
        let list = vec![bans::Ban {
            addr: "192.0.2.7".parse().unwrap(),
            timeout: Some(Duration::from_secs(3600)),
            expires_in: None,
        }];
        assert_eq!(
            list_json(&list),
            "[{\"address\":\"192.0.2.7\",\"timeout\":3600,\"expires_in\":null}]\n"
        );
        assert!(list_text(&list).contains("192.0.2.7"));
    }
}
