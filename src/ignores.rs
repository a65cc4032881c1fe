//! ignores: the sources nftsentry never bans, gathered at start and reload:
//! the ignore file, and (with `ignore_local`) every local address, loopback,
//! the default gateways and the resolvers (`localnet`).
//!
//! Knows nothing of nftables: `ruleset` puts the list into the ignore sets and
//! `detect` checks it again in user space.

use std::path::Path;

use crate::cidr::Cidr;
use crate::config::{self, Config};
use crate::error::Result;
use crate::logging;

pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The whole ignore list for `cfg`, ignore file entries first.
pub fn collect(cfg: &Config) -> Result<Vec<Cidr>> {
    let mut nets = Vec::new();
    if let Some(path) = &cfg.ignore_file {
        match config::ignore::load(path)? {
            Some(list) => nets.extend(list),
            None => logging::warning(&format!(
                "adminalert: ignore file {} does not exist; only local addresses are ignored",
                path.display()
            )),
        }
    }
    if cfg.ignore_local {
        nets.extend(
            crate::localnet::discover(Path::new(RESOLV_CONF))?
                .into_iter()
                .map(|l| l.net),
        );
    }
    nets.sort_unstable();
    nets.dedup();
    Ok(nets)
}
