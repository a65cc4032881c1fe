//! commands: the command line's `list`, `block`, `unblock`, `flush`,
//! `status`, `metrics`, `why` and `reload`. Each goes to the running daemon through its
//! control socket (the daemon owns the table); with no daemon, the ban
//! commands run here, on a ledger built over the state file (load, act,
//! save, under the file's lock) and a netlink socket of our own: the same
//! `service::requests::ban_request` the daemon runs.

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::detect::IgnoreList;
use crate::error::{Error, Kind, Result};
use crate::journal::state_file;
use crate::kernel::nft::NftSocket;
use crate::respond::Ledger;
use crate::service::control::{self, Request};
use crate::service::requests::ban_request;
use crate::table::bans::KernelBans;

/// The most of an answer the command line reads from the control socket:
/// `REPLY_BASE`, and for `list` `REPLY_PER_BAN` more for each ban that the
/// full ban sets (five of `set_size` each: addresses, IPv6 prefixes and
/// other prefixes) and, with `[crowdsec]` pull, as many fleet decisions as
/// two more sets hold. A line of `list` is at most 96 bytes,
/// an object of `list --json` at most 170 (the longest IPv6 address, times
/// and 20-digit drop counters). That is 60 MiB at the default set_size
/// (65536), 15 GiB at the largest (16,777,216); an answer longer than that
/// is not the daemon's, and the command stops reading it.
pub const REPLY_BASE: u64 = 64 * 1024;
pub const REPLY_PER_BAN: u64 = 192;

/// `REPLY_BASE` and `REPLY_PER_BAN` for `req` under `cfg`.
pub fn reply_cap(cfg: &Config, req: &Request) -> usize {
    let bans = match req {
        Request::List { .. } => {
            let fleet = cfg.crowdsec.enabled && cfg.crowdsec.pull;
            let sets = crate::table::sets::OurSet::BLOCKED.len() + if fleet { 2 } else { 0 };
            sets as u64 * u64::from(cfg.set_size)
        }
        _ => 0,
    };
    usize::try_from(REPLY_BASE + bans * REPLY_PER_BAN).unwrap_or(usize::MAX)
}

/// A request's answer: printed, notes to standard error. A daemon's answer
/// comes without control characters but newline and tab
/// (`control::request`), so it cannot drive the terminal.
fn print_output(out: &str) {
    for line in out.lines() {
        if let Some(note) = line.strip_prefix("note: ") {
            eprintln!("nftsentry: note: {note}");
        } else {
            println!("{line}");
        }
    }
}

fn control_path(cfg: &Config) -> String {
    cfg.control_socket
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "no control socket (control_socket = \"\")".into())
}

/// Sends `req` to the running daemon. `None`: no daemon answers (or the
/// config has no control socket). `Some`: its answer, printed, as the
/// command's result.
fn ask_daemon(cfg: &Config, req: &Request) -> Result<Option<Result<()>>> {
    let Some(path) = &cfg.control_socket else {
        return Ok(None);
    };
    // A reload replaces a table that may hold many bans: give it time.
    let cap = reply_cap(cfg, req);
    let Some(reply) = control::request(path, req, Duration::from_secs(30), cap)? else {
        return Ok(None);
    };
    if reply.code == 0 {
        print_output(&reply.body);
        return Ok(Some(Ok(())));
    }
    let kind = match reply.code {
        64 => Kind::Usage,
        77 => Kind::Privilege,
        78 => Kind::Config,
        _ => Kind::Other,
    };
    let message = reply.body.trim_end();
    let message = message.strip_prefix("nftsentry: ").unwrap_or(message);
    Ok(Some(Err(Error::new(kind, message.to_string()))))
}

/// Runs `req`: by the daemon when one answers, else (ban requests) here.
pub fn run(cfg: &Config, req: &Request) -> Result<()> {
    if let Some(done) = ask_daemon(cfg, req)? {
        return done;
    }
    match req {
        Request::Status { .. } | Request::Metrics | Request::Why { .. } => {
            Err(Error::other(format!(
                "nftsentry is not running (no daemon answers on {})",
                control_path(cfg)
            )))
        }
        Request::Reload => Err(Error::other(format!(
            "nftsentry is not running (no daemon answers on {}): nothing to reload",
            control_path(cfg)
        ))),
        _ => {
            print_output(&run_here(cfg, req)?);
            Ok(())
        }
    }
}

/// A ban request with no daemon running: the ledger over the state file.
fn run_here(cfg: &Config, req: &Request) -> Result<String> {
    // The kernel refuses us anyway: say so before touching any file.
    let net_admin = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_NET_ADMIN,
    );
    if !net_admin.unwrap_or(false) {
        return Err(Error::new(
            Kind::Privilege,
            format!(
                "{}: CAP_NET_ADMIN is needed to change or read the table (run as root or grant the capability)",
                req.line()
            ),
        ));
    }
    // A daemon without a control socket owns the table all the same: the
    // table has one writer.
    if let Some(pid) = crate::table::claim::holder(&cfg.table) {
        return Err(Error::other(format!(
            "nftsentry (pid {pid}) runs for table inet {} without a control socket it answers on ({}): it is the table's one writer; set control_socket and reload, or stop it first",
            cfg.table,
            control_path(cfg)
        )));
    }
    let mut nft = NftSocket::open()?;
    let mut sets = KernelBans {
        nft: &mut nft,
        table: &cfg.table,
        prefix6: cfg.ban_prefix6,
    };
    let mut ledger = Ledger::new(cfg, false);
    let _lock = match ledger.state_file() {
        Some(p) => Some(state_file::lock(&p)?),
        None => None,
    };
    let now = Instant::now();
    ledger.load(now)?;
    let ignored = match req {
        Request::Block { .. } => IgnoreList::new(crate::host::ignores::collect(cfg)?),
        _ => IgnoreList::default(),
    };
    let out = ban_request(req, &mut ledger, &mut sets, &|a| ignored.overlaps(a), now)?;
    if !matches!(req, Request::List { .. }) {
        ledger.save()?;
    }
    Ok(out)
}
