//! The unit read from a scratch root: the packaged unit as it is, with
//! drop-ins, masked, and without one.

use super::unit::{assignments, bytes, setting_path, words};
use super::*;
use std::sync::atomic::{AtomicU32, Ordering};

const PACKAGED: &str = include_str!("../../../config/nftsentry.service");

static N: AtomicU32 = AtomicU32::new(0);

/// A scratch root with /etc/passwd naming the test's own uid "root" (so
/// that files the test makes belong to "root"), and the packaged unit.
struct Root(PathBuf);

impl Root {
    fn new() -> Root {
        let n = N.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("nftsentry-unit-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        let r = Root(p);
        let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
        r.write(
            "etc/passwd",
            &format!(
                "root:x:{uid}:{gid}:root:/root:/bin/sh\nalice:x:4242:4242::/home/alice:/bin/sh\n"
            ),
        );
        r.write(
            "etc/group",
            &format!("root:x:{gid}:\nalice:x:4242:\nadm:x:4:alice\n"),
        );
        r.write("usr/lib/systemd/system/nftsentry.service", PACKAGED);
        for d in ["var/lib", "run", "tmp", "var/lib/portsentry"] {
            std::fs::create_dir_all(r.0.join(d)).unwrap();
        }
        r
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn service(&self) -> Service {
        Service::installed(&self.0).expect("unit installed")
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn err(s: &Service, path: &str, how: Use) -> String {
    s.judge(Path::new(path), how).unwrap_err()
}

#[test]
fn the_packaged_unit_writes_only_its_own_directories() {
    let r = Root::new();
    let s = r.service();
    assert_eq!(s.identity, Identity::Dynamic);
    assert_eq!(s.memory_max, Some(256 << 20));
    assert_eq!(s.exec_config, None);
    // Its directories are made at start and given to its user.
    for (p, how) in [
        ("/var/lib/nftsentry/state", Use::Replace),
        ("/var/lib/nftsentry/state.lock", Use::Append),
        ("/var/lib/nftsentry/history", Use::Append),
        ("/var/lib/nftsentry/hosts.deny", Use::Replace),
        ("/run/nftsentry/control", Use::Create),
    ] {
        assert_eq!(s.judge(Path::new(p), how), Ok(()), "{p}");
    }
    // PortSentry's places are not.
    assert_eq!(
        err(&s, "/var/lib/portsentry/portsentry.history", Use::Append),
        "/var/lib/portsentry is read-only under nftsentry.service (ProtectSystem=strict; the service may write /var/lib/nftsentry and /run/nftsentry)"
    );
    assert!(
        err(&s, "/etc/hosts.deny", Use::Replace)
            .starts_with("/etc is read-only under nftsentry.service"),
    );
    assert!(err(&s, "/tmp/history", Use::Append).contains("private /tmp (PrivateTmp=yes)"));
    assert!(err(&s, "/root/history", Use::Append).contains("ProtectHome=yes"));
    // Reading is allowed anywhere the permissions allow.
    r.write("etc/nftsentry/ignore", "192.0.2.1\n");
    assert_eq!(
        s.judge(Path::new("/etc/nftsentry/ignore"), Use::Read),
        Ok(())
    );
    let secret = r.0.join("etc/nftsentry/ignore");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(
        err(&s, "/etc/nftsentry/ignore", Use::Read)
            .starts_with("the service's dynamic user cannot read it (mode 600"),
    );
    let d = s.describe();
    assert!(
        d.starts_with("service: nftsentry.service (/usr/lib/systemd/system/nftsentry.service) runs it as a user allocated at start (DynamicUser=yes), on a read-only file system but for /var/lib/nftsentry, /run/nftsentry"),
        "{d}"
    );
}

#[test]
fn drop_ins_are_read_in_order_and_an_empty_list_clears() {
    let r = Root::new();
    // A drop-in that opens /var/lib/portsentry: mounted writable, but the
    // dynamic user owns nothing there.
    r.write(
        "etc/systemd/system/nftsentry.service.d/10-rw.conf",
        "[Service]\nReadWritePaths=/var/lib/portsentry\n",
    );
    let s = r.service();
    assert_eq!(s.files.len(), 2);
    assert!(
        err(&s, "/var/lib/portsentry/portsentry.history", Use::Append).starts_with(
            "the service's dynamic user cannot create files in /var/lib/portsentry (mode"
        ),
    );
    // A later drop-in clears the list: read-only again.
    r.write(
        "etc/systemd/system/nftsentry.service.d/20-clear.conf",
        "[Service]\nReadWritePaths=\n",
    );
    assert!(
        err(
            &r.service(),
            "/var/lib/portsentry/portsentry.history",
            Use::Append
        )
        .contains("read-only under nftsentry.service"),
    );
    // The man page's recipe for /etc/hosts.deny: root, /etc writable. The
    // same name in /usr/lib is hidden by the one in /etc.
    r.write(
        "usr/lib/systemd/system/nftsentry.service.d/30-root.conf",
        "[Service]\nDynamicUser=yes\n",
    );
    r.write(
        "etc/systemd/system/nftsentry.service.d/30-root.conf",
        "[Service]\nDynamicUser=no\nReadWritePaths=/etc\nMemoryMax=1G\n",
    );
    r.write("etc/hosts.deny", "# empty\n");
    let s = r.service();
    assert!(matches!(&s.identity, Identity::User { name, .. } if name == "root"));
    assert_eq!(s.judge(Path::new("/etc/hosts.deny"), Use::Replace), Ok(()));
    assert_eq!(s.memory_max, Some(1 << 30));
    assert_eq!(s.files.len(), 4);
}

#[test]
fn a_user_is_judged_by_the_permissions_and_groups() {
    let r = Root::new();
    r.write(
        "etc/systemd/system/nftsentry.service.d/user.conf",
        "[Service]\nDynamicUser=no\nUser=alice\nReadWritePaths=/var/lib/portsentry\nExecStart=\nExecStart=/usr/sbin/nftsentry -c /etc/nftsentry/other.toml run\n",
    );
    let s = r.service();
    assert_eq!(
        s.identity,
        Identity::User {
            name: "alice".into(),
            uid: 4242,
            gid: 4242
        }
    );
    assert_eq!(
        s.exec_config,
        Some(PathBuf::from("/etc/nftsentry/other.toml"))
    );
    assert!(
        err(&s, "/var/lib/portsentry/h", Use::Append)
            .starts_with("uid 4242 (alice) cannot create files in /var/lib/portsentry"),
    );
    // Group adm (4), of which alice is a member, may write there.
    use std::os::unix::fs::PermissionsExt;
    let dir = r.0.join("var/lib/portsentry");
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(&dir, None, Some(4)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o775)).unwrap();
        assert_eq!(
            s.judge(Path::new("/var/lib/portsentry/h"), Use::Append),
            Ok(())
        );
        // Replacing keeps the owner: a file of root's cannot be replaced.
        r.write("var/lib/portsentry/deny", "");
        assert!(
            err(&s, "/var/lib/portsentry/deny", Use::Replace).starts_with("it is owned by uid")
        );
    }
}

#[test]
fn masked_or_missing_units_are_not_judged_as_units() {
    let r = Root::new();
    std::fs::create_dir_all(r.0.join("etc/systemd/system")).unwrap();
    std::os::unix::fs::symlink(
        "/dev/null",
        r.0.join("etc/systemd/system/nftsentry.service"),
    )
    .unwrap();
    assert!(Service::installed(&r.0).is_none());
    std::fs::remove_file(r.0.join("etc/systemd/system/nftsentry.service")).unwrap();
    std::fs::remove_file(r.0.join("usr/lib/systemd/system/nftsentry.service")).unwrap();
    assert!(Service::installed(&r.0).is_none());
    // By hand, as root: no sandbox.
    let s = Service::command_line(&r.0, "");
    assert_eq!(
        s.judge(Path::new("/var/lib/portsentry/h"), Use::Append),
        Ok(())
    );
    assert!(
        s.describe()
            .starts_with("service: no nftsentry.service installed")
    );
}

#[test]
fn check_names_the_key_and_its_line() {
    let r = Root::new();
    let cfg_path = r.0.join("etc/nftsentry/nftsentry.toml");
    r.write(
        "etc/nftsentry/nftsentry.toml",
        "# converted\nhistory_file = \"/var/lib/portsentry/portsentry.history\"\nhosts_deny = \"/etc/hosts.deny\"\nhosts_deny_line = \"ALL: $TARGET$\"\nignore_file = \"\"\n[tcp]\nports = \"1\"\n",
    );
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    let cfg = Config::parse(&text, &cfg_path.display().to_string()).unwrap();
    let e = check(&cfg, &r.0).unwrap_err();
    assert_eq!(e.kind, crate::error::Kind::Config);
    let src = cfg_path.display();
    assert!(
        e.message
            .starts_with("2 files the service cannot use (nftsentry.service ("),
        "{e}"
    );
    assert!(
        e.message.contains(&format!("\n  {src}:2: history_file \"/var/lib/portsentry/portsentry.history\": the service cannot append to it: /var/lib/portsentry is read-only under nftsentry.service (ProtectSystem=strict; the service may write /var/lib/nftsentry and /run/nftsentry); use history_file = \"/var/lib/nftsentry/history\"")),
        "{e}"
    );
    assert!(
        e.message.contains(&format!("\n  {src}:3: hosts_deny \"/etc/hosts.deny\": the service cannot replace it: /etc is read-only")),
        "{e}"
    );
    // What import-portsentry writes now passes.
    r.write(
        "etc/nftsentry/nftsentry.toml",
        "history_file = \"/var/lib/nftsentry/history\"\nhosts_deny = \"/var/lib/nftsentry/hosts.deny\"\nhosts_deny_line = \"$TARGET$\"\nignore_file = \"\"\n",
    );
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    let cfg = Config::parse(&text, &cfg_path.display().to_string()).unwrap();
    let lines = check(&cfg, &r.0).unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    // A bound beyond MemoryMax is a warning.
    let cfg = Config::parse(
        "max_tracked_sources = 10000000\nignore_file = \"\"\n",
        "<test>",
    )
    .unwrap();
    let lines = check(&cfg, &r.0).unwrap();
    assert!(
        lines[1].starts_with(
            "warning: this config can take up to 555 MiB (max_tracked_sources 10000000 at 44 bytes"
        ),
        "{lines:?}"
    );
    assert!(memory_bound(&Config::parse("", "<test>").unwrap()) < 256 << 20);
}

#[test]
fn settings_parse_as_systemd_reads_them() {
    assert_eq!(bytes("256M"), Some(256 << 20));
    assert_eq!(bytes("1G"), Some(1 << 30));
    assert_eq!(bytes("4096"), Some(4096));
    assert_eq!(bytes("infinity"), None);
    assert_eq!(bytes("50%"), None);
    assert_eq!(words("a \"b c\"  d"), ["a", "b c", "d"]);
    assert_eq!(
        setting_path("-/var/lib/x:rbind"),
        Some(PathBuf::from("/var/lib/x"))
    );
    assert_eq!(setting_path("relative"), None);
    let a = assignments(
        "[Unit]\nUser=no\n[Service]\n# User=x\nUser = bob\nReadWritePaths=/a \\\n  /b\n",
    );
    assert_eq!(
        a,
        [
            ("User".to_string(), "bob".to_string()),
            ("ReadWritePaths".to_string(), "/a  /b".to_string())
        ]
    );
    assert_eq!(
        key_line(
            "a = 1\n  history_file= \"x\"\n[tcp]\nhistory_file = 2\n",
            "history_file"
        ),
        Some(2)
    );
}
