//! privileges: what `nftsentry run` gives up once it is set up (table in,
//! NFLOG bound, connect-mode sockets bound). It keeps CAP_NET_ADMIN (sets,
//! table, NFLOG, routes) and, when a protocol has connect mode,
//! CAP_NET_BIND_SERVICE (a reload may bind new ports below 1024); it may
//! switch to the configured user (`become_user`, at start, capabilities
//! kept for the setup, so that the files made then are that user's); and it
//! makes sure that no program it runs gets a capability back through execve.
//!
//! Children are kept without capabilities by layers, each enough on its own
//! for one way back:
//! - no_new_privs: execve never grants more than the caller's permitted set
//!   (set-user-id bits, root's implicit capabilities and file capabilities
//!   are all cut down to it, see cap_bprm_creds_from_file in the kernel);
//! - the inheritable and ambient sets are emptied;
//! - with CAP_SETPCAP (started as root): the bounding set is emptied, so
//!   execve grants nothing whatever file capabilities a program carries,
//!   and the securebits lockdown of capabilities(7) is set and locked
//!   (NOROOT: uid 0 gets no implicit capabilities at execve; NO_SETUID_FIXUP,
//!   KEEP_CAPS off, NO_CAP_AMBIENT_RAISE), inherited by every descendant;
//! - `drop_in_child`, between fork and exec: the child empties its own
//!   permitted set, so with no_new_privs execve gives it nothing even where
//!   the bounding set could not be emptied (a service manager that starts us
//!   as a plain user with ambient capabilities and no CAP_SETPCAP).
//!
//! A process left at uid 0 without capabilities still owns every root-owned
//! file (it may write /etc/hosts.deny, and chmod what it owns): the `user`
//! switch, or the service manager's user and read-only file system, is what
//! confines file access.
//!
//! Capabilities and user ids belong to each thread: the drop refuses to run
//! while the process has more than one.
//!
//! Knows nothing of nftables, sockets or the config format: it is told what
//! to keep and whom to become.

use std::ffi::CString;
use std::path::Path;

use caps::{CapSet, Capability, CapsHashSet};
use nix::errno::Errno;
use nix::libc;
use nix::unistd::{AccessFlags, Gid, Uid};

use crate::config::Config;
use crate::error::{Error, Kind, Result};

// linux/securebits.h
pub const SECBIT_NOROOT: u32 = 1 << 0;
pub const SECBIT_NOROOT_LOCKED: u32 = 1 << 1;
pub const SECBIT_NO_SETUID_FIXUP: u32 = 1 << 2;
pub const SECBIT_NO_SETUID_FIXUP_LOCKED: u32 = 1 << 3;
pub const SECBIT_KEEP_CAPS: u32 = 1 << 4;
pub const SECBIT_KEEP_CAPS_LOCKED: u32 = 1 << 5;
pub const SECBIT_NO_CAP_AMBIENT_RAISE: u32 = 1 << 6;
pub const SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED: u32 = 1 << 7;

/// The securebits set (and locked) after the drop: root is not special at
/// execve, uid changes neither add nor remove capabilities, KEEP_CAPS is
/// off for good, and nothing can be raised into the ambient set.
pub const LOCKED_SECUREBITS: u32 = SECBIT_NOROOT
    | SECBIT_NOROOT_LOCKED
    | SECBIT_NO_SETUID_FIXUP
    | SECBIT_NO_SETUID_FIXUP_LOCKED
    | SECBIT_KEEP_CAPS_LOCKED
    | SECBIT_NO_CAP_AMBIENT_RAISE
    | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;

/// The account to switch to, resolved when the daemon starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
    /// Supplementary groups, the primary one included (getgrouplist).
    pub groups: Vec<Gid>,
}

impl Account {
    /// Looks `name` up in the passwd and group databases.
    pub fn lookup(name: &str) -> Result<Account> {
        let user = nix::unistd::User::from_name(name)
            .map_err(|e| Error::config(format!("user = \"{name}\": cannot look it up: {e}")))?
            .ok_or_else(|| {
                Error::config(format!("user = \"{name}\": no such user on this host"))
            })?;
        let cname = CString::new(name)
            .map_err(|_| Error::config(format!("user = {name:?}: contains a NUL character")))?;
        let groups = nix::unistd::getgrouplist(&cname, user.gid).map_err(|e| {
            Error::config(format!("user = \"{name}\": cannot list its groups: {e}"))
        })?;
        Ok(Account {
            name: name.to_string(),
            uid: user.uid,
            gid: user.gid,
            groups,
        })
    }
}

/// What to keep and whom to become.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Kept; the drop fails without them.
    pub required: Vec<Capability>,
    /// Kept when held: connect mode's CAP_NET_BIND_SERVICE (a daemon started
    /// without it binds only ports from 1024 and needs none).
    pub optional: Vec<Capability>,
    /// `None`: keep the current user.
    pub user: Option<Account>,
}

impl Plan {
    /// The plan for `cfg`: CAP_NET_ADMIN, CAP_NET_BIND_SERVICE when a
    /// protocol has connect mode, and the `user` key's account, looked up
    /// now so that a wrong name fails before anything is set up.
    pub fn for_config(cfg: &Config) -> Result<Plan> {
        let connect = cfg.tcp.mode.connect || cfg.udp.mode.connect;
        let user = match cfg.user.as_str() {
            "" => None,
            name => Some(Account::lookup(name)?),
        };
        Ok(Plan {
            required: vec![Capability::CAP_NET_ADMIN],
            optional: if connect {
                vec![Capability::CAP_NET_BIND_SERVICE]
            } else {
                Vec::new()
            },
            user,
        })
    }
}

/// What the drop did, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    pub uid: Uid,
    pub gid: Gid,
    /// The account switched to, if any.
    pub user: Option<String>,
    /// The permitted and effective set now, by capability number.
    pub kept: Vec<Capability>,
    /// Emptied (we had CAP_SETPCAP); else left as we were given it.
    pub bounding_emptied: bool,
    /// `LOCKED_SECUREBITS` are set (we had CAP_SETPCAP).
    pub securebits_locked: bool,
}

impl Dropped {
    /// "uid 0, keeping cap_net_admin; bounding set emptied, securebits
    /// locked, no_new_privs".
    pub fn describe(&self) -> String {
        let who = match &self.user {
            Some(name) => format!("user {name} (uid {}, gid {})", self.uid, self.gid),
            None => format!("uid {}, gid {}", self.uid, self.gid),
        };
        let kept = self
            .kept
            .iter()
            .map(|c| c.to_string().to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(", ");
        let bounding = if self.bounding_emptied {
            "bounding set emptied"
        } else {
            "bounding set left as given (no CAP_SETPCAP)"
        };
        let bits = if self.securebits_locked {
            ", securebits locked"
        } else {
            ""
        };
        format!("{who}, keeping {kept}; {bounding}{bits}, no_new_privs")
    }
}

fn sys(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(Kind::Privilege, format!("dropping privileges: {what}: {e}"))
}

fn caps_err(what: &str) -> impl FnOnce(caps::errors::CapsError) -> Error + '_ {
    move |e| sys(what, e)
}

/// Threads of this process, from /proc/self/task.
pub fn thread_count() -> Result<usize> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .map_err(|e| Error::other(format!("reading /proc/self/task: {e}")))
}

/// The securebits of this thread.
pub fn current_securebits() -> Result<u32> {
    // SAFETY: PR_GET_SECUREBITS takes no pointer arguments.
    let r = unsafe { libc::prctl(libc::PR_GET_SECUREBITS, 0, 0, 0, 0) };
    Errno::result(r)
        .map(|b| b as u32)
        .map_err(|e| sys("PR_GET_SECUREBITS", e))
}

/// Capability numbers the running kernel has in this thread's bounding set
/// (by number: the caps crate's list may be older than the kernel).
fn bounding_numbers() -> Vec<u32> {
    (0..64u32)
        // SAFETY: PR_CAPBSET_READ takes a capability number, no pointers.
        .map(|n| {
            (n, unsafe {
                libc::prctl(libc::PR_CAPBSET_READ, n as libc::c_ulong, 0, 0, 0)
            })
        })
        .take_while(|&(_, r)| r >= 0)
        .filter(|&(_, r)| r == 1)
        .map(|(n, _)| n)
        .collect()
}

fn empty_bounding_set() -> Result<()> {
    for n in bounding_numbers() {
        // SAFETY: PR_CAPBSET_DROP takes a capability number, no pointers.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, n as libc::c_ulong, 0, 0, 0) };
        Errno::result(r)
            .map_err(|e| sys(&format!("dropping capability {n} from the bounding set"), e))?;
    }
    Ok(())
}

fn switch_user(a: &Account) -> Result<()> {
    let what = |step: &str| format!("switching to user {} ({step})", a.name);
    nix::unistd::setgroups(&a.groups).map_err(|e| sys(&what("setgroups"), e))?;
    nix::unistd::setresgid(a.gid, a.gid, a.gid).map_err(|e| sys(&what("setresgid"), e))?;
    nix::unistd::setresuid(a.uid, a.uid, a.uid).map_err(|e| sys(&what("setresuid"), e))
}

fn is_account(a: &Account) -> Result<bool> {
    let u = nix::unistd::getresuid().map_err(|e| sys("getresuid", e))?;
    let g = nix::unistd::getresgid().map_err(|e| sys("getresgid", e))?;
    Ok([u.real, u.effective, u.saved].iter().all(|&x| x == a.uid)
        && [g.real, g.effective, g.saved].iter().all(|&x| x == a.gid))
}

fn sorted(set: &CapsHashSet) -> Vec<Capability> {
    let mut v: Vec<Capability> = set.iter().copied().collect();
    v.sort_by_key(|c| c.index());
    v
}

fn one_thread() -> Result<()> {
    // setresuid(3) is made process-wide by the C library, but capset(2),
    // the bounding set, securebits and no_new_privs are per thread: another
    // thread would keep everything.
    let threads = thread_count()?;
    if threads != 1 {
        return Err(Error::other(format!(
            "dropping privileges: the process has {threads} threads; capabilities belong to each thread, so the drop must come before any thread is started"
        )));
    }
    Ok(())
}

fn need_setid(name: &str, permitted: &CapsHashSet) -> Result<()> {
    for c in [Capability::CAP_SETUID, Capability::CAP_SETGID] {
        if !permitted.contains(&c) {
            return Err(Error::new(
                Kind::Privilege,
                format!(
                    "user = \"{name}\": switching user needs {c}, which this process does not have; start nftsentry as root, or leave `user` empty when the service manager sets the user"
                ),
            ));
        }
    }
    Ok(())
}

/// The first step, at start: becomes `plan.user` (when set and not already
/// so) keeping every capability, so that the files the daemon creates while
/// it sets up (state file, its lock, history file) belong to that account.
/// Returns whether it switched. `drop_privileges` later keeps only what the
/// plan says; it switches itself if this was not called.
pub fn become_user(plan: &Plan) -> Result<bool> {
    let Some(a) = &plan.user else {
        return Ok(false);
    };
    if is_account(a)? {
        return Ok(false);
    }
    one_thread()?;
    let permitted =
        caps::read(None, CapSet::Permitted).map_err(caps_err("reading capabilities"))?;
    need_setid(&a.name, &permitted)?;
    caps::set(None, CapSet::Effective, &permitted).map_err(caps_err("raising effective set"))?;
    // Without KEEPCAPS leaving uid 0 would clear the permitted set; the
    // effective set is cleared anyway and comes back from permitted.
    nix::sys::prctl::set_keepcaps(true).map_err(|e| sys("PR_SET_KEEPCAPS", e))?;
    switch_user(a)?;
    nix::sys::prctl::set_keepcaps(false).map_err(|e| sys("PR_SET_KEEPCAPS", e))?;
    let kept = caps::read(None, CapSet::Permitted).map_err(caps_err("reading capabilities"))?;
    caps::set(None, CapSet::Effective, &kept).map_err(caps_err("raising effective set"))?;
    Ok(true)
}

/// Gives up what `plan` does not keep; see the module header. Call it once
/// set up, before any thread exists.
pub fn drop_privileges(plan: &Plan) -> Result<Dropped> {
    one_thread()?;
    let permitted =
        caps::read(None, CapSet::Permitted).map_err(caps_err("reading capabilities"))?;
    if let Some(c) = plan.required.iter().find(|c| !permitted.contains(c)) {
        return Err(Error::new(
            Kind::Privilege,
            format!("{c} is needed (run nftsentry as root or give it {c})"),
        ));
    }
    let mut keep: CapsHashSet = plan.required.iter().copied().collect();
    keep.extend(plan.optional.iter().filter(|c| permitted.contains(c)));
    let setpcap = permitted.contains(&Capability::CAP_SETPCAP);
    let switching = match &plan.user {
        Some(a) => !is_account(a)?,
        None => false,
    };
    if switching {
        let name = &plan.user.as_ref().expect("switching implies a user").name;
        need_setid(name, &permitted)?;
    }
    // What we use below must be effective: a process started with ambient
    // capabilities has them so, root too, but a caller may have lowered it.
    caps::set(None, CapSet::Effective, &permitted).map_err(caps_err("raising effective set"))?;
    if setpcap {
        empty_bounding_set()?;
    }
    if switching {
        let a = plan.user.as_ref().expect("switching implies a user");
        // Without KEEPCAPS leaving uid 0 would clear the permitted set.
        nix::sys::prctl::set_keepcaps(true).map_err(|e| sys("PR_SET_KEEPCAPS", e))?;
        switch_user(a)?;
        // The switch emptied the effective set; securebits need SETPCAP.
        if setpcap {
            caps::raise(None, CapSet::Effective, Capability::CAP_SETPCAP)
                .map_err(caps_err("raising CAP_SETPCAP"))?;
        } else {
            nix::sys::prctl::set_keepcaps(false).map_err(|e| sys("PR_SET_KEEPCAPS", e))?;
        }
    }
    if setpcap && current_securebits()? != LOCKED_SECUREBITS {
        // Also turns KEEP_CAPS off (and locks it off).
        // SAFETY: PR_SET_SECUREBITS takes a bit mask, no pointers.
        let r = unsafe {
            libc::prctl(
                libc::PR_SET_SECUREBITS,
                LOCKED_SECUREBITS as libc::c_ulong,
                0,
                0,
                0,
            )
        };
        Errno::result(r).map_err(|e| {
            sys(
                &format!(
                    "PR_SET_SECUREBITS {LOCKED_SECUREBITS:#x} (current {:#x}; were some locked by the service manager?)",
                    current_securebits().unwrap_or(0)
                ),
                e,
            )
        })?;
    }
    caps::clear(None, CapSet::Ambient).map_err(caps_err("clearing the ambient set"))?;
    caps::clear(None, CapSet::Inheritable).map_err(caps_err("clearing the inheritable set"))?;
    // Effective first: it must stay within permitted at every step.
    caps::set(None, CapSet::Effective, &keep).map_err(caps_err("setting the effective set"))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(caps_err("setting the permitted set"))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| sys("PR_SET_NO_NEW_PRIVS", e))?;

    // Read back rather than trust each step.
    let now_permitted = caps::read(None, CapSet::Permitted).map_err(caps_err("reading back"))?;
    let now_effective = caps::read(None, CapSet::Effective).map_err(caps_err("reading back"))?;
    let now_inheritable =
        caps::read(None, CapSet::Inheritable).map_err(caps_err("reading back"))?;
    let now_ambient = caps::read(None, CapSet::Ambient).map_err(caps_err("reading back"))?;
    if now_permitted != keep
        || now_effective != keep
        || !now_inheritable.is_empty()
        || !now_ambient.is_empty()
        || (setpcap && !bounding_numbers().is_empty())
        || !nix::sys::prctl::get_no_new_privs().unwrap_or(false)
    {
        return Err(sys(
            "checking the result",
            format!(
                "permitted {:?}, effective {:?}, inheritable {:?}, ambient {:?}, bounding {:?}",
                sorted(&now_permitted),
                sorted(&now_effective),
                sorted(&now_inheritable),
                sorted(&now_ambient),
                bounding_numbers()
            ),
        ));
    }
    Ok(Dropped {
        uid: nix::unistd::getuid(),
        gid: nix::unistd::getgid(),
        user: match &plan.user {
            Some(a) if is_account(a)? => Some(a.name.clone()),
            _ => None,
        },
        kept: sorted(&keep),
        bounding_emptied: setpcap,
        securebits_locked: setpcap,
    })
}

/// For `Command::pre_exec` of every program the daemon runs: empties the
/// child's capability sets and sets no_new_privs (inherited already; set
/// again so the guarantee does not depend on the parent's drop). With an
/// empty permitted set and no_new_privs, execve grants nothing, whatever
/// the bounding set, the uid or the program's file capabilities. Only raw
/// system calls on the stack: safe between fork and exec.
pub fn drop_in_child() -> std::io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: header and data are the version-3 layout capset(2) reads.
    let r = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integers only.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// How an action writes a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// Opened and appended to (the history file); created if missing.
    Append,
    /// Written to a new file in the same directory and renamed over the
    /// old one, which keeps its owner (hosts.deny, the state file).
    Replace,
}

/// Checks, as the process is now (after the drop: no CAP_DAC_OVERRIDE, no
/// CAP_CHOWN), that it can write `path` the way `how` says. `what` names
/// the setting in the message (e.g. "hosts_deny").
pub fn check_writable(what: &str, path: &Path, how: Write) -> Result<()> {
    let uid = nix::unistd::geteuid();
    let who = match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => format!("uid {uid} ({})", u.name),
        _ => format!("uid {uid}"),
    };
    let fail = |why: String| {
        Error::new(
            Kind::Privilege,
            format!(
                "{what} {}: {who} cannot write it: {why}; see PRIVILEGES in nftsentry(8)",
                path.display()
            ),
        )
    };
    // A missing directory is created (with its parents) on first write:
    // then the nearest one that exists must take new entries.
    let mut dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    while !dir.exists() {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p,
            _ => break,
        }
    }
    let access = |p: &Path, mode: AccessFlags| {
        nix::unistd::faccessat(
            nix::fcntl::AT_FDCWD,
            p,
            mode,
            nix::fcntl::AtFlags::AT_EACCESS,
        )
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(fail(e.to_string())),
    };
    let dir_needed = how == Write::Replace || meta.is_none();
    if dir_needed {
        access(dir, AccessFlags::W_OK | AccessFlags::X_OK).map_err(|e| {
            fail(format!(
                "cannot create files in its directory {}: {}",
                dir.display(),
                e.desc()
            ))
        })?;
    }
    if let Some(m) = meta {
        use std::os::unix::fs::MetadataExt;
        match how {
            Write::Append => {
                access(path, AccessFlags::W_OK).map_err(|e| fail(e.desc().to_string()))?
            }
            Write::Replace => {
                // The new file gets the old one's owner and group: giving a
                // file away needs CAP_CHOWN, and so does a group we are not in.
                if m.uid() != uid.as_raw() {
                    return Err(fail(format!(
                        "it is owned by uid {} and replacing it keeps its owner, which needs CAP_CHOWN (chown it to {who})",
                        m.uid()
                    )));
                }
                let gid = Gid::from_raw(m.gid());
                let ours = gid == nix::unistd::getegid()
                    || nix::unistd::getgroups().is_ok_and(|g| g.contains(&gid));
                if !ours {
                    return Err(fail(format!(
                        "its group is gid {gid}, which {who} is not in, and replacing it keeps its group (chgrp it)"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Checks, as the process is now, that it can read `path` (a reload reads
/// the config and ignore files again). A missing file is fine: the reload
/// reports that as it would at start.
pub fn check_readable(what: &str, path: &Path) -> Result<()> {
    match nix::unistd::faccessat(
        nix::fcntl::AT_FDCWD,
        path,
        AccessFlags::R_OK,
        nix::fcntl::AtFlags::AT_EACCESS,
    ) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::new(
            Kind::Privilege,
            format!(
                "{what} {}: uid {} cannot read it ({}): a reload will fail",
                path.display(),
                nix::unistd::geteuid(),
                e.desc()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    //! The drop runs in a forked child (one thread, and the test process
    //! keeps its root); the child reports over a pipe what it and the
    //! programs it ran saw in /proc/self/status.

    use super::*;
    use std::io::{Read, Write as _};
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    use nix::sys::wait::waitpid;
    use nix::unistd::{ForkResult, fork, pipe};

    const NET_ADMIN: u64 = 1 << 12;
    const NET_BIND_SERVICE: u64 = 1 << 10;
    const NOBODY: u32 = 65534;

    fn require_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests need root (CI runs as root)"
        );
    }

    /// Runs `f` in a forked child; returns its Ok text, or panics with its
    /// error or panic.
    fn in_child(f: impl FnOnce() -> std::result::Result<String, String>) -> String {
        let (r, w) = pipe().unwrap();
        // SAFETY: the child only runs `f` and exits; glibc's malloc is safe
        // to use after fork.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                drop(r);
                let out = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                    Ok(Ok(s)) => format!("ok\n{s}"),
                    Ok(Err(e)) => format!("err\n{e}"),
                    Err(_) => "err\nthe child panicked".to_string(),
                };
                let _ = std::fs::File::from(w).write_all(out.as_bytes());
                // SAFETY: leaves without running the parent's exit handlers.
                unsafe { libc::_exit(0) }
            }
            ForkResult::Parent { child } => {
                drop(w);
                let mut s = String::new();
                std::fs::File::from(r).read_to_string(&mut s).unwrap();
                waitpid(child, None).unwrap();
                match s.split_once('\n') {
                    Some(("ok", rest)) => rest.to_string(),
                    _ => panic!("child failed: {s}"),
                }
            }
        }
    }

    /// A field of /proc/PID/status ("CapEff" → "0000000000001000").
    fn field<'a>(status: &'a str, name: &str) -> &'a str {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .trim()
    }

    fn caps_of(status: &str, name: &str) -> u64 {
        u64::from_str_radix(field(status, name), 16).unwrap()
    }

    /// CapEff, CapPrm, CapInh, CapBnd, CapAmb.
    fn sets(status: &str) -> [u64; 5] {
        ["CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"].map(|n| caps_of(status, n))
    }

    fn ids(status: &str, name: &str) -> Vec<u32> {
        field(status, name)
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect()
    }

    fn run_status(program: &Path, drop_first: bool) -> std::result::Result<String, String> {
        let mut c = std::process::Command::new(program);
        c.arg("/proc/self/status");
        if drop_first {
            // SAFETY: drop_in_child makes raw system calls only.
            unsafe { c.pre_exec(drop_in_child) };
        }
        let out = c.output().map_err(|e| format!("{program:?}: {e}"))?;
        if !out.status.success() {
            return Err(format!("{program:?}: {}", out.status));
        }
        String::from_utf8(out.stdout).map_err(|e| e.to_string())
    }

    static COUNTER: AtomicU32 = AtomicU32::new(0);

    struct Dir(PathBuf);

    impl Dir {
        fn new(owner: Option<u32>) -> Dir {
            let n = COUNTER.fetch_add(1, Ordering::SeqCst);
            let p = std::env::temp_dir().join(format!("nftsentry-priv-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            if let Some(uid) = owner {
                std::os::unix::fs::chown(&p, Some(uid), Some(uid)).unwrap();
            }
            Dir(p)
        }
        fn file(&self, name: &str, owner: u32) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, "x\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            std::os::unix::fs::chown(&p, Some(owner), Some(owner)).unwrap();
            p
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A copy of cat(1) that carries the file capability cap_net_admin+ep.
    fn capped_cat(dir: &Dir) -> PathBuf {
        let p = dir.0.join("cat");
        std::fs::copy("/bin/cat", &p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        // struct vfs_cap_data, revision 2, effective flag: permitted and
        // inheritable words for capabilities 0-31 and 32-63.
        let mut xattr = Vec::new();
        for word in [0x0200_0001u32, NET_ADMIN as u32, 0, 0, 0] {
            xattr.extend_from_slice(&word.to_le_bytes());
        }
        let path = CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: valid C strings and a buffer of the given length.
        let r = unsafe {
            libc::setxattr(
                path.as_ptr(),
                c"security.capability".as_ptr(),
                xattr.as_ptr().cast(),
                xattr.len(),
                0,
            )
        };
        assert_eq!(r, 0, "setxattr: {}", std::io::Error::last_os_error());
        p
    }

    fn plan(user: Option<&str>, connect: bool) -> Plan {
        Plan {
            required: vec![Capability::CAP_NET_ADMIN],
            optional: if connect {
                vec![Capability::CAP_NET_BIND_SERVICE]
            } else {
                Vec::new()
            },
            user: user.map(|u| Account::lookup(u).unwrap()),
        }
    }

    const SEP: &str = "\n=====\n";

    #[test]
    fn root_keeps_net_admin_and_what_it_runs_gets_nothing() {
        require_root();
        let dir = Dir::new(None);
        let capped = capped_cat(&dir);
        let out = in_child(|| {
            let d = drop_privileges(&plan(None, false)).map_err(|e| e.to_string())?;
            let own = std::fs::read_to_string("/proc/self/status").unwrap();
            let bits = current_securebits().map_err(|e| e.to_string())?;
            let cat = run_status(Path::new("/bin/cat"), false)?;
            // A program whose file capabilities cannot all be granted is not
            // run at all (the kernel's check for capability-unaware binaries).
            let capped = match run_status(&capped, false) {
                Ok(status) => format!("ran:\n{status}"),
                Err(e) => e,
            };
            Ok([d.describe(), own, bits.to_string(), cat, capped].join(SEP))
        });
        let parts: Vec<&str> = out.split(SEP).collect();
        let [described, own, bits, cat, capped] = parts[..] else {
            panic!("{out}")
        };
        assert_eq!(
            described,
            "uid 0, gid 0, keeping cap_net_admin; bounding set emptied, securebits locked, no_new_privs"
        );
        // Eff, Prm, Inh, Bnd, Amb.
        assert_eq!(sets(own), [NET_ADMIN, NET_ADMIN, 0, 0, 0], "{own}");
        assert_eq!(field(own, "NoNewPrivs"), "1");
        assert_eq!(ids(own, "Uid"), [0, 0, 0, 0]);
        assert_eq!(bits.parse::<u32>().unwrap(), LOCKED_SECUREBITS);
        // A program run as uid 0 gets nothing: root is not special (NOROOT)
        // and the bounding set is empty.
        assert_eq!(sets(cat), [0; 5], "{cat}");
        assert_eq!(ids(cat, "Uid"), [0, 0, 0, 0]);
        assert_eq!(field(cat, "NoNewPrivs"), "1");
        // cap_net_admin+ep on the file finds an empty bounding set: execve
        // fails rather than run it without what it was marked to get.
        assert_eq!(
            capped,
            format!(
                "{:?}: Operation not permitted (os error 1)",
                dir.0.join("cat")
            )
        );
    }

    #[test]
    fn switches_user_keeping_net_admin_and_net_bind_service() {
        require_root();
        let out = in_child(|| {
            let d = drop_privileges(&plan(Some("nobody"), true)).map_err(|e| e.to_string())?;
            let own = std::fs::read_to_string("/proc/self/status").unwrap();
            let cat = run_status(Path::new("/bin/cat"), false)?;
            Ok([d.describe(), own, cat].join(SEP))
        });
        let parts: Vec<&str> = out.split(SEP).collect();
        let [described, own, cat] = parts[..] else {
            panic!("{out}")
        };
        assert!(
            described.starts_with(&format!(
                "user nobody (uid {NOBODY}, gid {NOBODY}), keeping cap_net_bind_service, cap_net_admin; bounding set emptied"
            )),
            "{described}"
        );
        let both = NET_ADMIN | NET_BIND_SERVICE;
        assert_eq!(sets(own), [both, both, 0, 0, 0], "{own}");
        assert_eq!(ids(own, "Uid"), [NOBODY; 4]);
        assert_eq!(ids(own, "Gid"), [NOBODY; 4]);
        assert_eq!(ids(own, "Groups"), [NOBODY]);
        assert_eq!(sets(cat), [0; 5], "{cat}");
        assert_eq!(ids(cat, "Uid"), [NOBODY; 4]);
    }

    #[test]
    fn becomes_the_user_first_keeping_every_capability() {
        require_root();
        let dir = Dir::new(Some(NOBODY));
        let made = dir.0.join("made-during-setup");
        let m = made.clone();
        let out = in_child(move || {
            let before = std::fs::read_to_string("/proc/self/status").unwrap();
            let plan = plan(Some("nobody"), false);
            if !become_user(&plan).map_err(|e| e.to_string())? {
                return Err("did not switch".into());
            }
            let between = std::fs::read_to_string("/proc/self/status").unwrap();
            std::fs::write(&m, "x").map_err(|e| e.to_string())?;
            // Already the user: nothing to do.
            if become_user(&plan).map_err(|e| e.to_string())? {
                return Err("switched twice".into());
            }
            let d = drop_privileges(&plan).map_err(|e| e.to_string())?;
            let after = std::fs::read_to_string("/proc/self/status").unwrap();
            Ok([before, between, d.describe(), after].join(SEP))
        });
        let parts: Vec<&str> = out.split(SEP).collect();
        let [before, between, described, after] = parts[..] else {
            panic!("{out}")
        };
        let full = caps_of(before, "CapPrm");
        assert_eq!(ids(before, "Uid"), [0; 4]);
        assert_eq!(ids(between, "Uid"), [NOBODY; 4]);
        assert_eq!(ids(between, "Gid"), [NOBODY; 4]);
        assert_eq!(caps_of(between, "CapPrm"), full, "{between}");
        assert_eq!(caps_of(between, "CapEff"), full, "{between}");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&made).unwrap().uid(), NOBODY);
        assert_eq!(
            described,
            format!(
                "user nobody (uid {NOBODY}, gid {NOBODY}), keeping cap_net_admin; bounding set emptied, securebits locked, no_new_privs"
            )
        );
        assert_eq!(sets(after), [NET_ADMIN, NET_ADMIN, 0, 0, 0], "{after}");
    }

    #[test]
    fn without_setpcap_programs_drop_their_own_capabilities() {
        // As systemd starts the unit: DynamicUser= with AmbientCapabilities=
        // and CapabilityBoundingSet= CAP_NET_ADMIN CAP_NET_BIND_SERVICE, and
        // NoNewPrivileges=. No CAP_SETPCAP: the bounding set stays.
        require_root();
        let dir = Dir::new(None);
        let capped = capped_cat(&dir);
        let out = in_child(|| {
            let both: CapsHashSet = [Capability::CAP_NET_ADMIN, Capability::CAP_NET_BIND_SERVICE]
                .into_iter()
                .collect();
            let e = |e: caps::errors::CapsError| e.to_string();
            for n in bounding_numbers()
                .into_iter()
                .filter(|&n| n != 10 && n != 12)
            {
                // SAFETY: integers only.
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, n as libc::c_ulong, 0, 0, 0) };
            }
            nix::sys::prctl::set_keepcaps(true).map_err(|e| e.to_string())?;
            let n = Uid::from_raw(NOBODY);
            let g = Gid::from_raw(NOBODY);
            nix::unistd::setgroups(&[g]).map_err(|e| e.to_string())?;
            nix::unistd::setresgid(g, g, g).map_err(|e| e.to_string())?;
            nix::unistd::setresuid(n, n, n).map_err(|e| e.to_string())?;
            caps::set(None, CapSet::Effective, &both).map_err(e)?;
            caps::set(None, CapSet::Permitted, &both).map_err(e)?;
            caps::set(None, CapSet::Inheritable, &both).map_err(e)?;
            for c in &both {
                caps::raise(None, CapSet::Ambient, *c).map_err(e)?;
            }
            nix::sys::prctl::set_no_new_privs().map_err(|e| e.to_string())?;
            let before = std::fs::read_to_string("/proc/self/status").unwrap();

            let d = drop_privileges(&plan(None, false)).map_err(|e| e.to_string())?;
            let own = std::fs::read_to_string("/proc/self/status").unwrap();
            let cat = run_status(Path::new("/bin/cat"), false)?;
            let capped_plain = run_status(&capped, false)?;
            let capped_dropped = run_status(&capped, true)?;
            Ok([before, d.describe(), own, cat, capped_plain, capped_dropped].join(SEP))
        });
        let parts: Vec<&str> = out.split(SEP).collect();
        let [before, described, own, cat, plain, dropped] = parts[..] else {
            panic!("{out}")
        };
        let both = NET_ADMIN | NET_BIND_SERVICE;
        assert_eq!(sets(before), [both; 5], "{before}");
        assert_eq!(
            described,
            format!(
                "uid {NOBODY}, gid {NOBODY}, keeping cap_net_admin; bounding set left as given (no CAP_SETPCAP), no_new_privs"
            )
        );
        assert_eq!(sets(own), [NET_ADMIN, NET_ADMIN, 0, both, 0], "{own}");
        // Ambient capabilities would have followed a plain program: gone.
        assert_eq!(sets(cat), [0, 0, 0, both, 0], "{cat}");
        // The kernel lets a file capability within our permitted set and the
        // bounding set through, no_new_privs or not...
        assert_eq!(sets(plain), [NET_ADMIN, NET_ADMIN, 0, both, 0], "{plain}");
        // ...which is why every program is run through drop_in_child.
        assert_eq!(sets(dropped), [0, 0, 0, both, 0], "{dropped}");
    }

    #[test]
    fn refuses_to_drop_with_a_second_thread() {
        require_root();
        let out = in_child(|| {
            std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_secs(10)));
            match drop_privileges(&plan(None, false)) {
                Ok(_) => Err("dropped with two threads".into()),
                Err(e) => Ok(e.message),
            }
        });
        assert!(out.contains("the process has 2 threads"), "{out}");
    }

    #[test]
    fn without_net_admin_is_a_privilege_error() {
        require_root();
        let out = in_child(|| {
            let mut p = caps::read(None, CapSet::Permitted).unwrap();
            p.remove(&Capability::CAP_NET_ADMIN);
            caps::set(None, CapSet::Effective, &p).unwrap();
            caps::set(None, CapSet::Permitted, &p).unwrap();
            match drop_privileges(&plan(None, true)) {
                Ok(_) => Err("dropped without CAP_NET_ADMIN".into()),
                Err(e) => Ok(format!("{:?}: {}", e.kind, e.message)),
            }
        });
        assert_eq!(
            out,
            "Privilege: CAP_NET_ADMIN is needed (run nftsentry as root or give it CAP_NET_ADMIN)"
        );
    }

    #[test]
    fn switching_user_without_setuid_is_refused() {
        require_root();
        let out = in_child(|| {
            let mut p = caps::read(None, CapSet::Permitted).unwrap();
            p.remove(&Capability::CAP_SETUID);
            caps::set(None, CapSet::Effective, &p).unwrap();
            caps::set(None, CapSet::Permitted, &p).unwrap();
            match drop_privileges(&plan(Some("nobody"), false)) {
                Ok(_) => Err("switched without CAP_SETUID".into()),
                Err(e) => Ok(format!("{:?}: {}", e.kind, e.message)),
            }
        });
        assert!(
            out.starts_with("Privilege: user = \"nobody\": switching user needs CAP_SETUID"),
            "{out}"
        );
    }

    #[test]
    fn plans_follow_the_config() {
        let cfg = Config::default();
        let p = Plan::for_config(&cfg).unwrap();
        assert_eq!(p.required, [Capability::CAP_NET_ADMIN]);
        assert!(p.optional.is_empty() && p.user.is_none());
        let cfg = Config::parse("user = \"nobody\"\n[udp]\nmode = \"connect\"\n", "t").unwrap();
        let p = Plan::for_config(&cfg).unwrap();
        assert_eq!(p.optional, [Capability::CAP_NET_BIND_SERVICE]);
        let a = p.user.unwrap();
        assert_eq!((a.name.as_str(), a.uid.as_raw()), ("nobody", NOBODY));
        assert!(a.groups.contains(&a.gid));
        let cfg = Config::parse("user = \"nftsentry-no-such-user\"", "t").unwrap();
        let e = Plan::for_config(&cfg).unwrap_err();
        assert_eq!(e.kind, Kind::Config);
        assert_eq!(
            e.message,
            "user = \"nftsentry-no-such-user\": no such user on this host"
        );
    }

    #[test]
    fn writability_is_checked_without_dac_override() {
        require_root();
        let root_dir = Dir::new(None);
        let root_file = root_dir.file("hosts.deny", 0);
        let nobody_dir = Dir::new(Some(NOBODY));
        let nobody_file = nobody_dir.file("state", NOBODY);
        let foreign = nobody_dir.file("history", 0);
        let secret = root_dir.file("ignore", 0);
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let missing = nobody_dir.0.join("new");
        // Directories that do not exist yet are made on first write.
        let deep = nobody_dir.0.join("a/b/state");
        let deep_in_root = root_dir.0.join("a/b/state");
        // uid 0 without CAP_DAC_OVERRIDE: root's own files and directories,
        // as /etc and /etc/hosts.deny, but no one else's.
        let (rf, nf) = (root_file.clone(), nobody_file.clone());
        let as_root = in_child(move || {
            drop_privileges(&plan(None, false)).map_err(|e| e.to_string())?;
            check_writable("hosts_deny", &rf, Write::Replace).map_err(|e| e.message)?;
            let e = check_writable("state_file", &nf, Write::Replace).unwrap_err();
            Ok(e.message)
        });
        assert!(
            as_root.starts_with(&format!(
                "state_file {}: uid 0 (root) cannot write it: cannot create files in its directory {}: Permission denied",
                nobody_file.display(),
                nobody_dir.0.display()
            )),
            "{as_root}"
        );
        let (rf, nf, ff, mf, sf) = (
            root_file.clone(),
            nobody_file.clone(),
            foreign.clone(),
            missing.clone(),
            secret.clone(),
        );
        let (deep, dr) = (deep.clone(), deep_in_root.clone());
        let as_nobody = in_child(move || {
            drop_privileges(&plan(Some("nobody"), false)).map_err(|e| e.to_string())?;
            check_readable("ignore_file", &rf).map_err(|e| e.message)?;
            check_readable("ignore_file", &mf).map_err(|e| e.message)?;
            let unreadable = check_readable("ignore_file", &sf).unwrap_err().message;
            for (path, how) in [
                (&nf, Write::Replace),
                (&nf, Write::Append),
                (&mf, Write::Replace),
                (&mf, Write::Append),
                (&deep, Write::Replace),
            ] {
                check_writable("x", path, how).map_err(|e| e.message)?;
            }
            let errors = [
                (&rf, Write::Replace),
                (&rf, Write::Append),
                (&ff, Write::Replace),
                (&ff, Write::Append),
                (&dr, Write::Append),
            ]
            .map(|(p, how)| match check_writable("hosts_deny", p, how) {
                Ok(()) => format!("{} writable", p.display()),
                Err(e) => e.message,
            });
            Ok([unreadable]
                .into_iter()
                .chain(errors)
                .collect::<Vec<_>>()
                .join(SEP))
        });
        let mut errors: Vec<&str> = as_nobody.split(SEP).collect();
        assert_eq!(
            errors.remove(0),
            format!(
                "ignore_file {}: uid {NOBODY} cannot read it (Permission denied): a reload will fail",
                secret.display()
            )
        );
        let who = format!("uid {NOBODY} (nobody) cannot write it");
        let want = [
            format!(
                "hosts_deny {}: {who}: cannot create files in its directory {}: Permission denied",
                root_file.display(),
                root_dir.0.display()
            ),
            format!(
                "hosts_deny {}: {who}: Permission denied",
                root_file.display()
            ),
            format!(
                "hosts_deny {}: {who}: it is owned by uid 0 and replacing it keeps its owner",
                foreign.display()
            ),
            format!("hosts_deny {}: {who}: Permission denied", foreign.display()),
            format!(
                "hosts_deny {}: {who}: cannot create files in its directory {}: Permission denied",
                deep_in_root.display(),
                root_dir.0.display()
            ),
        ];
        for (got, want) in errors.iter().zip(&want) {
            assert!(got.starts_with(want.as_str()), "got {got:?}\nwant {want:?}");
            assert!(got.ends_with("see PRIVILEGES in nftsentry(8)"), "{got}");
        }
        assert_eq!(errors.len(), want.len());
    }
}
