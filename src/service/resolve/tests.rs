//! Tests of the resolver: the wire format of queries and answers (spoofed,
//! mangled, hostile) and the addresses replies may come from. The cache is
//! tested in `cache`.

use super::wire::{CLASS_IN, TYPE_CNAME, TYPE_PTR, hostname_from_wire};
use super::*;

const Q4: &str = "7.100.51.198.in-addr.arpa";

fn name_wire(name: &str) -> Vec<u8> {
    let mut w = encode_name(name).unwrap();
    w.push(0);
    w
}

/// Header + question for `qname`, with `ancount` answers to follow.
fn reply_head(id: u16, rcode: u16, qname: &str, ancount: u16) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&(0x8180u16 | rcode).to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(&ancount.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    m.extend_from_slice(&name_wire(qname));
    m.extend_from_slice(&TYPE_PTR.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    m
}

/// One record: `owner` (raw wire bytes), type, then raw rdata.
fn record(m: &mut Vec<u8>, owner: &[u8], rtype: u16, rdata: &[u8]) {
    m.extend_from_slice(owner);
    m.extend_from_slice(&rtype.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    m.extend_from_slice(&3600u32.to_be_bytes());
    m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    m.extend_from_slice(rdata);
}

/// Answer with the owner compressed to the question (offset 12).
fn ptr_reply(id: u16, qname: &str, target: &[u8]) -> Vec<u8> {
    let mut m = reply_head(id, 0, qname, 1);
    record(&mut m, &[0xc0, 12], TYPE_PTR, target);
    m
}

fn valid() -> Vec<u8> {
    ptr_reply(0x1234, Q4, &name_wire("scanner.example.net"))
}

#[test]
fn ptr_names() {
    assert_eq!(
        ptr_name("198.51.100.7".parse().unwrap()),
        "7.100.51.198.in-addr.arpa"
    );
    assert_eq!(ptr_name("0.0.0.0".parse().unwrap()), "0.0.0.0.in-addr.arpa");
    assert_eq!(
        ptr_name("2001:db8::567:89ab".parse().unwrap()),
        "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
    );
    assert_eq!(
        ptr_name("::ffff:192.0.2.1".parse().unwrap()),
        "1.2.0.192.in-addr.arpa"
    );
    let six = ptr_name("ffff::1".parse().unwrap());
    assert_eq!(six.split('.').count(), 34);
    assert!(six.ends_with(".f.f.f.f.ip6.arpa") && six.starts_with("1.0.0."));
}

#[test]
fn query_wire_format() {
    let q = build_query(0xbeef, &encode_name("1.2.0.192.in-addr.arpa").unwrap());
    let mut want = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["1", "2", "0", "192", "in-addr", "arpa"] {
        want.push(label.len() as u8);
        want.extend_from_slice(label.as_bytes());
    }
    want.extend_from_slice(&[0, 0, 12, 0, 1]);
    assert_eq!(q, want);
    assert!(encode_name("a..b").is_err());
    assert!(encode_name(&"x".repeat(64)).is_err());
    assert_eq!(encode_name("a.b.").unwrap(), b"\x01a\x01b");
}

#[test]
fn valid_answer() {
    assert_eq!(
        parse_ptr_response(&valid(), 0x1234, Q4),
        Ok(Some("scanner.example.net".into()))
    );
    // Uncompressed owner name, and a trailing dot on the question.
    let mut m = reply_head(7, 0, Q4, 1);
    record(
        &mut m,
        &name_wire(Q4),
        TYPE_PTR,
        &name_wire("a-b_c.example"),
    );
    assert_eq!(
        parse_ptr_response(&m, 7, &format!("{Q4}.")),
        Ok(Some("a-b_c.example".into()))
    );
}

#[test]
fn compressed_target_and_first_ptr_wins() {
    // Two PTRs, the second compressed against the first: first wins.
    let mut m = reply_head(1, 0, Q4, 2);
    let first_at = m.len() + 12; // after owner pointer (2) + type..rdlength (10)
    record(
        &mut m,
        &[0xc0, 12],
        TYPE_PTR,
        b"\x04host\x07example\x03net\x00",
    );
    let mut second = b"\x05other".to_vec();
    second.extend_from_slice(&(0xc000 | (first_at + 5) as u16).to_be_bytes());
    record(&mut m, &[0xc0, 12], TYPE_PTR, &second);
    assert_eq!(
        parse_ptr_response(&m, 1, Q4),
        Ok(Some("host.example.net".into()))
    );
    // Swap the counts' meaning: with the first record an A record, the
    // compressed second PTR is the answer.
    let mut a = m.clone();
    a[first_at - 9] = 1; // type low byte of the first record: A
    assert_eq!(
        parse_ptr_response(&a, 1, Q4),
        Ok(Some("other.example.net".into()))
    );

    // Target compressed into the question name.
    let mut m = reply_head(1, 0, Q4, 2);
    record(&mut m, &[0xc0, 12], 1, &[192, 0, 2, 1]); // an A record: skipped
    let mut rd = vec![4, b'h', b'o', b's', b't'];
    rd.extend_from_slice(&[0xc0, 12 + 2]); // -> "100.51.198.in-addr.arpa"
    record(&mut m, &[0xc0, 12], TYPE_PTR, &rd);
    assert_eq!(
        parse_ptr_response(&m, 1, Q4),
        Ok(Some("host.100.51.198.in-addr.arpa".into()))
    );
}

#[test]
fn cname_chain_to_ptr() {
    // RFC 2317 classless delegation: the answer is a CNAME then the PTR.
    let mut m = reply_head(9, 0, Q4, 2);
    let alias = name_wire("7.0-25.100.51.198.in-addr.arpa");
    let alias_at = m.len() + 12;
    record(&mut m, &[0xc0, 12], TYPE_CNAME, &alias);
    record(
        &mut m,
        &(0xc000 | alias_at as u16).to_be_bytes(),
        TYPE_PTR,
        &name_wire("x.example"),
    );
    assert_eq!(parse_ptr_response(&m, 9, Q4), Ok(Some("x.example".into())));
    // A PTR for a name we did not ask about is not ours.
    let mut m = reply_head(9, 0, Q4, 1);
    record(
        &mut m,
        &name_wire("8.100.51.198.in-addr.arpa"),
        TYPE_PTR,
        &name_wire("x.example"),
    );
    assert_eq!(parse_ptr_response(&m, 9, Q4), Ok(None));
}

#[test]
fn case_insensitive_question() {
    let m = valid();
    assert!(
        parse_ptr_response(&m, 0x1234, "7.100.51.198.IN-ADDR.Arpa")
            .unwrap()
            .is_some()
    );
    let upper = ptr_reply(0x1234, "7.100.51.198.In-AddR.ARPA", &name_wire("a.b"));
    assert_eq!(
        parse_ptr_response(&upper, 0x1234, Q4),
        Ok(Some("a.b".into()))
    );
}

#[test]
fn negative_answers() {
    assert_eq!(
        parse_ptr_response(&reply_head(5, 3, Q4, 0), 5, Q4),
        Ok(None)
    );
    assert_eq!(
        parse_ptr_response(&reply_head(5, 0, Q4, 0), 5, Q4),
        Ok(None)
    );
    let fail = reply_head(5, 2, Q4, 0);
    assert_eq!(parse_ptr_response(&fail, 5, Q4), Ok(None));
    assert_eq!(
        parse_answer(&fail, 5, &encode_name(Q4).unwrap()),
        Ok(Answer::ServerFailure(2))
    );
}

#[test]
fn mismatches_are_errors() {
    let m = valid();
    assert!(parse_ptr_response(&m, 0x1235, Q4).is_err(), "wrong id");
    assert!(parse_ptr_response(&m, 0x1234, "8.100.51.198.in-addr.arpa").is_err());
    assert!(parse_ptr_response(&m, 0x1234, "7.100.51.198.in-addr.arpa.x").is_err());
    let mut q = m.clone();
    q[2] &= 0x7f; // QR clear: a query, not a response
    assert!(parse_ptr_response(&q, 0x1234, Q4).is_err());
    let mut q = m.clone();
    q[2] |= 0x08; // opcode 1
    assert!(parse_ptr_response(&q, 0x1234, Q4).is_err());
    let mut q = m.clone();
    q[5] = 2; // two questions
    assert!(parse_ptr_response(&q, 0x1234, Q4).is_err());
    let mut q = m.clone();
    let qtype_at = 12 + name_wire(Q4).len() + 1;
    q[qtype_at] = 1; // question type A
    assert!(parse_ptr_response(&q, 0x1234, Q4).is_err());
    // NXDOMAIN for another question is not our NXDOMAIN.
    let nx = reply_head(5, 3, "8.100.51.198.in-addr.arpa", 0);
    assert!(parse_ptr_response(&nx, 5, Q4).is_err());
}

#[test]
fn pointer_loops_and_bad_labels() {
    // Owner name points at itself.
    let mut m = reply_head(1, 0, Q4, 1);
    let at = m.len() as u16;
    record(
        &mut m,
        &(0xc000 | at).to_be_bytes(),
        TYPE_PTR,
        &name_wire("a.b"),
    );
    assert!(parse_ptr_response(&m, 1, Q4).unwrap_err().contains("loop"));
    // Two pointers to each other inside the PTR data.
    let mut m = reply_head(1, 0, Q4, 1);
    let rd_at = (m.len() + 12) as u16;
    let mut rd = (0xc000 | (rd_at + 2)).to_be_bytes().to_vec();
    rd.extend_from_slice(&(0xc000 | rd_at).to_be_bytes());
    record(&mut m, &[0xc0, 12], TYPE_PTR, &rd);
    assert!(parse_ptr_response(&m, 1, Q4).unwrap_err().contains("loop"));
    // A label, then a pointer back before it: grows until too long.
    let mut m = reply_head(1, 0, Q4, 1);
    let rd_at = (m.len() + 12) as u16;
    let mut rd = vec![3, b'a', b'b', b'c'];
    rd.extend_from_slice(&(0xc000 | rd_at).to_be_bytes());
    record(&mut m, &[0xc0, 12], TYPE_PTR, &rd);
    assert!(parse_ptr_response(&m, 1, Q4).is_err());
    // Pointer out of the message; reserved label types 0x40/0x80.
    let m = ptr_reply(1, Q4, &[0xc0, 0xff]);
    assert!(parse_ptr_response(&m, 1, Q4).is_err());
    let m = ptr_reply(1, Q4, &[0x41, b'a', 0]);
    assert!(parse_ptr_response(&m, 1, Q4).is_err());
    // PTR name longer than its rdata says.
    let mut m = reply_head(1, 0, Q4, 1);
    record(&mut m, &[0xc0, 12], TYPE_PTR, b"\x03abc");
    m.extend_from_slice(b"\x00");
    assert!(parse_ptr_response(&m, 1, Q4).is_err());
    // rdlength past the end.
    let mut m = valid();
    let len_at = m.len() - name_wire("scanner.example.net").len() - 2;
    m[len_at] = 0xff;
    assert!(parse_ptr_response(&m, 0x1234, Q4).is_err());
}

#[test]
fn hostile_names_are_not_found() {
    let raw = |labels: &[&[u8]]| {
        let mut w = Vec::new();
        for l in labels {
            w.push(l.len() as u8);
            w.extend_from_slice(l);
        }
        w.push(0);
        w
    };
    let cases: &[&[&[u8]]] = &[
        &[b"evil host", b"example"],
        &[b"evil\nAug 1 fake log line", b"example"],
        &[b"x\x1b[31mred", b"example"],
        &[b"tab\there"],
        &[b"a.b", b"dot-inside-a-label"],
        &[b"semi;colon"],
        &[b"slash/ip"],
        &[b"\xc3\xa9t\xc3\xa9"],
        &[b"nul\x00"],
        &[b"quote\""],
    ];
    for labels in cases {
        let m = ptr_reply(3, Q4, &raw(labels));
        assert_eq!(parse_ptr_response(&m, 3, Q4), Ok(None), "{labels:?}");
    }
    // The root name is no name.
    assert_eq!(parse_ptr_response(&ptr_reply(3, Q4, &[0]), 3, Q4), Ok(None));
    // 253 characters pass (the most a 255-byte wire name holds); one
    // more does not fit on the wire and the answer is refused.
    let label = [b'a'; 63];
    let ok = raw(&[&label, &label, &label, &label[..61]]);
    assert_eq!(
        parse_ptr_response(&ptr_reply(3, Q4, &ok), 3, Q4)
            .unwrap()
            .map(|n| n.len()),
        Some(253)
    );
    let long = raw(&[&label, &label, &label, &label[..62]]);
    assert!(parse_ptr_response(&ptr_reply(3, Q4, &long), 3, Q4).is_err());
    assert_eq!(hostname_from_wire(&long[..long.len() - 1]), None);
}

#[test]
fn every_prefix_is_handled() {
    let m = valid();
    for cut in 0..m.len() {
        assert!(
            parse_ptr_response(&m[..cut], 0x1234, Q4).is_err(),
            "cut at {cut}"
        );
    }
    assert!(parse_ptr_response(&m, 0x1234, Q4).unwrap().is_some());
}

#[test]
fn random_buffers_never_panic() {
    let mut rng = Rng(0x5eed);
    let base = valid();
    let mut found = 0;
    for i in 0..100_000u32 {
        let buf: Vec<u8> = if i % 2 == 0 {
            // Pure noise, with a matching id now and then.
            let len = (rng.next_u64() % 300) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            if b.len() >= 2 && i % 4 == 0 {
                b[..2].copy_from_slice(&0x1234u16.to_be_bytes());
            }
            b
        } else {
            // A valid answer with a few bytes flipped: reaches deep code.
            let mut b = base.clone();
            for _ in 0..1 + rng.next_u64() % 4 {
                let at = (rng.next_u64() as usize) % b.len();
                b[at] = rng.next_u64() as u8;
            }
            b
        };
        if let Ok(Some(name)) = parse_ptr_response(&buf, 0x1234, Q4) {
            assert!(name.len() <= 253);
            assert!(
                name.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"-._".contains(&c))
            );
            found += 1;
        }
    }
    // The mutations must leave some answers intact, or the test tests nothing deep.
    assert!(found > 1000, "only {found} mutated answers parsed");
}

#[test]
fn same_addr_maps_v4() {
    let s: SocketAddr = "127.0.0.1:53".parse().unwrap();
    assert!(same_addr("[::ffff:127.0.0.1]:53".parse().unwrap(), s));
    assert!(!same_addr("127.0.0.1:5353".parse().unwrap(), s));
    assert!(!same_addr("127.0.0.2:53".parse().unwrap(), s));
}
