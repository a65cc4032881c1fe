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
pub fn bounding_numbers() -> Vec<u32> {
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
        switch_keeping_caps(a, setpcap)?;
    }
    if setpcap {
        lock_securebits()?;
    }
    caps::clear(None, CapSet::Ambient).map_err(caps_err("clearing the ambient set"))?;
    caps::clear(None, CapSet::Inheritable).map_err(caps_err("clearing the inheritable set"))?;
    // Effective first: it must stay within permitted at every step.
    caps::set(None, CapSet::Effective, &keep).map_err(caps_err("setting the effective set"))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(caps_err("setting the permitted set"))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| sys("PR_SET_NO_NEW_PRIVS", e))?;
    check_dropped(&keep, setpcap)?;
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

/// Becomes `a` with the permitted set kept; the effective set keeps
/// CAP_SETPCAP when we hold it (`setpcap`), for the securebits.
fn switch_keeping_caps(a: &Account, setpcap: bool) -> Result<()> {
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
    Ok(())
}

/// Sets and locks `LOCKED_SECUREBITS` unless they already are; needs
/// CAP_SETPCAP.
fn lock_securebits() -> Result<()> {
    if current_securebits()? == LOCKED_SECUREBITS {
        return Ok(());
    }
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
    Ok(())
}

/// Reads the drop back rather than trust each step: exactly `keep` in the
/// permitted and effective sets, nothing inheritable or ambient, the
/// bounding set empty when we could empty it, no_new_privs on.
fn check_dropped(keep: &CapsHashSet, setpcap: bool) -> Result<()> {
    let now_permitted = caps::read(None, CapSet::Permitted).map_err(caps_err("reading back"))?;
    let now_effective = caps::read(None, CapSet::Effective).map_err(caps_err("reading back"))?;
    let now_inheritable =
        caps::read(None, CapSet::Inheritable).map_err(caps_err("reading back"))?;
    let now_ambient = caps::read(None, CapSet::Ambient).map_err(caps_err("reading back"))?;
    if now_permitted != *keep
        || now_effective != *keep
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
    Ok(())
}

/// The drop every program the daemon runs makes between fork and exec
/// (its home is the command runner, which calls it).
pub use crate::respond::actions::command::drop_in_child;

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
