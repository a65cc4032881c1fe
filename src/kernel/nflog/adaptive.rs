//! nflog::adaptive: when the kernel should deliver each packet at once and
//! when in batches, judged by the packet rate per window, with hysteresis.
//!
//! Knows nothing of the socket: it says when to switch, `NflogSocket`
//! tells the kernel.

use std::time::{Duration, Instant};

/// Switch to batching when this many packets arrive within one `WINDOW`
/// (5,000 packets/s): at qthreshold 1 that rate costs the reader ~1.5% of a
/// CPU, so staying immediate below it is cheap.
const FLOOD_ENTER_PACKETS: u64 = 500;
/// Back to immediate delivery when a window of at least `WINDOW` averaged
/// fewer than this many packets per second (hysteresis against flapping).
const FLOOD_LEAVE_PPS: f64 = 1000.0;
const WINDOW: Duration = Duration::from_millis(100);

/// The kernel instance's delivery mode, switched by packet rate: qthreshold
/// 1 while quiet (a lone probe leaves the kernel at once), the configured
/// batch under a flood (one wakeup and one recv per batch, and fewer skbs for
/// the kernel to build). The first probe after a flood may wait for one
/// flush timeout (10 ms) before the drain that sees the rate has dropped.
pub(super) struct Adaptive {
    pub(super) batch: u32,
    pub(super) batch_nlbufsiz: u32,
    pub(super) batching: bool,
    window_start: Instant,
    window_packets: u64,
    pub(super) switches: u64,
}

impl Adaptive {
    pub(super) fn new(batch: u32, batch_nlbufsiz: u32, now: Instant) -> Adaptive {
        Adaptive {
            batch,
            batch_nlbufsiz,
            batching: false,
            window_start: now,
            window_packets: 0,
            switches: 0,
        }
    }

    /// Counts `packets` delivered by a drain at `now`; returns the new mode
    /// (true = batching) when it changes. Entering needs `FLOOD_ENTER_PACKETS`
    /// in one window, so it reacts within the window; leaving is judged over
    /// a whole window. While batching with no traffic, no drain runs: the
    /// next packet comes with the flush timer and the drain that delivers it
    /// sees a long window with a low rate.
    pub(super) fn observe(&mut self, packets: u64, now: Instant) -> Option<bool> {
        self.window_packets += packets;
        let elapsed = now.saturating_duration_since(self.window_start);
        let want = if self.batching {
            elapsed < WINDOW
                || self.window_packets as f64 >= FLOOD_LEAVE_PPS * elapsed.as_secs_f64()
        } else {
            self.window_packets >= FLOOD_ENTER_PACKETS
        };
        if elapsed >= WINDOW || want != self.batching {
            self.window_start = now;
            self.window_packets = 0;
        }
        if want == self.batching {
            return None;
        }
        self.batching = want;
        self.switches += 1;
        Some(want)
    }
}
