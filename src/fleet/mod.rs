//! fleet: sharing bans with other servers through a CrowdSec Local API.
//! The protocol's bodies (`lapi`), the secrets of `[crowdsec]` (`secrets`),
//! the HTTP client (`client`), the thread that talks to the LAPI
//! (`worker`), and the decisions this host enforces with what the kernel's
//! sets must hold for them (`held`).
//!
//! Knows nothing of nftables or of the event loop: the loop sends bans to
//! the thread and puts what comes back into the table.

pub mod client;
pub mod held;
pub mod lapi;
pub mod secrets;
pub mod worker;

pub use held::{Held, HeldDecisions};
pub use lapi::BanReport;
pub use secrets::Secrets;
pub use worker::{Fleet, FleetStatus, FromFleet, ToFleet};

/// The alert queue's file: `crowdsec-queue` beside the state file.
pub fn queue_file(state_file: Option<&std::path::Path>) -> Option<std::path::PathBuf> {
    state_file.map(|p| crate::files::dir_of(p).join("crowdsec-queue"))
}
