//! nft::parse_element_dump on arbitrary bytes, as one NEWSETELEM message of
//! a set-element dump from the kernel.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nftsentry::kernel::nft::parse_element_dump;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    if parse_element_dump(data, &mut out).is_ok() {
        for e in &out {
            // Keys are copied out of the message, never empty.
            assert!(!e.key.is_empty() && e.key.len() <= data.len());
        }
    }
});
