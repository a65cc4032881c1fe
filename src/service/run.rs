//! run: `nftsentry run` from start to stop. Claims the table, opens and
//! binds every socket, restores the bans and installs the table with them in
//! one transaction, drops privileges, says READY, runs the loop until
//! SIGTERM/SIGINT, and removes the table on the way out unless configured to
//! keep it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use netlink_packet_netfilter::nftables::TableFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::config::{Config, Proto};
use crate::detect::Detector;
use crate::error::{Error, Result};
use crate::kernel::nflog::{NflogConfig, NflogSocket, NflogStats};
use crate::kernel::nft::NftSocket;
use crate::kernel::nft_events::NftEvents;
use crate::respond::Ledger;
use crate::service::connect::ConnectSockets;
use crate::service::control::ControlServer;
use crate::service::event_loop::{Core, Daemon, Io};
use crate::service::fleet::FleetSide;
use crate::service::names::Names;
use crate::service::neighbours::IgnoreParts;
use crate::service::privileges;
use crate::service::systemd::Notifier;
use crate::table::bans::{self, KernelBans};
use crate::table::claim::claim_table;
use crate::table::install::install_keeping_what_fits;
use crate::table::ruleset::Ruleset;

/// Bans past which a restore may take longer than a service manager's
/// start timeout (hosts.deny and a route per ban), and the time it is asked
/// for.
const LONG_RESTORE: usize = 10_000;
const RESTORE_TIME: std::time::Duration = std::time::Duration::from_secs(300);

/// The ignore list (with reasons, in its two parts) and ruleset for `cfg`
/// on this host right now.
pub fn build_ruleset(cfg: &Config) -> Result<(Ruleset, IgnoreParts)> {
    let parts = IgnoreParts::gather(cfg)?;
    Ok((
        Ruleset::from_config(cfg, &crate::detect::networks(&parts.all())),
        parts,
    ))
}

/// Signals are blocked and read from a descriptor, so the loop sees them in
/// order with everything else and nothing runs in a handler. SIGCHLD:
/// external commands ended; the loop reaps them.
fn signal_fd() -> Result<SignalFd> {
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGCHLD,
    ] {
        mask.add(s);
    }
    mask.thread_block()
        .map_err(|e| Error::other(format!("blocking signals: {e}")))?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| Error::other(format!("signalfd: {e}")))
}

/// The bans of a table an earlier nftsentry left (killed, or
/// `keep_table_on_exit`), listed before it is replaced.
/// Its prefix set is read as holding prefixes of `prefix6` (this run's
/// `ban_prefix6`: the last run's, unless the config changed between).
fn survivors(nft: &mut NftSocket, table: &str, prefix6: u8) -> Option<Vec<bans::Ban>> {
    log_notice!("adminalert: table inet {table} was left by an earlier nftsentry; replacing it");
    match bans::list(nft, table, prefix6) {
        Ok(list) => Some(list),
        Err(e) => {
            log_warning!(
                "adminalert: the bans of the table inet {table} left in the kernel cannot be read ({e}); they are not carried over"
            );
            None
        }
    }
}

/// Installs the table with its bans in one transaction: those of the state
/// file, and those of a table that survived (we were killed, or it was
/// kept), so no ban has a gap. Returns the watch on nftables events a table
/// without the owner flag needs.
fn install_with_bans(
    cfg: &Config,
    nft: &mut NftSocket,
    ruleset: &mut Ruleset,
    ledger: &mut Ledger,
    leftover: bool,
) -> Result<Option<NftEvents>> {
    // Time left is counted from before the old table is listed; what the
    // listing and the restore took is taken off again just before the
    // install, so a restart gives no ban extra time.
    let start = Instant::now();
    let survived = if leftover {
        survivors(nft, &cfg.table, cfg.ban_prefix6)
    } else {
        None
    };
    // What the bans of that table dropped: their counters go on.
    let carried: crate::table::bans::Dropped = survived
        .iter()
        .flatten()
        .filter_map(|b| Some((b.addr, b.dropped?)))
        .collect();
    let restored = ledger.restore(survived, start)?;
    let spent = start.elapsed();
    let restored: Vec<_> = restored
        .iter()
        .map(|r| {
            let left = r.remaining.saturating_sub(spent);
            (r.addr, r.timeout, left.max(Duration::from_millis(1)))
        })
        .collect();
    let refused = install_keeping_what_fits(nft, ruleset, &restored, &carried)?;
    ledger.not_restored(&refused, Instant::now());
    if cfg.keep_table_on_exit
        && ruleset.flags.contains(TableFlags::Owner)
        && !ruleset.flags.contains(TableFlags::Persisent)
    {
        log_warning!(
            "adminalert: WARNING: keep_table_on_exit is set, but an owned table without the persist flag goes with the daemon; set table_owner = false to keep it"
        );
    }
    // Without the owner flag anyone may delete the table: watch for it.
    let nft_events = if ruleset.flags.contains(TableFlags::Owner) {
        None
    } else {
        Some(NftEvents::open()?)
    };
    Ok(nft_events)
}

/// `nftsentry run`: each step is needed by a later one; the comments say
/// why the order is what it is. Long on purpose: split, the order (claim
/// before the switch of user, sockets before the table, threads after the
/// drop) would no longer be read in one place.
pub fn run(cfg: Config) -> Result<()> {
    // Both first: the plan looks the `user` up (a typo fails before anything
    // is touched), the notifier takes NOTIFY_SOCKET out of the environment
    // (sound only while there is one thread).
    let plan = privileges::Plan::for_config(&cfg)?;
    let mut notifier = Notifier::from_env(Instant::now());
    let (mut ruleset, parts) = build_ruleset(&cfg)?;
    let ignores = parts.all();
    // Before anything changes: the table's name must be free, or a table
    // nftsentry left behind, and no other nftsentry may be using it. Before
    // the switch to `user`: root's claim file is out of that user's reach,
    // and the lock stays with the process.
    let mut nft = NftSocket::open()?;
    let claim = claim_table(&mut nft, &cfg.table)?;
    // The fleet's secrets while we are still root: files only root (or
    // the service's user) may read.
    let secrets =
        crate::fleet::Secrets::load(&cfg.crowdsec, plan.user.as_ref().map(|u| u.uid.as_raw()))?;
    // Become `user` now, capabilities kept for the setup, so that the files
    // made while setting up (state file and lock, history) are its own.
    privileges::become_user(&plan)?;
    let signals = signal_fd()?;
    // NFLOG first: if the group is taken we stop before touching nftables.
    let nflog = NflogSocket::open(&NflogConfig {
        group: cfg.nflog_group,
        ..NflogConfig::default()
    })?;
    // The control socket too: a second instance on the same socket stops
    // here, before it replaces the first one's table.
    let control = match &cfg.control_socket {
        Some(path) => Some(ControlServer::bind(path)?),
        None => None,
    };
    // The metrics endpoint too: a taken address stops the start here. Its
    // thread starts after the privilege drop.
    let metrics = match cfg.metrics_listen {
        Some(addr) => Some(crate::service::metrics::MetricsServer::bind(addr)?),
        None => None,
    };
    // Connect-mode sockets before the table: in advanced mode their ports
    // are tripwires until a socket holds them.
    let connect = bind_connect(&cfg);
    for w in handshake_warnings(&cfg) {
        log_warning!("adminalert: WARNING: {w}");
    }
    let mut ledger = Ledger::new(&cfg, true);
    let nft_events = install_with_bans(&cfg, &mut nft, &mut ruleset, &mut ledger, claim.leftover)?;
    log_notice!(
        "adminalert: nftsentry {} started: table inet {} installed (TCP mode {}, UDP mode {}, {} ignored networks, {} TCP and {} UDP ports watched, NFLOG group {})",
        env!("CARGO_PKG_VERSION"),
        cfg.table,
        cfg.tcp.mode,
        cfg.udp.mode,
        crate::detect::networks(&ignores).len(),
        count_ports(&ruleset.watch_tcp),
        count_ports(&ruleset.watch_udp),
        cfg.nflog_group
    );
    // Set up: sockets open and bound, table in. Keep only what the loop
    // needs; a failure leaves no table behind (unless told to keep it).
    if let Err(e) = drop_privileges(&plan, &cfg) {
        if !cfg.keep_table_on_exit {
            let _ = nft.delete_table(&cfg.table);
        }
        return Err(e);
    }
    // Routes and hosts.deny lines of restored bans (put back, or undone for
    // bans that ended meanwhile), before we say we run: after the drop, so
    // the files are written with the rights every ban has. A long restore
    // tells the service manager it is still starting.
    if ledger.active_bans() > LONG_RESTORE {
        notifier.extend_timeout(RESTORE_TIME);
    }
    ledger.after_install(
        &mut KernelBans {
            nft: &mut nft,
            table: &cfg.table,
            prefix6: cfg.ban_prefix6,
        },
        Instant::now(),
    );
    // Threads only now: capabilities were dropped for this one thread, and
    // a new thread inherits the dropped sets.
    ledger.start_writer();
    let fleet = if cfg.crowdsec.enabled {
        Some(FleetSide::start(&cfg, &secrets)?)
    } else {
        None
    };
    drop(secrets);
    let events = match &cfg.events_file {
        Some(p) => Some(
            crate::journal::events::EventsFile::start(p.clone())
                .map_err(|e| Error::other(format!("events_file: cannot start its thread: {e}")))?,
        ),
        None => None,
    };
    let names = Names::new(&cfg)?;
    let detector = Detector::new(&cfg, ignores);
    let mut core = Core::new(cfg, nft, detector, ledger, names);
    core.fleet = fleet;
    let mut daemon = Daemon::new(
        Io {
            signals,
            nflog,
            connect,
            control,
            nft_events,
        },
        core,
        ruleset,
        notifier,
    );
    daemon.core.events = events;
    daemon.follow_neighbours(parts);
    if let Some(server) = metrics {
        let addr = server.addr();
        let first = daemon.figures().exposition();
        daemon.metrics = Some(server.start(first)?);
        log_notice!("adminalert: metrics served on http://{addr}/metrics");
    }
    // The table is in and we are hardened: systemd may order other units
    // after us now.
    daemon.ready();
    let result = daemon.event_loop();
    daemon.stop();
    result
}

/// The counters since start, logged when the daemon stops. Lost events are
/// the NFLOG sequence numbers that never arrived: the kernel numbers every
/// packet it logs for the group, so this is exact, overruns included.
pub fn statistics_line(nflog: &NflogStats, core: &Core) -> String {
    let by_scan = core.detector.counts.by_scan();
    let probes = if by_scan.is_empty() {
        "none".to_string()
    } else {
        by_scan
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let c = &core.detector.counts;
    format!(
        "adminalert: statistics since start: {} NFLOG packets received, {} lost (sequence gaps), \
         {} receive-buffer overruns, {} malformed; probes: {probes}; {} from ignored sources, \
         {} not probes, {} undecodable; {} bans, {} failed bans",
        nflog.packets,
        nflog.seq_gaps,
        nflog.overruns,
        nflog.malformed,
        c.ignored,
        c.not_probes,
        c.undecodable,
        core.bans,
        core.ban_errors
    )
}

/// Binds connect-mode sockets for `cfg` and logs what it could and could not.
pub fn bind_connect(cfg: &Config) -> ConnectSockets {
    let (connect, warnings) =
        ConnectSockets::bind(&cfg.tcp.connect_ports(), &cfg.udp.connect_ports());
    for w in &warnings {
        log_warning!("adminalert: WARNING: {w}");
    }
    for (proto, p) in [(Proto::Tcp, &cfg.tcp), (Proto::Udp, &cfg.udp)] {
        if p.connect_ports().is_empty() {
            continue;
        }
        let bound = connect.ports(proto);
        let name = proto.as_str().to_ascii_uppercase();
        if bound.is_empty() {
            log_error!(
                "adminalert: ERROR: could not listen on any {name} port: connect mode for {name} is not working"
            );
        } else {
            log_notice!("adminalert: connect mode listening on {name} ports {bound}");
        }
    }
    connect
}

/// Gives up privileges (privileges.rs) and logs what is kept; fails when
/// a file an action writes is out of reach now, and warns about files a
/// reload would read but can no longer.
fn drop_privileges(plan: &privileges::Plan, cfg: &Config) -> Result<()> {
    use privileges::Write;
    let dropped = privileges::drop_privileges(plan)?;
    log_notice!("adminalert: privileges dropped: {}", dropped.describe());
    let mut written = Vec::new();
    if let Some(p) = &cfg.state_file {
        written.push(("state_file", p.clone(), Write::Replace));
        written.push((
            "state_file lock",
            crate::journal::state_file::lock_path(p),
            Write::Append,
        ));
    }
    if let Some(p) = &cfg.history_file {
        written.push(("history_file", p.clone(), Write::Append));
    }
    if let Some(p) = &cfg.events_file {
        written.push(("events_file", p.clone(), Write::Append));
    }
    if let Some(p) = &cfg.hosts_deny {
        written.push(("hosts_deny", p.clone(), Write::Replace));
    }
    for (what, path, how) in written {
        privileges::check_writable(what, &path, how)?;
    }
    if !cfg.kill_route.is_empty() {
        log_warning!(
            "adminalert: WARNING: kill_route runs without capabilities (see PRIVILEGES in nftsentry(8)): a command that changes routes or firewall rules fails with \"Operation not permitted\"; `route` adds the route itself"
        );
    }
    let config = (cfg.source != crate::config::BUILTIN_SOURCE)
        .then(|| ("config file", PathBuf::from(&cfg.source)));
    let ignore = cfg.ignore_file.clone().map(|p| ("ignore_file", p));
    for (what, path) in config.into_iter().chain(ignore) {
        if let Err(e) = privileges::check_readable(what, &path) {
            log_warning!("adminalert: WARNING: {e}");
        }
    }
    Ok(())
}

/// What `check` and start-up say about `ban_requires_handshake`.
pub fn handshake_warnings(cfg: &Config) -> Vec<String> {
    if cfg.ban_requires_handshake && !cfg.tcp.mode.connect {
        vec!["ban_requires_handshake is set but [tcp] has no connect mode: no source will ever be banned".to_string()]
    } else {
        Vec::new()
    }
}

pub fn count_ports(r: &[(u16, u16)]) -> u32 {
    r.iter().map(|&(s, e)| (e - s) as u32 + 1).sum()
}
