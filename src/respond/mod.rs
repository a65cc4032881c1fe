//! respond: what a detection leads to. The ledger (`ledger`) owns ban
//! state: who is banned, since when, until when, how often before, and
//! which actions are in force; the actions (`actions`) carry bans out in
//! the world: the kernel set, the route, hosts.deny, commands.
//!
//! Knows nothing of packets, of how a probe was detected or of the control
//! socket.

pub mod actions;
pub mod ledger;

pub use ledger::{BanResult, HistoryDue, Ledger, Restored, wall_ms};
