//! policy: how long a ban lasts (repeat offenders escalate up to
//! `ban_time_max`), what a protocol's detections do (block mode), and how
//! long an ended ban is remembered.

use std::time::Duration;

use crate::config::{BlockMode, Config, Proto};
use crate::journal::state::Entry;

use super::Record;

/// How long bans last and what they do, from the config.
pub(super) struct Policy {
    pub(super) ban_time: Duration,
    factor: u32,
    max: Duration,
    pub(super) set_size: u32,
    modes: [BlockMode; 2],
    pub(super) history: bool,
    pub(super) escalate_after: u32,
    pub(super) escalate_window: Duration,
}

impl Policy {
    pub(super) fn of(cfg: &Config) -> Policy {
        Policy {
            ban_time: cfg.ban_time,
            factor: cfg.ban_time_factor,
            max: cfg.ban_time_max,
            set_size: cfg.set_size,
            modes: [cfg.tcp.block_mode, cfg.udp.block_mode],
            history: cfg.history_file.is_some(),
            escalate_after: cfg.escalate_after,
            escalate_window: cfg.escalate_window,
        }
    }

    pub(super) fn block_mode(&self, proto: Proto) -> BlockMode {
        match proto {
            Proto::Tcp => self.modes[0],
            Proto::Udp => self.modes[1],
        }
    }

    /// The length and repeat count of a ban of a source whose last record
    /// is `prev`, and whether it is a repeat offence. A ban still in force
    /// (renewed because the kernel lost it, or a command-only ban that
    /// becomes a block) keeps its length and count.
    pub(super) fn length_for(&self, prev: Option<&Record>) -> (Duration, u32, bool) {
        match prev {
            None => (self.ban_time, 1, false),
            Some(r) if !r.ended => (
                Duration::from_millis(r.entry.length).max(Duration::from_secs(1)),
                r.entry.repeat.max(1),
                false,
            ),
            Some(r) => {
                let repeat = r.entry.repeat.saturating_add(1);
                if self.factor > 1 {
                    let last = Duration::from_millis(r.entry.length);
                    let next = last
                        .saturating_mul(self.factor)
                        .min(self.max)
                        .max(self.ban_time);
                    (next, repeat, true)
                } else {
                    (self.ban_time, repeat, true)
                }
            }
        }
    }

    /// How long an ended ban is remembered from `now_ms`: until
    /// `ban_time_max` after its end with escalation, else not at all.
    pub(super) fn memory(&self, e: &Entry, now_ms: u64) -> Duration {
        if self.factor > 1 {
            Duration::from_millis(e.expires_at)
                .saturating_add(self.max)
                .saturating_sub(Duration::from_millis(now_ms))
        } else {
            Duration::ZERO
        }
    }
}
