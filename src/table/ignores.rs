//! ignores: the ignore sets (ignore4, ignore6) given new elements in one
//! transaction, when the host's neighbourhood changed: each set flushed
//! and filled again, so a packet sees the old list or the new one, never
//! a mix and never an empty set. Nothing else of the table changes: the
//! rules, the tripwires and the bans stay as they are.
//!
//! Knows nothing of why an address is ignored.

use crate::error::Result;
use crate::kernel::nft::{Batch, FAMILY, NftSocket};
use crate::table::ruleset::{Ranges, interval_elements};
use crate::table::sets::OurSet;

/// The transaction that makes `table`'s ignore sets hold exactly `v4` and
/// `v6` (sorted, merged inclusive ranges, as `ruleset::ignore_ranges`
/// gives them).
pub fn replace_batch(table: &str, v4: &Ranges, v6: &Ranges) -> Batch {
    let mut b = Batch::new();
    for (set, ranges, width) in [(OurSet::Ignore4, v4, 4), (OurSet::Ignore6, v6, 16)] {
        b.flush_set(FAMILY, table, set.name());
        let elems = interval_elements(ranges, width);
        if !elems.is_empty() {
            b.add_elements(FAMILY, table, set.name(), None, &elems);
        }
    }
    b
}

/// Replaces the elements of `table`'s ignore sets, in one transaction.
pub fn replace(nft: &mut NftSocket, table: &str, v4: &Ranges, v6: &Ranges) -> Result<()> {
    nft.commit_unchecked(&replace_batch(table, v4, v6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_flush_and_one_fill_per_set() {
        let b = replace_batch("t", &vec![(1, 1), (5, 9)], &Vec::new());
        // ignore4: flush, elements; ignore6: flush only (an empty set).
        assert_eq!(b.len(), 3, "{:?}", b.messages().len());
    }
}
