//! actions::kernel_set: the ban itself, an element of a ban set with
//! the ban's length as its timeout, so the kernel drops the source from now
//! on and forgets it when the time is over.
//!
//! Knows nothing of netlink: it is handed the sets (`BanSets`).

use crate::config::format_duration;
use crate::error::{Error, Result};
use crate::table::bans;

use super::{Action, ActionKind, Context, End, How, Target};

pub struct KernelSet {
    table: String,
    /// `ban_prefix6`, to name the set a ban goes into.
    prefix6: u8,
}

impl KernelSet {
    pub fn new(table: &str, prefix6: u8) -> KernelSet {
        KernelSet {
            table: table.to_string(),
            prefix6,
        }
    }
}

/// The line of a ban the kernel set took.
pub fn log_blocked(
    addr: &crate::cidr::Cidr,
    prefix6: u8,
    table: &str,
    length: std::time::Duration,
) {
    log_notice!(
        "attackalert: Host {} has been blocked via nftables set {} in table inet {} for {}",
        addr,
        bans::set_for(addr, prefix6),
        table,
        format_duration(length)
    );
}

impl Action for KernelSet {
    fn kind(&self) -> ActionKind {
        ActionKind::Set
    }

    fn apply(&mut self, cx: &mut Context<'_>, t: &Target, _how: How) -> Result<bool> {
        cx.sets.add(t.addr, t.length)?;
        // A queued addition is told once the kernel took it.
        if !cx.sets.queued() {
            log_blocked(&t.addr, self.prefix6, &self.table, t.length);
        }
        Ok(true)
    }

    fn check(&mut self, cx: &mut Context<'_>, t: &Target) -> Result<bool> {
        cx.sets.contains(t.addr)
    }

    fn undo(&mut self, cx: &mut Context<'_>, t: &Target, end: End) -> Result<bool> {
        match end {
            End::SetGone => Ok(false),
            End::Lift => cx.sets.remove(t.addr),
        }
    }

    fn failure(&self, t: &Target, e: &Error) -> String {
        format!("attackalert: ERROR: could not block host {}: {e}", t.addr)
    }
}
