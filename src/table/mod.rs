//! table: our own nftables table, `table inet nftsentry`: what it holds for
//! a config (`ruleset`, `sets`), its ban sets seen as addresses (`bans`),
//! the claim on its name (`claim`), its installation in one transaction
//! (`install`), its ignore sets given new elements when the host's
//! neighbourhood changes (`ignores`) and the watch over it when anyone may
//! change it (`watch`).
//!
//! Knows nothing of packets, detection or why an address is banned.

pub mod bans;
pub mod claim;
pub mod ignores;
pub mod install;
pub mod ruleset;
pub mod sets;
pub mod watch;
