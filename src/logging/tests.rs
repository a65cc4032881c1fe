//! Tests of the log lines, the journal fields and bursts (no root).

mod gate {
    use super::super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_gate_holds_back_a_flood_and_counts_it() {
        let t0 = Instant::now();
        let mut g = Gate::new(Duration::from_secs(60));
        assert_eq!(g.admit(t0), Some(0));
        for i in 1..=1000 {
            assert_eq!(g.admit(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(g.admit(t0 + Duration::from_secs(60)), Some(1000));
        assert_eq!(g.admit(t0 + Duration::from_secs(61)), None);
    }
}

mod journal_tests {
    use super::super::*;

    fn fields(line: &str) -> (Option<&'static str>, Vec<(&'static str, String)>) {
        journal_fields(Level::Notice, line)
    }

    #[test]
    fn lines_give_their_fields() {
        let (k, f) = fields(
            "attackalert: TCP SYN/Normal scan from host: scanner.example/198.51.100.7 to TCP port: 1",
        );
        assert_eq!(k, Some("probe"));
        assert!(
            f.contains(&("NFTSENTRY_SOURCE", "198.51.100.7".into())),
            "{f:?}"
        );
        assert!(f.contains(&("NFTSENTRY_PORT", "1".into())));
        assert!(f.contains(&("NFTSENTRY_PROTOCOL", "TCP".into())));
        assert!(f.contains(&("NFTSENTRY_SCAN_TYPE", "TCP SYN/Normal scan".into())));
        let (k, f) = fields(
            "attackalert: Host 2001:db8::7 has been blocked via nftables set blocked6 in table inet nftsentry for 1d",
        );
        assert_eq!(k, Some("ban"));
        assert!(f.contains(&("NFTSENTRY_SOURCE", "2001:db8::7".into())));
        assert!(f.contains(&("NFTSENTRY_ACTION", "nftables set".into())));
        assert!(f.contains(&("NFTSENTRY_BAN_LENGTH", "1d".into())));
        let (k, f) = fields("ban of 192.0.2.9 expired; it dropped 3 packets (252 bytes)");
        assert_eq!(k, Some("unban"));
        assert!(f.contains(&("NFTSENTRY_SOURCE", "192.0.2.9".into())));
        let (k, _) = fields(
            "attackalert: Host: 192.0.2.53 found in ignore list (resolver), aborting actions: UDP scan to UDP port: 9",
        );
        assert_eq!(k, Some("ignored"));
        assert_eq!(
            fields("adminalert: nftsentry 0.1.0 started: table").0,
            Some("start")
        );
        assert_eq!(
            fields("adminalert: nftsentry stopping; table inet x removed").0,
            Some("stop")
        );
        assert_eq!(
            journal_fields(Level::Error, "adminalert: ERROR: x").0,
            Some("error")
        );
        assert_eq!(fields("adminalert: something else").0, None);
    }

    #[test]
    fn native_datagrams_frame_newlines() {
        let m = native_message(Level::Warning, "two\nlines");
        assert!(m.starts_with(b"MESSAGE\n\x09\0\0\0\0\0\0\0two\nlines\nPRIORITY=4\n"));
        let m =
            String::from_utf8(native_message(Level::Notice, "ban of 192.0.2.9 expired")).unwrap();
        assert!(
            m.contains("MESSAGE_ID=7992b435fa344406bba95c4e28b9dc42\n"),
            "{m}"
        );
        assert!(m.contains("NFTSENTRY_SOURCE=192.0.2.9\n"), "{m}");
    }
}

mod burst_tests {
    //! Bursts: what is written, in how many writes, with fake outputs (and
    //! a socket pair for sendmmsg); no root needed.
    use super::super::*;
    use std::net::IpAddr;

    const STDERR: Route = Route {
        syslog: false,
        native: false,
        prefix: false,
    };
    const JOURNAL_STREAM: Route = Route {
        syslog: false,
        native: false,
        prefix: true,
    };
    const NATIVE: Route = Route {
        syslog: false,
        native: true,
        prefix: true,
    };
    const SYSLOG: Route = Route {
        syslog: true,
        native: false,
        prefix: false,
    };

    /// Records each write(2) and each sendmmsg(2); refuses the datagrams
    /// `refuse` says.
    #[derive(Default)]
    struct Record {
        writes: Vec<Vec<u8>>,
        sends: Vec<(Sink, Vec<Vec<u8>>)>,
        refuse: Option<fn(&[u8]) -> bool>,
    }

    impl Outputs for Record {
        fn stderr(&mut self, bytes: &[u8]) {
            self.writes.push(bytes.to_vec());
        }
        fn send(&mut self, sink: Sink, msgs: &[&[u8]], failed: &mut dyn FnMut(usize)) {
            let mut sent = Vec::new();
            for (i, m) in msgs.iter().enumerate() {
                if self.refuse.is_some_and(|r| r(m)) {
                    failed(i);
                } else {
                    sent.push(m.to_vec());
                }
            }
            self.sends.push((sink, sent));
        }
    }

    fn burst() -> Pending {
        let mut p = Pending::default();
        p.depth = 1;
        p
    }

    fn alert(i: usize) -> String {
        let ip = IpAddr::from([198, 18, (i >> 8) as u8, i as u8]);
        format!("attackalert: TCP SYN/Normal scan from host: {ip}/{ip} to TCP port: {i}")
    }

    #[test]
    fn a_burst_writes_whole_lines_in_few_writes_of_at_most_pipe_buf() {
        for route in [STDERR, JOURNAL_STREAM] {
            let mut p = burst();
            let mut out = Record::default();
            let mut want = String::new();
            // 500 lines: below FLUSH_BYTES.
            for i in 0..500 {
                p.log(Level::Notice, &alert(i), route, &mut out);
                if route.prefix {
                    want.push_str("<5>");
                }
                want.push_str(&alert(i));
                want.push('\n');
            }
            assert!(out.writes.is_empty(), "held until the end");
            p.flush(&mut out, route);
            assert_eq!(out.writes.concat(), want.as_bytes(), "bytes and order kept");
            for w in &out.writes {
                assert!(w.len() <= PIPE_BUF, "{}", w.len());
                assert!(w.ends_with(b"\n"));
            }
            // Greedy: each write but the last is too full for the next line.
            let longest = want.lines().map(|l| l.len() + 1).max().unwrap();
            for w in &out.writes[..out.writes.len() - 1] {
                assert!(w.len() + longest > PIPE_BUF, "{}", w.len());
            }
            assert!(out.writes.len() <= want.len() / (PIPE_BUF - longest) + 1);
        }
    }

    #[test]
    fn a_line_longer_than_pipe_buf_goes_alone_and_lines_keep_their_newlines() {
        let mut p = burst();
        let mut out = Record::default();
        let long = "x".repeat(5000);
        let just = "y".repeat(PIPE_BUF - 1);
        for l in ["a", &long, "b", "two\nlines", &just, "c"] {
            p.log(Level::Notice, l, STDERR, &mut out);
        }
        p.flush(&mut out, STDERR);
        let writes: Vec<String> = out
            .writes
            .iter()
            .map(|w| String::from_utf8(w.clone()).unwrap())
            .collect();
        assert_eq!(
            writes,
            [
                "a\n".to_string(),
                format!("{long}\n"),
                "b\ntwo\nlines\n".to_string(),
                format!("{just}\n"),
                "c\n".to_string(),
            ]
        );
    }

    #[test]
    fn a_burst_writes_early_at_its_bound() {
        let mut p = burst();
        let mut out = Record::default();
        let mut held = 0;
        let mut i = 0;
        while out.writes.is_empty() {
            let line = alert(i);
            held += line.len() + 1;
            p.log(Level::Notice, &line, STDERR, &mut out);
            i += 1;
            assert!(i < 10_000);
        }
        // Written as the line that passed the bound came, not before.
        assert!(held >= FLUSH_BYTES && held - alert(i - 1).len() - 1 < FLUSH_BYTES);
        assert_eq!(out.writes.concat().len(), held);
        assert!(p.stderr.is_empty());
        // Datagrams: at FLUSH_DATAGRAMS, in one send.
        let mut p = burst();
        let mut out = Record::default();
        for i in 0..FLUSH_DATAGRAMS - 1 {
            p.log(Level::Notice, &alert(i), NATIVE, &mut out);
        }
        assert!(out.sends.is_empty());
        p.log(Level::Notice, "last", NATIVE, &mut out);
        assert_eq!(out.sends.len(), 1);
        assert_eq!(out.sends[0].1.len(), FLUSH_DATAGRAMS);
    }

    #[test]
    fn datagrams_are_the_lines_bytes_and_a_refused_one_falls_back_to_stderr() {
        let mut p = burst();
        let mut out = Record {
            refuse: Some(|m| m.windows(6).any(|w| w == b"refuse")),
            ..Record::default()
        };
        let lines = ["ban of 192.0.2.9 expired", "refuse me", "adminalert: after"];
        for route in [NATIVE, SYSLOG] {
            out.sends.clear();
            out.writes.clear();
            for l in lines {
                p.log(Level::Notice, l, route, &mut out);
            }
            p.flush(&mut out, route);
            let sink = if route.syslog {
                Sink::Syslog
            } else {
                Sink::Native
            };
            let want: Vec<Vec<u8>> = [lines[0], lines[2]]
                .iter()
                .map(|l| match sink {
                    Sink::Native => native_message(Level::Notice, l),
                    Sink::Syslog => {
                        format!("<29>nftsentry[{}]: {l}", std::process::id()).into_bytes()
                    }
                })
                .collect();
            assert_eq!(out.sends, [(sink, want)], "one send, in order");
            let prefix = if route.prefix { "<5>" } else { "" };
            assert_eq!(out.writes, [format!("{prefix}refuse me\n").into_bytes()]);
        }
    }

    #[test]
    fn sendmmsg_delivers_every_datagram_intact_and_in_order() {
        let (tx, rx) = UnixDatagram::pair().unwrap();
        struct Sock(UnixDatagram);
        impl Outputs for Sock {
            fn stderr(&mut self, bytes: &[u8]) {
                panic!("nothing refused: {bytes:?}");
            }
            fn send(&mut self, _: Sink, msgs: &[&[u8]], failed: &mut dyn FnMut(usize)) {
                send_all(&self.0, msgs, failed)
            }
        }
        let n = 3 * FLUSH_DATAGRAMS + 7;
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            (0..n)
                .map(|_| {
                    let k = rx.recv(&mut buf).unwrap();
                    buf[..k].to_vec()
                })
                .collect::<Vec<_>>()
        });
        let mut p = burst();
        let mut out = Sock(tx);
        let lines: Vec<String> = (0..n).map(alert).collect();
        for l in &lines {
            p.log(Level::Notice, l, NATIVE, &mut out);
        }
        p.flush(&mut out, NATIVE);
        let got = reader.join().unwrap();
        for (l, g) in lines.iter().zip(&got) {
            assert_eq!(g, &native_message(Level::Notice, l));
        }
    }

    #[test]
    fn sendmmsg_reports_the_one_datagram_refused_and_sends_the_rest() {
        let (tx, rx) = UnixDatagram::pair().unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        // Larger than any socket's send buffer: EMSGSIZE.
        let huge = vec![b'h'; 8 << 20];
        let msgs: [&[u8]; 4] = [b"one", b"two", &huge, b"four"];
        let mut failed = Vec::new();
        send_all(&tx, &msgs, &mut |i| failed.push(i));
        assert_eq!(failed, [2]);
        let mut buf = [0u8; 16];
        let got: Vec<Vec<u8>> = (0..3)
            .map(|_| {
                let k = rx.recv(&mut buf).unwrap();
                buf[..k].to_vec()
            })
            .collect();
        assert_eq!(got, [b"one".to_vec(), b"two".to_vec(), b"four".to_vec()]);
    }

    #[test]
    fn bursts_nest_and_hold_only_this_threads_lines() {
        assert!(!burst_open());
        let outer = Burst::start();
        let inner = Burst::start();
        assert!(burst_open());
        notice("adminalert: burst test a");
        drop(inner);
        assert!(burst_open(), "the outer burst still holds");
        notice("adminalert: burst test b");
        std::thread::spawn(|| {
            assert!(!burst_open());
            // Written at once, not into this thread's (or the other's) burst.
            notice("adminalert: burst test: a line from another thread");
            assert_eq!(take_held(), "");
        })
        .join()
        .unwrap();
        assert_eq!(
            take_held(),
            "adminalert: burst test a\nadminalert: burst test b\n"
        );
        outer.finish();
        assert!(!burst_open());
    }

    #[test]
    fn formatted_lines_are_the_same_bytes() {
        let _b = Burst::start();
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        log_notice!("attackalert: Host {ip} x {}", 5);
        log_debug!("not at this level");
        assert_eq!(take_held(), "attackalert: Host 198.51.100.7 x 5\n");
    }

    #[test]
    fn addresses_and_numbers_as_display_makes_them() {
        let mut s = String::new();
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.1",
            "198.18.100.9",
            "2001:db8::1",
            "::ffff:192.0.2.1",
            "::",
            "fe80::1:2:3:4",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            s.clear();
            push_ip(&mut s, ip);
            assert_eq!(s, ip.to_string());
        }
        for i in 0..=u16::MAX {
            let ip = IpAddr::from([i as u8, (i >> 8) as u8, (i % 7) as u8, 100]);
            s.clear();
            push_ip(&mut s, ip);
            assert_eq!(s, ip.to_string());
            // Every octet in the last two places too, after text already
            // in the buffer.
            let ip = IpAddr::from([(i % 3) as u8 * 99, 7, (i >> 8) as u8, i as u8]);
            s.clear();
            s.push_str("host: ");
            push_ip(&mut s, ip);
            assert_eq!(s, format!("host: {ip}"));
        }
        let edges = [
            9_999,
            10_000,
            65_535,
            99_999,
            100_000,
            u64::MAX - 1,
            u64::MAX,
        ];
        for n in (0..=2_000).chain(edges) {
            s.clear();
            push_decimal(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }

    #[test]
    fn fields_and_datagrams_are_what_they_were() {
        let lines = [
            "attackalert: TCP SYN/Normal scan from host: scanner.example/198.51.100.7 to TCP port: 1",
            "attackalert: UDP scan from host: 2001:db8::7/2001:db8::7 to UDP port: 53",
            "attackalert: Packet from host: a/192.0.2.1 to TCP port: 9 has IP options set (detection avoidance technique).",
            "attackalert: Host 2001:db8::7 has been blocked via nftables set blocked6 in table inet nftsentry for 1d",
            "attackalert: Host 192.0.2.7 has been blocked via wrappers with string: \"ALL: 192.0.2.7\"",
            "attackalert: Host 192.0.2.7 has been blocked via dropped route using command x for 2h",
            "attackalert: Host 192.0.2.7 has been blocked via something else",
            "attackalert: External command run for host: 192.0.2.7 using command: x",
            "attackalert: Host: 192.0.2.53 found in ignore list (resolver), aborting actions: UDP scan to UDP port: 9",
            "attackalert: Host: 192.0.2.53 found in ignore list to TCP port: 1 to UDP port: 2",
            "attackalert: Host: a/192.0.2.4 is already blocked Ignoring",
            "ban of 192.0.2.9 expired; it dropped 3 packets (252 bytes)",
            "adminalert: nftsentry 0.1.0 started: table",
            "adminalert: nftsentry stopping; table inet x removed",
            "adminalert: ERROR: x",
            "adminalert: something else",
            "two\nlines from host: x",
            "",
            " from host: ",
            "attackalert: Host  has been blocked via ",
        ];
        for level in [Level::Error, Level::Warning, Level::Notice, Level::Debug] {
            for l in lines {
                assert_eq!(journal_fields(level, l), reference_fields(level, l), "{l}");
                assert_eq!(native_message(level, l), reference_native(level, l), "{l}");
            }
        }
    }

    // The implementation before bursts, kept as the reference.
    /// The fields of a line beside its MESSAGE: its kind (for MESSAGE_ID) and
    /// NFTSENTRY_SOURCE, _PORT, _PROTOCOL, _SCAN_TYPE, _ACTION, _BAN_LENGTH as
    /// far as the line says them.
    fn reference_fields(
        level: Level,
        line: &str,
    ) -> (Option<&'static str>, Vec<(&'static str, String)>) {
        let mut f: Vec<(&'static str, String)> = Vec::new();
        // "NAME/ADDR" (PortSentry's "host: name/addr") is the address.
        let host = |w: &str| {
            let w = w.trim_end_matches([',', ':']);
            w.rsplit('/').next().unwrap_or(w).to_string()
        };
        let after = |pat: &str| line.split_once(pat).map(|(_, r)| r);
        let first_word = |r: &str| r.split_whitespace().next().unwrap_or("").to_string();
        let port_proto = |f: &mut Vec<(&'static str, String)>| {
            for proto in ["TCP", "UDP"] {
                if let Some(r) = after(&format!("to {proto} port: ")) {
                    f.push(("NFTSENTRY_PROTOCOL", proto.to_string()));
                    f.push(("NFTSENTRY_PORT", first_word(r)));
                }
            }
        };
        let kind = if let Some(r) = after(" from host: ") {
            let scan = line
                .split_once("attackalert: ")
                .map(|(_, r)| r)
                .unwrap_or(line)
                .split(" from host: ")
                .next()
                .unwrap_or("");
            f.push(("NFTSENTRY_SOURCE", host(&first_word(r))));
            f.push(("NFTSENTRY_SCAN_TYPE", scan.to_string()));
            port_proto(&mut f);
            Some("probe")
        } else if let Some(r) =
            after("attackalert: Host ").filter(|r| r.contains(" has been blocked via "))
        {
            f.push(("NFTSENTRY_SOURCE", first_word(r)));
            if let Some(how) = after(" has been blocked via ") {
                let action = ["nftables set", "wrappers", "dropped route", "route"]
                    .into_iter()
                    .find(|a| how.starts_with(a))
                    .unwrap_or("other");
                f.push(("NFTSENTRY_ACTION", action.to_string()));
            }
            if let Some(len) = line
                .rsplit_once(" for ")
                .map(|(_, l)| l)
                .filter(|l| !l.contains(' '))
            {
                f.push(("NFTSENTRY_BAN_LENGTH", len.to_string()));
            }
            Some("ban")
        } else if let Some(r) = after("External command run for host: ") {
            f.push(("NFTSENTRY_SOURCE", first_word(r)));
            f.push(("NFTSENTRY_ACTION", "command".into()));
            Some("ban")
        } else if let Some(r) =
            after("attackalert: Host: ").filter(|r| r.contains(" found in ignore list"))
        {
            f.push(("NFTSENTRY_SOURCE", first_word(r)));
            port_proto(&mut f);
            Some("ignored")
        } else if let Some(r) = after("attackalert: Host: ") {
            // "is already blocked Ignoring": a probe of a banned source.
            f.push(("NFTSENTRY_SOURCE", host(&first_word(r))));
            Some("probe")
        } else if let Some(r) = after("ban of ").filter(|r| r.contains(" expired")) {
            f.push(("NFTSENTRY_SOURCE", first_word(r)));
            Some("unban")
        } else if level <= Level::Error || line.contains("ERROR") {
            Some("error")
        } else if line.starts_with("adminalert: nftsentry ") && line.contains(" started") {
            Some("start")
        } else if line.starts_with("adminalert: nftsentry stopping") {
            Some("stop")
        } else {
            None
        };
        (kind, f)
    }

    /// One datagram of the native protocol: `KEY=value` lines, or for a value
    /// with a newline `KEY`, newline, its length (64-bit little endian), the
    /// value and a newline.
    fn reference_native(level: Level, line: &str) -> Vec<u8> {
        let (kind, fields) = reference_fields(level, line);
        let mut out = Vec::with_capacity(line.len() + 200);
        let mut put = |k: &str, v: &str| {
            out.extend_from_slice(k.as_bytes());
            if v.contains('\n') {
                out.push(b'\n');
                out.extend_from_slice(&(v.len() as u64).to_le_bytes());
            } else {
                out.push(b'=');
            }
            out.extend_from_slice(v.as_bytes());
            out.push(b'\n');
        };
        put("MESSAGE", line);
        put("PRIORITY", &(level as u8).to_string());
        put("SYSLOG_IDENTIFIER", "nftsentry");
        put("SYSLOG_FACILITY", "3");
        if let Some(k) = kind {
            put("MESSAGE_ID", message_id(k));
            put("NFTSENTRY_KIND", k);
        }
        for (k, v) in &fields {
            put(k, v);
        }
        out
    }
}
