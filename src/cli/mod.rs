//! cli: what the command line does besides running the daemon: the
//! requests to the daemon and their fallback without one (`commands`),
//! `check` (`check`) and the PortSentry importer (`import`).

pub mod check;
pub mod commands;
pub mod import;
