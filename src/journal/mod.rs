//! journal: what is written down about bans: the state file that carries
//! them across restarts (`state`) and PortSentry's history file
//! (`history`).
//!
//! Knows nothing of the kernel, of detection or of when to write.

pub mod history;
pub mod state;
pub mod state_file;
