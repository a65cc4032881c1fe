//! nflog::parse_datagram on arbitrary bytes, as one recv(2) from the NFLOG
//! socket: every packet it reports borrows from the datagram, and the
//! counters add up.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nftsentry::kernel::nflog::{NflogStats, parse_datagram};

fuzz_target!(|data: &[u8]| {
    let mut stats = NflogStats::default();
    let mut seen = 0u64;
    let range = data.as_ptr_range();
    parse_datagram(
        data,
        |p| {
            seen += 1;
            let inside = |s: &[u8]| {
                s.is_empty() || (range.start <= s.as_ptr() && s.as_ptr_range().end <= range.end)
            };
            assert!(inside(p.payload));
            assert!(p.prefix.is_none_or(|s| inside(s) && !s.contains(&0)));
            // The payload goes on to the packet decoder, as in the daemon.
            let _ = nftsentry::detect::packet::decode(p.payload);
        },
        &mut stats,
    );
    assert_eq!(stats.packets, seen);
    // A datagram holds at most one message per 16 bytes.
    assert!(stats.packets + stats.malformed <= (data.len() / 16 + 1) as u64);
});
