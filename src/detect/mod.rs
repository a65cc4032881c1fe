//! Detection: what a probe is called (PortSentry 1.2's scan names and alert
//! lines), whether its source is ignored, and whether this probe is the one
//! that acts (per-source counting against `scan_trigger`, bounded memory).
//!
//! Pure code: knows nothing of sockets, nftables, files, clocks (callers pass
//! `Instant`s) or how a ban is carried out.

mod classify;
mod ignore;
pub mod packet;
mod tracker;

pub use classify::{ScanType, alert_line, already_blocked_line, classify, ip_options_line};
pub use ignore::IgnoreList;
pub use tracker::{Outcome, Tracker};
