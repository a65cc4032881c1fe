//! planted: what others may put where root's nftsentry writes (issue 14).
//! Root writes into a directory of the daemon's account (nobody here) when
//! the command line changes bans with the daemon stopped and when a daemon
//! started as root sets up, and a daemon left as root appends its history
//! wherever `history_file` says, here also in a root-owned directory that
//! its group may write (as /var/log with group adm on some systems). There
//! nobody plants a symbolic link or a hard link to a root-owned file, a
//! file of its own, or (as a group-writable directory lets another user) a
//! file of a third user, at `state.lock`, `.state.tmp.<pid>` and `history`:
//! root's `nftsentry block` and a daemon start never write through them
//! nor give their targets away, and the bans go in. And the state file
//! itself is read only when nobody else could have put it there: a file
//! group or others may write, a link, a FIFO, or a file of a third user is
//! refused with an error, moved aside, and the daemon starts without its
//! bans (root; fails without it).
//!
//! Linux's fs.protected_hardlinks (1 on most distributions) already stops
//! nobody from linking a root-owned file it may not read and write: the
//! test notes it and then plants the link as root, as a host without that
//! setting would let nobody do.
mod common;
use common::*;

use nix::sys::signal::Signal;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const NOBODY: u32 = 65534;
/// A user that is neither root nor the directory's owner.
const OTHER: u32 = 65533;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `sh -c script` as nobody.
fn as_nobody(script: &str) -> Output {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .output()
        .unwrap()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Plant {
    Symlink,
    HardLink,
    /// nobody's own file: the directory's owner may keep files there.
    Own,
    /// A file of a third user.
    Other,
}

/// A state directory of nobody's, and root's files elsewhere in the same
/// tree that the plants point at.
struct Scene {
    dir: TempDir,
    var: PathBuf,
    /// root's, but its group (nogroup) may write it, as /var/log is
    /// writable by adm on some systems.
    shared: PathBuf,
    targets: PathBuf,
}

impl Scene {
    fn new(tag: &str) -> Scene {
        let dir = TempDir::new(tag);
        // Others must be able to reach nobody's directory.
        std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let var = dir.path.join("var");
        let targets = dir.path.join("root");
        std::fs::create_dir(&var).unwrap();
        std::os::unix::fs::chown(&var, Some(NOBODY), Some(NOBODY)).unwrap();
        std::fs::create_dir(&targets).unwrap();
        let shared = dir.path.join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::os::unix::fs::chown(&shared, Some(0), Some(NOBODY)).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o775)).unwrap();
        Scene {
            dir,
            var,
            shared,
            targets,
        }
    }

    /// A root-owned file, 0600, that nothing may write or give away.
    fn target(&self, name: &str) -> PathBuf {
        let p = self.targets.join(name);
        if !p.exists() {
            std::fs::write(&p, format!("root's {name}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        p
    }

    /// Puts `plant` at `name` in nobody's directory.
    fn plant(&self, plant: Plant, name: &str) {
        self.plant_in(&self.var, plant, name)
    }

    /// Puts `plant` at `name` in `dir`, as nobody.
    fn plant_in(&self, dir: &Path, plant: Plant, name: &str) {
        let at = dir.join(name);
        let _ = std::fs::remove_file(&at);
        let target = self.target(name);
        let sh = |s: &str| {
            let o = as_nobody(s);
            assert!(o.status.success(), "{s}: {}", stderr(&o));
        };
        match plant {
            Plant::Symlink => sh(&format!("ln -s '{}' '{}'", target.display(), at.display())),
            Plant::HardLink => {
                let o = as_nobody(&format!("ln '{}' '{}'", target.display(), at.display()));
                if !o.status.success() {
                    // fs.protected_hardlinks stopped nobody: root plants it.
                    assert!(
                        stderr(&o).contains("Operation not permitted"),
                        "{}",
                        stderr(&o)
                    );
                    std::fs::hard_link(&target, &at).unwrap();
                }
            }
            Plant::Own => sh(&format!("echo nobody > '{}'", at.display())),
            Plant::Other => {
                // Writable by all, so that only nftsentry's own check
                // stands between a writer and this file.
                std::fs::write(&at, "another user's\n").unwrap();
                std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o666)).unwrap();
                std::os::unix::fs::chown(&at, Some(OTHER), Some(OTHER)).unwrap();
            }
        }
    }

    /// What happened to the targets: given away, their mode changed,
    /// written through a plant.
    fn damage(&self) -> Vec<String> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.targets).unwrap() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            let m = std::fs::metadata(&p).unwrap();
            if (m.uid(), m.gid(), m.mode() & 0o7777) != (0, 0, 0o600) {
                out.push(format!(
                    "root's {name} was given away or its mode changed: uid {}, gid {}, mode {:04o}",
                    m.uid(),
                    m.gid(),
                    m.mode() & 0o7777
                ));
            }
            let text = std::fs::read_to_string(&p).unwrap();
            if text != format!("root's {name}\n") {
                out.push(format!(
                    "root's {name} was written through a plant: {text:?}"
                ));
            }
        }
        out
    }

    /// Every target is as it was made: root's, 0600, its text.
    fn targets_intact(&self, what: &str) {
        let damage = self.damage();
        assert!(damage.is_empty(), "{what}: {damage:?}");
    }

    /// A plant of nobody's own or of the third user is still theirs (and
    /// the third user's unwritten).
    fn plant_unchanged(&self, plant: Plant, name: &str) {
        self.plant_unchanged_in(&self.var, plant, name)
    }

    fn plant_unchanged_in(&self, dir: &Path, plant: Plant, name: &str) {
        let want = match plant {
            Plant::Own => NOBODY,
            Plant::Other => OTHER,
            _ => return,
        };
        let at = dir.join(name);
        let m = std::fs::symlink_metadata(&at).unwrap();
        assert_eq!(m.uid(), want, "{name} changed hands");
        if plant == Plant::Other {
            assert_eq!(
                std::fs::read_to_string(&at).unwrap(),
                "another user's\n",
                "{name}: another user's file was written"
            );
        }
    }

    /// A config `name`: the state file in `state_dir` (the history file
    /// and control socket there too, unless `history_dir`), the daemon
    /// switching to nobody if `user`. Keeps the table when the daemon stops:
    /// the command line, with no daemon, bans into it.
    fn config(
        &self,
        name: &str,
        user: bool,
        state_dir: &Path,
        history_dir: Option<&Path>,
    ) -> PathBuf {
        let ignore = self.dir.file("ignore", "# nothing\n");
        let user = if user { "user = \"nobody\"\n" } else { "" };
        let history = history_dir.map_or(String::new(), |d| {
            format!("history_file = \"{}\"\n", d.join("history").display())
        });
        let files = private_files(state_dir)
            .lines()
            .filter(|l| history.is_empty() || !l.starts_with("history_file"))
            .map(|l| format!("{l}\n"))
            .collect::<String>();
        self.dir.file(
            name,
            &format!(
                "ignore_file = \"{}\"\nkeep_table_on_exit = true\n{user}{files}{history}[tcp]\nports = \"1\"\n[udp]\nports = \"7\"\n",
                ignore.display(),
            ),
        )
    }

    /// A directory of root's in the scene, for files of a daemon that
    /// stays root.
    fn root_dir(&self) -> PathBuf {
        let d = self.dir.path.join("private");
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

/// Removes, when dropped, the claim file that daemons of `ns` leave behind
/// when they ran as nobody (who may not remove root's file in root's
/// /run/nftsentry) or were killed.
struct ClaimFile(PathBuf);

impl ClaimFile {
    fn of(ns: &Netns) -> ClaimFile {
        let ino = std::fs::metadata(format!("/var/run/netns/{}", ns.name))
            .unwrap()
            .ino();
        ClaimFile(PathBuf::from(format!(
            "/run/nftsentry/netns-{ino}.inet.nftsentry.lock"
        )))
    }
}

impl Drop for ClaimFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `nftsentry ARGS` in `ns` as pid 1 of a new pid namespace, so that the
/// name of its temporary state file, `.state.tmp.1`, is known beforehand.
fn pid1(ns: &Netns, cfg: &Path, args: &[&str]) -> Command {
    let mut c = ns.cmd("unshare");
    c.args(["--pid", "--fork"])
        .arg(nftsentry_bin())
        .arg("-c")
        .arg(cfg)
        .args(args);
    c
}

fn block(ns: &Netns, cfg: &Path, addr: &str) -> Output {
    pid1(ns, cfg, &["block", addr, "--for", "1h"])
        .output()
        .unwrap()
}

fn banned(ns: &Netns, addr: &str) -> bool {
    ns.nft(&["list", "set", "inet", "nftsentry", "blocked4"])
        .contains(addr)
}

fn table_present(ns: &Netns) -> bool {
    ns.cmd("nft")
        .args(["list", "table", "inet", "nftsentry"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A daemon running as pid 1 of its own pid namespace.
struct Daemon {
    /// `unshare`, our child.
    unshare: u32,
    /// The daemon itself, unshare's child.
    pid: u32,
    log: PathBuf,
}

impl Daemon {
    fn start(ns: &mut Netns, cfg: &Path, log: &Path) -> Daemon {
        let mut c = pid1(ns, cfg, &["run"]);
        c.stderr(std::fs::File::create(log).unwrap());
        let unshare = ns.spawn(&mut c);
        let children = format!("/proc/{unshare}/task/{unshare}/children");
        let mut pid = None;
        assert!(
            wait_until(Duration::from_secs(10), || {
                pid = std::fs::read_to_string(&children)
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse().ok());
                pid.is_some() && table_present(ns)
            }),
            "daemon did not install its table; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        Daemon {
            unshare,
            pid: pid.unwrap(),
            log: log.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(self, ns: &mut Netns) {
        signal(self.pid, Signal::SIGTERM);
        let status = ns.take_child(self.unshare).wait().unwrap();
        assert!(
            status.success(),
            "daemon exit {status}; log:\n{}",
            self.log()
        );
    }
}

/// A SYN to the watched port 1 from the attacker: banned, and a history
/// line is due.
fn probe(pair: &Pair, d: &Daemon) {
    run_ok(pair.attacker.cmd("nmap").args([
        "-sS",
        "-T5",
        "--max-retries",
        "0",
        "-Pn",
        "-n",
        "-p",
        "1",
        VICTIM4,
    ]));
    assert!(
        wait_until(Duration::from_secs(5), || banned(&pair.victim, ATTACKER4)),
        "no ban; log:\n{}",
        d.log()
    );
}

#[test]
fn a_planted_lock_file_is_refused_never_written_through_or_given_away() {
    let scene = Scene::new("plock");
    // Root's command line, and a daemon that root starts with
    // `user = "nobody"` (it sets up as nobody, keeping root's capabilities).
    let cfg = scene.config("nftsentry.toml", true, &scene.var, None);
    let mut ns = Netns::new("plock");
    let _claim = ClaimFile::of(&ns);
    // The table the command line bans into, left by a daemon.
    let d = Daemon::start(&mut ns, &cfg, &scene.dir.path.join("log"));
    d.stop(&mut ns);
    for f in ["state", "state.lock", "history"] {
        let _ = std::fs::remove_file(scene.var.join(f));
    }
    let lock = scene.var.join("state.lock");
    for (plant, why) in [
        (Plant::HardLink, "refused: it has 2 hard links"),
        (
            Plant::Symlink,
            "refused: it is a symbolic link, not a regular file",
        ),
        (
            Plant::Other,
            // "(the owner of its directory)" from root, "(this process)"
            // from the daemon, now nobody.
            "refused: it belongs to uid 65533, not to root or uid 65534 (",
        ),
    ] {
        scene.plant(plant, "state.lock");
        let o = block(&ns, &cfg, "198.51.100.7");
        let e = stderr(&o);
        scene.targets_intact(&format!("{plant:?} at state.lock, block"));
        assert!(!o.status.success(), "{plant:?}: {e}");
        let want = format!("cannot lock {}: {why}", lock.display());
        assert!(e.contains(&want), "{plant:?}: want {want}\ngot {e}");
        // A daemon start refuses it the same way, and exits.
        let o = ns
            .cmd("timeout")
            .arg("20")
            .arg(nftsentry_bin())
            .arg("-c")
            .arg(&cfg)
            .arg("run")
            .output()
            .unwrap();
        let e = stderr(&o);
        scene.targets_intact(&format!("{plant:?} at state.lock, run"));
        assert_eq!(o.status.code(), Some(1), "{plant:?}: {e}");
        assert!(e.contains(&want), "{plant:?}: want {want}\ngot {e}");
        scene.plant_unchanged(plant, "state.lock");
    }
    // nobody's own lock file is the directory owner's to keep: used as it is.
    scene.plant(Plant::Own, "state.lock");
    let o = block(&ns, &cfg, "198.51.100.7");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(banned(&ns, "198.51.100.7"));
    scene.plant_unchanged(Plant::Own, "state.lock");
    scene.targets_intact("nobody's own state.lock");
}

#[test]
fn planted_temporary_files_are_never_written_through_or_given_away() {
    let scene = Scene::new("ptmp");
    let mut pair = Pair::new("ptmp");
    let _claim = ClaimFile::of(&pair.victim);
    let cfg = scene.config("nftsentry.toml", true, &scene.var, None);
    let tmp = ".state.tmp.1";
    let state = scene.var.join("state");
    for (n, plant) in [Plant::Symlink, Plant::HardLink, Plant::Other, Plant::Own]
        .into_iter()
        .enumerate()
    {
        let what = format!("{plant:?} at {tmp}");
        // A daemon (root, becoming nobody) writes the state file through
        // `.state.tmp.1` when it bans.
        scene.plant(plant, tmp);
        let d = Daemon::start(
            &mut pair.victim,
            &cfg,
            &scene.dir.path.join(format!("log-{n}")),
        );
        probe(&pair, &d);
        assert!(
            wait_until(Duration::from_secs(10), || std::fs::read_to_string(&state)
                .is_ok_and(|s| s.contains(ATTACKER4))),
            "{what}: the ban is not in the state file; log:\n{}",
            d.log()
        );
        d.stop(&mut pair.victim);
        scene.targets_intact(&format!("{what}, daemon"));
        // Root's command line, no daemon, through `.state.tmp.1` again.
        scene.plant(plant, tmp);
        let addr = format!("198.51.100.{}", 10 + n);
        let o = block(&pair.victim, &cfg, &addr);
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        assert!(banned(&pair.victim, &addr), "{what}");
        scene.targets_intact(&format!("{what}, block"));
        let m = std::fs::symlink_metadata(&state).unwrap();
        assert!(m.file_type().is_file() && m.nlink() == 1, "{what}");
        assert_eq!(
            m.uid(),
            NOBODY,
            "{what}: the state file is not the directory owner's"
        );
        assert!(std::fs::read_to_string(&state).unwrap().contains(&addr));
        assert!(
            std::fs::symlink_metadata(scene.var.join(tmp)).is_err(),
            "{what}: left behind"
        );
        // The attacker unbanned, a clean slate for the next round.
        pair.victim
            .nft(&["flush", "set", "inet", "nftsentry", "blocked4"]);
        let _ = std::fs::remove_file(&state);
    }
}

#[test]
fn a_planted_history_file_is_never_written_through_or_given_away() {
    let scene = Scene::new("phist");
    let mut pair = Pair::new("phist");
    let _claim = ClaimFile::of(&pair.victim);
    // A daemon that stays root, its state file in root's directory and its
    // history file in a directory that root's group nogroup may write (root
    // appends there at every ban), or in nobody's.
    let private = scene.root_dir();
    let shared_cfg = scene.config("shared.toml", false, &private, Some(&scene.shared));
    let root_cfg = scene.config("root.toml", false, &private, Some(&scene.var));
    // One that becomes nobody, all its files in nobody's directory.
    let nobody_cfg = scene.config("nobody.toml", true, &scene.var, None);
    for (n, (plant, cfg, dir)) in [
        (Plant::Symlink, &shared_cfg, &scene.shared),
        (Plant::HardLink, &shared_cfg, &scene.shared),
        (Plant::Other, &shared_cfg, &scene.shared),
        (Plant::Symlink, &root_cfg, &scene.var),
        (Plant::HardLink, &root_cfg, &scene.var),
        (Plant::Other, &root_cfg, &scene.var),
        // nobody's daemon writes its history after the drop, without
        // capabilities: the kernel keeps it out of root's files (its start
        // stops at a link to one, "cannot write it"), not out of these.
        (Plant::Other, &nobody_cfg, &scene.var),
        (Plant::Own, &nobody_cfg, &scene.var),
    ]
    .into_iter()
    .enumerate()
    {
        let what = format!("{plant:?} at history, {}", cfg.display());
        let history = dir.join("history");
        scene.plant_in(dir, plant, "history");
        let d = Daemon::start(
            &mut pair.victim,
            cfg,
            &scene.dir.path.join(format!("log-{n}")),
        );
        probe(&pair, &d);
        if plant == Plant::Own {
            let line = format!("Host: {ATTACKER4}/{ATTACKER4} Port: 1 TCP Blocked");
            assert!(
                wait_until(Duration::from_secs(5), || std::fs::read_to_string(&history)
                    .is_ok_and(|h| h.starts_with("nobody\n") && h.contains(&line))),
                "{what}: no history line; log:\n{}",
                d.log()
            );
            let m = std::fs::symlink_metadata(&history).unwrap();
            assert_eq!((m.uid(), m.nlink()), (NOBODY, 1), "{what}");
        } else {
            let refused = format!("cannot write history file {}: refused", history.display());
            wait_until(Duration::from_secs(5), || {
                d.log().contains(&refused) || !scene.damage().is_empty()
            });
            scene.targets_intact(&what);
            scene.plant_unchanged_in(dir, plant, "history");
            assert!(
                d.log().contains(&refused),
                "{what}: no refusal; log:\n{}",
                d.log()
            );
        }
        d.stop(&mut pair.victim);
        scene.targets_intact(&what);
        scene.plant_unchanged_in(dir, plant, "history");
        pair.victim
            .nft(&["flush", "set", "inet", "nftsentry", "blocked4"]);
        let _ = std::fs::remove_file(&history);
        for dir in [&scene.var, &private] {
            let _ = std::fs::remove_file(dir.join("state"));
        }
    }
}

/// A state file with one live ban of `addr`.
fn state_text(addr: &str) -> String {
    use nftsentry::journal::state::{Applied, Entry, render};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let e = Entry {
        addr: addr.parse().unwrap(),
        scan: "manual".into(),
        proto: None,
        mode: "manual".into(),
        port: 0,
        banned_at: now,
        expires_at: now + 3_600_000,
        length: 3_600_000,
        repeat: 1,
        evidence: nftsentry::strength::Strength::Manual,
        applied: Applied {
            set: true,
            ..Applied::default()
        },
    };
    render([&e])
}

#[test]
fn a_state_file_that_could_have_been_planted_is_refused_and_the_daemon_starts() {
    let ns_name = "pstate";
    let mut ns = Netns::new(ns_name);
    let _claim = ClaimFile::of(&ns);
    let dir = TempDir::new(ns_name);
    let var = dir.path.join("var");
    std::fs::create_dir(&var).unwrap();
    let state = var.join("state");
    let cfg = dir.file(
        "nftsentry.toml",
        &format!("ignore_file = \"\"\n{}", private_files(&var)),
    );
    let elsewhere = dir.path.join("elsewhere");
    type Make = fn(&Path, &Path, &str);
    let cases: [(&str, Make, &str); 5] = [
        (
            "mode 0666",
            |state, _, text| {
                std::fs::write(state, text).unwrap();
                std::fs::set_permissions(state, std::fs::Permissions::from_mode(0o666)).unwrap();
            },
            "its mode is 0666: group or others may write it",
        ),
        (
            "a symbolic link",
            |state, elsewhere, text| {
                std::fs::write(elsewhere, text).unwrap();
                std::fs::set_permissions(elsewhere, std::fs::Permissions::from_mode(0o600))
                    .unwrap();
                std::os::unix::fs::symlink(elsewhere, state).unwrap();
            },
            "it is a symbolic link, not a regular file",
        ),
        (
            "another user's",
            |state, _, text| {
                std::fs::write(state, text).unwrap();
                std::fs::set_permissions(state, std::fs::Permissions::from_mode(0o600)).unwrap();
                std::os::unix::fs::chown(state, Some(OTHER), Some(OTHER)).unwrap();
            },
            "it belongs to uid 65533, not to root",
        ),
        (
            "a hard link",
            |state, elsewhere, text| {
                std::fs::write(elsewhere, text).unwrap();
                std::fs::set_permissions(elsewhere, std::fs::Permissions::from_mode(0o600))
                    .unwrap();
                std::fs::hard_link(elsewhere, state).unwrap();
            },
            "it has 2 hard links, and nftsentry uses a file only under its one name (another name could be any file)",
        ),
        (
            "a FIFO",
            |state, _, _| {
                nix::unistd::mkfifo(state, nix::sys::stat::Mode::from_bits_truncate(0o600))
                    .unwrap();
            },
            "it is a FIFO, not a regular file",
        ),
    ];
    let refused = var.join("state.refused");
    for (n, (what, make, why)) in cases.into_iter().enumerate() {
        let addr = format!("198.51.100.{}", 20 + n);
        let text = state_text(&addr);
        let want = format!(
            "state file {}: refused, no ban is read from it: {why}; moved to {}",
            state.display(),
            refused.display()
        );
        // The command line reads it too (`list`, no daemon), then a daemon
        // start.
        for reader in ["run", "list"] {
            for f in [&state, &elsewhere, &refused] {
                let _ = std::fs::remove_file(f);
            }
            make(&state, &elsewhere, &text);
            let type_of = |p: &Path| std::fs::symlink_metadata(p).unwrap().file_type();
            let planted = type_of(&state);
            let log = dir.path.join(format!("log-{n}-{reader}"));
            if reader == "list" {
                let o = ns
                    .cmd("timeout")
                    .arg("20")
                    .arg(nftsentry_bin())
                    .arg("-c")
                    .arg(&cfg)
                    .arg("list")
                    .output()
                    .unwrap();
                std::fs::write(&log, &o.stderr).unwrap();
                assert!(
                    !String::from_utf8_lossy(&o.stdout).contains(&addr),
                    "{what}: listed"
                );
            } else {
                let pid = start_daemon(&mut ns, &cfg, &log);
                assert!(!banned(&ns, &addr), "{what}: its ban was restored");
                signal(pid, Signal::SIGTERM);
                let status = ns.take_child(pid).wait().unwrap();
                assert!(status.success(), "{what}: daemon exit {status}");
            }
            let log = std::fs::read_to_string(&log).unwrap();
            assert!(
                log.contains(&want),
                "{what}, {reader}: want {want}\nlog:\n{log}"
            );
            // Moved aside as it was (a link stays a link), its target as
            // it was.
            assert!(type_of(&refused) == planted, "{what}, {reader}");
            if elsewhere.exists() {
                assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), text);
            }
        }
    }
    // The same ban from a file that only root could have written: restored.
    let _ = std::fs::remove_file(&state);
    std::fs::write(&state, state_text("198.51.100.30")).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o600)).unwrap();
    let log = dir.path.join("log-good");
    let pid = start_daemon(&mut ns, &cfg, &log);
    assert!(
        banned(&ns, "198.51.100.30"),
        "log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    signal(pid, Signal::SIGTERM);
    assert!(ns.take_child(pid).wait().unwrap().success());
}
