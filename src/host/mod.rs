//! host: this machine's neighbourhood, which nftsentry never bans: its
//! addresses, gateways and resolvers (`localnet`), and the ignore list built
//! from them and the ignore file (`ignores`).
//!
//! Knows nothing of detection, bans or nftables.

pub mod ignores;
pub mod localnet;
