//! ledger::escalate: several bans in one IPv4 /24, or IPv6 /56 then /48,
//! replaced by one ban of the prefix (`escalate_after`).

use super::*;

impl Ledger {
    /// Escalation (`escalate_after`): for each of `wider` (the prefixes
    /// around a new ban that hold no ignored address, narrowest first:
    /// the IPv4 /24, the IPv6 /56 and /48), when it holds that many bans in
    /// force made within `escalate_window`, one ban of the prefix replaces
    /// them, for the longest time any of them had left. The prefix's ban
    /// goes in first, then theirs are lifted: no gap. When it ends nothing
    /// of it is kept: the next offender there is banned by itself again.
    pub(super) fn escalate(&mut self, sets: &mut dyn BanSets, wider: &[Cidr], now: Instant) {
        let n = self.policy.escalate_after as usize;
        if n == 0 {
            return;
        }
        let now_ms = wall_ms();
        let since = now_ms.saturating_sub(ms(self.policy.escalate_window));
        for wide in wider {
            if self.covering(wide).is_some() || !wide.is_bannable_width() {
                continue;
            }
            let last = wide.range().1;
            let inside: Vec<Cidr> = self
                .records
                .range(*wide..)
                .take_while(|(k, _)| k.is_ipv4() == wide.is_ipv4() && k.range().0 <= last)
                .filter(|(k, r)| {
                    wide.covers(k)
                        && **k != *wide
                        && !r.ended
                        && r.entry.applied.set
                        && r.entry.banned_at >= since
                })
                .map(|(k, _)| *k)
                .collect();
            if inside.len() < n {
                continue;
            }
            let left_ms = inside
                .iter()
                .map(|k| self.records[k].entry.expires_at.saturating_sub(now_ms))
                .max()
                .unwrap_or(0)
                .max(1000);
            let strongest = inside
                .iter()
                .map(|k| self.records[k].entry.evidence)
                .max()
                .unwrap_or(Strength::Forgeable);
            let left = Duration::from_millis(left_ms);
            if let Err(e) = self.block(sets, *wide, left, now) {
                log_error!(
                    "attackalert: ERROR: could not ban {wide} in place of its {} bans: {e}",
                    inside.len()
                );
                return;
            }
            if let Some(r) = self.records.get_mut(wide) {
                r.entry.scan = "escalated".into();
                r.entry.evidence = strongest;
            }
            self.changed(*wide, now);
            log_notice!(
                "attackalert: {} bans within {} in {wide}: one ban of {wide} replaces them, for {}",
                inside.len(),
                format_duration(self.policy.escalate_window),
                format_duration(left)
            );
            for k in inside {
                if let Err(e) = self.lift(sets, k, now) {
                    log_error!(
                        "attackalert: ERROR: could not lift the ban of {k} inside {wide}: {e}"
                    );
                }
            }
        }
    }
}
