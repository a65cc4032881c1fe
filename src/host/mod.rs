//! host: this machine's neighbourhood, which nftsentry never bans: its
//! addresses, gateways (`localnet`) and resolvers (`resolvers`), the ignore
//! list built from them and the ignore file (`ignores`), and the watch that
//! follows them after start (`watch`).
//!
//! Knows nothing of detection, bans or nftables.

pub mod ignores;
pub mod localnet;
pub mod resolvers;
pub mod watch;
