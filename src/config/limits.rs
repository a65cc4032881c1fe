//! The bounds of the config's values. Each says why it is where it is.
//!
//! Pure constants; the checks that use them are in `values` and `walk`.

use std::time::Duration;

/// nft accepts longer names; 64 keeps `nft list` output and our log lines
/// readable and leaves room for suffixes.
pub const TABLE_NAME_MAX: usize = 64;
/// nft's named priorities for the input hook run from raw (-300) to
/// security (50); an offset beyond ±300 is a typo, not a plan.
pub const CHAIN_PRIORITY_MIN: i32 = -300;
pub const CHAIN_PRIORITY_MAX: i32 = 300;
/// NF_LOG_PREFIXLEN is 128 bytes including the terminating NUL, and the
/// tripwires of live peers log with `LIVE_PEER_SUFFIX` after the prefix.
pub const LOG_PREFIX_MAX: usize = 127 - LIVE_PEER_SUFFIX.len();
/// What the tripwire rules for live peers (`protect_live_peers`) add to
/// `log_prefix`: the daemon tells their packets by it.
pub const LIVE_PEER_SUFFIX: &str = "live peer: ";
/// The conntrack mark bits `protect_live_peers` uses by default: high bits,
/// clear of the small marks that routing setups (wg-quick's 51820, 0x1)
/// and kube-proxy (0x4000, 0x8000) use.
pub const LIVE_PEER_MARK_DEFAULT: u32 = 0x3000_0000;
pub const BAN_TIME_MIN: Duration = Duration::from_secs(1);
pub const BAN_TIME_MAX: Duration = Duration::from_secs(365 * 86_400);
pub const SCAN_WINDOW_MIN: Duration = Duration::from_secs(1);
pub const SCAN_WINDOW_MAX: Duration = Duration::from_secs(365 * 86_400);
/// 2^24: far more bans than any host sees; the bound turns a typo (an
/// extra zero or three) into an error instead of a huge kernel set.
pub const SET_SIZE_MAX: u32 = 16_777_216;
pub const MAX_TRACKED_SOURCES_MAX: usize = 10_000_000;
/// A storm threshold above a million weak bans in 10 s would never fire:
/// the set could not hold them.
pub const STORM_THRESHOLD_MAX: u32 = 1_000_000;
pub const STORM_HOLD_MIN: Duration = Duration::from_secs(10);
pub const STORM_HOLD_MAX: Duration = Duration::from_secs(86_400);
pub const COMMAND_TIMEOUT_MIN: Duration = Duration::from_secs(1);
pub const COMMAND_TIMEOUT_MAX: Duration = Duration::from_secs(86_400);

/// PortSentry's banner buffer was MAXBUF (1024) bytes; a longer banner is
/// almost certainly a pasted file, and NUL would end it early in PortSentry.
pub const PORT_BANNER_MAX: usize = 1024;

/// Longest user name useradd(8) accepts by default.
pub const USER_NAME_MAX: usize = 32;
