//! watch: for a table without the owner flag (table_owner = false, or a
//! kernel without it), which anyone may delete or flush. After nftables
//! events the daemon compares the kernel with what the table should hold
//! and puts back what is missing: the whole table with its bans if it or
//! one of its sets is gone, the bans if someone emptied a ban set.
//!
//! Knows nothing of why the bans are there.

use std::time::Duration;

use crate::cidr::Cidr;
use crate::kernel::nft::{Batch, NftSocket};
use crate::table::bans;
use crate::table::install::install;
use crate::table::ruleset::Ruleset;
use crate::table::sets::OurSet;

/// What a check found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checked {
    /// Everything is there.
    Fine,
    /// Something was missing and is put back.
    Restored,
    /// Something was missing and could not be put back (logged).
    Failed,
}

/// Compares the kernel with `ruleset` and the `expected` bans that should
/// be in force, and puts back what is missing; `should` lists them
/// `(address, timeout, time left)`, called only then (a check after each
/// burst of our own bans' events must not copy every ban).
pub fn check(
    nft: &mut NftSocket,
    ruleset: &mut Ruleset,
    expected: usize,
    should: impl FnOnce() -> Vec<(Cidr, Duration, Duration)>,
) -> Checked {
    let table = ruleset.table.clone();
    let present = match nft.table_exists(&table) {
        Ok(p) => p,
        Err(e) => {
            log_error!("adminalert: ERROR: checking table inet {table}: {e}");
            return Checked::Failed;
        }
    };
    let missing_sets = ruleset
        .sets()
        .iter()
        .any(|set| nft.set_info(&table, set.name()).is_err());
    let what = if !present {
        "was deleted"
    } else if missing_sets {
        "lost a set"
    } else {
        // The table is there: are the bans?
        let have: u64 = OurSet::BLOCKED
            .iter()
            .map(|set| {
                nft.set_info(&table, set.name())
                    .ok()
                    .and_then(|i| i.count)
                    .map_or(0, u64::from)
            })
            .sum();
        // The kernel counts each ban's interval once.
        if have >= expected as u64 {
            return Checked::Fine;
        }
        // `expected` may still count a ban the kernel has just ended.
        let should = should();
        if have >= should.len() as u64 {
            return Checked::Fine;
        }
        let mut b = Batch::new();
        bans::add_to_batch(&mut b, &table, ruleset.ban_prefix6, should.iter().copied());
        return match nft.commit(&b) {
            Ok(()) => {
                log_warning!(
                    "adminalert: WARNING: bans were removed from table inet {table} by another program; {} bans put back",
                    should.len()
                );
                Checked::Restored
            }
            Err(e) => {
                log_error!("adminalert: ERROR: putting the bans of table inet {table} back: {e}");
                Checked::Failed
            }
        };
    };
    // A new table has empty live sets: the other period makes every
    // connection feed them again at its next packet.
    ruleset.live_phase = !ruleset.live_phase;
    let should = should();
    match install(nft, ruleset, &should) {
        Ok(()) => {
            log_warning!(
                "adminalert: WARNING: table inet {table} {what} (nft flush ruleset, a firewall restart?); put back with {} bans",
                should.len()
            );
            Checked::Restored
        }
        Err(e) => {
            log_error!(
                "adminalert: ERROR: table inet {table} {what} and could not be put back: {e}"
            );
            Checked::Failed
        }
    }
}
