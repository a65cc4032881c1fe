//! ignores: the sources nftsentry never bans, gathered at start and reload:
//! the ignore file, and (with `ignore_local`) every local address, loopback,
//! the default gateways and the resolvers (`localnet`), each with the reason
//! it is on the list, for the log line that says a probe was ignored.
//!
//! Knows nothing of nftables: `ruleset` puts the list into the ignore sets and
//! `detect` checks it again in user space (`detect::Ignored` is an entry).

use std::path::Path;

use crate::cidr::Cidr;
use crate::config::{self, Config};
pub use crate::detect::{Ignored, networks};
use crate::error::Result;
use crate::host::localnet::Origin;

pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The whole ignore list for `cfg`, sorted, without duplicates.
pub fn collect(cfg: &Config) -> Result<Vec<Cidr>> {
    Ok(networks(&collect_labelled(cfg)?))
}

/// The ignore list with reasons: ignore file entries first, then the local
/// ones in `localnet::discover`'s order. A network listed twice keeps both
/// entries; `networks` merges them.
pub fn collect_labelled(cfg: &Config) -> Result<Vec<Ignored>> {
    let mut list = Vec::new();
    if let Some(path) = &cfg.ignore_file {
        match config::ignore::load(path)? {
            Some(nets) => {
                let why = format!("ignore file {}", path.display());
                list.extend(nets.into_iter().map(|net| Ignored {
                    net,
                    why: why.clone(),
                }));
            }
            None => log_warning!(
                "adminalert: ignore file {} does not exist; only local addresses are ignored",
                path.display()
            ),
        }
    }
    if cfg.ignore_local {
        for l in crate::host::localnet::discover(Path::new(RESOLV_CONF))? {
            let why = match l.origin {
                Origin::Loopback => "loopback".to_string(),
                Origin::Interface(name) => format!("local address on {name}"),
                Origin::Gateway => "default gateway".to_string(),
                Origin::Resolver => format!("resolver in {RESOLV_CONF}"),
            };
            list.push(Ignored { net: l.net, why });
        }
    }
    Ok(list)
}
