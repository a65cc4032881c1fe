//! ledger::drops: what each ban dropped, read from its element's counter
//! shortly before the kernel removes the element (and the counter) itself.

use super::*;

impl Ledger {
    /// Schedules the read of what the ban on `addr` (from `since` to
    /// `until`) dropped, just before its end.
    pub(super) fn read_before_end(&mut self, addr: Cidr, since: Instant, until: Instant) {
        let lead = DROP_READ_LEAD.min(until.saturating_duration_since(since) / 2);
        self.reads.push(Reverse((until - lead, addr)));
    }

    /// Reads the counters of bans about to end: one request each, or one
    /// dump of the sets when many end together (a flood's bans).
    pub(super) fn read_counters(&mut self, sets: &mut dyn BanSets, now: Instant) {
        let mut due = Vec::new();
        while let Some(Reverse((at, addr))) = self.reads.peek().copied() {
            if at > now {
                break;
            }
            self.reads.pop();
            let live = self
                .records
                .get(&addr)
                .is_some_and(|r| !r.ended && r.entry.applied.set && r.until > now);
            if live {
                due.push(addr);
            }
        }
        if due.len() > READS_ONE_BY_ONE {
            if let Ok(list) = sets.list() {
                let wanted: std::collections::HashSet<Cidr> = due.into_iter().collect();
                for b in list {
                    if let Some(d) = b.dropped.filter(|_| wanted.contains(&b.addr)) {
                        self.dropped.insert(b.addr, d);
                    }
                }
            }
            return;
        }
        for addr in due {
            if let Ok(Some(d)) = sets.dropped(addr) {
                self.dropped.insert(addr, d);
            }
        }
    }
}
