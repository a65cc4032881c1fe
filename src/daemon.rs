//! daemon: `nftsentry run`. Installs the table in one transaction, then runs
//! one poll(2) loop over signals (signalfd) and the NFLOG socket until
//! SIGTERM/SIGINT, and removes the table on the way out unless configured to
//! keep it.
//!
//! Knows nothing of packet formats or netlink encodings.

use std::os::fd::AsFd;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::logging;
use crate::nft::NftSocket;
use crate::ruleset::Ruleset;

/// The ignore list and ruleset for `cfg` on this host right now.
pub fn build_ruleset(cfg: &Config) -> Result<(Ruleset, Vec<crate::cidr::Cidr>)> {
    let ignores = crate::ignores::collect(cfg)?;
    Ok((Ruleset::from_config(cfg, &ignores), ignores))
}

pub fn run(cfg: Config) -> Result<()> {
    let (ruleset, ignores) = build_ruleset(&cfg)?;

    // Signals are blocked and read from a descriptor, so the loop sees them
    // in order with everything else and nothing runs in a handler.
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(s);
    }
    mask.thread_block().map_err(|e| Error::other(format!("blocking signals: {e}")))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| Error::other(format!("signalfd: {e}")))?;

    let mut nft = NftSocket::open()?;
    nft.commit(&ruleset.install_batch())?;
    logging::notice(&format!(
        "adminalert: nftsentry {} started: table inet {} installed ({} ignored networks, {} TCP and {} UDP ports watched, NFLOG group {})",
        env!("CARGO_PKG_VERSION"),
        cfg.table,
        ignores.len(),
        count_ports(&ruleset.watch_tcp),
        count_ports(&ruleset.watch_udp),
        cfg.nflog_group
    ));

    let result = event_loop(&signals);

    if cfg.keep_table_on_exit {
        logging::notice(&format!("adminalert: nftsentry stopping; table inet {} kept with its bans", cfg.table));
    } else {
        match nft.delete_table(&cfg.table) {
            Ok(_) => logging::notice(&format!("adminalert: nftsentry stopping; table inet {} removed", cfg.table)),
            Err(e) => logging::error(&format!("adminalert: ERROR: removing table inet {}: {e}", cfg.table)),
        }
    }
    result
}

fn count_ports(r: &[(u16, u16)]) -> u32 {
    r.iter().map(|&(s, e)| (e - s) as u32 + 1).sum()
}

fn event_loop(signals: &SignalFd) -> Result<()> {
    loop {
        let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::other(format!("poll: {e}"))),
        }
        while let Ok(Some(info)) = signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => return Ok(()),
                Ok(Signal::SIGHUP) => {
                    logging::warning("adminalert: SIGHUP received; reload is not supported yet, keeping the running table");
                }
                _ => {}
            }
        }
    }
}
