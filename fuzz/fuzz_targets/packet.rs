//! packet::decode on arbitrary bytes, as NFLOG would hand them over: it must
//! return, and what it returns must agree with the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nftsentry::detect::packet::{Transport, decode};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = decode(data) {
        // The version nibble decides the family of both addresses.
        let v4 = data[0] >> 4 == 4;
        assert_eq!(p.src.is_ipv4(), v4);
        assert_eq!(p.dst.is_ipv4(), v4);
        // The smallest decodable packet: an IPv4 header and UDP's ports.
        assert!(data.len() >= 24);
        if let Transport::Tcp(_) = p.transport {
            assert!(data.len() >= 34);
        }
    }
});
