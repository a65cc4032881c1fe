//! rules/nftsentry.nft is the table for the default config. The renderer must
//! print it, and the encoder must make the kernel list it: encoder and
//! renderer cannot drift apart.
mod common;
use common::*;

const GOLDEN: &str = "rules/nftsentry.nft";

/// The golden file without its comment lines.
fn golden() -> String {
    let text = std::fs::read_to_string(GOLDEN).unwrap();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The default config, with the example ignore file installed.
fn default_config(dir: &TempDir) -> std::path::PathBuf {
    let ignore = std::fs::canonicalize("config/ignore").unwrap();
    dir.file(
        "nftsentry.toml",
        &format!(
            "ignore_file = \"{}\"\n{}",
            ignore.display(),
            private_files(&dir.path)
        ),
    )
}

#[test]
fn renderer_and_kernel_agree_with_rules_file() {
    let mut ns = Netns::new("gold");
    set_resolv_conf(&ns, "nameserver 192.0.2.53\n");
    let dir = TempDir::new("gold");
    let cfg = default_config(&dir);

    let out = nftsentry(&ns, &cfg, &["ruleset"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8(out.stdout).unwrap();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let header = "# The table nftsentry installs for the default config (config/nftsentry.toml)\n\
                      # with the example ignore file (config/ignore), on a host whose only interface\n\
                      # is lo and whose resolver is 192.0.2.53. `nftsentry ruleset` prints it for\n\
                      # yours. tests/golden.rs checks that the renderer prints this and that the\n\
                      # kernel lists it after `nftsentry run` (nft -s list table inet nftsentry).\n";
        std::fs::write(GOLDEN, format!("{header}{rendered}")).unwrap();
    }
    assert_eq!(
        normalize_ws(&rendered),
        normalize_ws(&golden()),
        "renderer drifted from {GOLDEN}:\n{rendered}"
    );

    // The file is valid nft input.
    run_ok(ns.cmd("nft").args(["-c", "-f", GOLDEN]));

    start_daemon(&mut ns, &cfg, &dir.path.join("log"));
    let listed = ns.nft(&["-s", "list", "table", "inet", "nftsentry"]);
    assert_eq!(
        normalize_ws(&listed),
        normalize_ws(&golden()),
        "kernel lists:\n{listed}"
    );
}
