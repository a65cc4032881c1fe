//! cli: what the command line does besides running the daemon: the
//! requests to the daemon and their fallback without one (`commands`),
//! `check` (`check`, which judges files as the installed systemd unit will
//! run the daemon: `unit_sandbox`) and the PortSentry importer (`import`).

pub mod check;
pub mod commands;
pub mod import;
pub mod unit_sandbox;
