//! ignores: the sources nftsentry never bans, gathered at start and reload:
//! the ignore file (`configured_labelled`), and (with `ignore_local`) every
//! local address, loopback, the gateways and the resolvers (`localnet`,
//! `local_labelled`, gathered again by the daemon when they change), each
//! with the reason it is on the list, for the log line that says a probe
//! was ignored.
//!
//! Knows nothing of nftables: `ruleset` puts the list into the ignore sets and
//! `detect` checks it again in user space (`detect::Ignored` is an entry).

use crate::cidr::Cidr;
use crate::config::{self, Config};
pub use crate::detect::{Ignored, networks};
use crate::error::Result;
use crate::host::localnet::LocalIgnore;
use crate::host::resolvers::ResolverFiles;

pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The whole ignore list for `cfg`, sorted, without duplicates.
pub fn collect(cfg: &Config) -> Result<Vec<Cidr>> {
    Ok(networks(&collect_labelled(cfg)?))
}

/// The ignore list with reasons: ignore file entries first, then the local
/// ones in `localnet::discover`'s order. A network listed twice keeps both
/// entries; `networks` merges them.
pub fn collect_labelled(cfg: &Config) -> Result<Vec<Ignored>> {
    let mut list = configured_labelled(cfg)?;
    if cfg.ignore_local {
        list.extend(local_labelled(&ResolverFiles::system())?);
    }
    Ok(list)
}

/// The entries the config gives, whatever the host's neighbourhood: the
/// ignore file's.
pub fn configured_labelled(cfg: &Config) -> Result<Vec<Ignored>> {
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
    Ok(list)
}

/// The local entries (`ignore_local`): this host's addresses, gateways
/// and resolvers now, each with its reason.
pub fn local_labelled(files: &ResolverFiles) -> Result<Vec<Ignored>> {
    Ok(labelled(crate::host::localnet::discover(files)?))
}

/// `local_labelled`, with the resolver files it skipped in `notes`.
pub fn local_labelled_noting(
    files: &ResolverFiles,
    notes: &mut Vec<String>,
) -> Result<Vec<Ignored>> {
    Ok(labelled(crate::host::localnet::discover_noting(
        files, notes,
    )?))
}

fn labelled(local: Vec<LocalIgnore>) -> Vec<Ignored> {
    local
        .into_iter()
        .map(|l| Ignored {
            net: l.net,
            why: l.origin.reason(),
        })
        .collect()
}
