//! reload: SIGHUP and `nftsentry reload`. Re-reads the config and the ignore
//! file and replaces the table in one transaction, every ban carried over
//! with the time it has left. Anything wrong (a bad config, a kernel
//! refusal) leaves the running table and settings exactly as they were.

use std::path::Path;
use std::time::Instant;

use netlink_packet_netfilter::nftables::TableFlags;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::kernel::nft_events::NftEvents;
use crate::service::event_loop::Daemon;
use crate::service::privileges;
use crate::service::run::{bind_connect, build_ruleset, count_ports};
use crate::table::bans;
use crate::table::install::install_carrying;

impl Daemon {
    /// A reload, with RELOADING=1 and READY=1 around it and its outcome
    /// logged.
    pub fn reload(&mut self) -> Result<String> {
        self.notifier.reloading();
        let result = self.try_reload();
        // The outcome is in the log before the manager hears that the
        // reload is over.
        match &result {
            Ok(msg) => log_notice!("adminalert: {}", msg.trim_end()),
            Err(e) => log_error!(
                "adminalert: ERROR: reload refused, the running table and settings are unchanged: {e}"
            ),
        }
        self.ready();
        result
    }

    /// The config a reload reads: the same file, or the built-in default.
    fn next_config(&self) -> Result<Config> {
        let old = &self.core.cfg;
        let new = if old.source == crate::config::BUILTIN_SOURCE {
            Config::default()
        } else {
            Config::load(Some(Path::new(&old.source)))?
        };
        for (key, same) in [
            ("table", new.table == old.table),
            ("state_file", new.state_file == old.state_file),
            ("nflog_group", new.nflog_group == old.nflog_group),
            ("control_socket", new.control_socket == old.control_socket),
            ("user", new.user == old.user),
            ("crowdsec", new.crowdsec == old.crowdsec),
        ] {
            if !same {
                return Err(Error::config(format!(
                    "{}: key `{key}` changed: that takes a restart (systemctl restart nftsentry)",
                    new.source
                )));
            }
        }
        // Files an action writes must be writable with what we kept.
        use privileges::Write;
        if new.history_file != old.history_file {
            if let Some(p) = &new.history_file {
                privileges::check_writable("history_file", p, Write::Append)?;
            }
        }
        if new.hosts_deny != old.hosts_deny {
            if let Some(p) = &new.hosts_deny {
                privileges::check_writable("hosts_deny", p, Write::Replace)?;
            }
        }
        Ok(new)
    }

    /// Long: a reload is one transaction prepared in steps (config, ignore
    /// sets, table with every ban, then the parts that follow it) whose
    /// order is what keeps the old table when a step fails.
    fn try_reload(&mut self) -> Result<String> {
        let new = self.next_config()?;
        let (mut ruleset, parts) = build_ruleset(&new)?;
        let ignores = parts.all();
        // Keep the flags the kernel took at start, unless owner was turned
        // off (turning it on takes a restart: the kernel's support is known
        // only from the start's install).
        ruleset.flags = if new.table_owner {
            self.ruleset.flags
        } else {
            TableFlags::empty()
        };
        // The new table's live sets are empty: in the other period every
        // connection feeds them again at its next packet.
        ruleset.live_phase = !self.ruleset.live_phase;
        let core = &mut self.core;
        let listed = bans::list(&mut core.nft, &new.table, core.cfg.ban_prefix6)?;
        // What each ban dropped: its counter goes on in the new table.
        let carried: bans::Dropped = listed
            .iter()
            .filter_map(|b| Some((b.addr, b.dropped?)))
            .collect();
        let kernel: Vec<_> = listed
            .into_iter()
            .filter_map(|b| {
                let left = b.expires_in?;
                Some((b.addr, b.timeout.unwrap_or(left), left))
            })
            .collect();
        // The new table's drop counters start from zero: keep the old ones'.
        let dropped = bans::dropped_by_rules(&mut core.nft, &core.cfg.table).unwrap_or_default();
        install_carrying(&mut core.nft, &mut ruleset, &kernel, &carried)?;
        for (base, d) in self.dropped_before.iter_mut().zip(dropped) {
            base.0 += d.0;
            base.1 += d.1;
        }
        if new.events_file != core.cfg.events_file {
            log_warning!(
                "adminalert: WARNING: events_file changed; events go to the old file until a restart"
            );
        }
        if new.metrics_listen != core.cfg.metrics_listen {
            log_warning!(
                "adminalert: WARNING: metrics_listen changed; the endpoint keeps its address until a restart"
            );
        }
        // The table is in: apply the rest, which cannot fail.
        let connect_changed = new.tcp.connect_ports() != core.cfg.tcp.connect_ports()
            || new.udp.connect_ports() != core.cfg.udp.connect_ports();
        if connect_changed {
            self.io.connect = Default::default();
            self.io.connect = bind_connect(&new);
        }
        core.names.reconfigure(&core.cfg, &new);
        let networks = crate::detect::networks(&ignores).len();
        core.detector.reconfigure(&new, ignores);
        let mut sets = bans::KernelBans {
            nft: &mut core.nft,
            table: &new.table,
            prefix6: new.ban_prefix6,
        };
        core.ledger.reconfigure(&new, &mut sets, Instant::now());
        let watch_needed = !ruleset.flags.contains(TableFlags::Owner);
        if watch_needed && self.io.nft_events.is_none() {
            self.io.nft_events = Some(NftEvents::open()?);
        } else if !watch_needed {
            self.io.nft_events = None;
        }
        let msg = format!(
            "configuration reloaded from {}: table inet {} replaced with {} bans carried over (TCP mode {}, UDP mode {}, {} ignored networks, {} TCP and {} UDP ports watched)\n",
            new.source,
            new.table,
            kernel.len(),
            new.tcp.mode,
            new.udp.mode,
            networks,
            count_ports(&ruleset.watch_tcp),
            count_ports(&ruleset.watch_udp)
        );
        core.cfg = new;
        self.ruleset = ruleset;
        // The new table has empty fleet sets: the decisions held go back.
        self.fleet_rewrite();
        self.reloads += 1;
        self.follow_neighbours(parts);
        Ok(msg)
    }
}
