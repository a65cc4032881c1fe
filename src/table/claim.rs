//! claim: one nftsentry per table and network namespace. Before anything
//! changes, the daemon claims its table's name: refused while another
//! nftsentry holds it, and refused when a table of that name exists that
//! nftsentry did not create (it lacks `ruleset::TABLE_COMMENT`).
//!
//! Knows nothing of what the table holds.

use crate::error::{Error, Result};
use crate::kernel::nft::NftSocket;
use crate::table::ruleset::TABLE_COMMENT;

/// Held while the daemon runs: the name `nftsentry/table/inet/TABLE` in the
/// abstract unix socket namespace, which the kernel keeps per network
/// namespace (as it keeps nftables tables) and frees when the process ends,
/// however it ends. A second daemon for the same table finds the name taken.
pub struct TableClaim {
    _socket: std::os::fd::OwnedFd,
    /// A table nftsentry left behind is there; `run` replaces it.
    pub leftover: bool,
}

fn claim_name(table: &str) -> String {
    format!("nftsentry/table/inet/{table}")
}

/// Refuses to go on when another nftsentry runs with `table` in this network
/// namespace, or when a table of that name exists that nftsentry did not
/// create (it lacks `ruleset::TABLE_COMMENT`): replacing either would take
/// another daemon's bans, or someone's ruleset, away. A table nftsentry left
/// (killed, or `keep_table_on_exit`) is fine: `run` replaces it.
pub fn claim_table(nft: &mut NftSocket, table: &str) -> Result<TableClaim> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, bind, listen, socket};
    let name = claim_name(table);
    let addr = UnixAddr::new_abstract(name.as_bytes())
        .map_err(|e| Error::other(format!("socket name @{name}: {e}")))?;
    let sock = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| Error::other(format!("unix socket: {e}")))?;
    match bind(std::os::fd::AsRawFd::as_raw_fd(&sock), &addr) {
        Ok(()) => {}
        Err(nix::errno::Errno::EADDRINUSE) => {
            let who = match claim_holder(&addr) {
                Some(pid) => format!("pid {pid}"),
                None => "its pid could not be read".to_string(),
            };
            return Err(Error::other(format!(
                "table inet {table} is in use by another nftsentry in this network namespace ({who}); \
                 stop it first, or give this one another `table` (and `nflog_group`)"
            )));
        }
        Err(e) => return Err(Error::other(format!("binding @{name}: {e}"))),
    }
    // Lets `claim_holder` of a refused start read our pid.
    listen(
        &sock,
        nix::sys::socket::Backlog::new(8).unwrap_or(nix::sys::socket::Backlog::MAXCONN),
    )
    .map_err(|e| Error::other(format!("listen on @{name}: {e}")))?;
    if let Some(info) = nft.table_info(table)? {
        if info.comment.as_deref() != Some(TABLE_COMMENT) {
            let found = match info.comment {
                Some(c) => format!("its comment is {c:?}"),
                None => "it has no comment".to_string(),
            };
            return Err(Error::other(format!(
                "table inet {table} exists and was not created by nftsentry ({found}, not \"{}\"); \
                 it is left as it is. Set `table` to another name, or, if it is yours to drop, \
                 remove it with `nft delete table inet {table}`",
                TABLE_COMMENT
            )));
        }
        return Ok(TableClaim {
            _socket: sock,
            leftover: true,
        });
    }
    Ok(TableClaim {
        _socket: sock,
        leftover: false,
    })
}

/// The pid of the nftsentry that holds the claim on `table` in this network
/// namespace, if one runs (`None` also when its pid cannot be read).
pub fn holder(table: &str) -> Option<i32> {
    let name = claim_name(table);
    let addr = nix::sys::socket::UnixAddr::new_abstract(name.as_bytes()).ok()?;
    claim_holder(&addr)
}

/// The pid of the process listening on `addr`, from its credentials.
fn claim_holder(addr: &nix::sys::socket::UnixAddr) -> Option<i32> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, connect, getsockopt, socket, sockopt,
    };
    let s = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .ok()?;
    connect(std::os::fd::AsRawFd::as_raw_fd(&s), addr).ok()?;
    getsockopt(&s, sockopt::PeerCredentials)
        .ok()
        .map(|c| c.pid())
}
