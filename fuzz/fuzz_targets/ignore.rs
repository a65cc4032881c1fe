//! The ignore-file parser on arbitrary text: a config error naming the file
//! and line, or networks that print and parse back to themselves.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nftsentry::cidr::Cidr;
use nftsentry::config::ignore::parse;
use nftsentry::error::Kind;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text, "ignore") {
        Ok(nets) => {
            for n in nets {
                assert_eq!(n.to_string().parse::<Cidr>(), Ok(n));
                assert!(n.contains(&n.addr()));
            }
        }
        Err(e) => {
            assert_eq!(e.kind, Kind::Config);
            assert!(e.message.starts_with("ignore:"), "{e}");
        }
    }
});
