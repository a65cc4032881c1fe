//! kernel: the netlink protocols nftsentry speaks, and nothing else: netlink
//! framing, nf_tables transactions and dumps, NFLOG, the nftables event
//! group, routes (rtnetlink), and the address and route events
//! (rtnetlink_events).
//!
//! Knows nothing of scans, bans, the config or what our table is for.

pub mod netlink;
pub mod nflog;
pub mod nft;
pub mod nft_events;
pub mod rtnetlink;
pub mod rtnetlink_dump;
pub mod rtnetlink_events;
