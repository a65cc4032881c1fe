//! monitor: the nftables event group (NFNLGRP_NFTABLES), as `nft monitor`
//! reads it. Used when the table has no `owner` flag (table_owner = false,
//! or a kernel without it): someone may then delete or flush our table or
//! its sets, and the daemon must notice within a second and put it back.
//!
//! It only says "something changed in nftables"; what changed is checked
//! against the kernel by the daemon, so a lost or unparsed event cannot
//! hide a deletion.
//!
//! Knows nothing of our table's layout.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

use crate::error::{Error, Result};

/// NFNLGRP_NFTABLES in linux/netfilter/nfnetlink.h.
const NFNLGRP_NFTABLES: u32 = 7;

pub struct NftEvents {
    sock: Socket,
    buf: Vec<u8>,
}

impl NftEvents {
    pub fn open() -> Result<NftEvents> {
        let ctx =
            |e: std::io::Error, what: &str| Error::io(format!("nftables monitor: {what}"), &e);
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(|e| ctx(e, "netlink socket"))?;
        sock.bind(&SocketAddr::new(0, 0))
            .map_err(|e| ctx(e, "bind"))?;
        sock.add_membership(NFNLGRP_NFTABLES)
            .map_err(|e| ctx(e, "join the nftables event group"))?;
        sock.set_non_blocking(true)
            .map_err(|e| ctx(e, "non-blocking"))?;
        Ok(NftEvents {
            sock,
            buf: vec![0u8; 1 << 16],
        })
    }

    /// Reads every pending event; true when there was at least one (or the
    /// receive buffer overflowed, which also means "check everything").
    pub fn drain(&mut self) -> bool {
        let mut any = false;
        loop {
            match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(0) => return any,
                Ok(_) => any = true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return any,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // ENOBUFS: events were dropped; the caller checks anyway.
                Err(_) => return true,
            }
        }
    }
}

impl AsFd for NftEvents {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor lives as long as the socket we borrow.
        unsafe { BorrowedFd::borrow_raw(self.sock.as_raw_fd()) }
    }
}
