//! nftsentry: PortSentry's tripwire idea on nftables.
//!
//! The map of the modules is in `../shared/design.md`; each module owns one
//! concern and says in its header what it knows nothing of.

pub mod actions;
pub mod bans;
pub mod cidr;
pub mod commands;
pub mod config;
pub mod connect;
pub mod control;
pub mod daemon;
pub mod detect;
pub mod error;
pub mod history;
pub mod ignores;
pub mod import;
pub mod listeners;
pub mod localnet;
pub mod logging;
pub mod monitor;
pub mod netlink;
pub mod nflog;
pub mod nft;
pub mod packet;
pub mod privileges;
pub mod resolve;
pub mod respond;
pub mod ruleset;
pub mod state;
pub mod status;
pub mod systemd;
pub mod unit_sandbox;
