//! service: `nftsentry run`, the daemon. Its start and stop (`run`), its
//! one poll(2) loop and what a probe passes through in it (`event_loop`),
//! the control socket (`control`) and what each request does (`requests`),
//! reloads (`reload`), the ignore list following the host's addresses,
//! gateways and resolvers (`neighbours`), `status` (`status`), the lines that name hosts
//! (`names`, with reverse DNS in `resolve`), connect-mode sockets
//! (`connect`), sd_notify (`systemd`) and the privilege drop
//! (`privileges`), the event loop's side of `[crowdsec]` (`fleet`).
//!
//! Knows nothing of packet formats, netlink encodings or the state file's
//! format: those are the layers below.

pub mod connect;
pub mod control;
pub mod event_loop;
pub mod fleet;
pub mod metrics;
pub mod names;
pub mod neighbours;
pub mod privileges;
pub mod reload;
pub mod requests;
pub mod resolve;
pub mod run;
pub mod status;
pub mod systemd;
pub mod why;

pub use run::{build_ruleset, handshake_warnings, run};
