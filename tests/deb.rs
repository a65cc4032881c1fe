//! The Debian package: `cargo deb --no-build` packs the release binary
//! under test; `dpkg-deb -I` and `-c` read its control fields, maintainer
//! scripts and contents back; `dpkg --root --unpack` unpacks it into a
//! scratch root (never onto the host; unpacking runs no maintainer script,
//! and the scratch root has no shell), where the installed binary checks the
//! installed config. tests/system.rs installs it for real, with `dpkg -i` on
//! a booted Debian, and runs the scripts.
//!
//! Needs the release profile (cargo-deb packs target/release; tests/run
//! tests with --release), cargo-deb (tests/run installs it), dpkg-dev, and
//! root for dpkg.
mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Build the package into `dir` and return its path.
fn build_deb(dir: &Path) -> PathBuf {
    let bin = nftsentry_bin();
    assert!(
        bin.ends_with("release/nftsentry"),
        "{}: cargo-deb packs the release build; run the tests with --release (tests/run does)",
        bin.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let o = Command::new(cargo)
        .args(["deb", "--no-build", "--strip", "--output"])
        .arg(dir)
        .arg("--manifest-path")
        .arg(manifest_dir().join("Cargo.toml"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "cargo deb (install it with `cargo install cargo-deb --locked`): {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let arch = text(&run_ok(Command::new("dpkg").arg("--print-architecture")).stdout);
    let deb = dir.join(format!(
        "nftsentry_{}-1_{}.deb",
        env!("CARGO_PKG_VERSION"),
        arch.trim()
    ));
    assert!(deb.is_file(), "no {} after cargo deb", deb.display());
    deb
}

/// `Field: value` of a control file.
fn field<'a>(control: &'a str, name: &str) -> &'a str {
    control
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in\n{control}"))
}

#[test]
fn package_builds_installs_into_a_scratch_root_and_checks() {
    require_root();
    let dir = TempDir::new("deb");
    let deb = build_deb(&dir.path);

    // Control fields.
    let info = text(&run_ok(Command::new("dpkg-deb").arg("-I").arg(&deb)).stdout);
    assert_eq!(field(&info, "Package"), "nftsentry");
    assert_eq!(
        field(&info, "Version"),
        format!("{}-1", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(field(&info, "Section"), "net");
    assert!(field(&info, "Depends").starts_with("libc6 (>= "), "{info}");
    // Maintainer scripts generated from the unit (cargo-deb's
    // dh_installsystemd): installing neither enables nor starts the service,
    // an upgrade restarts it only if it runs, removal stops it, purge removes
    // the state directory. No preinst.
    assert!(!info.contains("preinst"), "{info}");
    let script = |name: &str| {
        text(&run_ok(Command::new("dpkg-deb").arg("--info").arg(&deb).arg(name)).stdout)
    };
    let postinst = script("postinst");
    assert!(postinst.starts_with("#!/bin/sh\nset -e\n"), "{postinst}");
    assert!(!postinst.contains("deb-systemd-invoke start"), "{postinst}");
    assert!(
        !postinst
            .contains("deb-systemd-helper enable nftsentry.service >/dev/null || true\n\telse"),
        "{postinst}"
    );
    assert!(
        postinst.contains(
            "\t\tif [ -n \"$2\" ]; then\n\t\t\tdeb-systemd-invoke try-restart nftsentry.service"
        ),
        "{postinst}"
    );
    let prerm = script("prerm");
    assert!(
        prerm.contains(
            "if [ -d /run/systemd/system ] && [ \"$1\" = remove ]; then\n\tdeb-systemd-invoke stop nftsentry.service"
        ),
        "{prerm}"
    );
    let postrm = script("postrm");
    assert!(
        postrm.contains("deb-systemd-helper purge nftsentry.service"),
        "{postrm}"
    );
    assert!(
        postrm.ends_with(
            "if [ \"$1\" = \"purge\" ]; then\n    rm -rf /var/lib/nftsentry /var/lib/private/nftsentry\nfi\n"
        ),
        "{postrm}"
    );
    assert!(!postrm.contains("#DEBHELPER#"), "{postrm}");
    let conffiles = text(
        &run_ok(
            Command::new("dpkg-deb")
                .arg("-I")
                .arg(&deb)
                .arg("conffiles"),
        )
        .stdout,
    );
    let mut conffiles: Vec<&str> = conffiles.lines().collect();
    conffiles.sort();
    assert_eq!(
        conffiles,
        [
            "/etc/logrotate.d/nftsentry",
            "/etc/nftsentry/ignore",
            "/etc/nftsentry/nftsentry.toml"
        ]
    );

    // Contents: path, mode, owner.
    let listing = text(&run_ok(Command::new("dpkg-deb").arg("-c").arg(&deb)).stdout);
    let files: Vec<(String, String, String)> = listing
        .lines()
        .filter(|l| !l.starts_with('d'))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w[5].to_string(), w[0].to_string(), w[1].to_string())
        })
        .collect();
    let mut paths: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "./etc/logrotate.d/nftsentry",
            "./etc/nftsentry/ignore",
            "./etc/nftsentry/nftsentry.toml",
            "./usr/lib/systemd/system/nftsentry.service",
            "./usr/sbin/nftsentry",
            "./usr/share/doc/nftsentry/README.md",
            "./usr/share/doc/nftsentry/copyright",
            "./usr/share/man/man5/nftsentry.toml.5.gz",
            "./usr/share/man/man8/nftsentry.8.gz",
        ]
    );
    for (path, mode, owner) in &files {
        assert_eq!(owner, "0/0", "{path}");
        let want = if path == "./usr/sbin/nftsentry" {
            "-rwxr-xr-x"
        } else {
            "-rw-r--r--"
        };
        assert_eq!(mode, want, "{path}");
    }

    // Install into a scratch root with its own dpkg database and log.
    let root = dir.path.join("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for f in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
        std::fs::write(root.join(f), "").unwrap();
    }
    // --force-depends: the scratch root has no libc6 package; the binary
    // runs on the host's libc below. --unpack: no maintainer script runs
    // (they need a shell and systemd, which tests/system.rs has).
    let o = run_ok(
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .arg(format!("--log={}", root.join("var/log/dpkg.log").display()))
            .args(["--force-depends", "--unpack"])
            .arg(&deb),
    );
    assert!(
        text(&o.stdout).contains("Unpacking nftsentry"),
        "{}",
        text(&o.stdout)
    );
    let status = text(
        &run_ok(
            Command::new("dpkg-query")
                .arg(format!("--root={}", root.display()))
                .args(["-W", "-f=${Status}\n${Conffiles}\n", "nftsentry"]),
        )
        .stdout,
    );
    assert!(status.starts_with("install ok unpacked\n"), "{status}");
    assert!(
        status.contains(" /etc/nftsentry/nftsentry.toml "),
        "{status}"
    );

    // What was installed is what the tree holds. Unpacked conffiles wait
    // under a .dpkg-new name for `dpkg --configure` (which runs postinst):
    // put them in place as it would.
    for c in &conffiles {
        let c = root.join(c.trim_start_matches('/'));
        let mut new = c.clone().into_os_string();
        new.push(".dpkg-new");
        std::fs::rename(&new, &c).unwrap_or_else(|e| panic!("{}: {e}", c.display()));
    }
    let same = |installed: &str, source: &str| {
        assert_eq!(
            std::fs::read(root.join(installed)).unwrap(),
            std::fs::read(manifest_dir().join(source)).unwrap(),
            "{installed}"
        );
    };
    same("etc/nftsentry/nftsentry.toml", "config/nftsentry.toml");
    same("etc/nftsentry/ignore", "config/ignore");
    same("etc/logrotate.d/nftsentry", "config/nftsentry.logrotate");
    same(
        "usr/lib/systemd/system/nftsentry.service",
        "config/nftsentry.service",
    );
    for (gz, source) in [
        ("usr/share/man/man8/nftsentry.8.gz", "man/nftsentry.8"),
        (
            "usr/share/man/man5/nftsentry.toml.5.gz",
            "man/nftsentry.toml.5",
        ),
    ] {
        let o = run_ok(Command::new("gzip").arg("-dc").arg(root.join(gz)));
        assert_eq!(
            o.stdout,
            std::fs::read(manifest_dir().join(source)).unwrap(),
            "{gz}"
        );
    }
    let unit =
        std::fs::read_to_string(root.join("usr/lib/systemd/system/nftsentry.service")).unwrap();
    assert!(
        unit.contains("\nExecStart=/usr/sbin/nftsentry run\n"),
        "{unit}"
    );
    assert!(unit.contains("\nStateDirectory=nftsentry\n"), "{unit}");

    // The installed binary is the one under test (stripped), and it checks
    // the installed config.
    let installed = root.join("usr/sbin/nftsentry");
    let help = |bin: &Path| text(&run_ok(Command::new(bin).arg("--help")).stdout);
    assert_eq!(help(&installed), help(&nftsentry_bin()));
    let config = root.join("etc/nftsentry/nftsentry.toml");
    let o = run_ok(Command::new(&installed).arg("-c").arg(&config).arg("check"));
    assert!(
        text(&o.stdout).starts_with(&format!("config {}: OK\n", config.display())),
        "{}",
        text(&o.stdout)
    );
    // The packaged config names /etc/nftsentry/ignore, which is the host's;
    // pointed at the installed copy, its entries are read without a warning.
    let ignored = |extra: &str| -> (usize, String) {
        let c = dir.file(
            "check.toml",
            &format!("{extra}\n{}", std::fs::read_to_string(&config).unwrap()),
        );
        let o = run_ok(Command::new(&installed).arg("-c").arg(&c).arg("check"));
        let out = text(&o.stdout);
        let n = out
            .lines()
            .find_map(|l| l.strip_suffix(" ignored networks"))
            .unwrap_or_else(|| panic!("{out}"))
            .parse()
            .unwrap();
        (n, text(&o.stderr))
    };
    // The default file's keys are all commented out, so a key added at the
    // top is the only setting.
    let (without, _) = ignored("ignore_file = \"\"");
    let (with, stderr) = ignored(&format!(
        "ignore_file = \"{}\"",
        root.join("etc/nftsentry/ignore").display()
    ));
    assert!(!stderr.contains("does not exist"), "{stderr}");
    assert!(
        with > without,
        "{with} ignored with the file, {without} without"
    );
}
