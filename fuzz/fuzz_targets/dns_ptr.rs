//! resolve::parse_ptr_response on arbitrary bytes as a DNS reply to a query
//! whose id and question come from the first bytes of the input: a name it
//! accepts must be fit for a log line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nftsentry::service::resolve::parse_ptr_response;

const QUESTIONS: &[&str] = &[
    "7.100.51.198.in-addr.arpa",
    "2.2.0.192.in-addr.arpa",
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, reply)) = data.split_first() else {
        return;
    };
    let qname = QUESTIONS[usize::from(pick) % QUESTIONS.len()];
    // The query id is whatever the reply claims, half the time, so the
    // fuzzer gets past the id check without guessing it.
    let id = if pick & 0x80 != 0 && reply.len() >= 2 {
        u16::from_be_bytes([reply[0], reply[1]])
    } else {
        0x1234
    };
    if let Ok(Some(name)) = parse_ptr_response(reply, id, qname) {
        assert!(!name.is_empty() && name.len() <= 253, "{name:?}");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'),
            "{name:?}"
        );
        assert!(!name.starts_with('.') && !name.ends_with('.') && !name.contains(".."));
    }
});
