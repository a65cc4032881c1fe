//! cli: what the command line does besides running the daemon: the ban
//! commands with their output (`commands`) and the PortSentry importer
//! (`import`).

pub mod commands;
pub mod import;
