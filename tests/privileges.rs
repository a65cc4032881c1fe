//! privileges: the capability drop and the user switch of `nftsentry run`,
//! in forked children of the test process (root; fails without it).
//! The drop runs in a forked child (one thread, and the test process
//! keeps its root); the child reports over a pipe what it and the
//! programs it ran saw in /proc/self/status.

use std::ffi::CString;
use std::path::Path;

use caps::{CapSet, Capability, CapsHashSet};
use nix::libc;

use nftsentry::config::Config;
use nftsentry::error::Kind;
use nftsentry::service::privileges::*;
use std::io::{Read, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Gid, Uid, fork, pipe};

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
    // ETXTBSY: a parallel test forked while our copy of the program was
    // still open for writing, and its child holds that descriptor until
    // its exec. Only that is retried.
    let mut tries = 0;
    let out = loop {
        match c.output() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => break r.map_err(|e| format!("{program:?}: {e}"))?,
        }
    };
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
