//! Issue 5 end to end: what a ban does besides the kernel set (route,
//! hosts.deny, external command), block modes, the history file (read by
//! fail2ban's own filter), the state file, restarts (clean, kill -9, table
//! lost) and repeat offenders. A victim namespace runs nftsentry, an
//! attacker namespace scans it with nmap (or nc, from many addresses).
mod common;
use common::*;

use nftsentry::kernel::nft::NftSocket;
use nftsentry::table::bans::{self, Ban};
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const TCP_PORTS: &str = "1,11,79";
const UDP_PORTS: &str = "1,7,9";
const STARTED: &str = "adminalert: nftsentry ";

/// A victim whose daemon the test starts, stops and kills, and an attacker.
struct Host {
    pair: Pair,
    dir: TempDir,
    cfg: PathBuf,
    log: PathBuf,
    pid: Option<u32>,
}

impl Host {
    /// `extra` goes at the top level of the config; unless it has its own
    /// [tcp] table, the small default port lists follow.
    fn new(tag: &str, extra: &str) -> Host {
        let pair = Pair::new(tag);
        let dir = TempDir::new(tag);
        let text = format!("ignore_file = \"\"\n{}{extra}\n", private_files(&dir.path));
        let text = if text.contains("[tcp]") {
            text
        } else {
            format!("{text}[tcp]\nports = \"{TCP_PORTS}\"\n[udp]\nports = \"{UDP_PORTS}\"\n")
        };
        let cfg = dir.file("nftsentry.toml", &text);
        let log = dir.path.join("log");
        Host {
            pair,
            dir,
            cfg,
            log,
            pid: None,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path.join(name)
    }

    /// Starts the daemon (its log appended to `log`) and waits until it has
    /// installed its table: one more start line than before.
    fn start(&mut self) {
        assert!(self.pid.is_none());
        assert_private_files(&self.cfg);
        let started = |log: String| {
            log.lines()
                .filter(|l| l.starts_with(STARTED) && l.contains(" started: "))
                .count()
        };
        let starts = started(self.log());
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut c = self.pair.victim.cmd(nftsentry_bin());
        c.arg("-c").arg(&self.cfg).arg("run").stderr(out);
        self.pid = Some(self.pair.victim.spawn(&mut c));
        assert!(
            wait_until(Duration::from_secs(10), || started(self.log()) > starts),
            "daemon did not start; log:\n{}",
            self.log()
        );
    }

    /// SIGTERM (or SIGKILL) and wait for the daemon to end.
    fn end(&mut self, sig: Signal) {
        let pid = self.pid.take().expect("running");
        signal(pid, sig);
        let status = self.pair.victim.take_child(pid).wait().unwrap();
        if sig == Signal::SIGTERM {
            assert!(status.success(), "exit {status}; log:\n{}", self.log());
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn has_line(&self, line: &str) -> bool {
        self.log().lines().any(|l| l == line)
    }

    fn wait_log(&self, needle: &str) -> bool {
        wait_until(Duration::from_secs(10), || self.log().contains(needle))
    }

    fn nmap(&self, scan: &str, v6: bool, ports: &str) {
        let target = if v6 { VICTIM6 } else { VICTIM4 };
        let mut c = self.pair.attacker.cmd("nmap");
        c.args([scan, "-T5", "--max-retries", "0", "-Pn", "-n", "-p", ports]);
        if v6 {
            c.arg("-6");
        }
        c.arg(target);
        run_ok(&mut c);
    }

    /// The kernel's bans, with millisecond times (read through netlink).
    fn bans(&self) -> Vec<Ban> {
        self.pair.victim.enter(|| match NftSocket::open() {
            Ok(mut s) => bans::list(&mut s, "nftsentry", 64).unwrap_or_default(),
            Err(_) => Vec::new(),
        })
    }

    fn banned(&self, addr: &str) -> bool {
        let a: nftsentry::cidr::Cidr = addr.parse().unwrap();
        self.bans().iter().any(|b| b.addr == a)
    }

    fn wait_banned(&self, addr: &str) -> bool {
        wait_until(Duration::from_secs(5), || self.banned(addr))
    }

    /// Our routes (`proto 110`), IPv4 then IPv6.
    fn routes(&self) -> String {
        let v4 = self.pair.victim.ip(&["route", "show", "proto", "110"]);
        let v6 = self
            .pair
            .victim
            .ip(&["-6", "route", "show", "proto", "110"]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&v4.stdout),
            String::from_utf8_lossy(&v6.stdout)
        )
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// Addresses in the state file (active or remembered).
    /// The addresses the state file holds entries for (its net result: a
    /// journal may hold several lines for one, or an `end`).
    fn state_addrs(&self) -> Vec<String> {
        let (entries, _) = nftsentry::journal::state::parse(self.read("state").as_bytes(), "state");
        entries.keys().map(|a| a.to_string()).collect()
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        nftsentry(&self.pair.victim, &self.cfg, args)
    }

    fn settle(&self) {
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn route_is_added_and_removed_at_expiry_and_at_unblock() {
    for (v6, kind) in [(false, "blackhole"), (true, "prohibit")] {
        let mut h = Host::new(
            if v6 { "route6" } else { "route4" },
            &format!("route = \"{kind}\"\nban_time = \"3s\"\n"),
        );
        h.start();
        let (a, len) = if v6 {
            (ATTACKER6, 128)
        } else {
            (ATTACKER4, 32)
        };
        h.nmap("-sS", v6, "1");
        assert!(h.wait_banned(a), "log:\n{}", h.log());
        assert!(
            h.wait_log(&format!(
                "attackalert: Host {a} has been blocked via dropped route: \"{kind} {a}/{len}\""
            )),
            "{}",
            h.log()
        );
        let routes = h.routes();
        assert!(routes.starts_with(&format!("{kind} {a} ")), "{routes}");
        assert!(wait_until(Duration::from_secs(6), || h
            .state_addrs()
            .contains(&a.to_string())));
        // The kernel expires the element; the daemon removes the route.
        assert!(
            wait_until(Duration::from_secs(8), || h.routes().is_empty()),
            "route stayed: {}\nlog:\n{}",
            h.routes(),
            h.log()
        );
        assert!(!h.banned(a));
        assert!(h.log().contains(&format!(
            "attackalert: Host {a}: dropped route \"{kind} {a}/{len}\" removed"
        )));
        assert!(
            wait_until(Duration::from_secs(6), || h.state_addrs().is_empty()),
            "{}",
            h.read("state")
        );

        // Banned again, then lifted by hand while the daemon runs.
        h.nmap("-sS", v6, "11");
        assert!(h.wait_banned(a), "log:\n{}", h.log());
        assert!(wait_until(Duration::from_secs(5), || !h
            .routes()
            .is_empty()));
        let o = h.cli(&["unblock", a]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(!h.banned(a));
        assert_eq!(h.routes(), "");
        assert!(h.state_addrs().is_empty(), "{}", h.read("state"));
        // The daemon takes the change over: the source trips again, as a
        // first offence, and the unblocked entry never comes back. (Probes
        // within 2 s of a ban are taken as ones queued before it.)
        std::thread::sleep(Duration::from_millis(2100));
        h.nmap("-sS", v6, "79");
        assert!(h.wait_banned(a), "log:\n{}", h.log());
        assert!(wait_until(Duration::from_secs(5), || !h
            .routes()
            .is_empty()));
        assert!(!h.log().contains("repeat offender"), "{}", h.log());
        h.end(Signal::SIGTERM);
    }
}

#[test]
fn hosts_deny_keeps_every_other_byte_and_never_duplicates() {
    // Comments, another host's line, a blank line and no final newline.
    let original =
        "# /etc/hosts.deny: tcp_wrappers\n#\n\nsshd: 203.0.113.9 # by hand\n\nALL: 198.51.100.99";
    let mut h = Host::new("hdeny", "ban_time = \"1h\"\n");
    let deny = h.dir.file("hosts.deny", original);
    std::fs::set_permissions(&deny, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    let text = std::fs::read_to_string(&h.cfg).unwrap();
    std::fs::write(
        &h.cfg,
        format!(
            "hosts_deny = \"{}\"\nhosts_deny_line = \"ALL: $TARGET$ : DENY\"\n{text}",
            deny.display()
        ),
    )
    .unwrap();
    h.start();
    let with = |addrs: &[&str]| {
        let mut s = original.to_string();
        for a in addrs {
            // tcp_wrappers reads an IPv6 client in brackets.
            let a = if a.contains(':') {
                format!("[{a}]")
            } else {
                a.to_string()
            };
            s.push_str(&format!("\nALL: {a} : DENY"));
        }
        s
    };
    h.nmap("-sS", false, "1");
    assert!(h.wait_banned(ATTACKER4));
    assert!(
        h.wait_log(&format!(
            "attackalert: Host {ATTACKER4} has been blocked via wrappers with string: \"ALL: {ATTACKER4} : DENY\""
        )),
        "{}",
        h.log()
    );
    h.nmap("-sU", true, "7");
    assert!(h.wait_banned(ATTACKER6));
    assert!(wait_until(Duration::from_secs(5), || h.read("hosts.deny")
        == with(&[ATTACKER4, ATTACKER6])));
    // More scans (the kernel drops them) and restarts: no duplicate, no loss.
    h.nmap("-sS", false, "1,11,79");
    h.nmap("-sS", true, "1,11,79");
    h.settle();
    h.end(Signal::SIGTERM);
    assert_eq!(h.read("hosts.deny"), with(&[ATTACKER4, ATTACKER6]));
    h.start();
    h.nmap("-sS", false, "1");
    h.settle();
    h.end(Signal::SIGKILL);
    h.start();
    assert!(h.banned(ATTACKER4) && h.banned(ATTACKER6), "{}", h.log());
    assert_eq!(h.read("hosts.deny"), with(&[ATTACKER4, ATTACKER6]));
    let mode = std::fs::metadata(&deny).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o640
    );
    // A line deleted by hand while the daemon was down is put back.
    h.end(Signal::SIGTERM);
    std::fs::write(&deny, with(&[ATTACKER6])).unwrap();
    h.start();
    // Put back after the privilege drop, which follows the `started` line.
    assert!(
        wait_until(Duration::from_secs(5), || h.read("hosts.deny")
            == with(&[ATTACKER6, ATTACKER4])),
        "{}",
        h.read("hosts.deny")
    );
    assert!(h.wait_log("(put back: it was missing from"), "{}", h.log());
    // Unblock and flush take the lines out: the file is as it was.
    let o = h.cli(&["unblock", ATTACKER4]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(h.read("hosts.deny"), with(&[ATTACKER6]));
    let o = h.cli(&["flush"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(h.read("hosts.deny"), original);
    assert!(h.state_addrs().is_empty(), "{}", h.read("state"));
    h.end(Signal::SIGTERM);
}

#[test]
fn hosts_deny_line_goes_at_expiry_and_a_line_already_there_stays() {
    let original = format!("# keep\nALL: [{ATTACKER6}]\n");
    let mut h = Host::new("hdexp", "ban_time = \"2s\"\n");
    let deny = h.dir.file("hosts.deny", &original);
    let text = std::fs::read_to_string(&h.cfg).unwrap();
    std::fs::write(
        &h.cfg,
        format!("hosts_deny = \"{}\"\n{text}", deny.display()),
    )
    .unwrap();
    h.start();
    h.nmap("-sS", false, "1");
    h.nmap("-sS", true, "1");
    assert!(h.wait_banned(ATTACKER4) && h.wait_banned(ATTACKER6));
    assert!(wait_until(Duration::from_secs(3), || h.read("hosts.deny")
        == format!("{original}ALL: {ATTACKER4}\n")));
    assert!(
        h.wait_log(&format!(
            "{} already has the line \"ALL: [{ATTACKER6}]\"; not added",
            deny.display()
        )),
        "{}",
        h.log()
    );
    // At expiry our line goes; the admin's line for the other host stays.
    assert!(
        wait_until(Duration::from_secs(6), || h.read("hosts.deny") == original),
        "{}\nlog:\n{}",
        h.read("hosts.deny"),
        h.log()
    );
    h.end(Signal::SIGTERM);
}

#[test]
fn symlinked_hosts_deny_is_refused_and_the_ban_still_happens() {
    let mut h = Host::new("hdlink", "");
    let real = h.dir.file("real.deny", "# real file\n");
    let link = h.path("hosts.deny");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let text = std::fs::read_to_string(&h.cfg).unwrap();
    std::fs::write(
        &h.cfg,
        format!(
            "hosts_deny = \"{}\"\nroute = \"unreachable\"\n{text}",
            link.display()
        ),
    )
    .unwrap();
    h.start();
    h.nmap("-sS", false, "1");
    assert!(h.wait_banned(ATTACKER4), "{}", h.log());
    let want = format!(
        "attackalert: ERROR: could not block host {ATTACKER4} via wrappers: hosts.deny file {}: is a symbolic link; refusing to write through it (set hosts_deny to the real file)",
        link.display()
    );
    assert!(h.wait_log(&want), "{}", h.log());
    // The other actions ran.
    assert!(wait_until(Duration::from_secs(5), || h
        .routes()
        .starts_with(&format!("unreachable {ATTACKER4}"))));
    assert_eq!(std::fs::read_to_string(&real).unwrap(), "# real file\n");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    h.end(Signal::SIGTERM);
}

/// A script that writes its arguments and TARGET/PORT/MODE, one per line,
/// to `<dir>/ran.<n>`.
fn recorder(h: &Host) -> PathBuf {
    let p = h.path("record.sh");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nn=$(ls {d} | grep -c '^ran\\.')\n{{ for a in \"$@\"; do printf 'arg:%s\\n' \"$a\"; done; printf 'env:%s %s %s\\n' \"$TARGET\" \"$PORT\" \"$MODE\"; }} > {d}/ran.tmp.$$ && mv {d}/ran.tmp.$$ {d}/ran.$n\n",
            d = h.dir.path.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    p
}

fn runs(h: &Host) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(&h.dir.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ran.") && !n.starts_with("ran.tmp"))
        .collect();
    names.sort();
    names.iter().map(|n| h.read(n)).collect()
}

#[test]
fn command_gets_variables_as_arguments_and_environment_never_through_a_shell() {
    let mut h = Host::new("cmd", "");
    let rec = recorder(&h);
    let d = h.dir.path.display().to_string();
    // Shell syntax around $TARGET$ must reach the program as plain text.
    let text = std::fs::read_to_string(&h.cfg).unwrap();
    std::fs::write(
        &h.cfg,
        format!(
            "command = [\"{}\", \"$TARGET$;touch {d}/pwned1\", \"$(touch {d}/pwned2)\", \"`touch {d}/pwned3`\", \"$PORT$|touch {d}/pwned4\", \"$MODE$ && touch {d}/pwned5\", \"'$TARGET$'\"]\n{text}",
            rec.display()
        ),
    )
    .unwrap();
    h.start();
    h.nmap("-sS", false, "79");
    assert!(h.wait_banned(ATTACKER4));
    assert!(
        wait_until(Duration::from_secs(5), || runs(&h).len() == 1),
        "{}",
        h.log()
    );
    let a = ATTACKER4;
    assert_eq!(
        runs(&h)[0],
        format!(
            "arg:{a};touch {d}/pwned1\narg:$(touch {d}/pwned2)\narg:`touch {d}/pwned3`\narg:79|touch {d}/pwned4\narg:stcp && touch {d}/pwned5\narg:'{a}'\nenv:{a} 79 stcp\n"
        )
    );
    for i in 1..=5 {
        assert!(
            !h.path(&format!("pwned{i}")).exists(),
            "pwned{i}: a shell ran"
        );
    }
    let logged = h.log();
    assert!(
        logged.contains(&format!(
            "attackalert: External command run for host: {a} using command: \"{} '{a};touch {d}/pwned1' '$(touch {d}/pwned2)'",
            rec.display()
        )),
        "{logged}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || h.log().contains(&format!(
            "attackalert: External command for host: {a} exited with status 0 after"
        ))),
        "{}",
        h.log()
    );
    h.end(Signal::SIGTERM);

    // The string form is split on white space and nothing else.
    let mut h = Host::new("cmdstr", "");
    let rec = recorder(&h);
    let d = h.dir.path.display().to_string();
    let text = std::fs::read_to_string(&h.cfg).unwrap();
    std::fs::write(
        &h.cfg,
        format!(
            "command = \"{} $TARGET$;touch${{IFS}}{d}/pwned6 >{d}/pwned7\"\n{text}",
            rec.display()
        ),
    )
    .unwrap();
    h.start();
    h.nmap("-sU", true, "9");
    assert!(
        wait_until(Duration::from_secs(5), || runs(&h).len() == 1),
        "{}",
        h.log()
    );
    assert_eq!(
        runs(&h)[0],
        format!(
            "arg:{ATTACKER6};touch${{IFS}}{d}/pwned6\narg:>{d}/pwned7\nenv:{ATTACKER6} 9 sudp\n"
        )
    );
    assert!(!h.path("pwned6").exists() && !h.path("pwned7").exists());
    h.end(Signal::SIGTERM);
}

#[test]
fn command_order_exit_status_and_timeout_never_stall_the_loop() {
    for first in [false, true] {
        let mut h = Host::new(
            if first { "cmdfirst" } else { "cmdafter" },
            &format!(
                "run_before_block = {first}\ncommand = [\"/bin/sh\", \"-c\", \"exit 3\", \"$TARGET$\"]\n"
            ),
        );
        h.start();
        h.nmap("-sS", false, "1");
        assert!(h.wait_banned(ATTACKER4));
        assert!(
            h.wait_log(&format!(
                "attackalert: ERROR: External command for host: {ATTACKER4} exited with status 3 after"
            )),
            "{}",
            h.log()
        );
        let log = h.log();
        let cmd = log.find("External command run for host:").unwrap();
        let set = log.find("has been blocked via nftables set").unwrap();
        assert_eq!(cmd < set, first, "run_before_block = {first}:\n{log}");
        h.end(Signal::SIGTERM);
    }

    let mut h = Host::new(
        "cmdslow",
        "command = [\"/bin/sleep\", \"60\"]\ncommand_timeout = \"1s\"\n",
    );
    h.start();
    h.nmap("-sS", false, "1");
    assert!(h.wait_banned(ATTACKER4));
    // The command runs for a minute; the daemon goes on banning at once.
    let t = Instant::now();
    h.nmap("-sS", true, "1");
    assert!(h.wait_banned(ATTACKER6), "{}", h.log());
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(
        h.wait_log(&format!(
            "attackalert: ERROR: External command for host: {ATTACKER4} still running after command_timeout (1s); terminating it: \"/bin/sleep 60\""
        )),
        "{}",
        h.log()
    );
    assert!(
        h.wait_log(&format!(
            "attackalert: ERROR: External command for host: {ATTACKER4} was killed by signal 15 after 1."
        )),
        "{}",
        h.log()
    );
    // Reaped: no zombie child left behind.
    let pid = h.pid.unwrap();
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(format!(
            "/proc/{pid}/task/{pid}/children"
        ))
        .unwrap()
        .trim()
        .is_empty()),
        "children left: {children}"
    );
    h.end(Signal::SIGTERM);
}

#[test]
fn block_modes_log_and_command() {
    let mut h = Host::new(
        "bmode",
        "command = [\"/bin/true\"]\nban_time = \"1h\"\n[tcp]\nports = \"1,11,79\"\nblock_mode = \"log\"\n[udp]\nports = \"1,7,9\"\nblock_mode = \"command\"\n",
    );
    h.start();
    // TCP in log mode: alert and PortSentry's "Ignoring" line, nothing else.
    h.nmap("-sS", false, "1,11");
    h.settle();
    let a = ATTACKER4;
    assert!(h.has_line(&format!(
        "attackalert: TCP SYN/Normal scan from host: {a}/{a} to TCP port: 1"
    )));
    assert!(h.has_line("attackalert: Ignoring TCP response per configuration file setting."));
    assert!(!h.banned(a));
    assert!(!h.log().contains("has been blocked"), "{}", h.log());
    assert_eq!(h.read("history"), "");
    assert!(h.state_addrs().is_empty());
    // UDP in command mode: the command once, no kernel ban, one history line.
    h.nmap("-sU", true, "7");
    h.settle();
    h.nmap("-sU", true, "9");
    h.settle();
    let b = ATTACKER6;
    assert_eq!(
        h.log()
            .matches(&format!(
                "attackalert: External command run for host: {b} using command: \"/bin/true\""
            ))
            .count(),
        1,
        "{}",
        h.log()
    );
    assert!(h.has_line(&format!(
        "attackalert: Host: {b}/{b} is already blocked Ignoring"
    )));
    assert!(!h.banned(b));
    let history = h.read("history");
    assert_eq!(history.lines().count(), 1, "{history}");
    assert!(
        history.ends_with(&format!("Host: {b}/{b} Port: 7 UDP Blocked\n")),
        "{history}"
    );
    assert!(
        wait_until(Duration::from_secs(6), || h.state_addrs() == [b]),
        "{}\nlog:\n{}",
        h.read("state"),
        h.log()
    );
    h.end(Signal::SIGTERM);

    // UDP only runs the command; a TCP probe from the same source later
    // still blocks it (PortSentry blocked per protocol).
    let mut h = Host::new(
        "bmode2",
        "command = [\"/bin/true\"]\n[tcp]\nports = \"1\"\n[udp]\nports = \"7\"\nblock_mode = \"command\"\n",
    );
    h.start();
    h.nmap("-sU", false, "7");
    assert!(
        h.wait_log("External command run for host: 192.0.2.2"),
        "{}",
        h.log()
    );
    h.settle();
    assert!(!h.banned(a));
    h.nmap("-sS", false, "1");
    assert!(h.wait_banned(a), "{}", h.log());
    assert!(wait_until(Duration::from_secs(3), || h
        .read("history")
        .lines()
        .count()
        == 2));
    let history = h.read("history");
    assert!(history.contains("Port: 7 UDP Blocked\n"), "{history}");
    assert!(history.contains("Port: 1 TCP Blocked\n"), "{history}");
    h.end(Signal::SIGTERM);
}

/// `date` formats the epoch in the local zone: an independent check of the
/// history line's time.
fn local_date(epoch: i64) -> String {
    let out = run_ok(std::process::Command::new("date").args([
        "-d",
        &format!("@{epoch}"),
        "+%m/%d/%Y %H:%M:%S",
    ]));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn history_is_portsentrys_and_fail2ban_reads_every_line() {
    let mut h = Host::new("hist", "");
    h.start();
    h.nmap("-sS", false, "11");
    h.nmap("-sU", true, "9");
    assert!(h.wait_banned(ATTACKER4) && h.wait_banned(ATTACKER6));
    // A third source from another address.
    h.pair
        .attacker
        .ip(&["addr", "add", "192.0.2.3/24", "dev", "eth0"]);
    h.pair
        .attacker
        .sh(&format!("nc -z -w 1 -s 192.0.2.3 {VICTIM4} 79 || true"));
    assert!(h.wait_banned("192.0.2.3"));
    assert!(wait_until(Duration::from_secs(3), || h
        .read("history")
        .lines()
        .count()
        == 3));
    let history = h.read("history");
    let mut seen = BTreeMap::new();
    for line in history.lines() {
        // "<epoch> - MM/DD/YYYY HH:MM:SS Host: <name>/<ip> Port: <port> <proto> Blocked"
        let (epoch, rest) = line.split_once(" - ").expect(line);
        let epoch: i64 = epoch.parse().expect(line);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((now - 60..=now).contains(&epoch), "{line}");
        let date = local_date(epoch);
        assert!(
            rest.starts_with(&format!("{date} Host: ")),
            "{line} vs {date}"
        );
        let tail = &rest[date.len()..];
        let (ip, port, proto) = if tail.contains(ATTACKER6) {
            (ATTACKER6, 9, "UDP")
        } else if tail.contains("192.0.2.3") {
            ("192.0.2.3", 79, "TCP")
        } else {
            (ATTACKER4, 11, "TCP")
        };
        assert_eq!(
            tail,
            format!(" Host: {ip}/{ip} Port: {port} {proto} Blocked")
        );
        seen.insert(ip, ());
    }
    assert_eq!(seen.len(), 3, "{history}");
    assert!(history.ends_with('\n'));

    // fail2ban's stock filter for PortSentry matches every line.
    let out = run_ok(
        std::process::Command::new("fail2ban-regex")
            .arg(h.path("history"))
            .arg("/etc/fail2ban/filter.d/portsentry.conf"),
    );
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines = report
        .lines()
        .find(|l| l.starts_with("Lines: "))
        .unwrap_or_else(|| panic!("no summary:\n{report}"));
    assert_eq!(
        lines, "Lines: 3 lines, 0 ignored, 3 matched, 0 missed",
        "{report}"
    );
    // And finds the right host in each.
    let out = run_ok(
        std::process::Command::new("fail2ban-regex")
            .args(["-o", "ip"])
            .arg(h.path("history"))
            .arg("/etc/fail2ban/filter.d/portsentry.conf"),
    );
    let mut hosts: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    hosts.sort();
    assert_eq!(hosts, ["192.0.2.2", "192.0.2.3", "2001:db8:1::2"]);
    h.end(Signal::SIGTERM);
}

/// Every ban of `before` is in `after` with its time left shorter by the
/// time that passed between the two readings, within ±1 s.
fn same_bans(before: &[Ban], t_before: Instant, after: &[Ban], t_after: Instant) {
    let elapsed = t_after.duration_since(t_before).as_millis() as i64;
    let after: BTreeMap<nftsentry::cidr::Cidr, &Ban> = after.iter().map(|b| (b.addr, b)).collect();
    for b in before {
        let a = after
            .get(&b.addr)
            .unwrap_or_else(|| panic!("{} lost; after: {after:?}", b.addr));
        let left_before = b.expires_in.unwrap().as_millis() as i64;
        let left_after = a.expires_in.unwrap().as_millis() as i64;
        let drift = left_after - (left_before - elapsed);
        assert!(
            drift.abs() <= 1000,
            "{}: {left_before} ms left, {elapsed} ms later {left_after} ms (drift {drift} ms)",
            b.addr
        );
        assert_eq!(a.timeout, b.timeout, "{}", b.addr);
    }
}

#[test]
fn kill_9_during_a_scan_loses_no_ban_and_no_second() {
    let mut h = Host::new(
        "kill9",
        "ban_time = \"10m\"\nroute = \"blackhole\"\nhosts_deny_line = \"ALL: $TARGET$\"\n",
    );
    let deny = h.dir.file("hosts.deny", "# bans\n");
    let text = std::fs::read_to_string(&h.cfg).unwrap();
    std::fs::write(
        &h.cfg,
        format!("hosts_deny = \"{}\"\n{text}", deny.display()),
    )
    .unwrap();
    let mut sources = Vec::new();
    for i in 10..40 {
        let v4 = format!("192.0.2.{i}");
        h.pair
            .attacker
            .ip(&["addr", "add", &format!("{v4}/24"), "dev", "eth0"]);
        sources.push((v4, VICTIM4));
    }
    for i in 0x10..0x1a {
        let v6 = format!("2001:db8:1::{i:x}");
        h.pair
            .attacker
            .ip(&["addr", "add", &format!("{v6}/64"), "dev", "eth0", "nodad"]);
        sources.push((v6, VICTIM6));
    }
    h.start();
    // Each source probes port 1 once, 40 ms apart, in the background.
    let script: String = sources
        .iter()
        .map(|(s, t)| format!("nc -z -w 1 -s {s} {t} 1; sleep 0.04; "))
        .collect();
    let mut scan = h.pair.attacker.cmd("sh");
    scan.args(["-c", &script]);
    let scan_pid = h.pair.attacker.spawn(&mut scan);
    // Half-way through, the daemon dies without a word.
    assert!(wait_until(Duration::from_secs(10), || h.bans().len() >= 15));
    h.end(Signal::SIGKILL);
    h.pair.attacker.take_child(scan_pid).wait().unwrap();
    let (before, t_before) = (h.bans(), Instant::now());
    assert!(
        before.len() >= 15 && before.len() < sources.len(),
        "{}",
        before.len()
    );
    // Someone removes one route while nftsentry is down: it comes back.
    let victim = before[0].addr.to_string();
    h.pair
        .victim
        .ip(&["route", "del", "blackhole", &victim, "proto", "110"]);
    h.start();
    let (after, t_after) = (h.bans(), Instant::now());
    assert_eq!(after.len(), before.len(), "log:\n{}", h.log());
    same_bans(&before, t_before, &after, t_after);
    assert!(
        h.log()
            .contains("adopted from the table that was still in the kernel"),
        "{}",
        h.log()
    );
    // Every ban has its route and hosts.deny line, once.
    let routes = h.routes();
    let deny_text = std::fs::read_to_string(&deny).unwrap();
    for b in &before {
        assert_eq!(
            routes
                .lines()
                .filter(|l| l.starts_with(&format!("blackhole {} ", b.addr)))
                .count(),
            1,
            "{}: {routes}",
            b.addr
        );
        assert_eq!(
            deny_text
                .lines()
                .filter(|l| *l == format!("ALL: {}", b.addr))
                .count(),
            1,
            "{}: {deny_text}",
            b.addr
        );
    }
    // Sources that probed while the daemon was dead are caught now.
    for (s, t) in &sources {
        h.pair
            .attacker
            .sh(&format!("nc -z -w 1 -s {s} {t} 1 || true"));
    }
    assert!(
        wait_until(Duration::from_secs(10), || h.bans().len() == sources.len()),
        "{} of {}; log:\n{}",
        h.bans().len(),
        sources.len(),
        h.log()
    );
    // And once the table is gone too (a reboot, `nft flush ruleset`), the
    // state file alone brings every ban back (once they are written: a
    // change waits at most 5 s for the disk).
    assert!(
        wait_until(Duration::from_secs(6), || h.state_addrs().len()
            == sources.len()),
        "{}",
        h.read("state")
    );
    h.end(Signal::SIGKILL);
    let (before, t_before) = (h.bans(), Instant::now());
    assert_eq!(before.len(), sources.len());
    h.pair.victim.nft(&["delete", "table", "inet", "nftsentry"]);
    h.start();
    let (after, t_after) = (h.bans(), Instant::now());
    same_bans(&before, t_before, &after, t_after);
    assert_eq!(after.len(), sources.len());
    // Logged after the privilege drop, which follows the `started` line.
    assert!(
        h.wait_log(&format!(
            "adminalert: {} bans restored with the time they had left ({} from the state file, 0 adopted",
            sources.len(),
            sources.len()
        )),
        "{}",
        h.log()
    );
    h.end(Signal::SIGTERM);
}

#[test]
fn bans_that_ended_while_stopped_are_undone_at_start() {
    let mut h = Host::new("ended", "ban_time = \"4s\"\nroute = \"blackhole\"\n");
    let deny = h.dir.file("hosts.deny", "# x\n");
    let text = std::fs::read_to_string(&h.cfg).unwrap();
    std::fs::write(
        &h.cfg,
        format!("hosts_deny = \"{}\"\n{text}", deny.display()),
    )
    .unwrap();
    h.start();
    h.nmap("-sS", false, "1");
    h.nmap("-sS", true, "1");
    assert!(h.wait_banned(ATTACKER4) && h.wait_banned(ATTACKER6));
    assert!(wait_until(Duration::from_secs(3), || h
        .routes()
        .lines()
        .count()
        == 2));
    assert!(wait_until(Duration::from_secs(6), || h.state_addrs().len() == 2));
    h.end(Signal::SIGKILL);
    std::thread::sleep(Duration::from_millis(4500));
    // The kernel forgot the elements; route and line are still there.
    assert_eq!(h.routes().lines().count(), 2);
    assert_eq!(std::fs::read_to_string(&deny).unwrap().lines().count(), 3);
    h.start();
    // The undo follows the `started` line, and the state file is written
    // by its thread after it: waited for, not raced.
    assert!(h.wait_log("; 2 ended bans undone"), "{}", h.log());
    assert_eq!(h.routes(), "");
    assert_eq!(std::fs::read_to_string(&deny).unwrap(), "# x\n");
    assert!(
        wait_until(Duration::from_secs(5), || h.state_addrs().is_empty()),
        "{}",
        h.read("state")
    );
    h.end(Signal::SIGTERM);
}

#[test]
fn damaged_state_file_keeps_the_valid_bans() {
    let mut h = Host::new("damaged", "");
    // One valid live ban (written by the library itself), then garbage.
    let now = nftsentry::respond::wall_ms();
    let entry = nftsentry::journal::state::Entry {
        addr: "198.51.100.7".parse().unwrap(),
        scan: "syn".into(),
        proto: Some(nftsentry::config::Proto::Tcp),
        mode: "stcp".into(),
        port: 1,
        banned_at: now - 1000,
        expires_at: now + 60_000,
        length: 61_000,
        repeat: 1,
        evidence: nftsentry::strength::Strength::Forgeable,
        applied: nftsentry::journal::state::Applied {
            set: true,
            ..Default::default()
        },
    };
    let good = nftsentry::journal::state::render([&entry]);
    let good_line =
        nftsentry::journal::state::render_entry(&entry).replace("198.51.100.7", "198.51.100.8");
    std::fs::write(
        h.path("state"),
        format!("{good}ban 198.51.100.9 scan=syn\n\u{1}\u{2}garbage\n{good_line}ban 198.51.100.1"),
    )
    .unwrap();
    h.start();
    let bans = h.bans();
    assert_eq!(bans.len(), 1, "{bans:?}\n{}", h.log());
    assert_eq!(bans[0].addr.to_string(), "198.51.100.7");
    let left = bans[0].expires_in.unwrap();
    assert!(
        left > Duration::from_secs(57) && left <= Duration::from_secs(60),
        "{left:?}"
    );
    let log = h.log();
    let state = h.path("state").display().to_string();
    for (line, why) in [
        (4, "no checksum"),
        (5, "no checksum"),
        (6, "checksum mismatch"),
        (7, "no checksum (the line is cut short)"),
    ] {
        assert!(
            log.contains(&format!("adminalert: ERROR: state file {state}:{line}: "))
                && log
                    .lines()
                    .any(|l| l.contains(&format!("{state}:{line}:")) && l.contains(why)),
            "line {line} ({why}):\n{log}"
        );
    }
    // It goes on, and the file is clean again.
    h.nmap("-sS", false, "1");
    assert!(h.wait_banned(ATTACKER4));
    assert!(wait_until(Duration::from_secs(6), || h.state_addrs().len() == 2));
    assert!(!h.read("state").contains("garbage"));
    h.end(Signal::SIGTERM);
}

#[test]
fn repeat_offenders_escalate_across_restarts() {
    let mut h = Host::new(
        "repeat",
        "ban_time = \"2s\"\nban_time_factor = 3\nban_time_max = \"30s\"\n",
    );
    h.start();
    let timeout = |h: &Host| {
        h.bans()
            .into_iter()
            .find(|b| b.addr.to_string() == ATTACKER4)
            .and_then(|b| b.timeout)
    };
    h.nmap("-sS", false, "1");
    assert!(h.wait_banned(ATTACKER4));
    assert_eq!(timeout(&h), Some(Duration::from_secs(2)));
    assert!(wait_until(Duration::from_secs(5), || !h.banned(ATTACKER4)));
    h.settle();
    h.nmap("-sS", false, "1");
    assert!(h.wait_banned(ATTACKER4), "{}", h.log());
    assert_eq!(timeout(&h), Some(Duration::from_secs(6)), "{}", h.log());
    assert!(h.log().contains(&format!(
        "attackalert: Host {ATTACKER4} is a repeat offender (ban 2); banned for 6s"
    )));
    // Remembered across a restart: the third ban is 18 s, the fourth the cap.
    h.end(Signal::SIGTERM);
    h.start();
    assert!(wait_until(Duration::from_secs(9), || !h.banned(ATTACKER4)));
    h.settle();
    h.nmap("-sS", false, "11");
    assert!(h.wait_banned(ATTACKER4), "{}", h.log());
    assert_eq!(timeout(&h), Some(Duration::from_secs(18)), "{}", h.log());
    // Probes within 2 s of a ban count as queued before it: wait past that.
    let in_flight = || std::thread::sleep(Duration::from_millis(2100));
    let o = h.cli(&["block", ATTACKER4, "--for", "1s"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(wait_until(Duration::from_secs(5), || !h.banned(ATTACKER4)));
    in_flight();
    h.nmap("-sS", false, "79");
    assert!(h.wait_banned(ATTACKER4), "{}", h.log());
    // 3 x the 1 s of the manual ban: 3 s (never below ban_time).
    assert_eq!(timeout(&h), Some(Duration::from_secs(3)), "{}", h.log());
    // Unblock forgives: the next ban is a first one again.
    let o = h.cli(&["unblock", ATTACKER4]);
    assert!(o.status.success(), "{}", stderr(&o));
    in_flight();
    h.nmap("-sS", false, "1");
    assert!(h.wait_banned(ATTACKER4), "{}", h.log());
    assert_eq!(timeout(&h), Some(Duration::from_secs(2)), "{}", h.log());
    h.end(Signal::SIGTERM);
}

#[test]
fn cli_block_applies_route_and_hosts_deny_and_records_the_ban() {
    let mut h = Host::new("cliblock", "route = \"blackhole\"\n");
    let deny = h.dir.file("hosts.deny", "");
    let text = std::fs::read_to_string(&h.cfg).unwrap();
    std::fs::write(
        &h.cfg,
        format!("hosts_deny = \"{}\"\n{text}", deny.display()),
    )
    .unwrap();
    h.start();
    let o = h.cli(&["block", "198.51.100.7", "--for", "1h"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(h.banned("198.51.100.7"));
    assert!(
        h.routes().starts_with("blackhole 198.51.100.7 "),
        "{}",
        h.routes()
    );
    assert_eq!(
        std::fs::read_to_string(&deny).unwrap(),
        "ALL: 198.51.100.7\n"
    );
    let state = h.read("state");
    assert!(
        state.contains("ban 198.51.100.7 scan=manual proto=- mode=manual port=0 "),
        "{state}"
    );
    // The daemon takes the CLI's ban over: a restart keeps it.
    h.end(Signal::SIGTERM);
    h.start();
    assert!(h.banned("198.51.100.7"), "{}", h.log());
    let o = h.cli(&["unblock", "198.51.100.7"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(h.routes(), "");
    assert_eq!(std::fs::read_to_string(&deny).unwrap(), "");
    // Unblocking what is not banned still says so.
    let o = h.cli(&["unblock", "198.51.100.7"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("198.51.100.7 is not blocked"),
        "{}",
        stderr(&o)
    );
    h.end(Signal::SIGTERM);
}
