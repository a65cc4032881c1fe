//! nftsentry: PortSentry's tripwire idea on nftables.
//!
//! The folders follow the data flow (ARCHITECTURE.md has the map): the
//! kernel-facing layer, our table, this host's neighbourhood, detection,
//! the response to a detection, the journal, the service that runs it all,
//! and the command line. Each module says in its header what it knows
//! nothing of.

// First: its macros (log_notice! ...) are then in scope everywhere.
#[macro_use]
pub mod logging;

pub mod cidr;
pub mod cli;
pub mod config;
pub mod detect;
pub mod error;
pub mod files;
pub mod fleet;
pub mod host;
pub mod journal;
pub mod kernel;
pub mod respond;
pub mod service;
pub mod strength;
pub mod table;
