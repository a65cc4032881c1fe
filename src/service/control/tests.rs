use super::*;
use std::io::Write;

fn temp_path(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nftsentry-ctl-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("control")
}

/// Lets this test process change state, whoever runs the tests: its
/// own group is the control group, and its uid is not the "daemon's".
fn us() -> Access {
    Access {
        group: Some(("ours".into(), nix::unistd::getegid().as_raw())),
        own_uid: u32::MAX,
    }
}

const MAX: usize = 1 << 20;

/// Serves on a thread until `n` requests were answered.
fn server(path: &Path, n: usize) -> std::thread::JoinHandle<Vec<Request>> {
    let mut s = ControlServer::bind(path).unwrap();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let start = Instant::now();
        while seen.len() < n && start.elapsed() < Duration::from_secs(10) {
            s.serve(Instant::now(), &us(), |r| {
                seen.push(r.clone());
                match r {
                    Request::Flush => Reply::error(&Error::config("bad thing")),
                    _ => Reply::ok(format!("did {}\n", r.line())),
                }
            });
            std::thread::sleep(Duration::from_millis(5));
        }
        seen
    })
}

#[test]
fn round_trip_and_errors() {
    let path = temp_path("rt");
    let h = server(&path, 2);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let req = Request::parse("block 192.0.2.7 3600").unwrap();
    let r = request(&path, &req, Duration::from_secs(5), MAX)
        .unwrap()
        .unwrap();
    assert_eq!(r, Reply::ok("did block 192.0.2.7 3600\n"));
    let r = request(&path, &Request::Flush, Duration::from_secs(5), MAX)
        .unwrap()
        .unwrap();
    assert_eq!(r.code, 78);
    assert!(r.body.contains("bad thing"), "{r:?}");
    let seen = h.join().unwrap();
    assert_eq!(
        seen[0],
        Request::Block {
            addr: "192.0.2.7".parse().unwrap(),
            secs: 3600
        }
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn no_daemon_means_none_and_a_stale_socket_is_replaced() {
    let path = temp_path("stale");
    assert_eq!(
        request(
            &path,
            &Request::parse("list").unwrap(),
            Duration::from_secs(1),
            MAX
        )
        .unwrap(),
        None
    );
    // A socket file whose listener is gone, as after kill -9.
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    assert_eq!(
        request(
            &path,
            &Request::parse("list").unwrap(),
            Duration::from_secs(1),
            MAX
        )
        .unwrap(),
        None
    );
    let s = ControlServer::bind(&path).unwrap();
    // A second daemon on the same path is refused while the first runs.
    let e = ControlServer::bind(&path).err().unwrap();
    assert!(e.to_string().contains("another nftsentry"), "{e}");
    drop(s);
    assert!(!path.exists(), "the socket file goes with the server");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn silent_and_oversized_clients_do_not_hold_the_server() {
    let path = temp_path("slow");
    let mut s = ControlServer::bind(&path).unwrap();
    let _silent = UnixStream::connect(&path).unwrap();
    let mut big = UnixStream::connect(&path).unwrap();
    big.write_all(&vec![b'x'; MAX_REQUEST + 10]).unwrap();
    let t0 = Instant::now();
    s.serve(t0, &us(), |_| Reply::ok(""));
    assert!(t0.elapsed() < Duration::from_millis(500), "serve blocked");
    assert_eq!(s.pending.len(), 1, "oversized dropped, silent waits");
    s.serve(t0 + REQUEST_TIMEOUT + Duration::from_secs(1), &us(), |_| {
        Reply::ok("")
    });
    assert!(s.pending.is_empty(), "silent client timed out");
    drop(s);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// A client that sent `line` and reads nothing.
fn stalled(path: &Path, line: &str) -> UnixStream {
    let mut c = UnixStream::connect(path).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(line.as_bytes()).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    c
}

#[test]
fn clients_that_never_read_their_answer_do_not_hold_the_server() {
    let path = temp_path("noread");
    let mut s = ControlServer::bind(&path).unwrap();
    // Far more than a socket buffer takes.
    let long = "x".repeat(4 << 20);
    let clients: Vec<_> = (0..MAX_PENDING).map(|_| stalled(&path, "list\n")).collect();
    let t0 = Instant::now();
    let mut answered = 0;
    for _ in 0..3 {
        s.serve(Instant::now(), &us(), |_| {
            answered += 1;
            Reply::ok(long.clone())
        });
    }
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(500), "serve blocked {took:?}");
    // Asked at once, made once, one copy for all.
    assert_eq!(answered, 1);
    assert_eq!(s.pending.len(), MAX_PENDING);
    assert!(s.unsent() <= long.len() + 16, "{}", s.unsent());
    // They wait for POLLOUT, and there is room for new clients.
    let fds = s.fds();
    assert_eq!(fds.len(), MAX_PENDING + 1);
    assert_eq!(fds[0].0.as_raw_fd(), s.listener.as_raw_fd());
    assert!(fds[1..].iter().all(|(_, e)| *e == PollFlags::POLLOUT));
    let mut status = stalled(&path, "status\n");
    s.serve(Instant::now(), &us(), |_| Reply::ok("up\n"));
    let mut got = String::new();
    status.read_to_string(&mut got).unwrap();
    assert_eq!(Reply::decode(got.as_bytes()), Ok(Reply::ok("up\n")));
    // Past their deadline they are dropped; the next client is served.
    let mut next = stalled(&path, "status\n");
    let later = Instant::now() + REPLY_TIMEOUT + Duration::from_secs(1);
    s.serve(later, &us(), |_| Reply::ok("fine\n"));
    assert!(s.pending.is_empty(), "{} clients left", s.pending.len());
    let mut got = String::new();
    next.read_to_string(&mut got).unwrap();
    assert_eq!(Reply::decode(got.as_bytes()), Ok(Reply::ok("fine\n")));
    // A dropped client reads what was sent, then the end.
    let mut c = clients.into_iter().next().unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    assert!(got.len() < long.len(), "{}", got.len());

    // Asked one after the other: past the budget of unsent bytes the
    // rest are told the daemon is busy, without a copy of the list.
    let mut answered = 0;
    let mut clients = Vec::new();
    for _ in 0..MAX_PENDING {
        clients.push(stalled(&path, "list\n"));
        s.serve(Instant::now(), &us(), |_| {
            answered += 1;
            Reply::ok(long.clone())
        });
    }
    // (The socket buffers hold a little of each answer.)
    let fit = MAX_PENDING_BYTES / long.len();
    assert!(
        (fit..MAX_PENDING).contains(&answered),
        "{answered} lists made"
    );
    assert!(
        s.unsent() <= MAX_PENDING_BYTES + long.len(),
        "{}",
        s.unsent()
    );
    let mut last = clients.pop().unwrap();
    let mut got = String::new();
    last.read_to_string(&mut got).unwrap();
    let r = Reply::decode(got.as_bytes()).unwrap();
    assert_eq!(r.code, 1);
    assert!(r.body.starts_with("list: the daemon is busy: "), "{r:?}");
    drop(s);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn at_most_max_writing_clients_hold_an_answer() {
    let path = temp_path("writers");
    let mut s = ControlServer::bind(&path).unwrap();
    let long = "w".repeat(1 << 20);
    let mut clients = Vec::new();
    for n in 0..MAX_WRITING + 8 {
        // Each its own answer: a different request line every time.
        clients.push(stalled(
            &path,
            &format!("status{}\n", " --json".repeat(n % 2)),
        ));
        s.serve(Instant::now(), &us(), |_| Reply::ok(long.clone()));
        assert!(s.writing() <= MAX_WRITING, "{}", s.writing());
    }
    assert_eq!(s.writing(), MAX_WRITING);
    // The dropped ones were the newest: they report an answer cut short.
    let mut last = clients.pop().unwrap();
    let mut got = Vec::new();
    last.read_to_end(&mut got).unwrap();
    let e = Reply::decode(&got).unwrap_err();
    assert!(e.starts_with("the answer was cut short"), "{e}");
    drop(s);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn a_client_that_reads_slowly_gets_all_of_a_long_answer() {
    let path = temp_path("slowread");
    let mut s = ControlServer::bind(&path).unwrap();
    let long = "y".repeat(8 << 20);
    let want = long.clone();
    let reader = std::thread::spawn({
        let path = path.clone();
        move || {
            request(
                &path,
                &Request::List { json: false },
                Duration::from_secs(20),
                16 << 20,
            )
        }
    });
    let start = Instant::now();
    while !reader.is_finished() && start.elapsed() < Duration::from_secs(20) {
        s.serve(Instant::now(), &us(), |_| Reply::ok(long.clone()));
        std::thread::sleep(Duration::from_millis(1));
    }
    let r = reader.join().unwrap().unwrap().unwrap();
    assert_eq!((r.code, r.body.len()), (0, want.len()));
    drop(s);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

fn peer(uid: u32, gid: u32, groups: &[u32]) -> Peer {
    Peer {
        pid: 1,
        uid,
        gid,
        groups: groups.to_vec(),
    }
}

#[test]
fn state_changes_need_root_or_the_control_group_and_never_the_daemons_user() {
    let nobody = 65534;
    let only_root = Access {
        group: None,
        own_uid: nobody,
    };
    let group = Access {
        group: Some(("nftadmin".into(), 4000)),
        own_uid: nobody,
    };
    let changes = [
        Request::Block {
            addr: "192.0.2.7".parse().unwrap(),
            secs: 60,
        },
        Request::Unblock {
            addr: "192.0.2.7".parse().unwrap(),
            fleet: false,
        },
        Request::Unblock {
            addr: "192.0.2.7".parse().unwrap(),
            fleet: true,
        },
        Request::Flush,
        Request::Reload,
    ];
    let reads = [
        Request::Status { json: false },
        Request::List { json: true },
    ];
    for (access, p, may) in [
        (&only_root, peer(0, 0, &[]), true),
        (&only_root, peer(nobody, nobody, &[]), false),
        (&only_root, peer(1000, 4000, &[4000]), false),
        (&group, peer(0, 0, &[]), true),
        (&group, peer(1000, 4000, &[]), true),
        (&group, peer(1000, 100, &[27, 4000]), true),
        (&group, peer(1000, 100, &[27]), false),
        // The daemon's own user: its commands run as it.
        (&group, peer(nobody, 4000, &[4000]), false),
    ] {
        for r in &changes {
            assert_eq!(access.admits(&p, r), may, "{p:?} {r:?}");
        }
        for r in &reads {
            assert!(access.admits(&p, r), "{p:?} {r:?}");
        }
    }
    let r = only_root.refusal(&peer(1000, 1000, &[]), &Request::Flush);
    assert_eq!(r.code, 77);
    assert_eq!(
        r.body,
        "flush: permission denied: only root may change bans (control_group names a group that may too)\n"
    );
    let r = group.refusal(&peer(nobody, 4000, &[]), &changes[0]);
    assert!(
        r.body.starts_with("block: permission denied: only root or members of group nftadmin may change bans; uid 65534 is the daemon's own user"),
        "{}",
        r.body
    );
    let r = group.refusal(&peer(1000, 1000, &[]), &Request::Reload);
    assert_eq!(
        r.body,
        "reload: permission denied: only root or members of group nftadmin may reload the configuration\n"
    );
}

#[test]
fn a_refused_request_never_reaches_the_handler() {
    let path = temp_path("refuse");
    let mut s = ControlServer::bind(&path).unwrap();
    let nobody_may = Access {
        group: None,
        own_uid: u32::MAX,
    };
    let root = nix::unistd::geteuid().is_root();
    let mut c = stalled(&path, "flush\n");
    let mut seen = Vec::new();
    for _ in 0..3 {
        s.serve(Instant::now(), &nobody_may, |r| {
            seen.push(r.clone());
            Reply::ok("flushed\n")
        });
    }
    let mut got = String::new();
    c.read_to_string(&mut got).unwrap();
    if root {
        assert_eq!(Reply::decode(got.as_bytes()), Ok(Reply::ok("flushed\n")));
    } else {
        let r = Reply::decode(got.as_bytes()).unwrap();
        assert_eq!(r.code, 77);
        assert!(r.body.starts_with("flush: permission denied"), "{r:?}");
        assert!(seen.is_empty(), "{seen:?}");
    }
    let mut c = stalled(&path, "status\n");
    s.serve(Instant::now(), &nobody_may, |_| Reply::ok("up\n"));
    let mut got = String::new();
    c.read_to_string(&mut got).unwrap();
    assert_eq!(Reply::decode(got.as_bytes()), Ok(Reply::ok("up\n")));
    drop(s);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn the_peer_is_who_connected() {
    let (a, _b) = UnixStream::pair().unwrap();
    let p = Peer::of(&a).unwrap();
    assert_eq!(p.pid, std::process::id() as i32);
    assert_eq!(p.uid, nix::unistd::geteuid().as_raw());
    assert_eq!(p.gid, nix::unistd::getegid().as_raw());
    let mut want: Vec<u32> = nix::unistd::getgroups()
        .unwrap()
        .iter()
        .map(|g| g.as_raw())
        .collect();
    let mut got = p.groups.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want, "SO_PEERGROUPS");
}

#[test]
fn answers_are_capped_and_printable() {
    assert_eq!(printable("a\tb\nc"), "a\tb\nc");
    assert_eq!(
        printable("\u{1b}[2J\u{1b}]0;owned\u{7}x\r\u{9b}31my\u{7f}\u{0}"),
        "[2J]0;ownedx31my"
    );
    let r = Reply::decode(b"0\n\x1b[31mred\x1b[0m\r\n").unwrap();
    assert_eq!(r.body, "[31mred[0m\n");
    // A "daemon" that sends more than allowed.
    let path = temp_path("cap");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let l = UnixListener::bind(&path).unwrap();
    let fake = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let _ = c.write_all(b"0\n");
        let chunk = vec![b'z'; 64 * 1024];
        let mut sent = 0;
        while sent < 64 << 20 && c.write_all(&chunk).is_ok() {
            sent += chunk.len();
        }
        sent
    });
    let e = request(
        &path,
        &Request::Status { json: false },
        Duration::from_secs(10),
        100_000,
    )
    .unwrap_err();
    assert!(
        e.message
            .contains("the answer to `status` is longer than 100000 bytes"),
        "{e}"
    );
    assert!(fake.join().unwrap() < 16 << 20, "the client read on");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn a_trickling_daemon_cannot_hold_the_client_past_its_deadline() {
    let path = temp_path("trickle");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let l = UnixListener::bind(&path).unwrap();
    let fake = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        for _ in 0..40 {
            if c.write_all(b"0").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let t0 = Instant::now();
    let e = request(
        &path,
        &Request::Status { json: false },
        Duration::from_secs(1),
        MAX,
    )
    .unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(e.message.contains("no complete answer"), "{e}");
    fake.join().unwrap();
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn garbage_replies_are_errors_not_panics() {
    assert_eq!(Reply::decode(b"").ok(), None);
    assert_eq!(Reply::decode(b"x\nbody").ok(), None);
    assert_eq!(Reply::decode(b"300\n").ok(), None);
    assert_eq!(Reply::decode(b"0 1 2\n").ok(), None);
    assert_eq!(Reply::decode(b"0 x\n").ok(), None);
    // A daemon from before the length: the code alone.
    assert_eq!(Reply::decode(b"0\n").unwrap(), Reply::ok(""));
    assert_eq!(Reply::decode(b"0 3\nabc").unwrap(), Reply::ok("abc"));
    let r = Reply::ok("four");
    assert_eq!(Reply::decode(&r.encode()).unwrap(), r);
    let e = Reply::decode(b"0 10\nabc").unwrap_err();
    assert!(
        e.starts_with("the answer was cut short: 3 of 10 bytes came"),
        "{e}"
    );
    let e = Reply::decode(b"0 1\nabc").unwrap_err();
    assert!(e.contains("longer than the 1 bytes it announced"), "{e}");
    assert_eq!(Request::parse("  "), Err("empty request".into()));
}

#[test]
fn requests_parse_once_and_round_trip() {
    for line in [
        "status",
        "status --json",
        "list --json",
        "block 2001:db8::7 60",
        "unblock 192.0.2.7",
        "flush",
        "reload",
    ] {
        let r = Request::parse(line).unwrap();
        assert_eq!(r.line(), line);
    }
    for (line, why) in [
        ("block 192.0.2.7", "unknown control command `block`"),
        ("block 192.0.2.7 soon", "block: bad arguments"),
        ("unblock x", "unblock: `x` is not an address"),
        ("reboot", "unknown control command `reboot`"),
        ("flush now", "unknown control command `flush`"),
    ] {
        let e = Request::parse(line).unwrap_err();
        assert!(e.starts_with(why), "{line}: {e}");
    }
}
