//! The portsentry.conf importer on arbitrary files: portsentry.conf, then
//! Debian's /etc/default/portsentry after the first NUL, then the ignore
//! file after the second. Whatever they hold, the nftsentry.toml it writes
//! must pass the config parser (the importer promises `nftsentry check`
//! accepts it), and the ignore file it writes must pass the ignore parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nftsentry::config::Config;
use nftsentry::cli::import::{DebianDefault, IgnoreImport, PortsentryConf, convert};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0);
    let conf = parts.next().unwrap_or_default();
    let default = parts.next();
    let ignore = parts.next();
    let conf = PortsentryConf::parse(conf, "portsentry.conf");
    let default = default.map(|d| DebianDefault::parse(&String::from_utf8_lossy(d), "default"));
    if let Some(Err(e)) = &default {
        assert!(e.message.starts_with("default:"), "{e}");
    }
    let default = default.and_then(Result::ok);
    let ignore =
        ignore.map(|i| IgnoreImport::parse(&String::from_utf8_lossy(i), "portsentry.ignore"));
    // With the ignore entries as comments, or written to a file (one of
    // the two per input: the conversion and its parse are slow under ASan).
    let write_ignore = (data.len() % 2 == 1).then(|| std::path::Path::new("/etc/nftsentry/ignore"));
    let out = convert(&conf, default.as_ref(), ignore.as_ref(), write_ignore, &[]);
    if let Err(e) = Config::parse(&out.toml, "imported.toml") {
        panic!("the imported config does not parse: {e}\n{}", out.toml);
    }
    if let Some(ig) = &ignore {
        if let Err(e) = nftsentry::config::ignore::parse(&ig.file_text(), "ignore") {
            panic!(
                "the imported ignore file does not parse: {e}\n{}",
                ig.file_text()
            );
        }
    }
});
