//! storm: the guard against floods of forged probes. Counted in windows of
//! 10 s: the bans that forgeable evidence (one probe of one port) would
//! make. When a window holds far more than normal (at least
//! `storm_threshold`, and twenty times the long-run average), the guard
//! goes on for `storm_hold`: a source must then probe two ports before its
//! forgeable evidence bans it. One forged packet per address, which is what
//! a spoofed flood costs its sender, no longer fills the ban sets; a real
//! scanner, which probes many ports, is still banned. It says so once when
//! it goes on and once when it goes off.
//!
//! Pure: it is given the time.

use std::time::{Duration, Instant};

/// The length of one counting window.
pub const WINDOW: Duration = Duration::from_secs(10);
/// A storm is this many times the long-run average, at least.
const ABOVE_NORMAL: f64 = 20.0;
/// The long-run average follows a window by this weight (about an hour).
const AVERAGE_WEIGHT: f64 = 1.0 / 360.0;

pub struct Storm {
    threshold: u32,
    hold: Duration,
    window_start: Option<Instant>,
    in_window: u32,
    /// Weak bans per window, on average, outside storms.
    normal: f64,
    /// Since when, and until when, the guard is on.
    on: Option<(Instant, Instant)>,
    /// Bans it held back in the current storm.
    held: u64,
    /// Lines to log (on, off), taken by the service.
    lines: Vec<String>,
}

/// What `status` shows of the guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StormState {
    pub since: Instant,
    pub until: Instant,
    pub held: u64,
}

impl Storm {
    /// `threshold` 0: never on.
    pub fn new(threshold: u32, hold: Duration) -> Storm {
        Storm {
            threshold,
            hold,
            window_start: None,
            in_window: 0,
            normal: 0.0,
            on: None,
            held: 0,
            lines: Vec::new(),
        }
    }

    /// New settings (reload); the count and a storm in progress stay.
    pub fn set(&mut self, threshold: u32, hold: Duration) {
        self.threshold = threshold;
        self.hold = hold;
    }

    fn roll(&mut self, now: Instant) {
        let start = *self.window_start.get_or_insert(now);
        if now.duration_since(start) < WINDOW {
            return;
        }
        if self.on.is_none() {
            self.normal += (f64::from(self.in_window) - self.normal) * AVERAGE_WEIGHT;
        }
        self.in_window = 0;
        self.window_start = Some(now);
        if let Some((since, until)) = self.on {
            if now >= until {
                self.lines.push(format!(
                    "adminalert: storm guard off after {}: {} bans on the evidence of a single forgeable probe were held back",
                    crate::config::format_duration(Duration::from_secs(
                        now.duration_since(since).as_secs().max(1)
                    )),
                    self.held
                ));
                self.on = None;
                self.held = 0;
            }
        }
    }

    /// A detection whose only evidence is one forgeable probe would ban:
    /// may it? Counts it, and turns the guard on when the window is far
    /// above normal.
    pub fn allows(&mut self, now: Instant) -> bool {
        self.roll(now);
        if self.on.is_some() {
            self.held += 1;
            return false;
        }
        self.in_window = self.in_window.saturating_add(1);
        let above = f64::from(self.in_window) > self.normal * ABOVE_NORMAL;
        if self.threshold > 0 && self.in_window >= self.threshold && above {
            self.on = Some((now, now + self.hold));
            self.lines.push(format!(
                "adminalert: WARNING: storm guard on: {} bans on forgeable evidence within {}s (storm_threshold {}); for at least {} a source must probe two ports to be banned without a handshake",
                self.in_window,
                WINDOW.as_secs(),
                self.threshold,
                crate::config::format_duration(self.hold)
            ));
        }
        true
    }

    /// Keeps the guard's clock running without a detection (the loop's
    /// timer), so it goes off on time.
    pub fn tick(&mut self, now: Instant) {
        self.roll(now);
    }

    pub fn state(&self) -> Option<StormState> {
        self.on.map(|(since, until)| StormState {
            since,
            until,
            held: self.held,
        })
    }

    /// Lines to log since the last call.
    pub fn take_lines(&mut self) -> Vec<String> {
        std::mem::take(&mut self.lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_turns_it_on_and_time_turns_it_off() {
        let t0 = Instant::now();
        let mut s = Storm::new(100, Duration::from_secs(60));
        for i in 0..99 {
            assert!(s.allows(t0 + Duration::from_millis(i)));
        }
        assert!(s.state().is_none());
        assert!(
            s.allows(t0 + Duration::from_millis(100)),
            "the 100th still bans"
        );
        assert!(s.state().is_some());
        assert!(s.take_lines()[0].contains("storm guard on: 100 bans"));
        assert!(!s.allows(t0 + Duration::from_secs(1)));
        assert!(!s.allows(t0 + Duration::from_secs(30)));
        s.tick(t0 + Duration::from_secs(71));
        assert!(s.state().is_none());
        assert!(
            s.take_lines()[0].contains("storm guard off after 1m10s: 2 bans"),
            "held back count"
        );
        assert!(s.allows(t0 + Duration::from_secs(72)));
    }

    #[test]
    fn normal_traffic_raises_the_bar_and_zero_is_off() {
        let t0 = Instant::now();
        let mut s = Storm::new(0, Duration::from_secs(60));
        for i in 0..10_000 {
            assert!(s.allows(t0 + Duration::from_micros(i)));
        }
        assert!(s.state().is_none());
        // A host that always sees 50 a window needs 20 times that.
        let mut s = Storm::new(10, Duration::from_secs(60));
        s.normal = 50.0;
        for i in 0..1000 {
            assert!(s.allows(t0 + Duration::from_millis(i)));
        }
        assert!(s.state().is_none());
        assert!(s.allows(t0 + Duration::from_millis(1000)));
        assert!(s.state().is_some());
    }
}
