//! claim: no local user can keep nftsentry from starting by taking its
//! claim on the table first (issue 14). The claim used to be the abstract
//! unix socket name `@nftsentry/table/inet/TABLE`, which any user may
//! bind: the daemon then refused to start, at boot and after every crash.
//! Now it is a lock on a root-made file in /run/nftsentry, named by the
//! network namespace and the table. Here nobody squats both (binds the old
//! name, tries to make, open and lock the new file, and to fill the
//! directory) in a namespace of the test, and the daemon starts all the
//! same, as root and with `user = "nobody"` (root; fails without it).
mod common;
use common::*;

use nix::sys::signal::Signal;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const NOBODY: u32 = 65534;
const CLAIM_DIR: &str = "/run/nftsentry";

/// The claim file of table `nftsentry` in `ns`: named by the inode of the
/// namespace (the file `ip netns` keeps is that namespace).
fn claim_file(ns: &Netns) -> PathBuf {
    let ino = std::fs::metadata(format!("/var/run/netns/{}", ns.name))
        .unwrap()
        .ino();
    Path::new(CLAIM_DIR).join(format!("netns-{ino}.inet.nftsentry.lock"))
}

/// Removes the claim file when dropped, also when the test fails (a
/// killed daemon leaves it).
struct Remove(PathBuf);

impl Drop for Remove {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What nobody could do; `Ok` is a squat that worked.
fn attempt<E: std::fmt::Display>(what: &str, r: Result<(), E>) -> String {
    match r {
        Ok(()) => format!("{what}: done\n"),
        Err(e) => format!("{what}: {e}\n"),
    }
}

/// nobody's attempts, in the namespace (a forked child that keeps what it
/// took until the squatter is dropped).
fn squat(claim: &Path) -> String {
    use nix::fcntl::{FcntlArg, Flock, FlockArg, OFlag, fcntl};
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, bind, listen, socket};
    use nix::sys::stat::Mode;
    let mut out = String::new();
    let name = b"nftsentry/table/inet/nftsentry";
    let sock = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    let bound = UnixAddr::new_abstract(name)
        .and_then(|a| bind(std::os::fd::AsRawFd::as_raw_fd(&sock), &a))
        .and_then(|()| listen(&sock, nix::sys::socket::Backlog::new(8).unwrap()))
        .map_err(|e| e.desc());
    out += &attempt("bind @nftsentry/table/inet/nftsentry", bound);
    std::mem::forget(sock);
    out += &attempt(
        "mkdir /run/nftsentry",
        nix::unistd::mkdir(CLAIM_DIR, Mode::from_bits_truncate(0o777)).map_err(|e| e.desc()),
    );
    // A POSIX record lock and a flock, both kept.
    let lock = |fd: OwnedFd, kind: i32| -> nix::Result<()> {
        // SAFETY: flock is plain data.
        let mut l: nix::libc::flock = unsafe { std::mem::zeroed() };
        l.l_type = kind as _;
        l.l_whence = nix::libc::SEEK_SET as _;
        fcntl(&fd, FcntlArg::F_SETLK(&l))?;
        let held = Flock::lock(fd, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| e)?;
        std::mem::forget(held);
        Ok(())
    };
    for (what, flags, kind) in [
        (
            "create and lock the claim file",
            OFlag::O_RDWR | OFlag::O_CREAT,
            nix::libc::F_WRLCK,
        ),
        (
            "open and lock the claim file for reading",
            OFlag::O_RDONLY,
            nix::libc::F_RDLCK,
        ),
    ] {
        let r = nix::fcntl::open(
            claim,
            flags | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o666),
        )
        .and_then(|fd| lock(fd, kind))
        .map_err(|e| e.desc());
        out += &attempt(what, r);
    }
    out += &attempt(
        "symlink at the claim file",
        std::os::unix::fs::symlink("/tmp", claim).map_err(|e| match e.raw_os_error() {
            Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
            None => e.to_string(),
        }),
    );
    out
}

/// The end of the squatter's report (other tests fork too, and their
/// children may hold a copy of the pipe: no end of file to wait for).
const END: &str = "end of report\n";

/// A process of nobody in `ns` that has made its attempts (`report`) and
/// holds what it took until dropped (killed by its pid).
struct Squatter {
    pid: nix::unistd::Pid,
    report: String,
}

impl Squatter {
    fn start(ns: &Netns, claim: &Path) -> Squatter {
        let claim = claim.to_path_buf();
        let (pid, report) = ns.enter(move || {
            let (report_r, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
            // SAFETY: the child makes a few system calls and waits to be
            // killed; glibc's malloc is safe to use after fork.
            match unsafe { nix::unistd::fork() }.unwrap() {
                nix::unistd::ForkResult::Child => {
                    drop(report_r);
                    // What other threads of the test had open (their
                    // commands' pipes) is not ours to keep open.
                    let keep = std::os::fd::AsRawFd::as_raw_fd(&report_w) as nix::libc::c_uint;
                    // SAFETY: close_range takes numbers, no pointers.
                    unsafe {
                        nix::libc::syscall(nix::libc::SYS_close_range, 3, keep - 1, 0);
                        nix::libc::syscall(nix::libc::SYS_close_range, keep + 1, u32::MAX, 0);
                    }
                    let nobody = nix::unistd::Uid::from_raw(NOBODY);
                    let nogroup = nix::unistd::Gid::from_raw(NOBODY);
                    let out = nix::unistd::setgroups(&[])
                        .and_then(|()| nix::unistd::setresgid(nogroup, nogroup, nogroup))
                        .and_then(|()| nix::unistd::setresuid(nobody, nobody, nobody))
                        .map(|()| squat(&claim))
                        .unwrap_or_else(|e| format!("could not become nobody: {e}\n"));
                    let _ = std::fs::File::from(report_w).write_all((out + END).as_bytes());
                    // Holds everything until the test kills it.
                    loop {
                        nix::unistd::pause();
                    }
                }
                nix::unistd::ForkResult::Parent { child } => {
                    drop(report_w);
                    let mut report = Vec::new();
                    let mut f = std::fs::File::from(report_r);
                    let mut buf = [0u8; 512];
                    while !report.ends_with(END.as_bytes()) {
                        match f.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => report.extend_from_slice(&buf[..n]),
                        }
                    }
                    (child, String::from_utf8_lossy(&report).into_owned())
                }
            }
        });
        Squatter { pid, report }
    }

    /// Every attempt on the new claim failed.
    fn took_nothing(&self) {
        let r = &self.report;
        assert!(r.ends_with(END) && !r.starts_with("could not"), "{r}");
        for line in r.lines().filter(|l| !l.starts_with("bind @")) {
            assert!(!line.ends_with(": done"), "nobody squatted: {line}\n{r}");
        }
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(self.pid, None);
    }
}

/// Alive, and not a zombie waiting to be reaped.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

fn stop(ns: &mut Netns, pid: u32, log: &Path) {
    signal(pid, Signal::SIGTERM);
    let status = ns.take_child(pid).wait().unwrap();
    assert!(
        status.success(),
        "daemon exit {status}; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// The claim file is root's, private, one link, and names the daemon.
fn claim_is_roots(claim: &Path, pid: u32) {
    let m = std::fs::symlink_metadata(claim)
        .unwrap_or_else(|e| panic!("no claim file {}: {e}", claim.display()));
    assert!(m.file_type().is_file(), "{}", claim.display());
    assert_eq!((m.uid(), m.mode() & 0o7777, m.nlink()), (0, 0o600, 1));
    assert_eq!(std::fs::read_to_string(claim).unwrap(), format!("{pid}\n"));
    let d = std::fs::symlink_metadata(CLAIM_DIR).unwrap();
    assert!(d.is_dir());
    assert_eq!(d.mode() & 0o022, 0, "{CLAIM_DIR} is writable by others");
}

#[test]
fn a_squatting_user_does_not_keep_the_daemon_from_starting() {
    let mut ns = Netns::new("squat");
    let dir = TempDir::new("squat");
    let cfg = dir.file(
        "nftsentry.toml",
        &format!("ignore_file = \"\"\n{}", private_files(&dir.path)),
    );
    let claim = claim_file(&ns);
    // A file a killed daemon of an earlier namespace with this inode left.
    let _ = std::fs::remove_file(&claim);
    let _remove = Remove(claim.clone());
    let before = Squatter::start(&ns, &claim);
    // The old claim is any user's to take; the new one is nobody's.
    assert!(
        before
            .report
            .contains("bind @nftsentry/table/inet/nftsentry: done"),
        "{}",
        before.report
    );
    before.took_nothing();
    let log = dir.path.join("log");
    let pid = start_daemon(&mut ns, &cfg, &log);
    assert!(running(pid));
    claim_is_roots(&claim, pid);
    // The file the daemon holds is out of nobody's reach too.
    let after = Squatter::start(&ns, &claim);
    after.took_nothing();
    assert!(
        after
            .report
            .contains("open and lock the claim file for reading: Permission denied"),
        "{}",
        after.report
    );
    // A second daemon is still refused, and named the holder.
    let second = dir.file(
        "second.toml",
        &format!(
            "ignore_file = \"\"\nnflog_group = 7532\n{}",
            private_files(&dir.path.join("second"))
        ),
    );
    let o = ns
        .cmd("timeout")
        .arg("20")
        .arg(nftsentry_bin())
        .arg("-c")
        .arg(&second)
        .arg("run")
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains(&format!(
            "table inet nftsentry is in use by another nftsentry in this network namespace (pid {pid})"
        )),
        "{e}"
    );
    stop(&mut ns, pid, &log);
    // Gone with the daemon (it ran as root).
    assert!(!claim.exists(), "{} left behind", claim.display());
    drop((before, after));
}

#[test]
fn a_daemon_that_becomes_nobody_keeps_a_claim_nobody_cannot_take() {
    let mut ns = Netns::new("squatu");
    let dir = TempDir::new("squatu");
    let var = dir.path.join("var");
    std::fs::create_dir(&var).unwrap();
    std::os::unix::fs::chown(&var, Some(NOBODY), Some(NOBODY)).unwrap();
    let cfg = dir.file(
        "nftsentry.toml",
        &format!(
            "ignore_file = \"\"\nuser = \"nobody\"\n{}",
            private_files(&var)
        ),
    );
    let claim = claim_file(&ns);
    let _ = std::fs::remove_file(&claim);
    // The daemon, now nobody, cannot remove it.
    let _remove = Remove(claim.clone());
    let squatter = Squatter::start(&ns, &claim);
    squatter.took_nothing();
    let log = dir.path.join("log");
    for _ in 0..2 {
        let pid = start_daemon(&mut ns, &cfg, &log);
        // Taken as root before the switch to nobody, and kept.
        claim_is_roots(&claim, pid);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(
            status
                .lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("65534")),
            "{status}"
        );
        let after = Squatter::start(&ns, &claim);
        after.took_nothing();
        stop(&mut ns, pid, &log);
        // nobody may not remove root's file from root's directory: it
        // stays, and the next start takes it over.
        assert!(claim.exists());
        let again = Squatter::start(&ns, &claim);
        again.took_nothing();
    }
}
