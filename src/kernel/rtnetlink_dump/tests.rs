use super::*;
use netlink_packet_core::NLM_F_MULTIPART;

/// One attribute: length, type, value, padded to 4 bytes.
fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut a = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
    a.extend(kind.to_ne_bytes());
    a.extend(value);
    a.resize(a.len().next_multiple_of(4), 0);
    a
}

fn v4(s: &str) -> Vec<u8> {
    s.parse::<Ipv4Addr>().unwrap().octets().to_vec()
}

fn v6(s: &str) -> Vec<u8> {
    s.parse::<Ipv6Addr>().unwrap().octets().to_vec()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn address_messages_give_the_local_end() {
    // IPv4 on index 3: IFA_ADDRESS and IFA_LOCAL equal, a label.
    let mut m = vec![AF_INET, 24, 0, 0];
    m.extend(3u32.to_ne_bytes());
    m.extend(nla(IFA_ADDRESS, &v4("192.0.2.1")));
    m.extend(nla(IFA_LOCAL, &v4("192.0.2.1")));
    m.extend(nla(IFA_LABEL, b"eth0:1\0"));
    let a = parse_address(&m).unwrap().unwrap();
    assert_eq!((a.index, a.addr), (3, ip("192.0.2.1")));
    assert_eq!(a.label.as_deref(), Some("eth0:1"));
    // Point-to-point IPv6: IFA_ADDRESS is the peer, IFA_LOCAL ours,
    // whichever comes first.
    let mut m = vec![AF_INET6, 128, 0, 0];
    m.extend(4u32.to_ne_bytes());
    m.extend(nla(IFA_LOCAL, &v6("2001:db8::5")));
    m.extend(nla(IFA_ADDRESS, &v6("2001:db8::6")));
    assert_eq!(parse_address(&m).unwrap().unwrap().addr, ip("2001:db8::5"));
    // Plain IPv6: only IFA_ADDRESS.
    let mut m = vec![AF_INET6, 64, 0, 0];
    m.extend(4u32.to_ne_bytes());
    m.extend(nla(IFA_ADDRESS, &v6("2001:db8:1::1")));
    assert_eq!(
        parse_address(&m).unwrap().unwrap().addr,
        ip("2001:db8:1::1")
    );
    // Another family, no address, an address of a strange length.
    let mut other = vec![7u8, 0, 0, 0];
    other.extend(1u32.to_ne_bytes());
    assert_eq!(parse_address(&other).unwrap(), None);
    let mut none = vec![AF_INET, 0, 0, 0, 1, 0, 0, 0];
    assert_eq!(parse_address(&none).unwrap(), None);
    none.extend(nla(IFA_ADDRESS, &[1, 2, 3]));
    assert_eq!(parse_address(&none).unwrap(), None);
    assert!(parse_address(&[AF_INET, 0, 0]).is_err());
}

fn rtmsg(family: u8, dst_len: u8, table: u8) -> Vec<u8> {
    vec![family, dst_len, 0, 0, table, 3, 0, 1, 0, 0, 0, 0]
}

/// One struct rtnexthop with its attributes.
fn rtnh(attrs: &[u8]) -> Vec<u8> {
    let mut h = ((RTNH_LEN + attrs.len()) as u16).to_ne_bytes().to_vec();
    h.extend([0, 0]);
    h.extend(2i32.to_ne_bytes());
    h.extend(attrs);
    h
}

#[test]
fn route_messages_give_table_and_every_gateway() {
    // A default route of table 1000 (RTA_TABLE beats the header byte).
    let mut m = rtmsg(AF_INET, 0, 252);
    m.extend(nla(RTA_TABLE, &1000u32.to_ne_bytes()));
    m.extend(nla(RTA_GATEWAY, &v4("192.0.2.9")));
    assert_eq!(
        parse_route(&m).unwrap().unwrap(),
        Route {
            table: 1000,
            default: true,
            gateways: vec![ip("192.0.2.9")]
        }
    );
    // Multipath: each next hop's gateway, and RTA_VIA (IPv4 via IPv6).
    let mut hops = rtnh(&nla(RTA_GATEWAY, &v6("2001:db8:1::2")));
    let mut via = 10u16.to_ne_bytes().to_vec();
    via.extend(v6("2001:db8:1::3"));
    hops.extend(rtnh(&nla(RTA_VIA, &via)));
    hops.extend(rtnh(&[]));
    let mut m = rtmsg(AF_INET6, 48, 254);
    m.extend(nla(RTA_MULTIPATH, &hops));
    let r = parse_route(&m).unwrap().unwrap();
    assert_eq!((r.table, r.default), (254, false));
    assert_eq!(r.gateways, vec![ip("2001:db8:1::2"), ip("2001:db8:1::3")]);
    // A via whose family does not match its length is no address.
    let mut bad_via = 2u16.to_ne_bytes().to_vec();
    bad_via.extend(v6("2001:db8:1::3"));
    let mut m = rtmsg(AF_INET, 0, 254);
    m.extend(nla(RTA_VIA, &bad_via));
    m.extend(nla(RTA_VIA, &[10]));
    assert!(parse_route(&m).unwrap().unwrap().gateways.is_empty());
    // Other families are not looked at; a short header is an error.
    assert_eq!(parse_route(&rtmsg(28, 0, 254)).unwrap(), None);
    assert!(parse_route(&[AF_INET; 11]).is_err());
    // A next hop longer than its attribute, or shorter than its header.
    let mut m = rtmsg(AF_INET, 0, 254);
    let mut hop = rtnh(&nla(RTA_GATEWAY, &v4("192.0.2.2")));
    hop[0] = 200;
    m.extend(nla(RTA_MULTIPATH, &hop));
    assert!(parse_route(&m).is_err());
    let mut m = rtmsg(AF_INET, 0, 254);
    m.extend(nla(RTA_MULTIPATH, &[4, 0, 0, 0]));
    assert!(parse_route(&m).is_err());
}

#[test]
fn nexthop_messages_give_their_gateway() {
    let mut m = vec![AF_INET, 0, 3, 0, 0, 0, 0, 0];
    m.extend(nla(1, &7u32.to_ne_bytes()));
    m.extend(nla(NHA_GATEWAY, &v4("192.0.2.77")));
    assert_eq!(parse_nexthop(&m).unwrap(), Some(ip("192.0.2.77")));
    // A group has no gateway of its own.
    let mut g = vec![0u8, 0, 3, 0, 0, 0, 0, 0];
    g.extend(nla(2, &[7, 0, 0, 0, 0, 0, 0, 0]));
    assert_eq!(parse_nexthop(&g).unwrap(), None);
    assert!(parse_nexthop(&[0; 7]).is_err());
}

#[test]
fn no_message_makes_a_parser_panic() {
    // Every prefix and every single-byte change of valid messages, and
    // pseudo-random bytes: an answer or an error, never a panic.
    let mut route = rtmsg(AF_INET, 0, 254);
    let mut hops = rtnh(&nla(RTA_GATEWAY, &v4("192.0.2.2")));
    hops.extend(rtnh(&nla(RTA_GATEWAY, &v4("192.0.2.3"))));
    route.extend(nla(RTA_MULTIPATH, &hops));
    route.extend(nla(RTA_TABLE, &100u32.to_ne_bytes()));
    let mut addr = vec![AF_INET6, 64, 0, 0, 1, 0, 0, 0];
    addr.extend(nla(IFA_ADDRESS, &v6("2001:db8::1")));
    let mut nh = vec![AF_INET6, 0, 3, 0, 0, 0, 0, 0];
    nh.extend(nla(NHA_GATEWAY, &v6("2001:db8::2")));
    let all = |b: &[u8]| {
        let _ = parse_route(b);
        let _ = parse_address(b);
        let _ = parse_nexthop(b);
        let _ = link_name(b);
    };
    for m in [&route, &addr, &nh] {
        for n in 0..=m.len() {
            all(&m[..n]);
        }
        for i in 0..m.len() {
            for v in [0u8, 1, 3, 4, 0x7f, 0xff] {
                let mut c = m.clone();
                c[i] = v;
                all(&c);
            }
        }
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in 0..2000 {
        let b: Vec<u8> = (0..len % 97)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if x % 3 == 0 { AF_INET } else { x as u8 }
            })
            .collect();
        all(&b);
    }
}

#[test]
fn link_name_rejects_short_and_bad_messages() {
    assert!(link_name(&[0; 8]).is_err());
    // ifinfomsg for index 7, then IFLA_IFNAME "eth7\0" (nla len 9, padded to 12).
    let mut msg = vec![0u8; IFINFOMSG_LEN];
    msg[4..8].copy_from_slice(&7u32.to_ne_bytes());
    msg.extend_from_slice(&9u16.to_ne_bytes());
    msg.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
    msg.extend_from_slice(b"eth7\0\0\0\0");
    assert_eq!(link_name(&msg).unwrap(), Some((7, "eth7".to_string())));
    // An attribute claiming more bytes than there are.
    let mut bad = msg[..IFINFOMSG_LEN].to_vec();
    bad.extend_from_slice(&200u16.to_ne_bytes());
    bad.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
    assert!(link_name(&bad).is_err());
}

/// One netlink message: header (length, type, flags, seq, port) and
/// payload, padded to 4 bytes.
fn nlmsg(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&(16 + payload.len() as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(payload);
    while m.len() % 4 != 0 {
        m.push(0);
    }
    m
}

/// The (type, payload) pairs a walk passed on.
type Seen = Vec<(u16, Vec<u8>)>;

/// Walks `data` as the reply to dump 7; returns what `walk_datagram`
/// said, the interrupted flag, and the messages seen.
fn walk(data: &[u8]) -> (Parsed<bool>, bool, Seen) {
    let mut seen = Vec::new();
    let mut interrupted = false;
    let r = walk_datagram(data, 7, &mut interrupted, &mut |k, p| {
        seen.push((k, p.to_vec()));
        Ok(())
    });
    (r, interrupted, seen)
}

#[test]
fn walk_multipart_until_done() {
    // A first datagram without DONE: more to come.
    let mut first = nlmsg(RTM_NEWADDR, NLM_F_MULTIPART, 7, &[1, 2, 3]);
    first.extend(nlmsg(RTM_NEWADDR, NLM_F_MULTIPART, 7, &[4; 8]));
    let (r, intr, seen) = walk(&first);
    assert_eq!(r, Ok(false));
    assert!(!intr);
    assert_eq!(
        seen,
        vec![(RTM_NEWADDR, vec![1, 2, 3]), (RTM_NEWADDR, vec![4; 8])]
    );
    // The last one: a message, then DONE; what follows DONE is not read.
    let mut last = nlmsg(RTM_NEWROUTE, NLM_F_MULTIPART, 7, &[5]);
    last.extend(nlmsg(NLMSG_DONE, NLM_F_MULTIPART, 7, &0i32.to_ne_bytes()));
    last.extend(nlmsg(RTM_NEWROUTE, NLM_F_MULTIPART, 7, &[6]));
    let (r, _, seen) = walk(&last);
    assert_eq!(r, Ok(true));
    assert_eq!(seen, vec![(RTM_NEWROUTE, vec![5])]);
}

#[test]
fn walk_skips_other_requests_and_noop() {
    let mut d = nlmsg(RTM_NEWADDR, NLM_F_MULTIPART, 6, &[9]);
    d.extend(nlmsg(NLMSG_DONE, NLM_F_MULTIPART, 6, &0i32.to_ne_bytes()));
    d.extend(nlmsg(NLMSG_NOOP, 0, 7, &[]));
    d.extend(nlmsg(RTM_NEWADDR, NLM_F_MULTIPART, 7, &[1]));
    let (r, _, seen) = walk(&d);
    assert_eq!(r, Ok(false));
    assert_eq!(seen, vec![(RTM_NEWADDR, vec![1])]);
}

#[test]
fn walk_flags_interrupted_dump() {
    let mut d = nlmsg(RTM_NEWADDR, NLM_F_MULTIPART | NLM_F_DUMP_INTR, 7, &[1]);
    d.extend(nlmsg(
        NLMSG_DONE,
        NLM_F_MULTIPART | NLM_F_DUMP_INTR,
        7,
        &0i32.to_ne_bytes(),
    ));
    let (r, intr, _) = walk(&d);
    assert_eq!(r, Ok(true));
    assert!(intr);
}

#[test]
fn walk_reports_errors() {
    // NLMSG_ERROR with -EPERM (and the request's header after the code).
    let mut payload = (-1i32).to_ne_bytes().to_vec();
    payload.extend_from_slice(&[0; 16]);
    let (r, _, _) = walk(&nlmsg(NLMSG_ERROR, 0, 7, &payload));
    assert_eq!(r, Err(std::io::Error::from_raw_os_error(1).to_string()));
    // Code 0 is an acknowledgement.
    let mut ack = (0i32).to_ne_bytes().to_vec();
    ack.extend_from_slice(&[0; 16]);
    assert_eq!(walk(&nlmsg(NLMSG_ERROR, 0, 7, &ack)).0, Ok(false));
    // A dump that failed part-way: the errno is in DONE (-EMSGSIZE).
    let (r, _, _) = walk(&nlmsg(
        NLMSG_DONE,
        NLM_F_MULTIPART,
        7,
        &(-90i32).to_ne_bytes(),
    ));
    assert_eq!(r, Err(std::io::Error::from_raw_os_error(90).to_string()));
    assert!(walk(&nlmsg(NLMSG_OVERRUN, 0, 7, &[])).0.is_err());
    // An error message too short to hold its code.
    assert!(walk(&nlmsg(NLMSG_ERROR, 0, 7, &[0, 0])).0.is_err());
    // The callback's error stops the walk.
    let d = nlmsg(RTM_NEWADDR, 0, 7, &[1]);
    let r = walk_datagram(&d, 7, &mut false, &mut |_, _| Err("no".into()));
    assert_eq!(r, Err("no".to_string()));
}

#[test]
fn walk_rejects_malformed_datagrams() {
    let good = nlmsg(RTM_NEWADDR, 0, 7, &[1, 2, 3, 4]);
    // Shorter than a header, cut in the middle, length below the header size.
    assert!(walk(&good[..10]).0.is_err());
    assert!(walk(&good[..18]).0.is_err());
    let mut small = good.clone();
    small[..4].copy_from_slice(&8u32.to_ne_bytes());
    assert!(walk(&small).0.is_err());
    // Every prefix of a valid datagram either parses or errs, never panics.
    let mut d = good.clone();
    d.extend(nlmsg(NLMSG_DONE, 0, 7, &0i32.to_ne_bytes()));
    for n in 0..=d.len() {
        let _ = walk(&d[..n]);
    }
}
