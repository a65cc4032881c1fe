//! table: our own nftables table, `table inet nftsentry`: what it holds for
//! a config (`ruleset`) and its ban sets seen as addresses (`bans`).
//!
//! Knows nothing of packets, detection or why an address is banned.

pub mod bans;
pub mod ruleset;
pub mod sets;
