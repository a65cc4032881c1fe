//! A victim namespace running nftsentry with a config of the test's, an
//! attacker namespace beside it, and what tests ask of them: nmap scans,
//! the blocked sets, the daemon's log.
use super::*;
use std::time::Duration;

pub const TCP_PORTS: &str = "1,11,79";
pub const UDP_PORTS: &str = "1,7,9";

/// A victim running nftsentry with small watched port lists, and an attacker.
pub struct Scene {
    pub pair: Pair,
    /// Holds the config and log until the scene ends.
    _dir: TempDir,
    pub log: std::path::PathBuf,
    /// The config file, for tests that change it and reload.
    pub cfg: std::path::PathBuf,
    /// The daemon's PID.
    pub pid: u32,
}

impl Scene {
    pub fn new(tag: &str, extra: &str) -> Scene {
        Scene::build(tag, extra, "# nothing\n", |_| {})
    }

    /// A scene whose config adds `extra` to the top level, with `ignore` as
    /// its ignore file, and `prepare` run on the pair before the daemon starts.
    pub fn build(tag: &str, extra: &str, ignore: &str, prepare: impl FnOnce(&mut Pair)) -> Scene {
        let tables = format!("[tcp]\nports = \"{TCP_PORTS}\"\n[udp]\nports = \"{UDP_PORTS}\"\n");
        Scene::with_tables(tag, extra, &tables, ignore, prepare)
    }

    /// A scene whose config is `extra` (top-level keys) then `tables`
    /// (the `[tcp]` and `[udp]` tables, written out in full).
    pub fn with_tables(
        tag: &str,
        extra: &str,
        tables: &str,
        ignore: &str,
        prepare: impl FnOnce(&mut Pair),
    ) -> Scene {
        let mut pair = Pair::new(tag);
        let dir = TempDir::new(tag);
        let ignore = dir.file("ignore", ignore);
        let cfg = dir.file(
            "nftsentry.toml",
            &format!(
                "ignore_file = \"{}\"\n{}{extra}\n{tables}",
                ignore.display(),
                private_files(&dir.path)
            ),
        );
        prepare(&mut pair);
        let log = dir.path.join("log");
        let pid = start_daemon(&mut pair.victim, &cfg, &log);
        Scene {
            pair,
            _dir: dir,
            log,
            cfg,
            pid,
        }
    }

    /// `nftsentry -c CFG ARGS` in the victim namespace.
    pub fn cli(&self, args: &[&str]) -> Output {
        nftsentry(&self.pair.victim, &self.cfg, args)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// nmap from the attacker; returns its normal output.
    pub fn nmap(&self, scan: &str, v6: bool, ports: &str) -> String {
        let target = if v6 { VICTIM6 } else { VICTIM4 };
        let mut c = self.pair.attacker.cmd("nmap");
        c.args([scan, "-T5", "--max-retries", "0", "-Pn", "-n", "-p", ports]);
        if v6 {
            c.arg("-6");
        }
        c.arg(target);
        String::from_utf8(run_ok(&mut c).stdout).unwrap()
    }

    /// Is `addr` (an address or a prefix) covered by a ban of the kernel's
    /// sets: its own, or its prefix's (`ban_prefix6` = 64)?
    pub fn banned(&self, addr: &str) -> bool {
        // A missing table (one being put back) holds no ban.
        ban_covers(&self.pair.victim, addr)
    }

    /// Packets the ban rules of that family (addresses and prefixes) have
    /// dropped.
    pub fn dropped(&self, v6: bool) -> u64 {
        let chain = self
            .pair
            .victim
            .nft(&["list", "chain", "inet", "nftsentry", "input"]);
        let start = if v6 { "ip6 saddr " } else { "ip saddr " };
        let counts: Vec<u64> = chain
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with(start) && l.ends_with(" drop"))
            .filter_map(|l| {
                let n = l.split("counter packets ").nth(1)?;
                n.split_whitespace().next()?.parse().ok()
            })
            .collect();
        assert!(!counts.is_empty(), "no blocked rule");
        counts.iter().sum()
    }

    pub fn wait_banned(&self, addr: &str) -> bool {
        wait_until(Duration::from_secs(5), || self.banned(addr))
    }

    /// Waits long enough for any queued NFLOG event to have been handled.
    pub fn settle(&self) {
        std::thread::sleep(Duration::from_millis(500));
    }
}
