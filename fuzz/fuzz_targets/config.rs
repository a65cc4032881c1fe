//! Config::parse on arbitrary text, plus the value parsers it uses (port
//! lists, durations) on the same text: errors are config errors naming the
//! source, never panics; what parses renders back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nftsentry::config::{Config, PortSet, Proto, format_duration, parse_duration};
use nftsentry::error::Kind;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, "fuzz.toml") {
        Ok(c) => assert_eq!(c.source, "fuzz.toml"),
        Err(e) => {
            assert_eq!(e.kind, Kind::Config);
            assert!(e.message.starts_with("fuzz.toml:"), "{e}");
        }
    }
    for proto in [Proto::Tcp, Proto::Udp] {
        if let Ok(set) = PortSet::parse_for(text, proto) {
            // The list form reads back to the same set.
            assert_eq!(PortSet::parse(&set.to_string()).as_ref(), Ok(&set));
        }
    }
    if let Ok(d) = parse_duration(text) {
        assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }
});
