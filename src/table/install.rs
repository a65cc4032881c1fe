//! install: puts our table in, or replaces it, in one transaction with the
//! bans it must hold, so no ban has a gap. A kernel that lacks a table flag
//! gets the table without it (said once).
//!
//! Knows nothing of why the bans are there.

use std::time::Duration;

use netlink_packet_netfilter::nftables::TableFlags;

use crate::cidr::Cidr;
use crate::error::{Error, Kind, Result};
use crate::kernel::nft::NftSocket;
use crate::table::bans;
use crate::table::ruleset::Ruleset;

/// Installs `ruleset` with `bans` in one transaction. A kernel without the
/// `persist` (Linux < 6.9) or `owner` (< 5.12) table flag refuses it with
/// EOPNOTSUPP: the flag is dropped, said once, and the install retried.
pub fn install(
    nft: &mut NftSocket,
    ruleset: &mut Ruleset,
    bans: &[(Cidr, Duration, Duration)],
) -> Result<()> {
    install_carrying(nft, ruleset, bans, &bans::Dropped::new())
}

/// `install`, each ban's counter starting from what `dropped` says (a
/// reload, a table left by an earlier nftsentry): `list` goes on counting.
pub fn install_carrying(
    nft: &mut NftSocket,
    ruleset: &mut Ruleset,
    bans: &[(Cidr, Duration, Duration)],
    dropped: &bans::Dropped,
) -> Result<()> {
    let mut races = 0;
    loop {
        let exists = nft.table_exists(&ruleset.table)?;
        let mut batch = ruleset.replace_batch(exists);
        bans::add_to_batch_carrying(
            &mut batch,
            &ruleset.table,
            ruleset.ban_prefix6,
            bans.iter().copied(),
            dropped,
        );
        let err = match nft.commit(&batch) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if err.kind == Kind::NotSupported && ruleset.flags.contains(TableFlags::Persisent) {
            ruleset.flags.remove(TableFlags::Persisent);
            log_warning!(
                "adminalert: WARNING: this kernel has no `persist` table flag (Linux 6.9): the table goes with the daemon if it is killed; its bans come back from the state file at the next start"
            );
            continue;
        }
        if err.kind == Kind::NotSupported && ruleset.flags.contains(TableFlags::Owner) {
            ruleset.flags = TableFlags::empty();
            log_warning!(
                "adminalert: WARNING: this kernel has no `owner` table flag (Linux 5.12): the table is a plain one, watched and put back if someone deletes it"
            );
            continue;
        }
        // Someone created or deleted the table between our look and the
        // transaction: look again.
        let raced = matches!(err.kind, Kind::NotFound | Kind::Exists);
        if raced && races < 3 {
            races += 1;
            continue;
        }
        if exists && err.kind == Kind::Permission {
            return Err(Error::other(format!(
                "table inet {} exists and belongs to another running program (another nftsentry with the same `table`?): {err}",
                ruleset.table
            )));
        }
        return Err(err);
    }
}

pub fn flags_text(f: TableFlags) -> String {
    let mut v = Vec::new();
    if f.contains(TableFlags::Owner) {
        v.push("owner");
    }
    if f.contains(TableFlags::Persisent) {
        v.push("persist");
    }
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// `install`, and when the kernel refuses the transaction because of its
/// bans (one element it will not take, say), the table without them and
/// then the bans in chunks, a refused chunk split until the one element
/// the kernel refuses is found: one bad ban never keeps the table out.
/// Returns the bans the kernel refused.
pub fn install_keeping_what_fits(
    nft: &mut NftSocket,
    ruleset: &mut Ruleset,
    bans: &[(Cidr, Duration, Duration)],
    dropped: &bans::Dropped,
) -> Result<Vec<Cidr>> {
    let err = match install_carrying(nft, ruleset, bans, dropped) {
        Ok(()) => return Ok(Vec::new()),
        Err(e) if bans.is_empty() => return Err(e),
        Err(e) => e,
    };
    log_error!(
        "adminalert: ERROR: the kernel refused table inet {} with its {} bans ({err}); installing it without them, then the bans in chunks",
        ruleset.table,
        bans.len()
    );
    install(nft, ruleset, &[])?;
    let mut refused = Vec::new();
    let mut todo: Vec<&[(Cidr, Duration, Duration)]> = bans
        .chunks(crate::kernel::nft::batch::ELEMENTS_PER_MESSAGE)
        .collect();
    while let Some(chunk) = todo.pop() {
        let mut b = crate::kernel::nft::Batch::new();
        bans::add_to_batch_carrying(
            &mut b,
            &ruleset.table,
            ruleset.ban_prefix6,
            chunk.iter().copied(),
            dropped,
        );
        match nft.commit(&b) {
            Ok(()) => {}
            Err(e) if chunk.len() == 1 => {
                log_error!("adminalert: ERROR: ban of {} not restored: {e}", chunk[0].0);
                refused.push(chunk[0].0);
            }
            Err(_) => {
                let (a, b) = chunk.split_at(chunk.len() / 2);
                todo.push(a);
                todo.push(b);
            }
        }
    }
    Ok(refused)
}
