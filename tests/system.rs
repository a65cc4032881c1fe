//! The real system: the .deb installed with dpkg on a minimal Debian booted
//! with systemd (systemd-nspawn -b in a network namespace of the test,
//! joined by veth to an attacker namespace), driven with systemctl,
//! journalctl and nftsentry inside it, as an admin would. Debian 12
//! (systemd 252) and Debian 13 (systemd 257) when the mirror serves it, one
//! after the other.
//!
//! Per Debian version, two boots of a fresh copy-on-write overlay on the
//! cached debootstrap root (tests/common/machine.rs):
//! 1. the README's quick start word for word, then the service under
//!    systemd: READY after the table, a scan banned and logged with its
//!    priority, reload (good and broken configs), restart, nftables.service's
//!    `flush ruleset`, the watchdog, the unit's exposure, hosts.deny and a
//!    command inside the sandbox, log rotation, dpkg -r and --purge, and an
//!    upgrade over an older package;
//! 2. a PortSentry system as admins have them, migrated with the README's
//!    recipe word for word, ending with a scan banned, the hosts.deny line
//!    written and the history line read by fail2ban.
//!
//! Needs root, debootstrap, systemd-nspawn (systemd-container), nmap, and
//! cargo-deb for the package (tests/run installs them all).
mod common;
#[path = "common/machine.rs"]
mod machine;

use common::*;
use machine::{Image, Machine, readme_block};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One Debian version at a time: two containers at once on two cores
/// would only slow both down.
static SERIAL: Mutex<()> = Mutex::new(());

const VERSION: &str = env!("CARGO_PKG_VERSION");
const CONFIG: &str = "/etc/nftsentry/nftsentry.toml";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The package under test and an older one.
struct Debs {
    /// Holds the packages until the test ends.
    _dir: TempDir,
    /// nftsentry_VERSION-1_ARCH.deb, as the README names it.
    new: PathBuf,
    /// VERSION-0: the package as it was before maintainer scripts, with the
    /// unit that reloaded through /bin/kill and no logrotate file.
    old: PathBuf,
}

fn debs() -> Debs {
    {
        let bin = nftsentry_bin();
        assert!(
            bin.ends_with("release/nftsentry"),
            "cargo-deb packs the release build: run with --release (tests/run does)"
        );
        let dir = TempDir::new("sysdeb");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        run_ok(
            Command::new(cargo)
                .args(["deb", "--no-build", "--strip", "--output"])
                .arg(&dir.path)
                .arg("--manifest-path")
                .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")),
        );
        let arch = text(&run_ok(Command::new("dpkg").arg("--print-architecture")).stdout);
        let new = dir
            .path
            .join(format!("nftsentry_{VERSION}-1_{}.deb", arch.trim()));
        assert!(new.is_file(), "no {}", new.display());
        // The older package: same files, version -0, no maintainer scripts,
        // the unit of that time (reload through /bin/kill), no logrotate.
        let tree = dir.path.join("old");
        run_ok(Command::new("dpkg-deb").arg("-R").arg(&new).arg(&tree));
        for s in ["postinst", "prerm", "postrm"] {
            std::fs::remove_file(tree.join("DEBIAN").join(s)).unwrap();
        }
        let edit = |rel: &str, f: &dyn Fn(&str) -> String| {
            let p = tree.join(rel);
            let t = std::fs::read_to_string(&p).unwrap();
            std::fs::write(&p, f(&t)).unwrap();
        };
        edit("DEBIAN/control", &|t| {
            t.replace(
                &format!("Version: {VERSION}-1\n"),
                &format!("Version: {VERSION}-0\n"),
            )
        });
        edit("DEBIAN/conffiles", &|t| {
            t.replace("/etc/logrotate.d/nftsentry\n", "")
        });
        std::fs::remove_file(tree.join("etc/logrotate.d/nftsentry")).unwrap();
        edit("usr/lib/systemd/system/nftsentry.service", &|t| {
            t.lines()
                .filter(|l| {
                    !["RestartPreventExitStatus=", "MemoryMax=", "TasksMax="]
                        .iter()
                        .any(|k| l.starts_with(k))
                })
                .map(|l| match l {
                    l if l.starts_with("ExecReload=") => {
                        "ExecReload=/bin/kill -HUP $MAINPID\n".to_string()
                    }
                    l if l.starts_with("After=") => {
                        "After=network.target nftables.service firewalld.service\n".to_string()
                    }
                    l => format!("{l}\n"),
                })
                .collect()
        });
        let old = dir
            .path
            .join(format!("nftsentry_{VERSION}-0_{}.deb", arch.trim()));
        run_ok(
            Command::new("dpkg-deb")
                .args(["--root-owner-group", "-b"])
                .arg(&tree)
                .arg(&old),
        );
        Debs {
            _dir: dir,
            new,
            old,
        }
    }
}

/// `nftsentry list --json` as (address, timeout, expires_in) triples.
fn bans(m: &Machine) -> Vec<(String, u64, u64)> {
    let json = m.ok("nftsentry list --json");
    json.split('{')
        .skip(1)
        .map(|item| {
            let field = |k: &str| {
                let at = item.find(&format!("\"{k}\":")).unwrap() + k.len() + 3;
                item[at..]
                    .split([',', '}'])
                    .next()
                    .unwrap()
                    .trim_matches('"')
                    .to_string()
            };
            (
                field("address"),
                field("timeout").parse().unwrap_or(0),
                field("expires_in").parse().unwrap_or(0),
            )
        })
        .collect()
}

fn ban_of(m: &Machine, addr: &str) -> Option<(u64, u64)> {
    bans(m)
        .into_iter()
        .find(|b| b.0 == addr)
        .map(|b| (b.1, b.2))
}

/// Waits for `addr` in the daemon's list.
fn wait_banned(m: &Machine, addr: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while ban_of(m, addr).is_none() {
        assert!(
            Instant::now() < deadline,
            "[{}] {what}: {addr} not banned; journal:\n{}",
            m.suite,
            m.ok("journalctl -u nftsentry --no-pager -n 40")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// nmap from the attacker, from one of its addresses (raw scans only; a
/// connect scan goes from its first address).
fn scan(pair: &Pair, kind: &str, from: &str, port: &str) {
    let mut c = pair.attacker.cmd("nmap");
    c.arg(kind);
    if kind != "-sT" {
        c.args(["-S", from, "-e", "eth0"]);
    }
    c.args([
        "-T5",
        "--max-retries",
        "0",
        "-Pn",
        "-n",
        "-p",
        port,
        VICTIM4,
    ]);
    run_ok(&mut c);
}

/// Puts `lines` at the top of the container's config (written from the
/// host, into the overlay).
fn prepend(m: &Machine, lines: &str) {
    let p = m.root.join(CONFIG.trim_start_matches('/'));
    let old = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, format!("{lines}{old}")).unwrap();
}

/// Takes the first `n` lines off the container's config.
fn unprepend(m: &Machine, n: usize) {
    let p = m.root.join(CONFIG.trim_start_matches('/'));
    let old = std::fs::read_to_string(&p).unwrap();
    let rest: String = old.split_inclusive('\n').skip(n).collect();
    std::fs::write(&p, rest).unwrap();
}

/// Whether a ping from `from` gets an answer.
fn answers(pair: &Pair, from: &str) -> bool {
    pair.attacker
        .cmd("ping")
        .args(["-c", "1", "-W", "1", "-I", from, VICTIM4])
        .output()
        .unwrap()
        .status
        .success()
}

fn journal_notice(m: &Machine) -> String {
    m.ok("journalctl -u nftsentry -p notice..notice -o cat --no-pager")
}

fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

/// The attacker's extra addresses: .3 never banned, .4 and .5 for later
/// scans.
fn pair(tag: &str) -> Pair {
    let pair = Pair::new(tag);
    for a in ["192.0.2.3", "192.0.2.4", "192.0.2.5"] {
        pair.attacker
            .ip(&["addr", "add", &format!("{a}/24"), "dev", "eth0"]);
    }
    pair
}

/// The README's quick start word for word, then the service under systemd.
fn service(image: &Image, d: &Debs) {
    let suite = image.suite.as_str();
    let pair = pair(&format!("s{}", &suite[..2]));
    let m = Machine::boot(image, &pair.victim, &format!("q{}", &suite[..2]));
    println!(
        "[{suite}] booted in {:.1} s: {}",
        m.boot_time.as_secs_f64(),
        m.ok("systemctl --version | head -1").trim()
    );
    // A minimal system: no kill(1), which the old unit reloaded through.
    assert!(
        m.sh("test -e /bin/kill || test -e /usr/bin/kill")
            .status
            .code()
            == Some(1)
    );
    println!("[{suite}] minimal root: no /bin/kill");

    // --- quick start -------------------------------------------------------
    let deb_name = d.new.file_name().unwrap().to_str().unwrap();
    m.copy_in(&d.new, &format!("/root/{deb_name}"));
    let block = readme_block("## Quick start");
    assert!(
        block[0] == format!("sudo dpkg -i {deb_name}"),
        "README's quick start installs {:?}, the package is {deb_name}",
        block[0]
    );
    for line in &block {
        let cmd = line.strip_prefix("sudo ").unwrap_or(line);
        let t0 = Instant::now();
        let (code, out, err) = m.run(cmd);
        assert_eq!(code, 0, "[{suite}] README: {line}\n{out}{err}");
        println!(
            "[{suite}] README `{}`: exit 0 in {} ms",
            cmd.split('#').next().unwrap().trim(),
            t0.elapsed().as_millis()
        );
        if cmd.starts_with("dpkg -i") {
            // Installed, not enabled, not started.
            assert_eq!(m.run("systemctl is-enabled nftsentry").1.trim(), "disabled");
            assert_eq!(m.run("systemctl is-active nftsentry").1.trim(), "inactive");
            assert!(m.sh("nft list table inet nftsentry").status.code() != Some(0));
            println!("[{suite}] after dpkg -i: disabled, inactive, no table");
        }
        if cmd.starts_with("nftsentry check") {
            assert!(
                out.contains("service: nftsentry.service (/usr/lib/systemd/system/nftsentry.service) runs it as a user allocated at start"),
                "{out}"
            );
        }
    }
    // The start job ends at READY=1, which comes after the table.
    assert!(
        m.sh("nft list table inet nftsentry >/dev/null")
            .status
            .success()
    );
    assert_eq!(m.prop("nftsentry", "ActiveState"), "active");
    assert_eq!(m.prop("nftsentry", "SubState"), "running");
    assert_eq!(
        m.prop("nftsentry", "StatusText"),
        "0 bans active, 0 probes seen, 0 bans since start"
    );
    let boot_log = m.ok("journalctl -b -o cat --no-pager");
    let dropped = boot_log
        .find("adminalert: privileges dropped")
        .expect("privileges dropped line");
    let started = boot_log
        .find("Started nftsentry.service")
        .expect("Started line");
    assert!(dropped < started, "READY before the drop?\n{boot_log}");
    let uid = m.ok("stat -Lc %u /var/lib/nftsentry").trim().to_string();
    assert_ne!(uid, "0");
    println!(
        "[{suite}] enable --now: active (running) once READY=1 came, table in, status {:?}, dynamic uid {uid}",
        m.prop("nftsentry", "StatusText")
    );
    // The unit as systemd loaded it.
    let after = m.prop("nftsentry", "After");
    assert!(after.contains("time-sync.target"), "{after}");
    assert_eq!(m.prop("nftsentry", "TasksMax"), "256");
    assert_eq!(m.prop("nftsentry", "MemoryMax"), (256u64 << 20).to_string());
    let reload = m.prop("nftsentry", "ExecReloadEx");
    assert!(
        reload.contains("argv[]=/usr/sbin/nftsentry reload") && reload.contains("privileged"),
        "{reload}"
    );
    println!(
        "[{suite}] unit: After= has time-sync.target, TasksMax=256, MemoryMax=256M, ExecReload={reload}"
    );
    let security = m.ok("systemd-analyze security --no-pager nftsentry.service");
    let exposure: f64 = security
        .lines()
        .find(|l| l.contains("Overall exposure level for nftsentry.service"))
        .and_then(|l| l.rsplit_once(": "))
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("{security}"));
    assert!(exposure <= 2.0, "exposure {exposure}:\n{security}");
    println!("[{suite}] systemd-analyze security nftsentry (running): {exposure}");

    // --- a scan ------------------------------------------------------------
    scan(&pair, "-sS", ATTACKER4, "1");
    wait_banned(&m, ATTACKER4, "nmap -sS");
    assert!(
        m.ok("nft list set inet nftsentry blocked4")
            .contains(ATTACKER4)
    );
    let notice = journal_notice(&m);
    for want in [
        format!(
            "attackalert: TCP SYN/Normal scan from host: {ATTACKER4}/{ATTACKER4} to TCP port: 1"
        ),
        format!(
            "attackalert: Host {ATTACKER4} has been blocked via nftables set blocked4 in table inet nftsentry for 1d"
        ),
    ] {
        assert!(
            notice.contains(&want),
            "[{suite}] no notice {want:?}:\n{notice}"
        );
    }
    // The journal's fields beside the text: one source's story by its
    // address, each line with its MESSAGE_ID (issue 18).
    let story = m.ok(&format!(
        "journalctl -u nftsentry NFTSENTRY_SOURCE={ATTACKER4} -o export --no-pager | grep -aE '^(MESSAGE_ID|NFTSENTRY_[A-Z_]+|MESSAGE)='"
    ));
    for want in [
        format!("NFTSENTRY_SOURCE={ATTACKER4}"),
        "MESSAGE_ID=0c9e3a4d167d4b8aabb70bdd0c676279".to_string(),
        "MESSAGE_ID=44a23dc3c33f4542a0096aaacce411f7".to_string(),
        "NFTSENTRY_PORT=1".to_string(),
        format!(
            "MESSAGE=attackalert: TCP SYN/Normal scan from host: {ATTACKER4}/{ATTACKER4} to TCP port: 1"
        ),
    ] {
        assert!(
            story.lines().any(|l| l == want),
            "[{suite}] journalctl NFTSENTRY_SOURCE={ATTACKER4}: no {want:?}:\n{story}"
        );
    }
    println!(
        "[{suite}] journalctl NFTSENTRY_SOURCE={ATTACKER4}: {} lines with fields",
        story.lines().filter(|l| l.starts_with("MESSAGE=")).count()
    );
    let louder = m.ok("journalctl -u nftsentry -p warning -o cat --no-pager");
    assert!(!louder.contains("attackalert"), "{louder}");
    assert!(
        m.wait_ok(
            "systemctl show -P StatusText nftsentry | grep -qx '1 bans active, 1 probes seen, 1 bans since start'",
            Duration::from_secs(5)
        )
        .is_some(),
        "{}",
        m.prop("nftsentry", "StatusText")
    );
    assert!(!answers(&pair, ATTACKER4) && answers(&pair, "192.0.2.3"));
    println!(
        "[{suite}] nmap -sS from {ATTACKER4}: banned, attackalert lines at priority notice (5), status {:?}; pings from it dropped, from 192.0.2.3 answered",
        m.prop("nftsentry", "StatusText")
    );

    // --- reload --------------------------------------------------------------
    let reloads = |m: &Machine| {
        count(
            &journal_notice(m),
            "adminalert: configuration reloaded from",
        )
    };
    let before = reloads(&m);
    prepend(&m, "scan_window = \"2h\"\n");
    let (code, out, err) = m.run("systemctl reload nftsentry");
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(reloads(&m), before + 1, "one reload per systemctl reload");
    assert!(ban_of(&m, ATTACKER4).is_some());
    let pid = m.prop("nftsentry", "MainPID");
    prepend(&m, "ban_time = \"forever\"\n");
    let (code, out, err) = m.run("systemctl reload nftsentry");
    assert_ne!(code, 0, "a broken config reloaded: {out}{err}");
    assert!(err.contains("Job for nftsentry.service failed"), "{err}");
    assert_eq!(m.prop("nftsentry", "ActiveState"), "active");
    assert_eq!(m.prop("nftsentry", "MainPID"), pid);
    // (`nftsentry list` reads the broken config too: ask the kernel.)
    assert!(
        m.ok("nft list set inet nftsentry blocked4")
            .contains(ATTACKER4)
    );
    assert!(!answers(&pair, ATTACKER4));
    // The client reads the config first (for the control socket): a config
    // that does not load fails there, before the daemon is asked.
    let all = m.ok("journalctl -u nftsentry -o cat --no-pager");
    let named = all
        .lines()
        .find(|l| l.starts_with(&format!("nftsentry: {CONFIG}:1: key `ban_time`")))
        .unwrap_or_else(|| panic!("{all}"))
        .to_string();
    assert!(all.contains("status=78/CONFIG"), "{all}");
    unprepend(&m, 1);
    // One that loads but that the daemon cannot run with (the hosts.deny
    // of a PortSentry config: /etc is read-only under the unit): the daemon
    // refuses it and logs why at priority err; systemctl reload fails.
    prepend(&m, "hosts_deny = \"/etc/hosts.deny\"\n");
    let (code2, out, err2) = m.run("systemctl reload nftsentry");
    assert_ne!(code2, 0, "{out}{err2}");
    assert_eq!(m.prop("nftsentry", "MainPID"), pid);
    assert!(ban_of(&m, ATTACKER4).is_some());
    let errors = m.ok("journalctl -u nftsentry -p err..err -o cat --no-pager");
    let refused = errors
        .lines()
        .find(|l| {
            l.starts_with("adminalert: ERROR: reload refused")
                && l.contains("hosts_deny /etc/hosts.deny")
        })
        .unwrap_or_else(|| {
            panic!(
                "{errors}\n{}",
                m.ok(
                    "journalctl -u nftsentry -o export --no-pager | grep -aE '^(PRIORITY|MESSAGE)='"
                )
            )
        })
        .to_string();
    assert!(
        m.ok("journalctl -u nftsentry -o cat --no-pager")
            .contains("status=77/NOPERM")
    );
    unprepend(&m, 1);
    m.ok("systemctl reload nftsentry");
    assert_eq!(m.prop("nftsentry", "MainPID"), pid);
    println!(
        "[{suite}] systemctl reload: good config exit 0 (one reload); a config that does not load: exit {code}, journal {named:?}; one the daemon cannot run with: exit {code2}, journal (err) {refused:?}; still active, same PID, ban kept"
    );

    // --- restart -------------------------------------------------------------
    let (_, left) = ban_of(&m, ATTACKER4).unwrap();
    let t0 = Instant::now();
    m.ok("systemctl restart nftsentry");
    let (_, after) = ban_of(&m, ATTACKER4).expect("ban kept over restart");
    let spent = t0.elapsed().as_secs() + 2;
    assert!(after <= left && after + spent >= left, "{left} -> {after}");
    assert!(!answers(&pair, ATTACKER4));
    println!("[{suite}] systemctl restart: ban kept, {left} s left before, {after} s after");

    // --- nftables.service ----------------------------------------------------
    let conf = m.ok("grep -v '^#' /etc/nftables.conf | grep -m1 .");
    assert_eq!(conf.trim(), "flush ruleset");
    m.ok("systemctl restart nftables");
    let ruleset = m.ok("nft list tables");
    assert!(
        ruleset.contains("table inet filter") && ruleset.contains("table inet nftsentry"),
        "{ruleset}"
    );
    assert!(ban_of(&m, ATTACKER4).is_some());
    assert!(!answers(&pair, ATTACKER4) && answers(&pair, "192.0.2.3"));
    println!(
        "[{suite}] systemctl restart nftables (stock /etc/nftables.conf, `flush ruleset`): tables {:?}, ban still enforced",
        ruleset.split_whitespace().collect::<Vec<_>>().join(" ")
    );

    // --- watchdog -------------------------------------------------------------
    let pid = m.prop("nftsentry", "MainPID");
    let restarts: u32 = m.prop("nftsentry", "NRestarts").parse().unwrap();
    let watchdog = m.prop("nftsentry", "WatchdogUSec");
    let t0 = Instant::now();
    m.ok(&format!("kill -STOP {pid}"));
    let back = m.wait_ok(
        &format!(
            "test \"$(systemctl show -P MainPID nftsentry)\" != {pid} && systemctl is-active -q nftsentry && nft list set inet nftsentry blocked4 | grep -q {ATTACKER4}"
        ),
        Duration::from_secs(50),
    );
    let took = t0.elapsed();
    assert!(
        back.is_some(),
        "not restarted after SIGSTOP:\n{}",
        m.ok("journalctl -u nftsentry -n 30 --no-pager")
    );
    let log = m.ok("journalctl -u nftsentry -o cat --no-pager");
    assert!(log.contains("Watchdog timeout"), "{log}");
    assert!(took <= Duration::from_secs(30 + 2 + 4), "{took:?}");
    assert_eq!(
        m.prop("nftsentry", "NRestarts").parse::<u32>().unwrap(),
        restarts + 1
    );
    assert!(ban_of(&m, ATTACKER4).is_some() && !answers(&pair, ATTACKER4));
    println!(
        "[{suite}] watchdog (WatchdogSec={watchdog}): SIGSTOP'd daemon killed and restarted by systemd, active again {:.1} s after the stop, ban kept",
        took.as_secs_f64()
    );

    // --- hosts.deny and a command, inside the sandbox ---------------------
    m.write(
        "/usr/local/sbin/notify",
        "#!/bin/sh\nlogger -t nftsentry-notify \"ban $1 port $2 by uid $(id -u)\"\n",
        0o755,
    );
    // As README and nftsentry(8) say: the file in the state directory, one
    // line in /etc/hosts.deny.
    prepend(
        &m,
        "hosts_deny = \"/var/lib/nftsentry/hosts.deny\"\nhosts_deny_line = \"$TARGET$\"\ncommand = [\"/usr/local/sbin/notify\", \"$TARGET$\", \"$PORT$\"]\n",
    );
    m.ok("echo 'ALL: /var/lib/nftsentry/hosts.deny' >> /etc/hosts.deny");
    m.ok("nftsentry check");
    m.ok("systemctl reload nftsentry");
    scan(&pair, "-sS", "192.0.2.4", "11");
    wait_banned(&m, "192.0.2.4", "nmap -sS from .4");
    let deny = m
        .wait_ok(
            "grep -x 192.0.2.4 /var/lib/nftsentry/hosts.deny",
            Duration::from_secs(5),
        )
        .expect("hosts.deny line");
    let denied = m.ok("tcpdmatch sshd 192.0.2.4");
    assert!(denied.contains("access:   denied"), "{denied}");
    assert!(
        m.ok("tcpdmatch sshd 192.0.2.3")
            .contains("access:   granted")
    );
    let notified = m
        .wait_ok(
            "journalctl -t nftsentry-notify -o cat --no-pager | grep 'ban 192.0.2.4 port 11'",
            Duration::from_secs(5),
        )
        .expect("the command ran");
    assert!(!notified.contains("by uid 0"), "{notified}");
    let notice = journal_notice(&m);
    assert!(
        notice.contains(
            "attackalert: Host 192.0.2.4 has been blocked via wrappers with string: \"192.0.2.4\""
        ),
        "{notice}"
    );
    assert!(notice.contains("attackalert: External command run for host: 192.0.2.4 using command: \"/usr/local/sbin/notify 192.0.2.4 11\""), "{notice}");
    println!(
        "[{suite}] hosts.deny recipe: {:?} in /var/lib/nftsentry/hosts.deny, tcpdmatch: denied; command: {:?}",
        deny.trim(),
        notified.trim()
    );

    // --- history and its rotation ------------------------------------------
    let history = m.ok("cat /var/lib/nftsentry/history");
    assert_eq!(history.lines().count(), 2, "{history}");
    let regex =
        m.ok("fail2ban-regex /var/lib/nftsentry/history /etc/fail2ban/filter.d/portsentry.conf");
    assert!(regex.contains("2 matched"), "{regex}");
    let owner = m.ok("stat -c '%u %a' /var/lib/nftsentry/history");
    m.ok("logrotate -f /etc/logrotate.d/nftsentry");
    assert_eq!(m.ok("cat /var/lib/nftsentry/history.1"), history);
    assert_eq!(m.ok("stat -c '%u %a' /var/lib/nftsentry/history"), owner);
    assert_eq!(m.ok("wc -c < /var/lib/nftsentry/history").trim(), "0");
    scan(&pair, "-sS", "192.0.2.5", "1");
    wait_banned(&m, "192.0.2.5", "nmap -sS from .5");
    let new = m
        .wait_ok(
            "grep 'Host: 192.0.2.5/192.0.2.5 Port: 1 TCP Blocked' /var/lib/nftsentry/history",
            Duration::from_secs(5),
        )
        .expect("the next ban in the new history file");
    assert_eq!(m.ok("cat /var/lib/nftsentry/history").lines().count(), 1);
    println!(
        "[{suite}] history: 2 lines, fail2ban-regex: 2 matched; logrotate -f: history.1 holds them, new file (owner and mode {:?}) gets the next ban: {:?}",
        owner.trim(),
        new.trim()
    );

    // --- dpkg -r, --purge ---------------------------------------------------
    let out = m.ok("dpkg -r nftsentry 2>&1");
    assert!(
        m.run("systemctl is-active nftsentry").1.trim() != "active",
        "{out}"
    );
    let tables = m.ok("nft list tables");
    assert!(!tables.contains("nftsentry"), "{tables}");
    assert!(answers(&pair, ATTACKER4));
    assert!(
        m.sh("test -f /var/lib/private/nftsentry/state && test -f /etc/nftsentry/nftsentry.toml")
            .status
            .success()
    );
    println!(
        "[{suite}] dpkg -r: service stopped, table gone ({:?}), the attacker answered again; config and state kept",
        tables.trim()
    );
    m.ok("dpkg --purge nftsentry");
    for gone in [
        "/var/lib/nftsentry",
        "/var/lib/private/nftsentry",
        "/etc/nftsentry",
        "/etc/logrotate.d/nftsentry",
    ] {
        assert!(
            m.sh(&format!("test -e {gone} || test -L {gone}"))
                .status
                .code()
                == Some(1),
            "{gone} left after purge"
        );
    }
    println!(
        "[{suite}] dpkg --purge: /var/lib/nftsentry, /var/lib/private/nftsentry, /etc/nftsentry gone"
    );

    // --- an upgrade over an older package -----------------------------------
    let old_name = d.old.file_name().unwrap().to_str().unwrap();
    m.copy_in(&d.old, &format!("/root/{old_name}"));
    m.ok(&format!(
        "dpkg -i {old_name} && systemctl daemon-reload && systemctl enable --now nftsentry"
    ));
    prepend(&m, "ban_time = \"2h\"\n");
    m.ok("systemctl restart nftsentry");
    m.ok("nftsentry block 198.51.100.20");
    let (length, left) = ban_of(&m, "198.51.100.20").unwrap();
    assert_eq!(length, 7200);
    let pid = m.prop("nftsentry", "MainPID");
    let t0 = Instant::now();
    let out = m.ok(&format!("dpkg -i {deb_name} 2>&1"));
    assert!(
        out.contains(&format!("Setting up nftsentry ({VERSION}-1)")),
        "{out}"
    );
    assert_ne!(
        m.prop("nftsentry", "MainPID"),
        pid,
        "not restarted by the upgrade"
    );
    assert_eq!(m.prop("nftsentry", "ActiveState"), "active");
    assert_eq!(m.run("systemctl is-enabled nftsentry").1.trim(), "enabled");
    assert!(
        m.prop("nftsentry", "ExecReloadEx")
            .contains("nftsentry reload")
    );
    assert_eq!(
        m.ok(&format!("head -1 {CONFIG}")).trim(),
        "ban_time = \"2h\""
    );
    assert!(m.sh("ls /etc/nftsentry/*.dpkg-* 2>/dev/null").status.code() != Some(0));
    let (length2, left2) = ban_of(&m, "198.51.100.20").expect("ban kept over the upgrade");
    assert_eq!(length2, 7200);
    assert!(
        left2 <= left && left2 + t0.elapsed().as_secs() + 2 >= left,
        "{left} -> {left2}"
    );
    assert!(m.sh("test -f /etc/logrotate.d/nftsentry").status.success());
    println!(
        "[{suite}] upgrade {VERSION}-0 (no scripts, /bin/kill reload) -> {VERSION}-1: restarted by postinst, still enabled, conffile kept (ban_time = \"2h\"), ban kept ({left} -> {left2} s left), logrotate file added"
    );
    drop(m);
}

/// A PortSentry system as admins have them, migrated word for word.
fn migration(image: &Image, d: &Debs) {
    let suite = image.suite.as_str();
    let pair = pair(&format!("m{}", &suite[..2]));
    let m = Machine::boot(image, &pair.victim, &format!("p{}", &suite[..2]));
    // PortSentry from the Debian archive, blocking on, the dummy-gateway
    // route and hosts.deny of its examples, its history in /var/lib/portsentry,
    // and a fail2ban jail on that history.
    m.ok("DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-download portsentry");
    m.ok(
        "sed -i -e 's/^BLOCK_TCP=.*/BLOCK_TCP=\"1\"/' -e 's/^BLOCK_UDP=.*/BLOCK_UDP=\"1\"/' \
         -e 's|^KILL_ROUTE=.*|KILL_ROUTE=\"/sbin/route add -host $TARGET$ gw 333.444.555.666\"|' /etc/portsentry/portsentry.conf",
    );
    let ps = m.ok("grep -E '^(BLOCK_|KILL_|HISTORY_FILE)' /etc/portsentry/portsentry.conf");
    assert!(
        ps.contains("KILL_HOSTS_DENY=\"ALL: $TARGET$ : DENY\"")
            && ps.contains("HISTORY_FILE=\"/var/lib/portsentry/portsentry.history\""),
        "{ps}"
    );
    m.write(
        "/etc/fail2ban/jail.d/portsentry.local",
        "[portsentry]\nenabled = true\n\n[sshd]\n# no sshd on this system\nenabled = false\n",
        0o644,
    );
    // Debian 12 starts PortSentry's init script; Debian 13 has units named
    // by mode, which its package does not enable on a first install.
    let units = if m
        .sh("test -e /usr/lib/systemd/system/portsentry@.service")
        .status
        .success()
    {
        m.ok("systemctl enable --now portsentry@tcp portsentry@udp 2>&1");
        vec!["portsentry@tcp", "portsentry@udp"]
    } else {
        m.ok("systemctl restart portsentry");
        vec!["portsentry"]
    };
    for u in &units {
        assert_eq!(
            m.run(&format!("systemctl is-active {u}")).1.trim(),
            "active",
            "{u}"
        );
    }
    println!(
        "[{suite}] PortSentry {} running ({}) with {}",
        m.ok("dpkg-query -W -f '${Version}' portsentry"),
        units.join(", "),
        ps.split_whitespace().collect::<Vec<_>>().join(" ")
    );

    let deb_name = d.new.file_name().unwrap().to_str().unwrap();
    m.copy_in(&d.new, &format!("/root/{deb_name}"));
    m.ok(&format!("dpkg -i {deb_name}"));

    // The recipe, word for word.
    let block = readme_block("## Migrating from PortSentry");
    let mut todo = String::new();
    for line in &block {
        let cmd = line.strip_prefix("sudo ").unwrap_or(line);
        let (code, out, err) = m.run(cmd);
        assert_eq!(
            code, 0,
            "[{suite}] README: {line}\nstdout: {out}\nstderr: {err}"
        );
        println!(
            "[{suite}] README `{}`: exit 0",
            cmd.split('#').next().unwrap().trim()
        );
        if cmd.contains("import-portsentry") {
            todo = err
                .split_once("nftsentry: to finish the migration, run as root:\n")
                .unwrap_or_else(|| panic!("no steps on standard error:\n{err}"))
                .1
                .to_string();
        }
        if cmd.contains(" check") {
            assert!(
                out.contains("history file: /var/lib/nftsentry/history"),
                "{out}"
            );
        }
    }
    // The README shows what the import prints for Debian's config.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let shown = readme
        .split_once("```\nnftsentry: to finish the migration, run as root:\n")
        .and_then(|(_, r)| r.split_once("```"))
        .expect("README shows the steps")
        .0;
    // Debian 12's steps as they are; Debian 13's first step disables its
    // units instead of the init script.
    if units == ["portsentry"] {
        assert_eq!(
            shown, todo,
            "README's steps differ from what import-portsentry printed"
        );
    } else {
        let tail = |t: &str| t[t.find("    # hosts.deny:").unwrap()..].to_string();
        assert_eq!(
            tail(shown),
            tail(&todo),
            "README's steps differ from the import's"
        );
        assert!(
            todo.contains(
                "\n    systemctl disable --now portsentry@tcp.service portsentry@udp.service\n"
            ),
            "{todo}"
        );
        assert!(readme.contains(
            "step is `systemctl disable --now portsentry@tcp.service\nportsentry@udp.service`"
        ));
    }
    for u in &units {
        assert_ne!(
            m.run(&format!("systemctl is-active {u}")).1.trim(),
            "active",
            "{u}"
        );
    }
    assert_eq!(m.prop("nftsentry", "ActiveState"), "active");
    // What import-portsentry printed on standard error, run as it says.
    let steps: Vec<&str> = todo
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or_else(|| panic!("{todo}")))
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(
        steps.iter().any(|s| s.contains("/etc/hosts.deny")),
        "{todo}"
    );
    assert!(
        steps.iter().any(|s| s.contains("/etc/fail2ban/jail.d/")),
        "{todo}"
    );
    for s in &steps {
        m.ok(s);
    }
    println!("[{suite}] steps printed by import-portsentry, run: {steps:?}");
    for u in &units {
        assert_eq!(
            m.run(&format!("systemctl is-enabled {u}")).1.trim(),
            "disabled",
            "{u}"
        );
    }
    let deny = m.ok("grep nftsentry /etc/hosts.deny");
    assert_eq!(deny.trim(), "ALL: /var/lib/nftsentry/hosts.deny : DENY");

    // Debian's portsentry runs in classic (connect) mode: a connect scan.
    scan(&pair, "-sT", ATTACKER4, "1");
    wait_banned(&m, ATTACKER4, "nmap -sT");
    // (No ip(8) on the minimal system: the host's, in its namespace.)
    let route = text(
        &pair
            .victim
            .ip(&["route", "show", ATTACKER4, "table", "all"])
            .stdout,
    );
    assert!(
        route.contains("blackhole") && route.contains("proto 110"),
        "{route}"
    );
    m.wait_ok(
        &format!("grep -x {ATTACKER4} /var/lib/nftsentry/hosts.deny"),
        Duration::from_secs(5),
    )
    .expect("hosts.deny line");
    let denied = m.ok(&format!("tcpdmatch in.telnetd {ATTACKER4}"));
    assert!(denied.contains("access:   denied"), "{denied}");
    let history = m
        .wait_ok(&format!("grep 'Host: {ATTACKER4}/{ATTACKER4} Port: 1 TCP Blocked' /var/lib/nftsentry/history"), Duration::from_secs(5))
        .expect("history line");
    let regex =
        m.ok("fail2ban-regex /var/lib/nftsentry/history /etc/fail2ban/filter.d/portsentry.conf");
    assert!(regex.contains("1 matched"), "{regex}");
    let jail = m.ok("fail2ban-client -d 2>/dev/null | grep \"'portsentry', 'addlogpath'\"");
    assert!(jail.contains("/var/lib/nftsentry/history"), "{jail}");
    println!(
        "[{suite}] migrated: active, nmap -sT banned (route {:?}), {ATTACKER4} in /var/lib/nftsentry/hosts.deny, tcpdmatch: denied; history {:?}, fail2ban-regex: 1 matched, jail: {}",
        route.trim(),
        history.trim(),
        jail.trim()
    );
    // What the recipe did without the importer's fix: the old config, with
    // PortSentry's paths, is refused by `check` under the unit.
    m.write(
        "/root/old.toml",
        "history_file = \"/var/lib/portsentry/portsentry.history\"\nhosts_deny = \"/etc/hosts.deny\"\nhosts_deny_line = \"ALL: $TARGET$ : DENY\"\n",
        0o644,
    );
    let (code, _, err) = m.run("nftsentry -c /root/old.toml check");
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("/root/old.toml:1: history_file \"/var/lib/portsentry/portsentry.history\": the service cannot append to it: /var/lib/portsentry is read-only under nftsentry.service"), "{err}");
    println!(
        "[{suite}] check of PortSentry's paths under the unit: exit 78: {:?}",
        err.lines().nth(1).unwrap_or("").trim()
    );
}

fn system(suite: &str) {
    require_root();
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let Some(image) = Image::get(suite) else {
        return;
    };
    match image.built_in {
        Some(d) => println!(
            "[{suite}] image built by debootstrap in {:.0} s",
            d.as_secs_f64()
        ),
        None => println!("[{suite}] image from the cache: {}", image.root.display()),
    }
    let d = debs();
    let t1 = Instant::now();
    service(&image, &d);
    let t2 = Instant::now();
    migration(&image, &d);
    println!(
        "[{suite}] done in {:.0} s (service {:.0} s, migration {:.0} s)",
        t0.elapsed().as_secs_f64(),
        (t2 - t1).as_secs_f64(),
        t2.elapsed().as_secs_f64()
    );
}

#[test]
fn debian_12_bookworm() {
    system("bookworm");
}

#[test]
fn debian_13_trixie() {
    system("trixie");
}

#[test]
fn readme_blocks_are_found() {
    assert!(readme_block("## Quick start").len() >= 3);
    assert!(readme_block("## Migrating from PortSentry").len() >= 4);
    let _ = Path::new("/");
}
