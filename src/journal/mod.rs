//! journal: what is written down about bans: the state file that carries
//! them across restarts (`state`, `state_file`), what a ban is about to do
//! before it does it (`intents`), and PortSentry's history file
//! (`history`).
//!
//! Knows nothing of the kernel, of detection or of when to write.

pub mod events;
pub mod history;
pub mod intents;
pub mod state;
pub mod state_file;
