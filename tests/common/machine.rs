//! A real Debian for tests/system.rs: a minimal root made by debootstrap
//! (cached under /var/cache/nftsentry-tests, rebuilt when missing or
//! stale), booted with `systemd-nspawn -b` on a copy-on-write overlay inside
//! a network namespace the test made, and driven from the host with
//! `nsenter` into the container's namespaces (the host runs no systemd, so
//! there is no machined for `systemd-run --machine`).
//!
//! Everything a boot makes goes on drop, also when the test panics: the
//! container is powered off (then SIGTERM, then SIGKILL to the processes of
//! its own cgroups, all started by the test), its cgroups and the overlay
//! are removed. nspawn runs in cgroups of its own below the test's, since
//! without a service manager on the host it would put its `payload` and
//! `supervisor` cgroups at the top of the hierarchy, where two containers
//! would meet.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::{Netns, TempDir, run_ok};

/// The cache: images, and the packages debootstrap fetched.
pub const CACHE: &str = "/var/cache/nftsentry-tests";
pub const MIRROR: &str = "http://deb.debian.org/debian";
/// What goes into the image besides the minimal base: the init system, the
/// tools the tests read the system with (nft, tcpdmatch, fail2ban-regex)
/// and what the package's files are for (logrotate).
pub const PACKAGES: &[&str] = &["systemd-sysv", "nftables", "logrotate", "tcpd", "fail2ban"];
/// Fetched into the image's apt cache, installed by a test (PortSentry
/// brings procps, hence /bin/kill, which the base image must not have).
pub const LATER: &[&str] = &["portsentry"];
/// Bump when the steps of `build` change.
const STEPS: u32 = 1;
/// An image older than this is built again (security updates).
const MAX_AGE: Duration = Duration::from_secs(30 * 86400);

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// FNV-1a, for a short stable key of the recipe.
fn fnv(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// An exclusive lock on a file of the cache, released on drop: two test
/// runs never build the same image at once.
struct CacheLock(#[allow(dead_code)] nix::fcntl::Flock<std::fs::File>);

impl CacheLock {
    fn take(name: &str) -> CacheLock {
        std::fs::create_dir_all(CACHE).unwrap();
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(Path::new(CACHE).join(name))
            .unwrap();
        CacheLock(
            nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
                .unwrap_or_else(|(_, e)| panic!("lock {CACHE}/{name}: {e}")),
        )
    }
}

/// A debootstrapped root in the cache.
pub struct Image {
    pub suite: String,
    pub root: PathBuf,
    /// How long building it took, when this call built it.
    pub built_in: Option<Duration>,
}

impl Image {
    /// The image of `suite`, built when missing or stale. `None` when the
    /// mirror does not serve the suite (said on standard output).
    pub fn get(suite: &str) -> Option<Image> {
        let recipe = format!(
            "{suite} {MIRROR} minbase {} later {} steps {STEPS}",
            PACKAGES.join(","),
            LATER.join(",")
        );
        let root = Path::new(CACHE).join(format!("{suite}-{:08x}", fnv(&recipe)));
        let _lock = CacheLock::take(&format!("{suite}.lock"));
        let stamp = root.join(".nftsentry-image");
        let fresh = std::fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .is_ok_and(|t| SystemTime::now().duration_since(t).unwrap_or_default() < MAX_AGE);
        if fresh {
            return Some(Image {
                suite: suite.to_string(),
                root,
                built_in: None,
            });
        }
        let t0 = Instant::now();
        if !build(suite, &root, &recipe) {
            return None;
        }
        // Older recipes of the suite are of no use any more.
        if let Ok(rd) = std::fs::read_dir(CACHE) {
            for e in rd.flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if p != root && name.starts_with(&format!("{suite}-")) && p.is_dir() {
                    let _ = std::fs::remove_dir_all(&p);
                }
            }
        }
        Some(Image {
            suite: suite.to_string(),
            root,
            built_in: Some(t0.elapsed()),
        })
    }
}

/// debootstrap into a temporary directory, finish it in a chroot, and
/// rename it into place. False: the mirror has no such suite.
fn build(suite: &str, root: &Path, recipe: &str) -> bool {
    let tmp = root.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(root);
    let _ = std::fs::remove_dir_all(&tmp);
    let debs = Path::new(CACHE).join(format!("debs-{suite}"));
    std::fs::create_dir_all(&debs).unwrap();
    let log = Path::new(CACHE).join(format!("{suite}.debootstrap.log"));
    println!(
        "system: building the {suite} image with debootstrap (log: {})",
        log.display()
    );
    let status = Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(format!("--cache-dir={}", debs.display()))
        .arg(suite)
        .arg(&tmp)
        .arg(MIRROR)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::from(
            std::fs::File::options().append(true).open(&log).unwrap(),
        ))
        .status()
        .unwrap_or_else(|e| panic!("debootstrap (tests/run installs it): {e}"));
    if !status.success() {
        let out = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&tmp);
        if out.contains("Failed getting release file") || out.contains("No such script") {
            println!("system: {MIRROR} does not serve {suite}; not tested:\n{out}");
            return false;
        }
        let tail: Vec<&str> = out.lines().rev().take(30).collect();
        panic!(
            "debootstrap {suite} failed ({status}); end of {}:\n{}",
            log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let chroot = |script: &str| {
        run_ok(
            Command::new("chroot")
                .arg(&tmp)
                .args(["/bin/sh", "-c", script])
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .env("LANG", "C.UTF-8"),
        )
    };
    // fail2ban is there for its tools and its jail files; its service would
    // find no log to watch on this system.
    chroot("systemctl disable fail2ban.service >/dev/null 2>&1 || true");
    // The packages a test installs later, fetched now (apt's lists are the
    // ones debootstrap used).
    chroot(&format!(
        "apt-get clean && apt-get install -y -qq --download-only {} >/dev/null",
        LATER.join(" ")
    ));
    for bin in ["/bin/kill", "/usr/bin/kill"] {
        assert!(
            std::fs::symlink_metadata(tmp.join(&bin[1..])).is_err(),
            "the minimal {suite} image has {bin}"
        );
    }
    std::fs::write(tmp.join(".nftsentry-image"), format!("{recipe}\n")).unwrap();
    std::fs::rename(&tmp, root).unwrap();
    true
}

/// The cgroup v2 mount and the v1 name=systemd mount, each with the test
/// process's own cgroup in it.
fn own_cgroups() -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mine = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    // "ID:CONTROLLERS:PATH": "0::PATH" for v2.
    let path_of = |want: &dyn Fn(&str) -> bool| {
        mine.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, c, p) = (f.next()?, f.next()?, f.next()?);
            want(c).then(|| p.trim_start_matches('/').to_string())
        })
    };
    let v2 = path_of(&|c| c.is_empty());
    let v1 = path_of(&|c| c.split(',').any(|x| x == "name=systemd"));
    let mut out = Vec::new();
    for m in mounts.lines() {
        let f: Vec<&str> = m.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        let rel = if f[2] == "cgroup2" {
            v2.as_ref()
        } else if f[2] == "cgroup" && f[3].split(',').any(|o| o == "name=systemd") {
            v1.as_ref()
        } else {
            None
        };
        if let Some(rel) = rel {
            out.push(Path::new(f[1]).join(rel));
        }
    }
    out
}

/// Removes a cgroup and every cgroup below it, deepest first.
fn remove_cgroup(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&e.path());
            }
        }
    }
    for _ in 0..50 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("system: cannot remove cgroup {}", dir.display());
}

/// Every process in `dir` and below.
fn cgroup_pids(dir: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                pids.extend(cgroup_pids(&e.path()));
            }
        }
    }
    pids
}

/// A booted container.
pub struct Machine {
    pub name: String,
    pub suite: String,
    /// The container's / as the host sees it (the overlay).
    pub root: PathBuf,
    nspawn: Option<Child>,
    /// The container's PID 1, as the host numbers it.
    pub leader: u32,
    cgroups: Vec<PathBuf>,
    mounted: bool,
    pub log: PathBuf,
    pub boot_time: Duration,
    /// Holds the overlay's directories; last, so it goes after the unmount.
    dir: TempDir,
}

impl Machine {
    /// Boots `image` inside `netns`: an overlay on the cached root, nspawn
    /// in cgroups of its own, until `systemctl is-system-running --wait`.
    pub fn boot(image: &Image, netns: &Netns, tag: &str) -> Machine {
        let t0 = Instant::now();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("nfst-{tag}-{}-{n}", std::process::id());
        let dir = TempDir::new(&format!("{tag}m"));
        let (upper, work, root) = (
            dir.path.join("upper"),
            dir.path.join("work"),
            dir.path.join("root"),
        );
        for d in [&upper, &work, &root] {
            std::fs::create_dir_all(d).unwrap();
        }
        let log = dir.path.join("nspawn.log");
        let mut m = Machine {
            name: name.clone(),
            suite: image.suite.clone(),
            root: root.clone(),
            nspawn: None,
            leader: 0,
            cgroups: Vec::new(),
            mounted: false,
            log: log.clone(),
            boot_time: Duration::ZERO,
            dir,
        };
        run_ok(
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o"])
                .arg(format!(
                    "lowerdir={},upperdir={},workdir={}",
                    image.root.display(),
                    upper.display(),
                    work.display()
                ))
                .arg(&root),
        );
        m.mounted = true;
        for base in own_cgroups() {
            let cg = base.join(&name);
            if std::fs::create_dir(&cg).is_ok() {
                m.cgroups.push(cg);
            }
        }
        assert!(
            !m.cgroups.is_empty(),
            "no cgroup hierarchy to run systemd-nspawn in"
        );
        let procs: Vec<std::ffi::CString> = m
            .cgroups
            .iter()
            .map(|c| {
                std::ffi::CString::new(c.join("cgroup.procs").into_os_string().into_encoded_bytes())
                    .unwrap()
            })
            .collect();
        let mut cmd = Command::new("systemd-nspawn");
        cmd.args([
            "--boot",
            "--register=no",
            "--keep-unit",
            "--console=passive",
            "--link-journal=no",
        ])
        .arg(format!("--machine={name}"))
        .arg("--directory")
        .arg(&root)
        .arg(format!(
            "--network-namespace-path=/run/netns/{}",
            netns.name
        ))
        // nspawn grants CAP_NET_ADMIN with a private network only.
        .arg("--capability=CAP_NET_ADMIN")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::from(
            std::fs::File::options().append(true).open(&log).unwrap(),
        ));
        // SAFETY: between fork and exec, only open/write/close on paths
        // made before the fork: async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                for p in &procs {
                    let fd =
                        nix::libc::open(p.as_ptr(), nix::libc::O_WRONLY | nix::libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let r = nix::libc::write(fd, b"0".as_ptr().cast(), 1);
                    nix::libc::close(fd);
                    if r != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("systemd-nspawn (tests/run installs systemd-container): {e}")
        });
        let nspawn_pid = child.id();
        m.nspawn = Some(child);
        // The container's PID 1: nspawn's child that is PID 1 of its own
        // PID namespace.
        let deadline = Instant::now() + Duration::from_secs(30);
        while m.leader == 0 {
            let children = std::fs::read_dir(format!("/proc/{nspawn_pid}/task"))
                .map(|rd| {
                    rd.flatten()
                        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            for c in children.split_whitespace() {
                let status =
                    std::fs::read_to_string(format!("/proc/{c}/status")).unwrap_or_default();
                let nspid = status
                    .lines()
                    .find_map(|l| l.strip_prefix("NSpid:"))
                    .unwrap_or("");
                let ids: Vec<&str> = nspid.split_whitespace().collect();
                if ids.len() >= 2 && ids.last() == Some(&"1") {
                    m.leader = c.parse().unwrap();
                }
            }
            if m.leader == 0 {
                if let Some(st) = m.nspawn.as_mut().unwrap().try_wait().unwrap() {
                    panic!("systemd-nspawn ended ({st}):\n{}", m.nspawn_log());
                }
                assert!(
                    Instant::now() < deadline,
                    "no container PID 1 after 30 s:\n{}",
                    m.nspawn_log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // Until boot is done (running, or degraded with a failed unit).
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let o = m.sh("systemctl is-system-running --wait 2>&1");
            let state = text(&o.stdout).trim().to_string();
            if state == "running" || state == "degraded" {
                if state == "degraded" {
                    let failed = m.ok("systemctl --failed --no-legend --no-pager");
                    println!("system: {name} booted degraded: {failed}");
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not finish booting: {state}\n{}",
                m.nspawn_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        m.boot_time = t0.elapsed();
        m
    }

    pub fn nspawn_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `nsenter` into every namespace of the container, with a clean
    /// environment, running `sh -c script` in /root.
    pub fn cmd(&self, script: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--target={}", self.leader))
            .args(["--all", "--root", "--wd", "--"])
            .args([
                "/usr/bin/env",
                "-i",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME=/root",
                "LANG=C.UTF-8",
                "TERM=dumb",
                "SYSTEMD_PAGER=",
                "/bin/sh",
                "-c",
            ])
            .arg(format!("cd /root && {script}"))
            .stdin(Stdio::null());
        c
    }

    /// Runs `script` in the container; its output, whatever its status.
    pub fn sh(&self, script: &str) -> Output {
        self.cmd(script)
            .output()
            .unwrap_or_else(|e| panic!("nsenter: {e}"))
    }

    /// Runs `script`; its standard output, or a panic with both streams.
    pub fn ok(&self, script: &str) -> String {
        let o = self.sh(script);
        assert!(
            o.status.success(),
            "[{}] {script}: {}\nstdout: {}\nstderr: {}",
            self.suite,
            o.status,
            text(&o.stdout),
            text(&o.stderr)
        );
        text(&o.stdout)
    }

    /// Status, stdout and stderr of `script`.
    pub fn run(&self, script: &str) -> (i32, String, String) {
        let o = self.sh(script);
        (
            o.status.code().unwrap_or(-1),
            text(&o.stdout),
            text(&o.stderr),
        )
    }

    /// A file in the container, written from the host.
    pub fn write(&self, path: &str, content: &str, mode: u32) {
        let p = self.root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    pub fn copy_in(&self, from: &Path, to: &str) {
        let p = self.root.join(to.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::copy(from, &p)
            .unwrap_or_else(|e| panic!("{} -> {}: {e}", from.display(), p.display()));
    }

    /// Polls `script` until it succeeds; its output, or None on timeout.
    pub fn wait_ok(&self, script: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let o = self.sh(script);
            if o.status.success() {
                return Some(text(&o.stdout));
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// One property of a unit (`systemctl show -P`).
    pub fn prop(&self, unit: &str, name: &str) -> String {
        self.ok(&format!("systemctl show -P {name} {unit}"))
            .trim()
            .to_string()
    }

    fn nspawn_done(&mut self, within: Duration) -> bool {
        let Some(child) = self.nspawn.as_mut() else {
            return true;
        };
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                self.nspawn = None;
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Powers the container off and waits for nspawn; how long it took.
    pub fn poweroff(&mut self) -> Duration {
        let t0 = Instant::now();
        if self.nspawn.is_some() && self.leader != 0 {
            let _ = self.sh("systemctl poweroff --no-block");
        }
        if !self.nspawn_done(Duration::from_secs(30)) {
            eprintln!(
                "system: {} did not power off within 30 s; SIGTERM to nspawn",
                self.name
            );
            if let Some(c) = &self.nspawn {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(c.id() as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            if !self.nspawn_done(Duration::from_secs(15)) {
                if let Some(c) = self.nspawn.as_mut() {
                    let _ = c.kill();
                }
                self.nspawn_done(Duration::from_secs(5));
            }
        }
        t0.elapsed()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.poweroff();
        // Whatever is left in the container's cgroups was started by this
        // test (the container's processes): end it by PID.
        for _ in 0..3 {
            let pids: Vec<i32> = self.cgroups.iter().flat_map(|c| cgroup_pids(c)).collect();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        for c in &self.cgroups {
            remove_cgroup(c);
        }
        let _ = std::fs::remove_dir(format!("/run/systemd/nspawn/propagate/{}", self.name));
        if self.mounted {
            let ok = Command::new("umount")
                .arg(&self.root)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                let _ = Command::new("umount").arg("-l").arg(&self.root).status();
            }
        }
    }
}

/// The fenced ```sh block that follows `heading` in README.md, one command
/// a line, comments and blank lines left out.
pub fn readme_block(heading: &str) -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README.md has no {heading}"));
    let rest = &readme[start..];
    let open = rest
        .find("```sh\n")
        .unwrap_or_else(|| panic!("no sh block after {heading}"))
        + 6;
    let close = rest[open..].find("```").unwrap() + open;
    rest[open..close]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}
