//! detect: what a probe is called (PortSentry 1.2's scan names and alert
//! lines), whether its source is ignored, whether this probe is the one
//! that acts (per-source counting against `scan_trigger`, bounded memory),
//! and, put together, the verdict on a probe (`pipeline`).
//!
//! Pure code: no sockets, no files, no clock of its own (callers pass
//! `Instant`s), nothing of how a ban is carried out. It asks the ledger
//! whether a source is banned through `Bans`.

mod classify;
mod evidence;
mod ignore;
pub mod packet;
mod pipeline;
mod storm;
pub mod story;
mod tracker;

pub use classify::{ScanType, alert_line, already_blocked_line, classify, ip_options_line};
pub use evidence::{Evidence, Strength};
pub use ignore::{IgnoreList, Ignored, networks, why};
pub use pipeline::{
    Act, BanInForce, Bans, Counts, Detector, HostLine, HostLines, IN_FLIGHT, Verdict, mode_name,
    mode_of_key,
};
pub use storm::StormState;
pub use tracker::{Outcome, Progress, Tracker};
